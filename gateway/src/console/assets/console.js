// ShareLedger console: the page script (beside it, live-worker.js, the
// shared worker holding a session's one live stream). Pages work without
// it; it adds live updates (the changes feed's Server-Sent Events),
// reading a CSV file into the import form, and "Select all" boxes.
(function () {
  "use strict";

  // A file chosen for import is read into the textarea it names.
  document.querySelectorAll("input[type=file][data-fills]").forEach(function (input) {
    input.addEventListener("change", function () {
      var target = document.getElementById(input.dataset.fills);
      var file = input.files && input.files[0];
      if (!target || !file) return;
      file.text().then(function (text) { target.value = text; });
    });
  });

  // A "Select all" box ticks or clears every box of its form named by
  // its data-select-all.
  document.querySelectorAll("input[data-select-all]").forEach(function (all) {
    all.addEventListener("change", function () {
      if (!all.form) return;
      all.form.querySelectorAll("input[type=checkbox]").forEach(function (box) {
        if (box.name === all.dataset.selectAll) box.checked = all.checked;
      });
    });
  });

  // Live: when the log moves, the page is read again, unless the person
  // is in the middle of something (a field has focus or was changed, or
  // they acted in the last two seconds): then a banner offers it.
  var position = document.body.dataset.position;
  if (!position || !window.EventSource) return;
  var dirty = false;
  var lastActed = Date.now();
  document.addEventListener("input", function () { dirty = true; }, true);
  ["keydown", "pointerdown"].forEach(function (kind) {
    document.addEventListener(kind, function () { lastActed = Date.now(); }, true);
  });
  var banner = document.getElementById("live");
  var latest = null;
  var timer = null;

  function freshUrl() {
    var url = new URL(window.location.href);
    if (latest) url.searchParams.set("at", latest);
    return url.toString();
  }

  function busy() {
    var el = document.activeElement;
    var typing = el && /^(INPUT|SELECT|TEXTAREA)$/.test(el.tagName);
    return dirty || typing || Date.now() - lastActed < 2000;
  }

  // While the person is busy the banner shows, and the page is read
  // again as soon as they stop (a field left, nothing typed).
  function moved() {
    if (timer) return;
    timer = setTimeout(function () {
      timer = null;
      if (busy()) {
        var a = banner.querySelector("a");
        a.href = freshUrl();
        banner.hidden = false;
        moved();
      } else {
        window.location.replace(freshUrl());
      }
    }, 400);
  }

  // The log reached `at`: news only if it is beyond what the page shows.
  function heard(at) {
    if (Number(at) > Number(position)) { latest = at; moved(); }
  }

  // One stream for every tab of the session (a shared worker), so that
  // open tabs do not take the six connections a browser keeps to one host
  // over HTTP/1.1. The page leaves it when it is left, even into the
  // back-forward cache; a page shown again from that cache is read again.
  var key = document.body.dataset.live;
  if (window.SharedWorker && key) {
    var worker = new SharedWorker("/assets/live-worker.js", "live-" + key);
    worker.port.onmessage = function (m) {
      if (m.data.kind === "change") heard(m.data.position);
      else if (m.data.kind === "dropped") moved();
    };
    worker.port.start();
    worker.port.postMessage({ position: position });
    window.addEventListener("pagehide", function () { worker.port.postMessage({ bye: true }); });
  } else {
    // Without shared workers: a stream of the page's own, closed when the
    // page is left.
    var source = new EventSource("/live?after=" + encodeURIComponent(position));
    source.addEventListener("change", function (e) { heard(e.lastEventId); });
    source.addEventListener("dropped", function () { source.close(); moved(); });
    source.addEventListener("closed", function () { source.close(); });
    window.addEventListener("pagehide", function () { source.close(); });
  }
  window.addEventListener("pageshow", function (e) { if (e.persisted) window.location.reload(); });
})();
