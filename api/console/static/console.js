// TwinKG console: one page over the HTTP API, with the caller's own credentials.
// Every permission is checked by the server; the page only hides what the caller may not do.
// Data is only ever put into the page as text (textContent), never as markup.

const TOKEN = "twinkg.console.token";
const SSO = "twinkg.console.sso"; // a single sign-on under way: its state, PKCE verifier, nonce, page
const main = document.getElementById("main");
const message = document.getElementById("message");
let me = null; // GET /me
let stopStream = null; // stops the live events stream when leaving its page

// ---------------------------------------------------------------- small helpers

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function twoLines(x, y, first, second, anchor = "start") {
  // One text element with a space between its two lines: what is seen is what is read out.
  return s("text", { x, y, "text-anchor": anchor },
    s("tspan", { x, y }, first), " ", s("tspan", { x, y: y + 14 }, second));
}

function lastPart(iri) {
  if (!iri) return "";
  const text = String(iri).replace(/\/$/, "");
  return text.slice(Math.max(text.lastIndexOf("/"), text.lastIndexOf("#")) + 1) || text;
}

function show(text, kind = "error") {
  message.className = kind === "info" ? "message info" : "message";
  message.textContent = text;
}
function clearMessage() { message.textContent = ""; }

function can(permission) { return me !== null && me.permissions.includes(permission); }

function pill(text) {
  const value = String(text ?? "unknown");
  const bad = /refused|rejected|alarm|critical|failed|expired|not|fault|tripped|down/i.test(value);
  const ok = /applied|ok|running|approved|normal|true/i.test(value) && !bad;
  return h("span", { class: `pill ${bad ? "bad" : ok ? "ok" : "warn"}`, text: value });
}

function table(columns, rows, caption) {
  return h("table", {},
    caption ? h("caption", { class: "muted", text: caption }) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", text: c })))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell ?? ""))))),
  );
}

function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", {}, v ?? "—")]));
}

class ApiError extends Error {
  constructor(status, code, text) { super(text); this.status = status; this.code = code; }
}

// ---------------------------------------------------------------- the API, as the caller

async function api(path, { method = "GET", body, accept = "application/json", contentType } = {}) {
  const headers = { Accept: accept, Authorization: `Bearer ${sessionStorage.getItem(TOKEN) ?? ""}` };
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType ?? "application/json";
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload, cache: "no-store" });
  if (!response.ok) {
    let code = `http_${response.status}`;
    let text = response.statusText;
    try {
      const doc = await response.json();
      code = doc.error.code;
      text = doc.error.message;
    } catch { /* not TwinKG's error document */ }
    if (response.status === 401) signOut(`Signed out: ${text} (${code})`);
    throw new ApiError(response.status, code, text);
  }
  return response;
}
const getJson = async (path) => (await api(path)).json();
const postJson = async (path, body) => (await api(path, { method: "POST", body })).json();

function failed(error) {
  if (error instanceof ApiError) show(`${error.message} (${error.code}, HTTP ${error.status})`);
  else show(`The request failed: ${error.message}`);
}

// ---------------------------------------------------------------- signing in and out

function signOut(reason) {
  sessionStorage.removeItem(TOKEN);
  me = null;
  if (stopStream) stopStream();
  document.getElementById("nav").hidden = true;
  document.getElementById("who").hidden = true;
  renderLogin();
  if (reason) show(reason);
}

// Single sign-on: the authorization code flow with PKCE (decision 0077). The provider sends the
// browser back to /console?code=…&state=…; TwinKG redeems the code and checks the ID token.

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
const randomText = (bytes) => base64url(crypto.getRandomValues(new Uint8Array(bytes)));
const redirectUri = () => `${location.origin}/console`;

async function startSso(config) {
  if (!window.isSecureContext || !crypto.subtle) {
    show("Single sign-on needs HTTPS (or this machine's own address): the browser withholds the cryptography it needs from a plain-HTTP page.");
    return;
  }
  const verifier = randomText(48);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const state = randomText(24);
  const nonce = randomText(24);
  sessionStorage.setItem(SSO, JSON.stringify({ state, verifier, nonce, hash: location.hash }));
  const url = new URL(config.authorization_endpoint);
  const params = {
    response_type: "code", client_id: config.client_id, redirect_uri: redirectUri(), scope: config.scope,
    state, nonce, code_challenge: base64url(new Uint8Array(digest)), code_challenge_method: "S256",
  };
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  location.assign(url.toString());
}

async function finishSso() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return;
  const pending = JSON.parse(sessionStorage.getItem(SSO) ?? "null");
  sessionStorage.removeItem(SSO);
  history.replaceState(null, "", `/console${pending?.hash ?? ""}`); // the code is used once, and not kept in history
  if (params.has("error")) {
    const why = params.get("error_description");
    show(`The identity provider did not sign you in: ${why ? `${why} (${params.get("error")})` : params.get("error")}`);
    return;
  }
  if (!pending || params.get("state") !== pending.state) {
    show("Sign-in failed: the answer does not belong to a sign-in started in this tab (state mismatch). Start again.");
    return;
  }
  try {
    const signedIn = await postJson("/auth/oidc/token", {
      code: params.get("code"), code_verifier: pending.verifier, redirect_uri: redirectUri(), nonce: pending.nonce,
    });
    sessionStorage.setItem(TOKEN, signedIn.token);
  } catch (error) {
    sessionStorage.removeItem(TOKEN);
    failed(error);
  }
}

async function ssoChoice(form) {
  let config;
  try {
    const response = await fetch("/auth/oidc", { headers: { Accept: "application/json" }, cache: "no-store" });
    config = await response.json();
    if (!response.ok) throw new ApiError(response.status, config.error.code, config.error.message);
  } catch (error) {
    form.prepend(h("p", { class: "muted", id: "sso-down", text: `Single sign-on is not available now: ${error.message}` }));
    return;
  }
  if (!config.enabled) return;
  form.querySelector("h1").after(
    h("p", {}, h("button", { type: "button", id: "sso", text: "Sign in with single sign-on", onclick: () => startSso(config) })),
    h("p", { class: "muted", text: `Through your organisation's identity provider (${config.issuer}). Or:` }));
}

function renderLogin() {
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, size: 60 });
  const form = h("form", { id: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", text: "Sign in" }),
    h("p", { class: "muted", text: "Use your TwinKG API key (tk_…) or a bearer token from your identity provider. It is kept only in this tab." }),
    h("label", { for: "token", text: "API key or bearer token" }), input,
    h("p", {}, h("button", { type: "submit", id: "signin", text: "Sign in" })),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) { show("Enter an API key or a bearer token."); return; }
    sessionStorage.setItem(TOKEN, value);
    try {
      await loadMe();
      clearMessage();
      route();
    } catch (error) {
      sessionStorage.removeItem(TOKEN);
      renderLogin();
      failed(error);
    }
  });
  main.replaceChildren(form);
  input.focus();
  ssoChoice(form);
}

async function loadMe() {
  me = await getJson("/me");
  document.getElementById("who-name").textContent = `${me.name} · ${me.roles.join(", ")}`;
  document.getElementById("who").hidden = false;
  document.getElementById("nav").hidden = false;
}

// ---------------------------------------------------------------- pages

function heading(text) { return h("h1", { text }); }

const PLANT_MAX = 5000; // assets the hierarchy shows; a larger plant is listed a page at a time

async function allAssets() {
  const assets = [];
  for (let offset = 0; offset < PLANT_MAX; offset += 1000) {
    const page = await getJson(`/assets?limit=1000&offset=${offset}`);
    assets.push(...page);
    if (page.length < 1000) return { assets, complete: true };
  }
  return { assets, complete: false };
}

