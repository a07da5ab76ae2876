"""FAQ matcher: ranks knowledge-base entries for a customer message and calibrates the scores.

Model
-----
A KB becomes a matcher in four steps, each in a module of its own:

* `training`: the KB's texts grouped by entry, plus a hidden off-topic entry that is never
  returned, their TF-IDF features (`lexical`), cross-validation folds and the ranking model;
* `ranking`: the primary score that ranks the entries (a LinearSVC, or similarity to the
  phrasings for tiny and huge KBs) and the features of the ten best candidates;
* `calibration`: a logistic regression over those features, fit by cross-validation over
  the KB's own texts, which scores each candidate as the probability that it is right;
* this module: `build_matcher` ties them together and `Matcher` answers questions.

Sentence embeddings
-------------------
With a `TextEncoder` (all-MiniLM-L6-v2, `embeddings.py`), four more calibrator features are
the cosine of the question's embedding to the candidate's nearest phrasing and to its
centroid, each with its gap to the best *other entry of the whole index*: they recognise
rewordings that share no words with any phrasing. The encoder costs ~3-12 ms of CPU per
question, so a second calibrator over the lexical features alone (fit on the same data)
decides first, and a question it gives at least `calibration._LEXICAL_SURE` skips the
encoder. Words the KB never uses are respelled to a KB word one typo away before embedding
(`_respell`). KBs too small to cross-validate or above `_MAX_EMBEDDED_TEXTS` texts stay
lexical. An encoder with a `fit` method (`KbAdaptedEncoder`: the static encoder of
`static_embeddings`, selected by CAREBOT_EMBEDDING_MODEL=static) is first adapted to the KB's
texts, and the matcher keeps the adapted copy.

Questions in another language
-----------------------------
all-MiniLM-L6-v2 and the lexical features know English only. With a multilingual encoder
(`packaged_encoders`, CAREBOT_MULTILINGUAL_ENCODER), `build_matcher` also builds a second,
*foreign* matcher over the same entries with that encoder, and a question most of whose content
words (`FOREIGN_SHARE`) the KB has never seen is matched by it: a German question against an
English KB, but also an off-topic English one, which the foreign matcher's own calibrator hands
off as well. The foreign matcher embeds the customer's own text, not the normalised one: the
normaliser's chat spellings are English ("wo" would become "without") and its respelling turns
foreign words into English KB words one typo away ("oder" -> "order"). English questions keep
the English encoder, so its accuracy on them does not change. docs/matching.md has the figures.

Default thresholds
------------------
The app compares the top candidate's score with two thresholds: at or above
`DEFAULT_ANSWER_THRESHOLD` it answers, at or above `DEFAULT_SUGGEST_THRESHOLD` it offers the
top candidates as buttons, else it hands off. They come from `derive_thresholds` applied to
the cross-validation predictions of a matcher built on the BANKING77 *training* split (all 77
intents, all phrasings, with the sentence encoder; no test query was used), on a 0.05 grid:

* answer = the lowest threshold at which at most 10 % of the confident answers are wrong
  (answering a simulated out-of-scope query counts as wrong): 0.40;
* suggest = the highest threshold at which at most 5 % of the in-scope queries whose right
  entry is among the top three would be handed off instead of offered buttons: 0.30.

`benchmarks/faq_quality.py` re-derives and prints them. The same rules on the starter KB's own
cross-validation give stricter values (its held-out phrasings are deliberately varied, so CV
is pessimistic there); the BANKING77 values are the shipped defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from carebot.matching.calibration import (
    PRIOR_COEF,
    PRIOR_INTERCEPT,
    CalibrationSample,
    calibration_samples,
    cross_validate,
    fit_calibrator,
    needs_embedding,
    probabilities,
)
from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.lexical import STOP_WORDS, F64Array, Featurizer, FloatArray
from carebot.matching.ranking import (
    CANDIDATES,
    N_FEATURES,
    Index,
    Scored,
    build_index,
    nearest_entries,
    score_queries,
    with_embedding_features,
)
from carebot.matching.textnorm import normalize
from carebot.matching.training import Mode, prepare
from carebot.settings import Settings

# The shipped defaults live in Settings (their one home); derived here from BANKING77's
# training split (see derive_thresholds).
DEFAULT_ANSWER_THRESHOLD: float = Settings.answer_threshold
DEFAULT_SUGGEST_THRESHOLD: float = Settings.suggest_threshold

# Embedding a KB text costs ~4 ms of CPU at build time: above this many texts (~2 minutes)
# the matcher stays lexical, so a huge KB still rebuilds in reasonable time.
_MAX_EMBEDDED_TEXTS = 30_000

# A question whose content words are at least this share unknown to the KB goes to the foreign
# matcher, when there is one. On the starter KB: 71-72 of 72 German, French and Spanish
# questions each, and 29 of 258 English ones (mostly off-topic: "tell me a joke").
FOREIGN_SHARE = 0.75


class TextEncoder(Protocol):
    """Sentence embeddings: one L2-normalised float32 row per text (see `embeddings`)."""

    def encode(self, texts: Sequence[str]) -> FloatArray: ...


@runtime_checkable
class KbAdaptedEncoder(TextEncoder, Protocol):
    """An encoder that adapts to a KB's texts before use (`static_embeddings`)."""

    def fit(self, texts: Sequence[str]) -> TextEncoder: ...


