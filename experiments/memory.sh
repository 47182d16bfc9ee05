#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time -v) of the streamed pipelines as the dataset grows:
# `rewind audit`, `rewind membership` and `rewind index build` with the shipped demo GAN and
# embedder on synthetic datasets of 5k, 20k and 80k images (64 px; the GAN works at 32 px), the
# latent-recovery budget fixed. Also `rewind embed` and `index build` throughput (images/s).
#
#   bash experiments/memory.sh [--rewind build/rewind] [--data /tmp/rewind-memory] [--sizes "1250 5000 20000"]
#
# sizes are identities (x 4 images each). Writes experiments/results/memory.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=build/rewind
DATA=/tmp/rewind-memory
SIZES="1250 5000 20000"
OUT=experiments/results/memory.md
while [ $# -gt 0 ]; do
  case "$1" in
    --rewind) REWIND="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --sizes) SIZES="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
DEMO=data-tools/demo
mkdir -p "$DATA"
WORK="$DATA/runs"
rm -rf "$WORK"; mkdir -p "$WORK"

# peak RSS in MB and wall seconds of one command
measure() {
  local log="$1"; shift
  /usr/bin/time -v "$@" > "$log.out" 2> "$log.err" || { echo "FAILED: $*" >&2; tail -5 "$log.err" >&2; exit 1; }
  local kb wall
  kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log.err")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log.err")
  echo "$((kb / 1024)) $wall"
}

rows=()
for ids in $SIZES; do
  set_dir="$DATA/s$ids"
  if [ ! -f "$set_dir/manifest.csv" ]; then
    "$REWIND" data synth-faces --out "$set_dir" --identities "$ids" --per-identity 4 --size 64 -q
  fi
  n=$((ids * 4))
  # members = first half of the identities, non-members = the rest (memory, not a membership result)
  awk -F, -v h=$((ids / 2)) 'NR == 1 {print > "'"$set_dir"'/members.csv"; print > "'"$set_dir"'/nonmembers.csv"; next}
    {k = substr($2, 3) + 0; print > (k < h ? "'"$set_dir"'/members.csv" : "'"$set_dir"'/nonmembers.csv")}' "$set_dir/manifest.csv"
  read -r a_mb a_wall < <(measure "$WORK/audit-$ids" "$REWIND" audit --generator $DEMO/generator.pt --embedder $DEMO/embedder.pt \
      --dataset "$set_dir/manifest.csv" --out "$WORK/audit-$ids" -q)
  read -r m_mb m_wall < <(measure "$WORK/mem-$ids" "$REWIND" membership --generator $DEMO/generator.pt --embedder $DEMO/embedder.pt \
      --members "$set_dir/members.csv" --nonmembers "$set_dir/nonmembers.csv" --recover-max 64 --bootstrap 200 \
      --out "$WORK/mem-$ids" -q)
  read -r i_mb i_wall < <(measure "$WORK/index-$ids" "$REWIND" index build --data "$set_dir/manifest.csv" \
      --embedder $DEMO/embedder.pt --out "$WORK/index-$ids" -q)
  read -r e_mb e_wall < <(measure "$WORK/embed-$ids" "$REWIND" embed --data "$set_dir/manifest.csv" \
      --embedder $DEMO/embedder.pt --out "$WORK/embed-$ids" -q)
  rows+=("| $n | $a_mb | $a_wall | $m_mb | $m_wall | $i_mb | $i_wall | $e_mb | $e_wall |")
  echo "${rows[-1]}" >&2
done

{
  echo "# Peak memory of the streamed pipelines"
  echo
  echo "\`bash experiments/memory.sh\`: commit $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%Y-%m-%d)."
  echo "Synthetic faces at 64 px (4 images per identity), the shipped demo GAN (32 px) and embedder;"
  echo "audit: 1000 samples, threshold from the dataset's impostor pairs, latent recovery for 256 + 64"
  echo "identities (2 restarts x 200 steps); membership: identity-nn, recovery and recon-identity, latent recovery"
  echo "for 64 images per class; index build: Flat, calibration on up to 20,000 queries."
  echo
  echo "| images | audit MB | audit wall | membership MB | membership wall | index build MB | index build wall | embed MB | embed wall |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > "$OUT"
echo "wrote $OUT" >&2
