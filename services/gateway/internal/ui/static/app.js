// The staging UI: plain DOM in one module, no build step, only the
// gateway's documented API on the page's own origin.

const $ = (sel, root = document) => root.querySelector(sel);

// Statuses after which nothing more happens. cancelled and expired come
// with request cancellation and lifetimes; a status this list does not know
// is shown as it is and followed until the stream ends.
const TERMINAL = new Set(["succeeded", "failed", "rejected", "cancelled", "expired"]);
const USERNAME_RULE = "lower-case letters, digits, _ and -, starting with a letter or _, at most 32 characters";
const USERNAME_RE = /^[a-z_][a-z0-9_-]{0,31}$/;

// el builds an element with text content only: nothing from the server is
// ever parsed as HTML.
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function button(text, onClick, cls) {
  const b = el("button", text, cls);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

// ---- signing in --------------------------------------------------------------

// The access token (STAGING_AUTH_MODE tokens or oidc) lives in this tab's
// session storage only, and goes out as a bearer token to this origin.
const TOKEN_KEY = "skao-staging-token";

function authHeaders(headers) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  return headers;
}

// showSignIn reveals the token form: the server asked for credentials, or
// a token is in use.
function showSignIn(why) {
  $("#signin").hidden = false;
  const signedIn = !!sessionStorage.getItem(TOKEN_KEY);
  $("#signout").hidden = !signedIn;
  $("#signin-message").textContent = why || (signedIn ? "Signed in with a token." : "");
}

function signIn(e) {
  e.preventDefault();
  const token = $("#token").value.trim();
  if (!token) { showSignIn("Enter your access token."); return; }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#token").value = "";
  showSignIn("Signed in with a token.");
  loadHistory();
  loadLogs();
  probeBrowser();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  showSignIn("Signed out.");
  $("#history tbody").replaceChildren();
  loadHistory();
}

async function api(path, options) {
  options = Object.assign({}, options);
  options.headers = authHeaders(Object.assign({ "Accept": "application/json" }, options.headers));
  const resp = await fetch(path, options);
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (resp.status === 401) showSignIn("This server needs an access token: " + (body && body.detail ? body.detail : "sign in"));
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : resp.statusText;
    const err = new Error((body && body.code ? body.code + ": " : "") + detail);
    err.status = resp.status;
    err.code = body && body.code;
    err.body = body;
    throw err;
  }
  return body;
}

// ---- formatting ----------------------------------------------------------

function size(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

// parseTime reads an RFC 3339 time; the server's nanoseconds are cut to
// the milliseconds a Date holds.
function parseTime(s) {
  if (!s) return null;
  const d = new Date(String(s).replace(/(\.\d{3})\d+/, "$1"));
  return isNaN(d) ? null : d;
}

function when(s) {
  const d = parseTime(s);
  return d ? d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }) : "";
}

function duration(ms) {
  if (ms === null || ms === undefined || !isFinite(ms) || ms < 0) return "";
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 90) return Math.round(s) + " s";
  const m = Math.round(s / 60);
  return m < 90 ? m + " min" : Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function badge(status) {
  const safe = /^[a-z_]+$/.test(status || "") ? status : "unknown";
  return el("span", status || "unknown", "status status-" + safe);
}

// setURL keeps the address shareable: ?username=, ?id=, ?job=.
function setURL(changes) {
  const u = new URL(location.href);
  for (const [k, v] of Object.entries(changes)) {
    if (v) u.searchParams.set(k, v); else u.searchParams.delete(k);
  }
  history.replaceState(null, "", u);
}

// linkBox shows a download link with a copy button.
function linkBox(url, note) {
  const abs = new URL(url, location.origin).href;
  const box = el("span", null, "link");
  const a = el("a", "Download");
  a.href = abs;
  a.title = abs;
  const copy = button("Copy link", async () => {
    try {
      await navigator.clipboard.writeText(abs);
      copy.textContent = "Copied";
    } catch (_) {
      copy.textContent = "Copy failed: select the link";
    }
  }, "small");
  box.append(a, " ", copy);
  if (note) box.append(el("small", " " + note));
  return box;
}

