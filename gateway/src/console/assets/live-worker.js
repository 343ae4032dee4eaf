// ShareLedger console: one live stream for every tab of a session.
//
// A browser holds at most six connections to one host over HTTP/1.1, and
// a stream per open page would take them all with six tabs open (the
// seventh page would wait forever). Pages of one session share this
// worker, which holds one EventSource and tells each page when the log
// has moved beyond the position the page was read at.
"use strict";

var ports = [];
var source = null;
// The last position the stream reported (or the one it started after).
var seen = 0;

function tell(port, message) {
  try { port.postMessage(message); } catch (e) { /* a closed page */ }
}

function broadcast(message) {
  ports.forEach(function (port) { tell(port, message); });
}

function close() {
  if (source) source.close();
  source = null;
}

function open(after) {
  seen = after;
  source = new EventSource("/live?after=" + encodeURIComponent(after));
  source.addEventListener("change", function (e) {
    seen = Number(e.lastEventId) || seen;
    broadcast({ kind: "change", position: seen });
  });
  // Too far behind to replay: every page reads itself again.
  source.addEventListener("dropped", function () { close(); broadcast({ kind: "dropped" }); });
  // The session ended, or the feed is not for this reader (204).
  source.addEventListener("closed", close);
  source.onerror = function () { if (source && source.readyState === EventSource.CLOSED) close(); };
}

self.onconnect = function (e) {
  var port = e.ports[0];
  ports.push(port);
  port.onmessage = function (m) {
    if (m.data && m.data.bye) {
      ports = ports.filter(function (p) { return p !== port; });
      if (ports.length === 0) close();
      return;
    }
    var position = Number(m.data && m.data.position);
    if (!(position >= 0)) return;
    if (!source) {
      open(position);
    } else if (seen > position) {
      // The log moved past this page before it joined.
      tell(port, { kind: "change", position: seen });
    }
  };
  port.start();
};
