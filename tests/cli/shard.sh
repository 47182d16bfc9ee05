#!/usr/bin/env bash
# Sharded runs (#13): embed, index build (Flat, IVF, IVF on disk), invert, generate, audit and membership run as --shard I/N one
# after the other, then --merge, give the files one process gives (byte for byte: every process
# uses --threads 1, see README "More than one machine"); a missing part and a part made with other
# options are refused naming the part. With an MPI build and mpirun on the PATH, the same under
# `mpirun -np 2` (rank 0 merges).
# usage: shard.sh path/to/rewind
set -u
REWIND="$1"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib.sh"
export REWIND_THREADS=1 OMP_WAIT_POLICY=PASSIVE
R() { "$REWIND" "$@" -q; }

R data synth-faces --out "$TMP/faces" --identities 25 --per-identity 4 --size 32 >/dev/null || bad "synth-faces"
R train embedder --data "$TMP/faces/manifest.csv" --arch cnn32 --width 4 --dim 16 --epochs 1 --batch 8 \
  --heldout-fraction 0.25 --out "$TMP/m/e.pt" >/dev/null || bad "train embedder"
R train gan --data "$TMP/faces/manifest.csv" --out "$TMP/m/g.pt" --arch dcgan32 --width 8 --latent-dim 16 \
  --steps 4 --batch 8 >/dev/null || bad "train gan"
M="$TMP/faces/manifest.csv"
same() {  # same FILE_A FILE_B WHAT
  if cmp -s "$1" "$2"; then ok; else bad "$3: $1 and $2 differ"; fi
}

# --- embed: 3 shards one after the other, then --merge ------------------------------------------
E="--embedder $TMP/m/e.pt --data $M --embed-batch 8"
R embed $E --out "$TMP/e1" >/dev/null || bad "embed, one process"
for i in 0 1 2; do R embed $E --out "$TMP/e3" --shard $i/3 >/dev/null || bad "embed shard $i/3"; done
[ -s "$TMP/e3/part-1-of-3/run.json" ] && grep -q '"shard": "1/3"' "$TMP/e3/part-1-of-3/run.json" && ok || bad "a part records its shard"
expect_code 0 "embed --merge" -- "$REWIND" embed $E --out "$TMP/e3" --merge -q
expect_grep "merged 3 parts: wrote 100 embeddings" "$TMP/out" "embed merge summary"
same "$TMP/e1/embeddings.npy" "$TMP/e3/embeddings.npy" "merged embeddings"
same "$TMP/e1/items.csv" "$TMP/e3/items.csv" "merged items.csv"
grep -q '"seconds_sum"' "$TMP/e3/run.json" && ok || bad "merged run.json lists the parts"
[ -e "$TMP/e3/part-0-of-3" ] && bad "merged parts were not removed" || ok
# a missing part, a part of other options: refused, named, and nothing is merged
for i in 0 2; do R embed $E --out "$TMP/e6" --shard $i/3 >/dev/null; done
expect_code 3 "merge with a part missing" -- "$REWIND" embed $E --out "$TMP/e6" --merge
expect_grep "part-1-of-3 is missing: run shard 1/3" "$TMP/err" "missing part named"
[ -e "$TMP/e6/embeddings.npy" ] && bad "a refused merge wrote embeddings" || ok
R embed --embedder "$TMP/m/e.pt" --data "$M" --embed-batch 4 --out "$TMP/e6" --shard 1/3 >/dev/null
expect_code 3 "merge with a foreign part" -- "$REWIND" embed $E --out "$TMP/e6" --merge
expect_grep "part-1-of-3 was made with other options (--embed-batch was 4, here 8)" "$TMP/err" "foreign part named"
expect_code 3 "merge of an invert part as embed" -- "$REWIND" invert --generator "$TMP/m/g.pt" --targets "$M" \
  --out "$TMP/e6" --merge
