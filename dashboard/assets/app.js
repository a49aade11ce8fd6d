// redraft dashboard: reads this node's admin API once a second and draws the cluster; every
// change goes through the same API after a confirmation. No framework, no network beyond this
// node. Values from the API are put in the page as text only, never as markup.
"use strict";

const TOKEN_KEY = "redraft-admin-token";
const POLL_MS = 1000;
const HISTORY = 300; // samples kept for the small charts: five minutes at one a second
// Upper bounds (seconds) of the latency buckets in router.Stats.Latency (router/cmdstats.go).
const LAT_BOUNDS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#8cd17d"];
const NUM_SLOTS = 16384, COLS = 256, CELL = 3;

const $ = (id) => document.getElementById(id);

// ---- small helpers --------------------------------------------------------------------------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k);
  return e;
}

// swatch is a small square of colour c (set through CSSOM: the page's CSP allows no inline style).
function swatch(c, cls) { const i = el("i", { class: cls }); if (c) i.style.background = c; return i; }

function setText(e, s) { if (e.textContent !== s) e.textContent = s; }

function stateBadge(e, kind, text, title) {
  if (e.dataset.s !== kind) e.dataset.s = kind;
  setText(e, text);
  e.title = title || "";
}

const nf = new Intl.NumberFormat("en-US");
function fmtInt(n) { return n === undefined || n === null || isNaN(n) ? "–" : nf.format(Math.round(n)); }
function fmtBytes(n) {
  if (n === undefined || n === null || n < 0) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + u[i];
}
function fmtSecs(s) { // a latency or lag in seconds
  if (s === undefined || s === null || isNaN(s)) return "–";
  if (s === Infinity) return "> 5 s";
  if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
  return s.toFixed(2) + " s";
}
function fmtDuration(s) { // an ETA
  if (!isFinite(s) || s < 0) return "–";
  if (s < 60) return Math.ceil(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + String(Math.floor(s % 60)).padStart(2, "0") + " s";
  return Math.floor(s / 3600) + " h " + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + " min";
}
function fmtRanges(r) { return (r || []).map((x) => (typeof x === "string" ? x : x.from === x.to ? String(x.from) : x.from + "-" + x.to)).join(", "); }
function splitList(s) { return s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean); }

// ---- the admin API --------------------------------------------------------------------------

class APIError extends Error {
  constructor(status, msg) { super(msg); this.status = status; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) headers["Authorization"] = "Bearer " + tok;
  // Every change says it is JSON, with or without a body: the API refuses one that does not
  // (415), as it would a cross-site form post (docs/security.md, "Admin API").
  if (body !== undefined || (method !== "GET" && method !== "HEAD")) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (e) {
    throw new APIError(0, "this node did not answer: " + e.message);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) {
    const msg = data && data.error ? data.error : "HTTP " + res.status + (text ? ": " + text.slice(0, 200) : "");
    if (res.status === 401) showLogin(msg);
    throw new APIError(res.status, msg);
  }
  return data;
}

// ---- login ----------------------------------------------------------------------------------

function showLogin(why) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("main").hidden = true;
  $("login").hidden = false;
  $("h-forget").hidden = true;
  setText($("login-why"), why || "This node's admin API needs its token.");
  stateBadge($("h-live"), "warn", "token needed");
  $("login-token").focus();
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("login-token").value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  $("login-token").value = "";
  $("login").hidden = true;
  poll();
});

$("h-forget").addEventListener("click", () => showLogin("Token forgotten. Type it again to go on."));

// ---- confirmation ---------------------------------------------------------------------------

// confirmDialog shows title and lines (what will happen); with askFor it also asks for a value.
// It resolves to false (cancelled), true, or the value typed.
function confirmDialog(title, lines, okLabel, askFor) {
  const d = $("confirm");
  setText($("c-title"), title);
  const body = $("c-body");
  body.replaceChildren();
  const ul = el("ul");
  for (const l of lines) ul.append(el("li", { text: l }));
  body.append(ul);
  let input = null;
  if (askFor) {
    input = el("input", { type: askFor.type || "text", value: askFor.value ?? "", placeholder: askFor.placeholder || "", "aria-label": askFor.label });
    body.append(el("label", { text: askFor.label }), input);
  }
  setText($("c-ok"), okLabel || "Confirm");
  d.returnValue = "";
  d.showModal();
  if (input) input.focus(); else $("c-ok").focus();
  return new Promise((resolve) => {
    d.addEventListener("close", () => {
      if (d.returnValue !== "ok") return resolve(false);
      resolve(input ? input.value : true);
    }, { once: true });
  });
}

