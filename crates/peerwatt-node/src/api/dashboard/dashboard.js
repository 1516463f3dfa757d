// The node's dashboard: reads the node's own API (api/v1, relative: the page works behind a
// reverse proxy under any prefix) and redraws every two seconds.
// Energy arrives in whole Wh, prices in micro-currency per kWh and money in micro-currency;
// this page only formats them (every figure's exact integer is in its data-value).
"use strict";

const STATE_EVERY_MS = 2000;
const INTERVALS_EVERY_MS = 15000;
// A full verification reads every entry: on a small device with a long ledger that is work.
const VERIFY_EVERY_MS = 1800000;
const $ = (id) => document.getElementById(id);

// A token from the link (#token=…) is kept in this browser and taken off the address bar.
function token() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem("peerwatt-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);
  }
  return localStorage.getItem("peerwatt-token");
}

class Unauthorised extends Error {}

async function api(path) {
  const t = token();
  const r = await fetch(path, { headers: t ? { Authorization: "Bearer " + t } : {}, cache: "no-store" });
  if (r.status === 401 || r.status === 403) throw new Unauthorised((await r.json()).error);
  if (!r.ok) {
    let why = r.statusText;
    try { why = (await r.json()).error; } catch (_) { /* not JSON */ }
    throw new Error(path + ": " + why);
  }
  return r;
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const money = (micro) => (micro / 1e6).toFixed(2);
const kwh = (wh) => (wh / 1000).toFixed(wh < 10000 ? 2 : 1) + " kWh";
const watts = (w) => (Math.abs(w) >= 1000 ? (w / 1000).toFixed(2) + " kW" : Math.round(w) + " W");
const price = (p) => (p / 1e6).toFixed(3);
const hhmm = (ms) => new Date(ms).toISOString().slice(11, 16);
const day = (ms) => new Date(ms).toISOString().slice(0, 10);
const month = (ms) => new Date(ms).toISOString().slice(0, 7);

function figure(id, text, value) {
  const el = $(id);
  el.textContent = text;
  el.dataset.value = String(value);
}

let last = null;       // the latest state
let intervals = [];    // today's meter intervals
let intervalsDay = ""; // the day they are of

function renderHeader(s) {
  $("name").textContent = s.name || s.peer_id.slice(0, 12);
  $("community").textContent = "\u201c" + s.community + "\u201d \u00b7 " + s.peer_id;
  const age = Date.now() - s.updated_at;
  const running = $("running");
  running.textContent = s.running ? "running" : "stopped";
  running.className = "pill " + (s.running ? "good" : "bad");
  $("clock").textContent = "node clock " + day(s.updated_at) + " " + hhmm(s.updated_at) + " UTC";
  $("clock").title = age > 60000 || age < -60000 ? "the node's clock differs from this device's" : "";
}

function renderMarket(s) {
  const market = $("market");
  const reasons = $("reasons");
  reasons.replaceChildren();
  if (s.not_trading.length === 0) {
    market.textContent = s.market;
    market.className = "banner";
  } else {
    market.textContent = "Not trading, because:";
    market.className = "banner warn";
    for (const why of s.not_trading) {
      const li = document.createElement("li");
      li.textContent = why;
      reasons.append(li);
    }
  }
}

// Power now: the grid meter's power, the PV's, and what the neighbours deliver in the
// current interval (its trades' energy over its length).
function renderFlow(s) {
  const grid = s.power.grid_w;
  const pv = s.power.pv_w;
  const current = s.trades_today.filter((t) => t.interval_start === s.interval.current_start);
  const net = current.reduce((n, t) => n + (t.direction === "bought" ? t.energy_wh : -t.energy_wh), 0);
  const neighbours = (net * 3600000) / s.interval.length_ms;
  const house = grid == null ? null : grid + (pv || 0);
  const arrow = (x1, y1, x2, y2, w, colour) => {
    if (!w) return `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" stroke="var(--line)" stroke-width="2"/>`;
    const [a, b, c, d] = w > 0 ? [x1, y1, x2, y2] : [x2, y2, x1, y1];
    return `<line x1="${a}" y1="${b}" x2="${c}" y2="${d}" stroke="${colour}" stroke-width="4" marker-end="url(#head)"/>`;
  };
  const node = (x, y, label, value) =>
    `<circle cx="${x}" cy="${y}" r="30" fill="var(--card)" stroke="var(--line)" stroke-width="2"/>` +
    `<text x="${x}" y="${y - 2}" text-anchor="middle">${escape(label)}</text>` +
    `<text x="${x}" y="${y + 14}" text-anchor="middle" class="muted">${escape(value)}</text>`;
  $("flow").innerHTML =
    `<defs><marker id="head" markerWidth="6" markerHeight="6" refX="5" refY="3" orient="auto"><path d="M0,0 L6,3 L0,6 z" fill="var(--muted)"/></marker></defs>` +
    arrow(60, 60, 130, 100, grid, "var(--import)") +
    arrow(260, 60, 190, 100, pv, "var(--export)") +
    arrow(160, 180, 160, 135, neighbours, "var(--bought)") +
    node(45, 45, "grid", grid == null ? "–" : watts(grid)) +
    node(275, 45, "PV", pv == null ? "–" : watts(pv)) +
    node(160, 105, "home", house == null ? "–" : watts(house)) +
    `<text x="160" y="196" text-anchor="middle">neighbours ${escape(watts(neighbours))}</text>`;
  const at = s.power.grid_at ? "grid meter read " + hhmm(s.power.grid_at) + " UTC" : "no grid reading yet";
  $("flow-note").textContent = at + (grid != null && grid < 0 ? "; exporting" : "") +
    "; neighbours: this interval's trades (" + (net >= 0 ? "bought " : "sold ") + Math.abs(net) + " Wh)";
}

function renderMoney(s) {
  figure("savings-month", money(s.settled.month.savings), s.settled.month.savings);
  figure("savings-today", money(s.today.savings), s.today.savings);
  figure("sold-today", kwh(s.today.sold_wh) + " \u00b7 " + money(s.today.earned), s.today.sold_wh);
  figure("bought-today", kwh(s.today.bought_wh) + " \u00b7 " + money(s.today.spent), s.today.bought_wh);
}

// Today's intervals: the meter's import above the line and export below, the trades'
// energy as thinner bars inside them.
function renderDay(s) {
  const length = s.interval.length_ms;
  const start = s.updated_at - (s.updated_at % 86400000);
  const slots = Math.round(86400000 / length);
  const per = new Map();
  const at = (t) => {
    const i = Math.floor((t - start) / length);
    if (!per.has(i)) per.set(i, { imported: 0, exported: 0, bought: 0, sold: 0 });
    return per.get(i);
  };
  for (const i of intervals) {
    const p = at(i.start);
    p.imported = i.imported;
    p.exported = i.exported;
  }
  for (const t of s.trades_today) at(t.interval_start)[t.direction] += t.energy_wh;
  let top = 1;
  for (const p of per.values()) top = Math.max(top, p.imported, p.exported, p.bought, p.sold);
  const [w, h, mid, left] = [640, 220, 105, 30];
  const bw = (w - left) / slots;
  const y = (wh) => (wh / top) * (mid - 10);
  let bars = "";
  for (const [i, p] of per) {
    if (i < 0 || i >= slots) continue;
    const x = left + i * bw;
    bars += `<rect x="${x}" y="${mid - y(p.imported)}" width="${bw * 0.9}" height="${y(p.imported)}" fill="var(--import)" opacity="0.55"/>`;
    bars += `<rect x="${x}" y="${mid}" width="${bw * 0.9}" height="${y(p.exported)}" fill="var(--export)" opacity="0.55"/>`;
    bars += `<rect x="${x + bw * 0.25}" y="${mid - y(p.bought)}" width="${bw * 0.45}" height="${y(p.bought)}" fill="var(--bought)"/>`;
    bars += `<rect x="${x + bw * 0.25}" y="${mid}" width="${bw * 0.45}" height="${y(p.sold)}" fill="var(--sold)"/>`;
  }
  let axis = `<line x1="${left}" y1="${mid}" x2="${w}" y2="${mid}" stroke="var(--muted)"/>`;
  for (const hour of [0, 6, 12, 18, 24]) {
    const x = left + (hour * 3600000 / length) * bw;
    axis += `<text x="${x}" y="${h - 2}" text-anchor="middle" class="muted">${hour}h</text>`;
  }
  axis += `<text x="2" y="14" class="muted">${escape(top)} Wh</text>`;
  const now = left + ((s.updated_at - start) / length) * bw;
  axis += `<line x1="${now}" y1="4" x2="${now}" y2="${h - 16}" stroke="var(--muted)" stroke-dasharray="3 3"/>`;
  $("day").innerHTML = axis + bars;
}

// The grid's tariffs bound every local price: feed-in on the left, retail on the right.
function renderPrices(s) {
  const lo = s.tariffs.feed_in;
  const hi = s.tariffs.retail;
  const x = (p) => 20 + ((p - lo) / Math.max(1, hi - lo)) * 280;
  let marks = `<line x1="20" y1="40" x2="300" y2="40" stroke="var(--line)" stroke-width="6"/>` +
    `<text x="20" y="72" text-anchor="start" class="muted">feed-in ${price(lo)}</text>` +
    `<text x="300" y="72" text-anchor="end" class="muted">retail ${price(hi)}</text>`;
  for (const t of s.trades_today.slice(-40)) {
    marks += `<circle cx="${x(t.price)}" cy="40" r="4" fill="${t.direction === "sold" ? "var(--sold)" : "var(--bought)"}" opacity="0.7"/>`;
  }
  for (const o of s.orders) {
    marks += `<path d="M${x(o.price)},20 l-5,-8 h10 z" fill="${o.side === "sell" ? "var(--sold)" : "var(--bought)"}"/>`;
  }
  $("prices").innerHTML = marks;
  const trades = s.trades_today;
  const energy = trades.reduce((n, t) => n + t.energy_wh, 0);
  const mean = energy ? trades.reduce((n, t) => n + t.price * t.energy_wh, 0) / energy : null;
  $("prices-note").textContent = (mean == null ? "no trades today" : "today's trades: " + price(mean) + " per kWh on average") +
    "; \u25bc your open orders (" + s.orders.length + "); \u25cf trades. Prices per kWh.";
}

function renderLedger(s) {
  $("ledger-entries").textContent = s.ledger.entries;
  const h = s.ledger.signed_head;
  $("ledger-head").textContent = h ? h.size + " entries, " + hhmm(h.time) + " UTC" : "none yet";
  $("ledger-root").textContent = "root " + s.ledger.root;
}

function renderTrades(s) {
  figure("trade-count", "(" + s.trades_today.length + ")", s.trades_today.length);
  const rows = s.trades_today.slice(-50).reverse().map((t) => {
    const tr = document.createElement("tr");
    tr.className = "trade";
    const cells = [hhmm(t.interval_start), t.direction, t.energy_wh + " Wh", price(t.price),
      t.counterparty_name || t.counterparty.slice(0, 12) + "\u2026"];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (i === 1) td.className = t.direction;
      if (i === 4) td.title = t.counterparty;
      tr.append(td);
    });
    return tr;
  });
  $("trades").replaceChildren(...rows);
}

