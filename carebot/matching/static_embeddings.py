"""Static sentence embeddings distilled from all-MiniLM-L6-v2 (the model2vec idea).

Every WordPiece token is run through the transformer once, alone (``[CLS] token [SEP]``,
mean-pooled): a 30,522 x 384 table, distilled in one batched pass (~1.9 TFLOP, ~45 s on one
core) and cached on disk. A sentence is the mean of its tokens' rows, minus a centre, L2-
normalised: a table lookup and a sum (~0.15 ms in Python) instead of the ~12-30 ms of a
forward pass, at the price of word order and context.

Isolated-token vectors alone are weak (BANKING77 10 phrasings per FAQ: top-1 75.8 % in the
matcher vs 73.7 % lexical only and 84.1 % with MiniLM), so :meth:`StaticEncoder.fit` adapts
the table to a KB (the matcher calls it with the KB's texts at build time): every token the
KB uses gets the mean of MiniLM's outputs for it in the KB's sentences, and the centre is the
KB sentences' mean vector. That costs one MiniLM pass over the KB (as embedding the KB with
MiniLM does) and brings 10/faq top-1 to 80.3 %. Measured and dropped: whole-word units
(75.5 %), SIF weights from KB frequencies (-5 pt), middle-token pooling (80.6 %, same),
shrinking rare tokens to their isolated vector, leave-one-out KB vectors (no gain).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from carebot.matching.embeddings import MiniLmEncoder, l2_normalize, padded
from carebot.matching.model_cache import cached_path, store

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]
_DISTILL_BATCH = 1024


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
        hidden = encoder.hidden_states(batch, None).reshape(len(chunk), 3, encoder.dim)
        out[chunk] = hidden.mean(axis=1) if pooling == "mean" else hidden[:, 1]
    return out


def load_token_table(encoder: MiniLmEncoder, model_dir: Path, pooling: str = "mean") -> F32:
    """The distilled token table, from the on-disk cache or distilled now (and cached)."""
    path = cached_path(f"static-{pooling}", model_dir, ".npy")
    if path.is_file():
        table: F32 = np.load(path)
        return table
    start = time.perf_counter()
    table = distill_token_table(encoder, pooling)
    log.info("distilled a static token table in %.0f s", time.perf_counter() - start)
    store(path, lambda tmp: np.save(tmp, table))
    return table


def _contextual_table(encoder: MiniLmEncoder, texts: Sequence[str], table: F32) -> F32:
    """`table` with each token used by `texts` replaced by its mean MiniLM output there."""
    dim = encoder.dim
    sums = np.zeros(table.shape, dtype=np.float32)
    counts = np.zeros(table.shape[0], dtype=np.float32)
    token_ids = [encoder.tokenize(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(token_ids[i]))
    for batch in encoder.length_batches(order, token_ids, 64):
        ids, lengths = padded(token_ids, batch)
        seq_len = ids.shape[1]
        valid = np.arange(seq_len)[None, :] < lengths[:, None]
        hidden = encoder.hidden_states(ids, valid).reshape(len(batch), seq_len, dim)
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


class StaticEncoder:
    """Mean of per-token MiniLM vectors; implements the matcher's `KbAdaptedEncoder`.

    Immutable after construction: `fit` returns an adapted copy, so one loaded encoder serves
    every KB rebuild, and instances are safe to share between threads.
    """

    def __init__(
        self, encoder: MiniLmEncoder, token_table: F32, *, contextual: bool = True
    ) -> None:
        """Wrap a distilled `token_table`; `contextual=False` keeps isolated-token vectors
        in `fit` (for measurement)."""
        self._encoder = encoder
        self._tok = encoder.tokenizer
        self._table = token_table
        self._mean: F32 | None = None
        self.contextual = contextual
        self.dim = encoder.dim

    def fit(self, texts: Sequence[str]) -> StaticEncoder:
        """A copy adapted to a KB's texts: each token they use gets the mean of its MiniLM
        outputs in them, and sentence vectors are centred on the texts' mean vector."""
        new = StaticEncoder(self._encoder, self._table, contextual=self.contextual)
        if self.contextual and texts:
            new._table = _contextual_table(self._encoder, texts, self._table)
        if texts:
            new._mean = np.mean([new._sentence(t) for t in texts], axis=0).astype(np.float32)
        return new

    def encode(self, texts: Sequence[str] | str) -> F32:
        """One L2-normalised row per text (zeros for a text without tokens)."""
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._sentence(text)
        return l2_normalize(out)

    def _sentence(self, text: str) -> F32:
        ids = self._tok.tokenize_ids(text)
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        v: F32 = self._table[np.asarray(ids, dtype=np.intp)].mean(axis=0)
        if self._mean is not None:
            v -= self._mean
        return v
