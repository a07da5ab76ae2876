"""Pure-numpy sentence embeddings for ``sentence-transformers/all-MiniLM-L6-v2``.

The model is a 6-layer BERT (hidden 384, 12 heads, FFN 1536, exact GELU, post-LayerNorm)
followed by attention-mask mean pooling and L2 normalisation.  This module reproduces
``SentenceTransformer(model_dir).encode(texts, normalize_embeddings=True)`` without torch,
transformers or the Rust ``tokenizers`` package: the only runtime dependency is numpy.

Two pieces make the encoder:

* :class:`~carebot.matching.tokenizer.BertWordPieceTokenizer` (in `tokenizer`) - a
  pure-Python port of the HF *fast* BERT tokenizer;
* :class:`MiniLmEncoder` (here) - the transformer forward pass in float32 numpy, with the
  weights read straight from ``model.safetensors`` (the format is parsed by hand).

Typical use::

    enc = MiniLmEncoder.load("/path/to/model")
    vecs = enc.encode(["where is my card?", "I lost my PIN"])   # (2, 384) float32
    vec = enc.encode_one("where is my card?")                   # (384,) float32

Threading: numpy's BLAS (OpenBLAS) decides the thread count.  For single short queries
one BLAS thread is as fast or faster than several and does not fight the event loop for
cores; set ``OPENBLAS_NUM_THREADS=1`` (or use ``threadpoolctl``) in latency-bound services.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from carebot.matching.tokenizer import BertWordPieceTokenizer

__all__ = ["MiniLmEncoder", "l2_normalize", "load_safetensors", "padded"]

F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------

_ST_DTYPES: Final[Mapping[str, str]] = {
    "F32": "<f4",
    "F16": "<f2",
    "BF16": "<u2",  # no numpy bfloat16: read the raw bits, widened to float32 below
    "F64": "<f8",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}


def load_safetensors(path: str | Path) -> dict[str, npt.NDArray[Any]]:
    """Memory-map every tensor of a ``.safetensors`` file as a read-only numpy array.

    Layout: 8-byte little-endian header length N, N bytes of JSON mapping tensor name to
    ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the end of
    the header), then the raw little-endian buffer.  Memory-mapping means tensors that
    are never touched in full (the 47 MB word-embedding table, of which a query reads a
    handful of rows) cost address space, not resident memory.  BF16 tensors are widened
    to float32 eagerly because numpy has no bfloat16 dtype.
    """
    path = Path(path)
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        header: dict[str, Any] = json.loads(fh.read(header_len))
    data_start = 8 + header_len
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, npt.NDArray[Any]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype_code = info["dtype"]
        if dtype_code not in _ST_DTYPES:
            raise ValueError(f"{path}: unsupported safetensors dtype {dtype_code!r} for {name}")
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        # np.asarray drops the np.memmap subclass (cheaper indexing) but keeps the
        # mapping alive through .base.
        arr = np.asarray(raw[data_start + begin : data_start + end]).view(_ST_DTYPES[dtype_code])
        arr = arr.reshape(shape)
        if dtype_code == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr
    return tensors


# --------------------------------------------------------------------------------------
# Numerics
# --------------------------------------------------------------------------------------

_SQRT_HALF: Final = 1.0 / math.sqrt(2.0)
# Rational minimax approximation of erf on [-4, 4] (the one Eigen/XLA vectorise; its
# error is a few float32 ulp, far below what matters here).  numpy has no erf;
# scipy.special.erf is ~10x slower than these few SIMD passes (it runs in float64
# scalar code) and math.erf per element is slower still.  The 1/sqrt(2) of GELU's
# erf(x/sqrt(2)) is folded into the coefficients so x can be used directly.
_ERF_ALPHA: Final = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)  # numerator odd powers x^13 .. x^1
_ERF_BETA: Final = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)  # denominator even powers x^8 .. x^0
_GELU_ALPHA: Final = tuple(
    np.float32(c * _SQRT_HALF ** (13 - 2 * i)) for i, c in enumerate(_ERF_ALPHA)
)
_GELU_BETA: Final = tuple(
    np.float32(c * _SQRT_HALF ** (8 - 2 * i)) for i, c in enumerate(_ERF_BETA)
)
_GELU_CLIP: Final = np.float32(4.0 / _SQRT_HALF)  # erf(x/sqrt2) == +-1 in float32 beyond


def gelu_(x: F32) -> F32:
    """Exact (erf) GELU, ``x * 0.5 * (1 + erf(x / sqrt(2)))``, computed in place on ``x``.

    Written as explicit ufunc calls with ``out=`` so the ~25 passes reuse three
    scratch buffers; np.clip/np.full_like would add allocations and Python overhead.
    """
    z = np.minimum(x, _GELU_CLIP)  # the rational function is only valid on the clip range
    np.maximum(z, -_GELU_CLIP, out=z)
    z2 = np.multiply(z, z)
    p = np.multiply(z2, _GELU_ALPHA[0])  # Horner, numerator (odd polynomial)
    for c in _GELU_ALPHA[1:-1]:
        p += c
        p *= z2
    p += _GELU_ALPHA[-1]
    p *= z
    q = np.multiply(z2, _GELU_BETA[0], out=z)  # Horner, denominator (even); z is free now
    for c in _GELU_BETA[1:-1]:
        q += c
        q *= z2
    q += _GELU_BETA[-1]
    p /= q  # p = erf(x / sqrt 2)
    p += np.float32(1.0)
    p *= np.float32(0.5)
    x *= p
    return x


def _layer_norm_(x: F32, gamma: F32, beta: F32, eps: np.float32) -> F32:
    """LayerNorm over the last axis of a 2-D scratch array, in place."""
    inv_n = np.float32(1.0 / x.shape[-1])
    # np.add.reduce rather than x.mean(): same pairwise sum, without mean()'s Python
    # wrapper, which costs as much as the arithmetic for a 15-token query.
    mean = np.add.reduce(x, axis=-1, keepdims=True)
    mean *= inv_n
    x -= mean
    var = np.einsum("ij,ij->i", x, x)  # one fused pass instead of x*x then a reduce
    var *= inv_n
    var += eps
    np.sqrt(var, out=var)
    x /= var[:, None]
    x *= gamma
    x += beta
    return x


def _softmax_(x: F32) -> F32:
    """Softmax over the last axis, in place (max-subtracted for stability)."""
    x -= np.maximum.reduce(x, axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= np.add.reduce(x, axis=-1, keepdims=True)
    return x


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layer:
    """One transformer block, weights laid out for ``activations @ W`` (in, out)."""

    w_qkv: F32  # (H, 3H): query | key | value, query pre-scaled by 1/sqrt(head_dim)
    b_qkv: F32  # (3H,)
    w_attn_out: F32  # (H, H)
    b_attn_out: F32
    ln1_g: F32
    ln1_b: F32
    w_ffn_in: F32  # (H, I)
    b_ffn_in: F32
    w_ffn_out: F32  # (I, H)
    b_ffn_out: F32
    ln2_g: F32
    ln2_b: F32


def fault_in(a: npt.NDArray[Any]) -> None:
    """Touch every memory page of the C-contiguous array `a` (one byte read per page)."""
    if a.size and a.flags.c_contiguous:
        np.add.reduce(a.reshape(-1).view(np.uint8)[::4096], dtype=np.uint64)


def _f32(a: npt.NDArray[Any]) -> F32:
    """Copy ``a`` into a private, C-contiguous float32 array (off the memory map)."""
    return np.array(a, dtype=np.float32, order="C", copy=True)


class MiniLmEncoder:
    """all-MiniLM-L6-v2 (any BERT + mean pooling + normalise) sentence encoder in numpy.

    Build with :meth:`load`; then :meth:`encode` for lists and :meth:`encode_one` for
    the latency-sensitive single-message case.  Instances are read-only after loading
    and safe to share between threads (the tokenizer's memo dicts only ever gain
    entries).  numpy releases the GIL inside BLAS, so threads do overlap in matmuls.
    """

    #: Upper bound on ``batch * seq_len**2`` so the (batch, heads, L, L) attention
    #: scores stay around 16 MB even for 256-token texts; short texts are unaffected.
    _ATTN_BUDGET: Final = 350_000

    def __init__(
        self,
        tokenizer: BertWordPieceTokenizer,
        word_emb: F32,
        pos_type_emb: F32,
        emb_ln_g: F32,
        emb_ln_b: F32,
        layers: Sequence[_Layer],
        *,
        num_heads: int,
        layer_norm_eps: float,
        max_seq_length: int,
    ) -> None:
        """Wrap prepared weights; use :meth:`load` rather than calling this directly."""
        self.tokenizer = tokenizer
        self.word_emb = word_emb
        self.pos_type_emb = pos_type_emb
        self.emb_ln_g = emb_ln_g
        self.emb_ln_b = emb_ln_b
        self.layers = tuple(layers)
        self.hidden = int(word_emb.shape[1])
        self.num_heads = num_heads
        self.head_dim = self.hidden // num_heads
        self.eps = np.float32(layer_norm_eps)
        self.max_seq_length = max_seq_length

    @property
    def dim(self) -> int:
        """Embedding dimension (384 for MiniLM-L6)."""
        return self.hidden

    @classmethod
    def load(cls, model_dir: str | Path) -> MiniLmEncoder:
        """Load a sentence-transformers BERT model directory (config, vocab, safetensors).

        Weights are prepared once here so the forward pass does no re-layout: matrices
        transposed to (in, out), Q/K/V fused into one (H, 3H) matrix, the attention
        1/sqrt(head_dim) scale folded into the query weights, and the position and
        token-type-0 embeddings pre-added.  The word-embedding table stays memory-mapped.
        """
        model_dir = Path(model_dir)
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if cfg.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {cfg.get('hidden_act')!r}")
        if cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        _check_pooling(model_dir)
        st_cfg_path = model_dir / "sentence_bert_config.json"
        st_cfg = json.loads(st_cfg_path.read_text(encoding="utf-8")) if st_cfg_path.exists() else {}
        max_pos = int(cfg.get("max_position_embeddings", 512))
        max_seq_length = min(int(st_cfg.get("max_seq_length") or max_pos), max_pos)

        weights = load_safetensors(model_dir / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""

        def w(name: str) -> npt.NDArray[Any]:
            return weights[prefix + name]

        hidden = int(cfg["hidden_size"])
        num_heads = int(cfg["num_attention_heads"])
        head_dim = hidden // num_heads
        q_scale = np.float32(1.0 / math.sqrt(head_dim))

        word_emb = w("embeddings.word_embeddings.weight")
        if word_emb.dtype != np.float32:
            word_emb = _f32(word_emb)
        else:
            # The table stays a read-only view of the mapped file, shared by worker processes;
            # fault all of it in now, or the process's memory creeps up by up to its 47 MB
            # as customers use words not seen before, which looks like a leak.
            fault_in(word_emb)
        # Sentence embeddings always use segment 0, so its embedding is a constant
        # per-position offset.
        pos_type = _f32(w("embeddings.position_embeddings.weight")[:max_seq_length])
        pos_type += w("embeddings.token_type_embeddings.weight")[0].astype(np.float32)

        layers: list[_Layer] = []
        for i in range(int(cfg["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            wq = w(p + "attention.self.query.weight").astype(np.float32) * q_scale
            bq = w(p + "attention.self.query.bias").astype(np.float32) * q_scale
            # torch Linear stores (out, in); concatenate along out, then transpose.
            w_qkv = np.concatenate(
                [wq, w(p + "attention.self.key.weight"), w(p + "attention.self.value.weight")]
            )
            b_qkv = np.concatenate(
                [bq, w(p + "attention.self.key.bias"), w(p + "attention.self.value.bias")]
            )
            layers.append(
                _Layer(
                    w_qkv=_f32(w_qkv.T),
                    b_qkv=_f32(b_qkv),
                    w_attn_out=_f32(w(p + "attention.output.dense.weight").T),
                    b_attn_out=_f32(w(p + "attention.output.dense.bias")),
                    ln1_g=_f32(w(p + "attention.output.LayerNorm.weight")),
                    ln1_b=_f32(w(p + "attention.output.LayerNorm.bias")),
                    w_ffn_in=_f32(w(p + "intermediate.dense.weight").T),
                    b_ffn_in=_f32(w(p + "intermediate.dense.bias")),
                    w_ffn_out=_f32(w(p + "output.dense.weight").T),
                    b_ffn_out=_f32(w(p + "output.dense.bias")),
                    ln2_g=_f32(w(p + "output.LayerNorm.weight")),
                    ln2_b=_f32(w(p + "output.LayerNorm.bias")),
                )
            )
        return cls(
            BertWordPieceTokenizer.from_model_dir(model_dir),
            word_emb,
            pos_type,
            _f32(w("embeddings.LayerNorm.weight")),
            _f32(w("embeddings.LayerNorm.bias")),
            layers,
            num_heads=num_heads,
            layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
            max_seq_length=max_seq_length,
        )

    # -- public API ------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids exactly as sentence-transformers feeds them to the model."""
        return self.tokenizer.encode(text, self.max_seq_length)

    def encode_one(self, text: str) -> F32:
        """Embedding of one text, shape ``(dim,)``, unit L2 norm.

        The fast path for a single customer message: no padding, no attention mask,
        no sorting or batching bookkeeping.
        """
        ids = np.asarray(self.tokenize(text), dtype=np.intp)
        hidden = self.hidden_states(ids[None, :], None)
        pooled: F32 = np.add.reduce(hidden, axis=0, keepdims=True)
        pooled /= np.float32(hidden.shape[0])
        vec: F32 = l2_normalize(pooled)[0]
        return vec

    def encode(self, texts: Sequence[str] | str, batch_size: int = 64) -> F32:
        """Embeddings of ``texts``, shape ``(len(texts), dim)``, float32, unit L2 norm.

        Texts are sorted by token count and padded only to the longest text of their
        batch, so a batch of short messages never pays for one long outlier; results
        are returned in input order.
        """
        if isinstance(texts, str):
            texts = [texts]
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        out = np.empty((len(texts), self.hidden), dtype=np.float32)
        if not texts:
            return out
        token_ids = [self.tokenize(t) for t in texts]
        order = sorted(range(len(token_ids)), key=lambda i: len(token_ids[i]))
        for batch in self.length_batches(order, token_ids, batch_size):
            out[batch] = self._embed_batch(*padded(token_ids, batch))
        return out

    def length_batches(
        self, order: Sequence[int], token_ids: Sequence[Sequence[int]], batch_size: int
    ) -> Iterator[list[int]]:
        """Consecutive runs of ``order`` (sorted by length) capped by count and L^2 budget."""
        batch: list[int] = []
        for i in order:
            n = len(token_ids[i])  # ascending, so n is the batch's padded length
            if batch and (len(batch) >= batch_size or (len(batch) + 1) * n * n > self._ATTN_BUDGET):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def hidden_states(self, ids: IntArray, valid: npt.NDArray[np.bool_] | None) -> F32:
        """Last hidden state, shape ``(B * L, H)``, for padded ids ``(B, L)``.

        ``valid`` marks real tokens; ``None`` means no padding (skips the mask add).
        """
        mask_bias = None if valid is None else attention_mask_bias(valid)
        return self._transform(self.embed_tokens(ids), ids.shape, mask_bias)

    def embed_tokens(self, ids: IntArray) -> F32:
        """The transformer's input for padded ids ``(B, L)``: word + position embeddings,
        layer-normalised, flattened to ``(B * L, H)``."""
        batch, seq_len = ids.shape
        x: F32 = self.word_emb[ids.reshape(-1)]  # fancy indexing copies: x is ours
        x = x.reshape(batch, seq_len, self.hidden)
        x += self.pos_type_emb[:seq_len]
        x = x.reshape(batch * seq_len, self.hidden)
        return _layer_norm_(x, self.emb_ln_g, self.emb_ln_b, self.eps)

    # -- internals -------------------------------------------------------------------

    def _embed_batch(self, ids: IntArray, lengths: IntArray) -> F32:
        batch, seq_len = ids.shape
        if bool((lengths == seq_len).all()):
            hidden = self.hidden_states(ids, None).reshape(batch, seq_len, self.hidden)
            pooled: F32 = np.add.reduce(hidden, axis=1)
            pooled /= np.float32(seq_len)
            return l2_normalize(pooled)
        valid = np.arange(seq_len)[None, :] < lengths[:, None]  # (B, L)
        hidden = self.hidden_states(ids, valid).reshape(batch, seq_len, self.hidden)
        # Mean over real tokens only: (B, 1, L) @ (B, L, H) sums the valid rows.
        summed = np.matmul(valid.astype(np.float32)[:, None, :], hidden)[:, 0, :]
        summed /= lengths.astype(np.float32)[:, None]
        return l2_normalize(summed)

    def _transform(self, x: F32, shape: tuple[int, ...], mask_bias: F32 | None) -> F32:
        """The transformer layers over embedded tokens ``(B * L, H)`` of a ``(B, L)`` batch.

        All matmuls run on the flattened activations so BLAS sees one tall matrix instead
        of B small ones.
        """
        batch, seq_len = shape
        heads, head_dim, hidden = self.num_heads, self.head_dim, self.hidden
        for layer in self.layers:
            qkv = _mm(x, layer.w_qkv)
            qkv += layer.b_qkv
            # (B*L, 3H) -> (3, B, heads, L, head_dim); views only, BLAS takes the strides.
            qkv5 = qkv.reshape(batch, seq_len, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv5[0], qkv5[1], qkv5[2]
            scores: F32 = q @ k.transpose(0, 1, 3, 2)  # (B, heads, L, L), already scaled
            if mask_bias is not None:
                scores += mask_bias
            _softmax_(scores)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * seq_len, hidden)
            attn = _mm(ctx, layer.w_attn_out)
            attn += layer.b_attn_out
            attn += x  # residual
            x = _layer_norm_(attn, layer.ln1_g, layer.ln1_b, self.eps)

            inter = _mm(x, layer.w_ffn_in)
            inter += layer.b_ffn_in
            gelu_(inter)
            out = _mm(inter, layer.w_ffn_out)
            out += layer.b_ffn_out
            out += x  # residual
            x = _layer_norm_(out, layer.ln2_g, layer.ln2_b, self.eps)
        return x


