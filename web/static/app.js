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

  function number(root, field) {
    var el = root.querySelector('[data-field="' + field + '"]');
    return el ? parseInt(el.textContent, 10) || 0 : 0;
  }

  // Redraws the progress bar's runs as the server lays them out (history_pages::bar_segments).
  function drawBar(root, total, counts) {
    var bar = root.querySelector("[data-progress]");
    if (!bar) return;
    var width = parseInt(bar.dataset.barWidth || "1000", 10), x = 0;
    ["sent", "failed", "cancelled", "expired"].forEach(function (kind) {
      var rect = bar.querySelector('[data-seg="' + kind + '"]');
      var n = counts[kind], w = 0;
      if (total > 0 && n > 0) w = Math.min(Math.max(Math.floor(n * width / total), 1), width - x);
      if (rect) { rect.setAttribute("x", String(x)); rect.setAttribute("width", String(w)); }
      x += w;
    });
  }

  function applyProgress(root, ev) {
    // Events of a server older than the cancelled/expired figures lack them: keep the shown ones.
    var cancelled = ev.cancelled == null ? number(root, "cancelled") : ev.cancelled;
    var expired = ev.expired == null ? number(root, "expired") : ev.expired;
    var fields = {
      total: ev.total, sent: ev.sent, failed: ev.failed, cancelled: cancelled, expired: expired,
      pending: Math.max(ev.total - ev.sent - ev.failed - cancelled - expired, 0)
    };
    Object.keys(fields).forEach(function (k) {
      root.querySelectorAll('[data-field="' + k + '"]').forEach(function (el) {
        el.textContent = String(fields[k]);
      });
    });
    drawBar(root, ev.total, fields);
    if (ev.final) {
      // Nothing is left to cancel, and the estimate no longer applies.
      root.querySelectorAll("[data-cancel], [data-eta]").forEach(function (el) { el.hidden = true; });
    }
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
      if (ev.final) {
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
