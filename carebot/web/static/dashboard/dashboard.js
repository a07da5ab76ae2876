// carebot's managers' dashboard: tiles, charts, the customer journey, tables and the live
// panel, all from /api/v1/stats/*. Filters live in the URL, so a view can be shared.

import { Api, ApiError } from "../common/api.js";
import { h, replace, duration, flasher } from "../common/dom.js";
import { Live } from "../common/live.js";
import { loginForm } from "../common/login.js";
import { stackedBars, lines } from "./charts.js";

const flash = flasher(5000);

const root = document.getElementById("app");
const api = new Api((message) => showLogin(message));
const FILTERS = ["from", "to", "tz", "channel", "agent", "faq", "tag"];
const OUTCOMES = ["bot_confirmed", "bot_assumed", "agent", "timeout", "abandoned"];
let live = null;
let liveTimer = null;

function showLogin(message = "") {
  if (live) { live.stop(); live = null; }
  replace(root, loginForm(api, "carebot dashboard", start, message));
  document.title = "carebot dashboard — log in";
}

function filters() {
  const params = new URLSearchParams(location.search);
  const out = {};
  for (const key of FILTERS) {
    const value = params.get(key);
    if (value) out[key] = value;
  }
  if (!out.tz) out.tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  return out;
}

function query(extra = {}, { period = true } = {}) {
  const all = { ...filters(), ...extra };
  if (!period) { delete all.from; delete all.to; }
  return new URLSearchParams(all).toString();
}

// ---- formatting ------------------------------------------------------------------------

function fmt(value, unit) {
  if (value === null || value === undefined) return "–";
  if (unit === "rate") return `${(value * 100).toFixed(1)}%`;
  if (unit === "ms") return duration(value / 1000);
  if (unit === "score") return Number(value).toFixed(2);
  return String(Math.round(value * 100) / 100);
}

function deltaView(tile) {
  if (tile.delta === null || tile.delta === undefined || tile.previous === null) {
    return h("span", { class: "delta flat" }, "no previous data");
  }
  const up = tile.delta > 0;
  const flat = tile.delta === 0;
  const good = flat || tile.better === null ? "flat" : (up === (tile.better === "higher") ? "good" : "bad");
  const arrow = flat ? "→" : up ? "▲" : "▼";
  const amount = tile.unit === "rate" ? `${(Math.abs(tile.delta) * 100).toFixed(1)} pt`
    : tile.unit === "ms" ? duration(Math.abs(tile.delta) / 1000) : fmt(Math.abs(tile.delta), tile.unit);
  return h("span", { class: `delta ${good}`, title: `previous: ${fmt(tile.previous, tile.unit)}` },
    `${arrow} ${amount}`, h("span", { class: "prev" }, ` vs ${fmt(tile.previous, tile.unit)}`));
}

// ---- page ------------------------------------------------------------------------------

async function start(session) {
  api.csrf = session.csrf_token;
  if (!["manager", "admin"].includes(session.agent.role)) {
    replace(root, h("p", { class: "error login" }, "The dashboard is for managers and admins.",
      h("a", { href: "/console" }, " Open the console")));
    return;
  }
  renderFrame(session.agent);
  live = new Live(onEvent, (s) => {
    const badge = document.getElementById("live-state");
    if (badge) { badge.className = `live ${s}`; badge.textContent = s; }
    if (s === "live") refreshLive();
  });
  live.start();
  await loadAll();
}

