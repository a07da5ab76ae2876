"""Calibration: the logistic regression that turns a candidate's features (`ranking`) into
the probability that it is the right answer, and its fit by cross-validation.

Candidates are returned in the order of that probability (probabilities of one query's
candidates are scaled to sum to at most 1).

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
(`PRIOR_COEF`) fit the same way on small KBs sampled from BANKING77 training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from carebot.matching.lexical import F64Array, FloatArray, IntArray
from carebot.matching.ranking import (
    CANDIDATES,
    N_FEATURES,
    build_index,
    nearest_entries,
    score_queries,
    with_embedding_features,
)
from carebot.matching.training import LARGE_TEXTS, SEED, Prepared

# Assumed share of incoming questions that no FAQ answers; it sets the calibrator's prior.
OUT_OF_SCOPE_SHARE = 0.2

_CV_QUERIES_PER_FOLD = 1_500
_CV_QUERIES_PER_FOLD_LARGE = 1_000
_CV_OOS_PER_ENTRY = 25
# With an encoder, a query whose lexical P(right) reaches this skips the embedding (which
# costs ~10 ms of CPU): the embedding features rarely overturn so sure a lexical answer.
_LEXICAL_SURE = 0.95

# Similarity-mode calibrator for KBs too small to cross-validate: raw-feature logistic
# coefficients (order as in `ranking._candidate_features`) fit with this module's
# cross-validation, pooled over 120 small KBs sampled from the BANKING77 training split (4-25
# intents, 2-8 texts each), since hand-written starter KBs look like that.
PRIOR_COEF: F64Array = np.array(
    [2.828, 16.012, 0.743, -3.524, 3.738, -1.126, 2.713, 0.567, 0.219, 0.408, 1.274],
    dtype=np.float64,
)
PRIOR_INTERCEPT = -3.469

_OFF_TOPIC_SHARE = 0.3  # of the out-of-scope calibration weight


@dataclass(frozen=True)
class CalibrationSample:
    """One cross-validation query as the calibrator saw it (for threshold derivation)."""

    top_score: float  # calibrated score of the top candidate
    top1_right: bool
    top3_right: bool
    out_of_scope: bool
    weight: float


@dataclass(frozen=True)
class _QueryMeta:
    right: IntArray  # per query: rank of the right entry among candidates, -1 if absent
    oos: npt.NDArray[np.bool_]
    weight: F64Array
    valid: npt.NDArray[np.bool_]  # (queries, k): candidate is a real entry


def cross_validate(
    prep: Prepared, emb: FloatArray | None, *, inject: bool = False
) -> tuple[F64Array, F64Array, F64Array, _QueryMeta]:
    """Candidate features and labels of held-out texts; (queries, k) weights, 0 for the
    hidden off-topic entry's rows, which the calibrator must not learn from.

    `inject`: the encoder's nearest entries join the candidates, as the foreign matcher's
    `Matcher.match_many` does."""
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
        extra = nearest_entries(index, emb[queries]) if inject and emb is not None else None
        scored = score_queries(
            index, prep.x[queries], [prep.texts[i] for i in queries], CANDIDATES, extra
        )
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


def fit_calibrator(
    feats: F64Array, labels: F64Array, weights: F64Array
) -> tuple[F64Array, float]:
    """Logistic regression of "candidate is right" on its features; raw-feature coefficients."""
    flat = feats.reshape(-1, feats.shape[2])
    y = labels.reshape(-1)
    w = weights.reshape(-1)
    if y.min() == y.max():
        # Nothing to learn from; the prior has no say on embedding features, if any.
        prior = np.zeros(flat.shape[1], dtype=np.float64)
        prior[: len(PRIOR_COEF)] = PRIOR_COEF
        return prior, PRIOR_INTERCEPT
    mean = np.average(flat, axis=0, weights=w)
    scale = np.sqrt(np.average((flat - mean) ** 2, axis=0, weights=w))
    scale[scale < 1e-9] = 1.0
    model = LogisticRegression(C=1.0, max_iter=2000)
    model.fit((flat - mean) / scale, y, sample_weight=w)
    coef = np.asarray(model.coef_[0], dtype=np.float64) / scale
    intercept = float(model.intercept_[0]) - float(coef @ mean)
    return coef, intercept


def calibration_samples(
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
            probs = probabilities(feats[q], *calibrator, meta.valid[q])
        else:
            probs = probabilities(feats[q, :, :N_FEATURES], *lexical, meta.valid[q])
            if needs_embedding(probs):
                probs = probabilities(feats[q], *calibrator, meta.valid[q])
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


def needs_embedding(lexical_probs: F64Array) -> bool:
    """Whether the lexical calibrator is unsure enough to consult the encoder
    (`Matcher.match_many` and the calibration samples must agree on this)."""
    return bool(lexical_probs.max() < _LEXICAL_SURE)


def probabilities(
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