class Matcher:
    """An immutable, thread-safe FAQ matcher; build it with `build_matcher`."""

    def __init__(
        self,
        ids: Sequence[str],
        featurizer: Featurizer | None,
        index: Index | None,
        coef: F64Array,
        intercept: float,
        mode: Literal["linear", "similarity", "empty"],
        calibration: Sequence[CalibrationSample] = (),
        encoder: TextEncoder | None = None,
        lexical: tuple[F64Array, float] | None = None,
        *,
        foreign: Matcher | None = None,
        raw_queries: bool = False,
    ) -> None:
        self._ids = tuple(ids)
        # Matches questions the KB's vocabulary does not cover (see "Questions in another
        # language" above); `raw_queries`: the encoder sees the text as the customer wrote it.
        self._foreign = foreign
        self._raw_queries = raw_queries
        self._featurizer = featurizer
        self._index = index
        self._coef = coef
        self._intercept = intercept
        self.mode = mode
        self.calibration = tuple(calibration)
        # Only an index built with embeddings has a calibrator that expects their features.
        self._encoder = encoder if index is not None and index.emb_rows is not None else None
        # With an encoder, (coef, intercept) expect the embedding features too; `lexical` is
        # the calibrator over the lexical features alone, which decides whether to embed.
        self._lexical = (coef, intercept) if lexical is None else lexical
        # Respelling targets, for the encoder's input only.
        self._spellings = (
            sorted(index.vocabulary) if index is not None and self._encoder is not None else []
        )

    @property
    def uses_embeddings(self) -> bool:
        """True when scores include sentence-embedding features."""
        return self._encoder is not None or (
            self._foreign is not None and self._foreign.uses_embeddings
        )

    @property
    def multilingual(self) -> bool:
        """True when questions the KB's words do not cover go to a multilingual encoder."""
        return self._foreign is not None and self._foreign.uses_embeddings

    def __len__(self) -> int:
        return len(self._ids)

    def match(self, text: str, limit: int = 3, *, embed: bool = True) -> list[Candidate]:
        """Return up to `limit` candidates, best first, scored as P(candidate is right).

        Empty when the KB is empty or the text has no words after normalisation. `embed=False`
        scores with the lexical calibrator only, skipping the sentence encoder (for bursts).
        """
        return self.match_many([text], limit, embed_limit=1 if embed else 0)[0].candidates

    def match_many(
        self, texts: Sequence[str], limit: int = 3, *, embed_limit: int | None = None
    ) -> list[MatchResult]:
        """`match` for several texts at once, cheaper per text than one call each.

        At most `embed_limit` texts (None: all) that the lexical calibrator is unsure of are
        embedded, in one encoder call; the others keep lexical scores and say so in
        `MatchResult.complete`.
        """
        results = [MatchResult([], complete=True) for _ in texts]
        if limit <= 0 or self._index is None or self._featurizer is None:
            return results
        index = self._index
        queries = {i: q for i, q in ((i, normalize(t)) for i, t in enumerate(texts)) if q}
        if self._foreign is not None:
            foreign = [i for i, q in queries.items() if _unknown_share(q, index) >= FOREIGN_SHARE]
            if foreign:
                # Their lexical scores say nothing, so they take the encoder budget first.
                found = self._foreign.match_many(
                    [texts[i] for i in foreign], limit, embed_limit=embed_limit
                )
                for i, result in zip(foreign, found, strict=True):
                    results[i] = result
                    del queries[i]
                if embed_limit is not None:
                    embed_limit = max(0, embed_limit - len(foreign))
        if not queries:
            return results
        rows, normalized = list(queries), list(queries.values())
        v = self._featurizer.transform_queries(normalized)
        scored = score_queries(index, v, normalized, max(CANDIDATES, limit) + 1)
        entries = index.entry_of[scored.candidates]
        valid = entries < len(self._ids)
        probs = [
            probabilities(scored.features[r], *self._lexical, valid[r]) for r in range(len(rows))
        ]
        unsure = (
            [r for r in range(len(rows)) if needs_embedding(probs[r])]
            if self._encoder is not None
            else []
        )
        embed = unsure if embed_limit is None else unsure[: max(0, embed_limit)]
        if embed:
            assert self._encoder is not None
            q_emb = self._encoder.encode(
                [texts[rows[r]] for r in embed] if self._raw_queries
                else [_respell(normalized[r], index.vocabulary, self._spellings) for r in embed]
            )
            if self._raw_queries:
                # A foreign question shares no words with the KB, so its entry is rarely among
                # the lexical candidates: the entries the encoder finds nearest join them
                # (ranking.EMBEDDING_CANDIDATES), with lexical features for the new set.
                sub = score_queries(
                    index, v[embed], [normalized[r] for r in embed],
                    max(CANDIDATES, limit) + 1, nearest_entries(index, q_emb),
                )
            else:
                sub = Scored(scored.candidates[embed], scored.features[embed])
            feats = with_embedding_features(index, sub, q_emb)
            for j, r in enumerate(embed):
                entries[r] = index.entry_of[sub.candidates[j]]
                valid[r] = entries[r] < len(self._ids)
                probs[r] = probabilities(feats[j], self._coef, self._intercept, valid[r])
        embedded = set(embed)
        for r, i in enumerate(rows):
            order = np.argsort(-probs[r], kind="stable")[: min(limit, int(valid[r].sum()))]
            results[i] = MatchResult(
                [
                    Candidate(faq_id=self._ids[int(e)], score=float(probs[r][j]))
                    for e, j in zip(entries[r][order], order, strict=True)
                ],
                complete=r in embedded or r not in unsure,
            )
        return results


