// The status page: polls /api/stats and /api/latest once a second and refreshes the preview.
// Plain JS, no build step, no inline script or style (the server's CSP forbids both).
// Auth: the server's HttpOnly session cookie, set by POST /login. Opening the page as
// /#token=TOKEN logs in once (the fragment never leaves the browser) and is then removed from
// the address bar; otherwise a 401 shows the login form. The token is never put in a URL.
"use strict";
const $ = (id) => document.getElementById(id);
let loggingIn = null;

async function login(token) {
  const response = await fetch("login", { method: "POST", body: new URLSearchParams({ token }), redirect: "manual" });
  return response.type === "opaqueredirect" || response.ok;
}

function fragmentLogin() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) return Promise.resolve(true);
  history.replaceState(null, "", location.pathname + location.search);
  return login(token);
}

function showLogin(show) { $("login").classList.toggle("hidden", !show); }
const seenFrames = new Set();

function fmtDuration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function rows(table, pairs) {
  const body = $(table).tBodies[0];
  body.replaceChildren(...pairs.map(([k, v]) => {
    const tr = document.createElement("tr");
    const a = document.createElement("td"), b = document.createElement("td");
    a.textContent = k; b.textContent = v; b.className = "num";
    tr.append(a, b);
    return tr;
  }));
}

function flatten(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (v === null || v === undefined) continue;
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, typeof v === "number" ? +v.toFixed(4) : Array.isArray(v) ? v.join("x") : String(v)]);
  }
  return out;
}

function spark(id, values) {
  const line = $(id).querySelector("polyline");
  if (values.length < 2) { line.setAttribute("points", ""); return; }
  const max = Math.max(...values) || 1, n = values.length;
  line.setAttribute("points", values.map((v, i) => `${(i * 120 / (n - 1)).toFixed(1)},${(29 - v / max * 28).toFixed(1)}`).join(" "));
}

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (!response.ok) { const err = new Error(`${path}: ${response.status}`); err.status = response.status; throw err; }
  return response.json();
}

async function refreshStats() {
  try {
    const s = await getJSON("api/stats");
    const health = $("health");
    health.textContent = s.healthy ? "classifying" : "no frames";
    health.className = "badge " + (s.healthy ? "ok" : "bad");
    $("fps").textContent = s.fps.toFixed(1);
    const hist = s.history || [];
    spark("fps-spark", hist.map((p) => p.fps));
    spark("latency-spark", hist.map((p) => p.latency_ms));
    if (hist.length) $("latency").textContent = hist[hist.length - 1].latency_ms.toFixed(1);
    const m = s.model || {}, rt = s.runtime || {};
    $("model-line").textContent = `${m.name || "?"} ${m.version || ""} on ${rt.name || "?"} ${rt.version || ""}`;
    const device = [["uptime", fmtDuration(s.uptime_s)], ["frames", s.frames], ["runtime", `${rt.name || "?"} ${rt.version || ""}`]];
    if (s.dropped !== undefined) device.push(["dropped", s.dropped]);
    if (s.mqtt && s.mqtt.enabled === false) device.push(["mqtt", "MQTT off"]);
    else if (s.mqtt) device.push(["mqtt", s.mqtt.connected ? "connected" : "disconnected"], ["reconnects", s.mqtt.reconnects ?? 0]);
    else if (s.reconnects !== undefined) device.push(["reconnects", s.reconnects]);
    let driftRow = -1;
    if (s.drift && typeof s.drift.score === "number") {
      const d = s.drift, over = typeof d.bound === "number" && d.score > d.bound;
      driftRow = device.length;
      device.push(["drift", `${d.score.toFixed(3)}${typeof d.bound === "number" ? (over ? " > bound " : " \u2264 bound ") + d.bound : ""}${d.active || over ? " \u26a0 DRIFT" : ""}`]);
    }
    if (s.capture) device.push(["captured", `${s.capture.saved} (${s.capture.mb} MB)`]);
    rows("device", device);
    if (driftRow >= 0) {
      const d = s.drift, flagged = d.active || (typeof d.bound === "number" && d.score > d.bound);
      const row = $("device").tBodies[0].rows[driftRow];
      row.id = "drift-row";
      row.classList.toggle("alert", flagged);
    }
    rows("model", [["name", m.name || "?"], ["version", m.version || "?"], ...flatten({ architecture: m.architecture, metrics: m.metrics })]);
  } catch (err) {
    $("health").textContent = err.status === 401 ? "token required: log in below" : "offline";
    $("health").className = "badge bad";
    if (err.status === 401) showLogin(true);
  }
}

async function refreshLatest() {
  try {
    const r = await getJSON("api/latest");
    const best = r.top[0];
    const state = r.state && typeof r.state === "object" ? r.state : null;
    $("state").textContent = state ? state.label : best.label;
    $("state-score").textContent = state ? `smoothed ${(+state.score).toFixed(2)}` : `score ${best.score.toFixed(2)}`;
    $("frame-number").textContent = `frame ${r.frame}`;
    const body = $("topk").tBodies[0];
    body.replaceChildren(...r.top.map((p) => {
      const tr = document.createElement("tr");
      tr.innerHTML = "<td></td><td class=num></td><td class=barcell><div class=bar></div></td>";
      tr.cells[0].textContent = p.label; tr.cells[1].textContent = p.score.toFixed(3);
      tr.querySelector(".bar").style.width = `${Math.round(p.score * 100)}%`;
      return tr;
    }));
  } catch (err) { /* no frame yet: keep what is shown */ }
}

async function refreshPreview() {
  try {
    const response = await fetch("snapshot.jpg", { cache: "no-store" });
    if (!response.ok) return;
    const frame = response.headers.get("X-Frame-Number");
    const url = URL.createObjectURL(await response.blob());
    const img = $("preview");
    const old = img.src;
    img.src = url;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    if (frame !== null) seenFrames.add(frame);
    img.dataset.loaded = String(+img.dataset.loaded + 1);
    img.dataset.frame = frame;
    img.dataset.distinctFrames = String(seenFrames.size);
  } catch (err) { /* daemon restarting: try again next tick */ }
}

function tick() { refreshStats(); refreshLatest(); refreshPreview(); }

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const field = $("login").elements.token;
  if (await login(field.value)) { field.value = ""; showLogin(false); tick(); }
  else $("login-error").textContent = "wrong token";
});

fragmentLogin().finally(() => { tick(); setInterval(tick, 1000); });
