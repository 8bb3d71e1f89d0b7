"""Attention from matmul and softmax: the single causal head of notebook 03, and
``scaled_dot_product_attention`` with the semantics of ``torch.nn.functional.scaled_dot_product_attention``.

``MultiheadAttention`` (notebook 04) lives in :mod:`course_utils.mha` and is re-exported here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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
    * dropout (``dropout_p > 0``) is applied to the weights whenever it is asked for, even in eval mode.

    Args:
        query: (..., L, E).
        key: (..., S, E).
        value: (..., S, Ev).
        attn_mask: bool or float, broadcastable to (..., L, S).
        dropout_p: dropout probability on the weights.
        is_causal: apply a causal mask.
        scale: the factor applied to the scores (default ``1 / sqrt(E)``).

    Shape:
        - output: (..., L, Ev)
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise ValueError(f"scaled_dot_product_attention: `{name}` must be a tensor of at least 2 dims (..., seq, features), got {_describe(x)}")
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: `query` and `key` must have the same width E, got {tuple(query.shape)} and {tuple(key.shape)}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: `key` and `value` must have the same length S, got {tuple(key.shape)} and {tuple(value.shape)}")
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: `dropout_p` must be in [0, 1], got {dropout_p}")
    if is_causal and attn_mask is not None:
        raise ValueError(
            "scaled_dot_product_attention: give either `attn_mask` or `is_causal=True`, not both "
            "(to combine them, pass attn_mask & causal_mask(L, S) as one boolean mask)"
        )
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale

    scores = query @ key.transpose(-2, -1) * scale  # (..., L, E) @ (..., E, S) -> (..., L, S)
    if is_causal:
        attn_mask = causal_mask(L, S, device=query.device)  # (L, S), True = attend
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))  # True = take part
        elif attn_mask.is_floating_point():
            scores = scores + attn_mask.to(scores.dtype)  # added, -inf blocks
        else:
            raise TypeError(f"scaled_dot_product_attention: `attn_mask` must be bool or float, got dtype {attn_mask.dtype}")
    # a row with every key masked would be softmax(-inf, ..., -inf) = NaN; PyTorch returns zeros there
    dead_rows = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch.softmax(scores.masked_fill(dead_rows, 0.0), dim=-1)  # (..., L, S), rows sum to 1
    weights = weights.masked_fill(dead_rows, 0.0)  # (..., L, S)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p, training=True)  # (..., L, S)
    return weights @ value  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


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
        self.block_size = block_size
        self.head_size = head_size
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))  # (block_size, block_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"Head: input must be 3-D (B, T, n_embd), got shape {tuple(x.shape)}")
        B, T, C = x.shape
        if T > self.block_size:
            raise ValueError(
                f"Head: the sequence has length T={T} but this head was built with block_size={self.block_size}; "
                f"crop the input to its last {self.block_size} tokens (x[:, -{self.block_size}:]) or build a head with a larger block_size"
            )
        k = self.key(x)  # (B, T, hs)
        q = self.query(x)  # (B, T, hs)
        wei = q @ k.transpose(-2, -1) * self.head_size**-0.5  # (B, T, hs) @ (B, hs, T) -> (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # (B, T, T), future -> -inf
        wei = F.softmax(wei, dim=-1)  # (B, T, T), each row sums to 1
        wei = self.dropout(wei)  # (B, T, T)
        v = self.value(x)  # (B, T, hs)
        return wei @ v  # (B, T, T) @ (B, T, hs) -> (B, T, hs)
