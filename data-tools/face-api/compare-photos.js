#!/usr/bin/env node
// #17: face-api's own JS pipeline (SSD MobileNet v1 detector, 68 landmarks, its crop, recognition net) on
// decoded photos, against rewind's dlib pipeline (`rewind data crop-faces --crop dlib` chips + boxes).
// Prints markdown tables (faces per photo and detector, matched faces and descriptor distances, same-person
// pairs under face-api's rule, quality checks on dlib's chips) and writes the numbers to OUT/compare.json.
//
//   node data-tools/face-api/compare-photos.js PNG_DIR DLIB_DIR HAAR_DIR EMB_DIR OUT
//
// PNG_DIR: the photos decoded to 8-bit RGB PNG (same base names as the JPEGs); DLIB_DIR / HAAR_DIR: crop-faces
// outputs (manifest.csv with photo, box_*, score; DLIB_DIR/faces/*.png the 150 px chips); EMB_DIR: `rewind
// embed --crop none` of DLIB_DIR (L2-normalised), checked against the raw descriptors computed here.
// Only `npm ci --omit=dev` is needed: dist/face-api.js bundles tfjs 4.22.0 (the devDependencies' version).
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');
const util = require('util');
const zlib = require('zlib');

const FA = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const SAME = 0.6;  // face-api's rule: same person below 0.6 (Euclidean, raw descriptors)

function loadFaceApi() {
  // face-api.js is the browser bundle (tfjs included); its node platform wants `util`, which the bundle replaces
  // with an empty module, so process.versions is hidden
  // while it loads and tfjs then gets a node platform and face-api its node env (fs) by hand.
  const file = path.join(FA, 'dist', 'face-api.js');
  const versions = process.versions;
  Object.defineProperty(process, 'versions', { value: {}, configurable: true });
  let faceapi;
  try {
    faceapi = vm.runInThisContext(`${fs.readFileSync(file, 'utf8')}\n;faceapi`, { filename: file });
  } finally {
    Object.defineProperty(process, 'versions', { value: versions, configurable: true });
  }
  faceapi.tf.setPlatform('node', {
    fetch, now: () => performance.now(), encode: (s) => new TextEncoder().encode(s),
    decode: (b, enc) => new TextDecoder(enc).decode(b), isTypedArray: (a) => util.types.isTypedArray(a),
  });
  globalThis.require = require;  // face-api's node env does require('fs')
  faceapi.env.initialize();
  return faceapi;
}

// 8-bit RGB/RGBA non-interlaced PNG -> { w, h, rgb: Uint8Array [H, W, 3] }.
function decodePng(file) {
  const b = fs.readFileSync(file);
  let w, h, ch;
  const idat = [];
  for (let o = 8; o < b.length; o += 12 + b.readUInt32BE(o)) {
    const type = b.toString('latin1', o + 4, o + 8);
    const d = b.subarray(o + 8, o + 8 + b.readUInt32BE(o));
    if (type === 'IHDR') {
      [w, h, ch] = [d.readUInt32BE(0), d.readUInt32BE(4), { 2: 3, 6: 4 }[d[9]]];
      if (d[8] !== 8 || d[12] !== 0 || !ch) throw new Error(`${file}: not 8-bit RGB(A) non-interlaced`);
    } else if (type === 'IDAT') idat.push(d);
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = w * ch;
  const px = Buffer.alloc(h * stride);
  for (let y = 0; y < h; ++y) {
    const f = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    for (let i = 0, o = y * stride; i < stride; ++i, ++o) {
      const a = i >= ch ? px[o - ch] : 0;
      const u = y ? px[o - stride] : 0;
      const c = y && i >= ch ? px[o - stride - ch] : 0;
      const pa = Math.abs(u - c), pb = Math.abs(a - c), pc = Math.abs(a + u - 2 * c);
      const p = [0, a, u, (a + u) >> 1, pa <= pb && pa <= pc ? a : pb <= pc ? u : c][f];
      px[o] = (raw[src + i] + p) & 255;
    }
  }
  const rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; ++i) for (let k = 0; k < 3; ++k) rgb[i * 3 + k] = px[i * ch + k];
  return { w, h, rgb };
}
const readPng = (tf, file) => { const { w, h, rgb } = decodePng(file); return tf.tensor3d(Int32Array.from(rgb), [h, w, 3], 'int32'); };

