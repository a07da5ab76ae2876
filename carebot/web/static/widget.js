/* carebot web chat widget: <script src="https://CAREBOT/widget.js" data-site="KEY" async></script>
 * Optional, for a signed-in user of the site: data-user-id, data-user-hash (HMAC-SHA256 of the
 * id with the site's secret, made on the site's server) and data-user-name.
 * No framework, no build step. Everything lives in a shadow root with its own stylesheet, so
 * the page's CSS cannot reach in and the widget's cannot leak out; every text is set with
 * textContent, never parsed as HTML. */
(function () {
  "use strict";
  var script = document.currentScript ||
    document.querySelector('script[data-site][src*="widget.js"]');
  if (!script || window.__carebotWidget) return;
  window.__carebotWidget = true;
  var SITE = script.getAttribute("data-site") || "";
  var BASE = new URL(script.src, location.href).origin;
  var USER = script.getAttribute("data-user-id");
  var identity = USER ? { id: USER, hash: script.getAttribute("data-user-hash") || "",
                          name: script.getAttribute("data-user-name") || "" } : null;
  var PREFIX = "carebot." + SITE + ".";

  var memory = {};
  function load(name) {
    try { return localStorage.getItem(PREFIX + name); } catch (e) { return memory[name] || null; }
  }
  function save(name, value) {
    try { localStorage.setItem(PREFIX + name, value); } catch (e) { memory[name] = value; }
  }

  var CSS = [
    ":host{all:initial}",
    "*{box-sizing:border-box;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;font-size:14px;line-height:1.4}",
    ".bubble{position:fixed;right:20px;bottom:20px;width:56px;height:56px;border-radius:50%;border:0;background:var(--c);color:#fff;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);z-index:2147483000;display:flex;align-items:center;justify-content:center}",
    ".bubble svg{width:26px;height:26px;fill:#fff}",
    ".badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#dc2626;color:#fff;font-size:12px;padding:0 5px;display:flex;align-items:center;justify-content:center}",
    ".panel{position:fixed;right:20px;bottom:88px;width:360px;height:520px;max-height:calc(100vh - 110px);background:#fff;color:#111;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden;z-index:2147483000}",
    "@media (max-width:480px){.panel{right:0;bottom:0;width:100vw;height:100vh;max-height:100vh;border-radius:0}}",
    "[hidden]{display:none!important}",
    "header{background:var(--c);color:#fff;padding:12px 14px;display:flex;align-items:flex-start;gap:8px}",
    "header div{flex:1;min-width:0}",
    "h2{margin:0;font-size:16px;font-weight:600}",
    ".sub{font-size:12px;opacity:.9;margin-top:2px}",
    ".x{background:none;border:0;color:#fff;font-size:22px;line-height:1;cursor:pointer;padding:0 4px}",
    "ol{list-style:none;margin:0;padding:12px;flex:1;overflow-y:auto;display:flex;flex-direction:column;gap:8px;background:#f7f7f8}",
    "li{max-width:85%;display:flex;flex-direction:column;gap:4px}",
    ".t{padding:8px 11px;border-radius:12px;white-space:pre-wrap;overflow-wrap:anywhere;background:#fff;border:1px solid #e5e7eb}",
    ".visitor{align-self:flex-end;align-items:flex-end}",
    ".visitor .t{background:var(--c);color:#fff;border-color:transparent}",
    ".system{align-self:center;max-width:95%}",
    ".system .t{background:none;border:0;color:#555;font-size:12px;text-align:center;padding:2px}",
    ".who{font-size:11px;color:#666;padding:0 4px}",
    ".mark{font-size:11px;color:#666;padding:0 4px}",
    ".failed .t{opacity:.6}",
    ".failed .mark{color:#b91c1c}",
    ".btns{display:flex;flex-wrap:wrap;gap:6px}",
    ".btns button,.retry,.older{border:1px solid var(--c);color:var(--c);background:#fff;border-radius:16px;padding:5px 11px;cursor:pointer}",
    ".btns button:hover{background:var(--c);color:#fff}",
    ".older{align-self:center;font-size:12px}",
    ".err{background:#fef2f2;color:#991b1b;padding:8px 12px;font-size:13px;border-top:1px solid #fecaca}",
    "form{display:flex;gap:8px;padding:10px;border-top:1px solid #e5e7eb;background:#fff}",
    "textarea{flex:1;resize:none;border:1px solid #d1d5db;border-radius:8px;padding:8px;height:40px;max-height:120px;color:#111;background:#fff}",
    "textarea:focus{outline:2px solid var(--c);outline-offset:-1px}",
    ".send{background:var(--c);color:#fff;border:0;border-radius:8px;padding:0 14px;cursor:pointer}",
    ".send:disabled{opacity:.5;cursor:default}"
  ].join("\n");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // The widget's own words: English until `ready` brings them in the visitor's language.
  var L = {
    open: "Open chat", close: "Close chat", earlier: "Earlier messages", message: "Message",
    placeholder: "Write a message\u2026", send: "Send", online: "We're online",
    sending: "Sending\u2026", sent: "Sent \u2713", read: "Read \u2713\u2713",
    not_sent: "Not sent.", retry: "Retry", typing: "{name} is typing\u2026", someone: "Someone"
  };
  var state = {
    site: null, ws: null, ready: false, open: load("open") === "1", delay: 500,
    maxId: 0, readSent: 0, agentRead: 0, unread: 0, pending: {}, nodes: {}, items: {},
    more: false, typingTimer: null, typingSent: 0, closedForGood: false, connecting: false,
    agentsOnline: false, retryTimer: null
  };

  // ---- the DOM ---------------------------------------------------------------------------
  var host = el("div");
  host.id = "carebot-chat";
  var root = host.attachShadow({ mode: "open" });
  if (root.adoptedStyleSheets !== undefined && window.CSSStyleSheet) {
    // A constructed sheet is not an inline style: it works under the page's strict CSP too.
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    root.adoptedStyleSheets = [sheet];
  } else {
    root.appendChild(el("style", null, CSS));
  }
  var bubble = el("button", "bubble");
  bubble.type = "button";
  var SVG = "http://www.w3.org/2000/svg";
  var icon = document.createElementNS(SVG, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  var path = document.createElementNS(SVG, "path");
  path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z");
  icon.appendChild(path);
  bubble.appendChild(icon);
  var badge = el("span", "badge");
  badge.hidden = true;
  bubble.appendChild(badge);
  var panel = el("section", "panel");
  panel.setAttribute("role", "dialog");
  panel.hidden = true;
  var head = el("header");
  var titles = el("div");
  var title = el("h2");
  var sub = el("div", "sub");
  titles.appendChild(title);
  titles.appendChild(sub);
  var close = el("button", "x", "\u00d7");
  close.type = "button";
  head.appendChild(titles);
  head.appendChild(close);
  var list = el("ol");
  list.setAttribute("role", "log");
  list.setAttribute("aria-live", "polite");
  var older = el("button", "older");
  older.type = "button";
  older.hidden = true;
  var greeting = el("li", "bot");
  var err = el("div", "err");
  err.setAttribute("role", "alert");
  err.hidden = true;
  var form = el("form");
  var input = el("textarea");
  var send = el("button", "send");
  send.type = "submit";
  form.appendChild(input);
  form.appendChild(send);
  panel.appendChild(head);
  panel.appendChild(list);
  panel.appendChild(err);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(bubble);

  function label() {
    bubble.setAttribute("aria-label", panel.hidden ? L.open : L.close);
    close.setAttribute("aria-label", L.close);
    older.textContent = L.earlier;
    input.setAttribute("aria-label", L.message);
    input.placeholder = L.placeholder;
    send.textContent = L.send;
  }
  label();

  // ---- showing messages ------------------------------------------------------------------
  function showError(text) {
    err.textContent = text || "";
    err.hidden = !text;
  }

  function subtitle(typing) {
    if (typing) { sub.textContent = typing; return; }
    sub.textContent = state.agentsOnline ? L.online : (state.site && state.site.offline_text) || "";
  }

  function bubbleFor(m) {
    var who = m.from === "visitor" ? "visitor" : m.from === "system" ? "system" : m.from;
    var li = el("li", who);
    if (m.from === "agent" && m.agent) li.appendChild(el("span", "who", m.agent));
    li.appendChild(el("div", "t", m.text));
    if (m.buttons && m.buttons.length) {
      var row = el("div", "btns");
      m.buttons.forEach(function (b) {
        var button = el("button", null, b.title);
        button.type = "button";
        button.addEventListener("click", function () { say(b.title, b.payload); });
        row.appendChild(button);
      });
      li.appendChild(row);
    }
    if (m.from === "visitor") li.appendChild(el("span", "mark"));
    return li;
  }

  function place(li, id) {
    // Messages sit in id order whatever order they arrive in; unsent ones stay last.
    if (!id) { list.appendChild(li); return; }
    var nodes = list.children;
    for (var i = 0; i < nodes.length; i++) {
      var other = Number(nodes[i].getAttribute("data-id") || 0);
      if (other > id || (!other && nodes[i] !== greeting && nodes[i] !== older)) {
        list.insertBefore(li, nodes[i]);
        return;
      }
    }
    list.appendChild(li);
  }

  function show(m) {
    if (state.items[m.id]) return false;  // shown already: never twice
    state.items[m.id] = m;
    if (m.cid && state.pending[m.cid]) {
      list.removeChild(state.pending[m.cid].node);
      delete state.pending[m.cid];
    }
    var li = bubbleFor(m);
    li.setAttribute("data-id", m.id);
    state.nodes[m.id] = li;
    place(li, m.id);
    if (m.id > state.maxId) state.maxId = m.id;
    return true;
  }

  function refreshMarks() {
    // A visitor's message is read once an agent has seen it, or the bot or an agent answered
    // after it (a notice such as a survey question does not count).
    var ids = Object.keys(state.items).map(Number).sort(function (a, b) { return a - b; });
    var answered = 0;
    for (var i = ids.length - 1; i >= 0; i--) {
      var m = state.items[ids[i]];
      if (m.from !== "visitor") { if (!answered && m.from !== "system") answered = m.id; continue; }
      var read = m.id <= state.agentRead || (answered && answered > m.id);
      var mark = state.nodes[m.id].querySelector(".mark");
      mark.textContent = read ? L.read : L.sent;
    }
    // Buttons only under the latest message, until the visitor answers.
    var last = ids.length ? state.items[ids[ids.length - 1]] : null;
    list.querySelectorAll(".btns").forEach(function (row) {
      row.hidden = !last || row.parentNode !== state.nodes[last.id];
    });
  }

  function showAll(messages, quiet) {
    var fresh = 0;
    messages.forEach(function (m) {
      if (show(m) && m.from !== "visitor") fresh++;
    });
    refreshMarks();
    if (!quiet && fresh && !state.open) {
      state.unread += fresh;
      badge.textContent = String(state.unread);
      badge.hidden = false;
    }
    list.scrollTop = list.scrollHeight;
    markRead();
  }

  function markRead() {
    if (!state.open || document.visibilityState !== "visible" || !state.ready) return;
    if (state.maxId > state.readSent) {
      state.readSent = state.maxId;
      frame({ type: "read", up_to: state.maxId });
    }
  }

  // ---- sending ---------------------------------------------------------------------------
  function newCid() {
    var bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function frame(data) {
    if (state.ws && state.ws.readyState === 1) {
      state.ws.send(JSON.stringify(data));
      return true;
    }
    return false;
  }

  function say(text, payload) {
    text = (text || "").trim();
    if (!text && !payload) return;
    var cid = newCid();
    var li = bubbleFor({ from: "visitor", text: text });
    li.querySelector(".mark").textContent = L.sending;
    place(li, 0);
    list.scrollTop = list.scrollHeight;
    state.pending[cid] = { node: li, text: text, payload: payload || null };
    save("active", "1");
    transmit(cid);
    if (!state.ws) connect();
  }

  function transmit(cid) {
    var p = state.pending[cid];
    if (!p || !state.ready) return;  // sent on (re)connect
    var data = { type: "message", cid: cid, text: p.text };
    if (p.payload) data.payload = p.payload;
    p.node.classList.remove("failed");
    frame(data);
  }

  function failed(cid, message) {
    var p = state.pending[cid];
    if (!p) return;
    p.node.classList.add("failed");
    var mark = p.node.querySelector(".mark");
    mark.textContent = L.not_sent + " ";
    var retry = el("button", "retry", L.retry);
    retry.type = "button";
    retry.addEventListener("click", function () {
      mark.textContent = L.sending;
      showError("");
      transmit(cid);
    });
    mark.appendChild(retry);
    showError(message);
  }

  // ---- the socket ------------------------------------------------------------------------
  function connect() {
    if (state.ws || state.closedForGood || !state.site) return;
    var url = BASE.replace(/^http/, "ws") + "/api/v1/channels/web/socket?site=" + encodeURIComponent(SITE);
    var ws = new WebSocket(url);
    state.ws = ws;
    ws.onopen = function () {
      var hello = { type: "hello", since: state.maxId };
      // The page's language (or the browser's): the bot answers in it until the visitor
      // writes in another.
      var lang = document.documentElement.lang || navigator.language;
      if (lang) hello.language = String(lang).slice(0, 35);
      if (identity) hello.user = identity;
      // Signed in: the anonymous token (if this browser chatted before) lets carebot join
      // that earlier chat to the account.
      if (load("visitor")) hello.visitor = load("visitor");
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = function (ev) {
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      receive(data);
    };
    ws.onclose = function (ev) {
      state.ws = null;
      state.ready = false;
      if (ev.code === 4003 || ev.code === 4008) {
        // Refused (identity, origin, too many windows): the reason is shown; retrying won't help.
        state.closedForGood = true;
        input.disabled = send.disabled = true;
        return;
      }
      setTimeout(connect, state.delay);
      state.delay = Math.min(state.delay * 2, 10000);
    };
  }

  function receive(data) {
    switch (data.type) {
      case "ready":
        state.ready = true;
        state.delay = 500;
        if (data.visitor) save("visitor", data.visitor);
        state.site = Object.assign({}, state.site, data.site, { max_text: data.max_text });
        state.agentsOnline = data.agents_online;
        if (data.read_up_to) state.agentRead = data.read_up_to;
        if (data.labels) { Object.assign(L, data.labels); label(); }
        look();
        showError("");
        Object.keys(state.pending).forEach(transmit);
        break;
      case "history":
        state.more = data.more;
        older.hidden = !data.more;
        showAll(data.messages, true);
        break;
      case "messages":
        showAll(data.messages, false);
        break;
      case "older":
        state.more = data.more;
        older.hidden = !data.more;
        showAll(data.messages, true);
        list.scrollTop = 0;
        break;
      case "ack":
        var p = state.pending[data.cid];
        if (p) p.node.querySelector(".mark").textContent = L.sent;
        showError("");
        break;
      case "typing":
        subtitle(L.typing.replace("{name}", data.name || L.someone));
        clearTimeout(state.typingTimer);
        state.typingTimer = setTimeout(function () { subtitle(); }, 6000);
        break;
      case "read":
        state.agentRead = Math.max(state.agentRead, data.up_to || 0);
        refreshMarks();
        break;
      case "presence":
        state.agentsOnline = data.agents_online;
        subtitle();
        break;
      case "error":
        if (data.code === "unavailable" && data.cid) {
          showError(data.message);
          setTimeout(function () { transmit(data.cid); }, (data.retry_after || 5) * 1000);
        } else if (data.cid && state.pending[data.cid]) {
          failed(data.cid, data.message);
        } else {
          showError(data.message);
        }
        break;
    }
  }

  // ---- opening, closing, typing ----------------------------------------------------------
  function look() {
    var s = state.site;
    host.style.setProperty("--c", s.colour);
    title.textContent = s.title;
    panel.setAttribute("aria-label", s.title);
    greeting.textContent = "";
    greeting.appendChild(el("div", "t", s.greeting));
    greeting.hidden = !s.greeting;
    input.maxLength = s.max_text || 2000;
    subtitle();
  }

  function setOpen(open, byUser) {
    state.open = open;
    save("open", open ? "1" : "0");
    panel.hidden = !open;
    bubble.setAttribute("aria-label", open ? L.close : L.open);
    bubble.setAttribute("aria-expanded", open ? "true" : "false");
    if (open) {
      state.unread = 0;
      badge.hidden = true;
      connect();
      list.scrollTop = list.scrollHeight;
      if (byUser) input.focus();  // a page that loads with the chat open keeps its focus
      markRead();
    } else if (byUser) {
      bubble.focus();
    }
  }

  bubble.addEventListener("click", function () { setOpen(!state.open, true); });
  panel.addEventListener("keydown", function (ev) { if (ev.key === "Escape") setOpen(false, true); });
  close.addEventListener("click", function () { setOpen(false, true); });
  older.addEventListener("click", function () {
    var first = Object.keys(state.items).map(Number).sort(function (a, b) { return a - b; })[0];
    if (first) frame({ type: "older", before: first });
  });
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value;
    if (!text.trim()) return;
    input.value = "";
    // The next keystroke starts a new draft, and the agent should hear of it at once.
    state.typingSent = 0;
    say(text);
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (now - state.typingSent > 2000 && frame({ type: "typing" })) state.typingSent = now;
  });
  document.addEventListener("visibilitychange", markRead);
  window.addEventListener("online", function () {
    if (!state.ws && !state.closedForGood) { state.delay = 500; connect(); }
  });

  // ---- start: the site's look first (refused on pages of other origins) ------------------
  fetch(BASE + "/api/v1/channels/web/sites/" + encodeURIComponent(SITE), { credentials: "omit" })
    .then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    })
    .then(function (site) {
      state.site = site;
      state.agentsOnline = site.agents_online;
      list.appendChild(older);
      list.appendChild(greeting);
      look();
      (document.body || document.documentElement).appendChild(host);
      if (state.open) setOpen(true);
      else if (load("active") === "1") connect();  // replies arrive (and count) while closed
    })
    .catch(function (e) {
      // A page whose origin the site does not allow gets no CORS headers: a failed fetch.
      if (window.console) console.warn("carebot chat: not shown on this page (" + (e.message || e) +
        "); is " + location.origin + " one of the site's origins?");
    });
})();
