#!/usr/bin/env bash
# #17: face-api's own JS pipeline (SSD MobileNet v1, 68 landmarks, its crop and descriptor) against rewind's
# dlib pipeline (--crop dlib) and OpenCV's Haar detector on the six demo photos of @vladmandic/face-api:
# faces per photo and detector, rewind's descriptor vs face-api's for the same face, the pairs each calls
# the same person (face-api's rule: raw Euclidean distance < 0.6), and checks on dlib's chips.
# Needs: the build, `npm ci --omit=dev` in data-tools/face-api (scripts/install-deps.sh), node, and
# gdk-pixbuf-thumbnailer (Debian libgdk-pixbuf2.0-bin) and file, to decode the JPEGs with libjpeg's defaults, the
# pixels OpenCV gives rewind. ~4 min on 2 cores (face-api runs on tfjs's pure-JS CPU backend, one core).
# usage: bash experiments/face_api_compare.sh [path/to/rewind]
set -euo pipefail
cd "$(dirname "$0")/.."
R=${1:-build/rewind}
FA=data-tools/face-api/node_modules/@vladmandic/face-api
W=${W:-out/face-api-compare}
rm -rf "$W" && mkdir -p "$W/photos" "$W/png"
cp "$FA"/demo/sample*.jpg "$W/photos/"
for p in "$W"/photos/*.jpg; do  # -s = the longer side: libjpeg's full-size decode, not rescaled
  size=$(file -b "$p" | grep -o ', [0-9]*x[0-9]*,' | tr -dc '0-9x' | tr x '\n' | sort -n | tail -1)
  gdk-pixbuf-thumbnailer -s "$size" "$p" "$W/png/$(basename "$p" .jpg).png"
done
"$R" data crop-faces --data "$W/photos" --out "$W/dlib" --crop dlib --threads 1 -q
"$R" data crop-faces --data "$W/photos" --out "$W/haar" --crop detect --threads 1 -q
"$R" convert face-api --out "$W/face.pt" -q
"$R" embed --embedder "$W/face.pt" --data "$W/dlib" --crop none --out "$W/emb" --threads 1 -q
node data-tools/face-api/compare-photos.js "$W/png" "$W/dlib" "$W/haar" "$W/emb" "$W" | tee "$W/report.md"
echo "report: $W/report.md; numbers: $W/compare.json; dlib's chips: $W/dlib/contact-sheet.png"
