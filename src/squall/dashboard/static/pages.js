// The dashboard's pages: each renders from one JSON endpoint (api/dashboard/...).
"use strict";

// -- pages ----------------------------------------------------------------------------

const pages = {};

pages.functions = {
  title: "Functions",
  tools() { return segmented(["15m", "1h", "6h", "24h", "7d"], state.window, w => { state.window = w; refresh(); }); },
  async render() {
    const d = await api("functions?window=" + state.window);
    const fs = d.functions;
    const sum = k => fs.reduce((s, f) => s + (f[k] || 0), 0);
    const total = sum("invocations"), errors = sum("errors");
    const costTotal = sum("costUsd");
    const stats = h("div", { class: "stats" },
      stat("Invocations", fmt.n(total), `${fmt.rate(sum("perMinute"))} / min over ${d.window}`),
      stat("Errors", fmt.n(errors), total ? fmt.pct(errors / total) + " of invocations" : "none", errors > 0),
      stat("Cold starts", fmt.n(sum("coldStarts")), "new workers forked"),
      stat("p99, slowest function", fmt.ms(Math.max(0, ...fs.map(f => f.p99Ms || 0)) || null), "99th percentile duration"),
      stat("Cost", fmt.usd(costTotal), `over ${d.window}, at list prices`));
    if (!fs.length) return [stats, card("Functions", empty("No functions", "This app declares none."))];
    const cols = [
      { label: "Function", cls: "name", cell: f => [f.name, h("div", { class: "sub" }, f.trigger)] },
      { label: "Per min", num: true, cell: f => fmt.rate(f.perMinute) },
      { label: "Activity", cell: f => sparkline(f.series, f.errorSeries) },
      { label: "Errors", num: true, cell: f => f.errors ? h("span", { style: "color: var(--bad)" }, `${f.errors} · ${fmt.pct(f.errorRate)}`) : "0" },
      { label: "p50", num: true, cell: f => fmt.ms(f.p50Ms) },
      { label: "p99", num: true, cell: f => fmt.ms(f.p99Ms) },
      { label: "Cold starts", num: true, cell: f => f.coldStarts ? [`${f.coldStarts}`, f.initP50Ms !== null ? h("div", { class: "sub" }, "init " + fmt.ms(f.initP50Ms)) : null] : "0" },
      { label: "Memory", num: true, cell: f => f.memoryMb + " MB" },
      { label: "Cost", num: true, cell: f => f.invocations ? fmt.usd(f.costUsd) : "—" },
      { label: "Warm", num: true, cell: f => f.warm },
    ];
    return [stats, card("Functions", table(cols, fs, f => ({ class: "click", "data-function": f.name,
      onclick: () => { location.hash = "#/invocations/" + encodeURIComponent(f.name); } })))];
  },
};

function stat(label, value, sub, bad) {
  return h("div", { class: "stat" }, h("div", { class: "label" }, label),
    h("div", { class: "value" + (bad ? " bad" : "") }, value), h("div", { class: "sub" }, sub));
}

pages.invocations = {
  title: "Invocations",
  tools(fn) {
    const names = (state.meta && state.meta.functions) || [];
    return h("select", { "aria-label": "Function", onchange: e => { location.hash = "#/invocations/" + encodeURIComponent(e.target.value); } },
      h("option", { value: "" }, "All functions"),
      names.map(n => h("option", { value: n, selected: n === fn }, n)));
  },
  async render(fn) {
    const d = await api("invocations?limit=100" + (fn ? "&function=" + encodeURIComponent(fn) : ""));
    if (!d.invocations.length) return card("Recent invocations", empty("No invocations yet", "Call a route, send a message or invoke a function: it shows here at once."));
    const cols = [
      { label: "Time", cell: r => h("span", { class: "mono" }, fmt.time(r.started_at)) },
      { label: "Function", cls: "name", cell: r => r.function },
      { label: "Trigger", cell: r => h("span", { class: "muted" }, r.trigger) },
      { label: "Status", cell: r => [chip(r.status), r.cold ? [" ", chip("cold")] : null] },
      { label: "Duration", num: true, cell: r => fmt.ms(r.duration_ms) },
      { label: "Memory", num: true, cell: r => `${r.max_memory_mb} / ${r.memory_mb} MB` },
      { label: "Request id", cell: r => h("span", { class: "mono muted" }, r.request_id) },
    ];
    return card("Recent invocations", table(cols, d.invocations, r => {
      const open = state.openRows.has(r.request_id);
      return { class: "click" + (open ? " open" : ""), "data-request": r.request_id,
        onclick: () => { toggle(state.openRows, r.request_id); refresh(); },
        detail: open ? h("tr", { class: "open" }, h("td", { colspan: cols.length }, invocationDetail(r))) : null };
    }), h("span", { class: "muted" }, "newest first · click a row for its logs"));
  },
};

