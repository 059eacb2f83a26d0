// The Squall dashboard: one page, hash routes (#/queues/emails), and live updates by
// polling the JSON API while the tab is visible. ui.js builds, pages.js renders.
"use strict";

// -- routing and live updates -----------------------------------------------------------

function route() {
  const parts = (location.hash.replace(/^#\/?/, "") || "functions").split("/");
  const name = pages[parts[0]] ? parts[0] : "functions";
  return { name, arg: parts[1] ? decodeURIComponent(parts.slice(1).join("/")) : null };
}

let rendering = 0;
async function refresh() {
  lastRefresh = Date.now();
  const { name, arg } = route();
  const page = pages[name];
  const ticket = ++rendering;
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("on", a.dataset.page === name));
  const title = document.getElementById("title");
  title.replaceChildren(arg && name !== "invocations" ? h("span", {}, h("a", { class: "crumb", href: "#/" + name }, page.title), " / ", arg.length > 24 ? arg.slice(0, 24) + "…" : arg) : page.title);
  document.title = `${page.title} · ${state.meta ? state.meta.app : "Squall"}`;
  const tools = document.getElementById("tools");
  tools.replaceChildren(...[page.tools ? page.tools(arg) : null].filter(Boolean));
  try {
    const content = await page.render(arg);
    if (ticket !== rendering) return;
    const keep = window.scrollY;
    document.getElementById("page").replaceChildren(...[content].flat());
    window.scrollTo(0, keep);
    document.getElementById("page").dataset.page = name;
    document.getElementById("error").hidden = true;
    const live = document.getElementById("live");
    live.classList.remove("pulse"); void live.offsetWidth; live.classList.add("pulse");
    document.getElementById("live-text").textContent = state.paused ? "Paused" : "Live · " + new Date().toLocaleTimeString("en-GB", { hour12: false });
  } catch (e) {
    if (ticket !== rendering) return;
    const banner = document.getElementById("error");
    banner.textContent = e.message;
    banner.hidden = false;
  }
}

function badges() {
  // The side bar: dead letters waiting on Queues, alerts firing on Alerts.
  const set = (page, n, title) => {
    const a = document.querySelector(`#nav a[data-page=${page}]`);
    let b = a.querySelector(".badge");
    if (!n) { if (b) b.remove(); return; }
    if (!b) { b = h("span", { class: "badge" }); a.append(b); }
    b.textContent = n > 999 ? "999+" : String(n);
    b.title = title;
  };
  set("queues", state.meta.deadLetters, "dead letters waiting");
  set("alerts", state.meta.firing, "alerts firing");
}

// Figures over a long window change slowly and cost a scan of the window: refresh those
// pages less often (a sparkline bucket of a 7-day window is 5.6 hours).
const SLOW = { functions: { "24h": 30000, "7d": 120000 }, costs: { hour: 30000, day: 120000 } };
let lastRefresh = 0;

function minGap() {
  const name = route().name;
  const key = name === "functions" ? state.window : name === "costs" ? state.costBy : null;
  return (SLOW[name] && SLOW[name][key]) || 0;
}

function schedule() {
  clearInterval(state.timer);
  const every = (state.meta && state.meta.pollMs) || 2000;
  state.timer = setInterval(() => {
    if (state.paused || state.busy || document.hidden) return;
    api("meta").then(m => { state.meta = m; badges(); }, () => {});
    if (document.activeElement.matches("input, select")) return;
    if (Date.now() - lastRefresh >= minGap()) refresh();
  }, every);
}

async function start() {
  try {
    state.meta = await api("meta");
    document.getElementById("app-name").textContent = "app " + state.meta.app;
    badges();
  } catch (e) {
    const banner = document.getElementById("error");
    banner.textContent = e.message;
    banner.hidden = false;
  }
  document.getElementById("live").addEventListener("click", () => {
    state.paused = !state.paused;
    document.getElementById("live").classList.toggle("paused", state.paused);
    document.getElementById("live-text").textContent = state.paused ? "Paused" : "Live";
    if (!state.paused) refresh();
  });
  window.addEventListener("hashchange", () => { state.openRows.clear(); state.selected.clear(); refresh(); });
  document.addEventListener("visibilitychange", () => { if (!document.hidden && !state.paused) refresh(); });
  await refresh();
  schedule();
}

start();
