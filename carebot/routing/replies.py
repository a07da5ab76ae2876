"""What the bot says, and the button payloads it understands."""

from __future__ import annotations

from carebot.domain.messages import Button, OutboundMessage
from carebot.matching.faq import FaqDoc

# Button payloads: short, stable strings (Telegram allows 64 bytes of callback data).
HANDOFF = "handoff"
START = "start"
HELP = "help"
PICK_PREFIX = "faq:"
HELPFUL_YES_PREFIX = "yes:"
HELPFUL_NO_PREFIX = "no:"

GREETING = (
    "Hi! I'm the support assistant. Ask me anything about orders, delivery, returns, "
    "payment or your account, and I'll answer right away. If I can't help, I'll bring in a "
    "person from our team."
)
HELP_TEXT = (
    "Just type your question in your own words, for example \"where is my order?\" or "
    "\"how do I return an item?\". Send /human at any time to talk to a person."
)
NOT_SURE = "I'm not completely sure what you mean. Is it one of these?"
HANDOFF_QUEUED = (
    "I'm passing you to a person from our support team. You're number {position} in the queue; "
    "they'll reply here as soon as they're free."
)
HANDOFF_ASSIGNED = (
    "I've passed your conversation to {agent} from our support team; they'll reply here."
)
STILL_WAITING = "You're still in the queue (number {position}). A person will reply here soon."
# Outside business hours: when the team is back ({when}: "tomorrow at 09:00") and its hours.
HANDOFF_AWAY = (
    "Our support team is away right now, so I've put you in the queue (number {position}). "
    "A person will reply here {when}. You can keep writing: they will see everything. "
    "Our hours: {hours}."
)
STILL_WAITING_AWAY = (
    "You're still in the queue (number {position}). Our team is away right now; a person "
    "will reply here {when}."
)
WHEN_BACK = "as soon as the team is back"
STILL_ASSIGNED = "{agent} has your conversation and will reply here soon."
JOINED = "{agent} has joined the conversation."
STALE_BUTTON = (
    "That button is no longer active. Please type your question, or send /human to talk to a "
    "person."
)
BACK_TO_BOT = "You're back with the assistant. Ask me anything, or send /human for a person."
GLAD = "Glad I could help! If there's anything else, just write."
UNSUPPORTED = (
    "Sorry, I can only read text messages. Please type your question, or send /human to "
    "talk to a person."
)
CARD_NOTICE = (
    "For your safety, please don't send card numbers in this chat: we can't accept them here, "
    "so we removed it and nobody can see it. We will never ask you for your full card number."
)
PRIVATE_ONLY = (
    "Hi! I can only help in a private chat, so your details stay between us. Please write to "
    "me directly: {link}"
)


def answer(doc: FaqDoc) -> OutboundMessage:
    """An FAQ answer followed by "Did this help?" buttons."""
    return OutboundMessage(
        f"{doc.answer}\n\nDid this help?",
        (
            Button("Yes", HELPFUL_YES_PREFIX + doc.id),
            Button("No, talk to a person", HELPFUL_NO_PREFIX + doc.id),
        ),
    )


def suggestions(docs: list[FaqDoc]) -> OutboundMessage:
    """Offer the closest FAQs as buttons, with a way out to a person."""
    buttons = [Button(_short(d.question), PICK_PREFIX + d.id) for d in docs]
    buttons.append(Button("None of these, talk to a person", HANDOFF))
    return OutboundMessage(NOT_SURE, tuple(buttons))


def greeting() -> OutboundMessage:
    """The welcome message, with a way to reach a person."""
    return OutboundMessage(GREETING, (Button("Talk to a person", HANDOFF),))


def private_only(link: str) -> OutboundMessage:
    """The answer to a message in a group chat: support happens in a private chat."""
    return OutboundMessage(PRIVATE_ONLY.format(link=link))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