function invocationDetail(r) {
  let report = `REPORT Duration: ${r.duration_ms.toFixed(2)} ms  Billed Duration: ${r.billed_ms} ms  Memory Size: ${r.memory_mb} MB  Max Memory Used: ${r.max_memory_mb} MB`;
  if (r.cold && r.init_ms !== null) report += `  Init Duration: ${r.init_ms.toFixed(2)} ms`;
  return h("div", { class: "detail" },
    r.logs.length ? h("pre", { class: "logs" }, r.logs.join("\n")) : h("div", { class: "muted" }, "No output."),
    r.error_type ? h("pre", { style: "color: var(--bad)" }, `${r.error_type}: ${r.error_message || ""}`) : null,
    h("div", { class: "report" }, report));
}

function toggle(set, key) { if (set.has(key)) set.delete(key); else set.add(key); }

pages.traces = {
  title: "Traces",
  async render(id) {
    if (id) return traceView(id);
    const d = await api("traces?limit=100");
    if (!d.available) return card("Traces", empty("Tracing is not available", "This build has no trace store."));
    if (!d.traces.length) return card("Traces", empty("No traces yet", "Every request and every asynchronous hop it causes is one trace."));
    const cols = [
      { label: "Started", cell: t => h("span", { class: "mono" }, fmt.time(t.start)) },
      { label: "Root", cls: "name", cell: t => t.root },
      { label: "Function", cell: t => t.function || "—" },
      { label: "Spans", num: true, cell: t => t.spans },
      { label: "Errors", num: true, cell: t => t.errors ? h("span", { style: "color: var(--bad)" }, t.errors) : "0" },
      { label: "Duration", num: true, cell: t => fmt.ms(t.duration_ms) },
      { label: "Trace id", cell: t => h("span", { class: "mono muted" }, t.trace_id) },
    ];
    return card("Recent traces", table(cols, d.traces, t => ({ class: "click", "data-trace": t.trace_id,
      onclick: () => { location.hash = "#/traces/" + t.trace_id; } })));
  },
};

async function traceView(id) {
  const d = await api("traces/" + encodeURIComponent(id));
  const total = Math.max(d.duration_ms, 0.001);
  const cells = [h("div", { class: "head" }, "Span"), h("div", { class: "head" }, "Timeline · " + fmt.ms(d.duration_ms)), h("div", { class: "head dur" }, "Duration")];
  for (const s of d.spans) {
    const left = (s.offsetMs / total) * 100;
    const width = Math.max(0.4, (s.duration_ms / total) * 100);
    const cls = [s.kind, s.status === "ok" ? "" : s.status === "running" ? "running" : "bad"].join(" ");
    cells.push(
      h("div", { class: "label", style: `padding-left: ${12 + s.depth * 18}px`, title: s.name }, s.name, h("span", { class: "kind" }, s.kind)),
      h("div", { class: "lane" }, h("span", { class: cls, style: `left: ${Math.min(left, 99.6)}%; width: ${Math.min(width, 100 - Math.min(left, 99.6))}%`,
        title: `${s.name} · ${fmt.ms(s.duration_ms)} · ${s.status}` })),
      h("div", { class: "dur" }, fmt.ms(s.duration_ms)));
  }
  return [card("Waterfall", h("div", { class: "waterfall", "data-trace": id }, cells),
    h("span", { class: "mono muted" }, id))];
}

pages.queues = {
  title: "Queues",
  async render(queue) {
    if (queue) return deadLetterView(queue);
    const d = await api("queues");
    if (!d.queues.length) return card("Queues", empty("No queues", "Declare one with @app.queue(...)."));
    const cols = [
      { label: "Queue", cls: "name", cell: q => [q.queue, h("div", { class: "sub" }, "→ " + q.function)] },
      { label: "Visible", num: true, cell: q => fmt.n(q.visible) },
      { label: "In flight", num: true, cell: q => fmt.n(q.inFlight) },
      { label: "Delayed", num: true, cell: q => fmt.n(q.delayed) },
      { label: "Depth, last hour", cell: q => h("span", { class: "depth", title: "visible messages, sampled every minute" }, sparkline((q.depthSeries || []).map(v => v || 0))) },
      { label: "Max receives", num: true, cell: q => q.maxReceive },
      { label: "Dead letters", num: true, cell: q => q.deadLetters ? chip(String(q.deadLetters), "error") : chip("0", "ok") },
      { label: "", cell: q => h("a", { href: "#/queues/" + encodeURIComponent(q.queue) }, "Dead-letter queue →") },
    ];
    return card("Queues", table(cols, d.queues, q => ({ "data-queue": q.queue })));
  },
};