// act confirms, runs fn, and shows the API's error in errEl (cleared on success).
async function act(errEl, title, lines, okLabel, fn, askFor) {
  const v = await confirmDialog(title, lines, okLabel, askFor);
  if (v === false) return null;
  setText(errEl, "");
  try {
    const out = await fn(v);
    poll();
    return out;
  } catch (e) {
    setText(errEl, e.message);
    return null;
  }
}

// ---- keyed table rows: update in place so nothing jumps and errors stay -------------------

function syncRows(tbody, items, keyOf, create, update) {
  const have = new Map();
  for (const tr of tbody.children) have.set(tr.dataset.key, tr);
  let prev = null;
  for (const it of items) {
    const k = keyOf(it);
    let tr = have.get(k);
    if (!tr) { tr = create(it); tr.dataset.key = k; } else have.delete(k);
    update(tr, it);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const tr of have.values()) tr.remove();
}

function cells(tr, n) { while (tr.children.length < n) tr.append(el("td")); return tr.children; }

// ---- small charts ---------------------------------------------------------------------------

// spark draws series ({values, color}) as lines, each scaled to its own maximum, newest at
// the right edge.
function spark(canvas, series) {
  const dpr = window.devicePixelRatio || 1;
  const w = 120, h = 24;
  if (canvas.width !== w * dpr) { canvas.width = w * dpr; canvas.height = h * dpr; }
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  for (const { values, color } of series) {
    if (values.length < 2) continue;
    const vals = values.map((v) => (isFinite(v) ? v : isNaN(v) ? 0 : LAT_BOUNDS[LAT_BOUNDS.length - 1]));
    const max = Math.max(...vals, 1e-9);
    // The first minute fills the chart; after that it scrolls, up to HISTORY samples wide.
    const step = w / (Math.min(Math.max(vals.length, 60), HISTORY) - 1);
    g.strokeStyle = color;
    g.lineWidth = 1.25;
    g.beginPath();
    vals.forEach((v, i) => {
      const x = w - (vals.length - 1 - i) * step;
      const y = h - 2 - (v / max) * (h - 4);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function pushHist(map, key, v) {
  let a = map.get(key);
  if (!a) { a = []; map.set(key, a); }
  a.push(v);
  if (a.length > HISTORY) a.shift();
  return a;
}

// percentile of the commands counted between two readings of the latency buckets.
function percentile(delta, q) {
  const n = delta.reduce((a, b) => a + b, 0);
  if (n <= 0) return NaN;
  let cum = 0;
  for (let i = 0; i < delta.length; i++) {
    if (cum + delta[i] >= q * n) {
      if (i >= LAT_BOUNDS.length) return Infinity;
      const lo = i === 0 ? 0 : LAT_BOUNDS[i - 1], hi = LAT_BOUNDS[i];
      return lo + (hi - lo) * ((q * n - cum) / delta[i]);
    }
    cum += delta[i];
  }
  return Infinity;
}

// ---- members ----------------------------------------------------------------------------------

const prevPlane = new Map(); // node id -> {t, Requests, Latency}
const cmdHist = new Map(), p99Hist = new Map();

function renderMembers(st, now) {
  syncRows($("members"), st.members || [], (m) => m.id, (m) => {
    const tr = el("tr");
    const c = cells(tr, 12);
    c[4].append(el("span", { class: "state" }));
    for (const i of [5, 6, 7, 8, 9]) c[i].className = "r";
    c[10].append(el("canvas", { class: "spark", width: 120, height: 24 }));
    const err = el("span", { class: "err" });
    c[11].append(el("button", { class: "danger", type: "button", text: "remove…", onclick: () => act(err,
      "Remove node " + m.id + "?",
      ["Node " + m.id + " (" + m.dc + ") leaves the Raft configuration and the cluster state.",
        "It stops serving clients and does not come back by itself; rejoining needs a new data directory.",
        "A removed node no longer blocks migrations of its DC."],
      "Remove " + m.id, () => api("DELETE", "/nodes/" + encodeURIComponent(m.id))) }), err);
    return tr;
  }, (tr, m) => {
    const c = tr.children;
    const lead = m.id === st.leader;
    setText(c[0], (lead ? "★ " : "") + m.id);
    c[0].className = lead ? "leader" : "";
    c[0].title = lead ? "Raft leader" : "";
    setText(c[1], m.dc || "");
    setText(c[2], m.rack || "–");
    setText(c[3], (m.role || "?") + (m.suffrage === "nonvoter" ? " (non-voter)" : ""));
    const b = c[4].firstChild;
    if (m.role === "unreachable") stateBadge(b, "bad", "unreachable", m.error);
    else if (m.acting) stateBadge(b, "ok", "acting");
    else stateBadge(b, "warn", "not acting", m.not_acting);
    setText(c[5], fmtInt(m.applied_index));
    const dp = m.data_plane;
    if (!dp) {
      for (const i of [6, 7, 8, 9]) setText(c[i], "–");
      return;
    }
    setText(c[6], fmtInt(dp.ClientConns));
    const p = prevPlane.get(m.id);
    prevPlane.set(m.id, { t: now, req: dp.Requests, lat: dp.Latency || [] });
    if (p && now > p.t) {
      const dt = (now - p.t) / 1000;
      const rate = Math.max(0, (dp.Requests - p.req) / dt);
      const delta = (dp.Latency || []).map((v, i) => Math.max(0, v - (p.lat[i] || 0)));
      setText(c[7], fmtInt(rate));
      const p99 = percentile(delta, 0.99);
      setText(c[8], fmtSecs(percentile(delta, 0.5)));
      setText(c[9], fmtSecs(p99));
      c[10].title = "commands/s (blue) and p99 latency (amber), each on its own scale";
      spark(c[10].firstChild, [{ values: pushHist(cmdHist, m.id, rate), color: cssVar("--accent") },
        { values: pushHist(p99Hist, m.id, p99), color: cssVar("--warn") }]);
    }
  });
}

// ---- groups -----------------------------------------------------------------------------------

function groupColors(dc) {
  const m = new Map();
  (dc.groups || []).forEach((g, i) => m.set(g.id, PALETTE[i % PALETTE.length]));
  return m;
}

function serverRows(st) {
  const rows = [];
  for (const dc of st.dcs || []) {
    const colors = groupColors(dc);
    for (const g of dc.groups || []) {
      const views = new Map((g.servers || []).map((v) => [v.addr, v]));
      const addrs = [g.master, ...(g.replicas || []), ...(g.fenced || [])];
      addrs.forEach((a, i) => rows.push({ dc: dc.name, g, first: i === 0, addr: a, v: views.get(a), color: colors.get(g.id) }));
    }
  }
  return rows;
}

function groupsTable() {
  let t = $("groups").querySelector("table");
  if (!t) {
    t = el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ...["DC", "group", "slots", "server", "role", "state", "link", "lag",
        "memory", "keys", "ops/s", "failover", ""].map((h, i) => el("th", { class: [2, 7, 8, 9, 10].includes(i) ? "r" : "", text: h })))),
      el("tbody"));
    $("groups").append(t);
  }
  return t.tBodies[0];
}

function renderGroups(st) {
  const rows = serverRows(st);
  syncRows(groupsTable(), rows, (r) => r.dc + "/" + r.g.id + "/" + r.addr, (r) => {
    const tr = el("tr");
    const c = cells(tr, 13);
    for (const i of [2, 7, 8, 9, 10]) c[i].className = "r";
    c[5].append(el("span", { class: "state" }));
    c[11].append(el("span", { class: "state" }));
    if (r.first) {
      const err = el("span", { class: "err" });
      const dc = r.dc, id = r.g.id;
      c[12].append(
        el("button", { class: "quiet", type: "button", text: "switchover…", onclick: () => act(err,
          "Switch group " + id + " (" + dc + ") to a replica?",
          ["The master stops taking writes for a moment (CLIENT PAUSE) while the chosen replica catches up.",
            "The replica is promoted; the old master becomes its replica.",
            "Leave the field empty to let redraft pick the replica closest to the master."],
          "Switch over", (to) => api("POST", "/groups/" + encodeURIComponent(dc) + "/" + encodeURIComponent(id) + "/failover",
            { to: String(to).trim(), reason: "dashboard" }),
          { label: "new master (host:port, optional)", placeholder: "host:port" }) }),
        el("button", { class: "danger", type: "button", text: "remove…", onclick: () => act(err,
          "Remove group " + id + " from " + dc + "?",
          ["The group leaves the cluster state; its Redis servers keep their data but redraft no longer uses them.",
            "Refused while the group still serves slots: migrate them away first."],
          "Remove " + id, () => api("DELETE", "/groups/" + encodeURIComponent(dc) + "/" + encodeURIComponent(id))) }),
        err);
    }
    return tr;
  }, (tr, r) => {
    const c = tr.children, g = r.g, v = r.v;
    setText(c[0], r.first ? r.dc : "");
    if (r.first) {
      if (!c[1].firstChild || c[1].firstChild.nodeName !== "I") c[1].replaceChildren(swatch(r.color, "swatch"), el("span"));
      c[1].firstChild.style.background = r.color;
      setText(c[1].lastChild, g.id);
      setText(c[2], fmtInt(g.slots));
    } else {
      c[1].replaceChildren();
      setText(c[2], "");
    }
    setText(c[3], r.addr);
    const listed = v ? v.listed : (r.addr === g.master ? "master" : (g.fenced || []).includes(r.addr) ? "fenced" : "replica");
    setText(c[4], listed + (v && v.role && v.role !== (listed === "master" ? "master" : "slave") ? " (says " + v.role + ")" : ""));
    const b = c[5].firstChild;
    if (!v) stateBadge(b, "idle", "not seen", "no node of this DC reported this server yet");
    else if (!v.up) stateBadge(b, "bad", "down", v.error || (v.down_ms ? "unreachable for " + fmtSecs(v.down_ms / 1000) : ""));
    else if (v.loading) stateBadge(b, "warn", "loading");
    else stateBadge(b, "ok", "up", "as " + (g.seen_by || "a node") + " sees it");
    setText(c[6], v && listed !== "master" ? (v.link || "–") : "");
    setText(c[7], v && listed !== "master" ? (v.lag_bytes < 0 ? "–" : fmtBytes(v.lag_bytes)) : "");
    setText(c[8], v && v.used_memory ? fmtBytes(v.used_memory) : "–");
    setText(c[9], v && v.keys !== undefined && v.up ? fmtInt(v.keys) : "–");
    setText(c[10], v && v.ops_per_sec !== undefined && v.up ? fmtInt(v.ops_per_sec) : "–");
    const f = c[11].firstChild;
    if (!r.first) { f.hidden = true; return; }
    f.hidden = false;
    if (g.failover) stateBadge(f, "warn", "failing over", "to " + (g.failover.to || "?") + (g.failover.reason ? ": " + g.failover.reason : ""));
    else if ((g.down_votes || []).length) stateBadge(f, "bad", "master down?", "nodes that cannot reach the master: " + g.down_votes.join(", "));
    else if (g.failovers) stateBadge(f, "ok", g.failovers + " done", g.last_failover ? "last: " + (g.last_failover.from || "") + " → " + (g.last_failover.to || "") : "");
    else stateBadge(f, "idle", "none");
  });
}

// ---- slot map ---------------------------------------------------------------------------------

const slotInfo = new Map(); // dc -> {owner: Array(16384) of group id, mig: Map(slot -> migration), dc}

function parseRange(s) {
  const [a, b] = String(s).split("-");
  return [Number(a), b === undefined ? Number(a) : Number(b)];
}

function renderSlots(st, migs) {
  const host = $("slotmaps");
  const seen = new Set();
  for (const dc of st.dcs || []) {
    seen.add(dc.name);
    let box = host.querySelector('[data-dc="' + CSS.escape(dc.name) + '"]');
    if (!box) {
      box = el("div", { class: "dc", "data-dc": dc.name },
        el("h3", { text: dc.name }),
        el("div", { class: "slotmap" },
          el("canvas", { width: COLS * CELL, height: (NUM_SLOTS / COLS) * CELL, "aria-label": "slot map of " + dc.name }),
          el("div", { class: "legend" })));
      host.append(box);
      const cv = box.querySelector("canvas");
      cv.addEventListener("mousemove", (ev) => slotTip(ev, dc.name, cv));
      cv.addEventListener("mouseleave", () => { $("slot-tip").hidden = true; });
    }
    const owner = new Array(NUM_SLOTS).fill("");
    const groups = new Map();
    for (const g of dc.groups || []) {
      groups.set(g.id, g);
      for (const r of g.ranges || []) {
        const [a, b] = parseRange(r);
        for (let s = a; s <= b && s < NUM_SLOTS; s++) owner[s] = g.id;
      }
    }
    const mig = new Map();
    for (const m of migs) {
      if (m.dc !== dc.name || m.state === "migrated" || m.state === "cancelled") continue;
      for (const r of m.slots || []) for (let s = r.from; s <= r.to; s++) mig.set(s, m);
    }
    const colors = groupColors(dc);
    slotInfo.set(dc.name, { owner, mig, groups, colors });
    const sig = owner.join(",") + "|" + [...mig.keys()].join(",") + "|" + [...colors].join(",");
    const cv = box.querySelector("canvas");
    if (cv.dataset.sig !== String(hash(sig))) {
      cv.dataset.sig = String(hash(sig));
      drawSlots(cv, owner, mig, colors);
    }
    const legend = box.querySelector(".legend");
    const items = [];
    for (const g of dc.groups || []) items.push(el("div", {}, swatch(colors.get(g.id)), g.id + " · " + fmtInt(g.slots) + " slots · " + fmtRanges(g.ranges)));
    if (dc.unassigned_slots) items.push(el("div", {}, swatch(cssVar("--bar")), "unassigned · " + fmtInt(dc.unassigned_slots) + " slots"));
    if (mig.size) items.push(el("div", {}, swatch(null, "hatch"), "migrating · " + fmtInt(mig.size) + " slots"));
    const lsig = items.map((x) => x.textContent).join("|");
    if (legend.dataset.sig !== lsig) { legend.dataset.sig = lsig; legend.replaceChildren(...items); }
  }
  for (const box of [...host.children]) if (!seen.has(box.dataset.dc)) box.remove();
}

function hash(s) { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return h; }

function drawSlots(cv, owner, mig, colors) {
  const g = cv.getContext("2d");
  const free = cssVar("--bar"), mark = cssVar("--fg");
  for (let s = 0; s < NUM_SLOTS; s++) {
    const x = (s % COLS) * CELL, y = Math.floor(s / COLS) * CELL;
    g.fillStyle = owner[s] ? colors.get(owner[s]) || "#888" : free;
    g.fillRect(x, y, CELL, CELL);
    if (mig.has(s)) {
      g.fillStyle = mark;
      g.fillRect(x + ((s + Math.floor(s / COLS)) % 2 ? 0 : 1), y + 1, 1, 1);
      g.fillRect(x + 2, y + 2, 1, 1);
    }
  }
}

function slotTip(ev, dcName, cv) {
  const info = slotInfo.get(dcName);
  if (!info) return;
  const rect = cv.getBoundingClientRect();
  const col = Math.floor(((ev.clientX - rect.left) / rect.width) * COLS);
  const row = Math.floor(((ev.clientY - rect.top) / rect.height) * (NUM_SLOTS / COLS));
  const s = row * COLS + col;
  if (s < 0 || s >= NUM_SLOTS || col < 0 || col >= COLS) return;
  const gid = info.owner[s];
  let a = s, b = s;
  while (a > 0 && info.owner[a - 1] === gid) a--;
  while (b < NUM_SLOTS - 1 && info.owner[b + 1] === gid) b++;
  const lines = ["slot " + s + " (" + dcName + ")", "range " + a + "-" + b + " · " + fmtInt(b - a + 1) + " slots", "group " + (gid || "none (unassigned)")];
  const g = info.groups.get(gid);
  if (g) {
    const keys = groupKeys(g);
    if (keys !== null && g.slots) lines.push("keys ≈ " + fmtInt(keys / g.slots) + " per slot (" + fmtInt(keys) + " in the group)");
  }
  const m = info.mig.get(s);
  if (m) lines.push("migrating " + m.from + " → " + m.to + " (#" + m.id + ", " + m.state + ")");
  const tip = $("slot-tip");
  setText(tip, lines.join("\n"));
  tip.style.left = ev.clientX + 14 + "px";
  tip.style.top = ev.clientY + 14 + "px";
  tip.hidden = false;
}

function groupKeys(g) {
  const v = (g.servers || []).find((x) => x.addr === g.master);
  return v && v.keys !== undefined && v.up ? v.keys : null;
}

// ---- migrations -------------------------------------------------------------------------------

function migState(m) {
  if (m.state === "migrated") return ["ok", "migrated"];
  if (m.state === "cancelled") return ["idle", "cancelled"];
  if (m.paused) return ["warn", "paused"];
  if (m.cancelling) return ["warn", "cancelling"];
  if (m.state === "frozen") return ["warn", "frozen"];
  return ["info", m.state];
}

function renderMigrations(migs) {
  const active = migs.filter((m) => m.state !== "migrated" && m.state !== "cancelled");
  const done = migs.filter((m) => m.state === "migrated" || m.state === "cancelled").slice(-5);
  const rows = [...active, ...done].sort((a, b) => b.id - a.id);
  syncRows($("migrations"), rows, (m) => String(m.id), (m) => {
    const tr = el("tr");
    const c = cells(tr, 12);
    for (const i of [0, 6, 7, 8, 9]) c[i].className = "r";
    c[4].append(el("span", { class: "state" }));
    c[5].append(el("div", { class: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100" }, el("i"), el("span")));
    const err = el("span", { class: "err" });
    const id = m.id, what = "migration #" + m.id;
    const post = (action, body) => () => api("POST", "/migrations/" + id + "/" + action, body);
    c[11].append(
      el("button", { class: "quiet", type: "button", "data-a": "pause", text: "pause…", onclick: () => act(err, "Pause " + what + "?",
        ["The background mover stops; keys that clients touch still move.", "Resume it to go on."], "Pause", post("pause")) }),
      el("button", { class: "quiet", type: "button", "data-a": "resume", text: "resume…", onclick: () => act(err, "Resume " + what + "?",
        ["The background mover starts again where it stopped."], "Resume", post("resume")) }),
      el("button", { class: "quiet", type: "button", "data-a": "rate", text: "rate…", onclick: () => act(err, "Change the rate of " + what + "?",
        ["The mover is throttled to this many keys per second from now on; 0 means unthrottled."], "Set rate",
        (v) => api("POST", "/migrations/" + id + "/rate", { rate: Number(v) }), { label: "keys/s", type: "number", value: tr.dataset.rate }) }),
      el("button", { class: "danger", type: "button", "data-a": "cancel", text: "cancel…", onclick: () => act(err, "Cancel " + what + "?",
        ["A frozen migration ends at once and its slots stay with " + m.from + ".",
          "A migration whose keys have begun to move runs backwards (" + m.to + " → " + m.from + ") behind a new freeze, then ends cancelled."],
        "Cancel the migration", post("cancel")) }),
      err);
    return tr;
  }, (tr, m) => {
    const c = tr.children;
    setText(c[0], "#" + m.id);
    setText(c[1], m.dc);
    setText(c[2], fmtRanges(m.slots));
    setText(c[3], m.from + " → " + m.to);
    const [k, t] = migState(m);
    stateBadge(c[4].firstChild, k, t);
    const pct = Math.max(0, Math.min(1, m.progress || 0)) * 100;
    const bar = c[5].firstChild;
    bar.setAttribute("aria-valuenow", pct.toFixed(0));
    bar.dataset.progress = pct.toFixed(1);
    bar.firstChild.style.width = pct.toFixed(1) + "%";
    setText(bar.lastChild, pct.toFixed(0) + " %");
    setText(c[6], fmtInt(m.keys_moved) + " / " + (m.keys_total ? fmtInt(m.keys_total) : "?"));
    setText(c[7], fmtInt(m.keys_per_sec || 0));
    const left = (m.keys_total || 0) - (m.keys_moved || 0);
    setText(c[8], m.state === "migrating" && m.keys_per_sec > 0 && left > 0 ? fmtDuration(left / m.keys_per_sec) : "–");
    setText(c[9], m.rate ? fmtInt(m.rate) + " keys/s" : "unthrottled");
    tr.dataset.rate = String(m.rate || 0);
    setText(c[10], (m.waiting_for || []).join(", ") || "–");
    const live = m.state !== "migrated" && m.state !== "cancelled";
    for (const b of c[11].querySelectorAll("button")) {
      const a = b.dataset.a;
      b.hidden = !live || (a === "pause" && m.paused) || (a === "resume" && !m.paused);
    }
  });
}

// ---- cross-DC replication --------------------------------------------------------------------

const lagHist = new Map();
function renderXDC(st) {
  const pairs = st.replication || [];
  $("s-xdc").hidden = pairs.length === 0;
  syncRows($("xdc"), pairs, (p) => p.from + ">" + p.to, () => {
    const tr = el("tr");
    const c = cells(tr, 9);
    for (const i of [2, 3, 4, 5, 6, 7]) c[i].className = "r";
    c[1].append(el("span", { class: "state" }));
    c[8].append(el("canvas", { class: "spark", width: 120, height: 24 }));
    return tr;
  }, (tr, p) => {
    const c = tr.children;
    setText(c[0], p.from + " → " + p.to);
    const kind = { ok: "ok", lagging: "warn", copying: "info", down: "bad" }[p.state] || "idle";
    stateBadge(c[1].firstChild, kind, p.state, p.error);
    setText(c[2], fmtSecs(p.lag_ms / 1000));
    setText(c[3], fmtSecs(p.lag_p50_ms / 1000));
    setText(c[4], fmtSecs(p.lag_p99_ms / 1000));
    setText(c[5], fmtInt(p.pending));
    setText(c[6], fmtInt(p.outbox));
    setText(c[7], fmtInt(p.copied) + (p.copying ? " (" + p.copying + " now)" : ""));
    spark(c[8].firstChild, [{ values: pushHist(lagHist, p.from + ">" + p.to, p.lag_ms), color: cssVar("--warn") }]);
  });
}

// ---- settings ---------------------------------------------------------------------------------

let configItems = [];
async function loadConfig() {
  try { configItems = await api("GET", "/config"); } catch (e) { setText($("err-config"), e.message); }
}

function renderConfig(st) {
  syncRows($("config"), configItems, (i) => i.key, (i) => {
    const tr = el("tr");
    const c = cells(tr, 4);
    c[2].className = "wrap";
    const err = el("span", { class: "err" });
    c[3].append(el("button", { class: "quiet", type: "button", text: "change…", onclick: () => act(err,
      "Change the cluster setting " + i.key + "?",
      ["Every node of every DC applies the new value once the Raft leader commits it.", i.help || ""],
      "Change " + i.key, async (v) => { await api("PUT", "/config/" + encodeURIComponent(i.key), { value: String(v) }); await loadConfig(); },
      { label: "new value", value: (st.settings || {})[i.key] ?? i.value }) }), err);
    return tr;
  }, (tr, i) => {
    const c = tr.children;
    setText(c[0], i.key);
    setText(c[1], (st.settings || {})[i.key] ?? i.value);
    setText(c[2], i.help || "");
  });
}

// ---- forms ------------------------------------------------------------------------------------

function fillDCs(st) {
  const names = (st.dcs || []).map((d) => d.name);
  for (const s of document.querySelectorAll("select.dcs")) {
    if (s.dataset.sig === names.join(",")) continue;
    const cur = s.value;
    s.replaceChildren(...names.map((n) => el("option", { value: n, text: n })));
    if (names.includes(cur)) s.value = cur;
    s.dataset.sig = names.join(",");
  }
}

function formValues(f) { return Object.fromEntries(new FormData(f).entries()); }

$("f-group-add").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = ev.target, v = formValues(f);
  const replicas = splitList(v.replicas || "");
  const group = { id: v.id, master: v.master, replicas, user: v.user || "", password: v.password || "" };
  const done = await act($("err-group-add"), "Add group " + v.id + " to " + v.dc + "?",
    ["Master " + v.master + (replicas.length ? ", replicas " + replicas.join(", ") : ", no replicas") + "; " +
      (v.password ? "the servers' password is set (it is kept by the cluster and never shown)." : "no password."),
    "redraft first creates its ACL users on every server, then commits the group; it serves no slot until slots are assigned to it."],
    "Add " + v.id, () => api("POST", "/groups", { dc: v.dc, group }));
  if (done) f.elements.password.value = ""; // the password leaves the page once sent
});

$("f-assign").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = formValues(ev.target);
  const slots = splitList(v.slots);
  act($("err-assign"), "Assign slots " + slots.join(", ") + " to " + v.group + " in " + v.dc + "?",
    v.force ? ["Forced: slots owned by another group change owner WITHOUT moving their keys; those keys become unreachable.",
      "Use a migration to move slots that hold data."]
      : ["Only free (unassigned) slots are taken; the API refuses slots another group serves."],
    "Assign", () => api("POST", "/slots/assign", { dc: v.dc, group: v.group, slots, force: !!v.force }));
});