function assetLine(a) {
  return h("span", { class: "asset-line" },
    h("a", { href: `#/asset?iri=${encodeURIComponent(a.uri)}`, text: a.tag ?? lastPart(a.uri) }), " ",
    a.label ? h("span", { class: "muted", text: a.label }) : null, " ",
    pill(a.status ?? "no status"), " ",
    a.criticality ? h("span", { class: "pill", text: `criticality ${a.criticality}` }) : null, " ",
    a.open_findings ? h("span", { class: "pill bad", text: `${a.open_findings} open finding(s)` }) : null, " ",
    a.inferred.length ? h("span", { class: "pill warn", text: a.inferred.map(lastPart).join(", ") }) : null);
}

async function plantPage(params) {
  const { assets, complete } = await allAssets();
  const known = new Set(assets.map((a) => a.uri));
  const children = new Map();
  for (const a of assets) {
    const parent = a.part_of && known.has(a.part_of) ? a.part_of : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(a);
  }
  const branch = (parent, depth) => h("ul", { class: depth ? "tree" : "tree root" },
    (children.get(parent) ?? []).map((a) => {
      const below = children.get(a.uri);
      if (!below) return h("li", {}, assetLine(a));
      const parts = branch(a.uri, depth + 1);
      const name = a.tag ?? lastPart(a.uri);
      const toggle = h("button", { type: "button", class: "toggle", "aria-expanded": String(depth < 2), "aria-label": `Parts of ${name} (${below.length})`, text: depth < 2 ? "−" : "+" });
      parts.hidden = depth >= 2;
      toggle.addEventListener("click", () => {
        parts.hidden = !parts.hidden;
        toggle.setAttribute("aria-expanded", String(!parts.hidden));
        toggle.textContent = parts.hidden ? "+" : "−";
      });
      return h("li", {}, toggle, " ", assetLine(a), parts);
    }));
  const alarmed = assets.filter((a) => a.open_findings > 0);
  const plantGraph = plantGraphSection(assets, children, params);
  await plantGraph.ready;
  return [heading("Plant"),
    h("h2", { text: "Open findings" }),
    alarmed.length
      ? table(["Asset", "Status", "Criticality", "Open findings", "Inferred"], alarmed.map((a) => [
        h("a", { href: `#/asset?iri=${encodeURIComponent(a.uri)}`, text: a.tag ?? lastPart(a.uri) }),
        pill(a.status), a.criticality, String(a.open_findings), a.inferred.map(lastPart).join(", ")]))
      : h("p", { class: "muted", text: "No open alarm or anomaly." }),
    plantGraph.parts,
    h("h2", { text: `Asset hierarchy (${assets.length} assets${complete ? "" : `, the first ${PLANT_MAX}`})` }),
    branch("", 0)];
}

// -- the plant graph (GET /assets/graph, decision 0076)

const PLANT_GRAPH_LIMIT = 500; // assets the graph shows; a larger plant or area says to choose one
const PLANT_GRAPH_DEPTH = 40; // flow columns at most: no chain, and no loop, runs on past it

function flowColumns(iris, feeds) {
  // Each asset with flows in the column of its longest path from a source along `feeds`. A
  // depth-first search sets aside the edges that close a loop first (they are drawn, not laid
  // out), so a loop ends where it was entered; the depth is capped as well.
  const out = new Map(), into = new Set();
  for (const e of feeds) {
    if (!out.has(e.source)) out.set(e.source, []);
    out.get(e.source).push(e.target);
    into.add(e.target);
  }
  const flowing = iris.filter((iri) => out.has(iri) || into.has(iri));
  const starts = [...flowing.filter((iri) => !into.has(iri)), ...flowing.filter((iri) => into.has(iri))];
  const state = new Map(); // 1: on the search's path, 2: done
  const finished = [];
  const back = new Set(); // "source target" of each edge that closes a loop
  for (const start of starts) {
    if (state.has(start)) continue;
    state.set(start, 1);
    const stack = [[start, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1];
      const next = (out.get(top[0]) ?? [])[top[1]++];
      if (next === undefined) { state.set(top[0], 2); finished.push(top[0]); stack.pop(); }
      else if (state.get(next) === 1) back.add(`${top[0]} ${next}`);
      else if (!state.has(next)) { state.set(next, 1); stack.push([next, 0]); }
    }
  }
  const column = new Map(flowing.map((iri) => [iri, 0]));
  for (const iri of finished.reverse()) { // a topological order once the loops are cut
    for (const next of out.get(iri) ?? []) {
      if (back.has(`${iri} ${next}`)) continue;
      column.set(next, Math.min(PLANT_GRAPH_DEPTH, Math.max(column.get(next), column.get(iri) + 1)));
    }
  }
  return { column, back };
}

const PG = { w: 200, h: 54, col: 270, sensor: 18, gap: 24, pad: 28, top: 40, tall: 1600 };

function plantLayout(graph) {
  // Columns left → right by the flow; a driver without flows of its own right above what it
  // drives; assets without flows in the last columns; each asset's sensors listed under it.
  const assets = graph.nodes.filter((n) => n.kind === "asset").map((n) => n.iri);
  const feeds = graph.edges.filter((e) => e.kind === "feeds");
  const { column, back } = flowColumns(assets, feeds);
  const drivers = new Map(); // driven → the drivers placed with it
  const driving = new Set();
  for (const e of graph.edges) {
    if (e.kind !== "drives" || column.has(e.source) || driving.has(e.source)) continue;
    driving.add(e.source);
    if (!drivers.has(e.target)) drivers.set(e.target, []);
    drivers.get(e.target).push(e.source);
  }
  const sensorsOf = new Map(); // asset → the sensors listed under it (each under its first asset)
  const listedUnder = new Map();
  for (const e of graph.edges) {
    if (e.kind !== "monitors" || listedUnder.has(e.source)) continue;
    listedUnder.set(e.source, e.target);
    if (!sensorsOf.has(e.target)) sensorsOf.set(e.target, []);
    sensorsOf.get(e.target).push(e.source);
  }
  const preds = new Map();
  for (const e of feeds) {
    if (back.has(`${e.source} ${e.target}`)) continue;
    if (!preds.has(e.target)) preds.set(e.target, []);
    preds.get(e.target).push(e.source);
  }
  const placed = new Set();
  const place = (iri, list) => {
    if (placed.has(iri)) return;
    placed.add(iri);
    for (const driver of drivers.get(iri) ?? []) place(driver, list);
    list.push(iri);
  };
  const columns = [];
  for (const iri of assets) if (column.has(iri)) (columns[column.get(iri)] ??= []).push(iri);
  const row = new Map();
  const ordered = [];
  for (const list of columns) {
    // Each column in the order of what feeds it (the mean row of its sources), else by IRI.
    const key = (iri) => {
      const from = (preds.get(iri) ?? []).filter((x) => row.has(x));
      return from.length ? from.reduce((sum, x) => sum + row.get(x), 0) / from.length : Infinity;
    };
    const sorted = (list ?? []).map((iri, i) => [key(iri), i, iri])
      .sort((a, b) => (a[0] - b[0]) || (a[1] - b[1])).map((k) => k[2]);
    const out = [];
    for (const iri of sorted) place(iri, out);
    out.forEach((iri, i) => row.set(iri, i));
    ordered.push(out);
  }
  const rest = [];
  for (const iri of assets) if (!driving.has(iri)) place(iri, rest);
  for (const iri of assets) place(iri, rest); // drivers of drivers in a ring
  const height = (iri) => PG.h + (sensorsOf.get(iri)?.length ?? 0) * PG.sensor + PG.gap;
  let tallest = 0;
  let chunk = [];
  for (const iri of rest) { // the last column, wrapped when it grows too tall
    const used = chunk.reduce((sum, x) => sum + height(x), 0);
    if (chunk.length && used + height(iri) > PG.tall) { ordered.push(chunk); chunk = []; }
    chunk.push(iri);
  }
  if (chunk.length) ordered.push(chunk);
  const at = new Map();
  ordered.forEach((list, c) => {
    let y = PG.top;
    for (const iri of list) {
      at.set(iri, { x: PG.pad + c * PG.col, y, column: c });
      y += height(iri);
    }
    tallest = Math.max(tallest, y);
  });
  const width = PG.pad * 2 + Math.max(ordered.length, 1) * PG.col - (PG.col - PG.w);
  return { at, back, sensorsOf, listedUnder, width, height: Math.max(tallest, PG.top + PG.h) + PG.pad };
}