async function deadLetterView(queue) {
  const d = await api("queues/" + encodeURIComponent(queue) + "/dead-letters?limit=200");
  const items = d.deadLetters;
  const ids = new Set(items.map(m => m.messageId));
  for (const k of [...state.selected]) if (!ids.has(k)) state.selected.delete(k);
  const redrive = async (chosen) => {
    state.busy = true;
    try {
      const r = await api("queues/" + encodeURIComponent(queue) + "/redrive", { method: "POST", body: JSON.stringify(chosen ? { ids: chosen } : {}) });
      toast(`Redrove ${r.redriven} message${r.redriven === 1 ? "" : "s"} to ${queue}`);
      state.selected.clear();
    } catch (e) { toast(e.message, true); }
    state.busy = false;
    refresh();
  };
  const actions = h("span", {},
    h("button", { type: "button", id: "redrive-selected", disabled: !state.selected.size, onclick: () => redrive([...state.selected]) }, `Redrive selected (${state.selected.size})`), " ",
    h("button", { type: "button", class: "primary", id: "redrive-all", disabled: !items.length, onclick: () => redrive(null) }, "Redrive all"));
  if (!items.length) return card(`Dead letters of ${queue}`, empty("The dead-letter queue is empty", "Messages land here after their last allowed receive."), actions);
  const cols = [
    { label: "", cell: m => h("input", { type: "checkbox", "aria-label": "select " + m.messageId, checked: state.selected.has(m.messageId),
        onclick: e => { e.stopPropagation(); toggle(state.selected, m.messageId); refresh(); } }) },
    { label: "Message", cell: m => [h("div", { class: "mono" }, m.messageId.slice(0, 18)), h("div", { class: "sub" }, fmt.when(m.sentAt))] },
    { label: "Reason", cell: m => chip(m.reason || "?", "error") },
    { label: "Attempts", num: true, cell: m => m.attempts },
    { label: "Last error", cell: m => h("span", { class: "mono" }, (m.lastError || "").slice(0, 140)) },
    { label: "Body", cell: m => h("pre", {}, fmt.json(m.body).slice(0, 400)) },
  ];
  return card(`Dead letters of ${queue}`, table(cols, items, m => ({ "data-message": m.messageId })), actions);
}

pages.bus = {
  title: "Event bus",
  async render() {
    const d = await api("bus?hours=24&limit=100");
    const rules = d.rules.length ? h("div", { class: "rules" }, d.rules.map(r => h("div", { class: "rule", "data-rule": r.name },
      h("div", { class: "name" }, r.name),
      h("div", { class: "targets" }, r.targets.map(t => chip(t, "target"))),
      h("pre", {}, JSON.stringify(r.pattern, null, 1)),
      r.inputPath ? h("div", { class: "muted" }, "input path " + r.inputPath) : null)))
      : empty("No rules", "Declare one with @app.on_event(...).");
    const archive = d.archive.length ? table([
      { label: "Time", cell: e => h("span", { class: "mono" }, fmt.when(e.time)) },
      { label: "Source", cls: "name", cell: e => e.source },
      { label: "Detail type", cell: e => e.detailType },
      { label: "Detail", cell: e => h("pre", {}, JSON.stringify(e.event.detail === undefined ? e.event : e.event.detail).slice(0, 240)) },
    ], d.archive.slice().reverse()) : empty("Nothing archived in the last 24 hours", "Every event put on the bus is archived for replay.");
    return [card("Rules", rules), replayForm(d.rules), card("Archive · last 24 hours", archive)];
  },
};