function writePng(file, w, h, rgb) {  // 8-bit RGB
  const crcTable = Array.from({ length: 256 }, (_, n) => { for (let k = 0; k < 8; ++k) n = n & 1 ? 0xedb88320 ^ (n >>> 1) : n >>> 1; return n >>> 0; });
  const crc = (b) => { let c = ~0; for (const x of b) c = crcTable[(c ^ x) & 255] ^ (c >>> 8); return ~c >>> 0; };
  const chunk = (type, d) => {
    const t = Buffer.concat([Buffer.from(type, 'latin1'), d]);
    const len = Buffer.alloc(4), sum = Buffer.alloc(4);
    len.writeUInt32BE(d.length);
    sum.writeUInt32BE(crc(t));
    return Buffer.concat([len, t, sum]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  const raw = Buffer.alloc(h * (w * 3 + 1));
  for (let y = 0; y < h; ++y) raw.set(rgb.subarray(y * w * 3, (y + 1) * w * 3), y * (w * 3 + 1) + 1);
  fs.writeFileSync(file, Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0))]));
}

// The two dlib chips of each pair side by side, `cols` pairs a row, in the order given.
function pairSheet(file, pairs, chipOf, cols = 4) {
  const S = 150, G = 4, PW = 2 * S + 3 * G;  // a pair: gap, chip, gap, chip, gap (grey frame)
  const rows = Math.ceil(pairs.length / cols), w = cols * PW, h = rows * (S + 2 * G);
  const rgb = new Uint8Array(w * h * 3).fill(255);
  pairs.forEach((p, k) => {
    const x0 = (k % cols) * PW, y0 = Math.floor(k / cols) * (S + 2 * G);
    for (let y = y0; y < y0 + S + 2 * G; ++y) rgb.fill(160, (y * w + x0) * 3, (y * w + x0 + PW) * 3);
    [p.a, p.b].forEach((id, m) => {
      const c = chipOf(id);
      for (let y = 0; y < S; ++y) rgb.set(c.rgb.subarray(y * S * 3, (y + 1) * S * 3), ((y0 + G + y) * w + x0 + G + m * (S + G)) * 3);
    });
  });
  writePng(file, w, h, rgb);
}

function readCsv(file) {
  const [head, ...rows] = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(','));
  return rows.map((r) => Object.fromEntries(head.map((k, i) => [k, r[i]])));
}

function readNpy(file) {  // float32 little-endian, C order, [N, D]
  const b = fs.readFileSync(file);
  const hlen = b.readUInt16LE(8);
  const [n, d] = b.toString('latin1', 10, 10 + hlen).match(/\((\d+), (\d+)\)/).slice(1).map(Number);
  const f = new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + 10 + hlen + n * d * 4));
  return Array.from({ length: n }, (_, i) => Array.from(f.subarray(i * d, (i + 1) * d)));
}

const dist = (a, b) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0));
const norm = (a) => dist(a, a.map(() => 0));
const median = (v) => { const s = [...v].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const box = (b) => ({ x: b.x, y: b.y, w: b.width, h: b.height });
const centre = (pts) => pts.reduce((c, p) => ({ x: c.x + p.x / pts.length, y: c.y + p.y / pts.length }), { x: 0, y: 0 });
// head roll (degrees) from face-api's landmarks: the eye line's angle; face-api's crop does not undo it, dlib's does
const roll = (lm) => { const [l, r] = [centre(lm.getLeftEye()), centre(lm.getRightEye())]; return (Math.atan2(r.y - l.y, r.x - l.x) * 180) / Math.PI; };
function iou(a, b) {
  const ix = Math.max(0, Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x));
  const iy = Math.max(0, Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y));
  return (ix * iy) / (a.w * a.h + b.w * b.h - ix * iy);
}
const f2 = (v) => v.toFixed(2), f3 = (v) => v.toFixed(3);
const base = (p) => path.basename(p).replace(/\.[^.]*$/, '');

