#!/usr/bin/env bash
# #16 E1: the same target GAN against more reference GANs. After experiments/e1_full.sh has made
# out/e1full/w<WIDTH>-e<EPOCHS>/<S>/ (target.pt, ref1.pt, ref2.pt) and the wide non-member set (wide2-80), trains
# reference GANs ref3 .. ref<K> on further synthetic identities that no other set holds (S/4 identities x 4
# images each, from identity 200000 for ref3/ref4 and 400000 for ref5..ref8; seeds 4, 5, ...; the same
# architecture and steps as e1_full.sh's), then runs `rewind membership` on the wide set with all K references
# into mia-wide2-k<K>/. One thread per process, two trainers at a time; finished steps are skipped.
# usage: nice -n 10 experiments/e1_more_refs.sh [--size 128] [--k 4|8] [--epochs 3000] [--width 16]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
S=128; K=4; EPOCHS=3000; WIDTH=16; BATCH=64
while [ $# -gt 0 ]; do
  case "$1" in
    --size) S="$2"; shift 2;; --k) K="$2"; shift 2;; --epochs) EPOCHS="$2"; shift 2;; --width) WIDTH="$2"; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[ "$K" -ge 3 ] && [ "$K" -le 8 ] || { echo "--k must be 3..8" >&2; exit 2; }
export REWIND_THREADS=1 OMP_NUM_THREADS=1
W=out/e1full; R=$W/w$WIDTH-e$EPOCHS/$S; n=$((S / 4)); STEPS=$((EPOCHS * S / BATCH))
for f in target ref1 ref2; do [ -f "$R/$f.pt" ] || { echo "$R/$f.pt missing: run experiments/e1_full.sh first" >&2; exit 1; }; done
[ -f "$W/wide2-80/manifest.csv" ] || { echo "$W/wide2-80 missing: run experiments/e1_full.sh first" >&2; exit 1; }
extra() {  # extra DIR FIRST COUNT: COUNT blocks of n identities from FIRST
  [ -f "$1/manifest.csv" ] || "$REWIND" data synth-faces --out "$1" --identities $((n * $3)) --per-identity 4 --size 32 \
      --first-identity "$2" --no-contact-sheet --threads 1 -q >/dev/null
}
block() {  # block DIR FIRST B NAME: identities [FIRST + B*n, FIRST + (B+1)*n)
  [ -f "$1/$4.csv" ] || awk -F, -v lo=$(($2 + $3 * n)) -v hi=$(($2 + ($3 + 1) * n)) \
      'NR==1 || (substr($2,3)+0 >= lo && substr($2,3)+0 < hi)' "$1/manifest.csv" > "$1/$4.csv"
}
F3=$W/faces-$S-extra; F5=$W/faces-$S-extra2
extra "$F3" 200000 2; block "$F3" 200000 0 ref3; block "$F3" 200000 1 ref4
if [ "$K" -ge 5 ]; then
  extra "$F5" 400000 4
  for b in 0 1 2 3; do block "$F5" 400000 $b ref$((b + 5)); done
fi
train() {  # train NAME SEED DIR
  [ -f "$R/$1.pt" ] || "$REWIND" train gan --data "$3/$1.csv" --out "$R/$1.pt" --arch dcgan32 --width "$WIDTH" --channels 3 \
      --batch "$BATCH" --steps "$STEPS" --seed "$2" --checkpoint-every 1000 --sample-every 1000000 --resume --threads 1 \
      > "$R/train-$1.log" 2>&1
}
pids=()
for k in $(seq 3 "$K"); do
  dir=$F3; [ "$k" -ge 5 ] && dir=$F5
  train "ref$k" $((k + 1)) "$dir" &
  pids+=($!)
  if [ ${#pids[@]} -eq 2 ]; then wait "${pids[@]}"; pids=(); fi
done
[ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"
refs=(); for k in $(seq 1 "$K"); do refs+=(--reference-generator "$R/ref$k.pt"); done
[ -f "$R/mia-wide2-k$K/report.json" ] || "$REWIND" membership --generator "$R/target.pt" --members "$W/faces-$S/members.csv" \
    --nonmembers "$W/wide2-80/manifest.csv" "${refs[@]}" \
    --attacks recovery,calibrated,lira,rmia,identity-nn,recon-identity,identity-calibrated,identity-lira,recon-identity-lira \
    --embedder data-tools/demo/embedder.pt --samples 1000 --seed 1 --threads 1 --out "$R/mia-wide2-k$K" > "$R/mia-wide2-k$K.log" 2>&1
grep -E "^[a-z-]+: AUC" "$R/mia-wide2-k$K.log"