function renderFrame(me) {
  const f = filters();
  const input = (key, label, attrs = {}) => h("label", { class: "field", for: `f-${key}` }, label,
    h("input", { id: `f-${key}`, name: key, value: f[key] || "", ...attrs }));
  const form = h("form", { class: "filters", id: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    const data = new FormData(ev.target);
    const params = new URLSearchParams();
    for (const key of FILTERS) {
      const value = String(data.get(key) || "").trim();
      if (value) params.set(key, value);
    }
    history.pushState(null, "", `/dashboard?${params}`);
    loadAll();
  } },
    input("from", "From", { type: "date" }), input("to", "To", { type: "date" }),
    input("tz", "Time zone", { size: "16" }), input("channel", "Channel", { size: "8" }),
    input("agent", "Agent id", { size: "6" }), input("faq", "FAQ id", { size: "12" }),
    input("tag", "Tag", { size: "10" }),
    h("button", { type: "submit" }, "Apply"),
    h("a", { class: "link", href: "/dashboard" }, "Reset"),
  );
  replace(root,
    h("header", { class: "bar" },
      h("a", { class: "brand", href: "/dashboard" }, "carebot dashboard"),
      h("nav", {}, h("a", { href: "/console" }, "Console")),
      h("span", { id: "live-state", class: "live connecting" }, "connecting"),
      h("span", { class: "me" }, `${me.name} (${me.role})`),
    ),
    h("div", { class: "dash" },
      form,
      h("p", { id: "period", class: "hint" }),
      h("section", { id: "live-panel", class: "live-panel", "aria-label": "Live" }),
      h("section", { id: "tiles", class: "tiles", "aria-label": "Headline figures" }),
      h("section", { class: "charts" },
        card("chart-outcomes", "Conversations by outcome"),
        card("chart-surveys", "CSAT and CES"),
        card("chart-times", "First response and resolution time"),
        card("heatmap", "Volume by hour of week"),
      ),
      h("section", { id: "journey", class: "journey", "aria-label": "Customer journey" }),
      h("section", { id: "journey-list" }),
      h("section", { id: "agents" }),
      h("section", { id: "faqs" }),
      h("section", { id: "gaps" }),
    ),
    h("div", { id: "flash", role: "status" }),
  );
  window.addEventListener("popstate", () => { renderFrame(me); loadAll(); });
}

function card(id, title) {
  return h("figure", { class: "card" }, h("figcaption", {}, title), h("div", { id, class: "chart" }),
    h("details", { class: "as-table" }, h("summary", {}, "Show as table"), h("div", { id: `${id}-table` })));
}

async function loadAll() {
  const jobs = [loadTiles(), loadTrends(), loadHeatmap(), loadJourney(), loadAgents(), loadFaqs(), loadGaps(), refreshLive()];
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r) => r.status === "rejected");
  if (failed) flash(failed.reason.message, true);
}

async function loadTiles() {
  const data = await api.get(`/api/v1/stats/tiles?${query()}`);
  replace(document.getElementById("period"),
    `${data.period.from.slice(0, 10)} – ${data.period.to.slice(0, 10)} (${data.period.tz}), compared with ` +
    `${data.previous_period.from.slice(0, 10)} – ${data.previous_period.to.slice(0, 10)}`);
  replace(document.getElementById("tiles"), data.tiles.map((t) => h("div", { class: "tile", dataset: { key: t.key } },
    h("div", { class: "label" }, t.label),
    h("div", { class: "value" }, fmt(t.value, t.unit)),
    t.n !== null && t.n !== undefined ? h("div", { class: "n" }, `n = ${t.n}`) : null,
    deltaView(t),
  )));
}

function table(headers, rows) {
  return h("table", { class: "grid" },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c ?? "–"))))));
}

async function loadTrends() {
  const t = await api.get(`/api/v1/stats/trends?${query()}`);
  const outcomes = document.getElementById("chart-outcomes");
  replace(outcomes);
  stackedBars(outcomes, t.labels, t.outcomes, OUTCOMES);
  replace(document.getElementById("chart-outcomes-table"), table(["bucket", ...OUTCOMES],
    t.labels.map((label, i) => [label, ...OUTCOMES.map((o) => t.outcomes[o][i])])));
  const surveys = document.getElementById("chart-surveys");
  replace(surveys);
  lines(surveys, t.labels, {
    "CSAT % satisfied": t.csat.satisfied_rate.map((v) => (v === null ? null : Math.round(v * 1000) / 10)),
    "CES % easy": t.ces.easy_rate.map((v) => (v === null ? null : Math.round(v * 1000) / 10)),
  }, { unit: "%" });
  replace(document.getElementById("chart-surveys-table"), table(["bucket", "CSAT answered", "CSAT satisfied", "CES answered", "CES mean"],
    t.labels.map((label, i) => [label, t.csat.answered[i], fmt(t.csat.satisfied_rate[i], "rate"), t.ces.answered[i], fmt(t.ces.mean[i], "score")])));
  const times = document.getElementById("chart-times");
  replace(times);
  const minutes = (arr) => arr.map((v) => (v === null ? null : Math.round(v / 600) / 100));
  lines(times, t.labels, {
    "first response p50": minutes(t.first_response_ms.p50), "first response p90": minutes(t.first_response_ms.p90),
    "resolution p50": minutes(t.resolution_time_ms.p50), "resolution p90": minutes(t.resolution_time_ms.p90),
  }, { unit: "m" });
  replace(document.getElementById("chart-times-table"), table(["bucket", "FRT p50", "FRT p90", "resolution p50", "resolution p90"],
    t.labels.map((label, i) => [label, fmt(t.first_response_ms.p50[i], "ms"), fmt(t.first_response_ms.p90[i], "ms"),
      fmt(t.resolution_time_ms.p50[i], "ms"), fmt(t.resolution_time_ms.p90[i], "ms")])));
}

