// carebot's agent console: queue, inbox, conversation, customer panel, composer, admin.
// Plain ES modules, no build step. All customer and agent text is rendered with textContent.

import { Api, ApiError } from "../common/api.js";
import { h, replace, ago, duration, clock, flasher } from "../common/dom.js";
import { Live } from "../common/live.js";
import { loginForm, inviteForm } from "../common/login.js";
import { renderAdmin } from "./admin.js";
import { customerTyping, typingIndicator, agentTyping, markSeen, showRead } from "./webchat.js";

const flash = flasher(4000);

const root = document.getElementById("app");
const api = new Api((message) => showLogin(message));
const state = {
  me: null,
  queue: [],
  mine: [],
  openId: null,
  detail: null,
  customer: null,
  codes: [],
  canned: [],
  agents: [],
  unread: new Set(),
  liveState: "connecting",
  mode: "reply",
  draft: "",
};
let live = null;
let listTimer = null;

// ---- login, invite, logout -------------------------------------------------------------

function showLogin(message = "") {
  if (live) { live.stop(); live = null; }
  state.me = null;
  replace(root, loginForm(api, "carebot console", start, message));
  document.title = "carebot console — log in";
  root.querySelector("input")?.focus();
}

function showInvite(token) {
  replace(root, inviteForm(api, token, (session) => {
    history.replaceState(null, "", "/console");
    return start(session);
  }));
}

async function logout() {
  try { await api.del("/api/v1/session"); } catch { /* the session may be gone already */ }
  showLogin("You are logged out.");
}

// ---- start-up --------------------------------------------------------------------------

async function start(session) {
  state.me = session.agent;
  api.csrf = session.csrf_token;
  state.unread = new Set(JSON.parse(localStorage.getItem(unreadKey()) || "[]"));
  await Promise.all([loadLists(), loadCodes(), loadCanned(), loadAgents()]);
  live = new Live(onEvent, (s) => { state.liveState = s; renderStatusBar(); if (s === "live") scheduleLists(0); if (s === "revoked") showLogin("Your access was revoked."); });
  live.start();
  route();
}

function unreadKey() { return `carebot.unread.${state.me.id}`; }
function saveUnread() { localStorage.setItem(unreadKey(), JSON.stringify([...state.unread])); }

async function loadLists() {
  const [queue, mine] = await Promise.all([
    api.get("/api/v1/conversations?status=queued&limit=200"),
    api.get(`/api/v1/conversations?status=assigned&assignee=${state.me.id}&limit=200`),
  ]);
  state.queue = queue.items;
  state.mine = mine.items;
}

async function loadCodes() {
  try { state.codes = (await api.get("/api/v1/resolution-codes")).items.filter((c) => c.enabled); }
  catch { state.codes = []; }
}

async function loadCanned() {
  try { state.canned = (await api.get("/api/v1/canned-replies")).items; }
  catch { state.canned = []; }
}

async function loadAgents() {
  try { state.agents = (await api.get("/api/v1/agents")).items; }
  catch { state.agents = []; }
}

// ---- live events -----------------------------------------------------------------------

function onEvent(event) {
  if (event.kind === "hello") return;
  if (event.kind === "typing" || event.kind === "customer_read") {
    if (event.kind === "typing") customerTyping(event, state.openId);
    else if (event.conversation_id === state.openId && state.detail) {
      const upTo = Math.max(state.detail.customer_read_up_to ?? 0, event.data?.up_to ?? 0);
      state.detail.customer_read_up_to = upTo;
      showRead(document.getElementById("transcript"), upTo);
    }
    return;
  }
  const cid = event.conversation_id;
  if (cid !== null && cid !== undefined) {
    if (cid === state.openId) {
      // A customer's words show at once; the full reload that follows reconciles the rest.
      if (event.kind === "message" && event.data && event.data.text !== undefined) {
        showArrived(event.data);
        refreshOpen(300);
      } else {
        refreshOpen(0);
      }
      if (event.kind === "survey_answered") setTimeout(() => loadCustomer(state.detail?.customer_id), 300);
    } else if (["message", "agent_reply", "assigned", "survey_answered"].includes(event.kind)
               && (event.agent_ids || []).includes(state.me.id)) {
      state.unread.add(cid);
      saveUnread();
    }
  }
  if (event.kind === "availability" && (event.agent_ids || []).includes(state.me.id)) {
    api.get("/api/v1/me").then((me) => { state.me = { ...state.me, ...me }; renderStatusBar(); });
  }
  scheduleLists(100);
}

