// modelport monitor: the dashboard page. Plain JavaScript, no library, nothing fetched from
// elsewhere: every number comes from this page's own API (api/...), and each cell keeps the
// exact value it shows in data-value.
"use strict";

const state = { token: sessionStorage.getItem("modelport-token") || "", pick: null, models: [] };

function fmt(v, digits) {
  if (v === null || v === undefined) return "-";
  if (typeof v !== "number") return String(v);
  return v.toFixed(digits === undefined ? 4 : digits);
}
function pct(v) { return v === null || v === undefined ? "-" : (100 * v).toFixed(2) + "%"; }

async function api(path) {
  const headers = state.token ? { Authorization: "Bearer " + state.token } : {};
  const r = await fetch("api/" + path, { headers });
  if (r.status === 401) { document.getElementById("auth").hidden = false; throw new Error("a bearer token is needed"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
  return body;
}

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function cell(text, attrs) { return el("td", attrs || {}, text); }
function numCell(v, kind, extra) {
  const text = kind === "pct" ? pct(v) : fmt(v, kind === "int" ? 0 : undefined);
  const attrs = Object.assign({ "data-value": v === null || v === undefined ? "" : String(v) }, extra || {});
  return cell(text, attrs);
}
function fill(id, rows) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...rows);
}

function renderModels(doc) {
  state.models = doc.models || [];
  const rows = [];
  const pick = document.getElementById("pick");
  const options = [];
  for (const m of state.models) {
    for (const v of m.versions) {
      const tr = el("tr", { "data-model": m.name, "data-version": v.version });
      tr.append(cell(m.name), cell(v.version), cell((v.aliases || []).join(", ")),
        cell(Object.entries(v.tags || {}).map(([k, x]) => k + "=" + x).join(", ")),
        cell(v.served ? "yes" : "-"), cell((v.digest || "").slice(0, 19)));
      rows.push(tr);
      if (v.served || (m.logged || []).includes(v.version)) {
        options.push(el("option", { value: m.name + "\u001f" + v.version }, m.name + " v" + v.version));
      }
    }
  }
  fill("models", rows);
  const keep = pick.value;
  pick.replaceChildren(...options);
  if (keep) pick.value = keep;
  if (!pick.value && options.length) pick.value = options[0].value;
}

function renderLive(doc) {
  document.getElementById("live-window").textContent = doc.window_seconds ? "(last " + Math.round(doc.window_seconds) + " s)" : (doc.note || "");
  fill("live", (doc.models || []).map((m) => {
    const tr = el("tr", { "data-model": m.model, "data-version": m.version });
    tr.append(cell(m.model), cell(m.version),
      numCell(m.requests_per_second, undefined, { "data-metric": "requests_per_second" }),
      numCell(m.latency_p50_ms, undefined, { "data-metric": "latency_p50_ms" }),
      numCell(m.latency_p95_ms, undefined, { "data-metric": "latency_p95_ms" }),
      numCell(m.error_rate, "pct", { "data-metric": "error_rate" }));
    return tr;
  }));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; }

function bars(plot) {
  const ref = plot.reference || [], cur = plot.current || [];
  const n = Math.max(ref.length, cur.length), W = 300, H = 120;
  const s = svg("svg", { width: W, height: H + 18, role: "img" });
  if (!n) return s;
  const top = Math.max(1e-12, ...ref, ...cur), bw = (W - 10) / n;
  for (let i = 0; i < n; i++) {
    [[ref, "ref"], [cur, "cur"]].forEach(([vals, cls], j) => {
      const v = vals[i] || 0, h = (H - 6) * v / top;
      const r = svg("rect", { class: cls, x: 5 + i * bw + j * bw / 2, y: H - h, width: Math.max(bw / 2 - 1, 1), height: h });
      const label = plot.categories ? plot.categories[i] : "[" + fmt(plot.edges[i], 3) + ", " + fmt(plot.edges[i + 1], 3) + ")";
      const t = svg("title", {}); t.textContent = label + ": " + fmt(v, 3); r.append(t); s.append(r);
    });
  }
  const first = svg("text", { x: 5, y: H + 14, "font-size": 10 });
  first.textContent = plot.categories ? String(plot.categories[0]).slice(0, 16) : fmt(plot.edges[0], 3);
  const last = svg("text", { x: W - 5, y: H + 14, "font-size": 10, "text-anchor": "end" });
  last.textContent = plot.categories ? String(plot.categories[n - 1]).slice(0, 16) : fmt(plot.edges[plot.edges.length - 1], 3);
  s.append(first, last);
  return s;
}

