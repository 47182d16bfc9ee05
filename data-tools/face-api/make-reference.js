#!/usr/bin/env node
// Writes tests/fixtures/face_descriptor/reference.json: 128-d descriptors from face-api's recognition
// net (the dlib ResNet in TensorFlow.js) for K synthetic 150x150 RGB inputs, so that rewind's LibTorch
// port (src/models/face_resnet.cpp) can be checked against the JS original on identical tensors.
//
//   npm ci --prefix data-tools/face-api
//   node data-tools/face-api/make-reference.js [out.json]
//
// The inputs are integer-valued (0..255, exact in float32) and defined by the closed-form
// `pixel(k, y, x, c)` below; tests/unit/test_face_descriptor.cpp reproduces it bit for bit.
// face-api is given the raw 0..255 tensor: FaceRecognitionNet.forwardInput itself subtracts the
// mean RGB (122.782, 117.001, 104.298) and divides by 255 (a 150x150 tensor is neither padded nor
// resized by NetInput.toBatchTensor).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');

const K = 3;
const S = 150;

// Closed form, integer arithmetic only (all operands non-negative where % or >> is applied).
function pixel(k, y, x, c) {
  let v = (x * (k + 1) + y * (2 * k + 3) + 40 * c + 17 * k) % 256;  // wrapping gradient background
  const dx = x - 75;
  const dy = y - (70 + 2 * k);
  if (dx * dx * 3364 + dy * dy * 2025 <= 2025 * 3364) {  // face ellipse, rx 45, ry 58
    v = [205, 160, 130][c] - ((dx * dx + dy * dy) >> 6) + 5 * k;
    for (const ex of [-20, 20]) {
      const ey = dy + 12;
      if ((dx - ex) * (dx - ex) + ey * ey <= 49) v = 30 + 10 * c;  // eyes, radius 7
    }
    if (Math.abs(dx) <= 14 && dy >= 22 && dy <= 27) v = [120, 40, 50][c];  // mouth
  }
  v += ((x * 7 + y * 13 + c * 5 + k * 11) % 9) - 4;  // texture
  return Math.min(255, Math.max(0, v));
}

const FORMULA =
  'HWC [150,150,3], k=0..2, y,x=0..149, c=0..2 (RGB), integer arithmetic: ' +
  'v=(x*(k+1)+y*(2k+3)+40c+17k)%256; dx=x-75, dy=y-(70+2k); ' +
  'if dx*dx*3364+dy*dy*2025<=2025*3364: { v=[205,160,130][c]-((dx*dx+dy*dy)>>6)+5k; ' +
  'for ex in {-20,20}: if (dx-ex)^2+(dy+12)^2<=49: v=30+10c; ' +
  'if |dx|<=14 and 22<=dy<=27: v=[120,40,50][c] }; ' +
  'v+=((7x+13y+5c+11k)%9)-4; clamp to 0..255';

function makeInput(k) {
  const data = new Float32Array(S * S * 3);
  let sum = 0;
  for (let y = 0; y < S; ++y)
    for (let x = 0; x < S; ++x)
      for (let c = 0; c < 3; ++c) {
        const v = pixel(k, y, x, c);
        data[(y * S + x) * 3 + c] = v;
        sum += v;
      }
  return { tensor: tf.tensor3d(data, [S, S, 3], 'float32'), sum };
}

function version(pkg) {
  return JSON.parse(fs.readFileSync(require.resolve(`${pkg}/package.json`), 'utf8')).version;
}

async function main() {
  const root = path.resolve(__dirname, '..', '..');
  const out = process.argv[2] || path.join(root, 'tests', 'fixtures', 'face_descriptor', 'reference.json');
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json')), 'model');

  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);

  const descriptors = [];
  const inputSums = [];
  for (let k = 0; k < K; ++k) {
    const { tensor, sum } = makeInput(k);
    const t0 = Date.now();
    const d = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(tensor);
    const ms = Date.now() - t0;
    tensor.dispose();
    descriptors.push(Array.from(d));
    inputSums.push(sum);
    const norm = Math.sqrt(d.reduce((a, v) => a + v * v, 0));
    console.log(`input ${k}: pixel sum ${sum}, descriptor L2 norm ${norm.toFixed(4)}, ${ms} ms`);
  }

  const ref = {
    generator: 'data-tools/face-api/make-reference.js',
    face_api_version: version('@vladmandic/face-api'),
    tfjs_version: version('@tensorflow/tfjs'),
    backend: tf.getBackend(),
    model: 'face_recognition_model (dlib ResNet, 128-d, un-normalised output of computeFaceDescriptor)',
    input_shape: [S, S, 3],
    input_layout: 'HWC RGB float32, values 0..255 (integers), fed as-is to computeFaceDescriptor',
    formula: FORMULA,
    input_sums: inputSums,
    descriptors,
  };
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(ref) + '\n');
  console.log(`wrote ${out}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
