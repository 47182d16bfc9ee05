// Appended (by tests/browser/check_reports.sh) to a copy of a report: counts what rendered and
// what did not, after the page's own scripts ran, and writes the result into the DOM as JSON in
// a pre element with the id rewind-browser-check, which chromium --dump-dom prints.
(function () {
  function run() {
    var r = {images: 0, broken_images: [], svgs: 0, empty_svgs: 0, canvases: 0, blank_canvases: 0,
             external: [], tables: document.querySelectorAll('table').length};
    Array.prototype.forEach.call(document.images, function (im) {
      r.images++;
      if (!im.complete || im.naturalWidth === 0) r.broken_images.push((im.alt || '') + ' ' + im.src.slice(0, 40));
    });
    Array.prototype.forEach.call(document.querySelectorAll('svg'), function (s) {
      r.svgs++;
      var b = s.getBoundingClientRect();
      if (s.childElementCount === 0 || b.width === 0 || b.height === 0) r.empty_svgs++;
    });
    Array.prototype.forEach.call(document.querySelectorAll('canvas'), function (c) {
      r.canvases++;
      if (c.width === 0 || c.height === 0) r.blank_canvases++;
    });
    // a report must open offline: nothing may load from outside the file itself
    Array.prototype.forEach.call(document.querySelectorAll('[src],[href]'), function (e) {
      var u = e.getAttribute('src') || e.getAttribute('href');
      if (u && !/^(data:|#)/.test(u)) r.external.push(e.tagName + ' ' + u.slice(0, 80));
    });
    var pre = document.createElement('pre');
    pre.id = 'rewind-browser-check';
    pre.textContent = JSON.stringify(r);
    document.body.appendChild(pre);
  }
  if (document.readyState === 'complete') setTimeout(run, 500);
  else window.addEventListener('load', function () { setTimeout(run, 500); });
})();