function setStatus(status, text) {
  const box = $("#stage-status");
  box.replaceChildren();
  const p = el("p");
  p.append("Status: ", badge(status));
  if (text) p.append(" — " + text);
  box.append(p);
  box.dataset.status = status;
}

// ---- cancelling ------------------------------------------------------------

// cancelUnsupported turns true when the server answers 405 to a cancel:
// every cancel button then goes away.
let cancelUnsupported = false;

function cancelButton(path, card) {
  const b = button("Cancel", async () => {
    b.disabled = true;
    try {
      await api(path, { method: "DELETE" });
      note(card, "Cancel requested.");
    } catch (err) {
      if (err.status === 405) {
        cancelUnsupported = true;
        for (const other of document.querySelectorAll("button.cancel")) other.hidden = true;
        note(card, "This server cannot cancel requests.");
        return;
      }
      b.disabled = false;
      note(card, "Not cancelled: " + err.message);
    }
  }, "cancel");
  b.hidden = cancelUnsupported;
  return b;
}

function note(card, text) { $(".note", card).textContent = text; }

// ---- Server-Sent Events ------------------------------------------------------

// openStream reads Server-Sent Events through fetch rather than
// EventSource, which cannot send the Authorization header. Like
// EventSource it reconnects with Last-Event-ID (after the server's retry:
// time) until closed; a refusal (4xx) ends it.
function openStream(url, onEvent, onState) {
  const abort = new AbortController();
  let closed = false, lastID = "", retry = 3000;
  const run = async () => {
    while (!closed) {
      try {
        const headers = authHeaders({ "Accept": "text/event-stream" });
        if (lastID) headers["Last-Event-ID"] = lastID;
        const resp = await fetch(url, { headers, signal: abort.signal });
        if (!resp.ok) {
          let body = null;
          try { body = await resp.json(); } catch (_) { /* not JSON */ }
          if (resp.status === 401) showSignIn("This server needs an access token.");
          onState("refused", body && body.code ? body.code + ": " + body.detail : resp.statusText);
          if (resp.status < 500) return;
        } else {
          onState("open");
          await readEvents(resp.body, (type, data, id) => {
            if (id) lastID = id;
            onEvent({ type, data });
          }, (ms) => { retry = ms; });
        }
      } catch (_) {
        if (closed) return;
      }
      if (closed) return;
      onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, retry));
    }
  };
  run();
  return { close() { closed = true; abort.abort(); } };
}

// readEvents parses an event stream (the text/event-stream format) and
// calls dispatch for each event.
async function readEvents(body, dispatch, setRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", type = "", data = [], id = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, "");
      buf = buf.slice(nl + 1);
      if (line === "") {
        if (data.length) dispatch(type || "message", data.join("\n"), id);
        type = ""; data = []; id = "";
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") type = val;
      else if (field === "data") data.push(val);
      else if (field === "id") id = val;
      else if (field === "retry" && /^\d+$/.test(val)) setRetry(Number(val));
    }
  }
}

// ---- followed requests and jobs ------------------------------------------

const followed = new Map(); // card key -> {card, stop}

function newCard(key, title) {
  const old = followed.get(key);
  if (old) { old.stop(); old.card.remove(); }
  const card = el("article", null, "card");
  card.dataset.key = key;
  const head = el("h3", title);
  const status = el("p", null, "card-status");
  const bar = el("progress");
  bar.max = 100;
  bar.hidden = true;
  bar.setAttribute("aria-label", "Progress of " + title);
  const progress = el("p", null, "progress-text");
  const link = el("p", null, "card-link");
  const actions = el("p", null, "card-actions");
  const noteLine = el("p", null, "note");
  noteLine.setAttribute("role", "status");
  const details = el("details");
  const summary = el("summary", "Events");
  details.append(summary, el("ol", null, "events"));
  const close = button("Stop following", () => { followed.get(key)?.stop(); card.remove(); followed.delete(key); emptyNote(); }, "small");
  actions.append(close);
  card.append(head, status, bar, progress, link, actions, noteLine, details);
  $("#cards").prepend(card);
  followed.set(key, { card, stop: () => {} });
  emptyNote();
  return card;
}