function renderDrift(doc) {
  const cols = [...(doc.columns || []).map((c) => [c, "input"]), ...(doc.predictions || []).map((c) => [c, "prediction"])];
  const drifted = (doc.columns || []).filter((c) => c.drifted).length;
  const summary = document.getElementById("drift-summary");
  summary.textContent = (doc.rows || 0) + " rows; " + drifted + " of " + (doc.columns || []).length + " columns drifted (share " + pct(doc.share) + ")";
  summary.setAttribute("data-share", String(doc.share));
  summary.setAttribute("data-rows", String(doc.rows || 0));
  fill("drift", cols.map(([c, of]) => {
    const tr = el("tr", { "data-column": c.name, "data-of": of });
    tr.append(cell(c.name), cell(of), cell(c.kind), numCell(c.rows, "int", { "data-metric": "rows" }),
      numCell(c.psi, undefined, { "data-metric": "psi" }), numCell(c.js, undefined, { "data-metric": "js" }),
      numCell(c.missing_rate, "pct", { "data-metric": "missing_rate" }), numCell(c.unseen_rate, "pct", { "data-metric": "unseen_rate" }),
      cell(c.drifted ? "yes" : "no", { class: c.drifted ? "bad" : "good", "data-metric": "drifted" }));
    return tr;
  }));
  document.getElementById("plots").replaceChildren(...cols.filter(([c]) => c.plot && (c.plot.reference || []).length).map(([c, of]) => {
    const d = el("div", { class: "plot", "data-column": c.name, "data-of": of });
    d.append(el("b", {}, c.name), el("span", { class: "muted" }, " " + of), el("br"), bars(c.plot));
    return d;
  }));
}

function renderPerf(doc) {
  const windows = doc.windows || [];
  const metric = doc.task === "regression" ? "rmse" : "accuracy";
  fill("perf", windows.map((w) => {
    const tr = el("tr", { "data-version": w.version, "data-start": w.start });
    tr.append(cell(w.version), cell(w.start), numCell(w.predictions, "int", { "data-metric": "predictions" }),
      numCell(w.labelled, "int", { "data-metric": "labelled" }),
      numCell((w.realised || {})[metric], undefined, { "data-metric": "realised_" + metric }),
      numCell((w.estimated || {})[metric], undefined, { "data-metric": "estimated_" + metric }));
    return tr;
  }));
  const chart = document.getElementById("perf-chart");
  const W = 600, H = 160, s = svg("svg", { width: W, height: H + 20, role: "img" });
  const pts = (key) => windows.map((w, i) => [i, (w[key] || {})[metric]]).filter(([, v]) => typeof v === "number");
  const all = [...pts("realised"), ...pts("estimated")].map(([, v]) => v);
  if (all.length) {
    const lo = Math.min(...all), hi = Math.max(...all), span = hi - lo || 1, n = Math.max(windows.length - 1, 1);
    for (const key of ["realised", "estimated"]) {
      const p = pts(key).map(([i, v]) => (10 + i * (W - 20) / n).toFixed(1) + "," + (H - 10 - (v - lo) / span * (H - 20)).toFixed(1));
      if (p.length) s.append(svg("polyline", { class: key, points: p.join(" ") }));
    }
    const t = svg("text", { x: 10, y: H + 15, "font-size": 11 });
    t.textContent = metric + ": realised (solid) and estimated (dashed), " + fmt(lo, 3) + " to " + fmt(hi, 3);
    s.append(t);
  }
  chart.replaceChildren(s);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    renderModels(await api("models"));
    renderLive(await api("live"));
    const pick = document.getElementById("pick").value;
    if (pick) {
      const [model, version] = pick.split("\u001f");
      renderDrift(await api("drift?model=" + encodeURIComponent(model) + "&version=" + encodeURIComponent(version)));
      renderPerf(await api("perf?model=" + encodeURIComponent(model)));
    }
    status.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    status.setAttribute("data-ready", "1");
  } catch (e) {
    status.textContent = "error: " + e.message;
  }
}

document.getElementById("token-save").addEventListener("click", () => {
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("modelport-token", state.token);
  document.getElementById("auth").hidden = true;
  refresh();
});
document.getElementById("pick").addEventListener("change", refresh);
refresh();
setInterval(refresh, Number(new URLSearchParams(location.search).get("every") || 5000));
