"""Typed survey answers map to scores only when the meaning is clear."""

from __future__ import annotations

import pytest

from carebot.routing.survey_answers import parse_score


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5", 5), ("4/5", 4), ("4 / 5", 4), ("3 out of 5", 3), ("2 stars", 2), (" 1! ", 1),
        ("⭐⭐⭐⭐", 4), ("⭐️⭐️⭐️", 3), ("*****", 5), ("★★", 2),
        ("very satisfied", 5), ("Very satisfied!", 5), ("good", 4), ("okay", 3), ("bad", 2),
        ("terrible", 1),
    ],
)
def test_clear_csat_answers(text: str, score: int) -> None:
    assert parse_score(text, "csat", 5) == score


@pytest.mark.parametrize(
    "text",
    [
        "6", "0", "4/10", "⭐⭐⭐⭐⭐⭐", "where is my order", "5 items are missing",
        "my order number is 4", "not sure", "", "yes", "I want a refund, service was bad",
    ],
)
def test_unclear_or_out_of_range_is_not_a_score(text: str) -> None:
    assert parse_score(text, "csat", 5) is None


def test_ces_uses_its_own_scale_and_words() -> None:
    assert parse_score("7", "ces", 7) == 7
    assert parse_score("6/7", "ces", 7) == 6
    assert parse_score("very easy", "ces", 7) == 7
    assert parse_score("difficult", "ces", 7) == 2
    assert parse_score("8", "ces", 7) is None
    assert parse_score("very satisfied", "ces", 7) is None