function emptyNote() { $("#follow-empty").hidden = followed.size > 0; }

function cardStatus(card, status, text) {
  card.dataset.status = status;
  const p = $(".card-status", card);
  p.replaceChildren("Status: ", badge(status));
  if (text) p.append(" — " + text);
  if (TERMINAL.has(status) || ["completed", "partial"].includes(status)) {
    $(".cancel", card)?.remove();
  }
}

// showProgress draws the bar, percentage, sizes, files, rate and time left
// from a progress (bytes_done of bytes_total, files_done of files_total).
function showProgress(card, p, rate) {
  const bar = $("progress", card);
  const text = $(".progress-text", card);
  const parts = [];
  let pct = null;
  if (p.bytes_total > 0) pct = Math.min(100, (100 * p.bytes_done) / p.bytes_total);
  else if (p.files_total > 0) pct = Math.min(100, (100 * p.files_done) / p.files_total);
  if (pct !== null) {
    bar.hidden = false;
    bar.value = pct;
    parts.push(pct.toFixed(pct < 10 ? 1 : 0) + "%");
  }
  if (p.bytes_done !== undefined) parts.push(size(p.bytes_done) + (p.bytes_total ? " of " + size(p.bytes_total) : ""));
  if (p.files_total > 1) parts.push((p.files_done || 0) + " of " + p.files_total + " files");
  if (rate > 0) {
    parts.push(size(rate) + "/s");
    if (p.bytes_total > p.bytes_done) parts.push("about " + duration((1000 * (p.bytes_total - p.bytes_done)) / rate) + " left");
  }
  text.textContent = parts.join(" · ");
}

// follow shows request id live (Server-Sent Events) in a card of its own,
// so several requests can be followed at once.
function follow(id) {
  const card = newCard("req-" + id, "Request " + id);
  card.dataset.id = id;
  $(".card-actions", card).prepend(cancelButton("/api/v1/stagings/" + encodeURIComponent(id), card));
  const list = $(".events", card);
  let started = null; // {time, bytes} at the start, for the rate
  let describe = true;
  // Set below: onEvent closes it once the request has finished.
  let source = null;
  const onEvent = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch (_) { return; }
    if (msg.type === "message") return; // not an event of the contract
    if (describe && ev.method) {
      $("h3", card).textContent = ev.method + ": " + (ev.local_path_on_storage || ev.did || "") + " → " + (ev.relative_path || "");
      $("h3", card).append(el("small", " " + id, "id"));
      describe = false;
    }
    const status = msg.type === "state" ? ev.status : statusOf(msg.type);
    let text = ev.message || "";
    if (ev.error) text = ev.error.code + ": " + ev.error.detail;
    const t = parseTime(ev.time || ev.updated_at);
    if (msg.type === "started" && t) started = { t, bytes: 0 };
    if (ev.progress) {
      let rate = 0;
      if (!started && t) started = { t, bytes: ev.progress.bytes_done };
      if (started && t && t > started.t) rate = (1000 * (ev.progress.bytes_done - started.bytes)) / (t - started.t);
      showProgress(card, ev.progress, rate);
      text = "";
    }
    if (status === "succeeded") {
      showProgress(card, { bytes_done: ev.bytes, bytes_total: ev.bytes, files_done: ev.files, files_total: ev.files }, 0);
      const bar = $("progress", card);
      bar.hidden = false;
      bar.value = 100;
    }
    const exp = expiry(ev);
    if (ev.download_url && !exp.expired) {
      $(".card-link", card).replaceChildren(linkBox(ev.download_url, "issued " + when(ev.time || ev.updated_at) + "; " + (exp.note || "valid for this site's link lifetime")));
    } else if (exp.note) {
      $(".card-link", card).replaceChildren(el("small", (ev.download_url ? "The link " : "The staged data ") + exp.note));
    }
    list.append(el("li", (t ? t.toLocaleTimeString() + " " : "") + msg.type + (text ? " — " + text : "")));
    $("summary", card).textContent = "Events (" + list.children.length + ")";
    cardStatus(card, status, text);
    if (TERMINAL.has(status)) {
      source.close();
      historyUntil(id, status);
    }
  };
  source = openStream("/api/v1/stagings/" + encodeURIComponent(id) + "/events", onEvent, (state, why) => {
    if (state === "open") note(card, "");
    else if (state === "reconnecting") note(card, "Connection lost; reconnecting…");
    else cardStatus(card, "error", why);
  });
  followed.get("req-" + id).stop = () => source.close();
}

