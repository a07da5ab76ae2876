"""A stopped or hung PostgreSQL: 503 with Retry-After, a fast /healthz, one log line per
outage, recovery by itself, and no message lost or stored twice.

The faults are played by a proxy in front of the test database (`tests.fakes.tcp_proxy`),
never by the shared server itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import ClientConnectionResetError
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Message
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.fakes.tcp_proxy import FaultyProxy
from tests.helpers import MESSAGES, create_app

Client = TestClient[Any, Any]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[FaultyProxy]:
    if not database_url.startswith("postgresql"):
        pytest.skip("database faults are a PostgreSQL matter (SQLite is a file)")
    url = make_url(database_url)
    faulty = FaultyProxy(url.host or "127.0.0.1", url.port or 5432)
    await faulty.start()
    yield faulty
    await faulty.close()


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    proxy: FaultyProxy,
) -> Client:
    via_proxy = make_url(settings.database_url).set(host="127.0.0.1", port=proxy.port)
    faulty = replace(settings, database_url=via_proxy.render_as_string(hide_password=False),
                     db_timeout_seconds=1.0, run_timers=False)
    return await aiohttp_client(create_app(faulty, clock))  # type: ignore[no-any-return]


async def send(client: Client, message_id: str) -> tuple[int, dict[str, Any], float]:
    start = time.monotonic()
    resp = await client.post(MESSAGES, json={"user_id": "fay", "message_id": message_id,
                                             "text": "where is my order"})
    data = await resp.json()
    if resp.status == 503:
        assert resp.headers["Retry-After"] == "5"
    return resp.status, data, time.monotonic() - start


async def health(client: Client) -> tuple[int, dict[str, Any], float]:
    start = time.monotonic()
    resp = await client.get("/healthz")
    return resp.status, await resp.json(), time.monotonic() - start


async def test_stopped_and_hung_database(
    client: Client, proxy: FaultyProxy, sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    assert (await send(client, "m1"))[0] == 200

    proxy.hang()
    status, body, took = await health(client)
    assert (status, body) == (503, {"status": "unavailable", "database": "unreachable"})
    assert took < 5.0  # bounded (a one-second probe), where it used to hang for good
    status, body, took = await send(client, "m2")
    assert status == 503 and body["error"]["message"].startswith("the service is briefly")
    assert took < 10.0

    proxy.stop()
    for mid in ("m3", "m4", "m5"):
        status, _, took = await send(client, mid)
        assert status == 503 and took < 10.0
    assert (await health(client))[0] == 503

    proxy.resume()
    for _ in range(40):  # back by itself within seconds
        if (await health(client))[0] == 200:
            break
        await asyncio.sleep(0.25)
    assert (await health(client))[0] == 200
    # What got 503 was not stored: sending it again is its first delivery.
    for mid in ("m2", "m3", "m4", "m5"):
        status, body, _ = await send(client, mid)
        assert (status, body["duplicate"]) == (200, False)
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Message).where(Message.direction == "in"))
    assert stored == 5
    outage = [r.getMessage() for r in caplog.records if r.name == "carebot.database"]
    assert len(outage) == 2, outage  # one line when it went away, one when it came back
    assert outage[0].startswith("database unreachable") and outage[1] == (
        "database reachable again")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR
                and r.name != "carebot.database"]


async def test_a_caller_that_went_away_is_no_database_outage(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A console closing its live feed while an event was being written to it raised
    # ClientConnectionResetError (an OSError) out of the handler; taken for an unreachable
    # database, it put the whole process on 503 until the next probe.
    app = create_app(replace(settings, run_timers=False), clock)

    async def hung_up(_request: Any) -> Any:
        raise ClientConnectionResetError("Cannot write to closing transport")

    app.router.add_get("/hung-up", hung_up)
    client: Client = await aiohttp_client(app)
    await client.get("/hung-up")
    status, _, _ = await send(client, "after-a-hang-up")
    assert status == 200
    assert not [r for r in caplog.records if r.name == "carebot.database"]


async def test_a_request_in_flight_when_the_database_hangs_is_answered_in_time(
    client: Client, proxy: FaultyProxy,
) -> None:
    assert (await send(client, "before"))[0] == 200
    proxy.hang()
    # Nothing has noticed the hang yet: this message is written, and its statement hangs.
    in_flight = [asyncio.create_task(send(client, f"in-flight-{i}")) for i in range(5)]
    answers = await asyncio.gather(*in_flight)
    assert all(status == 503 for status, _, _ in answers)
    # CAREBOT_DB_TIMEOUT_SECONDS=1: they waited 4-5 s (statement, rollback, a retry on a
    # fresh connection, each up to the timeout) before the inbound writer's deadline.
    assert max(took for _, _, took in answers) < 1.0 + 0.5
    proxy.resume()
