"""FAQ matcher: ranks knowledge-base entries for a customer message and calibrates the scores.

Model
-----
Every FAQ text (question + phrasings) is normalised (`textnorm.normalize`) and embedded with
word and character TF-IDF (`lexical`).

Entries are ranked by a *primary* score (a LinearSVC, or similarity to the phrasings for
tiny and huge KBs) and the ten best are re-scored by a calibrator, a logistic regression over
per-candidate features (`ranking` computes both).

A hidden entry of generic off-topic questions is trained and ranked like the others but never
returned (`training`, which also draws the cross-validation folds).

The calibrator's output is the probability that the candidate is the right answer;
candidates are returned in that order (probabilities of one query's candidates are scaled
to sum to at most 1).

Sentence embeddings
-------------------
With a `TextEncoder` (all-MiniLM-L6-v2, `embeddings.py`), four more calibrator features are
the cosine of the question's embedding to the candidate's nearest phrasing and to its
centroid, each with its gap to the best *other entry of the whole index*: they recognise
rewordings that share no words with any phrasing. The encoder costs ~3-12 ms of CPU per
question, so a second calibrator over the lexical features alone (fit on the same data)
decides first, and a question it gives at least `_LEXICAL_SURE` skips the encoder. Words the
KB never uses are respelled to a KB word one typo away before embedding (`_respell`).
KBs too small to cross-validate or above `_MAX_EMBEDDED_TEXTS` texts stay lexical. An encoder
with a `fit` method (`KbAdaptedEncoder`: the static encoder of `static_embeddings`, selected by
CAREBOT_EMBEDDING_MODEL=static) is first adapted to the KB's texts, and the matcher keeps the
adapted copy.

Calibration
-----------
The calibrator is fit at build time by cross-validation over the KB's own texts
(`training._CV_FOLDS` folds, `training._CV_FOLDS_LARGE` above `training.LARGE_TEXTS` texts,
query counts capped per fold): in each fold about a fifth of every entry's texts is held out
and scored by a model trained on the rest (in-scope queries whose right answer is known);
~20 % of the entries, spread over the folds, are removed from training altogether so their
texts play questions no entry answers (near-miss out-of-scope queries), and the held-out
off-topic questions play far-off ones. Out-of-scope queries are weighted to make up
`OUT_OF_SCOPE_SHARE` (20 %) of the calibration data (30 % of that weight for off-topic
chatter), so scores assume about that share of incoming questions has no FAQ. KBs too small
to cross-validate (fewer than `training._MIN_CV_QUERIES` held-out texts or
`training._MIN_CV_OOS` out-of-scope ones) use the similarity model with a fixed calibrator
(`_PRIOR_COEF`) fit the same way on small KBs sampled from BANKING77 training data.

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
from sklearn.linear_model import LogisticRegression

from carebot.matching.faq import Candidate, FaqDoc
from carebot.matching.lexical import F64Array, Featurizer, FloatArray, IntArray
from carebot.matching.ranking import (
    CANDIDATES,
    N_FEATURES,
    Index,
    Scored,
    build_index,
    score_queries,
    with_embedding_features,
)
from carebot.matching.textnorm import normalize
from carebot.matching.training import LARGE_TEXTS, SEED, Mode, Prepared, prepare

DEFAULT_ANSWER_THRESHOLD = 0.40
DEFAULT_SUGGEST_THRESHOLD = 0.30

# Assumed share of incoming questions that no FAQ answers; it sets the calibrator's prior.
OUT_OF_SCOPE_SHARE = 0.2

_CV_QUERIES_PER_FOLD = 1_500
_CV_QUERIES_PER_FOLD_LARGE = 1_000
_CV_OOS_PER_ENTRY = 25

# With an encoder, a query whose lexical P(right) reaches this skips the embedding (which
# costs ~10 ms of CPU): the embedding features rarely overturn so sure a lexical answer.
_LEXICAL_SURE = 0.95
# Embedding a KB text costs ~4 ms of CPU at build time: above this many texts (~2 minutes)
# the matcher stays lexical, so a huge KB still rebuilds in reasonable time.
_MAX_EMBEDDED_TEXTS = 30_000

# Similarity-mode calibrator for KBs too small to cross-validate: raw-feature logistic
# coefficients (order as in `ranking._candidate_features`) fit with this module's
# cross-validation, pooled over 120 small KBs sampled from the BANKING77 training split (4-25
# intents, 2-8 texts each), since hand-written starter KBs look like that.
_PRIOR_COEF: F64Array = np.array(
    [2.828, 16.012, 0.743, -3.524, 3.738, -1.126, 2.713, 0.567, 0.219, 0.408, 1.274],
    dtype=np.float64,
)
_PRIOR_INTERCEPT = -3.469
_OFF_TOPIC_SHARE = 0.3  # of the out-of-scope calibration weight


class TextEncoder(Protocol):
    """Sentence embeddings: one L2-normalised float32 row per text (see `embeddings`)."""

    def encode(self, texts: Sequence[str]) -> FloatArray: ...


@runtime_checkable
class KbAdaptedEncoder(TextEncoder, Protocol):
    """An encoder that adapts to a KB's texts before use (`static_embeddings`)."""

    def fit(self, texts: Sequence[str]) -> TextEncoder: ...


