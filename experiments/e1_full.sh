#!/usr/bin/env bash
# #16 "E1 at full strength" pilot: on synthetic faces, at 64 and 128 training images, uncalibrated
# (recovery, identity-nn, recon-identity) vs reference-calibrated (calibrated, lira, rmia; K=2 reference GANs)
# membership attacks, every GAN trained for the SAME NUMBER OF EPOCHS at every size (steps = epochs * S / batch).
#
# Data: `rewind data synth-faces --size 32 --per-identity 4 --identities S` per size S; with n = S/4 the identity
# blocks are disjoint:
#   members     identities [0, n)   x 4 images = the target GAN's whole training set (all S images)
#   nonmembers  identities [n, 2n)  x 4 images, never trained on by any GAN
#   ref1, ref2  identities [2n, 3n) and [3n, 4n): each reference GAN's own training set
# GANs: `rewind train gan --arch dcgan32 --channels 3 --width WIDTH --batch 64 --steps EPOCHS*S/64`, seeds 1
# (target), 2 (ref1), 3 (ref2).
# Attacks: `rewind membership --attacks recovery,calibrated,lira,rmia,identity-nn,recon-identity,identity-calibrated,
# identity-lira,recon-identity-lira` (the last since session 34) with the demo
# embedder, 1000 samples, default recovery (2 restarts x 200 Adam steps), --seed 1, K=2 references.
# One thread everywhere (REWIND_THREADS=1, OMP_NUM_THREADS=1); run under `nice -n 10`.
# TPR at 1% FPR: rewind reports it only with >= 300 non-members, so each size also gets a "wide" run: the same
# target, members and references against WIDE identities x 4 images (default 80 x 4 = 320) rendered from
# --first-identity 500000 (never trained on by any GAN, nor by the demo embedder, which learned identities
# 100000..101499), into wide2-WIDE/ and mia-wide2/ (--wide 0 skips it). Until session 30 the wide set started at
# 100000, inside the embedder's training identities (wide-WIDE/, mia-wide/: kept for comparison).
# Validity: rewind's blind baseline (image statistics -> 5-fold logistic regression, folds dealt by identity)
# is in each report; image-level intervals resample whole identities (cluster bootstrap).
# Finished steps (target.pt, ref1.pt, ref2.pt, mia*/report.json) are skipped, so the script can be rerun to resume.
# Writes out/e1full/faces-S/ (faces, sets), out/e1full/w<WIDTH>-e<EPOCHS>/<S>/ (GANs, mia*), out/e1full/timings.tsv, and the table to
# stdout (and to --table FILE if given).
# --data fmnist: Fashion-MNIST instead (Debian's dataset-fashion-mnist, 8192 training images imported): every image
# its own identity; members, non-members, ref1, ref2 (S images each) and the wide set (WIDE x 4 images) are disjoint
# draws with the same class mix (experiments/torchscript_dcgan.py sets), 28x28 padded to 32x32, 1 channel; attacks
# recovery, calibrated, lira, rmia (the identity attacks need a face embedder); runs under out/e1full/fmnist-w.../.
# --targets-only: no reference GANs; the target's attacks that need none (recovery, identity-nn, recon-identity and
# the white-box discriminator attack on the target's own G.disc) against the wide set only, into mia-wide2-t/ (for
# sizes where three GANs cost too much on a CPU).
# usage: nice -n 10 experiments/e1_full.sh [--sizes "64 128"] [--epochs 3000] [--width 16] [--wide 80] [--data faces|fmnist]
#        [--table FILE] [--targets-only]
set -euo pipefail
cd "$(dirname "$0")/.."
REWIND=${REWIND:-./build/rewind}
SIZES="64 128"; EPOCHS=3000; WIDTH=16; BATCH=64; TABLE=""; WIDE=80; DATA=faces; TARGETS_ONLY=0
EMB=data-tools/demo/embedder.pt
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2;; --epochs) EPOCHS="$2"; shift 2;; --width) WIDTH="$2"; shift 2;;
    --table) TABLE="$2"; shift 2;; --wide) WIDE="$2"; shift 2;; --data) DATA="$2"; shift 2;;
    --targets-only) TARGETS_ONLY=1; shift;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
