"""Lexical features of FAQ texts and questions: word and character TF-IDF.

Every FAQ text (question + phrasings) is normalised (`textnorm.normalize`) and embedded with
two TF-IDF views, both with sublinear tf, each L2-normalised, then joined and L2-normalised:

* words: unigrams, bigrams, trigrams and skip-bigrams (pairs one or two words apart), which
  catch "card ... arrive" patterns that plain bigrams miss;
* character n-grams (2-5, within word boundaries), which absorb typos and inflections.

IDF is fitted with 100 extra background documents made of English function words only, so a
small KB does not treat "what is the" as topical (negligible for large KBs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

FloatArray = npt.NDArray[np.float32]
F64Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

STOP_WORDS = frozenset(ENGLISH_STOP_WORDS)
_BACKGROUND_DOCS = 100
_BACKGROUND_DOC = " ".join(sorted(STOP_WORDS))


def _char_grams(text: str) -> list[str]:
    """Character 2-5-grams of each word padded with spaces (sklearn's char_wb, but callable
    without sklearn's per-call overhead)."""
    grams: list[str] = []
    for word in text.split():
        padded = f" {word} "
        n_chars = len(padded)
        for n in range(2, 6):
            if n > n_chars:
                break
            grams.extend(padded[i : i + n] for i in range(n_chars - n + 1))
    return grams


def _word_grams(text: str) -> list[str]:
    words = text.split()
    grams = list(words)
    n = len(words)
    for i in range(n - 1):
        grams.append(f"{words[i]} {words[i + 1]}")
        if i + 2 < n:
            grams.append(f"{words[i]} {words[i + 1]} {words[i + 2]}")
            grams.append(f"{words[i]} _ {words[i + 2]}")
        if i + 3 < n:
            grams.append(f"{words[i]} _ {words[i + 3]}")
    return grams


class Featurizer:
    """Word (with skip-grams) and character TF-IDF, joined and L2-normalised."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._words = TfidfVectorizer(
            analyzer=_word_grams, sublinear_tf=True, dtype=np.float32
        )
        self._chars = TfidfVectorizer(analyzer=_char_grams, sublinear_tf=True, dtype=np.float32)
        # Background documents made of function words only: a small KB's IDF cannot tell that
        # "what", "is", "the" carry no topic, they teach it; in a large KB they change next to
        # nothing. They are fitted on, then dropped.
        background = [_BACKGROUND_DOC] * _BACKGROUND_DOCS
        words = self._words.fit_transform([*texts, *background])[: len(texts)]
        chars = self._chars.fit_transform([*texts, *background])[: len(texts)]
        self._word_vocab: dict[str, int] = self._words.vocabulary_
        self._char_vocab: dict[str, int] = self._chars.vocabulary_
        self._word_idf = np.asarray(self._words.idf_, dtype=np.float64)
        self._char_idf = np.asarray(self._chars.idf_, dtype=np.float64)
        self.n_features = len(self._word_vocab) + len(self._char_vocab)
        # The training matrix falls out of fitting; keep it rather than analyse texts twice.
        self.fitted = l2_rows(
            sp.hstack([words, chars], format="csr")
        )

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Batch transform (build time)."""
        joined = sp.hstack(
            [self._words.transform(texts), self._chars.transform(texts)], format="csr"
        )
        return l2_rows(joined)

    def transform_queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        """Same result as `transform(texts)` without sklearn's per-call validation cost,
        which dominates the latency of a handful of queries."""
        indices: list[IntArray] = []
        values: list[FloatArray] = []
        indptr = [0]
        for text in texts:
            w_idx, w_val = _tfidf_block(_word_grams(text), self._word_vocab, self._word_idf, 0)
            c_idx, c_val = _tfidf_block(
                _char_grams(text), self._char_vocab, self._char_idf, len(self._word_vocab)
            )
            idx = np.concatenate([w_idx, c_idx])
            val = np.concatenate([w_val, c_val])
            norm = float(np.sqrt(val @ val))
            if norm > 0.0:
                val /= norm
            order = np.argsort(idx)
            indices.append(idx[order])
            values.append(val[order].astype(np.float32))
            indptr.append(indptr[-1] + len(idx))
        return sp.csr_matrix(
            (np.concatenate(values), np.concatenate(indices), np.array(indptr)),
            shape=(len(texts), self.n_features),
        )


def _tfidf_block(
    grams: Sequence[str], vocab: dict[str, int], idf: F64Array, offset: int
) -> tuple[IntArray, F64Array]:
    counts: dict[int, int] = {}
    for g in grams:
        j = vocab.get(g)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    val = (1.0 + np.log(tf)) * idf[idx] if len(idx) else tf
    norm = float(np.sqrt(val @ val))
    if norm > 0.0:
        val = val / norm
    return idx + offset, val


def l2_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1), dtype=np.float64)).ravel()
    norms[norms == 0.0] = 1.0
    out: sp.csr_matrix = sp.csr_matrix(sp.diags((1.0 / norms).astype(np.float32)) @ m)
    return out
