/* Secure Failover Monitor: live overview without a full reload.
 * Reads /api/status (JSON) and swaps in the server-rendered chart (/partials/chart) and
 * rollout timeline (/partials/rollout) whenever /api/events (Server-Sent Events) announces a
 * new audit row: a decision, an operator action, a replica or scale event, a rollout step.
 * Only textContent and DOM nodes are written, never HTML strings built from data.
 * Without JavaScript the overview is a plain page that is current when loaded. */
(function () {
  "use strict";

  function fmtMs(v) { return v === null || v === undefined ? "-" : v.toFixed(1) + " ms"; }
  function fmtSeconds(v) {
    if (!v) { return "0 s"; }
    return v >= 10 ? v.toFixed(0) + " s" : v.toFixed(1) + " s";
  }
  function fmtUptime(v) { return v === null || v === undefined ? "-" : v.toFixed(2) + " %"; }
  function fmtTime(iso) { return iso ? String(iso).replace("T", " ").replace("Z", "").slice(0, 19) + " UTC" : ""; }
  function fmtFaults(faults) {
    var names = Object.keys(faults || {}).sort();
    if (!names.length) { return "none"; }
    return names.map(function (name) {
      var p = faults[name];
      if (p && typeof p === "object") {
        var keys = Object.keys(p).sort();
        if (!keys.length) { return name; }
        return name + "(" + keys.map(function (k) { return k + "=" + p[k]; }).join(", ") + ")";
      }
      return p === true || p === null ? name : name + "(" + p + ")";
    }).join(", ");
  }

  function fmtReplicas(replicas) {
    if (!replicas || !replicas.length) { return "-"; }
    return replicas.map(function (r) {
      var text = ":" + r.port + " " + (r.ready ? "ready" : "not ready");
      if (r.cpu_percent !== null && r.cpu_percent !== undefined) { text += " " + r.cpu_percent.toFixed(0) + "% CPU"; }
      if (r.restarts) { text += " " + r.restarts + " restarts"; }
      return text;
    }).join("; ");
  }

  function setText(root, selector, text) {
    var el = root.querySelector(selector);
    if (el && el.textContent !== text) { el.textContent = text; }
    return el;
  }

  function applyStatus(root, s) {
    setText(root, '[data-field="active"]', s.active);
    setText(root, '[data-field="epoch"]', String(s.epoch));
    var paused = setText(root, '[data-field="paused"]', s.paused ? "paused" : "on");
    if (paused) { paused.className = s.paused ? "paused" : "running"; }
    setText(root, '[data-field="cooldown"]', fmtSeconds(s.cooldown_remaining_s));
    setText(root, '[data-field="updated"]', new Date().toLocaleTimeString());
    var banner = document.getElementById("incident");
    if (banner) {
      banner.hidden = !s.incident;
      setText(banner, '[data-field="incident"]',
              s.incident ? s.incident.kind + (s.incident.summary ? ": " + s.incident.summary : "") +
                           " since " + fmtTime(s.incident.opened_at) : "");
    }
    (s.versions || []).forEach(function (v) {
      var row = root.querySelector('tr[data-version="' + CSS.escape(v.name) + '"]');
      if (!row) { return; }
      row.className = "state-" + v.state + (v.name === s.active ? " is-active" : "");
      var badge = row.querySelector('[data-col="active"]');
      if (badge) { badge.hidden = v.name !== s.active; }
      setText(row, '[data-col="state"]', v.state);
      setText(row, '[data-col="reason"]', v.reason || v.last_failure || "");
      setText(row, '[data-col="latency"]', fmtMs(v.latency_ms));
      setText(row, '[data-col="uptime"]', fmtUptime(v.uptime_24h));
      setText(row, '[data-col="eligible"]', v.eligible ? "yes" : "no");
      setText(row, '[data-col="ejected"]', v.ejected_for_s ? fmtSeconds(v.ejected_for_s) : "-");
      setText(row, '[data-col="faults"]', fmtFaults(v.faults));
      setText(row, '[data-col="replicas"]', fmtReplicas(v.replicas));
    });
  }

  // Swap a server-rendered fragment (escaped by Jinja) into the page by its element id.
  function swap(url, id) {
    return fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById(id);
        var current = document.getElementById(id);
        if (fresh && current) {
          var open = current.querySelector("details[open]");
          var kept = document.importNode(fresh, true);
          if (open) { kept.querySelectorAll("details").forEach(function (d) { d.open = true; }); }
          current.replaceWith(kept);
        }
      });
  }

  // The service the overview shows (?service=NAME), kept on every refresh.
  function serviceQuery(root) {
    var name = root.getAttribute("data-service");
    return name ? "?service=" + encodeURIComponent(name) : "";
  }

  // ... and the page of its versions the chart shows.
  function chartQuery(root) {
    var query = serviceQuery(root), page = root.getAttribute("data-versions-page") || "1";
    return page === "1" ? query : (query ? query + "&" : "?") + "versions_page=" + encodeURIComponent(page);
  }

  function refreshParts(root) {
    var parts = [swap("/partials/chart" + chartQuery(root), "latency-chart")];
    if (document.getElementById("rollout")) { parts.push(swap("/partials/rollout", "rollout")); }
    return Promise.all(parts);
  }

  function start() {
    var root = document.getElementById("overview");
    if (!root || !window.fetch) { return; }
    var every = Math.max(1000, parseInt(root.getAttribute("data-refresh"), 10) || 3000);
    var busy = false, again = false;
    function tick() {
      if (document.hidden) { return; }
      if (busy) { again = true; return; }  // an event during a refresh: one more after it
      busy = true;
      again = false;
      fetch("/api/status" + serviceQuery(root), { credentials: "same-origin", cache: "no-store",
                             headers: { "Accept": "application/json" } })
        .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
        .then(function (s) { applyStatus(root, s); root.classList.remove("stale"); return refreshParts(root); })
        .catch(function () { root.classList.add("stale"); setText(root, '[data-field="updated"]', "connection lost"); })
        .then(function () { busy = false; if (again) { window.setTimeout(tick, 50); } });
    }
    // Live: every audit row (decision, action, replica, rollout step) arrives as a Server-Sent
    // Event and triggers one refresh; the timer stays as a slow safety net.
    if (window.EventSource) {
      var source = new EventSource("/api/events");
      source.addEventListener("audit", function () { window.setTimeout(tick, 50); });
      source.onerror = function () { root.classList.add("stale"); };
      source.onopen = function () { root.classList.remove("stale"); };
      every = Math.max(every, 10000);
    }
    window.setInterval(tick, every);
    tick();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); }
  else { start(); }
})();