function toneOf(node) {
  const status = String(node.status ?? "");
  if (node.open_findings > 0 || /fault|fail|trip|down|alarm|error|broken/i.test(status)) return "bad";
  if (!status) return "none";
  return /running|normal|ok|operating/i.test(status) ? "ok" : "warn";
}

function sensorTone(node) {
  if (node.open_findings > 0 || (node.trust !== null && node.trust < 0.5)) return "bad";
  if (node.trust === null) return "none";
  return node.trust < 0.8 ? "warn" : "ok";
}

function trustText(trust) {
  return trust === null || trust === undefined ? "no trust score" : `trust ${trust.toFixed(2)}`;
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function lines(x, y, texts) {
  // One text element, a line per tspan, a space between: what is seen is what is read out.
  const text = s("text", { x, y });
  texts.forEach((line, i) => {
    if (i) text.append(" ");
    text.append(s("tspan", { x, y: y + i * 15, class: i ? "" : "pg-name" }, line));
  });
  return text;
}

function findingsText(count) {
  return count ? `${count} open finding${count === 1 ? "" : "s"}` : "no open finding";
}

function plantGraphSvg(graph, name) {
  const nodes = new Map(graph.nodes.map((n) => [n.iri, n]));
  const { at, back, sensorsOf, listedUnder, width, height } = plantLayout(graph);
  const flows = graph.edges.filter((e) => e.kind === "feeds").length;
  const svg = s("svg", {
    class: "graph plant-graph", id: "plant-graph", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "group", "aria-label": `Plant graph of ${name}: ${graph.assets} assets, ${graph.sensors} sensors, ${flows} flows`,
  });
  svg.append(s("defs", {}, s("marker", {
    id: "pg-arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto",
  }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "pg-arrowhead" }))));
  const sensorY = (sensor) => {
    const over = at.get(listedUnder.get(sensor));
    return over.y + PG.h + 10 + sensorsOf.get(listedUnder.get(sensor)).indexOf(sensor) * PG.sensor;
  };
  let loops = 0;
  for (const e of graph.edges) {
    const a = at.get(e.source), b = at.get(e.target);
    if (e.kind === "feeds" && a && b) {
      const x1 = a.x + PG.w, y1 = a.y + PG.h / 2, x2 = b.x, y2 = b.y + PG.h / 2;
      const d = back.has(`${e.source} ${e.target}`) || b.column <= a.column
        ? `M ${x1} ${y1} H ${x1 + 16 + (loops % 4) * 4} V ${8 + (loops % 4) * 6} H ${x2 - 26 - (loops++ % 4) * 4} V ${y2} H ${x2}` // a loop: round the top
        : `M ${x1} ${y1} C ${x1 + 40} ${y1}, ${x2 - 40} ${y2}, ${x2} ${y2}`;
      svg.append(s("path", { d, class: "pg-feeds", "marker-end": "url(#pg-arrow)" }));
    } else if (e.kind === "drives" && a && b) {
      const d = a.column === b.column
        ? `M ${a.x} ${a.y + 14} H ${a.x - 10} V ${b.y + 14} H ${b.x}`
        : `M ${a.x + PG.w} ${a.y + 14} L ${b.x} ${b.y + 14}`;
      svg.append(s("path", { d, class: "pg-drives", "marker-end": "url(#pg-arrow)" }));
    } else if (e.kind === "monitors" && b && listedUnder.get(e.source) !== e.target) {
      const over = at.get(listedUnder.get(e.source));
      svg.append(s("path", { d: `M ${over.x + 12} ${sensorY(e.source)} L ${b.x} ${b.y + PG.h - 8}`, class: "pg-monitors" }));
    }
  }
  for (const [iri, p] of at) {
    const n = nodes.get(iri);
    const listed = sensorsOf.get(iri) ?? [];
    if (listed.length) {
      svg.append(s("path", { d: `M ${p.x + 12} ${p.y + PG.h} V ${sensorY(listed[listed.length - 1])}`, class: "pg-monitors" }));
    }
    const label = n.tag ?? lastPart(n.iri);
    const classes = n.inferred.length ? `inferred ${n.inferred.map(lastPart).join(", ")}` : n.classes.map(lastPart).join(", ");
    svg.append(s("a", { href: `#/asset?iri=${encodeURIComponent(iri)}`, class: `pg-node pg-${toneOf(n)}`, "data-iri": iri },
      s("rect", { x: p.x, y: p.y, width: PG.w, height: PG.h, rx: 6 }),
      s("rect", { x: p.x, y: p.y, width: 6, height: PG.h, class: "pg-stripe" }),
      lines(p.x + 12, p.y + 16, [
        clip(n.label ? `${label} ${n.label}` : label, 26),
        clip(`${n.status ?? "no status"} · ${findingsText(n.open_findings)}`, 28),
        clip(classes || "no class", 28)]),
      s("desc", {}, [`${label}: ${n.label ?? ""}`, `classes ${n.classes.map(lastPart).join(", ") || "none"}`,
        `inferred ${n.inferred.map(lastPart).join(", ") || "none"}`, `criticality ${n.criticality ?? "none"}`,
        `status ${n.status ?? "none"}`, findingsText(n.open_findings)].join("; "))));
    listed.forEach((sensor) => {
      const x = nodes.get(sensor), cy = sensorY(sensor);
      svg.append(s("a", { href: `#/asset?iri=${encodeURIComponent(sensor)}`, class: `pg-sensor pg-${sensorTone(x)}`, "data-iri": sensor },
        s("circle", { cx: p.x + 12, cy, r: 6 }),
        s("text", { x: p.x + 24, y: cy + 4 }, clip(`${x.tag ?? lastPart(sensor)} · ${trustText(x.trust)}`, 34)),
        s("desc", {}, `${x.label ?? ""}; ${findingsText(x.open_findings)}`)));
    });
  }
  return svg;
}

function plantGraphLegend() {
  const key = (cls, text) => h("li", {}, h("span", { class: `pg-key ${cls}`, "aria-hidden": "true" }), ` ${text}`);
  return h("ul", { class: "pg-legend", "aria-label": "Legend of the plant graph" },
    key("pg-bad", "open findings, or a fault"), key("pg-warn", "stopped, standby or another status"),
    key("pg-ok", "running"), key("pg-none", "no status"),
    key("pg-key-feeds", "feeds: the flow, left to right (a loop is drawn round the top)"),
    key("pg-key-drives", "drives: the driver stands above what it drives"),
    key("pg-key-sensor", "a sensor under what it monitors, with its latest trust (green ≥ 0.8, amber ≥ 0.5, red below or with findings)"),
    h("li", { class: "muted", text: "Equipment without flows stands in the last columns. Each box opens the asset's page." }));
}

