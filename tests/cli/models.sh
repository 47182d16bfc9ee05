#!/usr/bin/env bash
# Smoke tests of the model commands: train gan|classifier|embedder (with resume), embed, convert.
# usage: models.sh path/to/rewind   (tiny sizes: the point is the plumbing, not model quality)
set -u
REWIND="$1"
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

"$REWIND" data synth-faces --out "$TMP/faces" --identities 8 --per-identity 4 --size 32 -q >/dev/null || bad "synth-faces"

# GAN: 4 steps, then resume to 6
expect_code 0 "train gan" -- "$REWIND" train gan --data "$TMP/faces/manifest.csv" --out "$TMP/m/g.pt" --arch dcgan32 \
  --width 8 --latent-dim 16 --steps 4 --batch 8 --checkpoint-every 2 --sample-every 2 -q
for f in g.pt g.pt.disc g.pt.ckpt g-samples.png g.run.json; do [ -s "$TMP/m/$f" ] && ok || bad "train gan wrote $f"; done
expect_grep '"status": "ok"' "$TMP/m/g.run.json" "gan run record"
expect_code 0 "train gan --resume" -- "$REWIND" train gan --data "$TMP/faces/manifest.csv" --out "$TMP/m/g.pt" --arch dcgan32 \
  --width 8 --latent-dim 16 --steps 6 --batch 8 --checkpoint-every 2 --resume -q
expect_grep "(6 steps" "$TMP/out" "resumed to 6 steps"
# a resume on other data is refused (it once continued silently)
head -17 "$TMP/faces/manifest.csv" > "$TMP/faces/half.csv"
expect_code 2 "train gan --resume on other data" -- "$REWIND" train gan --data "$TMP/faces/half.csv" --out "$TMP/m/g.pt" \
  --arch dcgan32 --width 8 --latent-dim 16 --steps 8 --batch 8 --checkpoint-every 2 --resume -q
expect_grep "trained on other data" "$TMP/err" "other training data named"
# a reference GAN (membership's calibrated attacks): --exclude drops every row sharing an identity with
# the excluded images; excluding everything is an error, not an empty training set
expect_code 0 "train gan --exclude" -- "$REWIND" train gan --data "$TMP/faces/manifest.csv" --exclude "$TMP/faces/half.csv" \
  --out "$TMP/m/ref.pt" --arch dcgan32 --width 8 --latent-dim 16 --steps 2 --batch 8 -q
