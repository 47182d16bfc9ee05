#!/usr/bin/env bash
# Smoke tests of `rewind split-attack`: every attack, defences, --split all, bad input.
# usage: split.sh path/to/rewind   (tiny sizes: the point is the plumbing; quality is tested in
# tests/unit/test_featinv.cpp and measured in experiments/e3_split_depth.sh)
set -u
REWIND="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

R="$REWIND"
"$R" data synth-faces --out "$TMP/faces" --identities 6 --per-identity 4 --size 32 --seed 3 -q >/dev/null || bad "synth-faces"
"$R" data synth-faces --out "$TMP/aux" --identities 6 --per-identity 4 --size 32 --seed 4 -q >/dev/null || bad "synth-faces aux"
"$R" train classifier --data "$TMP/faces/manifest.csv" --label-column identity --arch cnn32 --channels 3 --width 4 \
  --epochs 1 --batch 8 --val-fraction 0.25 --out "$TMP/c.pt" -q >/dev/null || bad "train classifier"
"$R" train gan --data "$TMP/aux/manifest.csv" --out "$TMP/g.pt" --arch dcgan32 --width 8 --latent-dim 16 --steps 2 \
  --batch 8 --sample-every 0 -q >/dev/null || bad "train gan"
# one target file is corrupt: it is skipped and reported, the rest go on
head -c 100 "$(sed -n 2p "$TMP/faces/manifest.csv" | cut -d, -f1 | sed "s|^|$TMP/faces/|")" > "$TMP/broken.png"
{ head -1 "$TMP/faces/manifest.csv"; echo "$TMP/broken.png,id_x"; tail -n +2 "$TMP/faces/manifest.csv" | head -5 | sed 's|^|faces/|'; } > "$TMP/targets.csv"

expect_code 0 "split-attack --help" -- "$R" split-attack --help
expect_grep "wb-steps arg (=500)" "$TMP/out" "help shows the struct default"
expect_grep "  --steps arg (=200)" "$TMP/out" "latent recovery's one default"
expect_code 0 "all attacks, two defences" -- "$R" split-attack --classifier "$TMP/c.pt" --split relu1 \
  --targets "$TMP/targets.csv" --out "$TMP/o1" --attack all --aux "$TMP/aux/manifest.csv" --generator "$TMP/g.pt" \
  --defense none,noise=1 --label-column identity --wb-steps 20 --inv-epochs 1 --steps 5 --restarts 1 -q
for f in scores.csv depth.csv report.json report.html run.json pairs.png; do [ -s "$TMP/o1/$f" ] && ok || bad "wrote $f"; done
[ "$(find "$TMP/o1/recon" -name '*.png' | wc -l)" = "30" ] && ok || bad "5 targets x 3 attacks x 2 defences recon images"
[ "$(wc -l < "$TMP/o1/scores.csv")" = "31" ] && ok || bad "scores.csv rows"
expect_grep "broken.png" "$TMP/o1/run.json" "skipped target recorded"
expect_grep '"status": "ok"' "$TMP/o1/run.json" "run record"
expect_grep "noise=1" "$TMP/o1/depth.csv" "defence rows"
expect_grep '"accuracy"' "$TMP/o1/report.json" "accuracy through the split"
expect_grep "<svg\|<table" "$TMP/o1/report.html" "html report"

# --crop: real photos are cut to the face (dlib) before the split; a bad value is refused naming the flag
expect_code 2 "--crop bogus" -- "$R" split-attack --classifier "$TMP/c.pt" --split relu1 --targets "$TMP/faces" \
  --out "$TMP/oc" --crop bogus --limit 2 -q
expect_grep "\-\-crop must be" "$TMP/err" "bad --crop named"
PHOTOS="$(dirname "$0")/../../data-tools/face-api/node_modules/@vladmandic/face-api/demo"
if [ -f "$PHOTOS/sample6.jpg" ]; then  # face-api's sample photos (scripts/install-deps.sh)
  { echo "path,identity"; for k in 2 4 6; do echo "$(cd "$PHOTOS" && pwd)/sample$k.jpg,p$k"; done; } > "$TMP/photos.csv"
  expect_code 0 "split-attack --crop dlib on photos" -- "$R" split-attack --classifier "$TMP/c.pt" --split relu1 \
    --targets "$TMP/photos.csv" --label-column none --out "$TMP/od" --crop dlib --wb-steps 3 -q
  expect_grep '"crop": "dlib"' "$TMP/od/run.json" "--crop recorded"
  [ "$(($(wc -l < "$TMP/od/scores.csv") - 1))" -ge 1 ] && ok || bad "photos' faces attacked"
