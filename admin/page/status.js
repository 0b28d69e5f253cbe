// The relay's status page: reads status.json every 2 s, builds what the
// page should show and lets patch.js update the page in place to match.
// Plain JavaScript, no libraries, nothing fetched from anywhere else. Every
// value from the relay goes into the page as text, never as HTML.
"use strict";

const REFRESH_MS = 2000;
// UPSTREAM_ROWS is how many upstreams a card lists one by one. A udp port
// range maps one upstream per port (127 for CAYIN's RTB streams); listed
// in full, one card would push every other listener off the screen, so
// longer lists are summed up, with the unhealthy ones and those with
// failovers listed and the rest behind "all upstreams".
const UPSTREAM_ROWS = 8;
let reads = 0;
// draws counts the reads drawn on the page; #updated's data-updates
// carries it, a signal for whoever waits on a refresh (the tests).
let draws = 0;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  }
  return e;
}

function num(n) {
  return n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US");
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(Math.round(n)) : n.toFixed(1)) + " " + units[i];
}

function duration(seconds) {
  seconds = Math.max(0, Math.floor(seconds));
  const d = Math.floor(seconds / 86400), h = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  if (d > 0) return d + "d " + h + "h";
  if (h > 0) return h + "h " + m + "m";
  if (m > 0) return m + "m " + s + "s";
  return s + "s";
}

function when(iso) {
  if (!iso || iso.startsWith("0001-")) return "–";
  return new Date(iso).toLocaleString();
}

function badge(text, kind) {
  return el("span", { class: "badge " + kind }, text);
}

// fact is one labelled figure; field names the status.json key it shows.
function fact(label, value, field) {
  return el("div", {}, el("dt", {}, label), el("dd", { "data-field": field }, value));
}

// FDS_NEAR is the share of the descriptor limit past which the page warns:
// at the limit, accepts fail (NOT ACCEPTING) and dials fail.
const FDS_NEAR = 0.9;

function fdsValue(p) {
  if (p.fds_open < 0) return "–";
  const text = num(p.fds_open) + " of " + num(p.fds_limit);
  return p.fds_limit > 0 && p.fds_open >= FDS_NEAR * p.fds_limit ? badge(text + ": near the limit", "warn") : text;
}

function renderProcess(st) {
  const r = st.relay, p = st.process;
  setText(document.getElementById("version"), (r.version || "").replace(/^relay /, ""));
  const reload = r.last_reload;
  const facts = [
    fact("State", st.ready ? badge("ready", "good") : badge("not ready", "bad"), "ready"),
    fact("Uptime", duration(p.uptime_seconds), "uptime_seconds"),
    fact("Started", when(r.started), "started"),
    fact("Config", r.config || "–", "config"),
    fact("Config applied", when(r.loaded), "loaded"),
    fact("Last reload", reload ? (reload.ok ? badge("ok " + when(reload.at), "good")
      : badge("failed " + when(reload.at), "bad")) : "none", "last_reload"),
    fact("Connections now", num(p.connections_active), "connections_active"),
    fact("Connections total", num(p.connections_total), "connections_total"),
    fact("File descriptors", fdsValue(p), "fds_open fds_limit"),
    fact("Admin endpoint", r.admin_listen || "–", "admin_listen"),
  ];
  if (r.acl) {
    facts.push(fact("ACL file", r.acl.file, "acl.file"), fact("ACL rules", num(r.acl.rules), "acl.rules"));
  } else {
    facts.push(fact("ACL", badge("none: every source may connect", "warn"), "acl"));
  }
  if (reload && !reload.ok && reload.error) facts.push(fact("Reload error", reload.error, "last_reload.error"));
  patchChildren(document.getElementById("process"), facts);
  const adminErr = document.getElementById("admin-error");
  adminErr.hidden = !r.admin_error;
  setText(adminErr, r.admin_error ? "Admin endpoint " + r.admin_error : "");
}

function rate(r, key, fmt) {
  return r ? fmt(r[key]) + "/s" : "…";
}

// section is a titled list of figures inside a listener's card.
function section(title, rows) {
  return [el("h4", {}, title), el("dl", { class: "facts" }, ...rows)];
}

