"""The FAQ entry as the matcher and the knowledge loader see it (no database types)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaqDoc:
    """A knowledge-base entry: stable id, question, the phrasings customers use, the answer."""

    id: str
    question: str
    answer: str
    phrasings: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default=())

    def texts(self) -> tuple[str, ...]:
        """Every text that should match this entry: the question first, then the phrasings."""
        return (self.question, *self.phrasings)


@dataclass(frozen=True)
class Candidate:
    """A ranked match; `score` is the calibrated probability (0..1) that it is the right one."""

    faq_id: str
    score: float
