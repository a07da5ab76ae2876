"""The static encoder distilled from MiniLM: a KB-adapted token table behind `TextEncoder`."""

from __future__ import annotations

import numpy as np
import pytest

from carebot.matching.embedding_model import load_encoder
from carebot.matching.embeddings import MiniLmEncoder
from carebot.matching.knowledge import load_knowledge
from carebot.matching.matcher import build_matcher
from carebot.matching.static_embeddings import StaticEncoder, distill_token_table
from tests.conftest import KNOWLEDGE

KB_TEXTS = [
    "where is my parcel", "my parcel has not arrived yet", "track my delivery",
    "how do i reset my password", "i forgot my password", "cannot log in to my account",
    "i want a refund", "how do i get my money back", "return an item for a refund",
]
QUERIES = ["my package never came", "password reset please", "refund my order"]


@pytest.fixture(scope="module")
def minilm() -> MiniLmEncoder:
    loaded = load_encoder("auto")
    assert isinstance(loaded, MiniLmEncoder)
    return loaded


@pytest.fixture(scope="module")
def static(minilm: MiniLmEncoder) -> StaticEncoder:
    # Only the rows these tests use: distilling all 30k tokens takes most of a minute.
    ids = [i for t in KB_TEXTS + QUERIES for i in minilm.tokenizer.tokenize_ids(t)]
    table = distill_token_table(minilm, ids=ids)
    return StaticEncoder(minilm, table)


def test_rows_are_unit_length_and_empty_text_is_a_zero_row(static: StaticEncoder) -> None:
    fitted = static.fit(KB_TEXTS)
    vecs = fitted.encode(["where is my parcel", "", "refund"])
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32 and np.isfinite(vecs).all()
    assert np.allclose(np.linalg.norm(vecs[[0, 2]], axis=1), 1.0, atol=1e-5)
    assert not vecs[1].any()


def test_fit_adapts_a_copy_and_queries_land_near_their_topic(static: StaticEncoder) -> None:
    before = static.encode(["where is my parcel"])
    fitted = static.fit(KB_TEXTS)
    assert np.array_equal(static.encode(["where is my parcel"]), before)  # base unchanged
    kb = fitted.encode(KB_TEXTS)
    sims = fitted.encode(QUERIES) @ kb.T
    topic = np.repeat(np.arange(3), 3)
    assert list(topic[sims.argmax(axis=1)]) == [0, 1, 2]


def test_the_matcher_adapts_the_encoder_to_its_kb(static: StaticEncoder) -> None:
    docs = [loaded.doc for loaded in load_knowledge(KNOWLEDGE)]
    matcher = build_matcher(docs, encoder=static)
    assert matcher.uses_embeddings
    assert matcher._encoder is not static  # the adapted copy
    assert matcher.match("wheres my oder??")[0].faq_id == "order-status"
