"""Property-based tests: every documented endpoint fed generated requests (schemathesis over
`/api/v1/openapi.json`), and the parsers fed any input (Hypothesis). The promise under test:
never a 5xx, every error a JSON body, bounded work. Bounded in examples so the file runs in
well under two minutes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import sqlite3
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from carebot.channels.errors import ChannelInputError
from carebot.channels.http import parse_message
from carebot.db.engine import make_engine, make_sessionmaker
from carebot.domain.clock import system_clock
from carebot.domain.text import text_problem
from carebot.matching.knowledge import import_knowledge, load_knowledge
from carebot.matching.textnorm import MAX_NORMALIZED_CHARS, normalize
from carebot.routing.survey_answers import parse_score
from carebot.settings import Settings
from carebot.web.errors import ApiError, parse_json_object
from carebot.web.openapi import SPEC
from tests.conftest import KNOWLEDGE
from tests.fakes.bot_api import FakeBotAPI
from tests.helpers import MESSAGES, create_app, make_agent

HTTP_SECRET = "fuzz-http-secret"
TELEGRAM_SECRET = "fuzz-telegram-secret"
SCHEMA = schemathesis.openapi.from_dict(SPEC)
# The WebSockets cannot be driven by plain requests; they have their own tests.
WEBSOCKETS = {"/api/v1/events", "/api/v1/channels/web/socket"}
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()
              if op.ok().path not in WEBSOCKETS]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


class LiveService:
    """carebot on 127.0.0.1 in a thread of its own, on a SQLite copy, with an admin token.

    `guarded`: with the HTTP channel's secret and the Telegram webhook on (against a fake
    Bot API), so the checks of both secret headers run."""

    def __init__(self, database: Path, *, guarded: bool = False) -> None:
        self.database = database
        self.url = f"sqlite+aiosqlite:///{database}"
        self.base = ""
        self.port = 0
        self.token = ""
        self.guarded = guarded
        self._bot_api: FakeBotAPI | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LiveService:
        self._thread.start()
        assert self._ready.wait(120), "the service did not start"
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        engine = make_engine(self.url)
        async with make_sessionmaker(engine).begin() as session:
            await import_knowledge(session, load_knowledge(KNOWLEDGE), system_clock())
        _, self.token = await make_agent(make_sessionmaker(engine), "root", "admin",
                                         status="online")
        await engine.dispose()
        base = replace(Settings.from_env({}, database_url=self.url, knowledge_dir=str(KNOWLEDGE)),
                       run_timers=False, run_worker=False)
        if self.guarded:
            self._bot_api = FakeBotAPI()
            await self._bot_api.__aenter__()
            base = replace(base, http_channel_secret=HTTP_SECRET, telegram_mode="webhook",
                           telegram_token=self._bot_api.token,
                           telegram_base_url=self._bot_api.base_url,
                           telegram_webhook_secret=TELEGRAM_SECRET)
        app = create_app(base, system_clock)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{self.port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._bot_api is not None:
            await self._bot_api.__aexit__(None, None, None)

    def stored(self) -> tuple[int, ...]:
        """Rows of what a request could store: messages, touchpoints, conversations,
        customers, contacts, outbox rows, receipts, agents, codes, canned replies."""
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            return tuple(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                         for table in ("messages", "touchpoints", "conversations", "contacts",
                                       "customers", "outbox", "channel_receipts", "agents",
                                       "resolution_codes", "canned_replies"))

    def raw(self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]] = (),
            body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        """One request sent as the bytes given (a client library would refuse odd header
        values); returns status, headers and body."""
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n").encode()
        if body:
            head += b"Content-Type: application/json\r\n"
        head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
            sock.sendall(head + b"\r\n" + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        top, _, payload = data.partition(b"\r\n\r\n")
        status_line, *lines = top.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
        return int(status_line.split()[1]), fields, payload


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
            ) -> Iterator[LiveService]:
    database = tmp_path_factory.mktemp("fuzz") / "carebot.db"
    shutil.copy(sqlite_template, database)
    with LiveService(database) as live:
        yield live


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
            ) -> Iterator[LiveService]:
    """The live service with both channel secrets set and a conversation (id 1) to act on."""
    database = tmp_path_factory.mktemp("fuzz-guarded") / "carebot.db"
    shutil.copy(sqlite_template, database)
    with LiveService(database, guarded=True) as live:
        status, _, _ = live.raw("POST", MESSAGES, [(b"X-Carebot-Secret", HTTP_SECRET.encode())],
                                json.dumps({"user_id": "u1", "message_id": "m1",
                                            "text": "/human"}).encode())
        assert status == 200
        yield live


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
@pytest.mark.parametrize("operation", OPERATIONS,
                         ids=[f"{op.method.upper()} {op.path}" for op in OPERATIONS])
def test_no_documented_endpoint_answers_5xx(
    service: LiveService, operation: Any, mode: GenerationMode
) -> None:
    @FUZZ
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        case = data.draw(operation.as_strategy(generation_mode=mode))
        response = case.call(base_url=service.base, timeout=30,
                             headers={"Authorization": f"Bearer {service.token}"})
        assert response.status_code < 500, (case.method, case.formatted_path, case.body,
                                            response.text[:300])
        if response.status_code >= 400:
            assert "message" in response.json()["error"]
        elif case.formatted_path.endswith("/token") and response.json()["name"] == "root":
            service.token = response.json()["token"]  # it rotated its own: keep going

    check()


# --- the parsers, on anything ------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["user_id", "message_id", "text", "payload", "name"])


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(FIELDS, JSON_VALUES | st.text(), max_size=5))
def test_the_http_channel_parser_accepts_clean_messages_or_says_why(body: dict[str, Any]) -> None:
    try:
        msg = parse_message(body, 4096)
    except ChannelInputError as exc:
        assert exc.status in (400, 413) and exc.message
        return
    for value in (msg.user_id, msg.message_id, msg.text, msg.payload or "", msg.display_name):
        assert text_problem(value) is None  # nothing PostgreSQL would refuse gets through


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
       | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_any_request_body_is_an_object_or_a_400(raw: bytes) -> None:
    try:
        value = parse_json_object(raw)
    except ApiError as exc:
        assert exc.status == 400 and exc.message
        return
    assert isinstance(value, dict)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=5000))
def test_normalising_any_text_is_bounded(text: str) -> None:
    assert len(normalize(text)) <= MAX_NORMALIZED_CHARS


def test_normalising_the_worst_expanding_character_is_bounded() -> None:
    # "ﷺ" expands ~18x under NFKC: 4,096 of them once stalled every other message.
    assert len(normalize("ﷺ" * 4096)) <= MAX_NORMALIZED_CHARS


@settings(max_examples=400, deadline=None)
@given(text=st.text(max_size=60), kind=st.sampled_from(["csat", "ces"]))
def test_a_typed_score_is_in_range_or_none(text: str, kind: str) -> None:
    scale = 5 if kind == "csat" else 7
    score = parse_score(text, kind, scale)
    assert score is None or 1 <= score <= scale


# --- the live service, on inputs the schema-driven generator does not make ---------------
# Raw requests against the running app (real aiohttp server, real SQLite): what an attacker
# or a broken bridge sends. Every one must get a JSON 4xx with a message and store nothing.

LIVE = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def assert_refused(live: LiveService, before: tuple[int, ...],
                   answer: tuple[int, dict[str, str], bytes]) -> None:
    status, headers, body = answer
    assert 400 <= status < 500, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (headers, body)
    assert json.loads(body)["error"]["message"]
    assert live.stored() == before


def _escape(text: str) -> str:
    """`text` as the inside of a JSON string, ASCII only (surrogates as \\u escapes)."""
    return "".join(c if " " <= c < "\x7f" and c not in '"\\' else f"\\u{ord(c):04x}"
                   for c in text)


LONE_SURROGATES = st.integers(0xD800, 0xDFFF).map(chr)
MESSAGE_FIELDS = ("user_id", "message_id", "text", "name", "payload")


@LIVE
@given(field=st.sampled_from(MESSAGE_FIELDS), before=st.text(max_size=20),
       surrogate=LONE_SURROGATES, after=st.text(max_size=20))
def test_a_lone_surrogate_in_any_message_field_is_refused(
    guarded: LiveService, field: str, before: str, surrogate: str, after: str
) -> None:
    # A high surrogate followed by a low one is a pair (a valid character); keep it lone.
    if surrogate < "\udc00" and after[:1] and "\udc00" <= after[0] <= "\udfff":
        after = "x" + after
    if "\ud800" <= before[-1:] <= "\udbff" and surrogate >= "\udc00":
        before += "x"
    fields = {"user_id": "fuzz-user", "message_id": f"fuzz-{field}-{before}{after}",
              "text": "where is my order"}
    fields[field] = before + surrogate + after
    body = "{" + ", ".join(f'"{k}": "{_escape(v)}"' for k, v in fields.items()) + "}"
    stored = guarded.stored()
    assert_refused(guarded, stored, guarded.raw(
        "POST", MESSAGES, [(b"X-Carebot-Secret", HTTP_SECRET.encode())], body.encode()))


ID_PATHS = [(method.upper(), path) for path, ops in SPEC["paths"].items() if "{" in path
            for method in ops]
# Digits and numbers of every script but ASCII: str.isdigit() takes "²" and the full-width digits.
ODD_DIGITS = st.characters(categories=["Nd", "No", "Nl"]).filter(lambda c: not c.isascii())
ODD_IDS = st.tuples(st.text("0123456789", max_size=2), st.text(ODD_DIGITS, min_size=1,
                    max_size=3), st.text("0123456789", max_size=2)).map("".join)


@LIVE
@given(route=st.sampled_from(ID_PATHS), raw_id=ODD_IDS)
def test_non_ascii_digits_in_path_ids_are_not_found(
    guarded: LiveService, route: tuple[str, str], raw_id: str
) -> None:
    method, template = route
    path = template.replace(template[template.index("{"):template.index("}") + 1],
                            urllib.parse.quote(raw_id, safe=""))
    body = json.dumps({"text": "hi", "code": "answered", "agent_id": None,
                       "label": "x"}).encode() if method != "GET" else b""
    stored = guarded.stored()
    answer = guarded.raw(method, path, [(b"Authorization", f"Bearer {guarded.token}".encode())],
                         body)
    assert_refused(guarded, stored, answer)
    assert answer[0] in (400, 404), answer


JSON_ROUTES = [("POST", MESSAGES), ("POST", "/telegram/webhook"),
               ("POST", "/api/v1/conversations/1/reply"),
               ("POST", "/api/v1/conversations/1/transfer"),
               ("POST", "/api/v1/conversations/1/resolve"),
               ("POST", "/api/v1/agents"), ("POST", "/api/v1/resolution-codes"),
               ("PUT", "/api/v1/me/availability")]
ROUTE_HEADERS = {MESSAGES: (b"X-Carebot-Secret", HTTP_SECRET.encode()),
                 "/telegram/webhook": (b"X-Telegram-Bot-Api-Secret-Token",
                                       TELEGRAM_SECRET.encode())}


@LIVE
@given(route=st.sampled_from(JSON_ROUTES), depth=st.integers(1, 40_000),
       openers=st.lists(st.sampled_from(["[", '{"k":']), min_size=1, max_size=4),
       inside=st.sampled_from([None, "text", "message", "agent_id", "code", "status"]))
def test_deeply_nested_json_is_refused(
    guarded: LiveService, route: tuple[str, str], depth: int, openers: list[str],
    inside: str | None,
) -> None:
    levels = [openers[i % len(openers)] for i in range(depth)]
    nested = "".join(levels) + "1" + "".join("]" if o == "[" else "}" for o in reversed(levels))
    body = nested if inside is None else f'{{"{inside}": {nested}}}'
    method, path = route
    headers = [ROUTE_HEADERS.get(path, (b"Authorization", f"Bearer {guarded.token}".encode()))]
    stored = guarded.stored()
    assert_refused(guarded, stored, guarded.raw(method, path, headers, body.encode()))


HEADER_BYTES = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)
CREDENTIALS = [("GET", "/api/v1/me", b"Authorization", b""),
               ("POST", "/api/v1/conversations/1/reply", b"Authorization", b"Bearer "),
               ("POST", MESSAGES, b"X-Carebot-Secret", b""),
               ("POST", "/telegram/webhook", b"X-Telegram-Bot-Api-Secret-Token", b"")]


# A field value may hold visible ASCII, spaces, tabs and bytes 0x80-0xFF (RFC 9110 5.5).
# Other control characters make it no HTTP at all: aiohttp's parser answers those 400 itself
# (plain text; carebot never sees the request), and they are not logged one by one.
FIELD_VALUE_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])


@LIVE
@given(where=st.sampled_from(CREDENTIALS), value=HEADER_BYTES)
def test_any_bytes_in_a_credential_header_are_refused(
    guarded: LiveService, where: tuple[str, str, bytes, bytes], value: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:
    method, path, header, prefix = where
    body = json.dumps({"user_id": "u2", "message_id": "m2", "text": "hi",
                       "update_id": 1}).encode() if method == "POST" else b""
    stored = guarded.stored()
    caplog.clear()
    answer = guarded.raw(method, path, [(header, prefix + value)], body)
    if value.strip(FIELD_VALUE_BYTES):  # not a field value: not HTTP
        assert answer[0] == 400 and guarded.stored() == stored, answer
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        return
    assert_refused(guarded, stored, answer)
    assert answer[0] in (400, 401, 403), answer
