// truckctl portal: one run's page (the document of `truckctl runs show RUN_ID --json`), as text only.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value; else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function when(ts) {
  if (!ts) return "-";
  return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function show(value) {
  if (value === null || value === undefined) return "-";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function table(headers, rows) {
  const head = el("tr", {}, ...headers.map((h) => el("th", { text: h })));
  return el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, head),
    el("tbody", {}, ...rows.map((cells) => el("tr", {}, ...cells.map((c) => el("td", { text: show(c) })))))));
}

function put(id, ...children) { document.getElementById(id).replaceChildren(...children); }

function render(doc) {
  const s = doc.result.summary;
  document.getElementById("run-title").textContent = s.run_id;
  document.title = `${s.run_id} · truckctl portal`;
  const badge = document.getElementById("run-status");
  badge.textContent = `${s.status} (exit ${s.exit_code})`;
  badge.className = `badge ${s.status === "ok" ? "st-ok" : s.status === "running" ? "st-unknown" : s.status === "changes" ? "st-degraded" : "st-down"}`;
  put("run-summary", el("dl", { class: "kv" }, ...[["command", s.command], ["stage", s.stage], ["target", s.target],
    ["started", when(s.started)], ["ended", when(s.ended)], ["took", `${s.duration_s} s`], ["failed step", s.failed_step]]
    .flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: show(v) })])));
  const errors = s.errors || [];
  document.getElementById("run-errors-panel").hidden = !errors.length;
  put("run-errors", ...errors.map((e) => el("li", { class: "problem", text: e.location ? `${e.location}: ${e.message}` : e.message })));
  const hosts = ((s.result || {}).truck || {}).hosts || {};
  const names = Object.keys(hosts);
  if (names.length) {
    const keys = [...new Set(names.flatMap((n) => Object.keys(hosts[n] || {})))];
    put("run-nodes", table(["node", ...keys], names.map((n) => [n, ...keys.map((k) => (hosts[n] || {})[k])])));
  } else {
    put("run-nodes", el("p", { class: "muted", text: "no per-node results in this run (no truck step ran)" }));
  }
  const steps = Object.entries(s.steps || {});
  put("run-steps", steps.length ? table(["step", "status", "changed", "took (s)"],
    steps.map(([name, st]) => [name, st.status, st.changed, st.duration_s])) : el("p", { class: "muted", text: "no steps" }));
  const events = doc.result.events || [];
  const shown = events.slice(-300);
  put("run-events", table(["time", "kind", "step", "what"], shown.map((e) => {
    const { ts, kind, step, ...rest } = e;
    return [ts ? when(ts).slice(11) : "", kind, step, JSON.stringify(rest).slice(0, 300)];
  })), events.length > shown.length ? el("p", { class: "muted small", text: `last ${shown.length} of ${events.length} events` }) : null);
}

async function load() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  try {
    const response = await fetch(`/api/runs/${encodeURIComponent(id)}`, { credentials: "same-origin" });
    const doc = await response.json();
    if (!response.ok || !doc.ok) {
      document.getElementById("run-status").textContent = "unavailable";
      document.getElementById("run-errors-panel").hidden = false;
      put("run-errors", ...(doc.errors || [{ message: doc.detail || "cannot load this run" }]).map((e) => el("li", { class: "problem", text: e.message })));
      return;
    }
    render(doc);
  } catch (err) {
    document.getElementById("run-status").textContent = "cannot reach the portal";
  }
}

load();
