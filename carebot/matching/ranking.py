"""Ranking: the scoring structures over a KB's texts, and the candidates of a question.

Entries are ranked by a *primary* score:

* ``linear`` mode (when the KB is large enough to cross-validate and small enough for a dense
  one-vs-rest model, see `training._MAX_LINEAR_*`): a class-balanced LinearSVC on the phrasings;
* ``similarity`` mode (tiny KBs, and huge ones where one-vs-rest training is too slow):
  ``0.3 * nearest-phrasing cosine + 0.7 * centroid cosine``. Above `_EXACT_ROWS` phrasings
  the nearest-phrasing cosine is computed only for the `_SHORTLIST` best entries by centroid.

The ten best entries by primary score are re-scored by a calibrator (`calibration`), a
logistic regression over per-candidate features computed here: the primary score and its gap
to the best other candidate, the nearest-phrasing cosine and its gap, the centroid cosine, a
rapidfuzz ``ratio`` against the entry's closest phrasings and its gap, a top-rank flag, the
query length, the share of the query's content words unknown to the KB and the share found in
the candidate's own texts; with a sentence encoder, four embedding features follow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from rapidfuzz import fuzz, process
from sklearn.svm import LinearSVC

from carebot.matching.lexical import STOP_WORDS, F64Array, FloatArray, IntArray, l2_rows

CANDIDATES = 10  # entries re-scored by the calibrator per query
# For the foreign matcher (questions in another language, `matcher`), the entries whose
# phrasings the encoder finds nearest join the candidates in place of the lexically weakest:
# such a question shares no words with the KB, so its entry is rarely among the lexical ten.
EMBEDDING_CANDIDATES = 3
_FUZZY_PHRASINGS = 20  # per candidate, the closest phrasings compared with rapidfuzz
_KNN_WEIGHT = 0.3  # similarity mode: nearest phrasing vs centroid
_SVC_C = 1.0
_DENSE_BUDGET = 4_000_000  # floats per dense similarity block when scoring in batches
_EXACT_ROWS = 12_000  # above this, phrasing similarities only for a shortlist of entries
_SHORTLIST = 100

N_FEATURES = 11  # lexical calibrator features
_N_EMB_FEATURES = 4  # added when the matcher has a sentence encoder


@dataclass(frozen=True)
class Index:
    """Scoring structures over one set of training rows (the whole KB, or one CV fold).

    Phrasings are grouped by entry: local entry j owns phrasings starts[j]:starts[j+1];
    `entry_of` maps local entries to global entry numbers.
    """

    entry_of: IntArray
    starts: IntArray
    texts: tuple[str, ...]
    entry_words: tuple[frozenset[str], ...]  # words of each local entry's texts
    vocabulary: frozenset[str]  # words of all indexed texts
    exact: bool  # small index: every query is compared with every phrasing
    rows: sp.csr_matrix  # exact: features x phrasings; else phrasings x features
    centroids_t: sp.csr_matrix  # features x local entries
    coef_t: FloatArray | None  # features x local entries (linear mode)
    intercept: FloatArray | None
    emb_rows: FloatArray | None  # phrasings x embedding dims (with a sentence encoder)
    emb_centroids: FloatArray | None  # local entries x embedding dims, L2-normalised

    @property
    def n_entries(self) -> int:
        return len(self.entry_of)

    @property
    def n_rows(self) -> int:
        return len(self.texts)


def build_index(
    x: sp.csr_matrix,
    owner: IntArray,
    texts: Sequence[str],
    rows: IntArray,
    linear: bool,
    hidden: int,
    emb: FloatArray | None = None,
) -> Index:
    """Index the given rows (must be sorted by owner) and, in linear mode, fit the SVC;
    `hidden` is the global number of the off-topic entry, `emb` all texts' embeddings."""
    sub = x[rows]
    own = owner[rows]
    entry_of, starts = np.unique(own, return_index=True)
    local = np.searchsorted(entry_of, own)
    counts = np.diff(np.append(starts, len(rows)))
    assign = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (local, np.arange(len(rows)))),
        shape=(len(entry_of), len(rows)),
    )
    centroids = l2_rows(sp.csr_matrix(sp.diags(1.0 / counts.astype(np.float32)) @ assign @ sub))
    entry_words = tuple(
        frozenset(w for i in rows[lo:hi] for w in texts[i].split())
        for lo, hi in zip(starts, np.append(starts[1:], len(rows)), strict=True)
    )
    coef_t: FloatArray | None = None
    intercept: FloatArray | None = None
    if linear:
        svc = LinearSVC(C=_SVC_C, class_weight="balanced", random_state=0)
        svc.fit(sub, local)
        coef = np.asarray(svc.coef_, dtype=np.float32)
        icpt = np.asarray(svc.intercept_, dtype=np.float32)
        if coef.shape[0] == 1:  # binary problem: sklearn keeps one hyperplane
            coef = np.vstack([-coef, coef])
            icpt = np.array([-icpt[0], icpt[0]], dtype=np.float32)
        coef_t = np.ascontiguousarray(coef.T)
        intercept = icpt
    emb_rows: FloatArray | None = None
    emb_centroids: FloatArray | None = None
    if emb is not None:
        emb_rows = np.ascontiguousarray(emb[rows])
        sums = np.add.reduceat(emb_rows, starts, axis=0)
        emb_centroids = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    return Index(
        entry_of=entry_of.astype(np.int64),
        starts=starts.astype(np.int64),
        texts=tuple(texts[i] for i in rows),
        entry_words=entry_words,
        # The hidden off-topic entry's words ("movie", "recipe") are not the KB's vocabulary.
        vocabulary=frozenset().union(
            *(w for w, e in zip(entry_words, entry_of, strict=True) if e != hidden)
        ),
        exact=len(rows) <= _EXACT_ROWS,
        rows=sp.csr_matrix(sub.T) if len(rows) <= _EXACT_ROWS else sub,
        centroids_t=sp.csr_matrix(centroids.T),
        coef_t=coef_t,
        intercept=intercept,
        emb_rows=emb_rows,
        emb_centroids=emb_centroids,
    )