expect_code 2 "a bad --shard" -- "$REWIND" embed $E --out "$TMP/e4" --shard 3/3
expect_grep "need 0 <= I < N" "$TMP/err" "bad shard explained"
# a part file damaged after its shard finished, a manifest changed between shards: refused, named
for i in 0 1; do R embed $E --out "$TMP/e7" --shard $i/2 >/dev/null; done
printf 'x' | dd of="$TMP/e7/part-0-of-2/embeddings.npy" bs=1 seek=200 conv=notrunc 2>/dev/null
expect_code 3 "merge of a damaged part" -- "$REWIND" embed $E --out "$TMP/e7" --merge
expect_grep "part-0-of-2/embeddings.npy is not the file shard 0/2 wrote" "$TMP/err" "damaged part file named"
cp "$M" "$TMP/faces/m8.csv"
R embed --embedder "$TMP/m/e.pt" --data "$TMP/faces/m8.csv" --embed-batch 8 --out "$TMP/e8" --shard 0/2 >/dev/null
(head -1 "$M"; tail -n +2 "$M" | sort -r) > "$TMP/faces/m8.csv"
R embed --embedder "$TMP/m/e.pt" --data "$TMP/faces/m8.csv" --embed-batch 8 --out "$TMP/e8" --shard 1/2 >/dev/null
expect_code 3 "merge of shards of two different manifests" -- "$REWIND" embed --embedder "$TMP/m/e.pt" \
  --data "$TMP/faces/m8.csv" --embed-batch 8 --out "$TMP/e8" --merge
expect_grep "read --data \"$TMP/faces/m8.csv\" with other contents" "$TMP/err" "changed manifest named"
# the launcher's environment is a shard too (a Slurm job array numbered from 1)
expect_code 0 "embed shard from a Slurm array" -- env SLURM_ARRAY_TASK_ID=2 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=2 \
  "$REWIND" embed $E --out "$TMP/e5" -q
[ -s "$TMP/e5/part-1-of-2/embeddings.npy" ] && ok || bad "SLURM_ARRAY_TASK_ID 2 of 1..2 is shard 1/2"

# --- index build: Flat and IVF, 2 shards, merge; same index, same answers to 100 queries --------
for fac in Flat IVF4,Flat; do
  tag=${fac%%,*}
  B="--data $M --embedder $TMP/m/e.pt --factory $fac --embed-batch 8"
  R index build $B --out "$TMP/x1-$tag" >/dev/null || bad "index build $fac, one process"
  for i in 0 1; do R index build $B --out "$TMP/x2-$tag" --shard $i/2 >/dev/null || bad "index build $fac shard $i/2"; done
  expect_code 0 "index build $fac --merge" -- "$REWIND" index build $B --out "$TMP/x2-$tag" --merge -q
  expect_grep "merged 2 parts: indexed 100 images" "$TMP/out" "index merge summary ($fac)"
  same "$TMP/x1-$tag/index.faiss" "$TMP/x2-$tag/index.faiss" "merged $fac index.faiss"
  same "$TMP/x1-$tag/items.csv" "$TMP/x2-$tag/items.csv" "merged $fac items.csv"
  for x in x1 x2; do R index query --index "$TMP/$x-$tag" --data "$M" --k 10 --out "$TMP/q-$x-$tag.csv" >/dev/null; done
  [ "$(grep -c ',1,' "$TMP/q-x1-$tag.csv")" -ge 100 ] && ok || bad "100 queries ($fac)"
  same "$TMP/q-x1-$tag.csv" "$TMP/q-x2-$tag.csv" "query results of the merged $fac index"
done

# --- IVF on disk: trained once, 3 shards add, the merge writes lists.ivfdata; one process's files
B="--data $M --embedder $TMP/m/e.pt --factory IVF4,Flat --embed-batch 8 --on-disk"
R index build $B --out "$TMP/d1" >/dev/null || bad "index build --on-disk, one process"
expect_code 2 "a shard before --train-only" -- "$REWIND" index build $B --out "$TMP/d3" --shard 0/3
expect_grep "trained.faiss is missing: IVF shards add to one trained index. Run the same command once with --train-only" \
  "$TMP/err" "the missing trained index explained"