@dataclass(frozen=True, slots=True)
class MatchResult:
    """One text's candidates; `complete` is False when they lack the embedding features the
    matcher would have used (it was over `embed_limit`)."""

    candidates: list[Candidate]
    complete: bool


def _unknown_share(query: str, index: Index) -> float:
    """The share of a normalised question's content words that no KB text uses."""
    words = query.split()
    content = [w for w in words if w not in STOP_WORDS] or words
    return sum(w not in index.vocabulary for w in content) / len(content)


def _respell(query: str, vocabulary: frozenset[str], spellings: Sequence[str]) -> str:
    """Replace words the KB never uses by a KB word one typo away (two for long words).

    For the sentence encoder only: "oder" is a German word to it, while the character
    n-grams of the lexical model absorb typos by themselves. KB texts never change here, so
    the calibrator's cross-validation sees the same inputs as before.
    """
    words = query.split()
    changed = False
    for i, w in enumerate(words):
        if len(w) < 4 or w in vocabulary or not w.isalpha():
            continue
        best = process.extractOne(
            w, spellings, scorer=Levenshtein.distance, score_cutoff=1 if len(w) < 8 else 2
        )
        if best is not None:
            words[i] = best[0]
            changed = True
    return " ".join(words) if changed else query

def build_matcher(
    docs: Sequence[FaqDoc],
    *,
    mode: Mode = "auto",
    encoder: TextEncoder | None = None,
    multilingual: TextEncoder | None = None,
) -> Matcher:
    """Build a matcher for the given entries (CPU-bound; run it in a worker thread).

    `mode` forces the ranking model ("linear" or "similarity"); "auto" picks by KB size.
    With an `encoder`, the calibrator also sees sentence-embedding similarities (KBs large
    enough to cross-validate, since the fixed small-KB calibrator has no coefficients for
    them, and up to `_MAX_EMBEDDED_TEXTS` texts). With a `multilingual` encoder, questions
    the KB's words do not cover are matched by a second matcher built with it (see
    "Questions in another language"). Raises ValueError on duplicate ids.
    Entries whose texts normalise to nothing are counted by `len()` but can never match.
    """
    foreign = None
    if multilingual is not None:
        foreign = _build(docs, mode, multilingual, raw_queries=True)
    return _build(docs, mode, encoder, foreign=foreign)