function plantGraphSection(assets, children, params) {
  const areas = assets.filter((a) => children.has(a.uri));
  const select = h("select", { id: "pg-area" },
    h("option", { value: "", text: "Whole plant" }),
    areas.map((a) => h("option", { value: a.uri, text: `${a.tag ?? lastPart(a.uri)}${a.label ? ` — ${a.label}` : ""}` })));
  const wanted = params.get("area") ?? "";
  if (areas.some((a) => a.uri === wanted)) select.value = wanted;
  const sensors = h("input", { id: "pg-sensors", type: "checkbox", checked: params.get("sensors") !== "0" });
  const status = h("p", { id: "pg-status", class: "status", role: "status" });
  const holder = h("div", { id: "pg-holder", class: "scroll" });
  const draw = async () => {
    const area = select.value;
    const query = new URLSearchParams({ limit: String(PLANT_GRAPH_LIMIT), sensors: String(sensors.checked) });
    if (area) query.set("area", area);
    status.textContent = "loading…";
    try {
      const graph = await getJson(`/assets/graph?${query}`);
      const name = area ? select.selectedOptions[0].textContent : "the whole plant";
      status.textContent = graph.truncated
        ? `Showing ${graph.assets} of more assets: choose an area.`
        : `${graph.assets} assets and ${graph.sensors} sensors of ${name}.`;
      holder.replaceChildren(graph.assets ? plantGraphSvg(graph, name) : h("p", { class: "muted", text: "Nothing to show." }));
      const kept = new URLSearchParams({ graph: "1", sensors: sensors.checked ? "1" : "0" });
      if (area) kept.set("area", area);
      if (location.hash.startsWith("#/plant")) history.replaceState(null, "", `#/plant?${kept}`); // back here keeps the graph
    } catch (error) {
      status.textContent = "";
      failed(error);
    }
  };
  const form = h("form", { class: "row", id: "pg-form", "aria-label": "Plant graph" },
    h("div", {}, h("label", { for: "pg-area", text: "Area" }), select),
    h("div", {}, h("label", { for: "pg-sensors" }, sensors, " Sensors")),
    h("button", { type: "submit", id: "pg-show", text: "Show" }));
  form.addEventListener("submit", (event) => { event.preventDefault(); draw(); });
  const parts = [h("h2", { text: "Plant graph" }), form, status, plantGraphLegend(), holder];
  return { parts, ready: params.get("graph") ? draw() : null };
}

function assetGraph(context) {
  // The asset in the middle, its neighbours (flows, drivers) and sensors around it.
  const around = [
    ...context.neighbours.map((n) => ({ label: n.tag ?? lastPart(n.uri), kind: n.relation, status: n.status, href: `#/asset?iri=${encodeURIComponent(n.uri)}`, findings: n.findings })),
    ...context.sensors.map((x) => ({ label: x.tag ?? lastPart(x.sensor), kind: `sensor · trust ${x.confidence === null ? "none" : fmt(x.confidence)}` })),
  ];
  const width = 900, height = 360, cx = width / 2, cy = height / 2;
  const svg = s("svg", { class: "graph", viewBox: `0 0 ${width} ${height}`, role: "group", "aria-label": `${context.tag ?? lastPart(context.asset)} and its ${around.length} neighbours and sensors` });
  around.forEach((item, i) => {
    const angle = (2 * Math.PI * i) / Math.max(around.length, 1) - Math.PI / 2;
    const x = cx + Math.cos(angle) * 330, y = cy + Math.sin(angle) * 140;
    svg.append(s("line", { x1: cx, y1: cy, x2: x, y2: y }));
    const fill = /upstream|downstream|driver/.test(item.kind) ? (item.findings ? "#f9d9d9" : "#dbe8f5") : "#e6f1e4";
    const node = s("g", { class: "node" },
      s("rect", { x: x - 70, y: y - 18, width: 140, height: 36, rx: 6, fill }),
      twoLines(x, y - 3, item.label.slice(0, 22), item.kind.slice(0, 24), "middle"));
    svg.append(item.href ? s("a", { href: item.href }, node) : node);
  });
  svg.append(s("g", { class: "node" },
    s("rect", { x: cx - 80, y: cy - 22, width: 160, height: 44, rx: 8, fill: "#0d2538" }),
    s("text", { x: cx, y: cy + 5, "text-anchor": "middle", class: "inverse" }, (context.tag ?? lastPart(context.asset)).slice(0, 22))));
  return svg;
}

async function assetPage(params) {
  const iri = params.get("iri");
  if (!iri) throw new ApiError(400, "invalid_input", "no asset given");
  const c = await getJson(`/assets/context?iri=${encodeURIComponent(iri)}&events=50`);
  const open = c.events.filter((e) => !e.ended_at || /open|active/i.test(e.status ?? ""));
  return [
    heading(`Asset ${c.tag ?? lastPart(c.asset)}`),
    kv([["IRI", h("code", { text: c.asset })], ["Types", c.types.map(lastPart).join(", ")],
      ["Criticality", c.criticality], ["Status", pill(c.status)], ["Open findings", String(open.length)],
      ["Trust threshold", c.policies.threshold === null ? null : String(c.policies.threshold)]]),
    h("h2", { text: "Graph" }), assetGraph(c),
    h("h2", { text: "Sensors and their trust" }),
    table(["Sensor", "Quantity", "Trust (confidence)", "Quality", "Freshness", "Anomaly", "Score"], c.sensors.map((x) => [
      x.tag ?? lastPart(x.sensor), lastPart(x.quantity_kind), fmt(x.confidence),
      fmt(x.quality), fmt(x.freshness), fmt(x.anomaly), x.trust ? lastPart(x.trust) : "none yet"])),
    h("h2", { text: "Events, newest first" }),
    table(["Event", "Type", "From", "To", "Severity", "Status", "Score"], c.events.map((e) => [
      lastPart(e.uri), e.types.map(lastPart).join(", "), e.occurred_at, e.ended_at, e.severity, pill(e.status), fmt(e.score)])),
    h("h2", { text: "Failure modes" }),
    table(["Mode", "Code", "Shows in", "Mitigations"], c.failure_modes.map((f) => [
      lastPart(f.mode), f.code, f.kinds.map(lastPart).join(", "), f.mitigations.map(lastPart).join(", ")])),
    h("h2", { text: "Operating envelopes" }),
    table(["Quantity", "Minimum", "Maximum", "Max rate"], c.policies.envelopes.map((e) => [
      lastPart(e.quantity_kind), fmt(e.minimum), fmt(e.maximum), fmt(e.max_rate)])),
  ];
}

function fmt(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "number" ? (Math.round(value * 1000) / 1000).toString() : String(value);
}

// -- live events

const KINDS = ["finding", "decision", "approval", "action"];

function eventItem(kind, data) {
  const what = kind === "finding"
    ? `${data.type ?? "finding"} ${lastPart(data.finding)} · ${data.severity ?? ""} ${data.status ?? ""}`
    : `${lastPart(data.decision)} · ${data.outcome}${data.action_kind ? ` · ${data.action_kind}` : ""}`;
  const link = kind === "finding" ? null : decisionLink(data.decision, "open");
  return h("li", { class: kind },
    h("strong", { text: kind }), " ", what, " · asset ", lastPart(data.asset) || "—",
    data.area ? ` · area ${lastPart(data.area)}` : "", " ", link);
}

function decisionRef(iri) {
  // .../decision/{run}/{step} → "run/step"
  const parts = String(iri ?? "").replace(/\/$/, "").split("/");
  return parts.length >= 2 ? `${parts[parts.length - 2]}/${parts[parts.length - 1]}` : "";
}
function decisionLink(iri, text) {
  const ref = decisionRef(iri);
  return ref ? h("a", { href: `#/decision/${ref}`, text: text ?? ref }) : null;
}

