#!/usr/bin/env bash
# Smoke tests of the identity index and the membership/audit commands (tiny models: plumbing,
# safety checks and report contents, not model quality).
# usage: identity.sh path/to/rewind
set -u
REWIND="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"

"$REWIND" data synth-faces --out "$TMP/faces" --identities 12 --per-identity 4 --size 32 -q >/dev/null || bad "synth-faces"
"$REWIND" train embedder --data "$TMP/faces/manifest.csv" --arch cnn32 --width 4 --dim 16 --epochs 1 --batch 8 \
  --heldout-fraction 0.25 --out "$TMP/m/e.pt" -q >/dev/null || bad "train embedder"
"$REWIND" train embedder --data "$TMP/faces/manifest.csv" --arch cnn32 --width 4 --dim 16 --epochs 1 --batch 8 \
  --heldout-fraction 0.25 --seed 2 --out "$TMP/m/e2.pt" -q >/dev/null || bad "train second embedder"
"$REWIND" train gan --data "$TMP/faces/manifest.csv" --out "$TMP/m/g.pt" --arch dcgan32 --width 8 --latent-dim 16 \
  --steps 4 --batch 8 -q >/dev/null || bad "train gan"
awk -F, 'NR==1 || substr($2,3)+0 < 8' "$TMP/faces/manifest.csv" > "$TMP/faces/indexed.csv"
awk -F, 'NR==1 || substr($2,3)+0 >= 8' "$TMP/faces/manifest.csv" > "$TMP/faces/others.csv"
# a reference GAN for the calibrated attacks: never trained on the members (indexed.csv)
"$REWIND" train gan --data "$TMP/faces/manifest.csv" --exclude "$TMP/faces/indexed.csv" --out "$TMP/m/ref.pt" \
  --arch dcgan32 --width 8 --latent-dim 16 --steps 4 --batch 8 --seed 2 -q >/dev/null || bad "train reference gan"

# index build / info / query
expect_code 0 "index build" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" --out "$TMP/ix" -q
for f in index.faiss items.csv manifest.json run.json; do [ -s "$TMP/ix/$f" ] && ok || bad "index build wrote $f"; done
expect_grep "indexed 32 images" "$TMP/out" "build summary"
expect_grep "search thr" "$TMP/out" "build prints the calibration"
expect_grep '"factory": "Flat"' "$TMP/ix/manifest.json" "manifest records the factory"
expect_grep '"file_hash"' "$TMP/ix/manifest.json" "manifest records the embedder hash"
expect_code 0 "index info" -- "$REWIND" index info "$TMP/ix"
expect_grep "32 images of 8 identities" "$TMP/out" "info counts"
expect_code 0 "index query" -- "$REWIND" index query --index "$TMP/ix" --data "$TMP/faces/indexed.csv" --k 3 --out "$TMP/q.csv" -q
head -1 "$TMP/q.csv" | grep -q '^query_path,rank,match_path,identity,similarity,verdict' && ok || bad "matches.csv header"
[ "$(grep -c ',1,' "$TMP/q.csv")" -ge 32 ] && ok || bad "one rank-1 row per query"
# each indexed image finds itself at rank 1 (similarity 1)
awk -F, '$2==1 && $5 < 0.999' "$TMP/q.csv" | grep -q . && bad "self-query not at rank 1" || ok
expect_code 0 "identity-level query" -- "$REWIND" index query --index "$TMP/ix" --data "$TMP/faces/others.csv" --k 2 \
  --identity-level --out "$TMP/qi.csv" -q