function connsSection(c, r) {
  const rows = [
    fact("Active", num(c.active), "active"),
    fact("Accepted", num(c.accepted), "accepted"),
    fact("Rate", r ? r.connections.toFixed(1) + "/s" : "…", "rates.connections"),
    fact("Rejected: ACL", num(c.rejected_acl), "rejected_acl"),
    fact("Rejected: max_conns", num(c.rejected_max_conns), "rejected_max_conns"),
  ];
  if (c.rejected_per_source !== undefined) {
    rows.push(fact("Rejected: per source", num(c.rejected_per_source), "rejected_per_source"));
  }
  if (c.rejected_proxy_header !== undefined) {
    rows.push(fact("Rejected: PROXY header", num(c.rejected_proxy_header), "rejected_proxy_header"));
  }
  rows.push(fact("Closed: no upstream", num(c.unreachable), "unreachable"),
    fact("Dial failures", num(c.dial_failures), "dial_failures"),
    fact("Accept errors", num(c.accept_errors), "accept_errors"));
  return section("Connections", rows);
}

function udpSection(u, r) {
  const rows = [
    fact("Sessions now", num(u.sessions_active), "sessions_active"),
    fact("Sessions created", num(u.sessions_created), "sessions_created"),
    fact("Sessions expired", num(u.sessions_expired), "sessions_expired"),
    fact("Sessions evicted", num(u.sessions_evicted), "sessions_evicted"),
    fact("Session rate", r ? r.connections.toFixed(1) + "/s" : "…", "rates.connections"),
    fact("Datagrams to upstream", num(u.datagrams_to_upstream), "datagrams_to_upstream"),
    fact("Datagrams to client", num(u.datagrams_to_client), "datagrams_to_client"),
    fact("Sources rejected", num(u.sources_rejected), "sources_rejected"),
    fact("Failovers", num(u.failovers), "failovers"),
  ];
  for (const [reason, n] of Object.entries(u.dropped || {}).sort()) {
    if (n > 0) rows.push(fact("Dropped: " + reason, num(n), "dropped." + reason));
  }
  return section("UDP", rows);
}

function ftpSection(f) {
  return section("FTP", [
    fact("Sessions", num(f.sessions), "sessions"),
    fact("No upstream (421)", num(f.no_upstream), "no_upstream"),
    fact("Data ports in use", num(f.data_ports_in_use) + " of " + num(f.data_ports), "data_ports_in_use data_ports"),
    fact("Data opened", num(f.data_opened), "data_opened"),
    fact("Data failed", num(f.data_failed), "data_failed"),
    fact("Data bytes up", bytes(f.data_bytes_to_upstream), "data_bytes_to_upstream"),
    fact("Data bytes down", bytes(f.data_bytes_to_client), "data_bytes_to_client"),
    fact("Bounces refused", num(f.bounces_refused), "bounces_refused"),
    fact("Data-port thefts", num(f.data_theft_attempts), "data_theft_attempts"),
    fact("Server ports below 1024 refused", num(f.passive_ports_refused), "passive_ports_refused"),
    fact("Lines too long", num(f.lines_too_long), "lines_too_long"),
    fact("AUTH TLS passed through", num(f.tls_passthrough), "tls_passthrough"),
  ]);
}

function rawSection(raw, now) {
  const rows = [fact("Queue now", num(raw.queue_length), "queue_length")];
  const printing = raw.printing || [];
  if (printing.length === 0) rows.push(fact("Printing", "nobody", "printing"));
  for (const h of printing) {
    const secs = (Date.parse(now) - Date.parse(h.since)) / 1000;
    rows.push(fact("Printing", h.client + " for " + duration(secs), "printing.client printing.since"));
  }
  const mean = raw.waits > 0 ? raw.wait_ns / raw.waits / 1e9 : 0;
  rows.push(
    fact("Waited", num(raw.waits) + " (mean " + mean.toFixed(1) + " s)", "waits wait_ns"),
    fact("Queue timeouts", num(raw.queue_timeouts), "queue_timeouts"));
  return section("Printer queue", rows);
}

