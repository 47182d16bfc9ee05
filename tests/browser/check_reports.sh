#!/usr/bin/env bash
# Browser test (#18): headless Chromium (Debian's `chromium`) opens the demo audit report, a
# membership report, a split-attack report and the demo compare report, each made here at a small size, and checks that
# the page logs nothing to the console (no script error), that every image decodes, that every plot
# rendered (each SVG non-empty and laid out, each canvas sized; at least MIN_PLOTS per report) and
# that nothing loads from outside the file (reports must open offline). A screenshot of each (1280 px
# wide) is kept in ART_DIR as an artefact.
# usage: tests/browser/check_reports.sh REWIND [ART_DIR]   (exit 77 = skipped: no chromium)
set -uo pipefail
REWIND=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ART=${2:-$PWD/browser}
if ! command -v chromium >/dev/null 2>&1; then
  echo "browser: chromium not found: apt-get install chromium (scripts/install-deps.sh installs it); skipped" >&2
  exit 77
fi
TMP=$(mktemp -d); [ -n "${KEEP_TMP:-}" ] || trap 'rm -rf "$TMP"' EXIT; echo "work: $TMP" >&2
mkdir -p "$ART"
fail=0
step() {
  local what=$1 t0=$SECONDS; shift
  "$@" >"$TMP/out" 2>"$TMP/err" || { echo "FAIL: $what: $(tail -c 600 "$TMP/err")"; exit 1; }
  echo "made the $what report input in $((SECONDS - t0)) s"
}
step "audit demo" "$REWIND" audit --out "$TMP/audit" --samples 200 --restarts 1 --steps 5 -q
step "compare demo" "$REWIND" compare --out "$TMP/compare" --samples 50 --restarts 1 --steps 5 --wb-steps 5 \
  --splits relu1,pool2,fc1 --defense none,noise=1 -q
# membership on the demo's people: its members (trained on) against its new identities, first images
D="$TMP/audit/demo-data/dataset"
awk -F, 'NR == 1 || ($3 == 1 && $1 ~ /\/0\.png$/)' "$D/manifest.csv" >"$D/members.csv"
awk -F, 'NR == 1 || ($3 == 0 && $1 ~ /\/0\.png$/)' "$D/manifest.csv" >"$D/nonmembers.csv"
step "membership" "$REWIND" membership --generator "$ROOT/data-tools/demo/generator.pt" --embedder "$ROOT/data-tools/demo/embedder.pt" \
  --members "$D/members.csv" --nonmembers "$D/nonmembers.csv" --samples 200 --restarts 1 --steps 5 --out "$TMP/membership" -q
step "faces" "$REWIND" data synth-faces --out "$TMP/faces" --identities 8 --per-identity 1 --size 32 --no-contact-sheet -q
step "split-attack" "$REWIND" split-attack --classifier "$ROOT/data-tools/demo/classifier.pt" --split all \
  --targets "$TMP/faces/manifest.csv" --label-column identity --limit 6 --wb-steps 20 --defense none,noise=1 --out "$TMP/split" -q

