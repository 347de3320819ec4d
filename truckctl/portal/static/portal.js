// truckctl portal: renders the server's snapshots (server-sent events from /api/events) without reloads.
// Every string from the server is set as text (never as HTML): the configuration's strings are data.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HISTORY_S = 3600;
const plots = {};          // truck -> {chart, data}
let samples = [];          // [{t, trucks: {truck: {telemetry, heartbeat}}}]
let lastSampleT = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value; else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function when(ts) {
  if (!ts) return "-";
  const d = new Date(ts * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function ago(view) {
  if (!view || view.state === "unknown") return "n/a";
  if (view.state === "none") return "never seen";
  const text = `${Math.round(view.age_s)} s ago`;
  return view.state === "stale" ? `STALE ${text}` : text;
}

function streamClass(view) {
  return { ok: "st-ok", stale: "st-down", none: "st-down" }[view && view.state] || "st-unknown";
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  const body = rows.map((cells) => el("tr", {}, ...cells.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", { text: c })))));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head), el("tbody", {}, ...body)));
}

function replace(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children);
  return target;
}

// ---- header --------------------------------------------------------------------------------------

function renderHeader(snap) {
  const h = snap.header;
  document.getElementById("race").textContent = h ? h.race : "truckctl portal";
  document.getElementById("stage").textContent = h
    ? `${h.name} · ${h.date} · ${h.start} → ${h.finish} · ${h.tech_zone} · ${snap.target}`
    : `${snap.stage} · ${snap.target}`;
  document.title = `${snap.stage} · truckctl portal`;
  const verdict = document.getElementById("verdict");
  const status = snap.status;
  const healthy = status && status.healthy;
  verdict.textContent = status ? (healthy ? "HEALTHY" : "UNHEALTHY") : "NOT MEASURED";
  verdict.className = "badge " + (status ? (healthy ? "st-ok" : "st-down") : "st-unknown");
  document.getElementById("checked").textContent = `checked ${when(snap.at)}`;
  const errors = snap.errors || [];
  document.getElementById("errors-panel").hidden = errors.length === 0;
  replace("errors", ...errors.map((e) => el("li", { class: "problem", text: e.location ? `${e.location}: ${e.message}` : e.message })));
}

// ---- incidents -----------------------------------------------------------------------------------

function incidentBlock(i) {
  const where = i.kind === "address-conflict" ? i.address : i.node;
  const head = el("h3", {},
    el("span", { class: "badge " + (i.resolved ? "st-ok" : "st-down"), text: i.kind }),
    el("span", { class: "incident-truck", text: i.truck }),
    where ? el("span", { class: "incident-where", text: where }) : null,
    el("span", { class: "muted small", text: `at ${i.hop}` }));
  const times = i.resolved ? `opened ${when(i.opened)}, resolved ${when(i.resolved)}`
    : (i.opened ? `open since ${when(i.opened)}` : "open (seen by this check)");
  return el("div", { class: "incident", "data-incident": i.id, "data-kind": i.kind, "data-truck": i.truck,
                     "data-node": i.node, "data-state": i.resolved ? "resolved" : "open" },
    head,
    el("p", { class: "small", text: `${i.title}; ${times}${i.source === "cloud" ? " (seen by the cloud side)" : ""}` }),
    el("ul", { class: "evidence" }, ...i.evidence.map((line) => el("li", { text: line }))),
    i.symptoms.length ? el("details", { class: "symptoms", open: !i.resolved },
      el("summary", { text: `explains ${i.symptoms.length} symptom(s)` }),
      el("ul", {}, ...i.symptoms.map((s) => el("li", { class: "symptom", "data-node": s.node, text: s.text })))) : null);
}

function renderIncidents(snap) {
  const incidents = (snap.incidents && snap.incidents.open) || [];
  const recent = (snap.incidents && snap.incidents.recent) || [];
  document.getElementById("incident-count").textContent = `(${incidents.length})`;
  document.getElementById("recent-count").textContent = `(${recent.length})`;
  if (!incidents.length) {
    replace("incidents", el("p", { class: "ok-line", "data-incidents": "none", text: snap.status ? "No open incident." : "not measured" }));
  } else {
    replace("incidents", ...incidents.map(incidentBlock));
  }
  replace("incidents-recent", ...(recent.length ? recent.map(incidentBlock) : [el("p", { class: "muted", text: "none" })]));
}

// ---- problems ------------------------------------------------------------------------------------

function renderProblems(snap) {
  const problems = snap.problems || [];
  document.getElementById("problem-count").textContent = `(${problems.length})`;
  if (!problems.length) {
    replace("problems", el("p", { class: "ok-line", "data-problems": "none", text: "No problems: every node, service and stream is healthy." }));
    return;
  }
  const groups = new Map();
  for (const p of problems) {
    const key = p.truck || "stage";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(p);
  }
  const blocks = [];
  for (const [truck, items] of groups) {
    blocks.push(el("div", { class: "problems-truck", "data-truck": truck },
      el("h3", {}, el("span", { class: "badge st-down", text: String(items.length) }), el("span", { text: truck })),
      el("ul", {}, ...items.map((p) => el("li", { class: "problem", "data-kind": p.kind, "data-node": p.node, text: p.text })))));
  }
  replace("problems", ...blocks);
}

// ---- topology picture ----------------------------------------------------------------------------

function renderTopology(snap) {
  const topo = snap.topology;
  if (!topo) { replace("topology", el("p", { class: "muted", text: "no topology: the stage cannot be loaded" })); return; }
  const colW = 230, nodeH = 44, top = 110;
  const width = Math.max(360, topo.trucks.length * colW + 20);
  const maxNodes = Math.max(1, ...topo.trucks.map((t) => t.nodes.length));
  const height = top + 50 + maxNodes * (nodeH + 8) + 20;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "topology of the stage" });
  root.style.maxWidth = `${Math.round(width * 1.3)}px`;  // CSSOM, not a style attribute: allowed by the CSP
  const cloud = topo.cloud;
  const cx = width / 2;
  const cloudG = svg("g", { "data-cloud": cloud.state });
  cloudG.append(svg("rect", { x: cx - 110, y: 8, width: 220, height: 44, rx: 20, class: `st-${cloud.state}` }));
  cloudG.append(svg("text", { x: cx, y: 28, "text-anchor": "middle", class: "label-in" }, `cloud · ${cloud.region}`));
  cloudG.append(svg("text", { x: cx, y: 44, "text-anchor": "middle", class: "label-in" }, cloud.endpoint || cloud.label));
  root.append(cloudG);
  topo.trucks.forEach((truck, i) => {
    const x = 10 + i * colW, w = colW - 20;
    const g = svg("g", { "data-truck": truck.name, "data-state": truck.state });
    const gw = truck.nodes.findIndex((n) => n.gateway);
    const gwY = top + 50 + Math.max(0, gw) * (nodeH + 8);
    // the uplink: cloud -> this truck's gateway
    g.append(svg("path", { d: `M ${cx} 52 C ${cx} 80, ${x + w / 2} 70, ${x + w / 2} ${top}`, class: `link st-${truck.uplink.state}`,
                           "data-uplink": truck.uplink.state }));
    g.append(svg("text", { x: x + w / 2 + 6, y: top - 8, class: "small" }, `uplink · ${truck.uplink.kind}`));
    g.append(svg("rect", { x, y: top, width: w, height: height - top - 10, rx: 8, class: `truck-box st-${truck.state}`, "fill-opacity": "0.08" }));
    g.append(svg("text", { x: x + 8, y: top + 18 }, truck.name));
    g.append(svg("text", { x: x + 8, y: top + 34, class: "small" }, `LAN ${truck.lan}`));
    g.append(svg("line", { x1: x + 14, y1: top + 44, x2: x + 14, y2: height - 24, class: "lan-line" }));
    truck.nodes.forEach((node, j) => {
      const y = top + 50 + j * (nodeH + 8);
      const n = svg("g", { "data-node": node.name, "data-state": node.state });
      n.append(svg("line", { x1: x + 14, y1: y + nodeH / 2, x2: x + 26, y2: y + nodeH / 2, class: "lan-line" }));
      n.append(svg("rect", { x: x + 26, y, width: w - 34, height: nodeH, rx: 6, class: `st-${node.state}` }));
      n.append(svg("text", { x: x + 34, y: y + 18, class: "label-in" }, node.name + (node.gateway ? " (gw)" : "")));
      n.append(svg("text", { x: x + 34, y: y + 34, class: "label-in" }, `${node.address} · hb ${node.heartbeat}`));
      g.append(n);
    });
    root.append(g);
  });
  replace("topology", root);
}

// ---- nodes ---------------------------------------------------------------------------------------

function services(node) {
  const entries = Object.entries(node.services || {});
  if (!entries.length) return node.reachable ? "-" : node.detail;
  const down = entries.filter(([, s]) => s !== "active");
  return down.length ? down.map(([u, s]) => `${u} ${s}`).join(", ") : `all ${entries.length} active (${entries.map(([u]) => u).join(", ")})`;
}

function renderNodes(snap) {
  const status = snap.status;
  if (!status) { replace("nodes", el("p", { class: "muted", text: "not measured (see above)" })); return; }
  const blocks = [];
  for (const truck of status.trucks) {
    blocks.push(el("h3", {}, el("span", { class: `badge ${truck.healthy ? "st-ok" : "st-down"}`, text: truck.healthy ? "ok" : "unhealthy" }),
      el("span", { text: ` ${truck.name} · telemetry at the cloud side: ${ago(truck.telemetry)}` +
        (truck.telemetry.count !== null && truck.telemetry.count !== undefined ? ` (${truck.telemetry.count} messages)` : "") })));
    const cards = truck.nodes.map((node) => {
      const state = !node.reachable ? (node.detail === "not probed" ? "st-unknown" : "st-down") : node.healthy ? "st-ok" : "st-degraded";
      return el("div", { class: `node-card ${state}`, "data-node": node.name },
        el("strong", { text: node.name }), el("span", { class: "muted", text: ` ${node.role}` }),
        el("dl", { class: "kv" },
          el("dt", { text: "address" }), el("dd", { text: node.address }),
          el("dt", { text: "ssh" }), el("dd", { text: node.reachable ? "ok" : `unreachable: ${node.detail}` }),
          el("dt", { text: "services" }), el("dd", { text: services(node) }),
          el("dt", { text: "heartbeat" }), el("dd", { class: streamClass(node.heartbeat) === "st-ok" ? "" : "problem", text: ago(node.heartbeat) })));
    });
    blocks.push(el("div", { class: "node-cards" }, ...cards));
  }
  replace("nodes", ...blocks);
}

// ---- plots ---------------------------------------------------------------------------------------

function addSample(sample) {
  if (!sample || sample.t <= lastSampleT) return;
  samples.push(sample);
  lastSampleT = sample.t;
  const cutoff = sample.t - HISTORY_S;
  while (samples.length && samples[0].t < cutoff) samples.shift();
}

function plotData(truck) {
  const xs = [], tel = [], hb = [];
  for (const s of samples) {
    const r = s.trucks[truck];
    xs.push(s.t);
    tel.push(r ? r.telemetry : null);
    hb.push(r ? r.heartbeat : null);
  }
  return [xs, tel, hb];
}

function plotWidth() {
  const panel = document.getElementById("plots");
  return Math.max(200, panel.clientWidth - 4);
}

function renderPlots(snap) {
  const trucks = (snap.topology ? snap.topology.trucks.map((t) => t.name) : []);
  const container = document.getElementById("plots");
  if (typeof window.uPlot !== "function") {
    replace("plots", el("p", { class: "problem", text: "the charting library is missing from this install (run scripts/setup.sh); latest rates: " +
      trucks.map((t) => { const r = (snap.sample.trucks || {})[t] || {}; return `${t} telemetry ${r.telemetry ?? "-"}/s, heartbeats ${r.heartbeat ?? "-"}/s`; }).join("; ") }));
    return;
  }
  for (const truck of trucks) {
    const data = plotData(truck);
    if (!plots[truck]) {
      const holder = el("div", { class: "truck-plot", "data-truck": truck }, el("h3", { text: truck }));
      container.append(holder);
      const opts = {
        width: plotWidth(), height: 160,
        scales: {
          // until there is a few minutes of data, show the last five minutes rather than a stretched axis
          x: { time: true, range: (u, min, max) => (min === null || max - min < 300
            ? [(max ?? Date.now() / 1000) - 300, (max ?? Date.now() / 1000) + 2] : [min, max]) },
          y: { range: (u, min, max) => [0, Math.max(1, max || 0) * 1.15] },
        },
        series: [{}, { label: "telemetry msg/s", stroke: "#2563eb", width: 2, spanGaps: false },
                 { label: "heartbeats msg/s", stroke: "#16a34a", width: 2, spanGaps: false }],
        axes: [{}, { size: 40 }],
        legend: { live: false },
      };
      plots[truck] = new window.uPlot(opts, data, holder);
    } else {
      plots[truck].setData(data);
    }
  }
}

window.addEventListener("resize", () => {
  for (const chart of Object.values(plots)) chart.setSize({ width: plotWidth(), height: 160 });
});

// ---- runs, drift, lock, cloud --------------------------------------------------------------------

function renderRuns(snap) {
  const runs = snap.runs || [];
  document.getElementById("runs-count").textContent = `(${snap.runs_total ?? runs.length})`;
  if (!runs.length) { replace("runs", el("p", { class: "muted", text: "no run recorded for this stage yet" })); return; }
  replace("runs", table(["run", "by", "command", "status", "started", "took", "failed step"], runs.map((r) => [
    // another operator's run (recorded on the gateways) has only its summary here: no page of its own
    r.origin && r.origin !== "local" ? el("span", { "data-run": r.run_id, text: r.run_id })
      : el("a", { href: `/runs/${encodeURIComponent(r.run_id)}`, "data-run": r.run_id, text: r.run_id }),
    r.origin || "local",
    `${r.command}${r.target ? " · " + r.target : ""}`,
    el("span", { class: `badge ${r.status === "ok" ? "st-ok" : r.status === "running" ? "st-unknown" : r.status === "changes" ? "st-degraded" : "st-down"}`, text: `${r.status} (${r.exit_code})` }),
    when(r.started), r.duration_s !== null && r.duration_s !== undefined ? `${Number(r.duration_s).toFixed(1)} s` : "-", r.failed_step || "",
  ])));
}

function kv(pairs) {
  return el("dl", { class: "kv" }, ...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : String(v ?? "-"))]));
}