function tlsSection(t) {
  const rows = [];
  for (const [side, h] of [["client", t.client], ["upstream", t.upstream]]) {
    if (!h) continue;
    rows.push(fact("TLS " + side + " ok", num(h.ok), "tls." + side + ".ok"),
      fact("TLS " + side + " resumed", num(h.resumed), "tls." + side + ".resumed"),
      fact("TLS " + side + " last ok", when(h.last_ok), "tls." + side + ".last_ok"));
    for (const [reason, n] of Object.entries(h.failed || {}).sort()) {
      rows.push(fact("TLS " + side + " failed: " + reason, num(n), "tls." + side + ".failed." + reason));
    }
    // The latest failure of each reason whose peer has not succeeded since.
    for (const f of h.failing || []) {
      rows.push(fact("TLS " + side + " failing: " + f.reason, f.peer + " at " + when(f.at),
        "tls." + side + ".failing." + f.reason));
    }
  }
  return section("TLS", rows);
}

// tlsTrouble words the relay's verdict on a listener's handshakes
// (tls.attention, see admin's tlsAttention): an upstream that fails them
// breaks every connection; refused client certificates lock one box
// office out, a softer note. null: nothing.
function tlsTrouble(t) {
  const a = t && t.attention;
  if (!a) return null;
  const upstream = a.side === "upstream";
  return {
    why: (upstream ? "TLS FAILING: " : "CLIENT CERTS REFUSED: ") + a.reason + " (" + a.peer + ")",
    kind: upstream ? "bad" : "warn",
    title: (upstream ? "handshakes with upstream " : "handshake of client ") + a.peer + " failed at " +
      when(a.at) + ", none of its handshakes succeeded since",
  };
}

function stateBadge(state) {
  if (state === "serving") return badge("serving", "good");
  if (state === "draining") return badge("draining", "idle");
  return badge(state === "down" ? "DOWN" : state, "bad");
}

function plural(n, one, many) {
  return num(n) + " " + (n === 1 ? one : many);
}

// PASSIVE_UP is what an upstream up reads on a listener without
// health_checks: nothing probes it, so "healthy" would claim more than
// "no client's dial to it has failed" (a printer nobody printed on yet).
const PASSIVE_UP = "no failures";

function healthLabel(health, active) {
  if (health === "unhealthy") return "UNHEALTHY";
  return health === "healthy" && !active ? PASSIVE_UP : health;
}

function upstreamItem(u, active) {
  const kinds = { healthy: active ? "good" : "idle", unhealthy: "bad" };
  const title = active ? undefined : "no health section: learnt from clients' connections only";
  return el("li", { "data-upstream": u.address, "data-health": u.health || "unknown" },
    u.address, " ", u.health ? el("span", { class: "badge " + (kinds[u.health] || "idle"), title: title }, healthLabel(u.health, active)) : null,
    u.failovers ? el("span", { class: "muted" }, " " + plural(u.failovers, "failover", "failovers")) : null);
}

// span names a list of addresses briefly: "10.0.0.5:8100–8226" when they
// are one host's consecutive ports, else the first and the last.
function span(ups) {
  const parse = a => { const i = a.lastIndexOf(":"); return [a.slice(0, i), Number(a.slice(i + 1))]; };
  const [host, first] = parse(ups[0].address);
  const consecutive = ups.every((u, i) => { const [h, p] = parse(u.address); return h === host && p === first + i; });
  return consecutive ? host + ":" + first + "–" + (first + ups.length - 1)
    : ups[0].address + " … " + ups[ups.length - 1].address;
}

// upstreamList lists a listener's upstreams, or sums up a long list (see
// UPSTREAM_ROWS).
function upstreamList(ups, active) {
  const item = u => upstreamItem(u, active);
  if (ups.length <= UPSTREAM_ROWS) {
    return [el("ul", { "aria-label": "upstreams", "data-upstreams": "shown" }, ...ups.map(item))];
  }
  const count = h => ups.filter(u => (u.health || "") === h).length;
  const healthy = count("healthy"), unhealthy = count("unhealthy"), unchecked = count("");
  const sum = [num(ups.length) + " upstreams " + span(ups) + ":"];
  if (healthy) sum.push(" ", badge(num(healthy) + " " + healthLabel("healthy", active), active ? "good" : "idle"));
  if (unhealthy) sum.push(" ", badge(num(unhealthy) + " UNHEALTHY", "bad"));
  if (unchecked) sum.push(" " + num(unchecked) + " unchecked");
  const notable = ups.filter(u => u.health === "unhealthy" || u.failovers > 0);
  const shown = notable.slice(0, UPSTREAM_ROWS);
  // Closed when the card is new; an update leaves open what the admin opened.
  const all = el("details", { "data-upstreams": "all" },
    el("summary", {}, "all upstreams"), el("ul", { "aria-label": "all upstreams" }, ...ups.map(item)));
  return [
    el("p", { class: "where", "data-field": "upstreams" }, ...sum),
    el("ul", { "aria-label": "upstreams unhealthy or with failovers", "data-upstreams": "shown" }, ...shown.map(item)),
    notable.length > shown.length ? el("p", { class: "muted" }, "and " + num(notable.length - shown.length) + " more") : null,
    all,
  ];
}