function statusOf(type) {
  switch (type) {
    case "started": case "resolved": case "progress": return "running";
    default: return type;
  }
}

// followJob shows a batch job as one card with counts by status, read
// again until it has finished.
function followJob(jobId) {
  const key = "job-" + jobId;
  const card = newCard(key, "Job " + jobId);
  card.dataset.job = jobId;
  $(".card-actions", card).prepend(cancelButton("/api/v1/jobs/" + encodeURIComponent(jobId), card));
  let timer = null;
  followed.get(key).stop = () => clearTimeout(timer);
  const poll = async () => {
    try {
      const job = await api("/api/v1/jobs/" + encodeURIComponent(jobId));
      const counts = job.counts || {};
      const total = (job.items || []).length;
      const done = Object.entries(counts).filter(([s]) => TERMINAL.has(s)).reduce((n, [, c]) => n + c, 0);
      const summary = Object.entries(counts).map(([s, c]) => c + " " + s).join(", ");
      cardStatus(card, job.status, summary + " of " + total + " item(s)");
      const bytesDone = (job.items || []).reduce((n, it) => n + (it.bytes || (it.progress && it.progress.bytes_done) || 0), 0);
      showProgress(card, { files_done: done, files_total: total, bytes_done: bytesDone }, 0);
      $(".progress-text", card).textContent = done + " of " + total + " items finished · " + size(bytesDone);
      const list = $(".events", card);
      list.replaceChildren(...(job.items || []).map((it) => {
        const li = el("li");
        const a = el("a", it.relative_path || it.id);
        a.href = "/?id=" + encodeURIComponent(it.id);
        li.append(a, " ", badge(it.status));
        if (it.download_url) li.append(" ", linkBox(it.download_url));
        return li;
      }));
      $("summary", card).textContent = "Items (" + total + ")";
      if (job.status === "running") timer = setTimeout(poll, 1500);
    } catch (err) {
      cardStatus(card, "error", err.message);
    }
  };
  poll();
}

// ---- the staging form ------------------------------------------------------

function checkUsername(input) {
  const ok = USERNAME_RE.test(input.value);
  input.setAttribute("aria-invalid", ok ? "false" : "true");
  input.setCustomValidity(ok ? "" : "A username has " + USERNAME_RULE + ".");
  return ok;
}

// The source is a path on the storage or a Rucio DID (scope:name): the
// form shows the field of the chosen one and sends only that one.
function sourceKind() {
  return $("#stage-form input[name=source_kind]:checked").value;
}

function showSourceKind(kind) {
  if (kind) $(`#stage-form input[name=source_kind][value=${kind}]`).checked = true;
  const did = sourceKind() === "did";
  $("#source-path").hidden = did;
  $("#source-did").hidden = !did;
}

