// The live status page: reads the JSON API, follows /api/events, replays dead letters.
// Plain DOM: every value from the server is inserted as text (textContent), never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "reactive-core.write-token";
  const MAX_CHANGES = 50;
  const RECONNECT_MS = 5000;
  const NO_LIMIT = Number.MAX_SAFE_INTEGER;

  // -- small helpers ----------------------------------------------------------------------

  /** An element with attributes and children; strings become text nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "data") {
        for (const [k, v] of Object.entries(value)) {
          if (v !== null && v !== undefined) node.dataset[k] = String(v);
        }
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const enc = encodeURIComponent;
  const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

  /** The first of `keys` that `obj` has (the API spells some fields in camelCase). */
  function pick(obj, ...keys) {
    if (!obj) return undefined;
    for (const key of keys) {
      if (obj[key] !== undefined && obj[key] !== null) return obj[key];
    }
    return undefined;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function utc(iso) {
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} `
      + `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
  }

  function ago(iso) {
    const t = new Date(iso).getTime();
    if (Number.isNaN(t)) return String(iso);
    const s = Math.round((Date.now() - t) / 1000);
    if (s < -5) return "in " + span(-s);
    if (s < 5) return "just now";
    return span(s) + " ago";
  }

  function span(seconds) {
    if (seconds < 60) return `${seconds} s`;
    const m = Math.round(seconds / 60);
    if (m < 60) return `${m} min`;
    const h = Math.round(m / 6) / 10;
    if (h < 48) return `${h} h`;
    return `${Math.round(h / 24)} d`;
  }

  /** A <time> showing a relative age, the full UTC time as its tooltip; kept fresh. */
  function time(iso) {
    if (!iso) return el("span", { class: "muted", text: "—" });
    return el("time", { datetime: iso, title: utc(iso), data: { rel: "" }, text: ago(iso) });
  }

  function minutes(value) {
    if (!isNumber(value)) return "—";
    if (value < 1 && value > 0) return `${Math.round(value * 60)} s`;
    return `${value >= 100 ? Math.round(value) : Math.round(value * 10) / 10} min`;
  }

  function percent(value, digits) {
    return isNumber(value) ? `${value.toFixed(digits)} %` : "—";
  }

  function badge(value, cls) {
    const text = value === null || value === undefined ? "unknown" : String(value);
    return el("span", { class: `badge ${cls || ""}`.trim(), data: { status: text },
                        text: text.replace(/_/g, " ") });
  }

  function setRows(table, rows, columns, emptyText) {
    const body = table.tBodies[0];
    if (rows.length === 0) {
      body.replaceChildren(el("tr", { class: "empty" },
        el("td", { colspan: columns, text: emptyText })));
    } else {
      body.replaceChildren(...rows);
    }
  }

  // -- the API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, title, detail, path) {
      super(detail);
      this.status = status;
      this.title = title;
      this.detail = detail;
      this.path = path;
    }
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
  }

  /** JSON of `path` (relative to the page); a problem document becomes an ApiError. */
  async function api(path, options = {}) {
    const headers = { Accept: "application/json", ...(options.headers || {}) };
    let response = await fetch(path, { ...options, headers });
    if (response.status === 401 && !headers.Authorization && token()) {
      // reads may need a token when the server is not on a loopback address
      headers.Authorization = `Bearer ${token()}`;
      response = await fetch(path, { ...options, headers });
    }
    if (!response.ok) {
      let problem = {};
      try { problem = await response.json(); } catch { problem = {}; }
      const where = "/" + path.split("?")[0];
      throw new ApiError(response.status, problem.title || response.statusText,
                         problem.detail || `${where} answered ${response.status}`, where);
    }
    return response.json();
  }

  /** Run `loader`; show a section-level notice instead of failing the page. */
  async function guarded(sectionId, loader, noticeSelector = ".notice") {
    const section = document.getElementById(sectionId);
    const notice = section.querySelector(noticeSelector);
    try {
      await loader();
      notice.hidden = true;
      notice.textContent = "";
      section.dataset.state = "ready";
    } catch (err) {
      if (!(err instanceof ApiError) && !(err instanceof TypeError)) throw err;
      const missing = err instanceof ApiError && err.status === 404;
      section.dataset.state = missing ? "missing" : "error";
      notice.textContent = missing
        ? `Not available on this server: ${err.path} answered 404.`
        : `Could not load: ${err.message}`;
      notice.hidden = false;
    }
  }

  // -- header ------------------------------------------------------------------------------

  async function loadReadiness() {
    const readiness = document.getElementById("readiness");
    try {
      const response = await fetch("healthz", { headers: { Accept: "application/json" } });
      const body = await response.json();
      document.getElementById("instance").textContent = body.instance || "—";
      readiness.dataset.status = body.status === "ok" ? "ok" : "unavailable";
      readiness.textContent = body.status === "ok" ? "ready" : "not ready";
      readiness.title = (body.problems || []).join("; ");
      readiness.hidden = false;
    } catch {
      readiness.dataset.status = "unavailable";
      readiness.textContent = "unreachable";
      readiness.hidden = false;
    }
  }

  function setLive(state, label) {
    const live = document.getElementById("live");
    live.dataset.state = state;
    live.querySelector(".label").textContent = label;
  }

  // -- systems -----------------------------------------------------------------------------

  function reasonCell(item) {
    const reason = item.reason;
    if (item.status === "healthy" || !reason) {
      return el("td", { class: "reason" }, el("span", { class: "muted", text: "—" }));
    }
    const parts = [el("code", { class: "check", text: reason.check_id })];
    if (reason.status_code !== null && reason.status_code !== undefined) {
      parts.push(el("span", { class: "code", text: `HTTP ${reason.status_code}` }));
    }
    if (reason.error) parts.push(el("span", { class: "error", text: reason.error }));
    if (isNumber(reason.latency_ms)) {
      parts.push(el("span", { class: "latency", text: `${Math.round(reason.latency_ms)} ms` }));
    }
    if (reason.at) parts.push(time(reason.at));
    const cell = el("td", { class: "reason" });
    parts.forEach((part, i) => {
      if (i > 0) cell.append(el("span", { class: "sep", "aria-hidden": "true", text: "·" }));
      cell.append(part);
    });
    return cell;
  }

  async function loadSystems() {
    const body = await api("api/health");
    const items = [...(body.items || [])].sort((a, b) =>
      String(a.system_id).localeCompare(String(b.system_id)));
    const rows = items.map((item) => el("tr", { data: { system: item.system_id, status: item.status } },
      el("th", { scope: "row", class: "name" },
        el("span", { text: item.name || item.system_id }),
        item.name && item.name !== item.system_id
          ? el("span", { class: "id", text: item.system_id }) : null),
      el("td", {}, badge(item.status, "status")),
      el("td", { class: "since" }, time(item.since)),
      el("td", { class: "checks",
                 text: isNumber(item.total_checks)
                   ? `${item.healthy_checks ?? 0} / ${item.total_checks} healthy` : "—" }),
      reasonCell(item)));
    setRows(document.getElementById("systems"), rows, 5,
            "No systems with checks yet.");
  }

  // -- SLOs ---------------------------------------------------------------------------------

  const chartVersions = new Map();

  function attribution(detail) {
    const status = detail && detail.status;
    const split = pick(status, "attribution");
    if (split && (split.selfMinutes !== undefined || split.self_minutes !== undefined)) {
      const upstreams = (split.upstreams || []).map((u) => ({
        name: pick(u, "systemName", "system_name", "systemId", "system_id") || "unknown",
        minutes: u.minutes,
      }));
      return { self: pick(split, "selfMinutes", "self_minutes"), upstreams };
    }
    if (!detail || !Array.isArray(detail.events)) return null;
    let self = 0;
    const byUpstream = new Map();
    for (const event of detail.events) {
      let seconds = event.duration_seconds;
      if (!isNumber(seconds)) {
        const end = event.end ? new Date(event.end).getTime() : Date.now();
        seconds = Math.max(0, (end - new Date(event.start).getTime()) / 1000);
      }
      if (event.attribution === "upstream") {
        const name = event.upstream_system_name || event.upstream_system_id || "unknown";
        byUpstream.set(name, (byUpstream.get(name) || 0) + seconds / 60);
      } else {
        self += seconds / 60;
      }
    }
    const upstreams = [...byUpstream].map(([name, m]) => ({ name, minutes: m }))
      .sort((a, b) => b.minutes - a.minutes);
    return { self, upstreams };
  }

  function attributionCell(split) {
    const cell = el("td", { class: "attribution" });
    if (!split) {
      cell.append(el("span", { class: "muted", text: "—" }));
      return cell;
    }
    const upstreamTotal = split.upstreams.reduce((sum, u) => sum + (u.minutes || 0), 0);
    cell.append(el("span", { class: "self", text: `self ${minutes(split.self)}` }),
                el("span", { class: "sep", "aria-hidden": "true", text: "·" }),
                el("span", { class: "upstream", text: `upstream ${minutes(upstreamTotal)}` }));
    if (split.upstreams.length) {
      cell.append(el("span", { class: "upstreams",
        text: split.upstreams.map((u) => `${u.name} ${minutes(u.minutes)}`).join(", ") }));
    }
    return cell;
  }

  function budgetCell(remaining) {
    const cell = el("td", { class: "budget" });
    if (!isNumber(remaining)) {
      cell.append(el("span", { class: "muted", text: "—" }));
      return cell;
    }
    const clamped = Math.max(0, Math.min(100, remaining));
    const level = remaining <= 20 ? "low" : remaining <= 50 ? "mid" : "high";
    const fill = el("span", { class: "fill" });
    fill.style.width = `${clamped}%`;
    cell.append(el("span", { class: "value", text: percent(remaining, 1) }),
                el("span", { class: "bar", data: { level }, "aria-hidden": "true" }, fill));
    return cell;
  }

  function chartUrl(id) {
    const version = chartVersions.get(id) || 0;
    return `api/objectives/${enc(id)}/burndown.svg` + (version ? `?v=${version}` : "");
  }

  function renderCharts(objectives) {
    const box = document.getElementById("burndowns");
    const existing = new Map([...box.children].map((f) => [f.dataset.objective, f]));
    const figures = objectives.map((objective) => {
      let figure = existing.get(objective.id);
      if (!figure) {
        const img = el("img", { alt: `Error budget remaining over the window of ${objective.id}`,
                                width: 480, height: 200, loading: "lazy" });
        img.addEventListener("error", () => { figure.dataset.chart = "missing"; });
        img.addEventListener("load", () => { figure.dataset.chart = "ready"; });
        figure = el("figure", { class: "chart", data: { objective: objective.id } }, img,
          el("figcaption", {},
            el("span", { class: "title", text: objective.id }),
            el("span", { class: "unavailable", text: "chart not available" })));
      }
      const img = figure.querySelector("img");
      const url = chartUrl(objective.id);
      if (img.getAttribute("src") !== url) img.setAttribute("src", url);
      return figure;
    });
    box.replaceChildren(...figures);
  }

  async function loadSlos() {
    const body = await api("api/objectives");
    const objectives = [...(body.items || [])].sort((a, b) =>
      String(a.id).localeCompare(String(b.id)));
    const details = await Promise.allSettled(objectives.map((o) =>
      api(`api/objectives/${enc(o.id)}`)));
    const rows = objectives.map((objective, i) => {
      const detail = details[i].status === "fulfilled" ? details[i].value : null;
      const status = (detail && detail.status) || objective.status || {};
      const availability = pick(status, "availability", "currentAvailability",
                                "current_availability");
      const remaining = pick(status, "budgetRemainingPercent", "errorBudgetRemainingPercent",
                             "error_budget_remaining_percent");
      const burnRate = pick(status, "burnRate", "burn_rate");
      const alert = pick(status, "burnAlert", "burn_alert") || "none";
      const breaching = Boolean(pick(status, "isBreaching", "is_breaching"));
      const below = isNumber(availability) && availability < objective.target;
      return el("tr", { data: { objective: objective.id, breaching: breaching ? "true" : "false" } },
        el("th", { scope: "row", class: "name" },
          el("span", { text: objective.id }),
          el("span", { class: "id", text: `${objective.system_id} · ${objective.window_days} d` })),
        el("td", { class: `availability ${below ? "below" : ""}`.trim() },
          el("span", { class: "value", text: percent(availability, 3) }),
          el("span", { class: "target", text: ` / ${percent(objective.target, 2)}` })),
        budgetCell(remaining),
        el("td", { class: "burn-rate",
                   text: isNumber(burnRate) ? `${burnRate.toFixed(2)}×` : "—" }),
        el("td", {}, badge(alert, "alert")),
        attributionCell(attribution(detail)));
    });
    setRows(document.getElementById("slos"), rows, 6, "No objectives yet.");
    renderCharts(objectives);
  }

  // -- recent changes ----------------------------------------------------------------------

  let lastSeq = 0;

  function scalar(value) {
    if (value === null || value === undefined) return "∅";
    if (typeof value === "object") return JSON.stringify(value).slice(0, 40);
    if (isNumber(value) && !Number.isInteger(value)) {
      if (Math.abs(value) < 1) return String(parseFloat(value.toPrecision(3)));
      const short = parseFloat(value.toPrecision(6));
      return String(Number.isInteger(short) ? parseFloat(value.toPrecision(9)) : short);
    }
    return String(value);
  }

  function describe(change) {
    if (!change.prev) return "created";
    if (!change.next) return "removed";
    const fields = change.changed_fields || Object.keys(change.delta || {});
    const shown = fields.slice(0, 3).map((field) => {
      const top = String(field).split(".")[0];
      const before = change.prev[top];
      const after = change.next[top];
      if (typeof before === "object" || typeof after === "object") return String(field);
      return `${field}: ${scalar(before)} → ${scalar(after)}`;
    });
    if (fields.length > 3) shown.push(`+${fields.length - 3} more`);
    return shown.join("; ") || "no field changed";
  }

  function changeRow(change, fresh) {
    const actor = change.actor || {};
    const by = [actor.type, actor.id].filter(Boolean).join(":") || "—";
    return el("tr", { class: fresh ? "fresh" : null,
                      data: { seq: change.seq, kind: change.kind, entity: change.entity_id } },
      el("td", { class: "seq", text: change.seq }),
      el("td", {}, time(change.occurred_at)),
      el("td", { class: "entity" },
        el("span", { class: "kind", text: change.kind }),
        el("span", { class: "entity-id", text: change.entity_id })),
      el("td", { class: "what" }, el("span", { text: describe(change) }),
        change.reason ? el("span", { class: "why", text: change.reason }) : null),
      el("td", { class: "actor", text: by }));
  }

  function addChange(change, fresh) {
    if (!isNumber(change.seq) || change.seq <= lastSeq) return false;
    lastSeq = change.seq;
    const body = document.getElementById("changes").tBodies[0];
    const empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    body.prepend(changeRow(change, fresh));
    while (body.rows.length > MAX_CHANGES) body.deleteRow(-1);
    return true;
  }

  async function loadChanges() {
    const body = await api(`api/changes?before=${NO_LIMIT}&limit=25`);
    const items = [...(body.items || [])].sort((a, b) => a.seq - b.seq);
    for (const change of items) addChange(change, false);
    if (!items.length) {
      setRows(document.getElementById("changes"), [], 5, "No changes yet.");
    }
  }

  // -- rules and runs ----------------------------------------------------------------------

  function runTrigger(run) {
    const what = run.event || run.trigger || "—";
    return run.entity_id ? `${what} (${run.entity_id})` : what;
  }

  async function loadRules() {
    const [rules, runs] = await Promise.allSettled([api("api/rules"), api("api/runs?limit=20")]);
    const runItems = runs.status === "fulfilled" ? runs.value.items || [] : [];
    const runsSection = document.getElementById("rules-section");
    const runsNotice = runsSection.querySelector(".runs-notice");
    if (runs.status === "rejected") {
      const err = runs.reason;
      runsNotice.textContent = err instanceof ApiError && err.status === 404
        ? `Not available on this server: ${err.path} answered 404.`
        : `Could not load the runs: ${err.message}`;
      runsNotice.hidden = false;
    } else {
      runsNotice.hidden = true;
    }
    document.getElementById("runs").hidden = runs.status === "rejected";
    const lastRun = new Map();
    for (const run of runItems) if (!lastRun.has(run.rule_id)) lastRun.set(run.rule_id, run);
    setRows(document.getElementById("runs"), runItems.map((run) => el("tr", {
      data: { run: run.run_id, rule: run.rule_id } },
      el("td", { class: "seq", text: run.run_id }),
      el("td", { text: run.rule_id }),
      el("td", {}, badge(run.status, "run")),
      el("td", { text: runTrigger(run) }),
      el("td", {}, time(run.created_at)),
      el("td", { class: "num", text: run.steps ?? "—" }),
      el("td", { class: "error", text: run.error || "" }))), 7, "No runs yet.");

    if (rules.status === "rejected") throw rules.reason;
    const value = rules.value;
    setRows(document.getElementById("rules"), (value.rules || []).map((rule) => {
      const run = lastRun.get(rule.rule_id);
      return el("tr", { data: { rule: rule.rule_id } },
        el("th", { scope: "row", class: "name", text: rule.rule_id }),
        el("td", { text: rule.mode || "—" }),
        el("td", { class: "triggers", text: rule.triggers || "—" }),
        el("td", { class: "source", text: rule.source || "—" }),
        el("td", { class: "last-run" }, run
          ? [badge(run.status, "run"), " ", time(run.created_at)]
          : el("span", { class: "muted", text: "not in the last 20 runs" })));
    }), 5, "No rules installed.");
    const errors = document.getElementById("load-errors");
    errors.replaceChildren(...(value.load_errors || []).map((e) => el("li", {},
      el("code", { text: `${e.path || "-"}:${e.line || "-"}` }), " ", e.message)));
    errors.hidden = errors.children.length === 0;
  }

  // -- dead letters ------------------------------------------------------------------------

  function showMessage(kind, text) {
    const message = document.getElementById("message");
    message.dataset.kind = kind;
    message.textContent = text;
    message.hidden = false;
  }

  async function replay(delivery, button) {
    button.disabled = true;
    const headers = {};
    if (token()) headers.Authorization = `Bearer ${token()}`;
    try {
      const row = await api(`api/deliveries/${enc(delivery.id)}/replay`,
                            { method: "POST", headers });
      showMessage("ok", `Delivery ${delivery.id} (${delivery.kind}:${delivery.entity_id}) `
                        + `replayed: now ${row.status || "pending"}.`);
      const tr = button.closest("tr");
      const body = tr.parentElement;
      tr.remove();
      if (!body.rows.length) {
        setRows(document.getElementById("dead-letters"), [], 7, "No dead letters.");
      }
    } catch (err) {
      if (!(err instanceof ApiError) && !(err instanceof TypeError)) throw err;
      const status = err instanceof ApiError ? `${err.status} ${err.title}: ` : "";
      showMessage("error", `Replay of delivery ${delivery.id} refused: ${status}${err.message}`);
      button.disabled = false;
    }
  }

  async function loadDead() {
    const body = await api("api/deliveries?dead=true&limit=100");
    const rows = (body.items || []).map((d) => {
      const button = el("button", { type: "button", class: "replay",
                                    "aria-label": `Replay delivery ${d.id}`, text: "Replay" });
      button.addEventListener("click", () => { replay(d, button); });
      return el("tr", { data: { delivery: d.id } },
        el("td", { class: "seq", text: d.id }),
        el("td", { class: "entity" }, el("span", { class: "kind", text: d.kind }),
          el("span", { class: "entity-id", text: d.entity_id })),
        el("td", { text: d.group }),
        el("td", { class: "num", text: d.attempts ?? "—" }),
        el("td", { class: "error", text: d.last_error || "" }),
        el("td", {}, time(d.created_at)),
        el("td", { class: "action" }, button));
    });
    setRows(document.getElementById("dead-letters"), rows, 7, "No dead letters.");
  }

  // -- refreshing ---------------------------------------------------------------------------

  const sections = {
    systems: () => guarded("systems-section", loadSystems),
    slos: () => guarded("slos-section", loadSlos),
    rules: () => guarded("rules-section", loadRules),
    dead: () => guarded("dead-section", loadDead),
  };
  const refreshing = {};

  /** Reload a section soon; bursts of changes cause one reload, never two at once. */
  function refresh(name, delay = 150) {
    const state = refreshing[name] || (refreshing[name] = { timer: null, running: false, again: false });
    if (state.timer) return;
    state.timer = setTimeout(async () => {
      state.timer = null;
      if (state.running) {
        state.again = true;
        return;
      }
      state.running = true;
      try {
        await sections[name]();
      } finally {
        state.running = false;
        if (state.again) {
          state.again = false;
          refresh(name, 0);
        }
      }
    }, delay);
  }

  function react(change) {
    if (change.kind === "health" || change.kind === "catalog-system") refresh("systems");
    if (change.kind === "slo" || change.kind === "catalog-system") {
      if (change.kind === "slo") {
        chartVersions.set(change.entity_id, (chartVersions.get(change.entity_id) || 0) + 1);
      }
      refresh("slos");
    }
    refresh("rules", 1000);
    refresh("dead", 2000);
  }

  // -- the live stream -----------------------------------------------------------------------

  let source = null;

  function connect() {
    setLive("connecting", "Connecting…");
    const query = new URLSearchParams();
    if (lastSeq) query.set("after", lastSeq);
    if (token()) query.set("access_token", token());  // EventSource sends no headers
    const suffix = query.toString();
    source = new EventSource(suffix ? `api/events?${suffix}` : "api/events");
    let opened = false;
    source.addEventListener("open", () => {
      setLive("live", "Live");
      if (opened) for (const name of Object.keys(sections)) refresh(name, 0);
      opened = true;
    });
    source.addEventListener("change", (event) => {
      let change;
      try { change = JSON.parse(event.data); } catch { return; }
      if (addChange(change, true)) react(change);
    });
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        setLive("offline", "Offline — retrying");
        source = null;
        setTimeout(() => {
          connect();
          for (const name of Object.keys(sections)) refresh(name, 0);
        }, RECONNECT_MS);
      } else {
        setLive("connecting", "Reconnecting…");
      }
    });
  }

  // -- start -----------------------------------------------------------------------------------

  function setUpToken() {
    const input = document.getElementById("token");
    input.value = token();
    input.addEventListener("input", () => {
      try {
        if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        else sessionStorage.removeItem(TOKEN_KEY);
      } catch { /* storage disabled: the token lives in the field only */ }
    });
    document.getElementById("token-form").addEventListener("submit", (e) => e.preventDefault());
    document.getElementById("dead-refresh").addEventListener("click", () => refresh("dead", 0));
  }

  async function start() {
    setUpToken();
    loadReadiness();
    await Promise.all([sections.systems(), sections.slos(), sections.rules(), sections.dead(),
                       guarded("changes-section", loadChanges)]);
    connect();
    document.body.dataset.loaded = "true";
    setInterval(() => {
      for (const t of document.querySelectorAll("time[data-rel]")) {
        t.textContent = ago(t.getAttribute("datetime"));
      }
    }, 15000);
    setInterval(loadReadiness, 30000);
  }

  start();
})();
