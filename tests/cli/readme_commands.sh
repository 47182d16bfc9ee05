#!/usr/bin/env bash
# README commands (#17): every ```sh block of README.md runs as written, in order, in a fresh working
# folder (build/, data-tools/ and the index recipes of this checkout, nothing else), at small sizes.
# A block right after a line `<!-- readme-test: skip (reason) -->` is an illustration and is skipped.
# The sizes are shrunk by the explicit substitutions in SUBST below, and the embedded demo of
# `rewind audit` / `rewind compare` runs on a small demo.json (REWIND_DEMO_DIR). A command that
# exits non-zero fails the test with its README line.
# usage: [KEEP_TMP=1] readme_commands.sh path/to/rewind [README.md]
set -u
REWIND="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
README="${2:-$REPO/README.md}"
TMP=$(mktemp -d)
if [ -n "${KEEP_TMP:-}" ]; then echo "working folder kept: $TMP" >&2; else trap 'rm -rf "$TMP"' EXIT; fi
. "$(dirname "$0")/lib.sh"

# old -> new, applied to every runnable block (sed, literal text; keep the list short and explicit)
SUBST=(
  "--identities 1000|--identities 12"
  "--identities 500|--identities 12"
  "--per-identity 10|--per-identity 3"
  "head -n 65 |head -n 9 "
  "--split train|--split train --limit 300"
  "--split test|--split test --limit 100"
  "--steps 4000|--steps 10"
  "--epochs 2 |--epochs 1 "
  "--epochs 8|--epochs 2"
  "--restarts 4|--restarts 1"
  "--steps 300|--steps 5"
  "--steps 100|--steps 5"
  "--count 1000|--count 16"
  "--limit 64|--limit 4"
  "IVF64,Flat|IVF4,Flat"
  # commands whose sizes the README leaves at their defaults: fewer samples and optimiser steps
  "rewind audit |rewind audit --samples 200 --steps 10 "
  "rewind membership |rewind membership --samples 200 --steps 5 "
  "rewind compare |rewind compare --samples 200 --steps 20 --wb-steps 20 "
  "rewind split-attack |rewind split-attack --wb-steps 20 --inv-epochs 1 "
)

if [ ! -f "$REPO/data-tools/face-api/node_modules/@vladmandic/face-api/model/face_recognition_model.bin" ]; then
  bad "face-api's weights are not installed (the README's face commands need them): run scripts/install-deps.sh"
fi

# the working folder a user has after the demo command: the build and the repository's tools
W="$TMP/w"
mkdir -p "$W/indexes"
ln -s "$(dirname "$REWIND")" "$W/build"
ln -s "$REPO/data-tools" "$W/data-tools"
cp "$REPO"/indexes/*.json "$W/indexes/"
[ -x "$W/build/rewind" ] || bad "$W/build/rewind is not the binary under test ($REWIND)"

# a small embedded demo: the shipped models, fewer identities and reference strangers
DEMO_SRC="$(dirname "$REWIND")/share/rewind/demo"
[ -f "$DEMO_SRC/demo.json" ] || DEMO_SRC="$REPO/data-tools/demo"
mkdir -p "$TMP/demo"
for f in "$DEMO_SRC"/*.pt; do ln -s "$f" "$TMP/demo/"; done
sed -e 's/"identities": [0-9]*/"identities": 16/' -e 's/"member_identities": [0-9]*/"member_identities": 8/' \
    -e 's/"reference_identities": [0-9]*/"reference_identities": 400/' "$DEMO_SRC/demo.json" > "$TMP/demo/demo.json"
export REWIND_DEMO_DIR="$TMP/demo"

# split README into blocks: block-N.sh holds the block's lines, block-N.line its first line's number
awk -v dir="$TMP" '
  /^```sh[[:space:]]*$/ && !inb { inb = 1; n++; start = NR + 1; skip = (prev ~ /^<!-- readme-test: skip/);
                                  f = dir "/block-" n ".sh"; printf "" > f; next }
  /^```[[:space:]]*$/ && inb    { inb = 0; close(f); print start > (dir "/block-" n ".line");
                                  if (skip) print "" > (dir "/block-" n ".skip"); next }
  inb                           { print > f; next }
  NF                            { prev = $0 }
' "$README"
nblocks=$(ls "$TMP"/block-*.line 2>/dev/null | wc -l)
[ "$nblocks" -gt 0 ] || bad "no \`\`\`sh blocks found in $README"

# the README names no file outside the repository
if grep -nE '\.\./|(^|[ (`="])/(work|home|root|tmp)/' "$README" > "$TMP/outside"; then
  bad "README.md names a path outside the repository: $(head -3 "$TMP/outside")"
fi

# each substitution must still match a runnable block (else the README runs at full size here)
for ((n = 1; n <= nblocks; n++)); do [ -f "$TMP/block-$n.skip" ] || cat "$TMP/block-$n.sh"; done > "$TMP/runnable"
sedargs=()
for s in "${SUBST[@]}"; do
  old="${s%%|*}"; new="${s#*|}"
  grep -qF -- "$old" "$TMP/runnable" || bad "SUBST '$old' matches no runnable README command: update the list"
  old=$(printf '%s' "$old" | sed 's/[][\/.*^$]/\\&/g'); new=$(printf '%s' "$new" | sed 's/[\/&]/\\&/g')
  sedargs+=(-e "s/$old/$new/g")
done

if [ "$fail" != 0 ]; then echo "cli readme: not run, $fail failed checks" >&2; exit 1; fi

t0=$(date +%s)
ran=0
skipped=0
for ((n = 1; n <= nblocks; n++)); do
  line=$(cat "$TMP/block-$n.line")
  if [ -f "$TMP/block-$n.skip" ]; then skipped=$((skipped + 1)); continue; fi
  # the placeholders of README's illustrations must not reach a runnable block
  if grep -nE '~/|(^|[ /="])[GECR]\.pt|(^|[ /="])[mn]\.csv|\.\./shared|(^|[ ="])/(work|home|root|tmp)/' "$TMP/block-$n.sh" > "$TMP/ph"; then
    bad "README.md:$((line + $(head -1 "$TMP/ph" | cut -d: -f1) - 1)): a runnable block names a placeholder or a path outside the repository: $(head -1 "$TMP/ph" | cut -d: -f2-)"
    break
  fi
  sed "${sedargs[@]}" "$TMP/block-$n.sh" > "$TMP/run-$n.sh"
  t1=$(date +%s)
  # one shell per block, -e: the ERR trap names the failing command and its README line
  (cd "$W" && bash -c 'set -eE -o pipefail
    trap '\''rc=$?; echo "README.md:$(('"$line"' + LINENO - 1)): exit $rc: $BASH_COMMAND" > "'"$TMP"'/failed"'\'' ERR
    source "$1"' readme "$TMP/run-$n.sh") > "$TMP/log-$n" 2>&1
  rc=$?
  ran=$((ran + 1))
  if [ "$rc" = 0 ]; then
    ok
    echo "README.md:$line: block ok ($(( $(date +%s) - t1 )) s)"
  else
    where=$(cat "$TMP/failed" 2>/dev/null || echo "README.md:$line: exit $rc")
    bad "$where (block at line $line); last output: $(tail -c 800 "$TMP/log-$n")"
    break   # later blocks use this block's files
  fi
done
echo "cli readme: $ran blocks run, $skipped skipped, $pass passed, $fail failed ($(( $(date +%s) - t0 )) s)"
[ "$fail" = 0 ]