// trouble says what about a listener needs the admin's eye, null if
// nothing: the same conditions its card marks, as {why, kind} (the
// badge's text and class).
function trouble(s) {
  const ups = s.upstreams || [];
  const bad = why => ({ why: why, kind: "bad" });
  if (s.state === "down") return bad("DOWN");
  if (s.connections && s.connections.accept_backing_off > 0) return bad("NOT ACCEPTING");
  // A failed dial marks its upstream down: TLS FAILING says why, so it
  // comes first.
  const tls = tlsTrouble(s.tls);
  if (tls && tls.kind === "bad") return tls;
  if (ups.length > 0 && ups.every(u => u.health === "unhealthy")) return bad("NO UPSTREAM UP");
  const down = ups.filter(u => u.health === "unhealthy").length;
  if (down > 0) return bad(plural(down, "upstream", "upstreams") + " UNHEALTHY");
  return tls;
}

function cardID(name) {
  return "listener-" + name;
}

// renderOverview heads the cards with the counts by state and a link to
// every listener in trouble: with 127 listeners (one per port of a range)
// the cards run for many screens, and a DOWN one must not hide among them.
function renderOverview(listeners) {
  const box = document.getElementById("overview");
  if (listeners.length === 0) {
    patchChildren(box, []);
    return;
  }
  const states = {};
  for (const s of listeners) states[s.state] = (states[s.state] || 0) + 1;
  const counts = Object.entries(states).sort().map(([st, n]) => num(n) + " " + st).join(", ");
  const bad = listeners.map(s => [s, trouble(s)]).filter(([, tr]) => tr);
  const items = bad.map(([s, tr]) => el("li", { "data-trouble": s.name },
    el("a", { href: "#" + encodeURIComponent(cardID(s.name)) }, s.name), " ",
    el("span", { class: "badge " + tr.kind, title: tr.title }, tr.why)));
  const worst = bad.some(([, tr]) => tr.kind === "bad") ? "bad" : "warn";
  patchChildren(box, [
    el("p", { "data-field": "overview" }, plural(listeners.length, "listener", "listeners") + ": " + counts + ". ",
      bad.length ? badge(plural(bad.length, "needs", "need") + " attention", worst) : badge("nothing needs attention", "good")),
    bad.length ? el("ul", { "aria-label": "listeners that need attention" }, ...items) : null]);
}

