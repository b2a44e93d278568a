// Modbus screen: buses and units from /api/modbus, add a bus, check and apply a unit's register
// map (errors at their line), read a unit now. JSON bodies; the CSRF token goes in a header.
"use strict";
const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const TEMPLATE = 'version = 1\nname = "my-device"\n\n[[point]]\nname = "level"\n'
  + 'table = "holding"\naddress = 0\ntype = "uint16"\nscale = 0.1\nunit = "%"\n';

function el(tag, text) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  return e;
}

function button(text, cls, onclick) {
  const b = el("button", text);
  b.type = "button"; b.className = cls; b.addEventListener("click", onclick);
  return b;
}

async function post(what, data) {
  const r = await fetch("/api/modbus/" + what, {
    method: "POST", credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" },
    body: JSON.stringify(data),
  });
  return r.json();
}

function formData(form) {
  const data = {};
  for (const input of form.querySelectorAll("input[name], select[name]")) {
    data[input.name] = input.type === "number" && input.value !== "" ? Number(input.value)
      : input.value;
  }
  return data;
}

function selectLine(area, n) {
  const lines = area.value.split("\n");
  const start = lines.slice(0, n - 1).join("\n").length + (n > 1 ? 1 : 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[n - 1] || "").length);
}

function showError(id, body) {
  $(id).textContent = body.error || "";
  $(id).dataset.line = body.line || 0;
  if (id === "map-error" && body.line) selectLine($("map-text"), body.line);
}

async function refresh() {
  const s = await (await fetch("/api/modbus", { credentials: "same-origin" })).json();
  const rows = [];
  for (const b of s.buses) for (const u of b.units) {
    const tr = el("tr");
    for (const c of [b.bus, b.where, u.unit + " (" + u.unit_id + ")", u.poll_s + " s", u.polls,
      u.failed, u.backoff_s ? u.backoff_s.toFixed(1) + " s" : "-"]) tr.append(el("td", c));
    const map = el("td", u.map.split("/").pop());
    map.title = u.map;
    tr.append(map);
    const actions = el("td");
    actions.append(button("Read now", "read-now", () => readNow(b.bus, u.unit)),
      button("Edit map", "edit-map", () => editMap(b.bus, u)));
    tr.dataset.unit = b.bus + "/" + u.unit;
    tr.append(actions);
    rows.push(tr);
  }
  $("unit-rows").replaceChildren(...rows);
  $("file-error").textContent = s.file_error;
  const select = $("unit-bus");
  const names = s.buses.map((b) => b.bus);
  if (names.join() !== [...select.options].map((o) => o.value).join()) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
    if (names.includes(chosen)) select.value = chosen;
  }
}

async function readNow(bus, unit) {
  $("read-error").textContent = "";
  $("read-result").textContent = "Reading " + bus + "/" + unit + "...";
  const body = await post("read", { bus, unit });
  if (!body.ok) { $("read-result").textContent = ""; showError("read-error", body); return; }
  $("read-result").textContent = bus + "/" + unit + " at " + new Date().toLocaleTimeString();
  $("read-table").hidden = false;
  $("read-rows").replaceChildren(...body.points.map((p) => {
    const tr = el("tr");
    tr.dataset.point = p.name;
    for (const c of [p.name, p.value === null ? "-" : +p.value.toFixed(4), p.unit,
      p.table + " " + p.address]) tr.append(el("td", c));
    return tr;
  }));
}

async function editMap(bus, u) {
  const r = await fetch("/api/modbus/map?" + new URLSearchParams({ bus, unit: u.unit }),
    { credentials: "same-origin" });
  const body = await r.json();
  if (!body.ok) { showError("map-error", body); return; }
  $("unit-bus").value = bus; $("unit-name").value = u.unit; $("unit-id").value = u.unit_id;
  $("unit-poll").value = u.poll_s; $("map-name").value = body.file.split("/").pop();
  $("map-text").value = body.text;
  $("map-result").textContent = "Editing " + body.file;
}

function unitData() {
  const data = formData($("unit-form"));
  if (!data.map_name && data.name) data.map_name = data.name + ".toml";
  data.text = $("map-text").value;
  return data;
}

$("map-check").addEventListener("click", async () => {
  showError("map-error", {}); $("map-result").textContent = "";
  const body = await post("check", unitData());
  if (!body.ok) { showError("map-error", body); return; }
  $("map-result").textContent = "OK: " + body.points + " points (" + body.file + ")";
});

$("unit-apply").addEventListener("click", async () => {
  showError("map-error", {}); $("map-result").textContent = "";
  const body = await post("unit", unitData());
  if (!body.ok) { showError("map-error", body); return; }
  $("map-result").textContent = "Applied: " + body.unit + ", " + body.points
    + " points; the gateway polls it now";
  refresh();
});

$("add-bus").addEventListener("click", async () => {
  showError("bus-error", {}); $("bus-result").textContent = "";
  const body = await post("bus", formData($("bus-form")));
  if (!body.ok) { showError("bus-error", body); return; }
  $("bus-result").textContent = "Added bus " + body.bus;
  await refresh();
  $("unit-bus").value = body.bus;
});

$("map-file").addEventListener("change", async () => {
  const file = $("map-file").files[0];
  if (!file) return;
  $("map-text").value = await file.text();
  if (!$("map-name").value) $("map-name").value = file.name;
});

$("map-text").value = TEMPLATE;
refresh();
setInterval(refresh, 2000);
