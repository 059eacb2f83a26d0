// The dashboard's building blocks: DOM and SVG builders, the API call, formatting,
// tables, sparklines and a stacked bar chart. No libraries, no build step.
"use strict";

const API = "api/dashboard/";
// what the pages share: the app's meta, live or paused, and what the operator has open
const state = { meta: null, paused: false, timer: null, window: "1h", selected: new Set(),
                openRows: new Set(), busy: false, costBy: "hour" };

// -- DOM --------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c) el.append(c instanceof Node ? c : document.createTextNode(c));
  return el;
}

async function api(path, options) {
  const init = Object.assign({ credentials: "same-origin", headers: {} }, options || {});
  if (init.method && init.method !== "GET") {
    init.headers["x-squall-dashboard"] = "1";
    init.headers["content-type"] = "application/json";
  }
  const resp = await fetch(API + path, init);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (!resp.ok) throw new Error((body && body.message) || `${resp.status} ${resp.statusText}`);
  return body;
}

const fmt = {
  n(v) { return v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US"); },
  ms(v) {
    if (v === null || v === undefined) return "—";
    if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + " s";
    return (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";
  },
  pct(v) { return v ? (v * 100).toFixed(v < 0.01 ? 2 : 1) + "%" : "0%"; },
  rate(v) { return v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v ? v.toFixed(2) : "0"; },
  usd(v) {
    if (v === null || v === undefined) return "—";
    if (v === 0) return "$0";
    return v < 0.01 ? "$" + v.toPrecision(2) : "$" + v.toFixed(2);
  },
  time(ts) {
    if (!ts) return "—";
    const d = new Date(ts * 1000);
    return d.toLocaleTimeString("en-GB", { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
  },
  when(ts) {
    if (!ts) return "—";
    const d = new Date(ts * 1000);
    return d.toLocaleDateString("en-CA") + " " + d.toLocaleTimeString("en-GB", { hour12: false });
  },
  ago(ts) {
    if (!ts) return "never";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return Math.round(s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  },
  json(v) { return typeof v === "string" ? v : JSON.stringify(v, null, 2); },
};

function chip(text, cls) { return h("span", { class: "chip " + (cls || text) }, text); }

function empty(title, text) { return h("div", { class: "empty" }, h("b", {}, title), text || ""); }

function card(title, body, extra) {
  return h("div", { class: "card" }, h("h2", {}, title, h("span", { class: "spacer" }), extra || null), body);
}

function table(columns, rows, rowAttrs) {
  const head = h("tr", {}, columns.map(c => h("th", { class: c.num ? "num" : "" }, c.label)));
  const body = [];
  rows.forEach((r, i) => {
    const attrs = rowAttrs ? rowAttrs(r, i) : {};
    body.push(h("tr", attrs, columns.map(c => h("td", { class: (c.num ? "num " : "") + (c.cls || "") }, c.cell(r)))));
    if (attrs && attrs.detail) body.push(attrs.detail);
  });
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

function toast(text, bad) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

function sparkline(values, errors, width, height) {
  width = width || 120; height = height || 28;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const pts = values.map((v, i) => [i * step, height - 2 - (v / max) * (height - 4)]);
  const line = pts.map((p, i) => (i ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1)).join(" ");
  const area = line + ` L${width} ${height} L0 ${height} Z`;
  const errs = (errors || []).map((e, i) => e ? svg("rect", { class: "err", x: Math.max(0, i * step - 1), y: height - 4, width: 2.5, height: 4 }) : null);
  return svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}` },
    svg("path", { class: "area", d: area }), svg("path", { class: "line", d: line }), errs);
}

const PALETTE = ["#2f6f73", "#6c8ebf", "#c08a3e", "#8f6bb3", "#5f9e6e", "#b5646b", "#4d7f99", "#9a8c55"];

function barChart(buckets, series) {
  // buckets: [{label, values: {name: number}}]; series: names, stacked.
  const W = 1000, H = 240, L = 84, B = 26, T = 10;
  const totals = buckets.map(b => series.reduce((s, n) => s + (b.values[n] || 0), 0));
  const max = Math.max(...totals, 0) || 1;
  const bw = (W - L - 8) / Math.max(1, buckets.length);
  const nodes = [];
  for (let i = 0; i <= 4; i++) {
    const y = T + (H - T - B) * (1 - i / 4);
    nodes.push(svg("line", { x1: L, x2: W, y1: y, y2: y }));
    nodes.push(svg("text", { x: L - 8, y: y + 4, "text-anchor": "end" }, fmt.usd(max * i / 4)));
  }
  buckets.forEach((b, i) => {
    let y = H - B;
    series.forEach((name, k) => {
      const v = b.values[name] || 0;
      if (!v) return;
      const hgt = (v / max) * (H - T - B);
      y -= hgt;
      nodes.push(svg("rect", { x: L + i * bw + 1, y, width: Math.max(1, bw - 2), height: hgt,
        fill: PALETTE[k % PALETTE.length] }, svg("title", {}, `${b.label} · ${name}: ${fmt.usd(v)}`)));
    });
    const every = Math.ceil(buckets.length / 12);
    if (i % every === 0) nodes.push(svg("text", { x: L + i * bw + bw / 2, y: H - 8, "text-anchor": "middle" }, b.label));
  });
  return svg("svg", { class: "bar-chart", viewBox: `0 0 ${W} ${H}` }, nodes);
}

function segmented(options, current, onPick) {
  return h("div", { class: "seg" }, options.map(o =>
    h("button", { type: "button", class: o === current ? "on" : "", onclick: () => onPick(o) }, o)));
}