function render(s) {
  renderHeader(s);
  renderMarket(s);
  renderFlow(s);
  renderMoney(s);
  renderDay(s);
  renderPrices(s);
  renderLedger(s);
  renderTrades(s);
}

function failed(e) {
  if (e instanceof Unauthorised) {
    $("login").hidden = false;
    document.body.dataset.state = "login";
    return;
  }
  $("error").hidden = false;
  $("error").textContent = "Cannot reach the node: " + e.message + " (retrying)";
  document.body.dataset.state = "error";
}

async function refreshIntervals() {
  if (!last) return;
  const today = day(last.updated_at);
  const answer = await api("api/v1/intervals?from=" + today);
  intervals = await answer.json();
  intervalsDay = today;
}

async function refresh() {
  try {
    last = await (await api("api/v1/state")).json();
    if (intervalsDay !== day(last.updated_at)) await refreshIntervals();
    render(last);
    $("error").hidden = true;
    $("login").hidden = true;
    document.body.dataset.state = "ready";
    document.body.dataset.updated = String(last.updated_at);
  } catch (e) {
    failed(e);
  }
}

async function verify() {
  try {
    const v = await (await api("api/v1/ledger/verify")).json();
    const el = $("ledger-verified");
    el.textContent = v.verified ? "\u2713 " + v.entries + " entries, " + v.heads + " heads" : "\u2717 " + v.problem;
    el.dataset.value = String(v.verified);
    el.style.color = v.verified ? "var(--good)" : "var(--bad)";
  } catch (e) {
    failed(e);
  }
}

async function downloadStatement() {
  if (!last) return;
  const m = month(last.updated_at);
  try {
    const csv = await (await api("api/v1/statement?format=csv&month=" + m)).blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(csv);
    a.download = "statement-" + m + ".csv";
    document.body.append(a);
    a.click();
    a.remove();
    // Some browsers (phones) read the file after click() returns.
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
  } catch (e) {
    failed(e);
  }
}

async function start() {
  $("statement").addEventListener("click", downloadStatement);
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("peerwatt-token", $("token").value.trim());
    refresh().then(verify);
  });
  try {
    const health = await (await api("api/v1/health")).json();
    $("version").textContent = health.version;
  } catch (e) {
    failed(e);
  }
  await refresh();
  await verify();
  setInterval(refresh, STATE_EVERY_MS);
  setInterval(() => refreshIntervals().catch(failed), INTERVALS_EVERY_MS);
  setInterval(verify, VERIFY_EVERY_MS);
}

start();