function replayForm(rules) {
  const local = ts => { const d = new Date(ts * 1000 - new Date().getTimezoneOffset() * 60000); return d.toISOString().slice(0, 16); };
  const now = Date.now() / 1000;
  const from = state.replayFrom || local(now - 3600), to = state.replayTo || local(now + 60);
  const fromIn = h("input", { type: "datetime-local", id: "replay-from", value: from, oninput: e => { state.replayFrom = e.target.value; } });
  const toIn = h("input", { type: "datetime-local", id: "replay-to", value: to, oninput: e => { state.replayTo = e.target.value; } });
  const ruleIn = h("select", { id: "replay-rule", onchange: e => { state.replayRule = e.target.value; } },
    h("option", { value: "" }, "every rule"), rules.map(r => h("option", { value: r.name, selected: r.name === state.replayRule }, r.name)));
  const go = async () => {
    state.busy = true;
    try {
      const body = { from: new Date(fromIn.value).getTime() / 1000, to: new Date(toIn.value).getTime() / 1000, rule: ruleIn.value || null };
      const r = await api("bus/replay", { method: "POST", body: JSON.stringify(body) });
      toast(`Replayed ${r.replayed} archived event${r.replayed === 1 ? "" : "s"}`);
    } catch (e) { toast(e.message, true); }
    state.busy = false;
  };
  return card("Replay", h("div", { class: "body" }, h("div", { class: "form" },
    h("label", {}, "From", fromIn), h("label", {}, "To", toIn), h("label", {}, "Into", ruleIn),
    h("button", { type: "button", class: "primary", id: "replay", onclick: go }, "Replay"))));
}

pages.schedules = {
  title: "Schedules",
  async render() {
    const d = await api("schedules?count=3");
    if (!d.schedules.length) return card("Schedules", empty("No schedules", "Declare one with @app.schedule(\"rate(5 minutes)\")."));
    const cols = [
      { label: "Function", cls: "name", cell: s => s.function },
      { label: "Expression", cell: s => h("span", { class: "mono" }, s.expression) },
      { label: "Time zone", cell: s => s.timezone },
      { label: "Missed ticks", cell: s => s.missed.replace("_", " ") },
      { label: "Next firings", cell: s => h("div", { class: "next mono" }, s.next.map(t => h("span", {}, fmt.when(Date.parse(t) / 1000)))) },
      { label: "Last fired", cell: s => s.lastFired ? fmt.ago(s.lastFired) : h("span", { class: "muted" }, "not yet") },
    ];
    return card("Schedules", table(cols, d.schedules, s => ({ "data-schedule": s.function })));
  },
};

pages.workflows = {
  title: "Workflows",
  async render(id) {
    if (id) return workflowView(id);
    const d = await api("workflows?limit=100");
    if (!d.executions.length) return card("Executions", empty("No executions yet", d.workflows.length ? "Declared: " + d.workflows.join(", ") : "Declare one with @app.workflow()."));
    const cols = [
      { label: "Started", cell: e => h("span", { class: "mono" }, fmt.when(e.created_at)) },
      { label: "Workflow", cls: "name", cell: e => e.name },
      { label: "Status", cell: e => chip(e.status) },
      { label: "Steps", num: true, cell: e => e.length },
      { label: "Updated", cell: e => fmt.ago(e.updated_at) },
      { label: "Execution id", cell: e => h("span", { class: "mono muted" }, e.id) },
    ];
    return card("Executions", table(cols, d.executions, e => ({ class: "click", "data-execution": e.id,
      onclick: () => { location.hash = "#/workflows/" + encodeURIComponent(e.id); } })));
  },
};

async function workflowView(id) {
  const e = await api("workflows/" + encodeURIComponent(id));
  const t0 = e.history.length ? e.history[0].ts : e.created_at;
  const summary = h("div", { class: "body" }, h("dl", { class: "kv" },
    h("dt", {}, "Workflow"), h("dd", {}, e.name, " ", h("span", { class: "muted" }, e.kind.replace("_", " "))),
    h("dt", {}, "Status"), h("dd", {}, chip(e.status)),
    h("dt", {}, "Started"), h("dd", {}, fmt.when(e.created_at)),
    h("dt", {}, "Input"), h("dd", {}, h("pre", {}, fmt.json(e.input))),
    e.output !== null ? [h("dt", {}, "Output"), h("dd", {}, h("pre", {}, fmt.json(e.output)))] : null,
    e.error ? [h("dt", {}, "Error"), h("dd", {}, h("pre", { style: "color: var(--bad)" }, fmt.json(e.error)))] : null));
  const steps = h("ol", { class: "timeline" }, e.history.map(ev => {
    const bad = /Failed|TimedOut|Cancel|Error/.test(ev.type), good = /Completed|Succeeded/.test(ev.type);
    const data = Object.keys(ev.data || {}).length ? h("pre", {}, JSON.stringify(ev.data)) : h("span", { class: "muted" }, "—");
    return h("li", { "data-seq": ev.seq }, h("span", { class: "seq" }, "#" + ev.seq),
      h("span", { class: "type" + (bad ? " bad" : good ? " good" : "") }, ev.type),
      h("span", { class: "at" }, "+" + fmt.ms((ev.ts - t0) * 1000)), data);
  }));
  return [card("Execution", summary, h("span", { class: "mono muted" }, e.id)), card(`Step history · ${e.history.length} events`, steps)];
}

