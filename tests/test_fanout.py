"""Several processes on PostgreSQL: an event caused in one reaches consoles on another."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.domain.clock import ManualClock
from carebot.domain.events import Event
from carebot.settings import Settings
from carebot.web.fanout import PgNotifyHub
from carebot.web.keys import EVENT_HUB
from tests.helpers import Customer, bearer, create_app, make_agent


async def test_event_from_one_process_reaches_an_agent_connected_to_another(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    if settings.is_sqlite:
        pytest.skip("SQLite runs one process; cross-process fan-out is PostgreSQL's")
    quiet = replace(settings, run_timers=False)
    front = await aiohttp_client(create_app(quiet, clock))  # receives customer traffic
    console = await aiohttp_client(create_app(quiet, clock))  # holds the agent's socket
    hub = console.server.app[EVENT_HUB]
    assert isinstance(hub, PgNotifyHub)
    await asyncio.wait_for(hub.listening.wait(), 5)
    agent_id, token = await make_agent(sessions, "Remote", status="online")
    async with console.ws_connect("/api/v1/events", headers=bearer(token)) as ws:
        assert (await ws.receive_json(timeout=5))["kind"] == "hello"
        cid = (await Customer(front, "far-away").say("/human"))["conversation_id"]
        event = await ws.receive_json(timeout=5)
        assert (event["kind"], event["conversation_id"]) == ("assigned", cid)
        assert event["agent_ids"] == [agent_id]


async def test_a_console_that_stops_reading_is_dropped_with_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from carebot.web.hub import QUEUE_LIMIT, EventHub

    hub = EventHub()
    slow = hub.subscribe(1, "manager")
    live = hub.subscribe(2, "manager")
    events = [Event("queued", n, queue=True) for n in range(QUEUE_LIMIT + 50)]
    await hub.publish(events[:QUEUE_LIMIT])
    while not live.queue.empty():  # the live console reads; the slow one never does
        live.queue.get_nowait()
    await hub.publish(events[QUEUE_LIMIT:])
    assert slow.overflowed.is_set() and not live.overflowed.is_set()
    assert live.queue.qsize() == 50  # the others keep getting everything
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "stopped reading" in warnings[0].getMessage()


def test_the_database_password_is_masked_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from carebot.web.logs import redact_secrets, settings_secrets

    settings = Settings.from_env({}, database_url="postgresql+asyncpg://u:hunter2-secret@db/x")
    redact_secrets(settings_secrets(settings))
    logging.getLogger("carebot.test").warning("could not reach %s", settings.database_url)
    assert "hunter2-secret" not in caplog.text and "<redacted>" in caplog.text


def test_a_notification_stays_under_postgresqls_limit_whatever_the_text() -> None:
    import json

    from carebot.web.fanout import _payload

    astral = "\U0001f600" * 4000  # 12 bytes each once escaped
    event = Event("message", 7, (1,), data={"text": astral, "status": "queued"},
                  customer_name=astral[:200], preview={"sender": "customer", "text": astral[:140],
                                                       "at": None})
    payload = _payload(event)
    assert len(payload.encode()) < 8000
    back = Event.from_dict(json.loads(payload))
    assert back.customer_name and back.preview and back.data["text"].startswith("\U0001f600")
