"""Malformed requests an attacker (or a broken bridge) sends: each gets a JSON 4xx with a
clear message, nothing is stored, and the service keeps answering everyone else."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.db.models import Message
from carebot.domain.clock import ManualClock
from carebot.settings import Settings
from tests.helpers import MESSAGES, bearer, create_app, make_agent

Client = TestClient[Any, Any]
SECRET = "s3cret-value"


@pytest.fixture
async def client(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None
) -> Client:
    app = create_app(replace(settings, http_channel_secret=SECRET, run_timers=False), clock)
    return await aiohttp_client(app)  # type: ignore[no-any-return]


async def stored(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Message)) or 0)


async def expect_json_error(resp: Any, status: int, says: str) -> None:
    body = await resp.json()
    assert resp.status == status, body
    assert says in body["error"]["message"], body


def message(**fields: Any) -> dict[str, Any]:
    return {"user_id": "mal", "message_id": "mal-1", "text": "where is my order", **fields}


@pytest.mark.parametrize(("raw", "says"), [
    (b"[" * 1000 + b"]" * 1000, "nested too deeply"),
    (b'{"user_id": "u", "message_id": "m", "text": "a\\ud800"}', "not valid Unicode"),
    (b'{"user_id": "u", "message_id": "m", "text": "a\\u0000b"}', "NUL"),
    (b'{"user_id": "u\\u0000", "message_id": "m", "text": "hi"}', "NUL"),
    (b'{"user_id": "u", "message_id": "\\u200b", "text": "hi"}', "visible characters"),
    (b'\xef\xbb\xbf{"user_id": "u", "message_id": "m", "text": "hi"}', "byte order mark"),
    ('{"user_id": "u", "message_id": "m", "text": "hi"}'.encode("utf-16"), "not UTF-8"),
])
async def test_malformed_messages_are_refused_and_store_nothing(
    client: Client, sessions: async_sessionmaker[AsyncSession], raw: bytes, says: str
) -> None:
    resp = await client.post(MESSAGES, data=raw, headers={
        "Content-Type": "application/json", "X-Carebot-Secret": SECRET})
    await expect_json_error(resp, 400, says)
    assert await stored(sessions) == 0
    ok = await client.post(MESSAGES, json=message(), headers={"X-Carebot-Secret": SECRET})
    assert ok.status == 200  # and everyone else is still answered


async def raw_request(client: Client, head: bytes, body: bytes = b"") -> tuple[int, Any]:
    """Send bytes as they are (a client library would refuse non-UTF-8 header values)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(head + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                 + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.partition(b"\r\n\r\n")[2])


async def test_non_utf8_secret_and_token_headers_are_refused_not_crashed(
    client: Client,
) -> None:
    body = json.dumps(message()).encode()
    status, data = await raw_request(client, b"POST " + MESSAGES.encode() + b" HTTP/1.1\r\n"
                                     b"Host: x\r\nContent-Type: application/json\r\n"
                                     b"X-Carebot-Secret: caf\xe9\xff", body)
    assert (status, "X-Carebot-Secret" in data["error"]["message"]) == (403, True)
    status, data = await raw_request(client, b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\n"
                                     b"Authorization: Bearer cbt_\xff\xfe")
    assert (status, data["error"]["message"]) == (401, "invalid or disabled token")


async def test_ids_and_numbers_out_of_range(
    client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    _, token = await make_agent(sessions, "Boss", "manager", status="online")
    auth = bearer(token)
    for raw_id in ("²", "１", "12abc"):
        resp = await client.get(f"/api/v1/conversations/{raw_id}", headers=auth)
        await expect_json_error(resp, 404, "not found")
    cid = (await (await client.post(MESSAGES, json=message(text="/human"),
                                    headers={"X-Carebot-Secret": SECRET})).json())[
        "conversation_id"]
    resp = await client.post(f"/api/v1/conversations/{cid}/transfer",
                             json={"agent_id": 2**63}, headers=auth)
    await expect_json_error(resp, 400, "'agent_id' must be an integer from 1")
    resp = await client.get("/api/v1/conversations?limit=１０", headers=auth)
    await expect_json_error(resp, 400, "must be an integer")
    resp = await client.get("/api/v1/conversations?order=oldest", headers=auth)
    await expect_json_error(resp, 400, "unknown query parameter(s): order")


@pytest.mark.parametrize(("query", "says"), [
    ("from=2026-01-01&to=9999-12-31", "'to' must be between 1970 and 2199"),
    ("from=0001-01-01T00:00:00%2B05:00&to=2026-01-01", "'from' must be between"),
    ("to=9999-12-31T23:59:59-05:00", "'to' must be between"),
    ("channel=http%00", "NUL"),
    ("tag=%00", "NUL"),
])
async def test_bad_stats_parameters(
    client: Client, sessions: async_sessionmaker[AsyncSession], query: str, says: str
) -> None:
    _, token = await make_agent(sessions, "Boss", "manager")
    resp = await client.get(f"/api/v1/stats/summary?{query}", headers=bearer(token))
    await expect_json_error(resp, 400, says)