export REWIND_THREADS=1 OMP_NUM_THREADS=1
TH=(--threads 1)
W=out/e1full
mkdir -p "$W"
T="$W/timings.tsv"
[ -f "$T" ] || printf 'step\tseconds\n' > "$T"
. experiments/lib.sh  # timed NAME CMD...: appends its wall time to $T

CH=3; PREFIX=""; ATTACKS=recovery,calibrated,lira,rmia,identity-nn,recon-identity,identity-calibrated,identity-lira,recon-identity-lira
ID_ARGS=(--embedder "$EMB" --samples 1000)
if [ "$DATA" = fmnist ]; then
  CH=1; PREFIX=fmnist-; ATTACKS=recovery,calibrated,lira,rmia; ID_ARGS=()
  [ -f "$W/fmnist/manifest.csv" ] || "$REWIND" data fashion-mnist --out "$W/fmnist" --limit 8192 "${TH[@]}" -q >/dev/null
fi
for S in $SIZES; do
  n=$((S / 4))
  if [ "$DATA" = fmnist ]; then
    F="$W/fmnist-$S"
    [ -f "$F/ref2.csv" ] || /usr/bin/python3 experiments/torchscript_dcgan.py sets --manifest "$W/fmnist/manifest.csv" \
        --out "$F" --per-set "$S" --sets "members,nonmembers,ref1,ref2,wide:$((WIDE * 4))" --seed 1 >/dev/null
  else
    F="$W/faces-$S"
    [ -f "$F/manifest.csv" ] || "$REWIND" data synth-faces --out "$F" --identities "$S" --per-identity 4 --size 32 \
        "${TH[@]}" -q >/dev/null
    block() {  # block NAME B: identities [B*n, (B+1)*n), all 4 images each
      [ -f "$F/$1.csv" ] || awk -F, -v lo=$(($2 * n)) -v hi=$((($2 + 1) * n)) \
          'NR==1 || (substr($2,3)+0 >= lo && substr($2,3)+0 < hi)' "$F/manifest.csv" > "$F/$1.csv"
    }
    block members 0; block nonmembers 1; block ref1 2; block ref2 3
  fi
  R="$W/${PREFIX}w$WIDTH-e$EPOCHS/$S"
  mkdir -p "$R"
  STEPS=$((EPOCHS * S / BATCH))
  seed=1
  GANS="target ref1 ref2"; [ "$TARGETS_ONLY" = 1 ] && GANS=target
  for g in $GANS; do
    set_=$g; [ "$g" = target ] && set_=members
    if [ ! -f "$R/$g.pt" ]; then
      echo "== w$WIDTH-e$EPOCHS S=$S: training $g on $set_ ($STEPS steps, seed $seed)" >&2
      timed "train w$WIDTH-e$EPOCHS S=$S $g ($STEPS steps)" "$REWIND" train gan --data "$F/$set_.csv" \
          --out "$R/$g.pt" --arch dcgan32 --width "$WIDTH" --channels "$CH" --batch "$BATCH" --steps "$STEPS" \
          --seed "$seed" --checkpoint-every 1000 --sample-every 1000000 --resume "${TH[@]}" > "$R/train-$g.log" 2>&1
      tail -2 "$R/train-$g.log" >&2
    fi
    seed=$((seed + 1))
  done
  mia() {  # mia DIR NONMEMBERS
    [ -f "$R/$1/report.json" ] && return 0
    echo "== w$WIDTH-e$EPOCHS S=$S: membership -> $1" >&2
    timed "membership w$WIDTH-e$EPOCHS S=$S $1" "$REWIND" membership --generator "$R/target.pt" \
        --members "$F/members.csv" --nonmembers "$2" \
        --reference-generator "$R/ref1.pt" --reference-generator "$R/ref2.pt" \
        --attacks "$ATTACKS" "${ID_ARGS[@]}" --seed 1 "${TH[@]}" --out "$R/$1" > "$R/$1.log" 2>&1
  }
  if [ "$TARGETS_ONLY" = 1 ]; then
    X="$W/wide2-$WIDE"
    [ -f "$X/manifest.csv" ] || "$REWIND" data synth-faces --out "$X" --identities "$WIDE" --per-identity 4 --size 32 \
        --first-identity 500000 --no-contact-sheet "${TH[@]}" -q >/dev/null
    [ -f "$R/mia-wide2-t/report.json" ] || timed "membership w$WIDTH-e$EPOCHS S=$S mia-wide2-t" "$REWIND" membership \
        --generator "$R/target.pt" --discriminator "$R/target.pt.disc" --members "$F/members.csv" \
        --nonmembers "$X/manifest.csv" --attacks recovery,identity-nn,recon-identity,discriminator "${ID_ARGS[@]}" \
        --seed 1 "${TH[@]}" --out "$R/mia-wide2-t" > "$R/mia-wide2-t.log" 2>&1
    continue
  fi
  mia mia "$F/nonmembers.csv"
  if [ "$WIDE" -gt 0 ] && [ "$DATA" = fmnist ]; then
    mia mia-wide "$F/wide.csv"
  elif [ "$WIDE" -gt 0 ]; then
    X="$W/wide2-$WIDE"
    [ -f "$X/manifest.csv" ] || "$REWIND" data synth-faces --out "$X" --identities "$WIDE" --per-identity 4 --size 32 \
        --first-identity 500000 --no-contact-sheet "${TH[@]}" -q >/dev/null
    mia mia-wide2 "$X/manifest.csv"
  fi