chrome() {
  timeout 120 chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$TMP/profile" \
    --enable-logging=stderr --v=0 --virtual-time-budget=5000 "$@"
}
# check NAME REPORT MIN_PLOTS [SCREENSHOT_HEIGHT]
check() {
  local name=$1 report=$2 min_plots=$3
  python3 - "$report" "$ROOT/tests/browser/check.js" "$TMP/$name-check.html" <<'PY'
import sys
html, js, out = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
i = html.rfind('</body>')
open(out, 'w').write(html[:i] + '<script>' + js + '</script>' + html[i:])
PY
  chrome --dump-dom "file://$TMP/$name-check.html" >"$TMP/$name.dom" 2>"$TMP/$name.log"
  if grep -q "CONSOLE" "$TMP/$name.log"; then
    echo "FAIL: $name: the page logged to the console:"; grep "CONSOLE" "$TMP/$name.log" | head -5; fail=1
  fi
  python3 - "$TMP/$name.dom" "$name" "$min_plots" <<'PY' || fail=1
import html, json, re, sys
dom, name, min_plots = open(sys.argv[1]).read(), sys.argv[2], int(sys.argv[3])
m = (re.findall(r"<pre id=\"rewind-browser-check\">(.*?)</pre>", dom, re.S) or [None])[-1]
if not m:
    print(f"FAIL: {name}: the check did not run (the page did not finish loading?)"); sys.exit(1)
r = json.loads(html.unescape(m))
bad = []
if r["broken_images"]: bad.append(f"{len(r['broken_images'])} images did not decode: {r['broken_images'][:3]}")
if r["empty_svgs"]: bad.append(f"{r['empty_svgs']} of {r['svgs']} SVG plots are empty")
if r["blank_canvases"]: bad.append(f"{r['blank_canvases']} canvases have no size")
if r["external"]: bad.append(f"loads from outside the file: {r['external'][:3]}")
if r["svgs"] + r["canvases"] < min_plots: bad.append(f"{r['svgs'] + r['canvases']} plots rendered, want >= {min_plots}")
if r["tables"] == 0: bad.append("no table")
print(f"{'FAIL' if bad else 'ok'}: {name}: {r['images']} images, {r['svgs']} SVG, {r['canvases']} canvas, "
      f"{r['tables']} tables" + ("; " + "; ".join(bad) if bad else ""))
sys.exit(1 if bad else 0)
PY
  chrome --screenshot="$ART/$name.png" --window-size=1280,"${4:-2400}" --hide-scrollbars "file://$report" >/dev/null 2>&1 ||
    { echo "FAIL: $name: no screenshot"; fail=1; }
  [ -s "$ART/$name.png" ] || { echo "FAIL: $name: empty screenshot"; fail=1; }
}
# the checker's self-test: a page with a script error, an image that does not load, an external
# image and an empty SVG must fail every check (else the checks below prove nothing)
check self-test "$ROOT/tests/browser/bad.html" 1 >"$TMP/self-test.out"
if [ "$fail" = 1 ] && grep -q "logged to the console" "$TMP/self-test.out" && grep -q "did not decode" "$TMP/self-test.out" &&
   grep -q "outside the file" "$TMP/self-test.out" && grep -q "SVG plots are empty" "$TMP/self-test.out"; then
  echo "ok: the self-test page fails every check"; fail=0; rm -f "$ART/self-test.png"
else
  echo "FAIL: the checker passed a broken page:"; cat "$TMP/self-test.out"; exit 1
fi
check audit "$TMP/audit/report.html" 3 1600
check membership "$TMP/membership/report.html" 2 2000
check split-attack "$TMP/split/report.html" 3 1400
check compare "$TMP/compare/report.html" 1 1800
# the same plots as SVG files for papers (data-tools/vega/render.js, headless, no browser)
if [ -f "$ROOT/data-tools/vega/node_modules/vega/build/vega.min.js" ] && command -v node >/dev/null 2>&1; then
  for d in audit membership split compare; do
    node "$ROOT/data-tools/vega/render.js" "$TMP/$d" >"$TMP/render.out" 2>&1 || { echo "FAIL: render.js $d: $(cat "$TMP/render.out")"; fail=1; }
  done
  n=$(ls "$TMP"/*/plots/*.svg 2>/dev/null | wc -l)
  nspec=$(ls "$TMP"/*/plots/*.vl.json 2>/dev/null | wc -l)
  if [ "$n" -ge 6 ] && [ "$n" = "$nspec" ] && ! find "$TMP" -path '*/plots/*.svg' -size -2k | grep -q .; then
    echo "ok: render.js wrote $n SVG plots, one per spec"; cp "$TMP/membership/plots/roc-loglog.svg" "$ART/" 2>/dev/null
  else
    echo "FAIL: render.js wrote $n SVGs for $nspec specs (or some are nearly empty)"; fail=1
  fi
else
  echo "FAIL: Vega is not installed in data-tools/vega (scripts/install-deps.sh): the reports show static plots"; fail=1
fi
echo "screenshots: $ART/{audit,membership,split-attack,compare}.png"
exit $fail