@dataclass(frozen=True)
class Scored:
    """Top candidates of a batch of queries: local entry numbers and their features."""

    candidates: IntArray  # (queries, k) local entry numbers, best primary score first
    features: F64Array  # (queries, k, N_FEATURES)


def score_queries(
    index: Index,
    v: sp.csr_matrix,
    queries: Sequence[str],
    k: int,
    extra: IntArray | None = None,
) -> Scored:
    """Primary scores, top-k candidates and lexical calibration features for a batch of
    queries.

    `extra` (queries, m): local entries each query's candidates must include (see
    `nearest_entries`); they replace the lowest-ranked ones, and the candidates stay in
    primary-score order.
    """
    n_q = v.shape[0]
    k = min(k, index.n_entries)
    n_rows = index.n_rows
    cands = np.zeros((n_q, k), dtype=np.int64)
    feats = np.zeros((n_q, k, N_FEATURES), dtype=np.float64)
    step = max(1, _DENSE_BUDGET // max(n_rows if index.exact else 0, index.n_entries))
    for lo in range(0, n_q, step):
        hi = min(n_q, lo + step)
        block = v[lo:hi]
        cent = np.asarray((block @ index.centroids_t).toarray(), dtype=np.float32)
        linear: FloatArray | None = None
        if index.coef_t is not None and index.intercept is not None:
            linear = np.asarray(block @ index.coef_t, dtype=np.float32) + index.intercept
        if index.exact:
            sims = np.asarray((block @ index.rows).toarray(), dtype=np.float32)
            knn = np.maximum.reduceat(sims, index.starts, axis=1)
        for r in range(hi - lo):
            if not index.exact:
                sims_r, knn_r = _shortlist_knn(
                    index, block[r], cent[r] if linear is None else linear[r]
                )
            else:
                sims_r, knn_r = sims[r], knn[r]
            if linear is None:
                primary = _KNN_WEIGHT * knn_r + (1.0 - _KNN_WEIGHT) * cent[r]
            else:
                primary = linear[r]
            if k < index.n_entries:
                top = np.argpartition(-primary, k - 1)[:k]
            else:
                top = np.arange(index.n_entries)
            top = top[np.argsort(-primary[top], kind="stable")]
            if extra is not None:
                top = _with_forced(top, extra[lo + r], primary)
            cands[lo + r] = top
            feats[lo + r] = _candidate_features(
                index, queries[lo + r], top, primary, knn_r, cent[r], sims_r
            )
    return Scored(candidates=cands, features=feats)


def _with_forced(top: IntArray, forced: IntArray, primary: FloatArray) -> IntArray:
    """`top` with the `forced` entries it lacks in place of its last ones, by primary score."""
    missing = [int(e) for e in dict.fromkeys(forced.tolist()) if e not in set(top.tolist())]
    if not missing:
        return top
    keep = top[: max(0, len(top) - len(missing))]
    merged = np.concatenate([keep, np.array(missing[: len(top)], dtype=top.dtype)])
    return merged[np.argsort(-primary[merged], kind="stable")]


def nearest_entries(index: Index, q_emb: FloatArray, n: int = EMBEDDING_CANDIDATES) -> IntArray:
    """(queries, n) local entries whose nearest phrasing is closest to each query embedding."""
    assert index.emb_rows is not None
    n = min(n, index.n_entries)
    out = np.zeros((len(q_emb), n), dtype=np.int64)
    step = max(1, _DENSE_BUDGET // index.n_rows)
    for lo in range(0, len(q_emb), step):
        hi = min(len(q_emb), lo + step)
        knn = np.maximum.reduceat(q_emb[lo:hi] @ index.emb_rows.T, index.starts, axis=1)
        out[lo:hi] = np.argpartition(-knn, n - 1, axis=1)[:, :n]
    return out


def _shortlist_knn(
    index: Index, q: sp.csr_matrix, coarse: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Nearest-phrasing cosines for the `_SHORTLIST` entries best by `coarse` only (0 elsewhere).

    A full query-by-phrasings product touches most of a huge index, because common character
    n-grams occur in nearly every phrasing; the shortlist keeps latency flat in KB size.
    """
    n = min(_SHORTLIST, index.n_entries)
    entries = np.sort(np.argpartition(-coarse, n - 1)[:n])
    ends = np.append(index.starts[1:], index.n_rows)
    lengths = ends[entries] - index.starts[entries]
    rows = np.repeat(index.starts[entries] - np.cumsum(lengths) + lengths, lengths) + np.arange(
        int(lengths.sum())
    )
    dense_q = np.zeros(index.rows.shape[1], dtype=np.float32)
    dense_q[q.indices] = q.data
    sims = np.zeros(index.n_rows, dtype=np.float32)
    # sparse @ dense vector: scipy's sparse @ sparse would first build a huge transposed query.
    sims[rows] = index.rows[rows] @ dense_q
    knn = np.zeros(index.n_entries, dtype=np.float32)
    knn[entries] = np.maximum.reduceat(sims[rows], np.cumsum(lengths) - lengths)
    return sims, knn


def _gap(values: F64Array) -> F64Array:
    """Each value minus the best of the others (0 stands in for "no other candidate")."""
    if len(values) == 1:
        return values.copy()
    order = np.argsort(-values, kind="stable")
    best, second = values[order[0]], values[order[1]]
    others_best = np.where(np.arange(len(values)) == order[0], second, best)
    out: F64Array = values - others_best
    return out


def _candidate_features(
    index: Index,
    query: str,
    top: IntArray,
    primary: FloatArray,
    knn: FloatArray,
    cent: FloatArray,
    sims: FloatArray,
) -> F64Array:
    prim = primary[top].astype(np.float64)
    kn = knn[top].astype(np.float64)
    ce = cent[top].astype(np.float64)
    fz = np.zeros(len(top), dtype=np.float64)
    for i, e in enumerate(top):
        lo, hi = int(index.starts[e]), _end(index, int(e))
        if hi - lo > _FUZZY_PHRASINGS:
            rows = lo + np.argpartition(-sims[lo:hi], _FUZZY_PHRASINGS - 1)[:_FUZZY_PHRASINGS]
        else:
            rows = np.arange(lo, hi)
        best = process.extractOne(
            query, [index.texts[j] for j in rows], scorer=fuzz.ratio
        )
        fz[i] = 0.0 if best is None else best[1] / 100.0
    is_top = np.zeros(len(top), dtype=np.float64)
    is_top[0] = 1.0
    tokens = query.split()
    length = np.full(len(top), math.log1p(len(tokens)), dtype=np.float64)
    # Words the KB has never seen ("joke", "weather") are the plainest sign of an off-topic
    # question; coverage says how much of the question the candidate's own texts explain.
    content = [w for w in tokens if w not in STOP_WORDS] or tokens
    unknown = sum(w not in index.vocabulary for w in content) / len(content)
    oov = np.full(len(top), unknown, dtype=np.float64)
    coverage = np.array(
        [sum(w in index.entry_words[e] for w in content) / len(content) for e in top],
        dtype=np.float64,
    )
    return np.stack(
        [prim, _gap(prim), kn, _gap(kn), ce, fz, _gap(fz), is_top, length, oov, coverage],
        axis=1,
    )


def with_embedding_features(index: Index, scored: Scored, q_emb: FloatArray) -> F64Array:
    """The lexical features of `scored` followed by the candidates' embedding features."""
    assert index.emb_rows is not None and index.emb_centroids is not None
    n_q, k, _ = scored.features.shape
    out = np.zeros((n_q, k, N_FEATURES + _N_EMB_FEATURES), dtype=np.float64)
    out[:, :, :N_FEATURES] = scored.features
    step = max(1, _DENSE_BUDGET // index.n_rows)
    for lo in range(0, n_q, step):
        hi = min(n_q, lo + step)
        knn = np.maximum.reduceat(q_emb[lo:hi] @ index.emb_rows.T, index.starts, axis=1)
        cent = q_emb[lo:hi] @ index.emb_centroids.T
        for r in range(hi - lo):
            out[lo + r, :, N_FEATURES:] = _embedding_features(
                scored.candidates[lo + r], knn[r], cent[r]
            )
    return out


def _embedding_features(top: IntArray, knn: FloatArray, cent: FloatArray) -> F64Array:
    """Sentence-embedding cosines of the candidates: nearest phrasing and centroid, each with
    its gap to the best other entry of the whole index (not only the candidates), so a
    paraphrase the lexical ranking missed still shows as a rival."""
    return np.stack(
        [knn[top], _gap_over_all(knn, top), cent[top], _gap_over_all(cent, top)], axis=1
    ).astype(np.float64)


def _gap_over_all(values: FloatArray, top: IntArray) -> F64Array:
    """values[top] minus the best value among all other entries."""
    if len(values) == 1:
        return values[top].astype(np.float64)
    two = np.argpartition(-values, 1)[:2]
    first, second = (two[0], two[1]) if values[two[0]] >= values[two[1]] else (two[1], two[0])
    others_best = np.where(top == first, values[second], values[first])
    out: F64Array = (values[top] - others_best).astype(np.float64)
    return out


def _end(index: Index, e: int) -> int:
    return int(index.starts[e + 1]) if e + 1 < index.n_entries else index.n_rows