done

python3 - "$W" <<'PY' | { if [ -n "$TABLE" ]; then tee "$TABLE"; else cat; fi; }
import json, sys, glob, csv
w = sys.argv[1]
def ci(v):
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"
print("| run | S | non-members | attack | image AUC [95% CI] | TPR@1%FPR [95% CI] | TPR@0 FP (emp.) | MRE-gap | identity AUC [95% CI] |")
print("|---|---|---|---|---|---|---|---|---|")
def key(f):
    p = f.split("/")
    return (p[-4], int(p[-3]), p[-2])
for f in sorted(glob.glob(f"{w}/w*-e*/*/mia*/report.json") + glob.glob(f"{w}/fmnist-w*-e*/*/mia*/report.json"), key=key):
    run, s, d = key(f)
    rep = json.load(open(f)); m = rep["metrics"]
    rows = list(csv.DictReader(open(f.replace("report.json", "scores.csv"))))
    for att, v in m["image"].items():
        t = v.get("tpr_at_fpr", {}).get("0.01")
        ts = "n/a (< 300 non-members)" if t is None or isinstance(t, str) else ci(t)
        col = att + "_score"
        emp = ""
        if rows and col in rows[0]:
            mem = [float(r[col]) for r in rows if r["member"] == "1" and r[col] not in ("", "nan")]
            non = [float(r[col]) for r in rows if r["member"] == "0" and r[col] not in ("", "nan")]
            if mem and non:
                thr = max(non); emp = f"{sum(x > thr for x in mem) / len(mem):.3f}"
        gap = f"{v['mre_gap']:.3f}" if v.get("mre_gap") is not None else ""
        ida = m.get("identity", {}).get(att, {}).get("auc")
        print(f"| {run} | {s} | {v['nonmembers']} | {att} | {ci(v['auc'])} | {ts} | {emp} | {gap} | {ci(ida) if ida else ''} |")
    b = rep.get("blind_baseline")
    if b and b.get("auc"):
        print(f"| {run} | {s} | {b['nonmembers']} | blind baseline (no model) | {ci(b['auc'])} | | | | |")
PY