async function submitStaging(e) {
  e.preventDefault();
  const form = e.target;
  const f = new FormData(form);
  const source = sourceKind() === "did" ? "did" : "local_path_on_storage";
  const body = {
    method: f.get("method"),
    username: String(f.get("username") || "").trim(),
    [source]: String(f.get(source) || "").trim(),
    relative_path: String(f.get("relative_path") || "").trim(),
  };
  if (!$("#lifetime-field").hidden && f.get("lifetime")) body.lifetime = Number(f.get("lifetime"));
  if (!checkUsername($("#username"))) {
    setStatus("error", "username “" + body.username + "” is not valid: it must have " + USERNAME_RULE + ".");
    $("#username").focus();
    return;
  }
  const sourceLabel = source === "did" ? "DID" : "source path";
  for (const [name, label] of [[source, sourceLabel], ["relative_path", "relative path"]]) {
    if (!body[name]) { setStatus("error", "the " + label + " is required."); return; }
  }
  // Only the form of a DID is checked here; the server checks the rest.
  if (source === "did" && !body.did.includes(":")) {
    setStatus("error", "the DID “" + body.did + "” is not scope:name.");
    $("#did").focus();
    return;
  }
  $("#history-user").value = body.username;
  setStatus("submitting", "");
  try {
    const res = await api("/api/v1/stagings", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body),
    });
    // The card below follows it; this line only says it was accepted.
    setStatus("submitted", "request " + res.id + ", followed below");
    setURL({ id: res.id, job: null, username: body.username });
    follow(res.id);
  } catch (err) {
    const recorded = err.body && err.body.id ? " (recorded as request " + err.body.id + ")" : "";
    setStatus("error", err.message + recorded);
    loadHistory();
  }
}

let methods = [];

async function loadMethods() {
  try {
    const res = await api("/api/v1/methods");
    methods = res.allowed_methods || [];
  } catch (err) {
    setStatus("error", "cannot load the allowed methods: " + err.message);
  }
  const sel = $("#method");
  sel.replaceChildren(...methods.map((m) => Object.assign(el("option", m), { value: m })));
  const hsel = $("#history-method");
  for (const m of methods) hsel.append(Object.assign(el("option", m), { value: m }));
}

// loadFeatures shows the fields of API features this server has, as its
// OpenAPI document lists them (request lifetimes).
async function loadFeatures() {
  try {
    const doc = await api("/openapi.json");
    const submit = doc.components && doc.components.schemas && doc.components.schemas.SubmitRequest;
    $("#lifetime-field").hidden = !(submit && submit.properties && submit.properties.lifetime);
  } catch (_) {
    $("#lifetime-field").hidden = true;
  }
}

// expiry says until when a link or a staged copy lasts, when the server
// reports it; expired is true once that time has passed.
function expiry(st) {
  const t = parseTime(st.expires_at);
  if (!t) return { note: "", expired: false };
  return { note: (t < new Date() ? "expired " : "valid until ") + t.toLocaleString(), expired: t < new Date() };
}

// ---- storage browser -------------------------------------------------------

const browser = { path: ".", cursor: "" };

async function probeBrowser() {
  try {
    await api("/api/v1/storage?limit=1");
    $("#browse-toggle").hidden = false;
  } catch (_) {
    $("#browse-toggle").hidden = true; // turned off, or no storage here
  }
}

function toggleBrowser() {
  const open = $("#browser").hidden;
  $("#browser").hidden = !open;
  $("#browse-toggle").setAttribute("aria-expanded", String(open));
  if (open) browse(browser.path);
}

async function browse(path, cursor) {
  const msg = $("#browser-message");
  const tbody = $("#browser-table tbody");
  const q = new URLSearchParams({ path: path === "." ? "" : path, limit: "50" });
  if (cursor) q.set("cursor", cursor);
  try {
    const res = await api("/api/v1/storage?" + q);
    browser.path = res.path;
    browser.cursor = res.next_cursor || "";
    if (!cursor) tbody.replaceChildren();
    crumbs(res.root, res.path);
    for (const it of res.items) tbody.append(browserRow(res.path, it));
    $("#browser-more").hidden = !browser.cursor;
    msg.textContent = tbody.children.length + " item(s) in " + (res.path === "." ? "the storage root" : res.path) + (browser.cursor ? ", more to load" : "") + ".";
  } catch (err) {
    msg.textContent = "Cannot list " + path + ": " + err.message;
  }
}

