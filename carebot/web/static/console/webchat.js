// Web chat in the console: "typing…" while the customer types, the agent's own typing shown
// in the visitor's widget, and read marks (the agent has seen the visitor's messages).

import { h } from "../common/dom.js";

const TYPING_SHOWN_MS = 6000;
const TYPING_EVERY_MS = 2500;
const typing = { conversation: null, until: 0, timer: null };
let sentTypingAt = 0;
const seenUpTo = new Map();

// A live event of the customer typing: shown in the open conversation's header for a while.
export function customerTyping(event, openId) {
  if (event.conversation_id !== openId) return;
  typing.conversation = openId;
  typing.until = Date.now() + TYPING_SHOWN_MS;
  updateIndicator();
  clearTimeout(typing.timer);
  typing.timer = setTimeout(updateIndicator, TYPING_SHOWN_MS + 50);
}

// The indicator for the conversation header (kept across re-renders of the header).
export function typingIndicator(conversationId) {
  const el = h("span", { id: "customer-typing", class: "typing", "aria-live": "polite" });
  queueMicrotask(() => updateIndicator(conversationId));
  return el;
}

function updateIndicator() {
  const el = document.getElementById("customer-typing");
  if (!el) return;
  const on = Date.now() < typing.until;
  el.textContent = on ? "typing…" : "";
  el.hidden = !on;
}

// The agent types in the composer: the visitor's widget shows it (at most every 2.5 s).
export function agentTyping(api, conv) {
  if (conv.channel !== "web" || Date.now() - sentTypingAt < TYPING_EVERY_MS) return;
  sentTypingAt = Date.now();
  api.post(`/api/v1/conversations/${conv.id}/typing`, {}).catch(() => {});
}

// "Read" under the newest message to the visitor that their widget has shown them.
export function showRead(transcript, upTo) {
  if (!transcript) return;
  for (const old of transcript.querySelectorAll(".read-mark")) old.remove();
  if (!upTo) return;
  const sent = [...transcript.querySelectorAll("li.msg-agent, li.msg-bot")]
    .filter((li) => li.dataset.id && Number(li.dataset.id) <= upTo);
  const last = sent[sent.length - 1];
  if (last) last.querySelector(".meta").append(h("span", { class: "read-mark" }, "Read"));
}

// The agent who has the conversation sees it: the visitor's messages so far are read.
export function markSeen(api, conv, mine) {
  if (conv.channel !== "web" || !mine) return;
  const last = conv.messages.filter((m) => m.direction === "in").map((m) => m.id).pop();
  if (!last || (seenUpTo.get(conv.id) || 0) >= last) return;
  seenUpTo.set(conv.id, last);
  api.post(`/api/v1/conversations/${conv.id}/seen`, { up_to: last }).catch(() => {});
}