function showArrived(data) {
  const transcript = document.getElementById("transcript");
  if (!transcript) return;
  const item = messageItem({ id: "", direction: "in", sender: "customer", text: data.text || "",
                             payload: data.payload, buttons: [], created_at: new Date().toISOString() });
  item.classList.add("arriving");
  transcript.append(item);
  transcript.scrollTop = transcript.scrollHeight;
}

function scheduleLists(delay) {
  clearTimeout(listTimer);
  listTimer = setTimeout(async () => {
    try { await loadLists(); renderLists(); } catch (err) { flash(err.message); }
  }, delay);
}

// One reload of the open conversation at a time: events arriving meanwhile ask for one more.
const reload = { timer: null, running: false, again: false };

function refreshOpen(delay = 0) {
  clearTimeout(reload.timer);
  reload.timer = setTimeout(runRefresh, delay);
}

async function runRefresh() {
  if (reload.running) { reload.again = true; return; }
  const id = state.openId;
  if (id === null) return;
  reload.running = true;
  try {
    const detail = await api.get(`/api/v1/conversations/${id}`);
    if (id === state.openId) {
      state.detail = detail;
      renderConversation();
    }
  } catch (err) {
    flash(err.message);
  } finally {
    reload.running = false;
    if (reload.again) { reload.again = false; runRefresh(); }
  }
}

// ---- routing ---------------------------------------------------------------------------

window.addEventListener("hashchange", () => { if (state.me) route(); });

