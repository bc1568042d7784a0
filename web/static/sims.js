// The SIM cards page: refreshes each row's online state, last heartbeat, signal and
// operator from /sims/state every 10 seconds. Heartbeats reach only the dispatcher's
// ingest queue, so there is no stream to follow; the database row is what decides
// "online" anyway. Without this script the page is right as of its load.
(function () {
  "use strict";

  var PERIOD = 10 * 1000;
  // Each request slides the session's idle expiry; stop when nobody has touched the page
  // for this long, so an unattended screen still signs out.
  var IDLE_LIMIT = 15 * 60 * 1000;

  function badge(value) {
    var span = document.createElement("span");
    span.className = "badge badge-" + value;
    span.setAttribute("data-status", "");
    span.textContent = value;
    return span;
  }

  function muted(text) {
    var span = document.createElement("span");
    span.className = "muted";
    span.textContent = text;
    return span;
  }

  function replace(cell, nodes) {
    if (!cell) return;
    while (cell.firstChild) cell.removeChild(cell.firstChild);
    nodes.forEach(function (n) { cell.appendChild(typeof n === "string" ? document.createTextNode(n) : n); });
  }

  function applySim(row, sim) {
    replace(row.querySelector('[data-field="online"]'), [badge(sim.online ? "online" : "offline")]);
    var heartbeat = muted("never");
    if (sim.last_heartbeat) {
      heartbeat = document.createElement("time");
      heartbeat.setAttribute("datetime", sim.last_heartbeat_iso);
      heartbeat.textContent = sim.last_heartbeat;
    }
    replace(row.querySelector('[data-field="heartbeat"]'), [heartbeat]);
    var signal = [muted("unknown")];
    if (typeof sim.signal === "number") {
      var meter = document.createElement("meter");
      meter.min = 0; meter.max = 31; meter.low = 10; meter.optimum = 31; meter.value = sim.signal;
      meter.setAttribute("aria-label", "Signal " + sim.signal_percent + "%");
      signal = [meter, " " + sim.signal_percent + "%"];
    }
    replace(row.querySelector('[data-field="signal"]'), signal);
    replace(row.querySelector('[data-field="operator"]'), [sim.operator || ""]);
  }

  function setup(table) {
    var url = table.dataset.simsStateUrl;
    var state = document.querySelector("[data-live-state]");
    var lastInput = Date.now();
    var timer = null;
    ["keydown", "pointerdown", "pointermove", "scroll"].forEach(function (name) {
      window.addEventListener(name, function () { lastInput = Date.now(); }, { passive: true });
    });

    function say(text) { if (state) state.textContent = text; }

    function refresh() {
      if (document.visibilityState === "hidden") return;
      if (Date.now() - lastInput > IDLE_LIMIT) {
        clearInterval(timer);
        say("Live updates paused while the page is idle; reload to resume.");
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, redirect: "error" })
        .then(function (response) {
          if (!response.ok) throw new Error(String(response.status));
          return response.json();
        })
        .then(function (body) {
          body.sims.forEach(function (sim) {
            var row = table.querySelector('tr[data-sim-id="' + sim.id + '"]');
            if (row) applySim(row, sim);
          });
          say("Updated " + body.updated + "; refreshes every 10 seconds.");
        })
        .catch(function () { say("Live updates interrupted; retrying…"); });
    }

    timer = setInterval(refresh, PERIOD);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") refresh();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-sims-state-url]").forEach(setup);
  });
})();