pages.alerts = {
  title: "Alerts",
  async render() {
    const d = await api("alerts");
    if (!d.available) return card("Alerts", empty("Alerts are not available", "This build has no alert evaluator."));
    const rules = d.rules.length ? table([
      { label: "Rule", cls: "name", cell: r => [r.name, h("div", { class: "sub" }, r.description)] },
      { label: "State", cell: r => chip(r.state) },
      { label: "Since", cell: r => r.since ? fmt.when(r.since) : h("span", { class: "muted" }, "—") },
      { label: "Notifies", cell: r => r.notify.length ? h("div", { class: "targets" }, r.notify.map(n => chip(n, "target"))) : h("span", { class: "muted" }, "log only") },
    ], d.rules, r => ({ "data-alert": r.name })) : empty("No alert rules", "Declare one with app.alert(\"errors\", error_rate=0.05, for_s=300).");
    const history = d.history.length ? table([
      { label: "Time", cell: a => h("span", { class: "mono" }, fmt.when(a.at)) },
      { label: "Rule", cls: "name", cell: a => a.rule },
      { label: "State", cell: a => chip(a.state) },
      { label: "Value", num: true, cell: a => a.value === null ? "—" : String(Math.round(a.value * 1000) / 1000) },
      { label: "Message", cell: a => a.message },
    ], d.history, a => ({ "data-history": a.rule })) : empty("Nothing has fired", "Firing and resolved transitions are recorded here.");
    return [card("Rules", rules), card("History", history)];
  },
};

pages.costs = {
  title: "Costs",
  tools() { return segmented(["hour", "day"], state.costBy, b => { state.costBy = b; refresh(); }); },
  async render() {
    const d = await api("costs?by=" + state.costBy);
    if (!d.available) return card("Cost", empty("The cost meter is not available", "This build prices no invocations."));
    const names = d.functions.map(f => f.function);
    const buckets = d.chart.map(b => ({ label: bucketLabel(b.t, state.costBy), values: b.functions }));
    const chart = d.requests ? [barChart(buckets, names),
      h("div", { class: "legend" }, names.map((n, k) => h("span", {}, h("i", { style: `background: ${PALETTE[k % PALETTE.length]}` }), n)))]
      : empty("No cost recorded yet", "Invocations are priced per request and per GB-second.");
    const rows = d.functions.length ? table([
      { label: "Function", cls: "name", cell: r => r.function },
      { label: "Requests", num: true, cell: r => fmt.n(r.requests) },
      { label: "GB-seconds", num: true, cell: r => r.gb_s.toFixed(4) },
      { label: "Cost", num: true, cell: r => fmt.usd(r.usd) },
      { label: "Share", num: true, cell: r => d.usd ? fmt.pct(r.usd / d.usd) : "—" },
    ], d.functions, r => ({ "data-function": r.function })) : empty("No invocations in this period");
    const p = d.pricing;
    return [h("div", { class: "stats" },
      stat("Total", fmt.usd(d.usd), state.costBy === "hour" ? "last 2 days" : "last 30 days"),
      stat("Requests", fmt.n(d.requests), `$${p.per_million_requests_usd} per million`),
      stat("Compute", d.gb_s.toFixed(3) + " GB-s", `$${p.per_gb_s_usd} per GB-second`),
      stat("Projected month", fmt.usd(d.usd / Math.max(1, (d.until - d.since)) * 30 * 86400), "at this period's rate")),
      card(`Cost by ${state.costBy}`, h("div", { class: "body" }, chart)), card("By function", rows)];
  },
};

function bucketLabel(ts, by) {
  const d = new Date(ts * 1000);
  return by === "day" ? d.toLocaleDateString("en-CA").slice(5) : String(d.getHours()).padStart(2, "0") + ":00";
}