async function loadHeatmap() {
  const m = await api.get(`/api/v1/stats/heatmap?${query()}`);
  const max = Math.max(1, ...m.opened.flat());
  const grid = h("table", { class: "heat", "aria-label": "Conversations opened by weekday and hour" },
    h("thead", {}, h("tr", {}, h("th", {}, ""), m.hours.map((hr) => h("th", { scope: "col" }, String(hr))))),
    h("tbody", {}, m.days.map((day, d) => h("tr", {}, h("th", { scope: "row" }, day),
      m.opened[d].map((count, hr) => {
        const cell = h("td", { title: `${day} ${hr}:00 — ${count} opened, ${m.handoffs[d][hr]} handed off` }, count ? String(count) : "");
        // CSSOM, not a style attribute: the CSP allows it.
        cell.style.backgroundColor = `rgba(36, 87, 214, ${(count / max).toFixed(3)})`;
        if (count / max > 0.55) cell.classList.add("dark");
        return cell;
      })))));
  replace(document.getElementById("heatmap"), grid);
  replace(document.getElementById("heatmap-table"), h("p", { class: "hint" },
    `${m.totals.opened} opened, ${m.totals.handoffs} handed off in the period; the grid above is the table.`));
}

async function loadJourney() {
  const j = await api.get(`/api/v1/stats/journey?${query()}`);
  const first = Math.max(1, j.conversations);
  replace(document.getElementById("journey"),
    h("h2", {}, "The customer journey"),
    h("p", { class: "hint" }, `${j.conversations} conversations opened in the period, followed to now. Click a step to list its conversations.`),
    h("ol", { class: "funnel" }, j.steps.map((s) => {
      const bar = h("span", { class: `bar-fill stage-${s.stage}` });
      bar.style.width = `${Math.max(0.5, (s.count / first) * 100).toFixed(1)}%`;
      return h("li", { dataset: { step: s.key } },
        h("button", { type: "button", class: "step", onclick: () => listStep(s) },
          h("span", { class: "step-label" }, s.label),
          h("span", { class: "meter" }, bar),
          h("span", { class: "step-count" }, `${s.count} (${fmt(s.share_of_first, "rate")})`),
          h("span", { class: "step-wait" }, s.wait_ms.median !== null ? `wait ${duration(s.wait_ms.median / 1000)}` : ""),
          h("span", { class: "step-effort" }, s.effort.mean !== null ? `effort ${fmt(s.effort.mean, "score")}` : ""),
          h("span", { class: "step-ended" }, s.ended_here ? `${s.ended_here} ended here` : ""),
        ));
    })),
  );
}

