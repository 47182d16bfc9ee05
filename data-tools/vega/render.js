#!/usr/bin/env node
// Renders the plots a rewind report wrote beside itself (DIR/plots/*.vl.json, Vega-Lite) as SVG
// files for papers, headless, with the same pinned Vega that the reports inline:
//   node data-tools/vega/render.js OUT_DIR      (e.g. out/demo/audit) -> OUT_DIR/plots/NAME.svg
// rewind itself has no JavaScript engine, so the SVGs come from this script (run after
// scripts/install-deps.sh); the report pages draw the same specs in the browser.
'use strict';
const fs = require('fs');
const path = require('path');
const vega = require('vega');
const vegaLite = require('vega-lite');

async function main() {
  const dir = process.argv[2];
  if (!dir) {
    console.error('usage: node data-tools/vega/render.js OUT_DIR   (a folder holding report.html and plots/)');
    process.exit(2);
  }
  const plots = path.join(dir, 'plots');
  if (!fs.existsSync(plots)) {
    console.error(`${plots}: no plots folder (run a rewind command that writes a report into ${dir} first)`);
    process.exit(3);
  }
  const specs = fs.readdirSync(plots).filter((f) => f.endsWith('.vl.json')).sort();
  if (specs.length === 0) {
    console.error(`${plots}: no .vl.json plot specs`);
    process.exit(3);
  }
  for (const f of specs) {
    const spec = JSON.parse(fs.readFileSync(path.join(plots, f), 'utf8'));
    const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), {renderer: 'none'});
    const svg = await view.toSVG();
    const out = path.join(plots, f.replace(/\.vl\.json$/, '.svg'));
    fs.writeFileSync(out + '.tmp', svg);
    fs.renameSync(out + '.tmp', out);
    console.log(out);
  }
}

main().catch((e) => {
  console.error(`render.js: ${e.message}`);
  process.exit(1);
});