function renderListener(s, now) {
  const ups = s.upstreams || [];
  const unhealthy = ups.some(u => u.health === "unhealthy");
  // Every upstream down: the listener accepts clients it can only close.
  const noneUp = ups.length > 0 && ups.every(u => u.health === "unhealthy");
  // Accepts failing (out of descriptors): it serves, but takes no client.
  const backingOff = s.connections && s.connections.accept_backing_off > 0;
  const tlsTr = tlsTrouble(s.tls);
  const cls = "card" + (s.state === "down" || backingOff ? " down" : "") + (unhealthy || tlsTr ? " unhealthy" : "");
  const r = s.rates;
  const parts = [
    el("header", {}, el("h3", {}, s.name), badge(s.mode, "idle"), stateBadge(s.state),
      noneUp ? el("span", { class: "badge bad", "data-field": "no_upstream_up" }, "NO UPSTREAM UP") : null,
      backingOff ? el("span", { class: "badge bad", "data-field": "accept_backing_off",
        title: "accept failed, out of descriptors most likely: clients wait in the backlog" }, "NOT ACCEPTING") : null,
      tlsTr ? el("span", { class: "badge " + tlsTr.kind, "data-field": "tls.attention", title: tlsTr.title }, tlsTr.why) : null),
    el("p", { class: "where" }, "listen ", el("strong", {}, s.listen || "–")),
    ...upstreamList(ups, s.health_checks),
    ...section("Traffic", [
      fact("Bytes to upstream", bytes(s.bytes_to_upstream), "bytes_to_upstream"),
      fact("Bytes to client", bytes(s.bytes_to_client), "bytes_to_client"),
      fact("Rate to upstream", rate(r, "bytes_to_upstream", bytes), "rates.bytes_to_upstream"),
      fact("Rate to client", rate(r, "bytes_to_client", bytes), "rates.bytes_to_client"),
      fact("Rates over", r ? r.window_seconds.toFixed(0) + " s" : "…", "rates.window_seconds"),
    ]),
  ];
  if (s.connections) parts.push(...connsSection(s.connections, r));
  if (s.udp) parts.push(...udpSection(s.udp, r));
  if (s.ftp) parts.push(...ftpSection(s.ftp));
  if (s.raw) parts.push(...rawSection(s.raw, now));
  if (s.tls) parts.push(...tlsSection(s.tls));
  return el("article", { class: cls, id: cardID(s.name), "data-listener": s.name, "data-state": s.state }, ...parts);
}

function renderRejections(acl) {
  const box = document.getElementById("rejections");
  if (!acl) {
    patchChildren(box, [el("p", { class: "muted" }, "No ACL file.")]);
    return;
  }
  const recent = acl.recent_rejections || [];
  const rows = recent.map(x => el("tr", { "data-client": x.client },
    el("td", {}, new Date(x.time).toLocaleTimeString()), el("td", {}, x.listener + " (" + x.proto + ")"),
    el("td", {}, x.client), el("td", { class: "rej-rule" }, x.rule)));
  // The counts since start stay in view when no rejection is recent.
  const decisions = (acl.decisions || []).map(d => d.listener + " (" + d.proto + "): " + num(d.allowed) +
    " allowed, " + num(d.rejected) + " rejected, " + num(d.refused_later) + " refused by later checks, " +
    num(d.logged) + " logged");
  patchChildren(box, [
    recent.length === 0 ? el("p", { class: "muted" }, "None since start.")
      : el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "Time"), el("th", {}, "Listener"),
        el("th", {}, "Client"), el("th", { class: "rej-rule" }, "Deciding rule"))), el("tbody", {}, ...rows)),
    el("p", { class: "muted", "data-field": "decisions" }, decisions.join(" · "))]);
}

function render(st) {
  renderProcess(st);
  renderOverview(st.listeners);
  const cards = st.listeners.map(s => renderListener(s, st.time));
  patchChildren(document.getElementById("listeners"),
    cards.length ? cards : [el("p", { class: "muted" }, "No listeners.")]);
  renderRejections(st.relay.acl);
  const updated = document.getElementById("updated");
  setText(updated, new Date(st.time).toLocaleTimeString());
  updated.dataset.updates = String(++draws);
}

// refusal says why the relay answered status.json with an error: its
// first line names the cause and the setting (the ACL's 403, the Host
// check's 421 after a reload dropped the name the page was opened by).
async function refusal(resp) {
  let line = "";
  try { line = (await resp.text()).split("\n")[0].slice(0, 300); } catch (e) { /* the status alone */ }
  return "The relay answered " + resp.status + (line ? ": " + line : "") + ". The figures below are old.";
}

async function refresh() {
  const conn = document.getElementById("conn");
  try {
    const resp = await fetch("status.json", { cache: "no-store" });
    if (!resp.ok) {
      setText(conn, await refusal(resp));
      conn.hidden = false;
    } else {
      render(await resp.json());
      conn.hidden = true;
    }
  } catch (e) {
    setText(conn, "No answer from the relay: the figures below are old.");
    conn.hidden = false;
  }
  reads++;
  const counter = document.getElementById("refreshes");
  setText(counter, String(reads));
  counter.dataset.refreshes = String(reads);
  setTimeout(refresh, REFRESH_MS);
}

refresh();