async function streamEvents(query, onEvent, onState, signal) {
  let last = null;
  while (!signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${sessionStorage.getItem(TOKEN) ?? ""}` };
      if (last) headers["Last-Event-ID"] = last;
      const response = await fetch(`/events?${query}`, { headers, signal, cache: "no-store" });
      if (!response.ok) {
        let text = response.statusText, code = `http_${response.status}`;
        try { const doc = await response.json(); text = doc.error.message; code = doc.error.code; } catch { /* keep */ }
        onState(`refused: ${text} (${code})`, true);
        if (response.status === 401) signOut(`Signed out: ${text} (${code})`);
        return;
      }
      onState("connected", false);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message", data = "", id = null;
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
            else if (line.startsWith("id:")) id = line.slice(3).trim();
          }
          if (id) last = id;
          if (!data) continue;
          const parsed = JSON.parse(data);
          if (kind === "error") onState(`interrupted: ${parsed.message} (${parsed.code}); resuming…`, false);
          else onEvent(kind, parsed);
        }
      }
      onState("reconnecting…", false);
    } catch (error) {
      if (signal.aborted) return;
      onState(`reconnecting after: ${error.message}`, false);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

async function eventsPage(params) {
  const area = h("input", { id: "ev-area", value: params.get("area") ?? "", size: 30 });
  const asset = h("input", { id: "ev-asset", value: params.get("asset") ?? "", size: 30 });
  const chosen = new Set((params.get("kinds") ?? KINDS.join(",")).split(",").filter((k) => KINDS.includes(k)));
  const boxes = KINDS.map((k) => h("label", { class: "inline" },
    h("input", { type: "checkbox", name: "kind", value: k, checked: chosen.has(k) }), ` ${k}`));
  const state = h("p", { id: "ev-state", class: "status", role: "status", text: "connecting…" });
  const list = h("ul", { id: "event-list", class: "events", "aria-live": "polite" });
  const form = h("form", { class: "row", "aria-label": "Filter events" },
    h("div", {}, h("label", { for: "ev-area", text: "Area (tag or IRI)" }), area),
    h("div", {}, h("label", { for: "ev-asset", text: "Asset (tag or IRI)" }), asset),
    h("fieldset", {}, h("legend", { text: "Kinds" }), boxes),
    h("button", { type: "submit", text: "Apply" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const kinds = [...form.querySelectorAll("input[name=kind]:checked")].map((x) => x.value);
    if (kinds.length === 0) { show("Choose at least one kind of event."); return; }
    const next = new URLSearchParams();
    if (area.value.trim()) next.set("area", area.value.trim());
    if (asset.value.trim()) next.set("asset", asset.value.trim());
    next.set("kinds", kinds.join(","));
    location.hash = `#/events?${next}`;
  });
  const query = new URLSearchParams();
  if (params.get("area")) query.set("area", params.get("area"));
  if (params.get("asset")) query.set("asset", params.get("asset"));
  for (const k of chosen) query.append("kind", k);
  const controller = new AbortController();
  stopStream = () => controller.abort();
  streamEvents(query.toString(), (kind, data) => {
    list.prepend(eventItem(kind, data));
    while (list.children.length > 200) list.lastChild.remove();
  }, (text, bad) => {
    state.textContent = `Stream: ${text}`;
    if (bad) show(text);
  }, controller.signal);
  return [heading("Live events"), form, state, list];
}

// -- approvals

function number(id, label, value) {
  return h("div", {}, h("label", { for: id, text: label }),
    h("input", { id, type: "text", inputmode: "decimal", value: value ?? "", size: 12 }));
}

function readNumber(id, label) {
  const text = document.getElementById(id).value.trim();
  if (text === "") return null;
  const value = Number(text);
  if (!Number.isFinite(value)) throw new ApiError(0, "invalid_input", `${label} must be a number, not “${text}”`);
  return value;
}

async function answer(request, path, body, out) {
  clearMessage();
  try {
    const run = await postJson(path, body);
    out.replaceChildren(h("p", { class: "status", text: `Run ${run.run_id}: ${run.status}` }),
      h("ul", {}, run.steps.map((step) => h("li", {}, pill(step.outcome), " ", step.reason, " ", decisionLink(step.decision, "lineage")))));
    show(`Answered ${decisionRef(request.decision)}: ${run.status}`, "info");
  } catch (error) {
    failed(error);
  }
}

function factsText(facts) {
  return Object.entries(facts).map(([key, value]) => `${key}: ${typeof value === "number" ? fmt(value) : value}`).join("; ");
}

function evidenceTable(items) {
  if (items.length === 0) return h("p", { class: "muted", text: "The decision used no finding, window, trust score or policy." });
  return table(["Kind", "What", "About", "Recorded"], items.map((item) => [
    item.kind,
    h("span", { title: item.iri, text: item.label ?? lastPart(item.iri) }),
    item.about.map(lastPart).join(", "),
    factsText(item.facts),
  ]), `${items.length} item(s) the decision used, as its provenance records them`);
}

function approvalCard(request) {
  const action = request.action;
  const ref = decisionRef(request.decision);
  const critical = request.target_criticality;
  const level = ["A", "B", "C"].includes(critical) ? critical : "A";
  const expired = request.expires_at !== null && Date.parse(request.expires_at) <= Date.now();
  const mayAnswer = can("approve") && me.approvable_criticality.includes(level);
  const out = h("div", { class: "outcome", "aria-live": "polite" });
  const id = ref.replace(/[^A-Za-z0-9]/g, "-");
  const card = h("article", { class: "card approval", "data-decision": request.decision, "aria-labelledby": `t-${id}` },
    h("header", {}, h("h2", { id: `t-${id}`, text: `${action.kind} on ${lastPart(action.target)}` }),
      pill(expired ? "request expired" : "awaiting approval")),
    kv([
      ["Decision", decisionLink(request.decision)],
      ["Target", h("a", { href: `#/asset?iri=${encodeURIComponent(action.target)}`, text: action.target })],
      ["Criticality", critical ?? "unknown (treated as A)"],
      ["Confidence", fmt(action.confidence)],
      ["Quantity", lastPart(action.quantity_kind)],
      ["Setpoint", action.proposed_setpoint === null ? null : `${fmt(action.current_setpoint)} → ${fmt(action.proposed_setpoint)}`],
      ["Ramp (s)", fmt(action.ramp_s)],
      ["Failure mode", lastPart(action.failure_mode)],
      ["Rationale", action.rationale],
      ["Proposed at", action.proposed_at],
      ["Graph version", h("code", { text: request.graph_version })],
      ["Action hash", h("code", { text: request.action_hash })],
      ["May approve", request.roles.map(lastPart).join(", ")],
      ["Requested at", request.requested_at],
      ["Approvable until", request.expires_at === null ? null
        : expired ? `${request.expires_at} (expired: it may only be rejected)` : request.expires_at],
    ]),
    h("h3", { text: "Safety verdict: why it waits for a person" }),
    h("ul", {}, request.reasons.map((r) => h("li", { text: r }))),
    h("h3", { text: "Evidence" }),
    evidenceTable(request.evidence),
  );
  if (!mayAnswer) {
    card.append(h("p", { class: "muted", text: can("approve")
      ? `Your roles may not approve actions on assets of criticality ${level}.`
      : "Your roles may not approve or reject actions." }));
    return card;
  }
  const comment = h("input", { id: `c-${id}`, size: 50 });
  const ttl = h("select", { id: `x-${id}` },
    h("option", { value: "300", text: "5 minutes" }), h("option", { value: "900", text: "15 minutes", selected: true }),
    h("option", { value: "3600", text: "1 hour" }));
  const edits = h("div", { class: "row", hidden: true },
    number(`sp-${id}`, "Edited setpoint", action.proposed_setpoint),
    number(`rs-${id}`, "Edited ramp (s)", action.ramp_s),
    h("button", { type: "button", class: "confirm-edit", text: "Approve as edited", onclick: () => {
      let changed;
      try {
        changed = {};
        const setpoint = readNumber(`sp-${id}`, "The setpoint");
        const ramp = readNumber(`rs-${id}`, "The ramp");
        if (setpoint !== null && setpoint !== action.proposed_setpoint) changed.proposed_setpoint = setpoint;
        if (ramp !== null && ramp !== action.ramp_s) changed.ramp_s = ramp;
      } catch (error) { failed(error); return; }
      if (Object.keys(changed).length === 0) { show("Change the setpoint or the ramp before approving as edited."); return; }
      answer(request, `/decisions/${ref}/edit`, { edits: changed, comment: comment.value, expires_in_s: Number(ttl.value) }, out);
    } }));
  card.append(
    h("div", { class: "row" },
      h("div", {}, h("label", { for: `c-${id}`, text: "Comment (recorded)" }), comment),
      expired ? null : h("div", {}, h("label", { for: `x-${id}`, text: "Approval valid for" }), ttl)),
    h("p", { class: "row" },
      expired ? null : h("button", { type: "button", class: "approve", text: "Approve", onclick: () =>
        answer(request, `/decisions/${ref}/approve`, { comment: comment.value, expires_in_s: Number(ttl.value) }, out) }),
      expired ? null : h("button", { type: "button", class: "secondary edit", text: "Edit and approve…", onclick: () => { edits.hidden = !edits.hidden; } }),
      h("button", { type: "button", class: "danger reject", text: "Reject", onclick: () =>
        answer(request, `/decisions/${ref}/reject`, { comment: comment.value }, out) })),
    edits, out);
  return card;
}

