// The staging UI: plain DOM, only the gateway's documented API.
"use strict";

const $ = (sel) => document.querySelector(sel);
const TERMINAL = new Set(["succeeded", "failed", "rejected", "cancelled"]);

// el builds an element with text content only: nothing from the server is
// ever parsed as HTML.
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

async function api(path, options) {
  const resp = await fetch(path, Object.assign({ headers: { "Accept": "application/json" } }, options));
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : resp.statusText;
    const code = body && body.code ? body.code + ": " : "";
    const err = new Error(code + detail);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function setStatus(status, text) {
  const box = $("#stage-status");
  box.replaceChildren();
  const p = el("p");
  p.append("Status: ", el("span", status, "status status-" + status));
  if (text) p.append(" — " + text);
  box.append(p);
  box.dataset.status = status;
}

// ---- staging form, followed live -------------------------------------

let source = null;

function follow(id) {
  if (source) source.close();
  const list = $("#stage-events");
  list.replaceChildren();
  source = new EventSource("/api/v1/stagings/" + encodeURIComponent(id) + "/events");
  const onEvent = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    const type = msg.type === "state" ? ev.status : ev.type;
    const status = msg.type === "state" ? ev.status : statusOf(type);
    let text = ev.message || "";
    if (ev.error) text = ev.error.code + ": " + ev.error.detail;
    if (ev.progress && ev.progress.bytes_done !== undefined) text = ev.progress.bytes_done + " bytes done";
    list.append(el("li", (ev.time ? ev.time + " " : "") + type + (text ? " — " + text : "")));
    setStatus(status, text + " (request " + id + ")");
    if (TERMINAL.has(status)) {
      source.close();
      source = null;
      historyUntil(id, status);
    }
  };
  for (const t of ["queued", "started", "progress", "succeeded", "failed", "rejected", "cancelled", "state"]) {
    source.addEventListener(t, onEvent);
  }
  source.onerror = () => {
    // EventSource reconnects by itself with Last-Event-ID; say so.
    if (source && source.readyState === EventSource.CONNECTING) {
      $("#stage-events").append(el("li", "connection lost; reconnecting…"));
    }
  };
}

function statusOf(type) {
  switch (type) {
    case "started": case "progress": return "running";
    default: return type;
  }
}

async function submitStaging(e) {
  e.preventDefault();
  const f = new FormData(e.target);
  const body = {
    method: f.get("method"),
    username: f.get("username"),
    local_path_on_storage: f.get("local_path_on_storage"),
    relative_path: f.get("relative_path"),
  };
  $("#history-user").value = body.username;
  setStatus("submitting", "");
  try {
    const res = await api("/api/v1/stagings", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
    });
    setStatus(res.status, "request " + res.id);
    follow(res.id);
  } catch (err) {
    setStatus("error", err.message);
    loadHistory();
  }
}

async function loadMethods() {
  const sel = $("#method");
  try {
    const res = await api("/api/v1/methods");
    sel.replaceChildren();
    for (const m of res.allowed_methods || []) {
      const o = el("option", m);
      o.value = m;
      sel.append(o);
    }
  } catch (err) {
    setStatus("error", "cannot load the allowed methods: " + err.message);
  }
}

// ---- history ---------------------------------------------------------

// historyUntil reloads the history until the audit, which records events
// a moment after they happen, shows request id in status (at most ~10 s).
async function historyUntil(id, status) {
  for (let i = 0; i < 20; i++) {
    const items = await loadHistory();
    if ((items || []).some((r) => r.id === id && r.status === status)) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function loadHistory(e) {
  if (e) e.preventDefault();
  const user = $("#history-user").value.trim();
  const msg = $("#history-message");
  const tbody = $("#history tbody");
  if (!user) { msg.textContent = "Enter a username."; return null; }
  try {
    const res = await api("/api/v1/stagings?limit=50&username=" + encodeURIComponent(user));
    tbody.replaceChildren();
    for (const r of res.items || []) {
      const tr = el("tr");
      const detail = r.error_code ? r.error_code + ": " + (r.error_reason || "") : (r.outcome || "");
      tr.append(
        el("td", r.created_at ? new Date(r.created_at).toLocaleString() : ""),
        el("td", r.method),
        el("td", r.relative_path),
        el("td", r.status, "status status-" + r.status),
        el("td", detail),
        el("td", r.id, "id"),
      );
      tbody.append(tr);
    }
    msg.textContent = (res.items || []).length + " request(s) of " + user + ".";
    return res.items;
  } catch (err) {
    msg.textContent = "History unavailable: " + err.message;
    return null;
  }
}

// ---- log viewer ------------------------------------------------------

let logTimer = null;
// Follow the newest lines unless the reader scrolled up to read older ones.
let logsFollow = true;

async function loadLogs() {
  const list = $("#logs");
  const msg = $("#logs-message");
  try {
    const res = await api("/logs/?limit=200");
    list.replaceChildren();
    for (const line of res.lines || []) {
      let text = line, level = "";
      try {
        const rec = JSON.parse(line);
        level = rec.level || "";
        const rest = Object.assign({}, rec);
        for (const k of ["time", "level", "msg", "service"]) delete rest[k];
        text = [rec.time, level, rec.service || "", rec.msg, JSON.stringify(rest)].join(" ");
      } catch (_) { /* a plain line */ }
      list.append(el("li", text, level ? "lvl-" + level : ""));
    }
    if (logsFollow) list.scrollTop = list.scrollHeight;
    msg.textContent = (res.lines || []).length + " line(s), updated " + new Date().toLocaleTimeString() + ".";
  } catch (err) {
    msg.textContent = "Logs unavailable: " + err.message;
  }
}

function autoLogs() {
  clearInterval(logTimer);
  logTimer = $("#logs-auto").checked ? setInterval(loadLogs, 2000) : null;
}

// ---- demo file creation ----------------------------------------------

async function loadConfig() {
  try {
    const cfg = await api("/config/");
    $("#demo").hidden = !cfg.demo;
  } catch (_) {
    $("#demo").hidden = true;
  }
}

async function createFile(e) {
  e.preventDefault();
  const f = new FormData(e.target);
  const msg = $("#demo-message");
  try {
    const res = await api("/create-file/", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ path: f.get("path"), content: f.get("content") }),
    });
    msg.textContent = "Created " + res.path + " (" + res.bytes + " bytes). Stage it with source path " + res.path + ".";
    $("#source").value = res.path;
  } catch (err) {
    msg.textContent = "Not created: " + err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#stage-form").addEventListener("submit", submitStaging);
  $("#history-form").addEventListener("submit", loadHistory);
  $("#logs-refresh").addEventListener("click", loadLogs);
  $("#logs-auto").addEventListener("change", autoLogs);
  $("#logs").addEventListener("scroll", () => {
    const list = $("#logs");
    logsFollow = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  });
  $("#demo-form").addEventListener("submit", createFile);
  loadMethods();
  loadConfig();
  loadHistory();
  loadLogs();
  autoLogs();
});