expect_code 0 "index build --train-only" -- "$REWIND" index build $B --out "$TMP/d3" --train-only -q
expect_code 3 "a shard on a trained index of other options" -- "$REWIND" index build $B --out "$TMP/d3" --seed 9 --shard 0/3
expect_grep "was trained with other options (seed was 1, here 9)" "$TMP/err" "foreign trained index named"
for i in 0 1 2; do R index build $B --out "$TMP/d3" --shard $i/3 >/dev/null || bad "index build --on-disk shard $i/3"; done
expect_code 0 "index build --on-disk --merge" -- "$REWIND" index build $B --out "$TMP/d3" --merge -q
expect_grep "merged 3 parts: indexed 100 images" "$TMP/out" "on-disk merge summary"
expect_grep "lists on disk, memory-mapped: lists.ivfdata" "$TMP/out" "on-disk layout printed"
for f in index.faiss lists.ivfdata items.csv; do same "$TMP/d1/$f" "$TMP/d3/$f" "merged on-disk $f"; done
for x in d1 d3 x1-IVF4; do R index query --index "$TMP/$x" --data "$M" --k 10 --out "$TMP/q-$x.csv" >/dev/null || bad "query $x"; done
same "$TMP/q-d1.csv" "$TMP/q-d3.csv" "query results of the merged on-disk index"
same "$TMP/q-x1-IVF4.csv" "$TMP/q-d3.csv" "on-disk and in-memory IVF answer alike"
expect_code 0 "index info of an on-disk index" -- "$REWIND" index info "$TMP/d3"
expect_grep "layout     IVF4,Flat, 100 vectors" "$TMP/out" "index info shows the layout"
# a trained index of other options, a damaged lists file, an append: refused, named
printf 'x' | dd of="$TMP/d3/lists.ivfdata" bs=1 seek=5 conv=notrunc 2>/dev/null
expect_code 3 "a damaged lists file" -- "$REWIND" index query --index "$TMP/d3" --data "$M" --out "$TMP/qq.csv"
expect_grep "lists.ivfdata does not match the content hash" "$TMP/err" "damaged lists file named"
expect_code 2 "--append to an on-disk index" -- "$REWIND" index build $B --out "$TMP/d1" --append
expect_code 2 "--on-disk with a Flat factory" -- "$REWIND" index build --data "$M" --embedder "$TMP/m/e.pt" \
  --on-disk --out "$TMP/d9"

# --- invert: 3 shards, merge; the same latents, rows and pictures -------------------------------
head -41 "$M" > "$TMP/faces/t40.csv"
I="--generator $TMP/m/g.pt --targets $TMP/faces/t40.csv --steps 20 --restarts 2 --batch 8"
R invert $I --out "$TMP/i1" >/dev/null || bad "invert, one process"
for i in 0 1 2; do R invert $I --out "$TMP/i3" --shard $i/3 >/dev/null || bad "invert shard $i/3"; done
expect_code 0 "invert --merge" -- "$REWIND" invert $I --out "$TMP/i3" --merge -q
same "$TMP/i1/latents.npy" "$TMP/i3/latents.npy" "merged latents"
same "$TMP/i1/targets.csv" "$TMP/i3/targets.csv" "merged targets.csv"
same "$TMP/i1/recon/17.png" "$TMP/i3/recon/17.png" "merged reconstruction 17"
same "$TMP/i1/pairs.png" "$TMP/i3/pairs.png" "merged pairs.png"
# a shard --resume'd into the finished merged run with other options would replace it at its merge: refused
expect_code 2 "invert shard --resume into a finished merged run, other options" -- "$REWIND" invert ${I/--steps 20/--steps 21} \
  --out "$TMP/i3" --shard 0/3 --resume