function renderDrift(snap) {
  const d = snap.drift;
  if (!d) { replace("drift", el("p", { class: "muted", text: `never measured (truckctl drift ${snap.stage})` })); return; }
  const found = { true: "drift found", false: "no drift" }[String(d.drift)] || "result unknown";
  const parts = [kv([["last measured", when(d.started)], ["result", el("span", { class: `badge ${d.drift === false ? "st-ok" : d.drift ? "st-down" : "st-unknown"}`, text: found })],
    ["run", el("a", { href: `/runs/${encodeURIComponent(d.run_id)}`, text: `${d.run_id} (${d.status})` })],
    ["fixed", d.fixed === null || d.fixed === undefined ? "-" : d.fixed ? "yes" : "no"]])];
  if (d.items && d.items.length) {
    parts.push(table(["tier", "node", "item"], d.items.map((i) => [i.tier || "", i.node || "-", i.item])));
    if (d.items_total > d.items.length) parts.push(el("p", { class: "muted small", text: `… and ${d.items_total - d.items.length} more on the run's page` }));
  }
  replace("drift", ...parts);
}

function renderLock(snap) {
  const lock = snap.lock;
  if (!lock) { replace("lock", el("p", { class: "ok-line", "data-lock": "free", text: "free: no run holds this stage" })); return; }
  replace("lock", el("p", { class: "problem", "data-lock": lock.stale ? "stale" : "held",
    text: `${lock.stale ? "STALE lock" : "held"} by ${lock.description}` + (lock.stale ? ` (clear it with truckctl unlock ${snap.stage})` : "") }));
}

