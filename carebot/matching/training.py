"""Training rows: a KB's texts grouped by entry, their features, the cross-validation folds
and the choice of ranking model.

A hidden entry made of generic off-topic questions (`_OFF_TOPIC`) is trained and ranked like
the others but never returned: chatter like "tell me a joke" then finds a better match there
than in the FAQ that happens to share "tell me", which lowers that FAQ's probability.

The folds are drawn here and used by the calibrator's cross-validation (`calibration`, whose
docstring describes them); a KB too small to cross-validate gets the similarity model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp

from carebot.matching.faq import FaqDoc
from carebot.matching.lexical import Featurizer, IntArray
from carebot.matching.textnorm import normalize

Mode = Literal["auto", "linear", "similarity"]

_CV_FOLDS = 5
_CV_FOLDS_LARGE = 3
LARGE_TEXTS = 30_000
_OOS_ENTRY_SHARE = 0.2  # entries held out whole, across all folds
_MIN_CV_QUERIES = 60
_MIN_CV_OOS = 20
_MIN_LINEAR_ENTRIES = 5
# Beyond these the one-vs-rest SVC costs too much memory (dense coef) or build time.
_MAX_LINEAR_ENTRIES = 2_000
_MAX_LINEAR_COEF = 40_000_000
_MAX_LINEAR_WORK = 6_000_000  # entries x training texts
SEED = 20_240_601


# Questions no customer-care KB answers: the texts of the hidden off-topic entry. Held out in
# cross-validation they also show the calibrator far-off-topic chatter, not only the near
# misses simulated by holding out real entries. The topics deliberately differ from the
# out-of-scope queries of tests/data/starter_queries.csv, so that evaluation stays honest.
_OFF_TOPIC = (
    "which planet is the largest in our solar system",
    "who painted the mona lisa",
    "how do airplanes stay in the air",
    "what is the tallest building in the world",
    "how do i grow basil on my windowsill",
    "what is the best way to learn french",
    "how do i train my puppy to sit",
    "why is the sky blue",
    "what is the population of china",
    "how far away is the moon",
    "can dogs eat chocolate",
    "how do i fix a leaking tap",
    "what year did the second world war end",
    "i am bored",
    "tell me about dinosaurs",
    "what is the speed of light",
    "what is a black hole",
    "how do i meditate",
    "what is my horoscope for today",
    "when should i plant tomatoes",
    "suggest a name for my cat",
    "what is the best programming language",
    "how do volcanoes form",
    "give me a fun fact",
    "how many bones are in the human body",
    "what is the longest river in africa",
    "how do i get rid of hiccups",
    "is coffee bad for you",
    "how do i tie a tie",
    "what does dna stand for",
    "how do bees make honey",
    "what is the difference between a frog and a toad",
    "how do i become a better chess player",
    "do aliens exist",
    "how long do cats live",
    "who invented the telephone",
    "how do magnets work",
    "what causes earthquakes",
    "how deep is the ocean",
    "how do i fold a paper crane",
    "what is the rarest gemstone",
    "how many stars are in the sky",
    "lol",
    "ok cool",
    "good night",
)
_OFF_TOPIC_NORMALIZED = tuple(normalize(t) for t in _OFF_TOPIC)


def _texts_by_entry(docs: Sequence[FaqDoc]) -> list[list[str]]:
    seen_ids: set[str] = set()
    out: list[list[str]] = []
    for doc in docs:
        if doc.id in seen_ids:
            raise ValueError(f"duplicate FAQ id {doc.id!r}")
        seen_ids.add(doc.id)
        texts: list[str] = []
        for raw in doc.texts():
            norm = normalize(raw)
            if norm and norm not in texts:
                texts.append(norm)
        out.append(texts)
    return out


@dataclass(frozen=True)
class Prepared:
    """A KB turned into training rows: texts grouped by entry, features, CV folds, model."""

    per_entry: list[list[str]]
    texts: list[str]
    owner: IntArray
    off_entry: int  # number of the hidden off-topic entry (the last one)
    featurizer: Featurizer
    x: sp.csr_matrix
    folds: IntArray
    oos_fold: IntArray
    linear: bool
    can_cv: bool


def prepare(docs: Sequence[FaqDoc], mode: Mode) -> Prepared | None:
    per_entry = _texts_by_entry(docs)
    if not any(per_entry):
        return None
    n_live = sum(1 for ts in per_entry if ts)
    # A hidden entry of off-topic questions competes in every ranking: chatter such as
    # "tell me a joke" then has a better match than the FAQ sharing "tell me", which lowers
    # the FAQ's gap features and so its probability. It is never returned.
    off_entry = len(per_entry)
    per_entry = [*per_entry, list(_OFF_TOPIC_NORMALIZED)]
    texts = [t for ts in per_entry for t in ts]
    owner = np.array([e for e, ts in enumerate(per_entry) for _ in ts], dtype=np.int64)
    featurizer = Featurizer(texts)
    x = featurizer.fitted
    featurizer.fitted = sp.csr_matrix((0, featurizer.n_features), dtype=np.float32)
    folds, oos_fold = _assign_folds(per_entry, owner, off_entry)
    n_in_cv = int(((folds >= 0) & (owner != off_entry)).sum())
    n_oos_cv = int(sum(len(per_entry[e]) for e in np.flatnonzero(oos_fold >= 0)))
    can_cv = n_in_cv >= _MIN_CV_QUERIES and n_oos_cv >= _MIN_CV_OOS
    if mode == "auto":
        linear = (
            can_cv
            and _MIN_LINEAR_ENTRIES <= n_live <= _MAX_LINEAR_ENTRIES
            and n_live * featurizer.n_features <= _MAX_LINEAR_COEF
            and n_live * len(texts) <= _MAX_LINEAR_WORK
        )
    else:
        # Without cross-validation there is no calibrator for linear scores.
        linear = mode == "linear" and can_cv
    return Prepared(
        per_entry, texts, owner, off_entry, featurizer, x, folds, oos_fold, linear, can_cv
    )


def _assign_folds(
    per_entry: Sequence[Sequence[str]], owner: IntArray, off_entry: int
) -> tuple[IntArray, IntArray]:
    """Fold in which each text is held out (-1: never), fold in which each entry is unknown."""
    rng = np.random.default_rng(SEED)
    n_entries = len(per_entry)
    n_folds = _CV_FOLDS if len(owner) <= LARGE_TEXTS else _CV_FOLDS_LARGE
    live = np.array(
        [e for e, ts in enumerate(per_entry) if ts and e != off_entry], dtype=np.int64
    )
    oos_fold = np.full(n_entries, -1, dtype=np.int64)
    # Leave-entries-out needs at least two known entries left in every fold.
    n_oos = round(_OOS_ENTRY_SHARE * len(live)) if len(live) >= 3 else 0
    for i, e in enumerate(rng.permutation(live)[:n_oos]):
        oos_fold[e] = i % n_folds
    folds = np.full(len(owner), -1, dtype=np.int64)
    start = 0
    for ts in per_entry:
        m = len(ts)
        if m >= 2:
            offset = int(rng.integers(n_folds))
            for j, pos in enumerate(rng.permutation(m)):
                folds[start + pos] = (j + offset) % n_folds
        start += m
    return folds, oos_fold