@dataclass(frozen=True)
class CalibrationSample:
    """One cross-validation query as the calibrator saw it (for threshold derivation)."""

    top_score: float  # calibrated score of the top candidate
    top1_right: bool
    top3_right: bool
    out_of_scope: bool
    weight: float


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
    ) -> None:
        self._ids = tuple(ids)
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
        return self._encoder is not None

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
        if not queries:
            return results
        rows, normalized = list(queries), list(queries.values())
        v = self._featurizer.transform_queries(normalized)
        scored = score_queries(index, v, normalized, max(CANDIDATES, limit) + 1)
        entries = index.entry_of[scored.candidates]
        valid = entries < len(self._ids)
        probs = [
            _probabilities(scored.features[r], *self._lexical, valid[r]) for r in range(len(rows))
        ]
        unsure = (
            [r for r in range(len(rows)) if _needs_embedding(probs[r])]
            if self._encoder is not None
            else []
        )
        embed = unsure if embed_limit is None else unsure[: max(0, embed_limit)]
        if embed:
            assert self._encoder is not None
            q_emb = self._encoder.encode(
                [_respell(normalized[r], index.vocabulary, self._spellings) for r in embed]
            )
            sub = Scored(scored.candidates[embed], scored.features[embed])
            feats = with_embedding_features(index, sub, q_emb)
            for j, r in enumerate(embed):
                probs[r] = _probabilities(feats[j], self._coef, self._intercept, valid[r])
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


def _needs_embedding(lexical_probs: F64Array) -> bool:
    """Whether the lexical calibrator is unsure enough to consult the encoder (`match_many`
    and the calibration samples must agree on this)."""
    return bool(lexical_probs.max() < _LEXICAL_SURE)


def _probabilities(
    features: F64Array, coef: F64Array, intercept: float, valid: npt.NDArray[np.bool_]
) -> F64Array:
    """P(right) per candidate; -1 for the hidden off-topic entry so it sorts last."""
    logits = features @ coef + intercept
    probs: F64Array = np.where(valid, 1.0 / (1.0 + np.exp(-logits)), 0.0)
    total = float(probs.sum())
    # The candidates are mutually exclusive answers: keep the probabilities a sub-distribution.
    if total > 1.0:
        probs = probs / total
    out: F64Array = np.where(valid, probs, -1.0)
    return out


