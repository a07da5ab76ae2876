"""Outbound on the HTTP channel: agent replies POSTed to the bridge's callback URL through the
outbox, with the shared secret, an idempotency key, retries and permanent failures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import OutboxMessage, Touchpoint
from carebot.domain.clock import ManualClock
from carebot.settings import Settings, SettingsError
from carebot.web.keys import FAQ_INDEX, INBOUND, MATCHER_BUILDER, POLICY
from carebot.web.worker_app import create_worker_app, running
from tests.helpers import Customer, bearer, create_app, make_agent
from tests.telegram_support import eventually, outbox_row, queue_messages

Client = TestClient[Any, Any]


class Bridge:
    """A messenger bridge on loopback: records callbacks and answers with scripted statuses."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.statuses: list[int] = []  # answered in order; then 200

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/carebot", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        self.calls.append((dict(request.headers), await request.json()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status == 200}, status=status)


@pytest.fixture
async def bridge(aiohttp_server: Any) -> tuple[Bridge, TestServer]:
    fake = Bridge()
    server = await aiohttp_server(fake.app())
    return fake, server


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    bridge: tuple[Bridge, TestServer],
) -> Client:
    _, server = bridge
    app = create_app(replace(
        settings, run_timers=False, http_channel_secret="bridge-secret",
        http_channel_callback_url=str(server.make_url("/carebot")),
        outbox_poll_seconds=0.05, outbox_backoff_seconds=1.0,
    ), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def _reply_from_agent(
    client: Client, sessions: async_sessionmaker[AsyncSession], text: str
) -> int:
    """Hand a customer to an online agent who replies; return the reply's outbox row id."""
    _, token = await make_agent(sessions, "Alex")
    headers = bearer(token)
    await client.put("/api/v1/me/availability", json={"status": "online"}, headers=headers)
    customer = Customer(client, "u-42", "Uma", headers={"X-Carebot-Secret": "bridge-secret"})
    cid = (await customer.say("I want to talk to a person"))["conversation_id"]
    resp = await client.post(f"/api/v1/conversations/{cid}/reply", json={"text": text},
                             headers=headers)
    assert resp.status == 201, await resp.text()
    message_id = (await resp.json())["id"]
    async with sessions() as session:
        row_id = await session.scalar(
            select(OutboxMessage.id).where(OutboxMessage.message_id == message_id))
    assert row_id is not None
    return row_id


async def _status(sessions: async_sessionmaker[AsyncSession], row_id: int) -> OutboxMessage:
    async with sessions() as session:
        row = await session.get(OutboxMessage, row_id)
        assert row is not None
        return row


async def test_agent_reply_reaches_the_bridge_with_secret_and_idempotency_key(
    client: Client, sessions: async_sessionmaker[AsyncSession],
    bridge: tuple[Bridge, TestServer],
) -> None:
    fake, _ = bridge
    row_id = await _reply_from_agent(client, sessions, "Hi Uma, Alex here.")

    async def sent() -> bool:
        return (await _status(sessions, row_id)).status == "sent"

    await eventually(sent, what="the reply to be delivered")
    # The bot's inline replies came back in the HTTP responses; only the agent's is called back.
    assert len(fake.calls) == 1
    headers, body = fake.calls[0]
    assert headers["X-Carebot-Secret"] == "bridge-secret"
    assert headers["Idempotency-Key"] == f"outbox-{row_id}"
    assert body["user_id"] == "u-42" and body["text"] == "Hi Uma, Alex here."
    assert body["outbox_id"] == row_id and body["buttons"] == []


async def test_bridge_outage_is_retried_with_the_same_idempotency_key(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    bridge: tuple[Bridge, TestServer],
) -> None:
    fake, _ = bridge
    fake.statuses = [503]
    row_id = await _reply_from_agent(client, sessions, "Still there?")

    async def retried_later() -> bool:
        row = await _status(sessions, row_id)
        return row.status == "pending" and row.attempts == 1

    await eventually(retried_later, what="the 503 to schedule a retry")
    row = await _status(sessions, row_id)
    assert "503" in (row.last_error or "")
    assert len(fake.calls) == 1  # not retried before the backoff is over
    clock.advance(seconds=60)

    async def sent() -> bool:
        return (await _status(sessions, row_id)).status == "sent"

    await eventually(sent, what="the retry to deliver")
    assert [h["Idempotency-Key"] for h, _ in fake.calls] == [f"outbox-{row_id}"] * 2


async def test_bridge_refusal_fails_the_message_once_with_a_touchpoint(
    client: Client, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    bridge: tuple[Bridge, TestServer],
) -> None:
    fake, _ = bridge
    fake.statuses = [404]
    row_id = await _reply_from_agent(client, sessions, "Hello?")

    async def failed() -> bool:
        return (await _status(sessions, row_id)).status == "failed"

    await eventually(failed, what="the 404 to fail the message")
    clock.advance(seconds=3600)
    async with sessions() as session:
        reasons = list(await session.scalars(
            select(Touchpoint.details).where(Touchpoint.kind == "delivery_failed")))
    assert len(reasons) == 1 and "404" in reasons[0]["reason"]
    assert len(fake.calls) == 1  # a refusal is final: no retry loop


async def test_worker_delivers_callbacks_without_the_model_or_the_inbound_writer(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: ManualClock,
    bridge: tuple[Bridge, TestServer], tmp_path: Path,
) -> None:
    """`carebot worker` without Telegram only delivers: it starts even where the sentence
    encoder cannot be loaded, and neither matches questions nor takes inbound messages."""
    fake, server = bridge
    [row_id] = await queue_messages(
        sessions, clock, ["Your parcel left the depot."], recipient="u-42", channel="http"
    )
    app = create_worker_app(replace(
        settings, run_worker=False,  # the worker delivers whatever the environment says
        embedding_model=str(tmp_path / "no-model-here"),  # loading it would fail the start
        http_channel_callback_url=str(server.make_url("/carebot")),
        outbox_poll_seconds=0.05,
    ), clock)
    async with running(app):
        assert not {FAQ_INDEX, MATCHER_BUILDER, POLICY, INBOUND} & set(app)

        async def sent() -> bool:
            return (await outbox_row(sessions, row_id)).status == "sent"

        await eventually(sent, what="the worker to deliver the row")
    [(headers, body)] = fake.calls
    assert headers["Idempotency-Key"] == f"outbox-{row_id}"
    assert body["user_id"] == "u-42" and body["text"] == "Your parcel left the depot."


def test_callback_url_must_be_http() -> None:
    with pytest.raises(SettingsError, match="CAREBOT_HTTP_CHANNEL_CALLBACK_URL"):
        Settings.from_env({"CAREBOT_HTTP_CHANNEL_CALLBACK_URL": "ftp://bridge/"})
