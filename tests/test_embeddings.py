"""The sentence encoder behind the matcher: what it computes, how it is configured, and how
a bad configuration is reported."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carebot import cli
from carebot.domain.clock import ManualClock
from carebot.matching.embedding_model import EmbeddingModelError, load_encoder, packaged_model_dir
from carebot.matching.embeddings import MiniLmEncoder
from carebot.matching.faq_index import FaqIndex
from carebot.matching.knowledge import load_knowledge
from carebot.matching.onnx_encoder import OnnxMiniLmEncoder, load_int8_encoder
from carebot.settings import Settings, SettingsError
from carebot.web import app as web_app
from tests.conftest import KNOWLEDGE, ROOT
from tests.helpers import MATCHERS, same_ranking


@pytest.fixture(scope="module")
def encoder() -> MiniLmEncoder:
    loaded = load_encoder("auto")
    assert loaded is not None, "make setup installs the model package (requirements-model.txt)"
    return loaded


def test_paraphrases_are_closer_than_unrelated_questions(encoder: MiniLmEncoder) -> None:
    vecs = encoder.encode([
        "where is my parcel", "my parcel has not arrived", "how do I reset my password",
    ])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    same, unrelated = float(vecs[0] @ vecs[1]), float(vecs[0] @ vecs[2])
    assert same > 0.5 > unrelated


@pytest.fixture(scope="module")
def exact() -> MiniLmEncoder:
    loaded = load_encoder("auto", "float32")
    assert loaded is not None and not isinstance(loaded, OnnxMiniLmEncoder)
    return loaded


@pytest.mark.parametrize("precision", ["int8", "float32"])
def test_batching_and_odd_texts_do_not_change_results(
    precision: str, encoder: MiniLmEncoder, exact: MiniLmEncoder
) -> None:
    # float32 pads a batch to its longest text; int8 encodes one text per call.
    encoder = encoder if precision == "int8" else exact
    texts = ["", "🙂🙂", "Ça coûte combien ?", "refund " * 400, "WHERE IS MY ORDER",
             "where is my order"]
    batch = encoder.encode(texts, batch_size=2)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])
    assert np.allclose(batch, one_by_one, atol=1e-5)
    assert np.allclose(batch[4], batch[5], atol=1e-6)  # the model is uncased
    assert np.isfinite(batch).all()


def test_the_int8_encoder_is_the_default_and_stays_close_to_float32(
    encoder: MiniLmEncoder, exact: MiniLmEncoder
) -> None:
    assert isinstance(encoder, OnnxMiniLmEncoder)
    texts = ["where is my parcel", "my parcel has not arrived", "how do I reset my password",
             "I was charged twice for the same order, can you refund one of the payments?",
             "Ça coûte combien ?", "🙂🙂", ""]
    fast, ref = encoder.encode(texts), exact.encode(texts)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = np.einsum("ij,ij->i", fast, ref)
    assert cosines.min() > 0.96 and cosines.mean() > 0.98, cosines
    # What the matcher uses the vectors for survives: each text's nearest other text.
    np.fill_diagonal(sims_fast := fast @ fast.T, -1.0)
    np.fill_diagonal(sims_ref := ref @ ref.T, -1.0)
    assert np.array_equal(sims_fast.argmax(axis=1), sims_ref.argmax(axis=1))


def test_the_int8_model_is_quantized_once_and_a_damaged_cache_is_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: MiniLmEncoder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model_dir = packaged_model_dir()
    assert model_dir is not None
    first = load_int8_encoder(exact, model_dir, threads=1)
    (cached,) = (tmp_path / "carebot").iterdir()
    stamp = cached.stat().st_mtime_ns
    want = first.encode(["where is my parcel"])
    assert np.array_equal(load_int8_encoder(exact, model_dir, threads=2).encode(
        ["where is my parcel"]), want)
    assert cached.stat().st_mtime_ns == stamp  # read from the cache, not rebuilt

    cached.write_bytes(cached.read_bytes()[:1000])  # e.g. a disk that filled up
    rebuilt = load_int8_encoder(exact, model_dir, threads=1)
    assert "rebuilding the cached int8 model" in caplog.text
    assert np.array_equal(rebuilt.encode(["where is my parcel"]), want)
    assert cached.stat().st_size > 1_000_000


def test_embedding_precision_and_threads_are_checked() -> None:
    with pytest.raises(SettingsError, match="CAREBOT_EMBEDDING_PRECISION must be int8 or float32"):
        Settings.from_env({"CAREBOT_EMBEDDING_PRECISION": "fp16"})
    with pytest.raises(SettingsError, match="CAREBOT_EMBEDDING_THREADS must be 1 or more"):
        Settings.from_env({"CAREBOT_EMBEDDING_THREADS": "0"})


def test_off_means_lexical_only_and_a_bad_directory_is_a_clear_error(tmp_path: Path) -> None:
    assert load_encoder("off") is None
    with pytest.raises(EmbeddingModelError, match=r"CAREBOT_EMBEDDING_MODEL=.*cannot load"):
        load_encoder(str(tmp_path))


def test_cli_reports_a_bad_model_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAREBOT_EMBEDDING_MODEL", str(tmp_path / "missing"))
    queries = ROOT / "tests/data/starter_queries.csv"
    assert cli.main(["kb", "eval", "--kb", str(KNOWLEDGE), "--queries", str(queries)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("carebot: error: CAREBOT_EMBEDDING_MODEL=") and "Traceback" not in err


@pytest.mark.parametrize(("setting", "expected"), [("auto", True), ("off", False)])
async def test_health_says_whether_the_service_matches_with_embeddings(
    aiohttp_client: Any, settings: Settings, clock: ManualClock, starter_kb: None,
    setting: str, expected: bool,
) -> None:
    # The real factory (no shared test matchers): the service loads the model itself.
    app = web_app.create_app(replace(settings, embedding_model=setting), clock)
    client = await aiohttp_client(app)
    health = await (await client.get("/healthz")).json()
    assert health["sentence_embeddings"] is expected


async def test_a_burst_beyond_the_embedding_queue_is_matched_lexically_then_upgraded() -> None:
    docs = [loaded.doc for loaded in load_knowledge(KNOWLEDGE)]
    matcher = MATCHERS(docs)
    assert matcher.uses_embeddings
    index = FaqIndex(lambda _: matcher, cache_size=100, embedding_queue=2)
    await index.rebuild(docs)
    texts = ["my pakage never arived", "help with my account please",
             "wheres my oder??", "question about my bill"]
    # The lexical model alone gets the last two wrong or unsure: the test can tell them apart.
    assert [matcher.match(t)[0].faq_id for t in texts[2:]] == ["order-status", "payment-invoice"]
    assert [matcher.match(t, embed=False)[0].faq_id for t in texts[2:]] == [
        "order-status", "data-privacy"]

    got = await index.match_many(texts)
    for text, candidates in zip(texts[:2], got[:2], strict=True):
        assert same_ranking(candidates, matcher.match(text))
    for text, candidates in zip(texts[2:], got[2:], strict=True):
        assert same_ranking(candidates, matcher.match(text, embed=False))
    # The lexical answers are cached too, as provisional: while the burst lasts (no room for
    # the encoder) repeats are served from the cache...
    assert index.cache_stats().size == 4
    index_busy = FaqIndex(lambda _: matcher, cache_size=100, embedding_queue=0)
    await index_busy.rebuild(docs)
    lexical = await index_busy.match_many(texts[2:])
    assert await index_busy.match_many(texts[2:]) == lexical
    assert index_busy.cache_stats().hits == 2
    # Blocking callers (CLI, evaluation) have no burst to absorb: they get the full match.
    assert same_ranking(index_busy.match_sync(texts[3]), matcher.match(texts[3]))
    assert not same_ranking(lexical[1], matcher.match(texts[3]))
    # ...and once there is room again, the same questions get the full matcher.
    upgraded = await index.match_many(texts[2:])
    for text, candidates in zip(texts[2:], upgraded, strict=True):
        assert same_ranking(candidates, matcher.match(text))


def test_questions_the_lexical_model_is_sure_of_are_never_provisional() -> None:
    matcher = MATCHERS([loaded.doc for loaded in load_knowledge(KNOWLEDGE)])
    sure, unsure = "how do I reset my password", "question about payment"
    # With no room for the encoder, only the unsure question is missing something.
    results = matcher.match_many([sure, unsure, "?!"], embed_limit=0)
    assert [r.complete for r in results] == [True, False, True]
    assert results[0].candidates[0].faq_id == "password-reset"
    assert results[2].candidates == []  # nothing left after normalisation
    # A batch with room embeds what needs it: the same answers as one question at a time.
    both = matcher.match_many([sure, unsure])
    assert all(r.complete for r in both)
    assert same_ranking(both[1].candidates, matcher.match(unsure))
    assert not same_ranking(results[1].candidates, both[1].candidates)