def build_matcher(
    docs: Sequence[FaqDoc], *, mode: Mode = "auto", encoder: TextEncoder | None = None
) -> Matcher:
    """Build a matcher for the given entries (CPU-bound; run it in a worker thread).

    `mode` forces the ranking model ("linear" or "similarity"); "auto" picks by KB size.
    With an `encoder`, the calibrator also sees sentence-embedding similarities (KBs large
    enough to cross-validate, since the fixed small-KB calibrator has no coefficients for
    them, and up to `_MAX_EMBEDDED_TEXTS` texts). Raises ValueError on duplicate ids.
    Entries whose texts normalise to nothing are counted by `len()` but can never match.
    """
    # Cross-validation folds are drawn by position: order by id, so the same entries give the
    # same scores whether they come from the YAML files or the database.
    docs = sorted(docs, key=lambda d: d.id)
    ids = [d.id for d in docs]
    prep = prepare(docs, mode)
    if prep is None:
        return Matcher(ids, None, None, _PRIOR_COEF, _PRIOR_INTERCEPT, "empty")
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
        return Matcher(ids, prep.featurizer, index, _PRIOR_COEF, _PRIOR_INTERCEPT, mode_name)
    feats, labels, weights, meta = _cross_validate(prep, emb)
    coef, intercept = _fit_calibrator(feats, labels, weights)
    lexical = None
    if emb is not None:
        lexical = _fit_calibrator(feats[:, :, :N_FEATURES], labels, weights)
    calibration = _calibration_samples(feats, meta, (coef, intercept), lexical)
    return Matcher(
        ids, prep.featurizer, index, coef, intercept, mode_name, calibration, encoder, lexical
    )


@dataclass(frozen=True)
class _QueryMeta:
    right: IntArray  # per query: rank of the right entry among candidates, -1 if absent
    oos: npt.NDArray[np.bool_]
    weight: F64Array
    valid: npt.NDArray[np.bool_]  # (queries, k): candidate is a real entry


