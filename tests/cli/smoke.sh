#!/usr/bin/env bash
# Smoke tests of the rewind binary: help, exit codes, and the data commands end to end.
# usage: smoke.sh path/to/rewind
set -u
REWIND="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

expect_code 0 "--help" -- "$REWIND" --help
expect_grep "data" "$TMP/out" "top-level help lists commands"
expect_code 2 "no arguments" -- "$REWIND"
expect_code 2 "unknown command" -- "$REWIND" frobnicate
expect_grep "unknown command 'frobnicate'" "$TMP/err" "unknown command message"
expect_code 0 "--version" -- "$REWIND" --version
expect_grep "torch" "$TMP/out" "version names torch"

expect_code 0 "synth-faces --help" -- "$REWIND" data synth-faces --help
expect_grep "identities arg (=64)" "$TMP/out" "help shows the struct default"
expect_grep "threads arg (=0)" "$TMP/out" "help shows common options"
expect_code 2 "bad option" -- "$REWIND" data synth-faces --out "$TMP/x" --bogus 1
expect_code 2 "missing --out" -- "$REWIND" data synth-faces
expect_grep "out" "$TMP/err" "missing option named"
expect_code 2 "size out of range" -- "$REWIND" data synth-faces --out "$TMP/x" --size 4
expect_grep "\-\-size must be" "$TMP/err" "range error names the option"

# synth-faces end to end, twice: same bytes
expect_code 0 "synth-faces run" -- "$REWIND" data synth-faces --out "$TMP/s1" --identities 6 --per-identity 3 --size 32 --seed 5 --threads 2
expect_grep "wrote 18 images" "$TMP/out" "summary on stdout"
[ "$(wc -l < "$TMP/s1/manifest.csv")" = "19" ] && ok || bad "manifest has header + 18 rows"
[ -s "$TMP/s1/contact-sheet.png" ] && ok || bad "contact sheet written"
expect_grep '"status": "ok"' "$TMP/s1/run.json" "run.json status"
expect_grep '"seed": 5' "$TMP/s1/run.json" "run.json seed"
"$REWIND" data synth-faces --out "$TMP/s2" --identities 6 --per-identity 3 --size 32 --seed 5 --quiet >/dev/null 2>"$TMP/err"
[ ! -s "$TMP/err" ] && ok || bad "--quiet prints nothing on stderr: $(cat "$TMP/err")"
(cd "$TMP/s1" && find faces -type f | sort | xargs md5sum; md5sum contact-sheet.png manifest.csv) > "$TMP/h1"
(cd "$TMP/s2" && find faces -type f | sort | xargs md5sum; md5sum contact-sheet.png manifest.csv) > "$TMP/h2"
cmp -s "$TMP/h1" "$TMP/h2" && ok || bad "same seed, same bytes"
"$REWIND" data synth-faces --out "$TMP/s3" --identities 6 --per-identity 3 --size 32 --seed 6 -q >/dev/null
(cd "$TMP/s3" && find faces -type f | sort | xargs md5sum; md5sum contact-sheet.png manifest.csv) > "$TMP/h3"
cmp -s "$TMP/h1" "$TMP/h3" && bad "another seed must change the images" || ok

# import the rendered folder back (folder layout)
expect_code 0 "import folder" -- "$REWIND" data import --root "$TMP/s1/faces" --out "$TMP/imp/m.csv"
expect_grep "18 images of 6 identities" "$TMP/out" "import summary"
expect_code 3 "import of a missing folder" -- "$REWIND" data import --root "$TMP/nope" --out "$TMP/imp/m2.csv"
expect_grep "not a folder" "$TMP/err" "missing folder message"
expect_code 2 "bad layout" -- "$REWIND" data import --root "$TMP/s1/faces" --layout zip --out "$TMP/imp/m3.csv"

# fashion-mnist from the Debian package (when installed)
if [ -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  expect_code 0 "fashion-mnist" -- "$REWIND" data fashion-mnist --out "$TMP/fm" --split test --limit 50
  [ "$(wc -l < "$TMP/fm/manifest.csv")" = "51" ] && ok || bad "fashion-mnist manifest rows"
  expect_grep "path,identity,label" "$TMP/fm/manifest.csv" "fashion-mnist header"
fi
expect_code 3 "fashion-mnist without source" -- "$REWIND" data fashion-mnist --out "$TMP/fm2" --source "$TMP/empty"
expect_grep "dataset-fashion-mnist" "$TMP/err" "names the Debian package"

echo "cli smoke: $pass passed, $fail failed"
[ "$fail" = 0 ]
