"""FAQ matcher, its async index, text normalisation and KB evaluation (no database)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.faq_index import FaqIndex
from carebot.matching.kb_eval import (
    csv_to_knowledge,
    docs_from_entries,
    evaluate,
    format_report,
    read_queries,
)
from carebot.matching.knowledge import load_knowledge
from carebot.matching.matcher import (
    DEFAULT_ANSWER_THRESHOLD,
    DEFAULT_SUGGEST_THRESHOLD,
    Matcher,
    build_matcher,
)
from carebot.matching.textnorm import normalize
from tests.conftest import KNOWLEDGE
from tests.helpers import MATCHERS

KB = [
    FaqDoc(
        id="order-status",
        question="Where is my order?",
        answer="Track it under Account > Orders.",
        phrasings=(
            "my parcel has not arrived yet",
            "how can I track my package",
            "what is the status of my order",
            "when will my order arrive",
        ),
    ),
    FaqDoc(
        id="password-reset",
        question="How do I reset my password?",
        answer="Use 'Forgot password' on the login page.",
        phrasings=(
            "I forgot my password",
            "can't log in to my account",
            "change my login password",
        ),
    ),
    FaqDoc(
        id="refund",
        question="When will I get my refund?",
        answer="Refunds take 5-10 business days.",
        phrasings=(
            "I returned an item but have not been refunded",
            "how long does a refund take",
            "where is my money back",
        ),
    ),
    FaqDoc(
        id="shipping-cost",
        question="How much does shipping cost?",
        answer="Shipping is free above 50 EUR.",
        phrasings=("what are the delivery fees", "is shipping free", "postage price"),
    ),
    FaqDoc(
        id="cancel-order",
        question="How can I cancel my order?",
        answer="Cancel within one hour under Account > Orders.",
        phrasings=("I want to cancel my purchase", "please cancel the order I just placed"),
    ),
    FaqDoc(
        id="opening-hours",
        question="What are your opening hours?",
        answer="Mon-Fri 9-18.",
        phrasings=("when is the store open", "are you open on sunday"),
    ),
]


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return build_matcher(KB)


# --- textnorm ---------------------------------------------------------------------------


def test_normalize_maps_chat_text() -> None:
    assert normalize("Where is my order?!😡") == "where is my order"
    assert normalize("pls help u") == "please help you"
    assert normalize("I can't recieve my pasword") == "i can not receive my password"
    assert normalize("  Café   ADRESS ") == "cafe address"
    assert normalize("...?! 🙂") == ""


# --- matcher ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Where is my order?", "order-status"),
        ("How do I reset my password?", "password-reset"),
        ("my package still hasn't shown up", "order-status"),
        ("I forgot the password for my account", "password-reset"),
        ("how much do you charge for delivery", "shipping-cost"),
        ("I'd like to cancel an order", "cancel-order"),
        ("wher is my oder", "order-status"),
        ("pls how do i chnage my pasword", "password-reset"),
    ],
)
def test_right_entry_ranks_first(matcher: Matcher, text: str, expected: str) -> None:
    assert matcher.match(text)[0].faq_id == expected


def test_exact_question_is_answered_confidently(matcher: Matcher) -> None:
    assert matcher.match("where is my order")[0].score >= DEFAULT_ANSWER_THRESHOLD


@pytest.mark.parametrize("text", ["tell me a joke", "what's the weather like tomorrow"])
def test_out_of_scope_gets_low_score(matcher: Matcher, text: str) -> None:
    cands = matcher.match(text)
    assert not cands or cands[0].score < DEFAULT_SUGGEST_THRESHOLD


def test_scores_are_sorted_unique_probabilities(matcher: Matcher) -> None:
    for text in ["order", "refund for my order", "password", "hello", "x"]:
        cands = matcher.match(text, limit=5)
        assert 1 <= len(cands) <= 5
        scores = [c.score for c in cands]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores == sorted(scores, reverse=True)
        assert len({c.faq_id for c in cands}) == len(cands)
        # Mutually exclusive answers: the probabilities never add up to more than one.
        assert sum(scores) <= 1.0 + 1e-9


def test_limit_and_len(matcher: Matcher) -> None:
    assert len(matcher) == len(KB)
    assert len(matcher.match("order", limit=1)) == 1
    assert matcher.match("order", limit=0) == []
    assert len(matcher.match("order", limit=50)) == len(KB)


def test_empty_kb_and_empty_text() -> None:
    empty = build_matcher([])
    assert len(empty) == 0
    assert empty.match("where is my order") == []
    m = build_matcher(KB[:2])
    assert m.match("?!😡") == []


def test_single_entry_kb() -> None:
    m = build_matcher([FaqDoc(id="only", question="How do I reset my password?", answer="a")])
    assert len(m) == 1
    hit = m.match("reset password")
    assert [c.faq_id for c in hit] == ["only"]
    assert hit[0].score > m.match("tell me a joke")[0].score


def test_scores_do_not_depend_on_the_order_of_entries() -> None:
    # The service loads entries from the database, `carebot kb eval` from the files.
    starter = [loaded.doc for loaded in load_knowledge(KNOWLEDGE)]
    forward, backward = MATCHERS(starter), MATCHERS(starter[::-1])
    assert forward is not backward
    for text in ("question about payment", "I have a question about my account",
                 "wheres my oder??", "tell me a joke"):
        assert forward.match(text) == backward.match(text), text


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate FAQ id"):
        build_matcher([KB[0], KB[0]])


# --- FaqIndex ---------------------------------------------------------------------------


async def test_faq_index_rebuild_swaps_and_bumps_version() -> None:
    index = FaqIndex()
    assert index.version == 0
    assert await index.match("where is my order") == []
    assert index.match_sync("where is my order") == []

    await index.rebuild(KB[:3])
    assert index.version == 1
    assert set(index.docs_by_id) == {"order-status", "password-reset", "refund"}
    assert (await index.match("where is my order"))[0].faq_id == "order-status"

    await index.rebuild(KB)
    assert index.version == 2
    assert "opening-hours" in index.docs_by_id
    assert index.match_sync("are you open on sunday")[0].faq_id == "opening-hours"


async def test_faq_index_concurrent_rebuilds_end_with_newest_docs() -> None:
    index = FaqIndex()
    await asyncio.gather(index.rebuild(KB[:2]), index.rebuild(KB[:4]), index.rebuild(KB))
    assert set(index.docs_by_id) == {d.id for d in KB}
    # The first call builds, the two waiting ones coalesce into one build of the newest docs.
    assert index.version == 2


async def test_faq_index_failed_rebuild_keeps_snapshot() -> None:
    index = FaqIndex()
    await index.rebuild(KB)
    with pytest.raises(ValueError):
        await index.rebuild([KB[0], KB[0]])
    assert index.version == 1
    assert len(index.docs_by_id) == len(KB)


# --- kb_eval ----------------------------------------------------------------------------


class FixedMatcher:
    """Returns canned candidates per query text."""

    def __init__(self, answers: dict[str, list[Candidate]]) -> None:
        self.answers = answers

    def match(self, text: str, limit: int = 3) -> list[Candidate]:
        return self.answers[text][:limit]


def test_evaluate_hand_computed() -> None:
    c = Candidate
    fake = FixedMatcher(
        {
            "q1": [c("a", 0.9), c("b", 0.05)],  # in scope a: right, answered
            "q2": [c("b", 0.7), c("a", 0.2)],  # in scope a: wrong top-1 (a 2nd), answered
            "q3": [c("c", 0.3), c("x", 0.1), c("y", 0.05), c("b", 0.01)],  # in scope b: miss
            "q4": [c("a", 0.1)],  # out of scope, handed off
            "q5": [c("c", 0.8)],  # out of scope, answered (wrong)
            "q6": [c("c", 0.15)],  # in scope c: right but handed off
        }
    )
    queries: list[tuple[str, str | None]] = [
        ("q1", "a"), ("q2", "a"), ("q3", "b"), ("q4", None), ("q5", None), ("q6", "c"),
    ]
    m = evaluate(fake, queries, answer_threshold=0.6, suggest_threshold=0.25)
    # In scope: q1 q2 q3 q6. top1 right: q1 q6 -> 2/4. top3: q1 q2 q6 (q3's b is 4th) -> 3/4.
    # Answered (>= 0.6): q1 q2 q5 -> 3/6. Wrong answers: q2 (wrong top-1), q5 (OOS) -> 2/6.
    # Handed off (< 0.25): q4 q6. Warranted (OOS or wrong top-1): q2 q3 q4 q5.
    # handoff precision: q4 of {q4, q6} -> 1/2; handoff recall: q4 of {q2,q3,q4,q5} -> 1/4.
    assert m["top1"] == 0.5
    assert m["top3"] == 0.75
    assert m["answer_rate"] == 0.5
    assert m["wrong_answer_rate"] == pytest.approx(2 / 6)
    assert m["handoff_precision"] == 0.5
    assert m["handoff_recall"] == 0.25
    assert (m["n_queries"], m["n_in_scope"], m["n_out_of_scope"]) == (6, 4, 2)
    assert m["ms_p50"] >= 0.0 and m["ms_p99"] >= m["ms_p50"]
    report = format_report(m)
    assert "top1" in report and "50.0 %" in report


def test_read_queries(tmp_path: Path) -> None:
    good = tmp_path / "q.csv"
    good.write_text('text,expected\nwhere is my order,order-status\n"tell me, a joke",\n')
    assert read_queries(good) == [
        ("where is my order", "order-status"),
        ("tell me, a joke", None),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("text,expected\nok,a\n,b\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: empty text"):
        read_queries(bad)
    wrong_header = tmp_path / "hdr.csv"
    wrong_header.write_text("question,answer\nx,y\n")
    with pytest.raises(ValueError, match=r"hdr\.csv:1"):
        read_queries(wrong_header)


def test_csv_to_knowledge_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "train.csv"
    src.write_text(
        "text,category\n"
        "Where is my card?,card_arrival\n"
        "Card not here yet,card_arrival\n"
        "Still no card,card_arrival\n"
        "Top up failed,Top Up Failed\n"
    )
    out = tmp_path / "kb.yaml"
    assert csv_to_knowledge(src, out, per_faq=2).entries == 2
    entries = yaml.safe_load(out.read_text())
    assert entries == [
        {
            "id": "card-arrival",
            "question": "Where is my card?",
            "phrasings": ["Card not here yet"],
            "answer": "Answer for card_arrival.",
            "tags": ["card_arrival"],
        },
        {
            "id": "top-up-failed",
            "question": "Top up failed",
            "phrasings": [],
            "answer": "Answer for Top Up Failed.",
            "tags": ["Top Up Failed"],
        },
    ]
    csv_to_knowledge(src, out, per_faq=None)
    docs = docs_from_entries(yaml.safe_load(out.read_text()))
    assert docs[0].texts() == ("Where is my card?", "Card not here yet", "Still no card")
    assert build_matcher(docs).match("my card has not arrived")[0].faq_id == "card-arrival"