function route() {
  const hash = location.hash || "#/";
  renderShell();
  const conv = hash.match(/^#\/c\/([0-9]+)$/);
  const admin = hash.match(/^#\/admin\/([a-z-]+)$/);
  if (conv) {
    openConversation(Number(conv[1]));
  } else if (admin) {
    state.openId = null;
    renderAdmin(document.getElementById("main"), admin[1], { api, state, flash, reloadShared });
  } else {
    state.openId = null;
    replace(document.getElementById("main"), h("p", { class: "empty" }, "Pick a conversation from the queue or your inbox."));
  }
  renderLists();
}

async function reloadShared() {
  await Promise.all([loadCodes(), loadCanned(), loadAgents()]);
}

// ---- the frame: status bar, lists ------------------------------------------------------

function renderShell() {
  const isAdmin = state.me.role === "admin";
  const isSupervisor = isAdmin || state.me.role === "manager";
  replace(root,
    h("header", { class: "bar" },
      h("a", { class: "brand", href: "#/" }, "carebot"),
      h("nav", {},
        h("a", { href: "#/" }, "Inbox"),
        isSupervisor ? h("a", { href: "#/admin/canned" }, "Canned replies") : null,
        isAdmin ? h("a", { href: "#/admin/agents" }, "Agents") : null,
        isAdmin ? h("a", { href: "#/admin/codes" }, "Resolution codes") : null,
        isAdmin ? h("a", { href: "#/admin/sites" }, "Web chat") : null,
      ),
      h("span", { id: "status-bar" }),
    ),
    h("div", { class: "layout" },
      h("aside", { class: "lists" },
        h("section", {}, h("h2", {}, "Queue ", h("span", { id: "queue-count", class: "count" })), h("ul", { id: "queue", class: "items" })),
        h("section", {}, h("h2", {}, "Mine ", h("span", { id: "mine-count", class: "count" })), h("ul", { id: "mine", class: "items" })),
      ),
      h("main", { id: "main" }),
      h("aside", { id: "customer", class: "customer" }),
    ),
    h("div", { id: "flash", role: "status" }),
  );
  renderStatusBar();
}

function renderStatusBar() {
  const bar = document.getElementById("status-bar");
  if (!bar || !state.me) return;
  const select = h("select", { id: "availability", "aria-label": "Availability", onchange: async (ev) => {
    try {
      const me = await api.put("/api/v1/me/availability", { status: ev.target.value });
      state.me = { ...state.me, ...me };
      renderStatusBar();
    } catch (err) { flash(err.message); }
  } }, ["online", "away", "offline"].map((s) => h("option", { value: s, selected: state.me.status === s }, s)));
  replace(bar,
    h("span", { class: `live ${state.liveState}`, title: "live updates" }, state.liveState),
    select,
    h("span", { class: "me" }, `${state.me.name} (${state.me.role})`),
    h("button", { class: "link", onclick: logout }, "Log out"),
  );
}

function renderLists() {
  const queue = document.getElementById("queue");
  const mine = document.getElementById("mine");
  if (!queue || !mine) return;
  replace(queue, state.queue.length ? state.queue.map(listItem) : h("li", { class: "empty" }, "Nobody is waiting."));
  replace(mine, state.mine.length ? state.mine.map(listItem) : h("li", { class: "empty" }, "No open conversations."));
  replace(document.getElementById("queue-count"), String(state.queue.length));
  const unread = state.mine.filter((c) => state.unread.has(c.id)).length;
  replace(document.getElementById("mine-count"), unread ? `${state.mine.length} · ${unread} new` : String(state.mine.length));
  const badge = state.queue.length + unread;
  document.title = badge ? `(${badge}) carebot console` : "carebot console";
}

function listItem(conv) {
  const waiting = conv.waiting_seconds ?? (conv.queued_at && conv.status === "queued"
    ? (Date.now() - Date.parse(conv.queued_at)) / 1000 : null);
  const preview = conv.preview || {};
  const previewText = preview.text ? `${preview.sender === "customer" ? "" : `${preview.sender}: `}${preview.text}` : "";
  return h("li", {
    class: ["item", conv.id === state.openId ? "open" : "", state.unread.has(conv.id) ? "unread" : "", conv.sla ? `sla-${conv.sla.state}` : ""].join(" "),
    dataset: { id: conv.id },
  },
    h("a", { href: `#/c/${conv.id}` },
      h("span", { class: "who" }, conv.customer_name || `Customer #${conv.customer_id}`),
      h("span", { class: "channel" }, conv.channel),
      waiting !== null ? h("span", { class: "wait", title: "waiting" }, duration(waiting)) : h("span", { class: "wait" }, ago(conv.updated_at)),
      h("span", { class: "preview" }, previewText),
    ),
  );
}

// ---- conversation ----------------------------------------------------------------------

async function openConversation(id) {
  if (state.openId !== id) {
    state.draft = "";
    state.mode = "reply";
  }
  state.openId = id;
  state.unread.delete(id);
  saveUnread();
  replace(document.getElementById("main"), h("p", { class: "empty" }, "Loading…"));
  try {
    state.detail = await api.get(`/api/v1/conversations/${id}`);
    if (state.openId !== id) return;
  } catch (err) {
    replace(document.getElementById("main"), h("p", { class: "error" }, err.message));
    replace(document.getElementById("customer"));
    return;
  }
  renderConversation();
  loadCustomer(state.detail.customer_id ?? state.detail.customer?.id);
  loadAssist(id);
}

function agentName(id) {
  if (id === null || id === undefined) return "";
  if (state.me && id === state.me.id) return state.me.name;
  const agent = state.agents.find((a) => a.id === id);
  return agent ? agent.name : `agent #${id}`;
}

function renderConversation() {
  const d = state.detail;
  const main = document.getElementById("main");
  if (!d || !main) return;
  const mineNow = d.status === "assigned" && d.assigned_agent_id === state.me.id;
  const header = h("div", { class: "conv-head", id: "conv-head" },
    h("h2", {}, d.customer?.name || d.customer_name || `Customer #${d.customer_id}`),
    h("span", { class: `status status-${d.status}` }, d.status),
    d.assigned_agent_id ? h("span", { class: "assignee" }, `with ${agentName(d.assigned_agent_id)}`) : null,
    h("span", { class: "channel" }, d.channel),
    typingIndicator(d.id),
    h("div", { class: "actions" }, actionButtons(d, mineNow)),
  );
  const transcript = h("ol", { class: "transcript", id: "transcript" }, d.messages.map(messageItem));
  pinToBottom(transcript);
  const timeline = h("details", { class: "timeline", id: "timeline" },
    h("summary", {}, `Journey: ${d.touchpoints.length} touchpoints, effort ${d.effort_score}`),
    h("ol", {}, d.touchpoints.map((t) => h("li", { class: `tp tp-${t.actor}` },
      h("span", { class: "tp-kind" }, t.kind.replaceAll("_", " ")),
      h("span", { class: "tp-actor" }, t.agent_id ? agentName(t.agent_id) : t.actor),
      t.effort ? h("span", { class: "tp-effort" }, `+${t.effort} effort`) : null,
      t.wait_ms ? h("span", { class: "tp-wait" }, `waited ${duration(t.wait_ms / 1000)}`) : null,
      h("time", { datetime: t.created_at }, clock(t.created_at)),
    ))),
  );
  const view = main.querySelector(".conversation");
  const composerKey = `${d.id}:${mineNow}:${d.status}`;
  if (view && view.dataset.id === String(d.id)) {
    // Same conversation: swap what changed, keep the composer (and what is being typed).
    const wasOpen = view.querySelector("#timeline")?.open;
    timeline.open = Boolean(wasOpen);
    view.querySelector("#conv-head").replaceWith(header);
    view.querySelector("#transcript").replaceWith(transcript);
    view.querySelector("#timeline").replaceWith(timeline);
    if (view.dataset.composer !== composerKey) {
      view.querySelector(".composer-slot").replaceChildren(composer(d, mineNow));
      view.dataset.composer = composerKey;
    }
  } else {
    replace(main, h("div", { class: "conversation", dataset: { id: d.id, composer: composerKey } },
      header, transcript, timeline, h("div", { class: "composer-slot" }, composer(d, mineNow))));
  }
  transcript.scrollTop = transcript.scrollHeight;
  showRead(transcript, d.customer_read_up_to);
  markSeen(api, d, mineNow);
}

// The transcript stays scrolled to the newest message while the agent has not scrolled up,
// also when the composer or the suggestions below it change size.
function pinToBottom(transcript) {
  let pinned = true;
  transcript.addEventListener("scroll", () => {
    pinned = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 24;
  });
  new ResizeObserver(() => { if (pinned) transcript.scrollTop = transcript.scrollHeight; }).observe(transcript);
}

function messageItem(m) {
  const who = m.sender === "agent" ? agentName(m.agent_id) : m.sender;
  const kind = m.direction === "note" ? "note" : m.sender;
  return h("li", { class: `msg msg-${kind}`, dataset: { id: m.id } },
    h("div", { class: "meta" },
      h("span", { class: "sender" }, m.direction === "note" ? `Private note · ${who}` : who),
      h("time", { datetime: m.created_at }, clock(m.created_at)),
    ),
    h("div", { class: "text" }, m.text),
    m.payload ? h("div", { class: "pressed" }, "pressed: ", h("code", {}, m.payload)) : null,
    m.buttons && m.buttons.length ? h("div", { class: "offered" }, "offered: ",
      m.buttons.map((b) => h("span", { class: "chip" }, b.title ?? b.text ?? String(b)))) : null,
  );
}

function actionButtons(d, mineNow) {
  const buttons = [];
  if (d.status === "queued") {
    buttons.push(h("button", { id: "take", onclick: () => act(`/api/v1/conversations/${d.id}/claim`, {}, "Taken") }, "Take"));
  }
  if (mineNow || (d.status === "assigned" && state.me.role !== "agent")) {
    const target = h("select", { id: "transfer-to", "aria-label": "Transfer to" },
      h("option", { value: "" }, "the queue"),
      state.agents.filter((a) => a.id !== d.assigned_agent_id && !a.disabled).map((a) => h("option", { value: a.id }, `${a.name} (${a.status})`)));
    const note = h("input", { id: "transfer-note", placeholder: "note for the next agent", "aria-label": "Transfer note" });
    buttons.push(h("form", { class: "inline", onsubmit: (ev) => {
      ev.preventDefault();
      act(`/api/v1/conversations/${d.id}/transfer`, { agent_id: target.value ? Number(target.value) : null, note: note.value || null }, "Transferred");
    } }, h("button", { type: "submit", id: "transfer" }, "Transfer to"), target, note));
    const code = h("select", { id: "resolve-code", "aria-label": "Resolution code" }, state.codes.map((c) => h("option", { value: c.code }, c.label)));
    buttons.push(h("form", { class: "inline", onsubmit: (ev) => {
      ev.preventDefault();
      act(`/api/v1/conversations/${d.id}/resolve`, { code: code.value }, "Resolved");
    } }, h("button", { type: "submit", id: "resolve" }, "Resolve as"), code));
    buttons.push(h("button", { id: "handback", onclick: () => act(`/api/v1/conversations/${d.id}/handback`, {}, "Handed back to the bot") }, "Hand back to bot"));
  }
  if (d.status === "queued" || mineNow || state.me.role !== "agent") {
    buttons.push(languageSelector(d));
  }
  return buttons;
}

// The language the bot speaks to the customer: detected from what they write unless set here.
function languageSelector(d) {
  const detected = d.language_override ? "detect" : `detect (${d.language || "default"})`;
  const select = h("select", { id: "language", "aria-label": "Customer's language", onchange: async () => {
    try {
      await api.put(`/api/v1/conversations/${d.id}/language`, { language: select.value || null });
      flash(select.value ? `The bot now speaks ${select.value} here` : "Language detected again");
      refreshOpen(0);
    } catch (err) {
      flash(err.message, true);
    }
  } },
    h("option", { value: "" }, detected),
    (d.languages || []).map((code) => h("option", { value: code }, code)));
  select.value = d.language_override || "";
  return h("label", { class: "inline" }, "Language ", select);
}

async function act(path, body, done) {
  try {
    await api.post(path, body);
    flash(done);
    refreshOpen(0);
    scheduleLists(0);
  } catch (err) {
    flash(err.message, true);
  }
}

function composer(d, mineNow) {
  if (!mineNow && d.status !== "assigned") {
    return h("p", { class: "hint" }, d.status === "queued" ? "Take the conversation to reply." : "This conversation is not open for replies.");
  }
  const text = h("textarea", { id: "composer-text", rows: "4", placeholder: "Type a reply; /shortcut inserts a canned reply", "aria-label": "Message" });
  text.value = state.draft;
  text.addEventListener("input", () => { state.draft = text.value; showCannedHints(text, hints); if (state.mode === "reply") agentTyping(api, d); });
  text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); send(); }
    if ((ev.key === "Tab" || ev.key === " ") && expandCanned(text)) ev.preventDefault();
  });
  const hints = h("ul", { class: "canned-hints", id: "canned-hints" });
  const modeReply = h("input", { type: "radio", name: "mode", id: "mode-reply", value: "reply", checked: state.mode === "reply" });
  const modeNote = h("input", { type: "radio", name: "mode", id: "mode-note", value: "note", checked: state.mode === "note" });
  for (const radio of [modeReply, modeNote]) radio.addEventListener("change", () => { state.mode = radio.value; form.classList.toggle("note-mode", state.mode === "note"); });
  const sendButton = h("button", { type: "submit", id: "send" }, "Send");
  const form = h("form", { class: `composer ${state.mode === "note" ? "note-mode" : ""}`, onsubmit: (ev) => { ev.preventDefault(); send(); } },
    h("div", { class: "modes" },
      h("label", {}, modeReply, " Reply to customer"),
      h("label", {}, modeNote, " Private note"),
    ),
    text, hints,
    h("div", { class: "composer-actions" }, sendButton),
    h("section", { id: "assist", class: "assist" }, h("h3", {}, "Suggested answers"), h("p", { class: "hint" }, "Looking…")),
  );
  async function send() {
    const value = text.value.trim();
    if (!value) return;
    sendButton.disabled = true;
    const path = state.mode === "note" ? "notes" : "reply";
    try {
      await api.post(`/api/v1/conversations/${d.id}/${path}`, { text: value });
      state.draft = "";
      text.value = "";
      refreshOpen(0);
    } catch (err) {
      flash(err.message, true);
    } finally {
      sendButton.disabled = false;
    }
  }
  if (state.assist && state.assist.id === d.id) queueMicrotask(() => renderAssist());
  return form;
}