def padded(token_ids: Sequence[Sequence[int]], batch: Sequence[int]) -> tuple[IntArray, IntArray]:
    """The ids of texts `batch` as one ``(B, L)`` array padded with [PAD] (0) to the longest,
    and each text's length."""
    lengths = np.fromiter((len(token_ids[i]) for i in batch), np.intp, len(batch))
    ids = np.zeros((len(batch), int(lengths.max())), dtype=np.intp)
    for row, i in enumerate(batch):
        ids[row, : lengths[row]] = token_ids[i]
    return ids, lengths


def attention_mask_bias(valid: npt.NDArray[np.bool_]) -> F32:
    """Additive attention mask ``(B, 1, 1, L)`` as in HF: a huge negative on padded keys,
    which softmax's exp() turns into 0."""
    bias: F32 = np.where(valid, np.float32(0.0), np.finfo(np.float32).min).astype(np.float32)
    return bias[:, None, None, :]


def _mm(a: F32, b: F32) -> F32:
    """Multiply 2-D float32 operands (a typed ``a @ b``: numpy's stubs widen to float64)."""
    result: F32 = np.matmul(a, b)
    return result


def l2_normalize(v: F32) -> F32:
    """Row-wise L2 normalisation with torch's F.normalize floor (eps=1e-12)."""
    norms = np.sqrt(np.einsum("ij,ij->i", v, v))
    np.maximum(norms, np.float32(1e-12), out=norms)
    result: F32 = (v / norms[:, None]).astype(np.float32, copy=False)
    return result


def _check_pooling(model_dir: Path) -> None:
    """Refuse models whose pooling is not plain mean pooling (the only one implemented)."""
    pooling_cfg = model_dir / "1_Pooling" / "config.json"
    if not pooling_cfg.exists():
        return
    cfg = json.loads(pooling_cfg.read_text(encoding="utf-8"))
    other_modes = (
        "pooling_mode_cls_token",
        "pooling_mode_max_tokens",
        "pooling_mode_mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens",
        "pooling_mode_lasttoken",
    )
    if not cfg.get("pooling_mode_mean_tokens", False) or any(cfg.get(m) for m in other_modes):
        raise ValueError(f"{pooling_cfg}: only mean-token pooling is supported")