$("f-migrate").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = formValues(ev.target);
  const slots = splitList(v.slots), rate = Number(v.rate || 0);
  act($("err-migrate"), "Migrate slots " + slots.join(", ") + " to " + v.to + " in " + v.dc + "?",
    ["Requests for these slots are held for a moment while every node of " + v.dc + " acknowledges the freeze.",
      "Then their keys move to " + v.to + ", " + (rate ? "at most " + fmtInt(rate) + " keys/s" : "unthrottled") + "; clients keep being served.",
      "You can pause, resume, change the rate or cancel it below."],
    "Start the migration", () => api("POST", "/migrations", { dc: v.dc, slots, to: v.to, rate }));
});

function planTable(plan) {
  const t = el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ...["move", "slots", "est. keys", "est. size"].map((h, i) => el("th", { class: i > 1 ? "r" : "", text: h })))),
    el("tbody", {}, ...(plan.moves || []).map((m) => el("tr", {},
      el("td", { text: m.from + " → " + m.to }), el("td", { text: fmtRanges(m.slots) }),
      el("td", { class: "r", text: fmtInt(m.est_keys) }), el("td", { class: "r", text: fmtBytes(m.est_bytes) })))));
  return t;
}

$("f-rebalance").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const v = formValues(ev.target);
  const body = { dc: v.dc, dry_run: true, rate: Number(v.rate || 0) };
  if (v.tolerance) body.tolerance = Number(v.tolerance);
  const out = $("plan"), err = $("err-rebalance");
  setText(err, "");
  out.replaceChildren();
  let r;
  try { r = await api("POST", "/rebalance", body); } catch (e) { setText(err, e.message); return; }
  const p = r.plan || {};
  const notes = [...(p.notes || []), ...(r.warnings || [])];
  out.append(el("p", { text: (p.moves || []).length ? (p.moves.length + " move(s) planned on the basis of " + p.basis + "; " + (p.balanced ? "balanced after them." : "not fully balanced after them.")) : "Nothing to move: the groups are within the tolerance." }));
  if ((p.moves || []).length) out.append(planTable(p));
  for (const n of notes) out.append(el("p", { class: "hint", text: n }));
  if (!(p.moves || []).length) return;
  const rerr = el("span", { class: "err" });
  out.append(el("button", { type: "button", text: "Start these moves…", onclick: async () => {
    const res = await act(rerr, "Start the rebalance of " + v.dc + "?",
      [...p.moves.map((m) => "Move slots " + fmtRanges(m.slots) + " from " + m.from + " to " + m.to + " (≈ " + fmtInt(m.est_keys) + " keys)"),
        "The plan is made again from the servers' current figures, so it may differ slightly from this dry run."],
      "Start", () => api("POST", "/rebalance", { ...body, dry_run: false }));
    if (res) {
      const lines = (res.started || []).map((s) => s.from + " → " + s.to + ": " + (s.id ? "migration #" + s.id : s.error));
      out.append(el("p", { text: "Started: " + (lines.join("; ") || "nothing") }));
    }
  } }), rerr);
});