function showCannedHints(text, hints) {
  const match = text.value.match(/(?:^|\s)\/([a-z0-9_-]*)$/);
  if (!match) { replace(hints); return; }
  const found = state.canned.filter((c) => c.shortcut.startsWith(match[1])).slice(0, 6);
  replace(hints, found.map((c) => h("li", {},
    h("button", { type: "button", class: "link", onclick: () => { insertCanned(text, c); replace(hints); } }, `/${c.shortcut}`),
    " ", c.title)));
}

function expandCanned(text) {
  const match = text.value.match(/(?:^|\s)\/([a-z0-9_-]+)$/);
  if (!match) return false;
  const reply = state.canned.find((c) => c.shortcut === match[1]);
  if (!reply) return false;
  insertCanned(text, reply);
  return true;
}

function insertCanned(text, reply) {
  text.value = text.value.replace(/\/[a-z0-9_-]*$/, reply.text);
  state.draft = text.value;
  text.focus();
}

async function loadAssist(id) {
  state.assist = { id, items: null };
  try {
    const data = await api.get(`/api/v1/conversations/${id}/assist`);
    if (state.openId !== id) return;
    state.assist = { id, items: data.items || [] };
  } catch (err) {
    state.assist = { id, items: [], error: err.message };
  }
  renderAssist();
}

