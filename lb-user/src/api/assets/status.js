// The status page's live part: polls /v1/status once a second, turns counters into rates
// (the difference of two samples over their timestamps) and redraws the tables the server
// rendered, with a chart of the last three minutes per backend and per drop reason.
// COLUMNS (field, heading) is written by the server just above this script.
"use strict";
(function () {
  const HISTORY = 180; // samples: three minutes at one a second
  const NUMERIC = new Set(["weight", "flows_rate", "packets_rate", "bytes_rate", "new_flows", "bytes"]);
  const backends = new Map(); // "service/address" -> {last, flows: []}
  const drops = new Map(); // reason -> {last, rates: []}
  let updates = 0;

  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  function human(n) {
    if (n === null || n === undefined) return "–";
    const units = ["", "k", "M", "G", "T"];
    let i = 0;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (i === 0 && Number.isInteger(n) ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + units[i];
  }

  function pushBounded(list, value) {
    list.push(value);
    while (list.length > HISTORY) list.shift();
  }

  // The per-second rate of each counter since the previous sample of the same key (null on
  // the first one, or when a counter went backwards: the daemon restarted).
  function rates(store, key, t, counters) {
    let h = store.get(key);
    if (!h) { h = { last: null, series: [] }; store.set(key, h); }
    const out = {};
    const dt = h.last ? (t - h.last.t) / 1000 : 0;
    for (const name of Object.keys(counters)) {
      const now = counters[name];
      const before = h.last ? h.last[name] : null;
      out[name] = (before === null || before === undefined || now === null || dt <= 0 || now < before) ? null : (now - before) / dt;
    }
    h.last = Object.assign({ t }, counters);
    return { rate: out, h };
  }

  // A chart of the last HISTORY samples, newest at the right edge; samples before the
  // first known rate are left out rather than drawn as zero.
  function spark(series) {
    const w = 120, h = 24;
    const first = series.findIndex((v) => v !== null);
    const values = first < 0 ? [] : series.slice(first).map((v) => (v === null ? 0 : v));
    if (values.length < 2) return "<svg class=\"spark\" viewBox=\"0 0 120 24\" aria-hidden=\"true\"></svg>";
    const max = Math.max(1, ...values);
    const step = w / (HISTORY - 1);
    const x0 = w - step * (values.length - 1);
    const xy = values.map((v, i) => (x0 + i * step).toFixed(1) + "," + (h - 1 - (v / max) * (h - 2)).toFixed(1));
    const area = x0.toFixed(1) + "," + (h - 1) + " " + xy.join(" ") + " " + w + "," + (h - 1);
    return "<svg class=\"spark\" viewBox=\"0 0 120 24\" role=\"img\" aria-label=\"peak " + esc(human(max)) + "/s\"><polygon points=\"" +
      area + "\"/><polyline points=\"" + xy.join(" ") + "\"/></svg>";
  }

  function backendRow(service, b, t) {
    const key = service + "/" + b.address;
    const { rate, h } = rates(backends, key, t, { flows: b.new_flows, packets: b.packets, bytes: b.bytes });
    pushBounded(h.series, rate.flows);
    const cell = {
      address: esc(b.address),
      state: esc(b.state),
      health: esc(b.health),
      circuit: esc(b.circuit),
      weight: esc(b.weight),
      sources: esc(b.sources.join(", ")),
      flows_rate: human(rate.flows),
      packets_rate: b.packets === null ? "n/a" : human(rate.packets),
      bytes_rate: human(rate.bytes),
      new_flows: human(b.new_flows),
      bytes: human(b.bytes),
      chart: spark(h.series),
    };
    const klass = { state: "state-" + b.state, health: "health-" + b.health, circuit: "circuit-" + b.circuit };
    let row = "<tr class=\"backend\" data-service=\"" + esc(service) + "\" data-backend=\"" + esc(b.address) + "\">";
    for (const [field, heading] of COLUMNS) {
      const classes = [NUMERIC.has(field) ? "num" : "", klass[field] || ""].join(" ").trim();
      row += "<td data-field=\"" + field + "\" data-label=\"" + esc(heading) + "\" class=\"" + esc(classes) + "\">" + cell[field] + "</td>";
    }
    return row + "</tr>";
  }

  function serviceSection(s, path, t) {
    let html = "<section class=\"service\" data-service=\"" + esc(s.name) + "\"><h2>" + esc(s.name) +
      "<span class=\"facts\">" + [esc(s.vip) + " " + esc(s.protocol), esc(path || "–"), esc(s.algorithm), esc(s.forwarding)].join(" · ") +
      "</span></h2><table><thead><tr>";
    for (const [field, heading] of COLUMNS) html += "<th" + (NUMERIC.has(field) ? " class=\"num\"" : "") + ">" + esc(heading) + "</th>";
    html += "</tr></thead><tbody>";
    for (const b of s.backends) html += backendRow(s.name, b, t);
    return html + "</tbody></table></section>";
  }

  function dropCards(status) {
    let html = "";
    for (const [reason, total] of Object.entries(status.drops)) {
      const { rate, h } = rates(drops, reason, status.sampled_at_ms, { total });
      pushBounded(h.series, rate.total);
      html += "<div class=\"drop" + (total > 0 ? " seen" : "") + "\" data-reason=\"" + esc(reason) + "\"><span class=\"reason\">" + esc(reason) +
        "</span><span class=\"num\" data-field=\"rate\">" + human(rate.total) + "</span><span class=\"num total\" data-field=\"total\">" +
        human(total) + "</span><span data-field=\"chart\">" + spark(h.series) + "</span></div>";
    }
    return html;
  }

  function render(status) {
    const t = status.sampled_at_ms;
    document.getElementById("path").textContent = status.path || "–";
    document.getElementById("service-count").textContent = String(status.services.length);
    const sampled = document.getElementById("sampled");
    sampled.dataset.sampledAt = String(t);
    sampled.textContent = "counters at " + new Date(t).toLocaleTimeString();
    const services = status.services.map((s) => serviceSection(s, status.path, t)).join("");
    document.getElementById("services").innerHTML = services || "<p class=\"empty\">No services are configured.</p>";
    document.querySelector("#drops .drops").innerHTML = dropCards(status);
    updates += 1;
    document.body.dataset.updates = String(updates);
  }

  async function poll() {
    const error = document.getElementById("error");
    try {
      const response = await fetch("/v1/status", { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error("the daemon answered " + response.status);
      render(await response.json());
      error.textContent = "";
    } catch (e) {
      error.textContent = "not updating: " + e.message;
    } finally {
      setTimeout(poll, 1000);
    }
  }

  poll();
})();