def _cross_validate(
    prep: Prepared, emb: FloatArray | None
) -> tuple[F64Array, F64Array, F64Array, _QueryMeta]:
    """Candidate features and labels of held-out texts; (queries, k) weights, 0 for the
    hidden off-topic entry's rows, which the calibrator must not learn from."""
    rng = np.random.default_rng(SEED + 1)
    owner, folds, oos_fold = prep.owner, prep.folds, prep.oos_fold
    n_folds = int(max(folds.max(), oos_fold.max())) + 1
    all_feats: list[F64Array] = []
    all_labels: list[F64Array] = []
    all_valid: list[npt.NDArray[np.bool_]] = []
    oos_flags: list[npt.NDArray[np.bool_]] = []
    off_flags: list[npt.NDArray[np.bool_]] = []
    cap = _CV_QUERIES_PER_FOLD if len(owner) <= LARGE_TEXTS else _CV_QUERIES_PER_FOLD_LARGE
    for f in range(n_folds):
        unknown = oos_fold[owner] == f
        held = (folds == f) & ~unknown
        train = np.flatnonzero(~held & ~unknown)
        if len(np.unique(owner[train])) < 2:
            continue
        in_q = np.flatnonzero(held & (owner != prep.off_entry))
        if len(in_q) > cap:
            in_q = np.sort(rng.choice(in_q, cap, replace=False))
        out_q = np.concatenate(
            [
                np.flatnonzero(owner == e)[:_CV_OOS_PER_ENTRY]
                for e in np.flatnonzero(oos_fold == f)
            ]
            or [np.zeros(0, dtype=np.int64)]
        )
        if len(out_q) > cap // 2:
            out_q = np.sort(rng.choice(out_q, cap // 2, replace=False))
        off_q = np.flatnonzero(held & (owner == prep.off_entry))
        queries = np.concatenate([in_q, out_q, off_q]).astype(np.int64)
        if len(queries) == 0:
            continue
        index = build_index(
            prep.x, owner, prep.texts, train, prep.linear, prep.off_entry, emb
        )
        scored = score_queries(index, prep.x[queries], [prep.texts[i] for i in queries], CANDIDATES)
        global_cands = index.entry_of[scored.candidates]
        is_oos = np.zeros(len(queries), dtype=bool)
        is_oos[len(in_q) :] = True
        is_off = np.zeros(len(queries), dtype=bool)
        is_off[len(in_q) + len(out_q) :] = True
        labels = (global_cands == owner[queries][:, None]) & ~is_oos[:, None]
        all_feats.append(
            scored.features if emb is None
            else with_embedding_features(index, scored, emb[queries])
        )
        all_labels.append(labels.astype(np.float64))
        all_valid.append(global_cands != prep.off_entry)
        oos_flags.append(is_oos)
        off_flags.append(is_off)
    # Small KBs can have fewer candidates in some folds: keep the common top-k.
    k = min(f.shape[1] for f in all_feats)
    feats = np.concatenate([f[:, :k] for f in all_feats])
    labels = np.concatenate([lab[:, :k] for lab in all_labels])
    valid = np.concatenate([v[:, :k] for v in all_valid])
    oos = np.concatenate(oos_flags)
    off = np.concatenate(off_flags)
    right = np.where(labels.any(axis=1), labels.argmax(axis=1), -1).astype(np.int64)
    n_in, n_near, n_off = int((~oos).sum()), int((oos & ~off).sum()), int(off.sum())
    weight = np.ones(len(oos), dtype=np.float64)
    if n_in:
        # Out-of-scope queries make up OUT_OF_SCOPE_SHARE of the weighted calibration data,
        # split between held-out entries (near misses) and held-out off-topic questions.
        oos_total = OUT_OF_SCOPE_SHARE / (1.0 - OUT_OF_SCOPE_SHARE) * n_in
        off_share = _OFF_TOPIC_SHARE if n_near else 1.0
        if n_near:
            weight[oos & ~off] = oos_total * (1.0 - off_share) / n_near
        if n_off:
            weight[off] = oos_total * off_share / n_off
    meta = _QueryMeta(right=right, oos=oos, weight=weight, valid=valid)
    row_weights: F64Array = weight[:, None] * valid
    return feats, labels, row_weights, meta


def _fit_calibrator(
    feats: F64Array, labels: F64Array, weights: F64Array
) -> tuple[F64Array, float]:
    """Logistic regression of "candidate is right" on its features; raw-feature coefficients."""
    flat = feats.reshape(-1, feats.shape[2])
    y = labels.reshape(-1)
    w = weights.reshape(-1)
    if y.min() == y.max():
        # Nothing to learn from; the prior has no say on embedding features, if any.
        prior = np.zeros(flat.shape[1], dtype=np.float64)
        prior[: len(_PRIOR_COEF)] = _PRIOR_COEF
        return prior, _PRIOR_INTERCEPT
    mean = np.average(flat, axis=0, weights=w)
    scale = np.sqrt(np.average((flat - mean) ** 2, axis=0, weights=w))
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit((flat - mean) / scale, y, sample_weight=w)
    coef = np.asarray(model.coef_[0], dtype=np.float64) / scale
    intercept = float(model.intercept_[0]) - float(coef @ mean)
    return coef, intercept


def _calibration_samples(
    feats: F64Array,
    meta: _QueryMeta,
    calibrator: tuple[F64Array, float],
    lexical: tuple[F64Array, float] | None,
) -> list[CalibrationSample]:
    """Each query's top score as `Matcher.match` computes it (lexical first, embeddings
    only when the lexical calibrator is unsure)."""
    out: list[CalibrationSample] = []
    for q in range(feats.shape[0]):
        if lexical is None:
            probs = _probabilities(feats[q], *calibrator, meta.valid[q])
        else:
            probs = _probabilities(feats[q, :, :N_FEATURES], *lexical, meta.valid[q])
            if _needs_embedding(probs):
                probs = _probabilities(feats[q], *calibrator, meta.valid[q])
        order = np.argsort(-probs, kind="stable")
        right = int(meta.right[q])
        rank = int(np.flatnonzero(order == right)[0]) if right >= 0 else -1
        out.append(
            CalibrationSample(
                top_score=float(probs[order[0]]),
                top1_right=rank == 0,
                top3_right=0 <= rank < 3,
                out_of_scope=bool(meta.oos[q]),
                weight=float(meta.weight[q]),
            )
        )
    return out


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