expect_grep "holds a finished run made with other options (--steps was 20, here 21)" "$TMP/err" "finished merged run kept"
# the same targets path whose contents changed between two shards: the merge refuses, naming the file
cp "$TMP/faces/t40.csv" "$TMP/faces/tx.csv"
IX="--generator $TMP/m/g.pt --targets $TMP/faces/tx.csv --steps 2 --restarts 1 --batch 8"
R invert $IX --out "$TMP/ix" --shard 0/2 >/dev/null || bad "invert shard 0/2 (tx)"
{ head -1 "$M"; sed -n 42,81p "$M"; } > "$TMP/faces/tx.csv"
R invert $IX --out "$TMP/ix" --shard 1/2 >/dev/null || bad "invert shard 1/2 (tx changed)"
expect_code 3 "invert --merge of parts that read other targets under one path" -- "$REWIND" invert $IX --out "$TMP/ix" --merge
expect_grep "read --targets \"$TMP/faces/tx.csv\" with other contents" "$TMP/err" "changed targets between shards named"

# --- generate (+ embed): 3 shards, merge; the same samples, images and embeddings ---------------
for fmt in png npy; do
  G="--generator $TMP/m/g.pt --count 50 --batch 8 --embedder $TMP/m/e.pt --format $fmt"
  R generate $G --out "$TMP/g1-$fmt" >/dev/null || bad "generate $fmt, one process"
  for i in 0 1 2; do R generate $G --out "$TMP/g3-$fmt" --shard $i/3 >/dev/null || bad "generate $fmt shard $i/3"; done
  expect_code 0 "generate $fmt --merge" -- "$REWIND" generate $G --out "$TMP/g3-$fmt" --merge -q
  for f in latents.npy embeddings.npy items.csv; do same "$TMP/g1-$fmt/$f" "$TMP/g3-$fmt/$f" "merged generate $fmt $f"; done
done
same "$TMP/g1-png/manifest.csv" "$TMP/g3-png/manifest.csv" "merged generate manifest.csv"
same "$TMP/g1-png/images/sample-000041.png" "$TMP/g3-png/images/sample-000041.png" "merged sample image"
same "$TMP/g1-npy/images.npy" "$TMP/g3-npy/images.npy" "merged images.npy"

# --- audit: two rounds of 2 shards, each merged; the report of one process ----------------------
awk -F, 'NR==1 || substr($2,3)+0 < 15' "$M" > "$TMP/faces/own.csv"
awk -F, 'NR==1 || substr($2,3)+0 >= 15' "$M" > "$TMP/faces/ref.csv"
A="--generator $TMP/m/g.pt --dataset $TMP/faces/own.csv --embedder $TMP/m/e.pt --reference $TMP/faces/ref.csv
   --discriminator $TMP/m/g.pt.disc --samples 600 --steps 20 --recover-top 6 --recover-control 3 --per-identity 2 --batch 4"
R audit $A --out "$TMP/a1" >/dev/null 2>&1 || bad "audit, one process"
for i in 0 1; do R audit $A --out "$TMP/a2" --shard $i/2 >/dev/null 2>&1 || bad "audit round 1 shard $i/2"; done
expect_code 0 "audit --merge, round 1" -- "$REWIND" audit $A --out "$TMP/a2" --merge -q
expect_grep "round 1 of 2 merged" "$TMP/out" "round 1 merge says what is next"
for i in 0 1; do R audit $A --out "$TMP/a2" --shard $i/2 >/dev/null 2>&1 || bad "audit round 2 shard $i/2"; done
expect_code 0 "audit --merge, round 2" -- "$REWIND" audit $A --out "$TMP/a2" --merge -q
same "$TMP/a1/report.csv" "$TMP/a2/report.csv" "merged audit report.csv"
grep -q 'recovery' "$TMP/a1/report.csv" && ok || bad "report.csv carries the recovery evidence"
head -1 "$TMP/a2/report.csv" | grep -q discriminator_percentile && grep -q "Discriminator test" "$TMP/a2/report.html" && ok || bad "the sharded audit carries the discriminator evidence"
[ -e "$TMP/a2/.rounds" ] && bad "the rounds' parts were not cleaned up" || ok
expect_code 2 "the demo is not sharded" -- "$REWIND" audit --out "$TMP/ad" --shard 0/2