function renderAssist() {
  const box = document.getElementById("assist");
  if (!box || !state.assist) return;
  const { items, error } = state.assist;
  if (items === null) return;
  replace(box, h("h3", {}, "Suggested answers"),
    items.length ? h("ol", {}, items.map((s) => h("li", { class: "suggestion" },
      h("div", { class: "q" }, s.question, h("span", { class: "score" }, ` ${Math.round((s.score || 0) * 100)}%`)),
      h("div", { class: "a" }, s.answer),
      h("button", { type: "button", class: "insert", onclick: () => {
        const text = document.getElementById("composer-text");
        if (!text) return;
        text.value = text.value ? `${text.value}\n${s.answer}` : s.answer;
        state.draft = text.value;
        text.focus();
      } }, "Insert"),
    ))) : h("p", { class: "hint" }, error || "No FAQ answer fits the last question."));
}

// ---- customer panel --------------------------------------------------------------------

async function loadCustomer(customerId) {
  const panel = document.getElementById("customer");
  if (!panel || customerId === undefined || customerId === null) return;
  let customer;
  try {
    customer = await api.get(`/api/v1/customers/${customerId}`);
  } catch (err) {
    replace(panel, h("p", { class: "hint" }, err.message));
    return;
  }
  const d = state.detail;
  if (!d) return;
  replace(panel,
    h("h2", {}, customer.name || `Customer #${customerId}`),
    h("dl", {},
      h("dt", {}, "Channels"),
      h("dd", {}, h("ul", { class: "contacts" }, customer.contacts.map((c) => h("li", {},
        `${c.channel}: `, h("code", {}, c.external_id), c.display_name ? ` (${c.display_name})` : null)))),
      h("dt", {}, "First seen"), h("dd", {}, clock(customer.first_seen_at)),
      h("dt", {}, "Conversations"), h("dd", {}, String(customer.conversations_total)),
      h("dt", {}, "Total effort"), h("dd", {}, String(customer.total_effort)),
    ),
    h("h3", {}, "Earlier conversations"),
    h("ul", { class: "history", id: "history" }, customer.conversations.filter((c) => c.id !== d.id).map((c) => h("li", {},
      h("a", { href: `#/c/${c.id}` }, `#${c.id}`), " ",
      h("span", { class: `status status-${c.status}` }, c.status), " ",
      c.resolution_code ? h("span", { class: "code" }, c.resolution_code) : null, " ",
      h("time", { datetime: c.opened_at }, clock(c.opened_at)),
    ))),
    customer.surveys.length ? [h("h3", {}, "Survey answers"), h("ul", { class: "surveys", id: "surveys" }, customer.surveys.map((s) => h("li", {},
      h("strong", {}, `${s.kind.toUpperCase()} ${s.score ?? "–"}/${s.scale}`), " ",
      h("a", { href: `#/c/${s.conversation_id}` }, `#${s.conversation_id}`),
      s.comment ? h("q", {}, s.comment) : null)))] : null,
  );
}

// ---- small things ----------------------------------------------------------------------

// Keep waiting times fresh without a reload.
setInterval(() => { if (state.me) renderLists(); }, 15000);

async function boot() {
  if (location.pathname === "/console/invite") {
    const token = new URLSearchParams(location.hash.slice(1)).get("token") || location.hash.slice(1);
    showInvite(token);
    return;
  }
  try {
    const session = await api.get("/api/v1/session");
    await start(session);
  } catch (err) {
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) showLogin();
    else showLogin(err.message);
  }
}

boot();
