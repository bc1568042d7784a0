// smsgate panel behaviour. Served from /static (the CSP allows no inline script): the
// compose counter, live message status over SSE, copy buttons and double-submit guards.
// Every page works without it; it only adds live feedback.
(function () {
  "use strict";

  // GSM 03.38 default alphabet and extension table; must match shared/src/domain/body.rs.
  var GSM7_BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM7_EXT = "\f^{}\\[~]|€";

  function countParts(costs, total, single, perPart) {
    if (total <= single) return 1;
    var parts = 1, used = 0;
    for (var i = 0; i < costs.length; i++) {
      if (used + costs[i] > perPart) { parts++; used = 0; }
      used += costs[i];
    }
    return parts;
  }

  // Same rules as MessageBody::parse: GSM-7 if every character fits, else UCS-2.
  function measure(text) {
    var chars = Array.from(text), costs = [], total = 0, gsm = true;
    for (var i = 0; i < chars.length; i++) {
      var c = chars[i];
      var cost = GSM7_BASIC.indexOf(c) >= 0 ? 1 : (GSM7_EXT.indexOf(c) >= 0 ? 2 : 0);
      if (!cost) { gsm = false; break; }
      costs.push(cost); total += cost;
    }
    if (gsm) {
      return { chars: chars.length, encoding: "GSM-7", units: total, segments: countParts(costs, total, 160, 153) };
    }
    costs = chars.map(function (ch) { return ch.length; });
    total = costs.reduce(function (a, b) { return a + b; }, 0);
    return { chars: chars.length, encoding: "UCS-2", units: total, segments: countParts(costs, total, 70, 67) };
  }

  function setupCounter(area) {
    var out = document.getElementById(area.dataset.counter);
    var max = parseInt(area.dataset.maxSegments || "10", 10);
    function update() {
      var m = measure(area.value);
      var text = m.chars + " character" + (m.chars === 1 ? "" : "s") + " · " + m.encoding +
        " · " + m.segments + " segment" + (m.segments === 1 ? "" : "s");
      if (m.encoding === "UCS-2" && m.chars > 0) text += " (a non-GSM character makes every segment shorter)";
      if (m.segments > max) text += " — too long: at most " + max + " segments";
      out.textContent = text;
      out.classList.toggle("field-error", m.segments > max);
    }
    area.addEventListener("input", update);
    update();
  }

  function setStatus(cell, status) {
    if (!cell) return;
    var badge = cell.querySelector("[data-status]");
    if (!badge) return;
    badge.textContent = status;
    badge.className = "badge badge-" + status;
  }

  function applyProgress(root, ev) {
    var fields = { total: ev.total, sent: ev.sent, failed: ev.failed, pending: ev.total - ev.sent - ev.failed };
    Object.keys(fields).forEach(function (k) {
      var el = root.querySelector('[data-field="' + k + '"]');
      if (el) el.textContent = String(fields[k]);
    });
    setStatus(root.querySelector('[data-field="status"]'), ev.status);
    (ev.recipients || []).forEach(function (r) {
      var row = document.querySelector('tr[data-recipient-id="' + r.recipient_id + '"]');
      if (!row) return;
      setStatus(row.querySelector('[data-field="status"]'), r.status);
      var attempts = row.querySelector('[data-field="attempts"]');
      if (attempts) attempts.textContent = String(r.attempts);
      var error = row.querySelector('[data-field="error"]');
      if (error) error.textContent = r.error || "";
    });
  }

  function setupLive(root) {
    if (!window.EventSource) return;
    var state = root.querySelector("[data-live-state]");
    var source = new EventSource(root.dataset.liveUrl);
    source.addEventListener("progress", function (e) {
      var ev = JSON.parse(e.data);
      applyProgress(root, ev);
      if (state) state.textContent = "Live: updated " + new Date().toLocaleTimeString();
      if (["sent", "failed", "partial", "cancelled"].indexOf(ev.status) >= 0 && ev.final) {
        source.close();
        if (state) state.textContent = "Finished.";
      }
    });
    source.onerror = function () {
      if (state) state.textContent = "Live updates interrupted; retrying…";
    };
  }

  function setupCopy(button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.dataset.copyTarget);
      if (!target) return;
      var done = function () { button.textContent = button.dataset.copiedText || "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(target.value).then(done, function () { target.select(); });
      } else {
        target.select();
        try { document.execCommand("copy"); done(); } catch (e) { /* selected for manual copy */ }
      }
    });
  }

  // The server's idempotency key is what guarantees one send; this only gives feedback.
  function setupOnce(form) {
    form.addEventListener("submit", function () {
      Array.prototype.forEach.call(form.querySelectorAll("button[type=submit]"), function (b) {
        setTimeout(function () { b.disabled = true; }, 0);
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("textarea[data-counter]").forEach(setupCounter);
    document.querySelectorAll("[data-live-url]").forEach(setupLive);
    document.querySelectorAll("[data-copy-target]").forEach(setupCopy);
    document.querySelectorAll("form[data-once]").forEach(setupOnce);
  });
})();