# --- membership: two rounds of 2 shards, each merged; the scores of one process -----------------
awk -F, 'NR==1 || substr($2,3)+0 < 12' "$M" > "$TMP/faces/mem.csv"
awk -F, 'NR==1 || substr($2,3)+0 >= 12' "$M" > "$TMP/faces/non.csv"
R train gan --data "$M" --exclude "$TMP/faces/mem.csv" --out "$TMP/m/ref.pt" --arch dcgan32 --width 8 --latent-dim 16 \
  --steps 4 --batch 8 --seed 2 >/dev/null || bad "train reference gan"
MB="--generator $TMP/m/g.pt --members $TMP/faces/mem.csv --nonmembers $TMP/faces/non.csv --embedder $TMP/m/e.pt
    --reference-generator $TMP/m/ref.pt --discriminator $TMP/m/g.pt.disc --samples 600 --steps 10 --recover-max 8 --batch 4
    --bootstrap 50 --embed-batch 8"
R membership $MB --out "$TMP/mb1" >/dev/null 2>&1 || bad "membership, one process"
for i in 0 1; do R membership $MB --out "$TMP/mb2" --shard $i/2 >/dev/null 2>&1 || bad "membership round 1 shard $i/2"; done
expect_code 0 "membership --merge, round 1" -- "$REWIND" membership $MB --out "$TMP/mb2" --merge -q
expect_grep "membership round 1 of 2 merged" "$TMP/out" "membership round 1 merge says what is next"
expect_code 2 "membership round 2 shard of other options" -- "$REWIND" membership $MB --out "$TMP/mb2" --seed 5 --shard 0/2
expect_grep "round 1 of this sharded run was made with other options" "$TMP/err" "membership shard of other options explained"
expect_grep "(--seed was 1, here 5;" "$TMP/err" "membership round 2 shard names the changed flag"
expect_grep "take the options and inputs of its round 1" "$TMP/err" "membership round 2 shard: advice fits a sharded run"
# an option the stages do not depend on (--bootstrap) is refused as well, when the shard starts, not at the merge
expect_code 2 "membership round 2 shard of another --bootstrap" -- "$REWIND" membership ${MB/--bootstrap 50/--bootstrap 60} --out "$TMP/mb2" --shard 1/2
expect_grep "(--bootstrap was 50, here 60;" "$TMP/err" "membership round 2 shard names --bootstrap"
expect_code 2 "membership round 2 shard of another shard count" -- "$REWIND" membership $MB --out "$TMP/mb2" --shard 0/3
expect_grep "round 1 of this sharded run had 2 shards" "$TMP/err" "membership round 2 shard count named"
# the same files under other paths are the same run: round 2's second shard reads a byte-identical copy of the
# generator (another machine's copy) and the members' manifest by a path written otherwise (./, relative)
R membership $MB --out "$TMP/mb2" --shard 0/2 >/dev/null 2>&1 || bad "membership round 2 shard 0/2"
cp "$TMP/m/g.pt" "$TMP/m/g-copy.pt"
MB_OTHER="${MB/$TMP\/m\/g.pt/$TMP/m/g-copy.pt}"
MB_OTHER="${MB_OTHER/$TMP\/faces\/mem.csv/$TMP/faces/./mem.csv}"
R membership $MB_OTHER --out "$TMP/mb2" --shard 1/2 >"$TMP/out" 2>"$TMP/err" || bad "membership round 2 shard 1/2, the same files under other paths: $(tail -2 "$TMP/err")"
expect_code 0 "membership --merge, round 2" -- "$REWIND" membership $MB --out "$TMP/mb2" --merge -q
for f in scores.csv identity_scores.csv; do same "$TMP/mb1/$f" "$TMP/mb2/$f" "merged membership $f"; done
head -1 "$TMP/mb2/scores.csv" | grep -q discriminator_logit && ok || bad "sharded membership ran the discriminator attack"
grep -q 'identity-nn' "$TMP/mb1/scores.csv" && grep -q 'calibrated' "$TMP/mb1/scores.csv" && grep -q 'recon-identity-lira' "$TMP/mb1/scores.csv" && ok || bad "scores.csv carries every attack"
[ -e "$TMP/mb2/.rounds" ] || [ -e "$TMP/mb2/.stages" ] && bad "membership rounds not cleaned up" || ok

