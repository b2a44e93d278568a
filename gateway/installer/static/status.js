// Status page: polls /api/status every 2 s and the chosen node's readings every second.
"use strict";
const $ = (id) => document.getElementById(id);
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
let liveNode = "";
let points = [];

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? s + " s ago" : Math.round(s / 60) + " min ago";
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function fillList(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v, cls] of pairs) { dl.append(el("dt", k), el("dd", String(v), cls)); }
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) tr.append(el("td", String(c)));
  return tr;
}

function fmt(values) {
  return Object.entries(values).map(([k, v]) => k + "=" + (+v).toFixed(2)).join(" ");
}

function showStatus(s) {
  const id = s.identity;
  fillList($("identity-list"), [
    ["Certificate", id.subject || "?"], ["Valid until", id.not_after || "?"],
    ["Key store", id.keystore + (id.keystore_ok ? " (matches certificate)" : " (PROBLEM)"),
     id.keystore_ok ? "ok" : "bad"],
    ["Enrolment", id.enrolled ? "enrolled with " + id.enrolled.cloud : "not enrolled"]]);
  const c = s.cloud;
  fillList($("cloud-list"), [
    ["Cloud", c.url || "none"], ["Last upload", ago(c.last_upload_ms)],
    ["Outbox", c.outbox_records + " records, " + c.outbox_batches + " batches"],
    ["State", c.degraded ? "degraded" : "normal", c.degraded ? "bad" : "ok"],
    ["Last failure", c.last_failure || "none"]]);
  $("alarm-list").replaceChildren(...(s.alarms.length ? s.alarms.map(
    (a) => el("li", a.rule + " on " + a.device + " (severity " + a.severity + ")", "bad"))
    : [el("li", "none", "ok")]));
  $("node-rows").replaceChildren(...s.nodes.map((n) => row(
    [n.device, n.online ? "online" : "offline", ago(n.last_seen_ms), n.reports, n.gaps,
     fmt(n.values)])));
  const rows = [];
  for (const b of s.modbus) for (const u of b.units) rows.push(row(
    [b.bus, u.unit + " (" + u.unit_id + ")", u.poll_s + " s", u.polls, u.failed,
     u.backoff_s ? u.backoff_s.toFixed(1) + " s" : "-"]));
  $("modbus-rows").replaceChildren(...rows);
  $("task-list").textContent = Object.entries(s.tasks).map(([k, v]) => k + ": " + v).join(", ");
  $("model").textContent = s.model || "none";
  const select = $("live-node");
  const names = s.nodes.map((n) => n.device);
  if (names.join() !== [...select.options].map((o) => o.value).join()) {
    select.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
    if (names.includes(liveNode)) select.value = liveNode;
  }
  if (!liveNode && names.length) { liveNode = names[0]; select.value = liveNode; }
}

function draw() {
  const svg = $("chart");
  svg.replaceChildren();
  if (!points.length) return;
  const channels = [...new Set(points.flatMap((p) => Object.keys(p[1])))].sort();
  const t0 = points[0][0], t1 = Math.max(points[points.length - 1][0], t0 + 1);
  const latest = $("live-latest");
  latest.replaceChildren();
  channels.forEach((ch, i) => {
    const vals = points.filter((p) => ch in p[1]).map((p) => [p[0], p[1][ch]]);
    const lo = Math.min(...vals.map((v) => v[1])), hi = Math.max(...vals.map((v) => v[1]));
    const span = hi - lo || 1;
    const d = vals.map((v, j) => (j ? "L" : "M") + ((v[0] - t0) / (t1 - t0) * 800).toFixed(1)
      + "," + (230 - (v[1] - lo) / span * 220).toFixed(1)).join("");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", COLORS[i % COLORS.length]);
    path.setAttribute("stroke-width", "1.5");
    svg.append(path);
    const last = vals[vals.length - 1][1];
    const li = el("li", ch + " = " + (+last).toFixed(3));
    li.dataset.channel = ch;
    li.dataset.value = String(last);
    li.style.color = COLORS[i % COLORS.length];
    latest.append(li);
  });
}

async function pollStatus() {
  try {
    const r = await fetch("/api/status", { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; return; }
    showStatus(await r.json());
  } catch (e) { /* the next poll tries again */ }
}

async function pollLive() {
  if (!liveNode) return;
  const since = points.length ? points[points.length - 1][0] : 0;
  try {
    const r = await fetch("/api/live?device=" + encodeURIComponent(liveNode) + "&since=" + since,
      { credentials: "same-origin" });
    const body = await r.json();
    if (body.device !== liveNode) return;
    points = points.concat(body.points);
    const cut = Date.now() - 5 * 60 * 1000;
    points = points.filter((p) => p[0] > cut);
    draw();
  } catch (e) { /* the next poll tries again */ }
}

$("live-node").addEventListener("change", (e) => { liveNode = e.target.value; points = []; pollLive(); });
pollStatus().then(pollLive);
setInterval(pollStatus, 2000);
setInterval(pollLive, 1000);
