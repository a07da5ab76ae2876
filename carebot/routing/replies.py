"""What the bot says, and the button payloads it understands.

Every text here is a catalog message (`N_`): the writer sends it in the conversation's
language (carebot/locale/, `make catalogs`). Placeholders are `{name}`; a translation keeps
the same ones."""

from __future__ import annotations

from carebot.domain.messages import Button, OutboundMessage
from carebot.domain.texts import N_, button, say
from carebot.matching.faq import FaqDoc

# Button payloads: short, stable strings (Telegram allows 64 bytes of callback data).
HANDOFF = "handoff"
START = "start"
HELP = "help"
PICK_PREFIX = "faq:"
HELPFUL_YES_PREFIX = "yes:"
HELPFUL_NO_PREFIX = "no:"

GREETING = N_(
    "Hi! I'm the support assistant. Ask me anything about orders, delivery, returns, "
    "payment or your account, and I'll answer right away. If I can't help, I'll bring in a "
    "person from our team."
)
HELP_TEXT = N_(
    "Just type your question in your own words, for example \"where is my order?\" or "
    "\"how do I return an item?\". Send /human at any time to talk to a person."
)
NOT_SURE = N_("I'm not completely sure what you mean. Is it one of these?")
HANDOFF_QUEUED = N_(
    "I'm passing you to a person from our support team. You're number {position} in the queue; "
    "they'll reply here as soon as they're free."
)
HANDOFF_ASSIGNED = N_(
    "I've passed your conversation to {agent} from our support team; they'll reply here."
)
STILL_WAITING = N_(
    "You're still in the queue (number {position}). A person will reply here soon."
)
# Outside business hours: when the team is back ({when}: "tomorrow at 09:00") and its hours.
HANDOFF_AWAY = N_(
    "Our support team is away right now, so I've put you in the queue (number {position}). "
    "A person will reply here {when}. You can keep writing: they will see everything. "
    "Our hours: {hours}."
)
STILL_WAITING_AWAY = N_(
    "You're still in the queue (number {position}). Our team is away right now; a person "
    "will reply here {when}."
)
WHEN_BACK = N_("as soon as the team is back")
STILL_ASSIGNED = N_("{agent} has your conversation and will reply here soon.")
JOINED = N_("{agent} has joined the conversation.")
STALE_BUTTON = N_(
    "That button is no longer active. Please type your question, or send /human to talk to a "
    "person."
)
BACK_TO_BOT = N_(
    "You're back with the assistant. Ask me anything, or send /human for a person."
)
GLAD = N_("Glad I could help! If there's anything else, just write.")
UNSUPPORTED = N_(
    "Sorry, I can only read text messages. Please type your question, or send /human to "
    "talk to a person."
)
CARD_NOTICE = N_(
    "For your safety, please don't send card numbers in this chat: we can't accept them here, "
    "so we removed it and nobody can see it. We will never ask you for your full card number."
)
PRIVATE_ONLY = N_(
    "Hi! I can only help in a private chat, so your details stay between us. Please write to "
    "me directly: {link}"
)


# Button titles.
YES = N_("Yes")
NO_PERSON = N_("No, talk to a person")
NONE_OF_THESE = N_("None of these, talk to a person")
TALK_TO_PERSON = N_("Talk to a person")
DID_THIS_HELP = N_("{answer}\n\nDid this help?")
# An answer the knowledge base has only in the default language.
NOT_TRANSLATED = N_(
    "(Sorry, this answer is not available in your language yet.)\n\n{answer}\n\n"
    "Did this help?"
)


def answer(doc: FaqDoc, language: str | None = None, default: str | None = None) -> (
    OutboundMessage
):
    """An FAQ answer, in `language` when the entry has it (else in the `default` language,
    with a note saying so), followed by "Did this help?" buttons."""
    translated = doc.in_language(language)
    buttons = (
        button(YES, HELPFUL_YES_PREFIX + doc.id),
        button(NO_PERSON, HELPFUL_NO_PREFIX + doc.id),
    )
    if translated is not None:
        return say(DID_THIS_HELP, buttons, answer=translated.answer)
    if language is None or language == default:
        return say(DID_THIS_HELP, buttons, answer=doc.answer)
    return say(NOT_TRANSLATED, buttons, answer=doc.answer)


def suggestions(docs: list[FaqDoc], language: str | None = None) -> OutboundMessage:
    """Offer the closest FAQs (their questions in `language` when translated) as buttons,
    with a way out to a person."""
    buttons = []
    for d in docs:
        tr = d.in_language(language)
        buttons.append(Button(_short(tr.question if tr else d.question), PICK_PREFIX + d.id))
    buttons.append(button(NONE_OF_THESE, HANDOFF))
    return say(NOT_SURE, tuple(buttons))


def greeting() -> OutboundMessage:
    """The welcome message, with a way to reach a person."""
    return say(GREETING, (button(TALK_TO_PERSON, HANDOFF),))


def private_only(link: str) -> OutboundMessage:
    """The answer to a message in a group chat: support happens in a private chat."""
    return say(PRIVATE_ONLY, link=link)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
