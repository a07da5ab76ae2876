"""The match cache: same answers as the matcher, bounded, and emptied by a knowledge change."""

from __future__ import annotations

import asyncio
import csv
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from carebot.domain.clock import ManualClock
from carebot.matching.faq import Candidate
from carebot.matching.faq_index import FaqIndex
from carebot.matching.knowledge import import_knowledge, load_knowledge
from carebot.matching.match_cache import MatchCache, cache_key
from carebot.settings import Settings, SettingsError
from carebot.web.keys import FAQ_INDEX
from tests.conftest import KNOWLEDGE, ROOT
from tests.helpers import MATCHERS, Customer, button_payloads, create_app, same_ranking

KB = [d.doc for d in load_knowledge(KNOWLEDGE)]


def _queries() -> list[str]:
    with open(ROOT / "tests/data/starter_queries.csv", newline="", encoding="utf-8") as f:
        return [row["text"] for row in csv.DictReader(f)][:60]


async def test_a_cached_answer_equals_the_uncached_one() -> None:
    # A queue long enough that no variant falls back to lexical matching in this burst.
    index = FaqIndex(MATCHERS, cache_size=1000, embedding_queue=1000)
    await index.rebuild(KB)
    matcher = index.matcher
    assert matcher is not None
    queries = _queries()
    # Variants that normalise alike: they share a cache entry, and must share the answer.
    variants = [v for q in queries for v in (q, q.upper(), f"  {q}?!", q.replace("'", "’"))]
    first = await index.match_many(variants, 3)
    again = [await index.match(v, 3) for v in variants]
    for text, a, b in zip(variants, first, again, strict=True):
        assert a == b, text  # the second time is a cache hit: the very same answer
        assert same_ranking(a, matcher.match(text, 3)), text
    stats = index.cache_stats()
    assert stats.misses == len({cache_key(v, 3) for v in variants})
    assert stats.hits == 2 * len(variants) - stats.misses
    assert same_ranking(index.match_sync(queries[0], 3), matcher.match(queries[0], 3))


async def test_callers_get_their_own_lists() -> None:
    index = FaqIndex(MATCHERS)
    await index.rebuild(KB)
    got = await index.match("where is my order")
    got.clear()
    assert (await index.match("where is my order"))[0].faq_id == "order-status"


def test_lru_evicts_the_least_recently_used_and_zero_disables() -> None:
    cache = MatchCache(2)
    a, b, c = (cache_key(t, 3) for t in ("a", "b", "c"))
    cands = [Candidate("x", 0.9)]
    cache.put(a, cands)
    cache.put(b, cands)
    assert cache.get(a) == cands  # a is now the most recent
    cache.put(c, cands)
    assert cache.get(b) is None and cache.get(a) == cands and len(cache) == 2
    off = MatchCache(0)
    off.put(a, cands)
    assert off.get(a) is None and len(off) == 0
    with pytest.raises(ValueError):
        MatchCache(-1)


def test_cache_size_setting() -> None:
    assert Settings.from_env({}).match_cache_size == 4096
    assert Settings.from_env({"CAREBOT_MATCH_CACHE_SIZE": "0"}).match_cache_size == 0
    with pytest.raises(SettingsError, match="CAREBOT_MATCH_CACHE_SIZE"):
        Settings.from_env({"CAREBOT_MATCH_CACHE_SIZE": "-1"})


async def test_a_knowledge_change_invalidates_cached_answers(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fast = Settings.from_env({}, database_url=settings.database_url,
                             knowledge_dir=settings.knowledge_dir, kb_refresh_seconds=0.05)
    app = create_app(fast, clock)
    client: TestClient[Any, Any] = await aiohttp_client(app)
    index = app[FAQ_INDEX]
    question = "Where is my order?"
    first = await Customer(client, "c1").say(question)
    assert button_payloads(first["replies"][0])[0] == "yes:order-status"
    again = await Customer(client, "c2").say(question.lower())
    assert again["replies"] == first["replies"]
    stats = index.cache_stats()
    assert (stats.hits, stats.misses) == (1, 1)

    # The entry is removed from the files and re-imported: it is disabled, the running service
    # rebuilds its index, and the cached "order-status" answer must not be served any more.
    entries = [e for e in load_knowledge(KNOWLEDGE) if e.doc.id != "order-status"]
    async with sessions.begin() as session:
        await import_knowledge(session, entries, clock.advance(seconds=1))
    version = index.version
    for _ in range(200):
        if index.version > version:
            break
        await asyncio.sleep(0.05)
    assert index.version > version, "the service did not pick up the knowledge change"
    assert index.cache_stats().size == 0

    after = await Customer(client, "c3").say(question)
    assert "order-status" not in str(after["replies"])
    assert index.cache_stats().misses == 2
