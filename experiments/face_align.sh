#!/usr/bin/env bash
# #17: dlib's face pipeline (--crop dlib: HOG detector, 68 landmarks, dlib's alignment) against
# OpenCV's Haar detector (--crop detect) on the six demo photos of the @vladmandic/face-api npm
# package (installed by scripts/install-deps.sh). Prints the faces each finds per photo; the
# aligned chips are in $W/dlib/contact-sheet.png (and faces/), Haar's in $W/haar/.
# usage: bash experiments/face_align.sh [path/to/rewind]
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-build/rewind}
FA=data-tools/face-api/node_modules/@vladmandic/face-api
W=${W:-out/face-align}
rm -rf "$W" && mkdir -p "$W/photos"
cp "$FA"/demo/sample*.jpg "$W/photos/"
"$R" data crop-faces --data "$W/photos" --out "$W/dlib" --crop dlib -q
"$R" data crop-faces --data "$W/photos" --out "$W/haar" --crop detect -q
echo "| photo | dlib HOG | Haar |"
echo "|---|---|---|"
for p in "$W"/photos/*.jpg; do
  n=$(basename "$p")
  d=$(awk -F, -v n="/$n" 'NR>1 && substr($3, length($3) - length(n) + 1) == n' "$W/dlib/manifest.csv" | wc -l)
  h=$(awk -F, -v n="/$n" 'NR>1 && substr($3, length($3) - length(n) + 1) == n' "$W/haar/manifest.csv" | wc -l)
  echo "| $n | $d | $h |"
done
echo "boxes and scores: $W/dlib/manifest.csv (box_x, box_y, box_w, box_h, score); chips: $W/dlib/contact-sheet.png"