async function approvalsPage() {
  const requests = await getJson("/approvals");
  const cards = requests.map(approvalCard);
  return [heading("Approvals"),
    h("p", { class: "muted", text: `${requests.length} request(s) waiting, oldest first. An approval is bound to the action's arguments and to the graph version it was judged on; the guard judges again when you approve.` }),
    h("p", {}, h("button", { type: "button", class: "secondary", text: "Refresh", onclick: () => route() })),
    cards];
}

// -- decisions and lineage

async function decisionsPage() {
  const rows = await getJson("/decisions?limit=100");
  return [heading("Decisions"), table(["#", "Decision", "Outcome", "Action", "Target", "Reason"], rows.map((d) => [
    String(d.chain_index), decisionLink(d.uri), pill(d.outcome), d.kind, lastPart(d.target), d.reason]), "newest first")];
}

function jsonldNodes(doc) {
  const list = Array.isArray(doc) ? doc : (doc["@graph"] ?? [doc]);
  const nodes = new Map();
  for (const node of list) if (node && node["@id"]) nodes.set(node["@id"], node);
  return nodes;
}

function nodeLabel(node) {
  for (const [key, values] of Object.entries(node)) {
    if (/label$|#label$/.test(key) && Array.isArray(values) && values[0] && values[0]["@value"] !== undefined) return String(values[0]["@value"]);
  }
  return lastPart(node["@id"]);
}

function lineageGraph(doc, start, depth, onSelect) {
  const nodes = jsonldNodes(doc);
  const edges = [];
  for (const [id, node] of nodes) {
    for (const [key, values] of Object.entries(node)) {
      if (key.startsWith("@") || !Array.isArray(values)) continue;
      for (const v of values) if (v && v["@id"] && nodes.has(v["@id"])) edges.push([id, v["@id"], lastPart(key)]);
    }
  }
  const level = new Map([[start, 0]]);
  let frontier = [start];
  while (frontier.length) {
    const next = [];
    for (const id of frontier) for (const [a, b] of edges) {
      const other = a === id ? b : b === id ? a : null;
      if (other && !level.has(other)) { level.set(other, level.get(id) + 1); next.push(other); }
    }
    frontier = next;
  }
  const shown = [...level.entries()].filter(([, d]) => d <= depth);
  const columns = [];
  for (const [id, d] of shown) (columns[d] ??= []).push(id);
  const deepest = Math.max(...level.values());
  const colWidth = 220, rowHeight = 48;
  const height = Math.max(...columns.map((c) => c.length)) * rowHeight + 40;
  const width = columns.length * colWidth + 40;
  const where = new Map();
  columns.forEach((ids, d) => ids.sort((x, y) => typeOf(nodes.get(x)).localeCompare(typeOf(nodes.get(y))) || x.localeCompare(y))
    .forEach((id, i) => where.set(id, [20 + d * colWidth, 20 + i * rowHeight])));
  const svg = s("svg", { class: "graph", id: "lineage-graph", viewBox: `0 0 ${width} ${height}`, width, height, role: "group", "aria-label": `Lineage: ${shown.length} of ${level.size} nodes, depth ${depth} of ${deepest}` });
  for (const [a, b] of edges) {
    if (!where.has(a) || !where.has(b)) continue;
    const [x1, y1] = where.get(a), [x2, y2] = where.get(b);
    svg.append(s("line", { x1: x1 + 90, y1: y1 + 17, x2: x2 + 90, y2: y2 + 17 }));
  }
  for (const [id, [x, y]] of where) {
    const node = nodes.get(id);
    const type = typeOf(node);
    const shown = [type.slice(0, 26), nodeLabel(node).slice(0, 26)];
    const g = s("g", { class: "node", tabindex: 0, role: "button", "aria-label": shown.join(" "), "data-iri": id },
      s("title", {}, `${type} ${nodeLabel(node)}: ${id}`),
      s("rect", { x, y, width: 180, height: 34, rx: 6, fill: colour(type) }),
      twoLines(x + 8, y + 14, ...shown));
    const pick = () => { svg.querySelectorAll(".selected").forEach((e) => e.classList.remove("selected")); g.classList.add("selected"); onSelect(node); };
    g.addEventListener("click", pick);
    g.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); pick(); } });
    svg.append(g);
  }
  return { svg, deepest, count: level.size };
}

function typeOf(node) {
  const types = node?.["@type"];
  return types ? lastPart(Array.isArray(types) ? types[0] : types) : "Resource";
}

function colour(type) {
  if (/Decision/.test(type)) return "#dbe8f5";
  if (/Action/.test(type)) return "#fde2c8";
  if (/Alarm|Anomaly|Finding/.test(type)) return "#f9d9d9";
  if (/Person|Agent|Role/.test(type)) return "#ece2f7";
  if (/Shape|Policy|Envelope/.test(type)) return "#e6f1e4";
  return "#f1f1f1";
}

function download(text, type, name) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, text: `Download ${name}` });
  return a;
}