// dlib's get_face_chip_details target for landmarks 27-54 and 60-64 (mean face, points 17..67), padding 0.25.
const MEAN_X = [0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124, 0.904991,
  0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036, 0.490127, 0.554217, 0.613373, 0.121737,
  0.187122, 0.265825, 0.334606, 0.260918, 0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335,
  0.254149, 0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721, 0.490127, 0.423532,
  0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874, 0.553364, 0.490127, 0.42689];
const MEAN_Y = [0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915,
  0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326, 0.216423,
  0.178758, 0.179852, 0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
  0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192,
  0.864805, 0.784792, 0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182];
const ALIGNED = [...Array(68).keys()].filter((i) => i >= 27 && !(i >= 55 && i <= 59) && !(i >= 65));
// RMS distance (px) between face-api's 68 landmarks on a dlib chip and where dlib's alignment put those points.
function landmarkRms(pos, size) {
  const t = (m) => ((0.25 + m) / 1.5) * size;
  const s = ALIGNED.reduce((a, i) => a + (pos[i].x - t(MEAN_X[i - 17])) ** 2 + (pos[i].y - t(MEAN_Y[i - 17])) ** 2, 0);
  return Math.sqrt(s / ALIGNED.length);
}

async function main() {
  const [pngDir, dlibDir, haarDir, embDir, out] = process.argv.slice(2);
  if (!out) throw new Error('usage: compare-photos.js PNG_DIR DLIB_DIR HAAR_DIR EMB_DIR OUT');
  fs.mkdirSync(out, { recursive: true });
  const t00 = Date.now();
  const faceapi = loadFaceApi();
  const { tf } = faceapi;
  await tf.setBackend('cpu');
  await tf.ready();
  const modelDir = path.join(FA, 'model');
  for (const net of ['ssdMobilenetv1', 'faceLandmark68Net', 'faceRecognitionNet']) await faceapi.nets[net].loadFromDisk(modelDir);
  const low = new faceapi.SsdMobilenetv1Options({ minConfidence: 0.01 });

  // 1. face-api's pipeline on each photo: SSD once down to score 0.01 (SSD is ~15 s a photo on this backend),
  // then landmarks and descriptors of the boxes >= 0.5, exactly what detectAllFaces(img) (minConfidence 0.5)
  // .withFaceLandmarks().withFaceDescriptors() gives: greedy NMS keeps a box or not by the higher-scored boxes only.
  const photos = [];
  for (const f of fs.readdirSync(pngDir).filter((n) => n.endsWith('.png')).sort()) {
    const img = readPng(tf, path.join(pngDir, f));
    const t0 = Date.now();
    const all = await faceapi.detectAllFaces(img, low);
    const dets = all.filter((d) => d.score >= 0.5).map((detection) => ({ detection }));
    const res = await new faceapi.DetectAllFaceLandmarksTask(Promise.resolve(dets), img).withFaceDescriptors();
    const ms = Date.now() - t0;
    photos.push({
      photo: base(f), size: img.shape.slice(0, 2), ms,
      faces: res.map((r) => ({ box: box(r.detection.box), score: r.detection.score, roll: roll(r.landmarks), descriptor: Array.from(r.descriptor) })),
      low: all.map((d) => ({ box: box(d.box), score: d.score })),
    });
    img.dispose();
    console.error(`${f}: ${res.length} faces, ${ms} ms`);
  }

  // rewind's dlib chips: raw descriptor (face-api's net on the chip: what rewind's port computes before its L2
  // normalisation) and face-api's landmarks on the chip.
  const dlib = readCsv(path.join(dlibDir, 'manifest.csv'));
  const emb = readNpy(path.join(embDir, 'embeddings.npy'));
  const embRow = Object.fromEntries(readCsv(path.join(embDir, 'items.csv')).map((r) => [r.path, Number(r.row)]));
  let t0 = Date.now();
  for (const d of dlib) {
    const chip = readPng(tf, path.join(dlibDir, d.path));
    d.id = d.identity;
    d.photoName = base(d.photo);
    d.box = { x: +d.box_x, y: +d.box_y, w: +d.box_w, h: +d.box_h };
    d.descriptor = Array.from(await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(chip));
    const e = emb[embRow[d.path]];
    d.rewindCos = d.descriptor.reduce((s, v, i) => s + v * e[i], 0) / norm(d.descriptor);
    d.lmRms = landmarkRms((await faceapi.nets.faceLandmark68Net.detectLandmarks(chip)).positions, chip.shape[0]);
    chip.dispose();
  }
  const chipMs = (Date.now() - t0) / dlib.length;

  // Match dlib's boxes to face-api's (same photo, greedy by IoU, IoU >= 0.3).
  const faces = [];  // faces both find
  for (const p of photos) {
    const cand = [];
    dlib.filter((d) => d.photoName === p.photo).forEach((d) => p.faces.forEach((f, j) => cand.push([iou(d.box, f.box), d, j])));
    const usedF = new Set();
    for (const [v, d, j] of cand.sort((a, b) => b[0] - a[0])) {
      if (v < 0.3 || d.match !== undefined || usedF.has(j)) continue;
      d.match = j;
      usedF.add(j);
      faces.push({ id: d.id, dlib: d, fa: p.faces[j], iou: v });
    }
    p.faOnly = p.faces.filter((_, j) => !usedF.has(j));
    // best SSD score (down to 0.01) on each dlib box
    for (const d of dlib.filter((x) => x.photoName === p.photo)) {
      const best = p.low.map((l) => [iou(d.box, l.box), l.score]).filter((x) => x[0] >= 0.3).sort((a, b) => b[1] - a[1])[0];
      d.ssd = best ? best[1] : null;
    }
  }

  const haar = readCsv(path.join(haarDir, 'manifest.csv'));
  console.log('### Faces per photo\n');
  console.log('| photo | dlib HOG | Haar | face-api SSD (score >= 0.5) | found by both (IoU >= 0.3) | face-api time (SSD, landmarks, descriptors) |');
  console.log('|---|---|---|---|---|---|');
  const count = (rows, p) => rows.filter((r) => base(r.photo) === p).length;
  for (const p of photos) {
    console.log(`| ${p.photo}.jpg | ${count(dlib, p.photo)} | ${count(haar, p.photo)} | ${p.faces.length} | ${faces.filter((f) => f.dlib.photoName === p.photo).length} | ${(p.ms / 1000).toFixed(1)} s |`);
  }
  console.log(`| all | ${dlib.length} | ${haar.length} | ${photos.reduce((s, p) => s + p.faces.length, 0)} | ${faces.length} | |`);
  console.log('');
  for (const p of photos) {
    for (const f of p.faOnly) console.log(`- face-api only: ${p.photo} box (${f.box.x.toFixed(0)}, ${f.box.y.toFixed(0)}, ${f.box.w.toFixed(0)}x${f.box.h.toFixed(0)}) score ${f3(f.score)}`);
  }
  for (const d of dlib.filter((x) => x.match === undefined)) console.log(`- dlib only: ${d.id} (HOG score ${d.score}), best face-api SSD score on its box ${d.ssd === null ? '< 0.01' : f3(d.ssd)}`);

  // 2. Same face, two pipelines.
  const cross = faces.map((f) => dist(f.dlib.descriptor, f.fa.descriptor));
  console.log('\n### Same face: rewind dlib chip vs face-api JS pipeline\n');
  console.log('| face | HOG score | SSD score | box IoU | head roll | raw norm dlib chip | raw norm face-api | distance |');
  console.log('|---|---|---|---|---|---|---|---|');
  faces.forEach((f, i) => console.log(`| ${f.id} | ${f2(+f.dlib.score)} | ${f3(f.fa.score)} | ${f2(f.iou)} | ${f.fa.roll.toFixed(0)}° | ${f3(norm(f.dlib.descriptor))} | ${f3(norm(f.fa.descriptor))} | ${f3(cross[i])} |`));
  console.log(`\n${faces.length} faces: distance median ${f3(median(cross))}, max ${f3(Math.max(...cross))}, min ${f3(Math.min(...cross))}` +
    `; rewind embed (L2-normalised) vs the raw chip descriptor here: cosine >= ${Math.min(...dlib.map((d) => d.rewindCos)).toFixed(6)}`);

  const pairs = [];
  for (let i = 0; i < faces.length; ++i) {
    for (let j = i + 1; j < faces.length; ++j) {
      const a = faces[i], b = faces[j];
      pairs.push({ a: a.id, b: b.id, dlib: dist(a.dlib.descriptor, b.dlib.descriptor), fa: dist(a.fa.descriptor, b.fa.descriptor) });
    }
  }
  const same = pairs.filter((p) => p.dlib < SAME || p.fa < SAME).sort((x, y) => Math.min(x.dlib, x.fa) - Math.min(y.dlib, y.fa));
  console.log(`\n### Pairs called the same person (distance < ${SAME}) among the ${faces.length} faces both find (${pairs.length} pairs)\n`);
  console.log('| pair | rewind dlib | face-api JS | agree | one photo (so two people) |');
  console.log('|---|---|---|---|---|');
  const onePhoto = (p) => p.a.replace(/-\d+$/, '') === p.b.replace(/-\d+$/, '');
  for (const p of same) {
    console.log(`| ${p.a} - ${p.b} | ${f3(p.dlib)}${p.dlib < SAME ? ' same' : ''} | ${f3(p.fa)}${p.fa < SAME ? ' same' : ''} | ${(p.dlib < SAME) === (p.fa < SAME) ? 'yes' : 'no'} | ${onePhoto(p) ? 'yes' : ''} |`);
  }
  const chip = (id) => decodePng(path.join(dlibDir, dlib.find((d) => d.id === id).path));
  pairSheet(path.join(out, 'same-pairs.png'), same, chip);
  console.log(`\n(${path.join(out, 'same-pairs.png')}: dlib's two chips of each pair above, in this order, 4 pairs a row)`);
  const n = (fd, ff) => pairs.filter((p) => (p.dlib < SAME) === fd && (p.fa < SAME) === ff).length;
  console.log(`\nboth same ${n(true, true)}, only rewind dlib ${n(true, false)}, only face-api ${n(false, true)}, both different ${n(false, false)}`);

  // 3. Checks on every dlib chip (the badge is the HOG score 0.005 one).
  console.log('\n### Checks on dlib\'s chips\n');
  console.log('| chip | HOG score | face-api SSD on its box | face-api landmarks vs dlib alignment (RMS px) | nearest other chip (distance) |');
  console.log('|---|---|---|---|---|');
  for (const d of dlib) {
    const near = dlib.filter((x) => x !== d).map((x) => [dist(d.descriptor, x.descriptor), x.id]).sort((a, b) => a[0] - b[0])[0];
    console.log(`| ${d.id} | ${f3(+d.score)} | ${d.ssd === null ? '< 0.01' : f3(d.ssd)} | ${d.lmRms.toFixed(1)} | ${near[1]} (${f3(near[0])}) |`);
  }
  const total = (Date.now() - t00) / 1000;
  console.log(`\nface-api on the chips: ${(chipMs / 1000).toFixed(2)} s a chip (descriptor and landmarks); total ${total.toFixed(0)} s, tfjs ${tf.version_core} ${tf.getBackend()} backend`);

  const strip = (d) => ({ id: d.id, photo: d.photoName, box: d.box, hog: +d.score, ssd: d.ssd, lmRms: d.lmRms, rewindCos: d.rewindCos, descriptor: d.descriptor });
  fs.writeFileSync(path.join(out, 'compare.json'), JSON.stringify({ photos, dlib: dlib.map(strip), faces: faces.map((f, i) => ({ id: f.id, iou: f.iou, distance: cross[i] })), pairs }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