# --- the same under mpirun (an MPI build) --------------------------------------------------------
if command -v mpirun >/dev/null 2>&1 && "$REWIND" --version | grep -q "built with MPI"; then
  MPI="mpirun --allow-run-as-root --oversubscribe -np 2 -x REWIND_THREADS -x OMP_WAIT_POLICY"
  $MPI "$REWIND" embed $E --out "$TMP/me" -q >"$TMP/mpi.log" 2>&1 || bad "mpirun embed: $(tail -3 "$TMP/mpi.log")"
  same "$TMP/e1/embeddings.npy" "$TMP/me/embeddings.npy" "mpirun embeddings"
  same "$TMP/e1/items.csv" "$TMP/me/items.csv" "mpirun items.csv"
  B="--data $M --embedder $TMP/m/e.pt --factory IVF4,Flat --embed-batch 8"
  $MPI "$REWIND" index build $B --out "$TMP/mx" -q >"$TMP/mpi.log" 2>&1 || bad "mpirun index build: $(tail -3 "$TMP/mpi.log")"
  same "$TMP/x1-IVF4/index.faiss" "$TMP/mx/index.faiss" "mpirun IVF index"
  # on disk: rank 0 trains while the other waits, both add, rank 0 merges
  B="--data $M --embedder $TMP/m/e.pt --factory IVF4,Flat --embed-batch 8 --on-disk"
  $MPI "$REWIND" index build $B --out "$TMP/md" -q >"$TMP/mpi.log" 2>&1 || bad "mpirun index build --on-disk: $(tail -3 "$TMP/mpi.log")"
  for f in index.faiss lists.ivfdata; do same "$TMP/d1/$f" "$TMP/md/$f" "mpirun on-disk $f"; done
  $MPI "$REWIND" invert $I --out "$TMP/mi" -q >"$TMP/mpi.log" 2>&1 || bad "mpirun invert: $(tail -3 "$TMP/mpi.log")"
  same "$TMP/i1/latents.npy" "$TMP/mi/latents.npy" "mpirun latents"
  $MPI "$REWIND" audit $A --out "$TMP/ma" -q >"$TMP/mpi.log" 2>&1 || bad "mpirun audit: $(tail -3 "$TMP/mpi.log")"
  same "$TMP/a1/report.csv" "$TMP/ma/report.csv" "mpirun audit report.csv"
  $MPI "$REWIND" membership $MB --out "$TMP/mm" -q >"$TMP/mpi.log" 2>&1 || bad "mpirun membership: $(tail -3 "$TMP/mpi.log")"
  same "$TMP/mb1/scores.csv" "$TMP/mm/scores.csv" "mpirun membership scores.csv"
  # a rank that fails stops the run with an error, not a hang
  timeout 120 $MPI "$REWIND" embed --embedder "$TMP/m/e.pt" --data "$TMP/nothing.csv" --out "$TMP/mf" -q >"$TMP/mpi.log" 2>&1
  code=$?
  [ "$code" != 0 ] && [ "$code" != 124 ] && ok || bad "mpirun with a failing rank: exit $code"
else
  echo "shard.sh: no MPI build or no mpirun: the mpirun checks were not run" >&2
fi

echo "shard.sh: $pass passed, $fail failed"
[ "$fail" = 0 ]