async function decisionPage(run, step) {
  const ref = `${run}/${step}`;
  const head = await getJson(`/decisions/${ref}`);
  const parts = [heading(`Decision ${ref}`), kv([
    ["IRI", h("code", { text: head.uri })], ["Outcome", pill(head.outcome)], ["Reason", head.reason],
    ["Planner", head.planner], ["As of", head.as_of], ["Started", head.started], ["Ended", head.ended],
    ["Chain index", head.chain_index === null ? null : String(head.chain_index)],
    ["Followed by", head.followed_by.length ? h("span", {}, head.followed_by.map((f) => [decisionLink(f), " "])) : null],
  ])];
  if (!can("audit")) {
    parts.push(h("p", { class: "muted", text: "The lineage, replay and chain verification need the audit permission (the compliance role)." }));
    return parts;
  }
  const doc = await getJson(`/decisions/${ref}/lineage`);
  let depth = 2;
  const details = h("div", { id: "lineage-details", "aria-live": "polite" }, h("p", { class: "muted", text: "Select a node to see its properties." }));
  const holder = h("div", { class: "graph-holder" });
  const more = h("button", { type: "button", class: "secondary", id: "lineage-more", text: "Show more" });
  const draw = () => {
    const { svg, deepest, count } = lineageGraph(doc.graph, doc.decision, depth, (node) => {
      details.replaceChildren(h("h3", { text: `${typeOf(node)} ${nodeLabel(node)}` }), h("code", { text: node["@id"] }),
        kv(Object.entries(node).filter(([k]) => !k.startsWith("@")).map(([k, vs]) => [lastPart(k),
          vs.map((v) => v["@id"] ? lastPart(v["@id"]) : String(v["@value"] ?? "")).join(", ")])));
    });
    holder.replaceChildren(svg);
    more.disabled = depth >= deepest;
    more.textContent = depth >= deepest ? `All ${count} nodes shown` : `Show more (depth ${depth + 1} of ${deepest})`;
  };
  more.addEventListener("click", () => { depth += 1; draw(); });
  draw();
  const replayOut = h("div", { "aria-live": "polite" });
  const chainOut = h("p", { id: "chain-status", class: "status", role: "status" });
  const exports = h("p", { class: "row" });
  parts.push(
    h("p", {}, pill(doc.prov_valid ? "valid PROV-O" : "PROV-O violations"), ` ${doc.triples} triples`),
    doc.prov_violations.length ? h("ul", {}, doc.prov_violations.map((v) => h("li", { text: v }))) : null,
    h("h2", { text: "Lineage" }),
    h("p", { class: "muted", text: "Action ← decision ← queries, telemetry windows, findings, trust, shapes, policies, people and earlier decisions." }),
    h("div", { class: "split" }, h("div", {}, holder, h("p", {}, more)), details),
    h("h2", { text: "Verify, replay, export" }),
    h("p", { class: "row" },
      h("button", { type: "button", id: "verify-chain", text: "Verify the hash chain", onclick: async () => {
        chainOut.textContent = "verifying…";
        try {
          const report = await getJson("/provenance/verify");
          chainOut.textContent = report.ok ? `Chain intact: ${report.records} records, head ${report.head_hash}` : `Chain broken: ${report.problems.length} problem(s)`;
        } catch (error) { chainOut.textContent = ""; failed(error); }
      } }),
      h("button", { type: "button", id: "replay", class: "secondary", text: "Replay", onclick: async () => {
        try {
          const report = (await (await api(`/decisions/${ref}/replay`, { method: "POST" })).json());
          replayOut.replaceChildren(h("p", { class: "status", text: report.same ? "Replay decides alike." : "Replay differs:" }),
            table(["Field", "Recorded", "Replayed"], report.differences.map((d) => [d.field, JSON.stringify(d.recorded), JSON.stringify(d.replayed)])));
        } catch (error) { failed(error); }
      } }),
      h("button", { type: "button", class: "secondary", text: "Export Turtle", onclick: async () => {
        try { exports.replaceChildren(download(await (await api(`/decisions/${ref}/lineage`, { accept: "text/turtle" })).text(), "text/turtle", `${run}-${step}.ttl`)); } catch (error) { failed(error); }
      } }),
      h("button", { type: "button", class: "secondary", text: "Export JSON-LD", onclick: async () => {
        try { exports.replaceChildren(download(await (await api(`/decisions/${ref}/lineage`, { accept: "application/ld+json" })).text(), "application/ld+json", `${run}-${step}.jsonld`)); } catch (error) { failed(error); }
      } })),
    chainOut, replayOut, exports);
  return parts;
}

// -- query workbench

async function queryPage() {
  if (!can("query")) return [heading("Query"), h("p", { class: "muted", text: "Read-only Cypher and SPARQL need the query permission (engineer, compliance or agent roles)." })];
  const language = h("select", { id: "q-lang" }, h("option", { value: "cypher", text: "Cypher (read-only)" }), h("option", { value: "sparql", text: "SPARQL (the RDF projection)" }));
  const text = h("textarea", { id: "q-text", spellcheck: "false" });
  text.value = "MATCH (a:Asset) RETURN a.tag AS tag, a.criticality AS criticality ORDER BY tag LIMIT 25";
  const out = h("div", { id: "q-out", "aria-live": "polite" });
  const form = h("form", { "aria-label": "Query" },
    h("label", { for: "q-lang", text: "Language" }), language,
    h("label", { for: "q-text", text: "Query" }), text,
    h("p", {}, h("button", { type: "submit", id: "q-run", text: "Run" })));
  language.addEventListener("change", () => {
    text.value = language.value === "sparql"
      ? "PREFIX prov: <http://www.w3.org/ns/prov#>\nSELECT ?decision ?ended WHERE { ?decision prov:endedAtTime ?ended } ORDER BY DESC(?ended) LIMIT 25"
      : "MATCH (a:Asset) RETURN a.tag AS tag, a.criticality AS criticality ORDER BY tag LIMIT 25";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearMessage();
    if (!text.value.trim()) { show("Write a query first."); return; }
    out.replaceChildren(h("p", { class: "muted", text: "running…" }));
    try {
      if (language.value === "cypher") {
        const result = await postJson("/cypher", { query: text.value });
        out.replaceChildren(h("p", { class: "status", text: `${result.rows.length} row(s)${result.truncated ? " (truncated)" : ""}` }),
          table(result.columns, result.rows.map((r) => r.map((v) => typeof v === "object" && v !== null ? JSON.stringify(v) : fmt(v)))));
      } else {
        const response = await api("/sparql", { method: "POST", body: text.value, contentType: "application/sparql-query", accept: "application/sparql-results+json, text/turtle;q=0.8" });
        if ((response.headers.get("content-type") ?? "").includes("json")) {
          const doc = await response.json();
          if (doc.boolean !== undefined) out.replaceChildren(h("p", { class: "status", text: `ASK: ${doc.boolean}` }));
          else out.replaceChildren(h("p", { class: "status", text: `${doc.results.bindings.length} row(s)` }),
            table(doc.head.vars, doc.results.bindings.map((b) => doc.head.vars.map((v) => b[v]?.value ?? ""))));
        } else out.replaceChildren(h("pre", { class: "mono", text: await response.text() }));
      }
    } catch (error) { out.replaceChildren(); failed(error); }
  });
  return [heading("Query workbench"), form, out];
}

// -- audit

async function auditPage() {
  if (!can("audit")) return [heading("Audit"), h("p", { class: "muted", text: "The audit log needs the audit permission (the compliance role)." })];
  const entries = (await getJson("/audit?limit=200")).reverse();
  const chain = h("p", { id: "audit-chain", class: "status", role: "status" });
  const log = h("p", { id: "audit-log-status", class: "status", role: "status" });
  return [heading("Audit"),
    h("p", { class: "row" }, h("button", { type: "button", id: "verify-audit-log", text: "Verify the audit log", onclick: async () => {
      log.textContent = "verifying…";
      try {
        const r = await getJson("/audit/verify");
        log.textContent = r.ok
          ? `Audit log intact: ${r.count} entries, head ${r.head}${r.open_intents.length ? `; ${r.open_intents.length} request(s) without an outcome` : ""}`
          : `Audit log broken at line ${r.first_bad_line}: ${r.reason}`;
      } catch (error) { log.textContent = ""; failed(error); }
    } }), h("button", { type: "button", id: "verify-provenance", class: "secondary", text: "Verify the provenance chain", onclick: async () => {
      chain.textContent = "verifying…";
      try {
        const r = await getJson("/provenance/verify");
        chain.textContent = r.ok ? `Provenance chain intact: ${r.records} records, head ${r.head_hash}` : `Provenance chain broken: ${r.problems.map((p) => `${p.kind} at ${p.chain_index}`).join("; ")}`;
      } catch (error) { chain.textContent = ""; failed(error); }
    } })), log, chain,
    h("h2", { text: "State-changing requests, newest first" }),
    table(["#", "Time", "Who", "Roles", "Request", "Status", "Error"], entries.map((e) => [
      String(e.index), e.time, e.name, e.roles.join(", "), `${e.method} ${e.path}`, e.status === 0 ? "intent" : String(e.status), e.error_code]))];
}