function browserRow(dir, it) {
  const full = dir === "." ? it.name : dir + "/" + it.name;
  const tr = el("tr");
  const name = el("td", null, "path");
  let type = it.type;
  const usable = it.type !== "symlink" || ["file", "dir"].includes(it.link);
  if (it.type === "dir" || it.link === "dir") {
    name.append(button(it.name + "/", () => browse(full), "linkish"));
  } else {
    name.textContent = it.name;
  }
  if (it.type === "symlink") {
    type = { file: "link to a file", dir: "link to a directory", outside: "link leaving the storage (not followed)", broken: "broken link" }[it.link] || "link";
  }
  const use = el("td");
  if (usable) {
    const b = button("Use", () => {
      $("#source").value = full;
      if (!$("#target").value || $("#target").dataset.auto === "1") {
        $("#target").value = it.name;
        $("#target").dataset.auto = "1";
      }
      $("#browser-message").textContent = "Source set to " + full + ".";
      $("#source").focus();
    }, "small");
    b.setAttribute("aria-label", "Use " + full + " as the source");
    use.append(b);
  }
  tr.append(name, el("td", type), el("td", it.type === "file" || it.link === "file" ? size(it.size) : ""), el("td", when(it.modified_at)), use);
  if (!usable) tr.className = "muted";
  return tr;
}

function crumbs(root, path) {
  const ol = $("#browser-crumbs");
  ol.replaceChildren();
  const parts = path === "." ? [] : path.split("/");
  const rootItem = el("li");
  rootItem.append(parts.length ? button(root || "storage", () => browse(".")) : el("span", root || "storage"));
  ol.append(rootItem);
  parts.forEach((p, i) => {
    const li = el("li");
    const to = parts.slice(0, i + 1).join("/");
    li.append(i === parts.length - 1 ? el("span", p) : button(p, () => browse(to)));
    ol.append(li);
  });
}

// ---- history ---------------------------------------------------------------

// ?limit= sets the history's page size (20 by default).
const hist = { cursors: [""], page: 0, next: "", size: Math.min(500, Math.max(1, Number(new URLSearchParams(location.search).get("limit")) || 20)) };

