#!/usr/bin/env bash
# Identity index on synthetic identities (issue #5's acceptance check).
# An index over IDS identities x PER images, built with a rewind-trained embedder (trained on
# identities 100000+, disjoint from these); queries: one held-out image of every indexed identity
# (should match at rank 1) and one image of IDS unindexed identities (should say no-match).
# usage: experiments/index_synth.sh [--embedder E.pt] [--ids 200] [--per 3] [--far 1e-3] [--factory Flat]
# Default embedder: the shipped demo embedder (cnn32 CosFace, trained on synthetic identities
# 100000+, data-tools/make_demo_models.sh); --embedder "" trains a smaller one first (~2 min).
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
EMB=data-tools/demo/embedder.pt; IDS=200; PER=3; FAR=1e-3; FACTORY=Flat
while [ $# -gt 0 ]; do
  case "$1" in
    --embedder) EMB="$2"; shift 2;; --ids) IDS="$2"; shift 2;; --per) PER="$2"; shift 2;;
    --far) FAR="$2"; shift 2;; --factory) FACTORY="$2"; shift 2;; *) echo "unknown option $1" >&2; exit 2;;
  esac
done
W=out/index-synth
rm -rf "$W/index" && mkdir -p "$W"
if [ -z "$EMB" ]; then
  EMB="$W/emb.pt"
  if [ ! -f "$EMB" ]; then
    $REWIND data synth-faces --out "$W/emb-faces" --identities 600 --first-identity 100000 --per-identity 8 --size 32 -q >/dev/null
    $REWIND train embedder --data "$W/emb-faces/manifest.csv" --out "$EMB" --arch cnn32 --epochs 10
  fi
fi
$REWIND data synth-faces --out "$W/faces" --identities $((2 * IDS)) --per-identity $((PER + 1)) --size 32 -q >/dev/null
M="$W/faces/manifest.csv"
# indexed: identities 0..IDS-1, images 0..PER-1; held-out: their image PER; strangers: identities IDS.. image 0
awk -F, -v n="$IDS" -v per="$PER" 'NR==1 || (substr($2,3)+0 < n && substr($1, length($1)-4, 1)+0 < per)' "$M" > "$W/faces/indexed.csv"
awk -F, -v n="$IDS" -v per="$PER" 'NR==1 || (substr($2,3)+0 < n && substr($1, length($1)-4, 1)+0 == per)' "$M" > "$W/faces/heldout.csv"
awk -F, -v n="$IDS" 'NR==1 || (substr($2,3)+0 >= n && $1 ~ /\/0\.png$/)' "$M" > "$W/faces/strangers.csv"
start=$(date +%s.%N)
$REWIND index build --data "$W/faces/indexed.csv" --embedder "$EMB" --out "$W/index" --factory "$FACTORY" -q | tee "$W/build.txt"
built=$(date +%s.%N)
$REWIND index query --index "$W/index" --data "$W/faces/heldout.csv" --k 5 --far "$FAR" --out "$W/heldout.csv" -q
$REWIND index query --index "$W/index" --data "$W/faces/strangers.csv" --k 5 --far "$FAR" --out "$W/strangers.csv" -q
python3 - "$W" "$FAR" "$IDS" "$PER" "$FACTORY" "$(echo "$built - $start" | bc)" "$EMB" <<'PY' | tee "experiments/results/index-synth-$IDS.md"
import csv, sys
w, far, ids, per, factory, build_s, emb = sys.argv[1:]
def rank1(f):
    return [r for r in csv.DictReader(open(f"{w}/{f}")) if r["rank"] == "1"]
h, s = rank1("heldout.csv"), rank1("strangers.csv")
right = sum(r["identity"] == r["query_identity"] and r["verdict"] == "match" for r in h)
right_any = sum(r["identity"] == r["query_identity"] for r in h)
nomatch = sum(r["verdict"] == "no-match" for r in s)
print("# Identity index on synthetic identities\n")
print(f"Index: {ids} synthetic identities x {per} images (32x32), factory `{factory}`, rewind-trained embedder `{emb}` "
      f"(trained on identities disjoint from these). Build (embed + index + calibrate) {float(build_s):.1f} s on 2 cores.\n")
print("| query set | queries | result |")
print("|---|---|---|")
print(f"| held-out image of an indexed identity | {len(h)} | right identity at rank 1 and `match` at FAR {far}: "
      f"**{right / len(h):.3f}** (rank 1 right regardless of threshold: {right_any / len(h):.3f}) |")
print(f"| image of an unindexed identity | {len(s)} | `no-match` at FAR {far}: **{nomatch / len(s):.3f}** |")
print("\nThresholds (from `index build`):\n\n```")
print(open(f"{w}/build.txt").read().strip())
print("```\n\nReproduce: `experiments/index_synth.sh` (`--ids 500` for the larger index).")
PY