expect_grep '"excluded_rows": 16' "$TMP/m/ref.run.json" "the excluded identities' 16 rows dropped"
# byte-identical copies under other names and identities are excluded too
mkdir -p "$TMP/copies"; cp "$TMP/faces/faces/id00000/"*.png "$TMP/copies/"
printf 'path,identity\n' > "$TMP/copies/manifest.csv"; for f in "$TMP/copies"/*.png; do echo "$(basename "$f"),someone" >> "$TMP/copies/manifest.csv"; done
expect_code 0 "train gan --exclude of renamed copies" -- "$REWIND" train gan --data "$TMP/faces/manifest.csv" \
  --exclude "$TMP/copies/manifest.csv" --out "$TMP/m/ref2.pt" --arch dcgan32 --width 8 --latent-dim 16 --steps 2 --batch 8 -q
expect_grep '"excluded_rows": 4' "$TMP/m/ref2.run.json" "copies found by their bytes"
expect_code 3 "train gan --exclude of everything" -- "$REWIND" train gan --data "$TMP/faces/half.csv" \
  --exclude "$TMP/faces/manifest.csv" --out "$TMP/m/none.pt" --arch dcgan32 --width 8 --latent-dim 16 --steps 2 -q
expect_grep "nothing is left to train on" "$TMP/err" "empty training set refused"
expect_code 2 "unknown arch" -- "$REWIND" train gan --data "$TMP/faces/manifest.csv" --out "$TMP/m/x.pt" --arch dcgan99
expect_grep "dcgan28, dcgan32, dcgan64 or dcgan128" "$TMP/err" "arch error lists the valid ones"
expect_code 3 "gan on a missing manifest" -- "$REWIND" train gan --data "$TMP/nope.csv" --out "$TMP/m/x.pt"
expect_grep "nope.csv" "$TMP/err" "missing manifest named"

# classifier over identities
expect_code 0 "train classifier" -- "$REWIND" train classifier --data "$TMP/faces/manifest.csv" --label-column identity \
  --arch cnn32 --channels 3 --width 4 --epochs 1 --batch 8 --val-fraction 0.25 --out "$TMP/m/c.pt" -q
expect_grep "held-out accuracy" "$TMP/out" "classifier reports accuracy"
expect_grep '"heldout_accuracy"' "$TMP/m/c.run.json" "classifier run record"
expect_code 3 "classifier with a missing label column" -- "$REWIND" train classifier --data "$TMP/faces/manifest.csv" \
  --arch cnn32 --channels 3 --out "$TMP/m/c2.pt" -q
expect_grep "no column 'label'" "$TMP/err" "label column error"

# embedder, then embed the folder with it
expect_code 0 "train embedder" -- "$REWIND" train embedder --data "$TMP/faces/manifest.csv" --arch cnn32 --width 4 \
  --dim 16 --epochs 1 --batch 8 --heldout-fraction 0.25 --out "$TMP/m/e.pt" -q
expect_grep "TAR at FAR 1e-3" "$TMP/out" "embedder reports TAR"
expect_code 0 "embed" -- "$REWIND" embed --embedder "$TMP/m/e.pt" --data "$TMP/faces" --out "$TMP/emb" -q
expect_grep "wrote 32 embeddings (16-d)" "$TMP/out" "embed summary"
[ "$(wc -l < "$TMP/emb/items.csv")" = "33" ] && ok || bad "items.csv rows"
head -c 100 "$TMP/faces/faces/id00001/0.png" > "$TMP/bad.png"; mv "$TMP/bad.png" "$TMP/faces/faces/id00001/0.png"
expect_code 0 "embed with a truncated image" -- "$REWIND" embed --embedder "$TMP/m/e.pt" --data "$TMP/faces" --out "$TMP/emb2" -q
expect_grep "31 embeddings" "$TMP/out" "bad image skipped, rest embedded"
expect_grep "truncated PNG" "$TMP/emb2/run.json" "skip reason recorded"
echo "garbage" > "$TMP/m/garbage.pt"
expect_code 4 "embed with a garbage model" -- "$REWIND" embed --embedder "$TMP/m/garbage.pt" --data "$TMP/faces" --out "$TMP/emb3"
expect_grep "garbage.pt" "$TMP/err" "model error names the file"
expect_code 4 "classifier passed as embedder" -- "$REWIND" embed --embedder "$TMP/m/c.pt" --data "$TMP/faces" --out "$TMP/emb4"
expect_grep "holds a classifier" "$TMP/err" "wrong kind of model"

# generate + invert (GAN rewinding), with an interrupted run resumed
expect_code 0 "generate" -- "$REWIND" generate --generator "$TMP/m/g.pt" --count 6 --out "$TMP/gen" --embedder "$TMP/m/e.pt" -q
[ "$(wc -l < "$TMP/gen/manifest.csv")" = "7" ] && ok || bad "generate manifest rows"
for f in latents.npy embeddings.npy items.csv images/sample-000005.png run.json; do [ -s "$TMP/gen/$f" ] && ok || bad "generate wrote $f"; done
expect_code 0 "generate npy" -- "$REWIND" generate --generator "$TMP/m/g.pt" --count 6 --out "$TMP/gen-npy" --format npy -q
cmp -s "$TMP/gen/latents.npy" "$TMP/gen-npy/latents.npy" && ok || bad "same seed, same latents"
INV=(--generator "$TMP/m/g.pt" --targets "$TMP/gen" --restarts 2 --batch 2)
expect_code 0 "invert" -- "$REWIND" invert "${INV[@]}" --steps 30 --out "$TMP/inv" -q
[ "$(wc -l < "$TMP/inv/targets.csv")" = "7" ] && ok || bad "targets.csv rows"
for f in latents.npy recon/5.png pairs.png run.json; do [ -s "$TMP/inv/$f" ] && ok || bad "invert wrote $f"; done
[ ! -e "$TMP/inv/.partial" ] && ok || bad "partial state removed after a finished run"
expect_grep "median MSE" "$TMP/out" "invert summary"
expect_grep '"device": "cpu"' "$TMP/inv/run.json" "run.json records the device"
if ! python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  expect_code 2 "invert --device cuda without a GPU" -- "$REWIND" invert "${INV[@]}" --steps 3 --out "$TMP/inv-cuda" --device cuda
  expect_grep "use --device cpu" "$TMP/err" "--device cuda refused, saying what to do"
fi
expect_code 2 "invert --device gpu (not a device)" -- "$REWIND" invert "${INV[@]}" --steps 3 --out "$TMP/inv-gpu" --device gpu
expect_grep "expected cpu, cuda, cuda:N or auto" "$TMP/err" "bad --device named"
expect_code 0 "invert --help shows --device" -- "$REWIND" invert --help
expect_grep "device arg (=auto)" "$TMP/out" "--device in invert's help"
expect_code 0 "data synth-faces --help has no --device" -- "$REWIND" data synth-faces --help
grep -q -- "--device" "$TMP/out" && bad "data commands run no model: no --device" || ok
"$REWIND" invert "${INV[@]}" --steps 300 --out "$TMP/inv-int" -q >/dev/null 2>"$TMP/int.err" &
pid=$!
for _ in $(seq 1200); do [ -e "$TMP/inv-int/.partial/seg-0.csv" ] && break; sleep 0.05; done
# a second run into the same --out while the first is running is refused (they would mix recon/ files)
expect_code 2 "second run into a busy --out" -- "$REWIND" invert "${INV[@]}" --steps 300 --out "$TMP/inv-int" --seed 9
expect_grep "another rewind run (pid $pid) is writing to" "$TMP/err" "busy --out names the other run"
kill -INT $pid; wait $pid; code=$?
[ "$code" = 130 ] || { echo "interrupted run: $(cat "$TMP/int.err")"; ls -la "$TMP/inv-int" "$TMP/inv-int/.partial"; } >&2
[ "$code" = 130 ] && ok || bad "SIGINT exit code $code, want 130"
expect_grep '"status": "cancelled"' "$TMP/inv-int/run.json" "cancelled run recorded"
[ -e "$TMP/inv-int/.partial/seg-0.csv" ] && ok || bad "finished segment kept after cancel"
expect_code 2 "resume with other options" -- "$REWIND" invert "${INV[@]}" --steps 301 --out "$TMP/inv-int" --resume
expect_grep "(--steps was 300, here 301)" "$TMP/err" "resume names the option that changed"
# --resume on a finished run with other options would replace it: refused, naming the option
expect_code 2 "resume a finished run with other options" -- "$REWIND" invert "${INV[@]}" --steps 31 --out "$TMP/inv" --resume
expect_grep "holds a finished run made with other options (--steps was 30, here 31)" "$TMP/err" "finished run kept, option named"
[ "$(wc -l < "$TMP/inv/targets.csv")" = "7" ] && ok || bad "finished run left in place"
[ -e "$TMP/inv/run.failed.json" ] && bad "a refused --resume left run.failed.json beside the finished run" || ok
# ... and so is one with the same options whose generator file was replaced since (same path, other bytes)
cp "$TMP/m/g.pt" "$TMP/g-copy.pt"
CP=(--generator "$TMP/g-copy.pt" --targets "$TMP/gen" --restarts 2 --batch 2 --steps 5 --out "$TMP/inv-copy")
expect_code 0 "invert with a copied generator" -- "$REWIND" invert "${CP[@]}" -q
cp "$TMP/m/ref.pt" "$TMP/g-copy.pt"
expect_code 2 "resume a finished run whose generator file changed" -- "$REWIND" invert "${CP[@]}" --resume
expect_grep "that read --generator \"$TMP/g-copy.pt\", which has other contents now" "$TMP/err" "changed input file named"
# another generator file is another option value, not a "changed" file
expect_code 2 "resume a finished run with another generator" -- "$REWIND" invert "${CP[@]/g-copy.pt/m\/ref2.pt}" --resume
expect_grep "other options (--generator was \"$TMP/g-copy.pt\", here \"$TMP/m/ref2.pt\")" "$TMP/err" "another generator named as such"
expect_grep '"input_hashes"' "$TMP/inv-copy/run.json" "run.json records the input files' hashes"
# a damaged segment is redone, not trusted (a garbage row once crashed std::stod and went into targets.csv)
cp -r "$TMP/inv-int" "$TMP/inv-garbage"; printf '0,x,y,not-a-number\n' > "$TMP/inv-garbage/.partial/seg-0.csv"
expect_code 0 "resume over a damaged segment" -- "$REWIND" invert "${INV[@]}" --steps 300 --out "$TMP/inv-garbage" --resume
expect_grep "seg-0 is damaged" "$TMP/err" "damaged segment named"
grep -q "not-a-number" "$TMP/inv-garbage/targets.csv" && bad "garbage went into targets.csv" || ok
# the targets changed under the interrupted run (two rows swapped): refused, not 2 duplicated + 2 missing
cp -r "$TMP/inv-int" "$TMP/inv-moved"; cp "$TMP/gen/manifest.csv" "$TMP/manifest.bak"
{ head -1 "$TMP/manifest.bak"; sed -n 3p "$TMP/manifest.bak"; sed -n 2p "$TMP/manifest.bak"; tail -n +4 "$TMP/manifest.bak"; } > "$TMP/gen/manifest.csv"
expect_code 2 "resume after the targets changed" -- "$REWIND" invert "${INV[@]}" --steps 300 --out "$TMP/inv-moved" --resume
expect_grep "other inputs" "$TMP/err" "changed targets explained"
cp "$TMP/manifest.bak" "$TMP/gen/manifest.csv"
# a failed rerun into a finished --out keeps the finished run's record (it once overwrote it as "failed")
expect_code 2 "a negative seed" -- "$REWIND" invert "${INV[@]}" --steps 5 --seed -1 --out "$TMP/inv-neg"
expect_grep "seed must be a whole number >= 0, got -1" "$TMP/err" "negative seed refused, not wrapped"
expect_code 2 "rerun with a bad option into a finished --out" -- "$REWIND" invert "${INV[@]}" --steps 30 --w-start bogus --out "$TMP/inv"
expect_grep '"status": "ok"' "$TMP/inv/run.json" "the finished run's record kept"
expect_grep '"status": "failed"' "$TMP/inv/run.failed.json" "the failed rerun recorded beside it"
# options that once ran with nonsense: a huge --scales, a loss weight past float, a generator as feature net
expect_code 2 "huge --scales" -- "$REWIND" invert "${INV[@]}" --steps 3 --scales 2147483648 --out "$TMP/inv-sc"
expect_code 2 "loss weight past float" -- "$REWIND" invert "${INV[@]}" --steps 3 --loss mse=1e300 --out "$TMP/inv-w"
expect_code 2 "a generator as feature net" -- "$REWIND" invert "${INV[@]}" --steps 3 --loss mse=1,feature=1 \
  --feature-net "$TMP/m/g.pt" --feature-layer fc --out "$TMP/inv-fn"
expect_grep "holds a generator" "$TMP/err" "the feature net's kind named"
# --refine feature:LAYER on a native generator writes refined/ like --refine pixel
expect_code 0 "refine at a generator layer" -- "$REWIND" invert "${INV[@]}" --steps 5 --refine feature:block1 \
  --refine-steps 5 --out "$TMP/inv-ref" -q
[ -s "$TMP/inv-ref/refined/0.png" ] && ok || bad "refine feature wrote refined/"
expect_grep "refined_mse" "$TMP/inv-ref/targets.csv" "refined MSE column"
expect_code 3 "targets from a device" -- "$REWIND" invert --generator "$TMP/m/g.pt" --targets /dev/zero --out "$TMP/inv-zero"
expect_grep "not a regular file" "$TMP/err" "a device is refused, not read forever"
expect_code 3 "--max-pixels below the targets' size" -- "$REWIND" invert --generator "$TMP/m/g.pt" --targets "$TMP/gen" \
  --max-pixels 100 --out "$TMP/inv-mp"
expect_grep "raise --max-pixels" "$TMP/err" "the pixel limit is named with its fix"
expect_code 0 "resume" -- "$REWIND" invert "${INV[@]}" --steps 300 --out "$TMP/inv-int" --resume -q
"$REWIND" invert "${INV[@]}" --steps 300 --out "$TMP/inv-full" -q >/dev/null 2>&1
cmp -s "$TMP/inv-int/latents.npy" "$TMP/inv-full/latents.npy" && ok || bad "resumed run equals an uninterrupted one"
cmp -s "$TMP/inv-garbage/latents.npy" "$TMP/inv-full/latents.npy" && ok || bad "a redone damaged segment equals an uninterrupted run"
# a corrupt first target is skipped and recorded, the rest inverted
cp -r "$TMP/gen" "$TMP/gen-bad"; echo "junk" > "$TMP/gen-bad/images/sample-000000.png"
expect_code 0 "invert with a corrupt target" -- "$REWIND" invert --generator "$TMP/m/g.pt" --targets "$TMP/gen-bad" --restarts 2 --batch 2 --steps 5 --out "$TMP/inv-bad" -q
[ "$(wc -l < "$TMP/inv-bad/targets.csv")" = "6" ] && ok || bad "5 of 6 targets inverted"
expect_grep '"skipped_count": 1' "$TMP/inv-bad/run.json" "skip counted"
expect_code 2 "infinite learning rate" -- "$REWIND" invert "${INV[@]}" --steps 5 --out "$TMP/inv-lr" --lr inf
expect_grep "finite number" "$TMP/err" "lr range error"
expect_code 2 "negative batch" -- "$REWIND" invert --generator "$TMP/m/g.pt" --targets "$TMP/gen" --batch -3 --steps 5 --out "$TMP/inv-b"
expect_code 2 "negative threads" -- "$REWIND" invert "${INV[@]}" --steps 5 --out "$TMP/inv-t" --threads -2
expect_grep "threads must be >= 0" "$TMP/err" "threads range error"
expect_code 2 "bad loss term" -- "$REWIND" invert "${INV[@]}" --steps 5 --out "$TMP/inv-x" --loss mse=1,bogus=2
expect_grep "unknown term 'bogus'" "$TMP/err" "loss term error"
expect_code 2 "identity loss without embedder" -- "$REWIND" invert "${INV[@]}" --steps 5 --out "$TMP/inv-y" --loss identity=1

# the real face descriptor, when face-api's weights are installed
FACE_API="$REPO/data-tools/face-api/node_modules/@vladmandic/face-api"
if [ -f "$FACE_API/model/face_recognition_model-weights_manifest.json" ]; then
  expect_code 0 "convert face-api" -- "$REWIND" convert face-api --from "$FACE_API/model" --out "$TMP/m/face.pt"
  expect_code 0 "embed demo photos with detection" -- "$REWIND" embed --embedder "$TMP/m/face.pt" --data "$FACE_API/demo" \
    --crop detect --out "$TMP/femb" -q
  expect_grep "(128-d)" "$TMP/out" "face descriptor is 128-d"
  # the real-photo audit with a cartoon GAN (#15): faces cropped from the package's photos; no accusation,
  # the domain-fit warning shown
  mkdir -p "$TMP/photos" && cp "$FACE_API"/demo/sample*.jpg "$TMP/photos/"
  expect_code 0 "crop faces" -- "$REWIND" data crop-faces --data "$TMP/photos" --out "$TMP/real" -q
  expect_grep "faces from 6 photos" "$TMP/out" "crop-faces summary"
  [ -s "$TMP/real/contact-sheet.png" ] && ok || bad "crop-faces writes a contact sheet"
  # two photos of one name in two folders keep their faces apart
  mkdir -p "$TMP/dup/a" "$TMP/dup/b" && cp "$FACE_API/demo/sample2.jpg" "$TMP/dup/a/x.jpg" && cp "$FACE_API/demo/sample4.jpg" "$TMP/dup/b/x.jpg"
  expect_code 0 "crop faces of same-named photos" -- "$REWIND" data crop-faces --data "$TMP/dup" --out "$TMP/cdup" -q
  [ "$(ls "$TMP/cdup/faces" | wc -l)" = "$(($(wc -l < "$TMP/cdup/manifest.csv") - 1))" ] && ok || bad "same-named photos overwrote faces"
  printf 'not a jpeg' > "$TMP/dup/bad.jpg" && mkdir -p "$TMP/onlybad" && cp "$TMP/dup/bad.jpg" "$TMP/onlybad/"
  expect_code 3 "crop faces of unreadable photos only" -- "$REWIND" data crop-faces --data "$TMP/onlybad" --out "$TMP/cbad"
  expect_grep "could be read; first: image" "$TMP/err" "the unreadable photo and its reason named"
  expect_code 0 "real-photo audit" -- "$REWIND" audit --generator "$REPO/data-tools/demo/generator.pt" \
    --dataset "$TMP/real/manifest.csv" --embedder "$TMP/m/face.pt" --samples 300 --restarts 1 --steps 5 \
    --out "$TMP/areal" -q
  grep -q ',leaks,' "$TMP/areal/report.csv" && bad "a leaks verdict for real photos against a cartoon GAN" || ok
  expect_grep "WARNING: the generator does not fit your images" "$TMP/areal/report.html" "domain-fit warning"
  expect_grep '"domain_mismatch": true' "$TMP/areal/report.json" "domain mismatch recorded"
fi
expect_code 2 "convert unknown format" -- "$REWIND" convert onnx --out "$TMP/x.pt"

echo "cli models: $pass passed, $fail failed"
[ "$fail" = 0 ]