// historyUntil reloads the history until the audit, which records events
// a moment after they happen, shows request id in status (at most ~10 s).
async function historyUntil(id, status) {
  for (let i = 0; i < 20; i++) {
    const items = await loadHistory();
    if ((items || []).some((r) => r.id === id && r.status === status)) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function historyQuery(cursor) {
  const q = new URLSearchParams({ limit: String(hist.size) });
  const user = $("#history-user").value.trim();
  if (user) q.set("username", user);
  for (const name of ["status", "method"]) {
    const v = $("#history-" + name).value;
    if (v) q.set(name, v);
  }
  // Dates are days in the reader's zone: from the start of "From" to the
  // end of "To".
  const since = $("#history-since").value, until = $("#history-until").value;
  if (since) q.set("since", new Date(since + "T00:00:00").toISOString());
  if (until) {
    const end = new Date(until + "T00:00:00");
    end.setDate(end.getDate() + 1);
    q.set("until", end.toISOString());
  }
  if (cursor) q.set("cursor", cursor);
  return q;
}

async function loadHistory(e, move) {
  if (e) {
    e.preventDefault();
    hist.cursors = [""];
    hist.page = 0;
  }
  if (move === "older" && hist.next) { hist.page++; hist.cursors[hist.page] = hist.next; }
  if (move === "newer" && hist.page > 0) hist.page--;
  const input = $("#history-user");
  const msg = $("#history-message");
  const user = input.value.trim();
  if (user && !checkUsername(input)) {
    msg.textContent = "Username “" + user + "” is not valid: it must have " + USERNAME_RULE + ".";
    return null;
  }
  try {
    const res = await api("/api/v1/stagings?" + historyQuery(hist.cursors[hist.page]));
    const tbody = $("#history tbody");
    tbody.replaceChildren(...(res.items || []).map(historyRow));
    hist.next = res.next_cursor || "";
    $("#history-older").disabled = !hist.next;
    $("#history-newer").disabled = hist.page === 0;
    const n = (res.items || []).length;
    const filters = [["status", "status"], ["method", "method"], ["since", "from"], ["until", "to"]]
      .filter(([id]) => $("#history-" + id).value).map(([id, word]) => word + " " + $("#history-" + id).value);
    msg.textContent = (n ? "Page " + (hist.page + 1) + ": " + n : "No") + " request(s)" + (user ? " of " + user : "") +
      (filters.length ? " (" + filters.join(", ") + ")" : "") + ".";
    if (e && user) setURL({ username: user });
    return res.items;
  } catch (err) {
    // Rows of another query must not stand under this refusal.
    $("#history tbody").replaceChildren();
    $("#history-older").disabled = $("#history-newer").disabled = true;
    msg.textContent = "History unavailable: " + err.message;
    return null;
  }
}

function historyRow(r) {
  const tr = el("tr");
  tr.dataset.id = r.id;
  const time = el("td", null, "nowrap");
  const open = el("a", when(r.created_at));
  open.href = "/?id=" + encodeURIComponent(r.id);
  open.title = "Follow request " + r.id;
  time.append(open);
  if (r.job_id) {
    const job = el("a", "job");
    job.href = "/?job=" + encodeURIComponent(r.job_id);
    job.title = "Job " + r.job_id;
    time.append(" ", job);
  }
  const start = parseTime(r.started_at), end = parseTime(r.finished_at);
  const outcome = el("td");
  outcome.append(badge(r.status));
  const detail = r.error_code ? r.error_code : (r.outcome || "");
  if (detail) outcome.append(el("small", " " + detail));
  if (r.error_reason) outcome.title = r.error_reason;
  // When the staged item goes or the link ends; once expired, when it was due.
  if (r.expires_at) outcome.append(el("small", (r.status === "expired" ? " · due " : " · expires ") + when(r.expires_at), "nowrap"));
  const link = el("td");
  if (r.outcome === "link_issued") showLink(link, r.id);
  tr.append(
    time,
    el("td", r.method, "nowrap"),
    el("td", r.local_path_on_storage || r.did || "", "path"),
    el("td", r.relative_path, "path"),
    el("td", r.status === "succeeded" ? size(r.bytes) + (r.files > 1 ? " in " + r.files + " files" : "") : "", "nowrap"),
    el("td", start && end ? duration(end - start) : "", "nowrap"),
    outcome,
    link,
  );
  return tr;
}

// showLink fills a history cell with the request's download link, read
// from the request's state (the history record does not carry it).
async function showLink(cell, id) {
  try {
    const st = await api("/api/v1/stagings/" + encodeURIComponent(id));
    const exp = expiry(st);
    if (st.download_url && !exp.expired) cell.replaceChildren(linkBox(st.download_url, exp.note));
    else if (exp.expired) cell.replaceChildren(el("small", exp.note));
  } catch (_) { /* aged out or not visible: no link */ }
}

// ---- log viewer ------------------------------------------------------------

const LEVELS = { DEBUG: 0, INFO: 1, WARN: 2, ERROR: 3 };
let logTimer = null;
let logRecords = [];
// Follow the newest lines unless the reader scrolled up to read older ones.
let logsFollow = true;

// ownRequest: the UI's own polling, left out unless asked for.
function ownRequest(rec) {
  return rec.msg === "http_request" && /^\/(logs|ui\/|$)/.test(rec.route || "");
}

async function loadLogs() {
  const msg = $("#logs-message");
  try {
    const res = await api("/logs/?limit=1000");
    logRecords = (res.lines || []).map(logRecord);
    const sel = $("#logs-service");
    const have = new Set([...sel.options].map((o) => o.value));
    const sources = new Set(logRecords.flatMap((l) => l.rec.service ? [l.rec.service, l.source] : []));
    for (const s of [...sources].sort()) if (!have.has(s)) sel.append(Object.assign(el("option", s), { value: s }));
    msg.dataset.updated = new Date().toLocaleTimeString();
    renderLogs();
  } catch (err) {
    msg.textContent = "Logs unavailable: " + err.message;
  }
}

// logRecord reads one line: its record, where it comes from (service, or
// service/component: the all-in-one is one service) and the text shown,
// which the search looks in.
function logRecord(line) {
  let rec = {};
  try { rec = JSON.parse(line); } catch (_) { return { rec, line, source: "", text: line }; }
  const rest = Object.assign({}, rec);
  for (const k of ["time", "level", "msg", "service"]) delete rest[k];
  const t = parseTime(rec.time);
  const fields = Object.entries(rest).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : v)).join(" ");
  return {
    rec, line, fields,
    time: t ? t.toLocaleTimeString() : "",
    source: (rec.service || "") + (rec.component ? "/" + rec.component : ""),
    text: [t ? t.toLocaleTimeString() : "", rec.level, rec.service, rec.msg, fields].join(" "),
  };
}

