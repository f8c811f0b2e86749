// baton dashboard: live updates of a running workflow's page, and a slow
// refresh of the workflow list while any workflow runs. No dependencies.
(function () {
  "use strict";

  function fmt(ms) {
    if (!ms || ms <= 0) return "—";
    if (ms < 1000) return ms + "ms";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + "s";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
  }
  var terminal = { SUCCESS: 1, FAILURE: 1, REVOKED: 1, EXPIRED: 1 };

  function sel(root, q) { return root.querySelector(q); }
  function setText(el, t) { if (el && el.textContent !== t) el.textContent = t; }

  function updateStep(s) {
    var q = '[data-task-id="' + s.id.replace(/"/g, "") + '"]';
    var g = sel(document, "g.step" + q);
    if (g) {
      g.setAttribute("data-state", s.state);
      setText(sel(g, "text.st"), s.state);
      var meta = fmt(s.duration_ms);
      if (s.retries) meta += " · " + s.retries + (s.retries === 1 ? " retry" : " retries");
      if (s.error) meta += " · " + (s.error.length > 16 ? s.error.slice(0, 15) + "…" : s.error);
      setText(sel(g, "text.meta"), meta);
      var title = sel(g, "title");
      setText(title, s.id + " · " + s.kind + " · " + s.position + " · " + s.state +
        (s.retries ? " · " + s.retries + (s.retries === 1 ? " retry" : " retries") : "") + (s.error ? "\n" + s.error : ""));
    }
    var row = sel(document, "tr.steprow" + q);
    if (row) {
      row.setAttribute("data-state", s.state);
      var b = sel(row, ".st");
      b.setAttribute("data-state", s.state);
      setText(b, s.state);
      setText(sel(row, ".retries"), String(s.retries));
      setText(sel(row, ".dur"), fmt(s.duration_ms));
      if (s.error) {
        var out = sel(row, ".out");
        setText(out, "");
        var span = document.createElement("span");
        span.className = "error";
        span.textContent = s.error;
        out.appendChild(span);
      }
    }
  }

  var wf = document.getElementById("wf");
  if (wf && wf.dataset.terminal !== "true") {
    var every = parseInt(wf.dataset.refresh, 10) || 1500;
    var tick = function () {
      fetch(wf.dataset.json, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (d) {
          (d.steps || []).forEach(updateStep);
          (d.callbacks || []).forEach(updateStep);
          var st = document.getElementById("wf-state");
          st.setAttribute("data-state", d.state);
          setText(st, d.state);
          wf.setAttribute("data-state", d.state);
          setText(document.getElementById("wf-progress"), d.done + "/" + d.total);
          if (terminal[d.state]) { location.replace(location.pathname); return; }
          setTimeout(tick, every);
        })
        .catch(function () { setTimeout(tick, every * 3); });
    };
    setTimeout(tick, every);
  }

  var list = document.getElementById("list");
  if (list && list.dataset.live === "true") {
    setTimeout(function () { location.reload(); }, 5000);
  }
})();