async function listStep(step) {
  const box = document.getElementById("journey-list");
  const data = await api.get(`/api/v1/stats/journey/conversations?${query({ step: step.key, limit: 50 })}`);
  replace(box, h("h3", {}, `${step.label}: ${data.total} conversations `,
    h("a", { href: `/api/v1/stats/journey/conversations.csv?${query({ step: step.key })}` }, "CSV")),
    table(["conversation", "channel", "status", "reached", "wait", "effort"], data.items.map((c) => [
      h("a", { href: `/console#/c/${c.conversation_id}` }, `#${c.conversation_id}`), c.channel, c.status,
      c.reached_at ? c.reached_at.slice(0, 16).replace("T", " ") : "", fmt(c.wait_ms, "ms"), c.effort,
    ])));
  box.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function loadAgents() {
  const data = await api.get(`/api/v1/stats/agents?${query()}`);
  replace(document.getElementById("agents"), h("h2", {}, "Agents ", h("a", { class: "csv", href: `/api/v1/stats/agents.csv?${query()}` }, "CSV")),
    table(["agent", "handled", "resolved", "FRT median", "resolution median", "CSAT", "transfers", "reopen rate"],
      data.items.map((a) => [a.name ?? `#${a.agent_id}`, a.handled, a.resolved, fmt(a.first_response_ms.median, "ms"),
        fmt(a.resolution_time_ms.median, "ms"), a.csat.answered ? `${fmt(a.csat.satisfied_rate, "rate")} of ${a.csat.answered}` : "–",
        a.transfers, fmt(a.reopen.rate, "rate")])));
}

async function loadFaqs() {
  const data = await api.get(`/api/v1/stats/faqs?${query()}`);
  replace(document.getElementById("faqs"), h("h2", {}, "FAQ answers ", h("a", { class: "csv", href: `/api/v1/stats/faqs.csv?${query()}` }, "CSV")),
    table(["FAQ", "answered", "helpful rate", "handed off after", "confused with"],
      data.items.map((f) => [h("span", { title: f.faq_id }, f.question ?? f.faq_id), f.answered, fmt(f.helpful_rate, "rate"),
        `${f.followed_by_handoff} (${fmt(f.handoff_rate, "rate")})`,
        (f.confusions || []).map((c) => c.faq_id ?? c.other ?? "").filter(Boolean).join(", ")])));
}

async function loadGaps() {
  const data = await api.get(`/api/v1/stats/knowledge-gaps?${query({ sort: "newest" })}`);
  replace(document.getElementById("gaps"), h("h2", {}, "Knowledge gaps ", h("a", { class: "csv", href: `/api/v1/stats/knowledge-gaps.csv?${query({ sort: "newest" })}` }, "CSV")),
    h("p", { class: "hint" }, "Questions that ended with a person because no FAQ matched, grouped; newest first."),
    table(["question", "asked", "examples", "status", ""], data.clusters.map((c) => [
      c.question, c.count, (c.examples || []).slice(0, 3).join(" · "), c.status,
      c.status === "done" ? "" : h("button", { type: "button", onclick: async () => {
        try { await api.post("/api/v1/stats/knowledge-gaps/done", { question: c.question }); flash("Marked done"); loadGaps(); }
        catch (err) { flash(err.message, true); }
      } }, "Mark done"),
    ])));
}

async function refreshLive() {
  const panel = document.getElementById("live-panel");
  if (!panel) return;
  const l = await api.get(`/api/v1/stats/live?${query({}, { period: false })}`);
  replace(panel,
    h("div", { class: "tile live-tile" }, h("div", { class: "label" }, "Queue"), h("div", { class: "value", id: "live-queue" }, String(l.queue.length)),
      h("div", { class: "n" }, l.queue.over_sla ? `${l.queue.over_sla} past the SLA` : "none past the SLA")),
    h("div", { class: "tile live-tile" }, h("div", { class: "label" }, "Longest wait"), h("div", { class: "value" }, l.queue.length ? duration(l.queue.longest_wait_seconds) : "–")),
    h("div", { class: "tile live-tile" }, h("div", { class: "label" }, "SLA breaches today"), h("div", { class: "value" }, String(l.sla_breaches_today))),
    h("div", { class: "tile live-tile agents-tile" }, h("div", { class: "label" }, `Agents: ${l.agents.online} online, ${l.agents.away} away`),
      h("ul", {}, l.agents.items.map((a) => h("li", { class: `agent-${a.status}` }, `${a.name} · ${a.status} · ${a.load}/${a.capacity}`)))),
  );
}

function onEvent(event) {
  if (["queued", "assigned", "unassigned", "resolved", "availability", "agent_status", "sla_breached", "agent_disabled"].includes(event.kind)) {
    clearTimeout(liveTimer);
    liveTimer = setTimeout(() => refreshLive().catch((err) => flash(err.message, true)), 150);
  }
}

async function boot() {
  try {
    start(await api.get("/api/v1/session"));
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showLogin();
    else showLogin(err.message);
  }
}

boot();
