"""Static sentence embeddings distilled from all-MiniLM-L6-v2 (the model2vec idea).

Every WordPiece token (or every whole word) is run through the transformer once, alone
(``[CLS] token [SEP]``, mean-pooled); a sentence is then the weighted mean of its units'
vectors, L2-normalised. Encoding a query is a table lookup and a sum: microseconds instead
of the ~12 ms a transformer forward pass costs, at the price of word order and context.

Two table units:

* ``token``: one row per vocabulary id (30,522 x 384), distilled in one batched pass
  (~1.9 TFLOP, about a minute on one core) and cached on disk;
* ``word``: one row per distinct word, embedded on first sight (~1-2 ms) and memoised.

Weights: ``uniform`` (plain mean) or ``sif`` (a / (a + p(unit)) with unit frequencies from
texts given to :meth:`StaticEncoder.fit`, which the matcher passes its KB texts through).
The table's mean row (a direction every unit shares) can be removed so cosines spread out.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from carebot.care.embeddings import MiniLmEncoder

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
Unit = Literal["token", "word"]
Weighting = Literal["uniform", "sif"]

_SIF_A = 1e-3
_DISTILL_BATCH = 1024
_WORD_CACHE_LIMIT = 200_000


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carebot"


def _model_key(model_dir: Path) -> str:
    st = (model_dir / "model.safetensors").stat()
    key = f"{model_dir.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def distill_token_table(
    encoder: MiniLmEncoder, pooling: str = "mean", ids: Sequence[int] | None = None
) -> F32:
    """One row per vocabulary id: the model's output for ``[CLS] id [SEP]``.

    pooling "mean" averages the three positions (what sentence-transformers would return for
    the one-token text); "token" keeps the middle position only. With `ids`, only those rows
    are distilled and the others are zero (tests).
    """
    tok = encoder.tokenizer
    n_vocab = int(encoder.word_emb.shape[0])
    todo = np.arange(n_vocab) if ids is None else np.unique(np.asarray(ids, dtype=np.intp))
    out = np.zeros((n_vocab, encoder.dim), dtype=np.float32)
    for lo in range(0, len(todo), _DISTILL_BATCH):
        chunk = todo[lo : lo + _DISTILL_BATCH]
        batch = np.empty((len(chunk), 3), dtype=np.intp)
        batch[:, 0] = tok.cls_id
        batch[:, 1] = chunk
        batch[:, 2] = tok.sep_id
        hidden = encoder._forward(batch, None).reshape(len(chunk), 3, encoder.dim)
        out[chunk] = hidden.mean(axis=1) if pooling == "mean" else hidden[:, 1]
    return out


def load_token_table(encoder: MiniLmEncoder, model_dir: Path, pooling: str = "mean") -> F32:
    """The distilled token table, from the on-disk cache or distilled now (and cached)."""
    path = _cache_dir() / f"static-{_model_key(model_dir)}-{pooling}.npy"
    if path.is_file():
        table: F32 = np.load(path)
        return table
    start = time.perf_counter()
    table = distill_token_table(encoder, pooling)
    log.info("distilled a static token table in %.0f s", time.perf_counter() - start)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, table)
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot cache the static embedding table at %s: %s", path, exc)
    return table


def _contextual_table(encoder: MiniLmEncoder, texts: Sequence[str], table: F32) -> F32:
    """`table` with each token used by `texts` replaced by its mean MiniLM output there."""
    dim = encoder.dim
    sums = np.zeros(table.shape, dtype=np.float32)
    counts = np.zeros(table.shape[0], dtype=np.float32)
    token_ids = [encoder.tokenize(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
    for batch in encoder._batches(order, token_ids, 64):
        lengths = np.array([len(token_ids[i]) for i in batch])
        seq_len = int(lengths.max())
        ids = np.zeros((len(batch), seq_len), dtype=np.intp)
        for row, i in enumerate(batch):
            ids[row, : lengths[row]] = token_ids[i]
        valid = np.arange(seq_len)[None, :] < lengths[:, None]
        hidden = encoder._forward(ids, valid).reshape(len(batch), seq_len, dim)
        inner = valid.copy()
        inner[:, 0] = False  # [CLS]
        inner[np.arange(len(batch)), lengths - 1] = False  # [SEP]
        flat_ids = ids[inner]
        np.add.at(sums, flat_ids, hidden[inner])
        np.add.at(counts, flat_ids, 1.0)
    out = table.copy()
    seen = counts > 0
    out[seen] = sums[seen] / counts[seen, None]
    return out


def _l2(v: F32) -> F32:
    n = np.sqrt(np.einsum("ij,ij->i", v, v))
    np.maximum(n, np.float32(1e-12), out=n)
    out: F32 = (v / n[:, None]).astype(np.float32, copy=False)
    return out


class StaticEncoder:
    """Weighted mean of per-unit MiniLM vectors; implements the matcher's `TextEncoder`."""

    def __init__(
        self,
        encoder: MiniLmEncoder,
        *,
        unit: Unit = "token",
        token_table: F32 | None = None,
        weighting: Weighting = "uniform",
        center: bool = True,
        word_pooling: str = "mean",
        contextual: bool = True,
    ) -> None:
        self._encoder = encoder
        self._tok = encoder.tokenizer
        self.unit = unit
        self.weighting = weighting
        self.center = center
        self._word_pooling = word_pooling
        self.contextual = contextual
        self._lock = threading.Lock()
        self._words: dict[str, F32] = {}
        self._word_weight: dict[str, float] = {}
        self._default_weight = 1.0
        if unit == "token":
            if token_table is None:
                raise ValueError("unit 'token' needs a token table")
            self._table = token_table
            self._mean = None
            self._tok_weight = np.ones(token_table.shape[0], dtype=np.float32)
        else:
            self._mean = None
        self.dim = encoder.dim

    # -- fitting weights from a corpus (the KB's texts) ---------------------------------

    def fit(self, texts: Sequence[str]) -> StaticEncoder:
        """A copy adapted to a corpus (the KB's texts): unit weights from their frequencies,
        centring on their mean sentence vector and, with ``contextual``, the vector of every
        token they use replaced by the mean of its MiniLM outputs in their sentences."""
        new = StaticEncoder.__new__(StaticEncoder)
        new.__dict__.update(self.__dict__)
        new._lock = threading.Lock()
        new._mean = None
        if self.unit == "token":
            token_lists = [self._tok.tokenize_ids(t) for t in texts]
            counts = Counter(i for ids in token_lists for i in ids)
            total = max(1, sum(counts.values()))
            if self.weighting == "sif":
                w = np.full(self._table.shape[0], 1.0, dtype=np.float32)
                ids = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
                p = np.fromiter(counts.values(), dtype=np.float64, count=len(counts)) / total
                w[ids] = (_SIF_A / (_SIF_A + p)).astype(np.float32)
                new._tok_weight = w
            if self.contextual:
                new._table = _contextual_table(self._encoder, texts, self._table)
        else:
            counts = Counter(w for t in texts for w in t.split())
            total = max(1, sum(counts.values()))
            if self.weighting == "sif":
                new._word_weight = {w: _SIF_A / (_SIF_A + c / total) for w, c in counts.items()}
            new._words = dict(self._words)
            new._embed_words(list(counts))
        if self.center and texts:
            new._mean = np.mean([new._sentence(t) for t in texts], axis=0).astype(np.float32)
        return new

    # -- encoding ----------------------------------------------------------------------

    def encode(self, texts: Sequence[str] | str) -> F32:
        """One L2-normalised row per text (zeros for a text without units)."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._sentence(text)
        return _l2(out)

    def _sentence(self, text: str) -> F32:
        if self.unit == "token":
            ids = self._tok.tokenize_ids(text)
            if not ids:
                return np.zeros(self.dim, dtype=np.float32)
            idx = np.asarray(ids, dtype=np.intp)
            vecs = self._table[idx]
            w = self._tok_weight[idx]
        else:
            words = text.split()
            if not words:
                return np.zeros(self.dim, dtype=np.float32)
            self._embed_words([w for w in words if w not in self._words])
            vecs = np.stack([self._words[w] for w in words])
            w = np.array([self._word_weight.get(x, self._default_weight) for x in words],
                         dtype=np.float32)
        v: F32 = (w[:, None] * vecs).sum(axis=0) / max(float(w.sum()), 1e-9)
        if self._mean is not None:
            v = v - self._mean
        return v

    def _embed_words(self, words: Sequence[str]) -> None:
        todo = sorted({w for w in words if w not in self._words})
        if not todo:
            return
        if self._word_pooling == "mean":
            vecs = self._encoder.encode(todo)
        else:
            vecs = self._encoder.encode(todo)
        with self._lock:
            if len(self._words) + len(todo) > _WORD_CACHE_LIMIT:
                self._words.clear()
            for w, v in zip(todo, vecs, strict=True):
                self._words[w] = v