function renderCloud(snap) {
  const cloud = (snap.cloud || {}).status;
  const plan = (snap.cloud || {}).plan;
  const parts = [];
  if (cloud) {
    const rows = [["state", cloud.state], ["stand-in", cloud.standin || "-"], ["endpoint", cloud.endpoint || "-"],
      ["alerts received", cloud.alerts ?? "-"], ["telemetry stream", cloud.telemetry_stream || "-"],
      ["data lake", cloud.datalake_bucket || "-"], ["VPN endpoint", cloud.vpn_endpoint || "-"]];
    if (cloud.last_seen_note) rows.push(["cloud side", cloud.last_seen_note]);
    parts.push(kv(rows));
  } else {
    parts.push(el("p", { class: "muted", text: "not measured" }));
  }
  if (plan) {
    parts.push(el("h3", { text: "last recorded cloud step" }));
    parts.push(kv([["run", el("a", { href: `/runs/${encodeURIComponent(plan.run_id)}`, text: plan.run_id })], ["mode", plan.mode],
      ["resources", plan.resources], ["by component", Object.entries(plan.by_component || {}).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["policy violations", plan.policy_violations ?? "-"], ["policy rules", (plan.policy_rules || []).length]]));
  } else {
    parts.push(el("p", { class: "muted small", text: "no cloud step recorded yet (an `up` records its plan or apply)" }));
  }
  replace("cloud", ...parts);
}

// ---- wiring --------------------------------------------------------------------------------------

function render(snap) {
  addSample(snap.sample);
  const steps = [renderHeader, renderIncidents, renderProblems, renderTopology, renderNodes, renderRuns, renderDrift, renderLock, renderCloud, renderPlots];
  for (const step of steps) {
    try { step(snap); } catch (err) { console.error(step.name, err); }
  }
  document.body.dataset.snapshot = String(snap.at);
  document.body.dataset.rendered = String(Date.now());  // for the event-to-screen benchmark
}

async function loadHistory() {
  try {
    const response = await fetch("/api/history", { credentials: "same-origin" });
    if (!response.ok) return;
    const doc = await response.json();
    const known = new Set(samples.map((s) => s.t));
    const merged = doc.samples.filter((s) => !known.has(s.t)).concat(samples).sort((a, b) => a.t - b.t);
    samples = merged;
    lastSampleT = samples.length ? samples[samples.length - 1].t : 0;
  } catch (err) { console.error("history", err); }
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "badge st-ok"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting"; live.className = "badge st-degraded"; });
  source.addEventListener("snapshot", (event) => {
    let snap;
    try { snap = JSON.parse(event.data); } catch (err) { console.error("bad event", err); return; }
    render(snap);
  });
}

connect();      // the first snapshot renders at once; the plots' history joins when it arrives
loadHistory().then(() => { for (const t of Object.keys(plots)) plots[t].setData(plotData(t)); });
