// Rules editor: check, dry-run and apply the text through /api/rules (CSRF token in a header).
"use strict";
const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;

async function send(what) {
  $("rules-error").textContent = "";
  $("rules-result").textContent = "";
  const r = await fetch("/api/rules/" + what, {
    method: "POST", credentials: "same-origin",
    headers: { "X-CSRF-Token": csrf },
    body: new URLSearchParams({ text: $("rules-text").value }),
  });
  const body = await r.json();
  if (!body.ok) {
    $("rules-error").textContent = body.error;
    $("rules-error").dataset.line = body.line;
    if (body.line) selectLine(body.line);
  }
  return body;
}

function selectLine(n) {
  const area = $("rules-text");
  const lines = area.value.split("\n");
  const start = lines.slice(0, n - 1).join("\n").length + (n > 1 ? 1 : 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[n - 1] || "").length);
}

$("check").addEventListener("click", async () => {
  const body = await send("check");
  if (body.ok) $("rules-result").textContent = "OK: " + body.rules + " rules";
});

$("dryrun").addEventListener("click", async () => {
  const body = await send("dryrun");
  if (!body.ok) return;
  $("rules-result").textContent = body.firings.length + " transitions over "
    + body.readings + " readings";
  $("firings").replaceChildren(...body.firings.map((f) => {
    const tr = document.createElement("tr");
    for (const c of [new Date(f.t_ms).toLocaleTimeString(), f.rule, f.device,
      f.active ? "fired" : "cleared"]) {
      const td = document.createElement("td"); td.textContent = c; tr.append(td);
    }
    return tr;
  }));
});

$("apply").addEventListener("click", async () => {
  const body = await send("apply");
  if (body.ok) $("rules-result").textContent = "Applied: " + body.rules
    + " rules (the gateway reloads them within its poll interval)";
});

fetch("/api/rules", { credentials: "same-origin" }).then((r) => r.json()).then((b) => {
  if (b.ok === false) { $("rules-error").textContent = b.error; return; }
  $("rules-text").value = b.text;
});
