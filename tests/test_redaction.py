"""Card numbers (and optionally IBANs, e-mails, phones) are masked before anything stores,
shows, matches or logs them; the customer is told once per conversation."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Update

from carebot.channels.http import parse_message
from carebot.channels.telegram import Noted, Routed, classify
from carebot.db.models import Message, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.domain.redaction import Redactor, iban_valid, luhn_valid, mask_cards
from carebot.routing import replies
from carebot.settings import Settings, SettingsError
from carebot.web.timers import tick
from tests.fakes.fixtures import load_update
from tests.helpers import Customer, bearer, create_app, make_agent
from tests.privacy_support import stored_anywhere

Client = TestClient[Any, Any]
CARD = "4111 1111 1111 1111"
CARD_FORMS = (CARD, "4111111111111111", "4111-1111-1111-1111")
EVERYTHING = Redactor(["iban", "email", "phone"])


@pytest.mark.parametrize(("text", "expected", "kinds"), [
    ("my card number is 4111 1111 1111 1111", "my card number is [card number removed]",
     {"card"}),
    ("4111-1111-1111-1111 exp 12/26 cvc 123", "[card number removed] exp 12/26 cvc 123",
     {"card"}),
    ("card 4111 1111 1111 1111 12/26", "card [card number removed] 12/26", {"card"}),
    ("amex 3782 822463 10005", "amex [card number removed]", {"card"}),
    ("two: 5500000000000004, 4012888888881881",
     "two: [card number removed], [card number removed]", {"card"}),
    # Not Luhn-valid, or not the shape of a card: left alone.
    ("order 4111111111111112", "order 4111111111111112", set()),
    ("order 1234567890123", "order 1234567890123", set()),
    ("tracking 1Z999AA10123456784", "tracking 1Z999AA10123456784", set()),
    ("on 2026-03-12 at 10:30, 12 000 EUR", "on 2026-03-12 at 10:30, 12 000 EUR", set()),
    ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [IBAN removed] ok", {"iban"}),
    ("iban de89370400440532013000.", "iban [IBAN removed].", {"iban"}),
    ("not an IBAN DE00 3704 0044 0532 0130 00", "not an IBAN DE00 3704 0044 0532 0130 00",
     set()),
    ("write to anna.k+shop@example.co.uk!", "write to [email removed]!", {"email"}),
    ("call +49 30 1234 5678", "call [phone number removed]", {"phone"}),
    ("or (030) 123-4567 tomorrow", "or [phone number removed] tomorrow", {"phone"}),
    ("order number 123456789", "order number 123456789", set()),
])
def test_what_is_masked(text: str, expected: str, kinds: set[str]) -> None:
    masked = EVERYTHING(text)
    assert (masked.text, set(masked.kinds)) == (expected, kinds)


def test_only_cards_unless_configured() -> None:
    text = "anna@example.com +49 30 1234 5678 DE89370400440532013000 4111111111111111"
    assert Redactor()(text).text == (
        "anna@example.com +49 30 1234 5678 DE89370400440532013000 [card number removed]")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234")
    with pytest.raises(ValueError, match="unknown redaction kind"):
        Redactor(["passport"])
    with pytest.raises(SettingsError, match="CAREBOT_REDACT_EXTRA"):
        Settings.from_env({"CAREBOT_REDACT_EXTRA": "card,passport"})


def test_channels_mask_before_handing_the_message_over() -> None:
    msg = parse_message({"user_id": "u", "message_id": "m", "text": f"pay with {CARD}",
                         "name": "Anna anna@example.com"}, 4096, Redactor(["email"]))
    assert (msg.text, msg.display_name) == ("pay with [card number removed]",
                                             "Anna [email removed]")
    assert msg.redacted == {"card", "email"}
    update = Update.de_json(load_update("private_text", text=f"card {CARD}"), None)
    routed = classify(update, "carebot_test_bot")
    assert isinstance(routed, Routed)
    assert routed.message.text == "card [card number removed]"
    assert routed.message.redacted == {"card"}
    edited = classify(Update.de_json(load_update("edited_message", text=f"oops {CARD}"), None),
                      "carebot_test_bot")
    assert isinstance(edited, Noted)
    assert edited.note.details["text"] == "oops [card number removed]"


def test_log_lines_never_carry_a_card_number(caplog: pytest.LogCaptureFixture) -> None:
    from carebot.web.logs import install

    install()
    log = logging.getLogger("carebot.test")
    with caplog.at_level(logging.INFO):
        log.info("customer wrote %s", CARD)
        try:
            raise ValueError(f"bad value {CARD_FORMS[1]}")
        except ValueError:
            log.exception("failed")
    text = caplog.text
    assert "[card number removed]" in text
    assert all(form not in text for form in CARD_FORMS), text
    assert mask_cards("x 4111111111111111 y") == "x [card number removed] y"


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    app = create_app(replace(settings, run_timers=False, run_worker=False), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def test_a_card_number_is_never_stored_shown_or_logged(
    client: Client, sessions: async_sessionmaker[AsyncSession], settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, token = await make_agent(sessions, "Alex", "agent", status="online")
    anna = Customer(client, "anna", name="Anna")
    first = await anna.say(f"my card number is {CARD}, where is my order?")
    assert first["replies"][0]["text"] == replies.CARD_NOTICE
    assert len(first["replies"]) > 1  # and the message is still answered
    # Told once per conversation, in any state: not again, not after a handoff.
    again = await anna.say(f"card {CARD_FORMS[2]} exp 12/26")
    assert replies.CARD_NOTICE not in [r["text"] for r in again["replies"]]
    handed = await anna.say("I want to talk to a person")
    cid = handed["conversation_id"]
    assert handed["status"] == "assigned"
    await anna.say(f"here it is again {CARD_FORMS[1]}")
    # The agent sees the masked text; an agent typing a card number has it masked too.
    resp = await client.get(f"/api/v1/conversations/{cid}", headers=bearer(token))
    detail = await resp.json()
    texts = [m["text"] for m in detail["messages"] if m["sender"] == "customer"]
    assert texts[0] == "my card number is [card number removed], where is my order?"
    resp = await client.post(f"/api/v1/conversations/{cid}/reply", headers=bearer(token),
                             json={"text": "I see 4012 8888 8888 1881 on file"})
    assert (await resp.json())["text"] == "I see [card number removed] on file"
    async with sessions() as session:
        kinds = list(await session.scalars(
            select(Touchpoint.kind).where(Touchpoint.kind.in_(["redacted", "redaction_notice"]))
            .order_by(Touchpoint.id)))
        first_in = await session.scalar(select(Message).where(Message.sender == "customer")
                                        .order_by(Message.id).limit(1))
    assert kinds == ["redacted", "redaction_notice", "redacted", "redacted"]
    assert first_in is not None and "[card number removed]" in first_in.text
    # Nowhere: not in a column, not in the database file, its WAL or a dump, not in the logs.
    needles = [*CARD_FORMS, "4012 8888 8888 1881"]
    assert await stored_anywhere(settings.database_url, needles) == []
    assert all(n not in caplog.text for n in needles)


async def test_a_new_conversation_is_told_again(
    client: Client, clock: ManualClock
) -> None:
    bea = Customer(client, "bea")
    first = await bea.say(f"{CARD}")
    assert first["replies"][0]["text"] == replies.CARD_NOTICE
    clock.advance(minutes=31)
    await tick(client.server.app)  # resolved as a timeout
    clock.advance(days=2)  # past the reopen window: a new conversation
    again = await bea.say(f"{CARD_FORMS[1]}")
    assert again["conversation_id"] != first["conversation_id"]
    assert again["replies"][0]["text"] == replies.CARD_NOTICE