def _build(
    docs: Sequence[FaqDoc],
    mode: Mode,
    encoder: TextEncoder | None,
    *,
    foreign: Matcher | None = None,
    raw_queries: bool = False,
) -> Matcher:
    # Cross-validation folds are drawn by position: order by id, so the same entries give the
    # same scores whether they come from the YAML files or the database.
    docs = sorted(docs, key=lambda d: d.id)
    ids = [d.id for d in docs]
    prep = prepare(docs, mode)
    if prep is None:
        return Matcher(ids, None, None, PRIOR_COEF, PRIOR_INTERCEPT, "empty")
    all_rows = np.arange(len(prep.texts), dtype=np.int64)
    mode_name: Literal["linear", "similarity"] = "linear" if prep.linear else "similarity"
    # The fixed small-KB calibrator has no embedding coefficients: embed only what is CV'd.
    embed = encoder is not None and prep.can_cv and len(prep.texts) <= _MAX_EMBEDDED_TEXTS
    if embed and isinstance(encoder, KbAdaptedEncoder):
        # A static encoder learns its vectors from the KB's own sentences (queries then only
        # look vectors up); the matcher keeps the adapted copy.
        encoder = encoder.fit(prep.texts)
    emb = encoder.encode(prep.texts) if embed and encoder is not None else None
    index = build_index(
        prep.x, prep.owner, prep.texts, all_rows, prep.linear, prep.off_entry, emb
    )
    if not prep.can_cv:
        return Matcher(
            ids, prep.featurizer, index, PRIOR_COEF, PRIOR_INTERCEPT, mode_name, foreign=foreign
        )
    feats, labels, weights, meta = cross_validate(prep, emb, inject=raw_queries)
    coef, intercept = fit_calibrator(feats, labels, weights)
    lexical = None
    if emb is not None:
        lexical = fit_calibrator(feats[:, :, :N_FEATURES], labels, weights)
    calibration = calibration_samples(feats, meta, (coef, intercept), lexical)
    return Matcher(
        ids, prep.featurizer, index, coef, intercept, mode_name, calibration, encoder, lexical,
        foreign=foreign, raw_queries=raw_queries,
    )


def derive_thresholds(
    samples: Sequence[CalibrationSample],
    max_wrong_answer_share: float = 0.10,
    max_lost_suggestions: float = 0.05,
) -> tuple[float, float]:
    """Recommend (answer, suggest) thresholds from cross-validation samples (0.05 grid).

    answer: the lowest threshold at which at most `max_wrong_answer_share` of the (weighted)
    confident answers are wrong, out-of-scope queries counting as wrong. suggest: the highest
    threshold, not above answer, at which at most `max_lost_suggestions` of the in-scope
    queries whose right entry is among the top three would be handed off.
    """
    if not samples:
        return DEFAULT_ANSWER_THRESHOLD, DEFAULT_SUGGEST_THRESHOLD
    score = np.array([s.top_score for s in samples])
    right1 = np.array([s.top1_right for s in samples])
    helpful = np.array([s.top3_right and not s.out_of_scope for s in samples])
    w = np.array([s.weight for s in samples])
    grid = np.round(np.arange(0.05, 1.0, 0.05), 2)
    answer = float(grid[-1])
    for t in grid:
        answered = score >= t
        total = float(w[answered].sum())
        if total > 0 and float(w[answered & ~right1].sum()) / total <= max_wrong_answer_share:
            answer = float(t)
            break
    suggest = float(grid[0])
    for t in grid[grid <= answer]:
        if _weighted_share(score < t, helpful, w) <= max_lost_suggestions:
            suggest = float(t)
    return answer, suggest


def _weighted_share(
    hit: npt.NDArray[np.bool_], among: npt.NDArray[np.bool_], w: F64Array
) -> float:
    total = float(w[among].sum())
    return float(w[hit & among].sum()) / total if total > 0 else 0.0
