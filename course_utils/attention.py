"""Attention from matmul and softmax: the single causal head of notebook 03, and
``scaled_dot_product_attention`` with the semantics of ``torch.nn.functional.scaled_dot_product_attention``.

``MultiheadAttention`` (notebook 04) lives in :mod:`course_utils.mha` and is re-exported here.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .i18n import _
from .mha import MultiheadAttention

__all__ = ["Head", "MultiheadAttention", "causal_mask", "scaled_dot_product_attention"]


def causal_mask(L: int, S: int | None = None, device=None) -> Tensor:
    """Boolean (L, S) mask, True where query i may look at key j (j <= i): the lower triangle.

    Aligned top-left like PyTorch's ``is_causal`` (query i sees keys 0..i even when S != L).
    """
    S = L if S is None else S
    return torch.ones(L, S, dtype=torch.bool, device=device).tril()  # (L, S)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    r"""softmax(Q K^T * scale + mask) V, written from matmul and softmax.

    The same semantics as ``torch.nn.functional.scaled_dot_product_attention``:

    * a **boolean** ``attn_mask`` says which pairs **take part** (True = attend), the opposite of
      ``nn.MultiheadAttention``, where True = blocked; a float mask is added to the scores;
    * ``is_causal`` applies the top-left lower-triangular mask (then ``attn_mask`` must be None);
    * ``scale`` defaults to ``1 / sqrt(E)``, E being the query/key width;
    * a query row whose keys are all masked gives zeros (not NaN);
    * dropout (``dropout_p > 0``) is applied to the weights whenever it is asked for, even in eval mode;
    * the leading (batch) dims of ``query``, ``key`` and ``value`` broadcast against each other; the
      mask broadcasts to the scores (..., L, S) but cannot make them larger.

    Args:
        query: (..., L, E), floating point.
        key: (..., S, E), the dtype and device of ``query``.
        value: (..., S, Ev), the dtype and device of ``query``.
        attn_mask: bool (True = take part) or float (added: ``float32`` or the dtype of ``query``),
            broadcastable to (..., L, S).
        dropout_p: dropout probability on the weights, in [0, 1].
        is_causal: apply a causal mask (a bool).
        scale: the factor applied to the scores (default ``1 / sqrt(E)``).

    Shape:
        - output: (..., L, Ev), ``...`` being the broadcast of the leading dims of the three inputs.

    Differences from PyTorch:
        1. A ``dropout_p`` outside [0, 1] is always refused; PyTorch silently applies no dropout
           for a negative one, and checks none when the weights are empty.
        2. ``attn_mask`` together with ``is_causal=True`` raises a ``ValueError`` that says how to
           combine them (PyTorch raises a ``RuntimeError``).
        3. Empty inputs (L, S, Ev or a batch dim equal to 0) are checked like any other; PyTorch
           then skips its shape checks (a mask of any shape, a ``key`` of another width pass) and
           returns the shape of ``query`` rather than the broadcast one.
        4. A 0-D or 1-D ``attn_mask`` broadcasts whatever the rank of the inputs; PyTorch's fused
           CPU kernel (4-D inputs) refuses it, while its math path accepts it.
    """
    L, S = _check_sdpa_arguments(query, key, value, attn_mask, dropout_p, is_causal, scale)
    E = query.shape[-1]
    if scale is None:
        # E = 0: every score is an empty sum, 0, whatever the scale (PyTorch then averages the values)
        scale = 1.0 / math.sqrt(E) if E > 0 else 1.0

    scores = query @ key.transpose(-2, -1) * scale  # (..., L, E) @ (..., E, S) -> (..., L, S)
    if is_causal:
        attn_mask = causal_mask(L, S, device=query.device)  # (L, S), True = attend
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = take part
        else:
            scores = scores + attn_mask.to(scores.dtype)  # added, -inf blocks
    # a row with every key masked would be softmax(-inf, ..., -inf) = NaN; PyTorch returns zeros there
    dead_rows = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch.softmax(scores.masked_fill(dead_rows, 0.0), dim=-1)  # (..., L, S), rows sum to 1
    weights = weights.masked_fill(dead_rows, 0.0)  # (..., L, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)  # (..., L, S)
    return weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _check_number(fn: str, arg: str, value) -> None:
    """A Python number or a 0-D tensor, what PyTorch accepts for a float argument."""
    if not (isinstance(value, numbers.Real) or (isinstance(value, Tensor) and value.dim() == 0)):
        raise TypeError(f"{fn}: `{arg}` must be a number, got {type(value).__name__} {value!r}")


def _check_sdpa_arguments(query, key, value, attn_mask, dropout_p, is_causal, scale) -> tuple[int, int]:
    """Refuse what ``F.scaled_dot_product_attention`` refuses, naming the argument. Returns (L, S)."""
    fn = "scaled_dot_product_attention"
    _check_number(fn, "dropout_p", dropout_p)
    if not isinstance(is_causal, bool):
        raise TypeError(f"{fn}: `is_causal` must be a bool, got {type(is_causal).__name__} {is_causal!r}")
    if scale is not None:
        _check_number(fn, "scale", scale)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"{fn}: `dropout_p` must be a probability in [0, 1], got {dropout_p}")
    for name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{fn}: `{name}` must be a tensor (..., seq, features), got {type(x).__name__}")
        if x.dim() < 2:
            raise ValueError(f"{fn}: `{name}` must have at least 2 dims (..., seq, features), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"{fn}: `{name}` must be a floating-point tensor, got dtype {x.dtype}")
    for name, x in (("key", key), ("value", value)):
        if x.dtype != query.dtype:
            raise TypeError(f"{fn}: `{name}` must have the dtype of `query` ({query.dtype}), got {x.dtype}")
        if x.device != query.device:
            raise ValueError(f"{fn}: `{name}` must be on the device of `query` ({query.device}), got {x.device}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"{fn}: `query` and `key` must have the same width E, got shapes {tuple(query.shape)} and {tuple(key.shape)}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"{fn}: `key` and `value` must have the same length S, got shapes {tuple(key.shape)} and {tuple(value.shape)}")
    L, S = query.shape[-2], key.shape[-2]
    try:
        scores_batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
        torch.broadcast_shapes(scores_batch, value.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"{fn}: the leading (batch) dims of `query`, `key` and `value` must broadcast together, "
            f"got shapes {tuple(query.shape)}, {tuple(key.shape)} and {tuple(value.shape)}"
        ) from None
    if attn_mask is not None:
        _check_sdpa_mask(attn_mask, query, (*scores_batch, L, S))
    if is_causal and attn_mask is not None:
        raise ValueError(
            f"{fn}: give either `attn_mask` or `is_causal=True`, not both "
            "(to combine them, pass attn_mask & causal_mask(L, S) as one boolean mask)"
        )
    return L, S


def _check_sdpa_mask(attn_mask, query: Tensor, scores_shape: tuple[int, ...]) -> None:
    fn = "scaled_dot_product_attention"
    if not isinstance(attn_mask, Tensor):
        raise TypeError(f"{fn}: `attn_mask` must be a bool or float tensor or None, got {type(attn_mask).__name__}")
    if attn_mask.dtype not in (torch.bool, torch.float32, query.dtype):
        raise TypeError(
            f"{fn}: `attn_mask` must be bool or float (bool: True = take part; float: float32 or the dtype of "
            f"`query`, {query.dtype}), got dtype {attn_mask.dtype}"
        )
    if attn_mask.device != query.device:
        raise ValueError(f"{fn}: `attn_mask` must be on the device of `query` ({query.device}), got {attn_mask.device}")
    try:
        fits = torch.broadcast_shapes(attn_mask.shape, scores_shape) == torch.Size(scores_shape)
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"{fn}: `attn_mask` must broadcast to the scores' shape (..., L, S) = {scores_shape} without "
            f"enlarging it, got shape {tuple(attn_mask.shape)}"
        )


class Head(nn.Module):
    """One head of causal self-attention, as in Karpathy's "Let's build GPT".

    Each token emits a query ("what am I looking for?"), a key ("what do I contain?") and a value
    ("what I will pass on"). Token t attends only to tokens 0..t.

    Args:
        n_embd: width C of the input.
        head_size: width of the queries, keys, values and output.
        block_size: the longest sequence the head accepts (size of the ``tril`` buffer).
        dropout: dropout probability on the attention weights (training only).

    Shape:
        - input: (B, T, n_embd), T <= block_size
        - output: (B, T, head_size)
    """

    def __init__(self, n_embd: int, head_size: int, block_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        for name, value in (("n_embd", n_embd), ("head_size", head_size), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Head: `{name}` must be a positive int, got {value!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"Head: `dropout` must be a number in [0, 1], got {type(dropout).__name__} {dropout!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"Head: `dropout` must be a probability in [0, 1], got {dropout!r}")
        self.n_embd = n_embd
        self.block_size = block_size
        self.head_size = head_size
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))  # (block_size, block_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Head: the input `x` must be a tensor (B, T, n_embd), got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"Head: the input `x` must be 3-D (B, T, n_embd), got shape {tuple(x.shape)}")
        B, T, C = x.shape
        if C != self.n_embd:
            raise ValueError(f"Head: the input `x` must have n_embd={self.n_embd} features in its last dim, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"Head: the input `x` must be a floating-point tensor (embeddings), got dtype {x.dtype}")
        if x.dtype != self.key.weight.dtype:
            raise TypeError(
                f"Head: the input `x` must have the dtype of the head's weights ({self.key.weight.dtype}), got {x.dtype}; "
                f"convert one of them, e.g. x.to({self.key.weight.dtype}) or head.to({x.dtype})"
            )
        if T > self.block_size:
            raise ValueError(
                _("Head: the sequence has length T={T} but this head was built with block_size={block_size}; "
                  "crop the input to its last {block_size} tokens (x[:, -{block_size}:]) or build a head with a larger block_size"
                  ).format(T=T, block_size=self.block_size)
            )
        k = self.key(x)  # (B, T, hs)
        q = self.query(x)  # (B, T, hs)
        wei = q @ k.transpose(-2, -1) * self.head_size**-0.5  # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # (B, T, T), future -> -inf
        wei = F.softmax(wei, dim=-1)  # (B, T, T), each row sums to 1
        wei = self.dropout(wei)  # (B, T, T)
        v = self.value(x)  # (B, T, hs)
        return wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)
