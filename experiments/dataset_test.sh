#!/usr/bin/env bash
# #16: the dataset-level test's false-alarm rate and power on the demo GAN, with rewind's own
# mia::set_test (what `rewind audit --reference` reports). Identity-nn scores: each image's best
# cosine similarity to the 1000 samples an audit draws (seed 1), demo embedder.
#   never seen: identities 1000..3999 of synth-faces (disjoint from the GAN's 0..63, the embedder's
#               100000+ and the demo reference's 300000+), image 0 each
#   members:    identities 0..63, image 0 (one of the two images each was trained on)
# Writes out/dataset-test/ and prints the table (experiments/results/dataset-test.md).
# Another GAN: GEN=G.pt MEMBERS=M.csv W=out/dir (M: a manifest of the images it was trained on; the first
# image of each identity is used); the never-seen identities are the same.
# usage: bash experiments/dataset_test.sh   (after building with -DREWIND_BUILD_BENCH=ON)
set -euo pipefail
cd "$(dirname "$0")/.."
R=${REWIND:-build/rewind}
X=${EXP:-build/experiments/bench/exp_dataset_test}
D=data-tools/demo
W=${W:-out/dataset-test}
mkdir -p "$W"
G=${GEN:-$D/generator.pt}
if [ -n "${MEMBERS:-}" ]; then  # one image per identity: the first
  mkdir -p "$W/members"
  base=$(cd "$(dirname "$MEMBERS")" && pwd)
  awk -F, -v b="$base" 'NR==1 {print; next} !seen[$2]++ {if ($1 !~ /^\//) $1 = b "/" $1; print}' OFS=, "$MEMBERS" \
      > "$W/members/manifest.csv"
fi
[ -f "$W/members/manifest.csv" ] || "$R" data synth-faces --out "$W/members" --identities 64 --per-identity 1 --size 32 -q
N=${NEVER:-$W/never}  # NEVER=DIR shares the never-seen images (and their embeddings) between runs
[ -f "$N/manifest.csv" ] || "$R" data synth-faces --out "$N" --identities 3000 --first-identity 1000 \
    --per-identity 1 --size 32 -q
[ -f "$W/samples/embeddings.npy" ] || "$R" generate --generator "$G" --embedder $D/embedder.pt --count 1000 \
    --seed 1 --format npy --out "$W/samples" -q
[ -f "$W/emb-members/embeddings.npy" ] || "$R" embed --embedder $D/embedder.pt --data "$W/members" --out "$W/emb-members" -q
[ -f "$N/emb/embeddings.npy" ] || "$R" embed --embedder $D/embedder.pt --data "$N" --out "$N/emb" -q
"$X" --samples "$W/samples/embeddings.npy" --members "$W/emb-members/embeddings.npy" \
    --nonmembers "$N/emb/embeddings.npy" --sizes 20,50 --reference 1000 --trials 1000 --alpha 0.01