// -- simulations

function kpiMeans(job) {
  const sums = new Map();
  for (const result of job.results) for (const [name, value] of Object.entries(result.kpis)) {
    if (value === null || !Number.isFinite(value)) continue;
    const [total, n] = sums.get(name) ?? [0, 0];
    sums.set(name, [total + value, n + 1]);
  }
  return new Map([...sums].map(([name, [total, n]]) => [name, total / n]));
}

function barChart(name, bars, unit) {
  // One KPI across the compared jobs: a horizontal bar each, the value written beside it.
  const width = 640, row = 26, top = 8, left = 200;
  const most = Math.max(...bars.map((b) => Math.abs(b.value)), 1e-9);
  const svg = s("svg", { class: "graph chart", viewBox: `0 0 ${width} ${bars.length * row + top * 2}`, role: "img", "aria-label": `${name}: ${bars.map((b) => `${b.label} ${fmt(b.value)}`).join(", ")}` });
  bars.forEach((b, i) => {
    const y = top + i * row;
    svg.append(s("text", { x: 4, y: y + 16 }, b.label.slice(0, 28)),
      s("rect", { x: left, y: y + 4, width: Math.max(1, (Math.abs(b.value) / most) * (width - left - 110)), height: 16, fill: "#0b4f8a" }),
      s("text", { x: left + (Math.abs(b.value) / most) * (width - left - 110) + 6, y: y + 16 }, `${fmt(b.value)} ${unit ?? ""}`));
  });
  return h("figure", {}, h("figcaption", { text: `${name}${unit ? ` (${unit})` : ""}` }), svg);
}

async function simulationsPage(params) {
  const runs = await getJson("/sim/runs?limit=100");
  const jobs = runs.jobs.filter((j) => j.results.length > 0);
  const chosen = new Set((params.get("compare") ?? "").split(",").filter(Boolean));
  const parts = [heading("Simulations")];
  if (can("run_agents")) {
    const scenario = h("input", { id: "sim-scenario", value: "net1-pump-wear", size: 24 });
    const policy = h("select", { id: "sim-policy" }, ["twinkg", "reactive", "preventive", "run-to-failure"].map((p) => h("option", { value: p, text: p })));
    const seeds = h("input", { id: "sim-seeds", value: "1-2", size: 10 });
    const form = h("form", { class: "row", "aria-label": "Start a simulation" },
      h("div", {}, h("label", { for: "sim-scenario", text: "Shipped scenario" }), scenario),
      h("div", {}, h("label", { for: "sim-policy", text: "Policy" }), policy),
      h("div", {}, h("label", { for: "sim-seeds", text: "Seeds" }), seeds),
      h("button", { type: "submit", id: "sim-start", text: "Start" }));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearMessage();
      try {
        const job = await (await api("/sim/runs", { method: "POST", body: { scenario: scenario.value.trim(), policy: policy.value, seeds: seeds.value.trim() } })).json();
        show(`Simulation ${job.job_id} started (${job.scenario}, ${job.policy}); refresh to see its results.`, "info");
      } catch (error) { failed(error); }
    });
    parts.push(form);
  }
  parts.push(h("h2", { text: "Runs of this server, with their KPIs (mean over seeds)" }));
  if (jobs.length === 0) parts.push(h("p", { class: "muted", text: "No finished simulation in this server yet." }));
  const names = [...new Set(jobs.flatMap((j) => [...kpiMeans(j).keys()]))].sort();
  const units = Object.assign({}, ...jobs.flatMap((j) => j.results.map((r) => r.units)));
  for (const [name, unit] of Object.entries(units)) if (unit === "1") delete units[name]; // a ratio or a count
  if (jobs.length) {
    const boxes = jobs.map((j) => h("input", { type: "checkbox", name: "compare", value: j.job_id, checked: chosen.has(j.job_id), "aria-label": `Compare ${j.scenario} under ${j.policy} (${j.job_id})` }));
    parts.push(h("div", { class: "scroll", tabindex: 0, role: "region", "aria-label": "KPIs of each run" }, table(["Compare", "Job", "Scenario", "Policy", "Seeds", "State", ...names], jobs.map((j, i) => {
      const means = kpiMeans(j);
      return [boxes[i], j.job_id, j.scenario, j.policy, j.seeds.join(", "), pill(j.state), ...names.map((n) => fmt(means.get(n)))];
    }))), h("p", {}, h("button", { type: "button", id: "sim-compare", text: "Compare the chosen runs", onclick: () => {
      const ids = boxes.filter((b) => b.checked).map((b) => b.value);
      if (ids.length < 2) { show("Choose at least two runs to compare."); return; }
      location.hash = `#/simulations?compare=${ids.join(",")}`;
    } })));
  }
  const compared = jobs.filter((j) => chosen.has(j.job_id));
  if (compared.length >= 2) {
    parts.push(h("h2", { text: "Comparison" }), ...names.map((n) => barChart(n, compared.map((j) => ({ label: `${j.policy} · ${j.job_id.slice(0, 6)}`, value: kpiMeans(j).get(n) ?? 0 })), units[n])));
  }
  parts.push(h("h2", { text: "Runs recorded in the graph" }),
    table(["Run", "Scenario", "Policy", "Seed", "Status", "Started"], runs.runs.map((r) => [lastPart(r.run), r.scenario, r.policy, fmt(r.seed), pill(r.status), r.started_at])));
  return parts;
}

// ---------------------------------------------------------------- routing

const PAGES = {
  plant: plantPage, asset: assetPage, events: eventsPage, approvals: approvalsPage,
  decisions: decisionsPage, simulations: simulationsPage, query: queryPage, audit: auditPage,
};

let navigation = 0; // the newest navigation: a page that loads after a newer one is dropped

async function route() {
  const mine = ++navigation;
  if (stopStream) { stopStream(); stopStream = null; }
  if (!sessionStorage.getItem(TOKEN)) { renderLogin(); return; }
  if (me === null) {
    try { await loadMe(); } catch (error) { signOut(); failed(error); return; }
  }
  const hash = location.hash.replace(/^#\/?/, "") || "plant";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search ?? "");
  const [section, ...rest] = path.split("/");
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.dataset.section === (section === "asset" ? "plant" : section === "decision" ? "decisions" : section);
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  main.replaceChildren(h("p", { class: "muted", text: "loading…" }));
  try {
    const content = section === "decision" && rest.length === 2
      ? await decisionPage(rest[0], rest[1])
      : PAGES[section] ? await PAGES[section](params) : [heading("Not found"), h("p", { text: `There is no page “${section}”.` })];
    if (mine !== navigation) { if (section === "events" && stopStream) stopStream(); return; }
    main.replaceChildren(...content.flat().filter((x) => x));
    document.title = `${main.querySelector("h1")?.textContent ?? "TwinKG"} · TwinKG console`;
  } catch (error) {
    if (mine !== navigation) return;
    main.replaceChildren(heading("Could not load this page"));
    failed(error);
  }
}

document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("hashchange", () => { clearMessage(); route(); });
finishSso().finally(route);