function renderLogs() {
  const list = $("#logs");
  const level = LEVELS[$("#logs-level").value] ?? -1;
  const service = $("#logs-service").value;
  const search = $("#logs-search").value.trim().toLowerCase();
  const withUI = $("#logs-ui").checked;
  const shown = logRecords.filter((l) =>
    (LEVELS[l.rec.level] ?? 1) >= level &&
    (!service || l.rec.service === service || l.source === service) &&
    (withUI || !ownRequest(l.rec)) &&
    (!search || l.text.toLowerCase().includes(search)));
  list.replaceChildren(...shown.slice(-300).map((l) => {
    if (!l.rec.msg) return el("li", l.line);
    const li = el("li", null, "lvl-" + (l.rec.level || "INFO"));
    li.append(el("span", l.time, "t"), " ", el("span", l.rec.level || "", "lvl"), " ",
      el("span", l.rec.service || "", "svc"), " ", el("b", l.rec.msg), " ", l.fields);
    return li;
  }));
  if (logsFollow) list.scrollTop = list.scrollHeight;
  const paused = $("#logs-pause").checked ? " Paused." : "";
  const updated = $("#logs-message").dataset.updated;
  $("#logs-message").textContent = shown.length + " of " + logRecords.length + " line(s) shown" +
    (updated ? ", updated " + updated : "") + "." + paused;
}

function autoLogs() {
  clearInterval(logTimer);
  logTimer = $("#logs-pause").checked ? null : setInterval(loadLogs, 2000);
  renderLogs();
}

// ---- demo file creation ----------------------------------------------------

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
    showSourceKind("path");
  } catch (err) {
    msg.textContent = "Not created: " + err.message;
  }
}

// ---- start -----------------------------------------------------------------

function start() {
  $("#stage-form").addEventListener("submit", submitStaging);
  $("#username").addEventListener("input", (e) => checkUsername(e.target));
  $("#target").addEventListener("input", (e) => { e.target.dataset.auto = ""; });
  for (const radio of document.querySelectorAll("#stage-form input[name=source_kind]")) radio.addEventListener("change", () => showSourceKind());
  showSourceKind();
  $("#browse-toggle").addEventListener("click", toggleBrowser);
  $("#browser-more").addEventListener("click", () => browse(browser.path, browser.cursor));
  $("#history-form").addEventListener("submit", loadHistory);
  $("#history-older").addEventListener("click", () => loadHistory(null, "older"));
  $("#history-newer").addEventListener("click", () => loadHistory(null, "newer"));
  for (const id of ["#logs-level", "#logs-service", "#logs-ui"]) $(id).addEventListener("change", renderLogs);
  $("#logs-search").addEventListener("input", renderLogs);
  $("#logs-form").addEventListener("submit", (e) => e.preventDefault());
  $("#logs-pause").addEventListener("change", autoLogs);
  $("#logs").addEventListener("scroll", () => {
    const list = $("#logs");
    logsFollow = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  });
  $("#demo-form").addEventListener("submit", createFile);
  $("#signin").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  if (sessionStorage.getItem(TOKEN_KEY)) showSignIn();

  // Deep links: ?username= opens that user's history, ?id= one request
  // with its live events, ?job= one job.
  const params = new URLSearchParams(location.search);
  const user = params.get("username");
  if (user) { $("#history-user").value = user; $("#username").value = user; }
  if (params.get("job")) followJob(params.get("job"));
  if (params.get("id")) follow(params.get("id"));

  loadMethods();
  loadFeatures();
  loadConfig();
  probeBrowser();
  loadHistory();
  loadLogs();
  autoLogs();
}

start();
