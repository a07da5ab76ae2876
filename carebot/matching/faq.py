"""The FAQ entry as the matcher and the knowledge loader see it (no database types)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaqTranslation:
    """An entry in another language: its question, answer and the phrasings customers use."""

    question: str
    answer: str
    phrasings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        """The stored (JSON) form."""
        return {"question": self.question, "answer": self.answer,
                "phrasings": list(self.phrasings)}


@dataclass(frozen=True)
class FaqDoc:
    """A knowledge-base entry: stable id, question, the phrasings customers use, the answer.

    `question`, `phrasings` and `answer` are in the default language; `translations` holds
    the entry in other languages, as (language code, translation) pairs."""

    id: str
    question: str
    answer: str
    phrasings: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default=())
    translations: tuple[tuple[str, FaqTranslation], ...] = ()

    def texts(self) -> tuple[str, ...]:
        """Every text that should match this entry: the question first, then the phrasings,
        then each translation's question and phrasings (a German question matches the German
        phrasings of the same entry)."""
        extra = [t for _, tr in self.translations for t in (tr.question, *tr.phrasings)]
        return (self.question, *self.phrasings, *extra)

    def in_language(self, language: str | None) -> FaqTranslation | None:
        """The entry in `language`, when it has that translation."""
        for code, tr in self.translations:
            if code == language:
                return tr
        return None

    def translations_dict(self) -> dict[str, dict[str, object]] | None:
        """The stored (JSON) form of the translations (None: there are none)."""
        return {code: tr.to_dict() for code, tr in self.translations} or None

    @staticmethod
    def translations_from(stored: object) -> tuple[tuple[str, FaqTranslation], ...]:
        """Translations from their stored form (validated on import)."""
        if not isinstance(stored, dict):
            return ()
        return tuple(
            (str(code), FaqTranslation(str(t["question"]), str(t["answer"]),
                                       tuple(str(p) for p in t.get("phrasings") or ())))
            for code, t in sorted(stored.items()) if isinstance(t, dict)
        )


@dataclass(frozen=True)
class Candidate:
    """A ranked match; `score` is the calibrated probability (0..1) that it is the right one."""

    faq_id: str
    score: float