fi

expect_code 0 "--split all" -- "$R" split-attack --classifier "$TMP/c.pt" --split all --targets "$TMP/faces" \
  --out "$TMP/o2" --wb-steps 5 --limit 3 --label-column identity -q
n_stages=$(($(wc -l < "$TMP/o2/depth.csv") - 1))
[ "$n_stages" -ge 10 ] && ok || bad "depth.csv has one row per stage ($n_stages)"
expect_grep "fc2" "$TMP/o2/depth.csv" "deepest stage swept"
expect_grep "<svg" "$TMP/o2/report.html" "depth plot"

expect_code 2 "unknown split" -- "$R" split-attack --classifier "$TMP/c.pt" --split features.9 --targets "$TMP/faces" --out "$TMP/o3"
expect_grep "valid splits: conv1, bn1" "$TMP/err" "unknown split lists the valid ones"
expect_code 2 "inverse-net without --aux" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/faces" \
  --out "$TMP/o4" --attack inverse-net
expect_grep "\-\-aux" "$TMP/err" "names --aux"
expect_code 2 "aux overlapping the targets" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/faces" \
  --out "$TMP/o5" --attack inverse-net --aux "$TMP/faces/manifest.csv" --limit 2 -q
expect_grep "disjoint" "$TMP/err" "overlap error"
# a copy of a target under another name is the same image
mkdir -p "$TMP/auxcopy" && cp "$TMP/aux/faces/id00000/0.png" "$TMP/auxcopy/a.png" \
  && cp "$TMP/faces/$(sed -n 2p "$TMP/faces/manifest.csv" | cut -d, -f1)" "$TMP/auxcopy/b.png"
expect_code 2 "aux holding a copy of a target" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/faces" \
  --out "$TMP/o5c" --attack inverse-net --aux "$TMP/auxcopy" --limit 2 -q
expect_grep "shares 1 image with --targets" "$TMP/err" "a copied target found in --aux"
expect_code 2 "bad defence" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/faces" --out "$TMP/o6" --defense blur=2
expect_grep "dropout=P" "$TMP/err" "defence error lists the forms"
expect_code 4 "missing classifier" -- "$R" split-attack --classifier "$TMP/nope.pt" --split conv1 --targets "$TMP/faces" --out "$TMP/o7"
expect_grep "nope.pt" "$TMP/err" "missing model named"
expect_code 3 "missing targets" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/none.csv" --out "$TMP/o8"
expect_grep "none.csv" "$TMP/err" "missing targets named"

# one vocabulary: latent recovery's names given without the gan-prior attack, and old names, say what is meant
expect_code 2 "--steps without gan-prior" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/faces" \
  --out "$TMP/o9" --steps 5
expect_grep "white-box inversion's is --wb-steps" "$TMP/err" "names the white-box option"
expect_code 2 "old option name" -- "$R" split-attack --classifier "$TMP/c.pt" --split conv1 --targets "$TMP/faces" \
  --out "$TMP/o10" --w-tv 1e-3
expect_grep "renamed --wb-tv" "$TMP/err" "old name says its new one"
expect_code 2 "old pipeline option name" -- "$R" audit --invert-batch 4 --out "$TMP/o11"
expect_grep "renamed --batch" "$TMP/err" "--invert-batch says its new name"
expect_code 2 "--batch of an embedder command" -- "$R" embed --embedder "$TMP/c.pt" --data "$TMP/faces" --out "$TMP/o12" --batch 4
expect_grep "embed-batch" "$TMP/err" "embed's --batch names --embed-batch"

echo "cli split: $pass passed, $fail failed"
[ "$fail" = 0 ]
