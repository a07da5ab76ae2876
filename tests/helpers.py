"""Small helpers the tests share: starting the app, posting messages, reading touchpoints."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jsonschema_rs
from aiohttp import web
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.agents.accounts import create_agent
from carebot.agents.passwords import set_password
from carebot.db.models import Agent, Conversation, Touchpoint
from carebot.domain.clock import Clock
from carebot.matching.embedding_model import load_encoder
from carebot.matching.embeddings import MiniLmEncoder
from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.matcher import Matcher, build_matcher
from carebot.settings import Settings
from carebot.web import app as web_app
from carebot.web.openapi import SPEC
from tests.conftest import START

MESSAGES = "/api/v1/channels/http/messages"
Client = TestClient[Any, Any]


class SharedMatchers:
    """A matcher builder that builds each distinct set of FAQ entries once.

    Matchers are immutable and deterministic, so tests may share them; without this every
    test app would spend seconds building the same starter-KB matcher. They use the sentence
    encoder the service uses by default, so tests see the shipped matcher.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[tuple[FaqDoc, ...], Matcher] = {}
        self._encoder: MiniLmEncoder | None = None
        self._encoder_loaded = False

    def __call__(self, docs: Sequence[FaqDoc]) -> Matcher:
        key = tuple(docs)
        with self._lock:  # builds run in worker threads; build each key once
            if not self._encoder_loaded:
                self._encoder = load_encoder("auto")
                self._encoder_loaded = True
            if key not in self._built:
                self._built[key] = build_matcher(key, encoder=self._encoder)
            return self._built[key]


MATCHERS = SharedMatchers()


def same_ranking(a: Sequence[Candidate], b: Sequence[Candidate]) -> bool:
    """Same entries in the same order with the same scores, up to float rounding: questions
    matched in one batch share the sparse products (and, with the float32 encoder, the
    encoder call), which rounds the last float32 bits differently than one at a time."""
    return [c.faq_id for c in a] == [c.faq_id for c in b] and all(
        abs(x.score - y.score) < 1e-5 for x, y in zip(a, b, strict=True)
    )


def create_app(settings: Settings, clock: Clock) -> web.Application:
    """The real app factory, with matchers shared across the test session."""
    return web_app.create_app(settings, clock, matcher_builder=MATCHERS)


class Customer:
    """A customer on the HTTP channel, numbering their own message ids."""

    def __init__(
        self, client: TestClient[Any, Any], user_id: str, name: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.user_id = user_id
        self.name = name
        self.headers = headers or {}
        self.sent = 0

    async def say(self, text: str, *, message_id: str | None = None) -> dict[str, Any]:
        """Send text; return the JSON response (asserting 200)."""
        return await self._post({"text": text}, message_id)

    async def press(self, payload: str, *, message_id: str | None = None) -> dict[str, Any]:
        """Press a button; return the JSON response (asserting 200)."""
        return await self._post({"payload": payload}, message_id)

    async def _post(self, body: dict[str, Any], message_id: str | None) -> dict[str, Any]:
        self.sent += 1
        body = {"user_id": self.user_id, "message_id": message_id or f"{self.user_id}-{self.sent}",
                "name": self.name, **body}
        resp = await self.client.post(MESSAGES, json=body, headers=self.headers)
        data: dict[str, Any] = await resp.json()
        assert resp.status == 200, data
        return data


def button_payloads(reply: dict[str, Any]) -> list[str]:
    """The payloads of a reply's buttons."""
    return [b["payload"] for b in reply["buttons"]]


async def touchpoint_kinds(
    sessions: async_sessionmaker[AsyncSession], conversation_id: int
) -> list[str]:
    """The conversation's touchpoint kinds, in order."""
    async with sessions() as session:
        rows = await session.scalars(
            select(Touchpoint.kind)
            .where(Touchpoint.conversation_id == conversation_id)
            .order_by(Touchpoint.id)
        )
        return list(rows)


async def make_agent(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    role: str = "agent",
    *,
    capacity: int = 3,
    status: str = "offline",
    idle_since: datetime | None = None,
) -> tuple[int, str]:
    """Create an agent directly in the database; return (id, bearer token)."""
    async with sessions.begin() as session:
        agent, token = await create_agent(session, name, role, capacity, START)
        agent.status = status
        # The status is the test's choice, kept when a console connects (a new agent's
        # `offline` is presence's, see create_agent).
        agent.status_auto = False
        agent.idle_since = idle_since
        await session.flush()
        return agent.id, token


async def make_person(
    sessions: async_sessionmaker[AsyncSession], name: str, role: str, password: str,
    *, status: str = "offline",
) -> tuple[int, str]:
    """An agent who can also log in to the console with `password`; returns (id, token)."""
    agent_id, token = await make_agent(sessions, name, role, status=status)
    async with sessions.begin() as session:
        agent = await session.get(Agent, agent_id)
        assert agent is not None
        set_password(agent, password)
    return agent_id, token


def bearer(token: str) -> dict[str, str]:
    """Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


class Console:
    """One agent's view of the API."""

    def __init__(self, client: Client, agent_id: int, token: str) -> None:
        self.client = client
        self.id = agent_id
        self.headers = bearer(token)

    async def call(
        self, method: str, path: str, body: Any = None, expect: int = 200
    ) -> Any:
        """Call the API as this agent; return the JSON answer (asserting its status)."""
        resp = await self.client.request(method, path, json=body, headers=self.headers)
        data = None if resp.status == 204 else await resp.json()
        assert resp.status == expect, (resp.status, data)
        return data

    async def online(self) -> Any:
        """Go online (pulls waiting conversations)."""
        return await self.call("PUT", "/api/v1/me/availability", {"status": "online"})

    async def act(self, cid: int, action: str, body: Any = None, expect: int = 200) -> Any:
        """POST an action on a conversation."""
        return await self.call("POST", f"/api/v1/conversations/{cid}/{action}", body, expect)


async def agent(
    client: Client, sessions: async_sessionmaker[AsyncSession], name: str, role: str = "agent",
    **kw: Any,
) -> Console:
    """A new agent (in the database) and their view of the API."""
    agent_id, token = await make_agent(sessions, name, role, **kw)
    return Console(client, agent_id, token)


async def conv(sessions: async_sessionmaker[AsyncSession], cid: int) -> Conversation:
    """The conversation's row as it is now."""
    async with sessions() as session:
        row = await session.get(Conversation, cid)
        assert row is not None
        return row


def conforms(schema: str, value: Any) -> None:
    """Assert that `value` (an answer or an event) is what the OpenAPI description's
    `components.schemas[schema]` says it is."""
    validator = jsonschema_rs.validator_for(
        {"$ref": f"#/components/schemas/{schema}", "components": SPEC["components"]})
    errors = [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(value)]
    assert not errors, (schema, errors)