// ---- the loop ---------------------------------------------------------------------------------

let polling = false, timer = null, configAt = 0;

async function poll() {
  if (polling) return;
  polling = true;
  clearTimeout(timer);
  try {
    const [st, migs] = await Promise.all([api("GET", "/status"), api("GET", "/migrations")]);
    const now = Date.now();
    if (now - configAt > 10000) { configAt = now; await loadConfig(); }
    $("login").hidden = true;
    $("main").hidden = false;
    $("h-forget").hidden = !sessionStorage.getItem(TOKEN_KEY);
    setText($("h-node"), st.node);
    setText($("h-leader"), st.leader || "none");
    setText($("h-term"), fmtInt(st.term));
    setText($("h-applied"), fmtInt(st.applied_index));
    fillDCs(st);
    renderMembers(st, now);
    renderGroups(st);
    renderSlots(st, migs || []);
    renderMigrations(migs || []);
    renderXDC(st);
    renderConfig(st);
    stateBadge($("h-live"), "ok", "live", "updated " + new Date(now).toLocaleTimeString());
  } catch (e) {
    if (e.status === 401) { polling = false; return; }
    stateBadge($("h-live"), "bad", "stale", e.message);
  }
  polling = false;
  timer = setTimeout(poll, POLL_MS);
}

poll();