head -1 "$TMP/qi.csv" | grep -q '^query_identity,rank,identity,similarity,support,verdict' && ok || bad "identity-level header"
expect_code 0 "append" -- "$REWIND" index build --data "$TMP/faces/others.csv" --embedder "$TMP/m/e.pt" --out "$TMP/ix" --append -q
expect_grep "16 images (48 in all)" "$TMP/out" "append count"
sed -n 2p "$TMP/ix/items.g1.csv" | grep -q '^0,id00000,' && ok || bad "ids stable after append"
[ -e "$TMP/ix/items.csv" ] && bad "the old generation's items.csv was not removed" || ok
# crash consistency of --append: a kill at each point of the save leaves the old index (48 images)
# or the new one (64), never a mix, and a later append still works
for point in index-save:index-written:48 index-save:items-written:48 index-save:manifest-switched:64; do
  name=${point%:*}; want=${point##*:}
  rm -rf "$TMP/ixc"; cp -r "$TMP/ix" "$TMP/ixc"
  expect_code 137 "append killed at $name" -- env REWIND_CRASH_POINT="$name" "$REWIND" index build \
    --data "$TMP/faces/others.csv" --embedder "$TMP/m/e.pt" --out "$TMP/ixc" --append -q
  expect_code 0 "index info after a kill at $name" -- "$REWIND" index info "$TMP/ixc"
  expect_grep "$want images of" "$TMP/out" "a kill at $name leaves a whole generation"
  expect_code 0 "append after a kill at $name" -- "$REWIND" index build --data "$TMP/faces/others.csv" \
    --embedder "$TMP/m/e.pt" --out "$TMP/ixc" --append -q
  expect_grep "16 images ($((want + 16)) in all)" "$TMP/out" "append after a kill at $name counts"
done
# one flipped byte anywhere in the index is refused naming the file (the content hash)
rm -rf "$TMP/ixf"; cp -r "$TMP/ix" "$TMP/ixf"
printf '\x55' | dd of="$TMP/ixf/index.g1.faiss" bs=1 seek=700 conv=notrunc status=none
expect_code 3 "query of a damaged index" -- "$REWIND" index query --index "$TMP/ixf" --data "$TMP/faces/others.csv" --out "$TMP/qf.csv"
expect_grep "index.g1.faiss does not match the content hash" "$TMP/err" "damaged index named"
expect_code 0 "index info --skip-hash-check" -- "$REWIND" index info "$TMP/ixf" --skip-hash-check
expect_grep "integrity  sizes only" "$TMP/out" "info says the hash check was skipped"
expect_code 2 "build over an existing index" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" --out "$TMP/ix"
expect_grep "append" "$TMP/err" "existing index error suggests --append"
# safety: another embedder, truncated index, bad factory, FAR not calibrated
expect_code 3 "query with another embedder" -- "$REWIND" index query --index "$TMP/ix" --data "$TMP/faces/others.csv" \
  --embedder "$TMP/m/e2.pt" --out "$TMP/q2.csv"
expect_grep "not the one the index was built with" "$TMP/err" "embedder mismatch explained"
expect_code 2 "uncalibrated FAR" -- "$REWIND" index query --index "$TMP/ix" --data "$TMP/faces/others.csv" --far 1e-6 --out "$TMP/q3.csv"
expect_grep "was not calibrated for this index (calibrated: 0.01, 0.001, 0.0001)" "$TMP/err" "FAR error lists the calibrated ones"
# a FAR between calibrated points is refused too (it once used 0.01 and printed 0.05), and so is a non-rate
expect_code 2 "FAR between calibrated points" -- "$REWIND" index query --index "$TMP/ix" --data "$TMP/faces/others.csv" --far 0.05 --out "$TMP/q4.csv"
expect_code 2 "FAR above 1" -- "$REWIND" index query --index "$TMP/ix" --data "$TMP/faces/others.csv" --far 2 --out "$TMP/q5.csv"
expect_grep "must be a rate in (0, 1)" "$TMP/err" "FAR range error"
expect_code 2 "bad factory" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" --out "$TMP/ix2" --factory Bogus9
expect_grep "factory string" "$TMP/err" "factory error"
# index recipes (indexes/*.json): the recipe sets the factory, explicit flags override it, bad recipes are named
RECIPES="$(cd "$(dirname "$0")/../.." && pwd)/indexes"
expect_code 0 "index build --recipe" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" \
  --out "$TMP/ixr" --recipe "$RECIPES/hnsw.json" --ef-search 16 -q
expect_code 0 "index info of a recipe build" -- "$REWIND" index info "$TMP/ixr"
expect_grep "factory    HNSW32" "$TMP/out" "info shows the recipe's factory"
expect_grep "hnsw.json" "$TMP/out" "info shows the recipe"
expect_grep '"hnsw_ef_search": 16' "$TMP/ixr/manifest.json" "an explicit flag overrides the recipe"
expect_grep '"hnsw_ef_construction": 40' "$TMP/ixr/manifest.json" "the recipe sets what no flag gives"
expect_grep '"suits"' "$TMP/ixr/run.json" "run.json records the recipe content"
echo '{"factory": "Flat", "nprobes": 4}' > "$TMP/bad-recipe.json"
expect_code 3 "recipe with an unknown key" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" \
  --out "$TMP/ixb" --recipe "$TMP/bad-recipe.json"
expect_grep "bad-recipe.json: unknown key 'nprobes'" "$TMP/err" "unknown recipe key names the file and the key"
echo '{"ef_search": "lots"}' > "$TMP/bad-type.json"
expect_code 3 "recipe with a wrong type" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" \
  --out "$TMP/ixb" --recipe "$TMP/bad-type.json"
expect_grep "bad-type.json: 'ef_search' must be a positive integer" "$TMP/err" "wrong recipe type names the file and the key"
# every shipped recipe is accepted (the factory overridden to suit the small set); on_disk is honoured
for rcp in "$RECIPES"/*.json; do
  name=$(basename "$rcp" .json)
  expect_code 0 "shipped recipe $name" -- "$REWIND" index build --data "$TMP/faces/indexed.csv" --embedder "$TMP/m/e.pt" \
    --out "$TMP/rc-$name" --recipe "$rcp" --factory IVF2,Flat -q
done
expect_code 0 "index info of the 10m recipe's build" -- "$REWIND" index info "$TMP/rc-ivfpq-10m"
expect_grep "lists on disk, memory-mapped" "$TMP/out" "the 10m recipe keeps its lists on disk"
[ -s "$TMP/rc-ivfpq-1m/lists.ivfdata" ] && bad "the 1m recipe wrote a lists file" || ok
cp -r "$TMP/ix" "$TMP/ixt"; head -c 200 "$TMP/ix/index.g1.faiss" > "$TMP/ixt/index.g1.faiss"
expect_code 3 "truncated index" -- "$REWIND" index info "$TMP/ixt"
expect_grep "index.g1.faiss is 200 bytes" "$TMP/err" "truncated index named"

# membership with known labels
expect_code 0 "membership" -- "$REWIND" membership --generator "$TMP/m/g.pt" --members "$TMP/faces/indexed.csv" \
  --nonmembers "$TMP/faces/others.csv" --embedder "$TMP/m/e.pt" --reference-generator "$TMP/m/ref.pt" --samples 20 \
  --per-identity 1 --restarts 1 --steps 5 --bootstrap 50 --out "$TMP/mem" -q
for f in scores.csv identity_scores.csv report.json report.html run.json; do [ -s "$TMP/mem/$f" ] && ok || bad "membership wrote $f"; done
[ "$(wc -l < "$TMP/mem/scores.csv")" = "13" ] && ok || bad "scores.csv: one row per target (12)"
for a in recovery calibrated lira rmia identity-nn recon-identity; do expect_grep "\"$a\"" "$TMP/mem/report.json" "metrics for $a"; done
expect_grep "<svg" "$TMP/mem/report.html" "ROC plot inline"
expect_grep '"discriminator": "no discriminator given' "$TMP/mem/run.json" "the discriminator attack skipped, saying why"
expect_code 2 "membership --resume of a finished run with other options" -- "$REWIND" membership --generator "$TMP/m/g.pt" \
  --members "$TMP/faces/indexed.csv" --nonmembers "$TMP/faces/others.csv" --embedder "$TMP/m/e.pt" \
  --reference-generator "$TMP/m/ref.pt" --samples 21 --per-identity 1 --restarts 1 --steps 5 --bootstrap 50 --out "$TMP/mem" --resume -q
expect_grep "holds a finished run made with other options (--samples was 20, here 21)" "$TMP/err" "finished membership kept"
# a file the finished run read is compared by contents, not by how its path is written; a changed or missing one is named
cp "$TMP/m/ref.pt" "$TMP/m/ref-copy.pt"
# a reference that is a byte-identical copy of the generator under attack is refused like the generator itself
cp "$TMP/m/g.pt" "$TMP/m/g-copy.pt"
expect_code 2 "membership with a copy of the generator as reference" -- "$REWIND" membership --generator "$TMP/m/g.pt" \
  --reference-generator "$TMP/m/g-copy.pt" --members "$TMP/faces/indexed.csv" --nonmembers "$TMP/faces/others.csv" \
  --attacks recovery,lira --steps 2 --bootstrap 50 --out "$TMP/mem-self"
expect_grep "is the generator under attack (the same file contents)" "$TMP/err" "a copy of the generator as reference named"
# ... and so is the same GAN saved as other bytes (here: one byte appended to the file)
cp "$TMP/m/g.pt" "$TMP/m/g-pad.pt" && printf X >> "$TMP/m/g-pad.pt"
expect_code 2 "membership with the generator's weights in another file as reference" -- "$REWIND" membership \
  --generator "$TMP/m/g.pt" --reference-generator "$TMP/m/g-pad.pt" --members "$TMP/faces/indexed.csv" \
  --nonmembers "$TMP/faces/others.csv" --attacks recovery,lira --steps 2 --bootstrap 50 --out "$TMP/mem-self2"
expect_grep "makes the same images as the generator under attack" "$TMP/err" "the same weights as reference named"
RC=(--members "$TMP/faces/indexed.csv" --nonmembers "$TMP/faces/others.csv" --embedder "$TMP/m/e.pt" --samples 20
    --per-identity 1 --restarts 1 --steps 5 --bootstrap 50 --attacks recovery,calibrated --out "$TMP/mem-rc" -q)
expect_code 0 "membership with a copied reference" -- "$REWIND" membership --generator "$TMP/m/g.pt" \
  --reference-generator "$TMP/m/ref-copy.pt" "${RC[@]}"
expect_code 0 "membership --resume of a finished run, paths written otherwise" -- "$REWIND" membership \
  --generator "$TMP/m/../m/g.pt" --reference-generator "$TMP/m/./ref-copy.pt" "${RC[@]}" --resume
expect_code 0 "membership --resume of a finished run, attacks in another order, one twice" -- "$REWIND" membership \
  --generator "$TMP/m/g.pt" --reference-generator "$TMP/m/ref-copy.pt" "${RC[@]/recovery,calibrated/calibrated,recovery,calibrated}" --resume
expect_code 2 "membership --resume of a finished run, another attack" -- "$REWIND" membership \
  --generator "$TMP/m/g.pt" --reference-generator "$TMP/m/ref-copy.pt" "${RC[@]/recovery,calibrated/calibrated,recovery,lira}" --resume
expect_grep "other options (--attacks was \"calibrated,recovery\", here \"calibrated,lira,recovery\")" "$TMP/err" "another set of attacks is a change"
cp "$TMP/m/g.pt" "$TMP/m/ref-copy.pt"
expect_code 2 "membership --resume after a reference file changed" -- "$REWIND" membership --generator "$TMP/m/g.pt" \
  --reference-generator "$TMP/m/ref-copy.pt" "${RC[@]}" --resume
expect_grep "finished run that read --reference-generator \"$TMP/m/ref-copy.pt\", which has other contents now" "$TMP/err" "changed reference named"
rm "$TMP/m/ref-copy.pt"
expect_code 2 "membership --resume after a reference file went" -- "$REWIND" membership --generator "$TMP/m/g.pt" \
  --reference-generator "$TMP/m/ref-copy.pt" "${RC[@]}" --resume
expect_grep "ref-copy.pt\", which is missing now" "$TMP/err" "missing reference named"
# the white-box discriminator attack on train gan's G.disc
expect_code 0 "membership --discriminator" -- "$REWIND" membership --generator "$TMP/m/g.pt" --members "$TMP/faces/indexed.csv" \
  --nonmembers "$TMP/faces/others.csv" --discriminator "$TMP/m/g.pt.disc" --attacks discriminator --bootstrap 50 \
  --out "$TMP/mem-d" -q
head -1 "$TMP/mem-d/scores.csv" | grep -q "discriminator_logit" && ok || bad "scores.csv has the discriminator's logits"
expect_grep '"discriminator"' "$TMP/mem-d/report.json" "metrics for the discriminator attack"
expect_code 4 "membership --discriminator given a generator" -- "$REWIND" membership --generator "$TMP/m/g.pt" \
  --members "$TMP/faces/indexed.csv" --nonmembers "$TMP/faces/others.csv" --discriminator "$TMP/m/g.pt" \
  --attacks discriminator --out "$TMP/mem-d2" -q
expect_grep "g.pt' holds a generator, not a discriminator" "$TMP/err" "a generator given as discriminator named"
# a kill after each kind of finished stage keeps it: --resume continues and writes the same scores
MEM=(membership --generator "$TMP/m/g.pt" --members "$TMP/faces/indexed.csv" --nonmembers "$TMP/faces/others.csv"
     --embedder "$TMP/m/e.pt" --reference-generator "$TMP/m/ref.pt" --samples 20 --per-identity 1 --restarts 1
     --steps 5 --bootstrap 50 -q)
k=0
for stage in members-scan samples "invert members-seg-0" "invert nonmembers (reference)-seg-0"; do
  k=$((k + 1))
  expect_code 137 "membership killed after $stage" -- env REWIND_CRASH_POINT="stage:$stage" "$REWIND" "${MEM[@]}" --out "$TMP/mem-k$k"
  ls "$TMP/mem-k$k/.stages/$stage".* >/dev/null 2>&1 && ok || bad "membership stage $stage kept after a kill"
  expect_code 0 "membership --resume after a kill at $stage" -- "$REWIND" "${MEM[@]}" --out "$TMP/mem-k$k" --resume
  cmp -s "$TMP/mem-k$k/scores.csv" "$TMP/mem/scores.csv" && ok || bad "resumed membership (killed at $stage) gives the uninterrupted scores"
done

# audit with explicit data; identity names are escaped in the HTML
# (the dataset is the people of indexed.csv: a reference holding the owner's own images is refused)
sed 's/,id00003/,<b>evil<\/b>/; s/,id00005/,=1+1/' "$TMP/faces/indexed.csv" > "$TMP/faces/evil.csv"
expect_code 2 "audit with the reference inside the dataset" -- "$REWIND" audit --generator "$TMP/m/g.pt" \
  --dataset "$TMP/faces/manifest.csv" --embedder "$TMP/m/e.pt" --reference "$TMP/faces/others.csv" --out "$TMP/aud-x" -q
expect_grep "the reference holds your own image" "$TMP/err" "an overlapping reference named"
expect_code 0 "audit" -- "$REWIND" audit --generator "$TMP/m/g.pt" --dataset "$TMP/faces/evil.csv" --embedder "$TMP/m/e.pt" \
  --reference "$TMP/faces/others.csv" --samples 20 --restarts 1 --steps 5 --out "$TMP/aud" -q
for f in report.html report.json report.csv samples.png run.json; do [ -s "$TMP/aud/$f" ] && ok || bad "audit wrote $f"; done
expect_grep "amily-wise FAR" "$TMP/out" "audit headline states the family-wise FAR"
expect_grep "&lt;b&gt;evil" "$TMP/aud/report.html" "identity name escaped"
expect_grep "\"'=1+1\"" "$TMP/aud/report.csv" "formula-like identity guarded in report.csv"
grep -q ',=1+1' "$TMP/aud/report.csv" && bad "a formula cell left as is in report.csv" || ok
grep -q "<b>evil" "$TMP/aud/report.html" && bad "raw identity markup in report.html" || ok
expect_grep "data:image/png;base64," "$TMP/aud/report.html" "images inline"
[ "$(wc -l < "$TMP/aud/report.csv")" = "9" ] && ok || bad "report.csv: one row per identity"
expect_code 2 "audit --resume of a finished run with other options" -- "$REWIND" audit --generator "$TMP/m/g.pt" \
  --dataset "$TMP/faces/evil.csv" --embedder "$TMP/m/e.pt" --reference "$TMP/faces/others.csv" --samples 21 --restarts 1 \
  --steps 5 --out "$TMP/aud" --resume -q
expect_grep "holds a finished run made with other options (--samples was 20, here 21)" "$TMP/err" "finished audit kept"
# with the GAN's discriminator: scored in the same pass, a per-identity percentile and a second dataset-level test
expect_code 0 "audit --discriminator" -- "$REWIND" audit --generator "$TMP/m/g.pt" --dataset "$TMP/faces/evil.csv" \
  --embedder "$TMP/m/e.pt" --reference "$TMP/faces/others.csv" --discriminator "$TMP/m/g.pt.disc" --samples 20 \
  --restarts 1 --steps 5 --out "$TMP/aud-d" -q
python3 - "$TMP/aud-d/report.json" <<'PY' && ok || bad "audit report.json carries the discriminator's test and percentiles"
import json, sys
r = json.load(open(sys.argv[1]))
d = r["dataset_test"]["discriminator"]
assert "ran" in d and d["reason"] != "" or d["ran"], d
assert all(i["discriminator_percentile"] is not None and 0 <= i["discriminator_percentile"] <= 1 for i in r["identities"]), r["identities"][0]
PY
expect_grep "discriminator percentile" "$TMP/aud-d/report.html" "the report's table shows the discriminator percentile"
grep -q "discriminator percentile" "$TMP/aud/report.html" && bad "a discriminator column without a discriminator" || ok
# a kill after each finished stage keeps it: --resume continues and writes the same report
AUD=(audit --generator "$TMP/m/g.pt" --dataset "$TMP/faces/evil.csv" --embedder "$TMP/m/e.pt"
     --reference "$TMP/faces/others.csv" --samples 20 --restarts 1 --steps 5 -q)
for stage in dataset samples reference; do
  expect_code 137 "audit killed after its $stage stage" -- env REWIND_CRASH_POINT="stage:$stage" "$REWIND" "${AUD[@]}" --out "$TMP/aud-$stage"
  [ -s "$TMP/aud-$stage/.stages/$stage.json" ] || [ -s "$TMP/aud-$stage/.stages/$stage.npy" ] && ok || bad "stage $stage kept after a kill"
  expect_code 0 "audit --resume after a kill at $stage" -- "$REWIND" "${AUD[@]}" --out "$TMP/aud-$stage" --resume
  cmp -s "$TMP/aud-$stage/report.csv" "$TMP/aud/report.csv" && ok || bad "resumed audit (killed at $stage) gives the uninterrupted report"
done
expect_code 0 "audit without reference" -- "$REWIND" audit --generator "$TMP/m/g.pt" --dataset "$TMP/faces/manifest.csv" \
  --embedder "$TMP/m/e.pt" --samples 20 --restarts 1 --steps 5 --out "$TMP/aud2" -q
expect_grep "impostor pairs of the dataset" "$TMP/aud2/report.html" "threshold method without reference"
# 48 impostor-pair comparisons cannot certify 0.05 / (12 images x 20 samples): no accusation, the reason and the fix
expect_grep "INCONCLUSIVE" "$TMP/aud2/report.html" "unresolved threshold: inconclusive headline"
grep -q ',leaks,' "$TMP/aud2/report.csv" && bad "a leaks verdict from an unresolved threshold" || ok
expect_grep "Give --reference with at least" "$TMP/aud2/report.json" "the reason says what to add"
expect_code 2 "audit with half the options" -- "$REWIND" audit --generator "$TMP/m/g.pt"
expect_grep "together" "$TMP/err" "audit usage error"

# the embedded demo, cut short (the README's first command runs it in full)
expect_code 0 "audit demo" -- "$REWIND" audit --out "$TMP/demo" --samples 100 --restarts 1 --steps 5 -q
expect_grep "Ground truth is known here" "$TMP/demo/report.html" "demo report shows ground truth"

# both directions compared on the demo, cut short
expect_code 0 "compare demo" -- "$REWIND" compare --out "$TMP/cmp" --samples 50 --restarts 1 --steps 5 --wb-steps 5 \
  --splits relu1,fc1 --defense none,noise=1 -q
for f in report.html report.json report.csv run.json; do [ -s "$TMP/cmp/$f" ] && ok || bad "compare wrote $f"; done
expect_grep "Through the split at relu1" "$TMP/out" "compare summary"
head -1 "$TMP/cmp/report.csv" | grep -q 'split_fc1_noise=1_exposed' && ok || bad "compare table has each split x defence"
expect_grep "Per person, riskiest first" "$TMP/cmp/report.html" "compare has the per-person table"
expect_grep '<table class="sortable">' "$TMP/cmp/report.html" "compare tables sort by a click"
expect_grep "128 rows (click to show" "$TMP/cmp/report.html" "the 128-person table is collapsible"
# killed after a GAN-side stage, the recovery or a split cell: --resume finishes with the same table
CMP=(compare --samples 50 --restarts 1 --steps 5 --wb-steps 5 --splits relu1,fc1 --defense none,noise=1 -q)
k=0
for stage in samples invert-seg-0 cell-1; do
  k=$((k + 1))
  expect_code 137 "compare killed after $stage" -- env REWIND_CRASH_POINT="stage:$stage" "$REWIND" "${CMP[@]}" --out "$TMP/cmp-k$k"
  expect_code 0 "compare --resume after a kill at $stage" -- "$REWIND" "${CMP[@]}" --out "$TMP/cmp-k$k" --resume
  cmp -s "$TMP/cmp-k$k/report.csv" "$TMP/cmp/report.csv" && ok || bad "resumed compare (killed at $stage) gives the uninterrupted table"
done
expect_code 2 "compare --resume with other options" -- "$REWIND" "${CMP[@]}" --out "$TMP/cmp-k3" --resume --seed 2
expect_grep "holds a finished run made with other options (--seed was 1, here 2)" "$TMP/err" "compare resume refuses changed options, naming one"
[ -e "$TMP/cmp-k3/.stages" ] && bad "a finished compare keeps its stages" || ok
expect_code 2 "compare unknown split" -- "$REWIND" compare --out "$TMP/cmp2" --splits nope -q
expect_grep "valid splits" "$TMP/err" "compare split error lists the valid ones"

echo "identity.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
