"""Property-based tests: every documented endpoint fed generated requests (schemathesis over
`/api/v1/openapi.json`), and the parsers fed any input (Hypothesis). The promise under test:
never a 5xx, every error a JSON body, bounded work. Bounded in examples so the file runs in
well under two minutes."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
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
from tests.helpers import create_app, make_agent

SCHEMA = schemathesis.openapi.from_dict(SPEC)
# The WebSockets cannot be driven by plain requests; they have their own tests.
WEBSOCKETS = {"/api/v1/events", "/api/v1/channels/web/socket"}
OPERATIONS = [op.ok() for op in SCHEMA.get_all_operations()
              if op.ok().path not in WEBSOCKETS]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


class LiveService:
    """carebot on 127.0.0.1 in a thread of its own, on a SQLite copy, with an admin token."""

    def __init__(self, database: Path) -> None:
        self.url = f"sqlite+aiosqlite:///{database}"
        self.base = ""
        self.token = ""
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
        base = Settings.from_env({}, database_url=self.url, knowledge_dir=str(KNOWLEDGE))
        app = create_app(replace(base, run_timers=False, run_worker=False), system_clock)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
            ) -> Iterator[LiveService]:
    database = tmp_path_factory.mktemp("fuzz") / "carebot.db"
    shutil.copy(sqlite_template, database)
    with LiveService(database) as live:
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
