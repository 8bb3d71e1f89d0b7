"""Synthesizer attention (Tay et al., "Synthesizer: Rethinking Self-Attention for Transformer Models", ICML 2021).

A synthesizer replaces the token-token scores :math:`QK^T/\\sqrt{d_h}` of dot-product attention by
*synthesized* logits :math:`B`, then mixes the values exactly as attention does:

.. math::
    Y = \\mathrm{Softmax}(B + M)\\,G(X)\\,W_O

where :math:`G(X) = X W_V + b_V` is the value projection split into heads, :math:`M` the additive
mask and :math:`W_O` the output projection. The variants differ only in how :math:`B` is made:

===========================  ==============================================  =============================
layer                        logits of head h (query position i, key j)      depends on
===========================  ==============================================  =============================
:class:`DenseSynthesizer`    ``w2_h(relu(W1 x_i + b1)_h) + b2_h`` (d->d->l)   token i only
:class:`RandomSynthesizer`   ``R_h[i, j]`` (one l x l matrix per head)         nothing (learned or fixed)
:class:`FactorizedDense...`  ``A_h(x_i)[j // b] * B_h(x_i)[j % b]``, a*b=l    token i only
:class:`FactorizedRandom...` ``(R1_h R2_h^T)[i, j]``, R1_h, R2_h: l x k        nothing
:class:`SynthesizerMixture`  ``sum_c alpha_c * logits_c``, alpha = softmax    per component
===========================  ==============================================  =============================

Conventions of this course (documented because implementations differ, see the notes of
notebook 06): every head has its own second layer (``w2``/``b2`` have a heads dimension); the
first layer of Dense is one ``Linear(d, d)`` whose output is split into heads; the values are a
learned projection of the ``value`` input; the logits are computed from the ``query`` input.
Sequences shorter than ``max_len`` use the top-left corner of the synthesized matrix (the
paper's truncation); longer ones raise a :class:`ValueError` naming ``max_len``.

Every layer takes :meth:`torch.nn.MultiheadAttention.forward`'s arguments and returns
``(output, weights)`` of the same shapes, so it replaces self-attention in a Transformer layer.

Parameter counts (``bias=True``; d = embed_dim, h = num_heads, d_h = d/h, l = max_len), see
:func:`synthesizer_parameter_count`:

* shared by every layer, value projection G and output projection W_O: ``2 (d^2 + d)``
* Dense: ``(d^2 + d) + h (d_h l + l)``
* Random: ``h l^2`` (0 trainable when ``trainable=False``: R is then a buffer)
* Factorized Dense: ``(d^2 + d) + h (d_h + 1)(a + b)``
* Factorized Random: ``2 h l k``
* dot product (inside a mixture): ``2 (d^2 + d)``
* Mixture: the sum of its components plus one mixing logit per component.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .i18n import _

__all__ = [
    "DenseSynthesizer",
    "RandomSynthesizer",
    "FactorizedDenseSynthesizer",
    "FactorizedRandomSynthesizer",
    "SynthesizerMixture",
    "SYNTHESIZER_KINDS",
    "make_synthesizer",
    "synthesizer_parameter_count",
    "count_parameters",
]


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ----------------------------------------------------------------------------------------------
# The logit makers: each maps (query, key) in (N, L, E) / (N, S, E) to logits (N, h, L, S).
# ----------------------------------------------------------------------------------------------


class _Logits(nn.Module):
    """Base of the logit makers: ``forward(query, key)`` (N, L, E), (N, S, E) -> logits (N or 1, h, L, S).

    Input-independent makers (Random, Factorized Random) return one (1, h, L, S) tensor that
    broadcasts over the batch: it is computed, and soft-maxed, once per batch.
    """

    name = "logits"

    def __init__(self, embed_dim: int, num_heads: int, max_len: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.max_len = max_len

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, max_len={self.max_len}"


class DenseLogits(_Logits):
    """Dense synthesizer logits: a d -> d -> l MLP applied to every token (paper eq. 2).

    ``w1 = Linear(d, d)``; its output is split into ``num_heads`` pieces of ``d_h``; ReLU; then
    head h applies its own ``w2[h]`` (d_h x l) and ``b2[h]`` (l). Row i depends only on token i.
    """

    name = "dense"

    def __init__(self, embed_dim, num_heads, max_len, bias=True, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, max_len)
        fk = {"device": device, "dtype": dtype}
        self.w1 = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.w2 = nn.Parameter(torch.empty(num_heads, self.head_dim, max_len, **fk))
        self.b2 = nn.Parameter(torch.empty(num_heads, max_len, **fk)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.w1.reset_parameters()
        bound = 1.0 / math.sqrt(self.head_dim)  # nn.Linear's default for a d_h -> l layer
        nn.init.uniform_(self.w2, -bound, bound)
        if self.b2 is not None:
            nn.init.uniform_(self.b2, -bound, bound)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        N, L, _ = query.shape
        S = key.shape[1]
        hidden = F.relu(self.w1(query))  # (N, L, d)
        hidden = hidden.view(N, L, self.num_heads, self.head_dim).transpose(1, 2)  # (N, h, L, d_h)
        w2 = self.w2[:, :, :S]  # (h, d_h, S): the paper's truncation to the actual length
        logits = hidden @ w2.unsqueeze(0)  # (N, h, L, S)
        if self.b2 is not None:
            logits = logits + self.b2[:, None, :S]  # (N, h, L, S)
        return logits


class RandomLogits(_Logits):
    """Random synthesizer logits: one l x l matrix ``R[h]`` per head, independent of the input.

    ``trainable=False`` (the paper's *Fixed Random*) stores R as a buffer: it is saved in the
    ``state_dict`` but is not a parameter, so no optimizer can change it.
    """

    name = "random"

    def __init__(self, embed_dim, num_heads, max_len, trainable=True, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, max_len)
        R = torch.empty(num_heads, max_len, max_len, device=device, dtype=dtype)
        self.trainable = trainable
        if trainable:
            self.R = nn.Parameter(R)
        else:
            self.register_buffer("R", R)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.R.normal_(0.0, 1.0)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        N, L, _ = query.shape
        S = key.shape[1]
        return self.R[:, :L, :S].unsqueeze(0)  # (1, h, L, S): the same for every sequence of the batch

    def extra_repr(self) -> str:
        return super().extra_repr() + f", trainable={self.trainable}"


class FactorizedRandomLogits(_Logits):
    """Factorized Random logits ``R1[h] @ R2[h].T`` with R1, R2 of shape (l, k): rank <= k."""

    name = "factorized_random"

    def __init__(self, embed_dim, num_heads, max_len, k=8, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, max_len)
        self.k = k
        self.R1 = nn.Parameter(torch.empty(num_heads, max_len, k, device=device, dtype=dtype))
        self.R2 = nn.Parameter(torch.empty(num_heads, max_len, k, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        std = self.k**-0.25  # so that the entries of R1 R2^T have variance 1, like R above
        nn.init.normal_(self.R1, 0.0, std)
        nn.init.normal_(self.R2, 0.0, std)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        N, L, _ = query.shape
        S = key.shape[1]
        logits = self.R1[:, :L] @ self.R2[:, :S].transpose(-2, -1)  # (h, L, S)
        return logits.unsqueeze(0)  # (1, h, L, S): the same for every sequence of the batch

    def extra_repr(self) -> str:
        return super().extra_repr() + f", k={self.k}"


class FactorizedDenseLogits(_Logits):
    """Factorized Dense logits: two small heads A (a values) and B (b values), a * b = l.

    ``C[j] = A[j // b] * B[j % b]``: A is repeated element-wise, B is tiled (tiling both would
    leave only lcm(a, b) distinct logits per row). Each row, reshaped to (a, b), has rank 1.
    """

    name = "factorized_dense"

    def __init__(self, embed_dim, num_heads, max_len, a, bias=True, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, max_len)
        fk = {"device": device, "dtype": dtype}
        self.a, self.b = a, max_len // a
        self.w1 = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.wa = nn.Parameter(torch.empty(num_heads, self.head_dim, self.a, **fk))
        self.wb = nn.Parameter(torch.empty(num_heads, self.head_dim, self.b, **fk))
        self.ba = nn.Parameter(torch.empty(num_heads, self.a, **fk)) if bias else None
        self.bb = nn.Parameter(torch.empty(num_heads, self.b, **fk)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.w1.reset_parameters()
        bound = 1.0 / math.sqrt(self.head_dim)
        for p in (self.wa, self.wb, self.ba, self.bb):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        N, L, _ = query.shape
        S = key.shape[1]
        hidden = F.relu(self.w1(query))  # (N, L, d)
        hidden = hidden.view(N, L, self.num_heads, self.head_dim).transpose(1, 2)  # (N, h, L, d_h)
        A = hidden @ self.wa.unsqueeze(0)  # (N, h, L, a)
        B = hidden @ self.wb.unsqueeze(0)  # (N, h, L, b)
        if self.ba is not None:
            A = A + self.ba[:, None, :]  # (N, h, L, a)
            B = B + self.bb[:, None, :]  # (N, h, L, b)
        rows = -(-S // self.b)  # the blocks of b columns that the first S columns need
        logits = A[..., :rows, None] * B[..., None, :]  # (N, h, L, rows, b): C[j] = A[j // b] * B[j % b]
        return logits.flatten(-2)[..., :S]  # (N, h, L, S): A repeated, B tiled

    def extra_repr(self) -> str:
        return super().extra_repr() + f", a={self.a}, b={self.b}"


class DotProductLogits(_Logits):
    """Vanilla attention logits ``(x W_Q)(x W_K)^T / sqrt(d_h)`` (the "V" in the paper's "R+V")."""

    name = "dot_product"

    def __init__(self, embed_dim, num_heads, max_len, bias=True, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, max_len)
        fk = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in (self.q_proj, self.k_proj):
            nn.init.xavier_uniform_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        N, L, _ = query.shape
        S = key.shape[1]
        q = self.q_proj(query).view(N, L, self.num_heads, self.head_dim).transpose(1, 2)  # (N, h, L, d_h)
        k = self.k_proj(key).view(N, S, self.num_heads, self.head_dim).transpose(1, 2)  # (N, h, S, d_h)
        return (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (N, h, L, S)


# ----------------------------------------------------------------------------------------------
# The attention layer around the logits: masks, softmax, dropout, values, heads, output.
# ----------------------------------------------------------------------------------------------


def _check_int(cls: str, name: str, value, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{cls}: `{name}` must be an int >= {minimum}, got {value!r}")


def _additive(mask: Tensor, name: str, cls: str, dtype: torch.dtype) -> Tensor:
    """A boolean mask (True = blocked) as 0 / -inf, a float mask as it is."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{cls}: `{name}` must be a bool or float tensor or None, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    if not mask.is_floating_point():
        raise TypeError(f"{cls}: `{name}` must be a bool or float tensor, got dtype {mask.dtype}")
    return mask.to(dtype)


class _SynthesizerAttention(nn.Module):
    """Multi-head attention whose logits come from ``self.synth`` (or a mixture of logit makers)."""

    def __init__(self, embed_dim, num_heads, max_len, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None):
        super().__init__()
        cls = type(self).__name__
        _check_int(cls, "embed_dim", embed_dim)
        _check_int(cls, "num_heads", num_heads)
        _check_int(cls, "max_len", max_len)
        if embed_dim % num_heads != 0:
            raise ValueError(f"{cls}: `embed_dim` ({embed_dim}) must be divisible by `num_heads` ({num_heads})")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real):
            raise TypeError(f"{cls}: `dropout` must be a number in [0, 1], got {type(dropout).__name__} {dropout!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{cls}: `dropout` must be in [0, 1], got {dropout!r}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.max_len = max_len
        self.dropout = float(dropout)
        self.batch_first = batch_first
        fk = {"device": device, "dtype": dtype}
        self.v_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)  # G(X)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **fk)  # W_O
        nn.init.xavier_uniform_(self.v_proj.weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        if bias:
            nn.init.zeros_(self.v_proj.bias)
            nn.init.zeros_(self.out_proj.bias)

    # subclasses override: (query, key) batch-first -> logits (N, h, L, S)
    def synthesize(self, query: Tensor, key: Tensor) -> Tensor:
        return self.synth(query, key)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, max_len={self.max_len}, batch_first={self.batch_first}"

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor) -> bool:
        cls = type(self).__name__
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{cls}: `{name}` must be a tensor, got {type(t).__name__}")
            if t.dim() not in (2, 3):
                raise ValueError(f"{cls}: `{name}` must be 2-D (L, E) or 3-D, got shape {tuple(t.shape)}")
            if t.shape[-1] != self.embed_dim:
                raise ValueError(f"{cls}: `{name}` must have embed_dim={self.embed_dim} features, got shape {tuple(t.shape)}")
            if t.dtype != self.out_proj.weight.dtype:
                raise TypeError(f"{cls}: `{name}` must have the dtype of the layer's parameters ({self.out_proj.weight.dtype}), got {t.dtype}")
        if not query.dim() == key.dim() == value.dim():
            raise ValueError(
                f"{cls}: `query`, `key` and `value` must all be batched (3-D) or all unbatched (2-D), got "
                f"{query.dim()}-D, {key.dim()}-D and {value.dim()}-D"
            )
        seq = 1 if (self.batch_first and query.dim() == 3) else 0
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"{cls}: `key` and `value` must have the same shape, got {tuple(key.shape)} and {tuple(value.shape)}")
        if query.dim() == 3 and query.shape[1 - seq] != key.shape[1 - seq]:
            raise ValueError(f"{cls}: `query` and `key` must have the same batch size, got shapes {tuple(query.shape)} and {tuple(key.shape)}")
        L, S = query.shape[seq], key.shape[seq]
        for name, n in (("query", L), ("key", S)):
            if n > self.max_len:
                raise ValueError(
                    _("{cls}: the {name} sequence has length {n}, longer than max_len={max_len}; a synthesizer "
                      "learns one logit per position up to max_len, so build it with max_len >= {n}"
                      ).format(cls=cls, name=name, n=n, max_len=self.max_len)
                )
        return query.dim() == 3

    def _check_padding_mask(self, key_padding_mask, query: Tensor, key: Tensor, batched: bool) -> None:
        """``key_padding_mask`` as the user passed it: (N, S) batched, (S,) unbatched."""
        if key_padding_mask is None:
            return
        cls = type(self).__name__
        if not isinstance(key_padding_mask, Tensor):
            raise TypeError(f"{cls}: `key_padding_mask` must be a bool or float tensor or None, got {type(key_padding_mask).__name__}")
        if not batched:
            expected, layout = (key.shape[0],), "(S,)"
        else:
            seq = 1 if self.batch_first else 0
            expected, layout = (query.shape[1 - seq], key.shape[seq]), "(N, S)"
        if tuple(key_padding_mask.shape) != expected:
            raise ValueError(f"{cls}: `key_padding_mask` must have shape {layout} = {expected}, got {tuple(key_padding_mask.shape)}")

    def _mask(self, attn_mask, key_padding_mask, is_causal, N, L, S, dtype, device) -> Tensor | None:
        """All masks merged into one additive (N, h, L, S) or broadcastable tensor, or None."""
        cls = type(self).__name__
        total = None
        if attn_mask is None and is_causal:
            attn_mask = torch.ones(L, S, dtype=torch.bool, device=device).triu(1)  # True above the diagonal: the future
        if attn_mask is not None:
            m = _additive(attn_mask, "attn_mask", cls, dtype)
            if m.dim() == 2:
                if m.shape != (L, S):
                    raise ValueError(f"{cls}: 2-D `attn_mask` must have shape (L, S) = {(L, S)}, got {tuple(m.shape)}")
                total = m  # (L, S)
            elif m.dim() == 3:
                if m.shape != (N * self.num_heads, L, S):
                    raise ValueError(
                        f"{cls}: 3-D `attn_mask` must have shape (N*num_heads, L, S) = {(N * self.num_heads, L, S)}, got {tuple(m.shape)}"
                    )
                total = m.view(N, self.num_heads, L, S)  # (N, h, L, S)
            else:
                raise ValueError(f"{cls}: `attn_mask` must be 2-D or 3-D, got shape {tuple(m.shape)}")
        if key_padding_mask is not None:
            k = _additive(key_padding_mask, "key_padding_mask", cls, dtype)  # (N, S), checked in forward
            k = k[:, None, None, :]  # (N, 1, 1, S)
            total = k if total is None else total + k
        return total

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Synthesized multi-head attention; the arguments of :meth:`torch.nn.MultiheadAttention.forward`.

        Args:
            query: the tokens whose logits are synthesized (for the dot-product part of a
                mixture: the queries).
            key: the keys; its length S sets the number of columns (used for logits only
                by the dot-product part of a mixture).
            value: the tokens mixed by the weights, through the value projection G.
            key_padding_mask: (N, S); bool True = ignore that key, or float added.
            need_weights: also return the attention weights.
            attn_mask: (L, S) or (N*num_heads, L, S); bool True = blocked, or float added
                to the logits before the softmax.
            average_attn_weights: average the returned weights over the heads.
            is_causal: with no ``attn_mask``, apply the causal mask (position i sees keys
                j <= i); with an ``attn_mask``, a hint that it is causal (it is used as given).

        Shape:
            - query: :math:`(L, N, E)`, :math:`(N, L, E)` if ``batch_first``, or :math:`(L, E)`.
            - key, value: :math:`(S, N, E)`, :math:`(N, S, E)` if ``batch_first``, or :math:`(S, E)`.
            - output: like ``query``.
            - weights: :math:`(N, L, S)` averaged, else :math:`(N, h, L, S)` (no N when unbatched).
            L and S must be at most ``max_len``.
        """
        batched = self._check_inputs(query, key, value)
        self._check_padding_mask(key_padding_mask, query, key, batched)
        if not isinstance(is_causal, bool):
            raise TypeError(f"{type(self).__name__}: `is_causal` must be a bool, got {type(is_causal).__name__} {is_causal!r}")
        if not batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)  # (1, L, E)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)  # (N, L, E)
        N, L, E = query.shape
        S = key.shape[1]

        logits = self.synthesize(query, key)  # (N, h, L, S)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, N, L, S, logits.dtype, logits.device)
        if mask is not None:
            logits = logits + mask  # (N, h, L, S): masked BEFORE the softmax
        weights = torch.softmax(logits, dim=-1)  # (N or 1, h, L, S): each row sums to 1
        if self.training and self.dropout > 0.0:
            weights = weights.expand(N, -1, -1, -1)  # (N, h, L, S): each sequence its own dropout
            weights = F.dropout(weights, p=self.dropout)  # (N, h, L, S)
        values = self.v_proj(value).view(N, S, self.num_heads, self.head_dim).transpose(1, 2)  # (N, h, S, d_h)
        if weights.shape[0] == 1 and N > 1:  # one weight matrix per head for the whole batch (Random)
            stacked = values.permute(1, 2, 0, 3).reshape(self.num_heads, S, N * self.head_dim)  # (h, S, N*d_h)
            heads = (weights[0] @ stacked).view(self.num_heads, L, N, self.head_dim).permute(2, 0, 1, 3)  # (N, h, L, d_h)
        else:
            heads = weights @ values  # (N, h, L, d_h)
        output = self.out_proj(heads.transpose(1, 2).reshape(N, L, E))  # (N, L, E)

        if batched and not self.batch_first:
            output = output.transpose(0, 1)  # (L, N, E)
        elif not batched:
            output = output.squeeze(0)  # (L, E)
        if not need_weights:
            return output, None
        weights = weights.expand(N, -1, -1, -1)  # (N, h, L, S)
        if average_attn_weights:
            weights = weights.mean(dim=1)  # (N, L, S)
        return output, (weights if batched else weights.squeeze(0))


class DenseSynthesizer(_SynthesizerAttention):
    """Dense Synthesizer: every token predicts its own row of attention logits.

    Row i of head h's logits is ``w2[h]^T relu(W1 x_i + b1)_h + b2[h]``: a d -> d -> max_len
    MLP applied to token i alone (paper eq. 2), truncated to the actual key length. The
    tokens still mix, through ``Softmax(B) @ G(X)``.

    Args:
        embed_dim: model width d (divisible by ``num_heads``).
        num_heads: number of heads h.
        max_len: the longest sequence the layer accepts (l: the MLP's output width).
        dropout: dropout on the attention weights (training only).
        bias: biases in every linear map (W1, w2, G, W_O).
        batch_first: inputs are (N, L, E) instead of (L, N, E).
        device, dtype: where and how the parameters are created.

    Parameters (bias=True): ``2(d^2+d)`` for G and W_O, plus ``(d^2+d) + h(d_h*l + l)``.
    """

    def __init__(self, embed_dim, num_heads, max_len, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None):
        super().__init__(embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype)
        self.synth = DenseLogits(embed_dim, num_heads, max_len, bias=bias, device=device, dtype=dtype)


class RandomSynthesizer(_SynthesizerAttention):
    """Random Synthesizer: each head attends with its own l x l matrix R, the same for every input.

    Args:
        embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype: as
            :class:`DenseSynthesizer`.
        trainable: learn R (the paper's *Random*); ``False`` is *Fixed Random*: R is a
            buffer (in the ``state_dict``, not in ``parameters()``).

    Parameters (bias=True): ``2(d^2+d)`` for G and W_O, plus ``h*l^2`` when trainable.
    """

    def __init__(self, embed_dim, num_heads, max_len, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None, trainable=True):
        super().__init__(embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype)
        if not isinstance(trainable, bool):
            raise TypeError(f"RandomSynthesizer: `trainable` must be a bool, got {trainable!r}")
        self.synth = RandomLogits(embed_dim, num_heads, max_len, trainable=trainable, device=device, dtype=dtype)


class FactorizedRandomSynthesizer(_SynthesizerAttention):
    """Factorized Random Synthesizer: ``R[h] = R1[h] @ R2[h].T`` with R1, R2 of shape (l, k).

    Args:
        embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype: as
            :class:`DenseSynthesizer`.
        k: rank of each head's logit matrix (the paper uses 8).

    Parameters (bias=True): ``2(d^2+d)`` for G and W_O, plus ``2*h*l*k``.
    """

    def __init__(self, embed_dim, num_heads, max_len, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None, k=8):
        super().__init__(embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype)
        _check_int("FactorizedRandomSynthesizer", "k", k)
        self.synth = FactorizedRandomLogits(embed_dim, num_heads, max_len, k=k, device=device, dtype=dtype)


def _default_a(max_len: int) -> int:
    """The divisor of ``max_len`` closest to its square root (from below)."""
    return max(a for a in range(1, math.isqrt(max_len) + 1) if max_len % a == 0)


class FactorizedDenseSynthesizer(_SynthesizerAttention):
    """Factorized Dense Synthesizer: each token predicts a values A and b values B, a*b = l.

    The logits of row i are ``C[j] = A[j // b] * B[j % b]`` (A repeated, B tiled): an l-long
    row from only a + b numbers, so the second layer shrinks from d_h*l to d_h*(a+b) per head.

    Args:
        embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype: as
            :class:`DenseSynthesizer`.
        a: size of the first factor; must divide ``max_len`` (default: the divisor closest
            to sqrt(max_len) from below). b = max_len // a.

    Parameters (bias=True): ``2(d^2+d)`` for G and W_O, plus ``(d^2+d) + h(d_h+1)(a+b)``.
    """

    def __init__(self, embed_dim, num_heads, max_len, dropout=0.0, bias=True, batch_first=False, device=None, dtype=None, a=None):
        super().__init__(embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype)
        if a is None:
            a = _default_a(max_len)
        _check_int("FactorizedDenseSynthesizer", "a", a)
        if max_len % a != 0:
            raise ValueError(f"FactorizedDenseSynthesizer: `a` must divide max_len={max_len} (a * b = max_len), got a={a}")
        self.synth = FactorizedDenseLogits(embed_dim, num_heads, max_len, a=a, bias=bias, device=device, dtype=dtype)


_COMPONENTS = {
    "dense": DenseLogits,
    "random": RandomLogits,
    "fixed_random": RandomLogits,
    "factorized_random": FactorizedRandomLogits,
    "factorized_dense": FactorizedDenseLogits,
    "dot_product": DotProductLogits,
}


class SynthesizerMixture(_SynthesizerAttention):
    """A mixture of synthesizers and/or dot-product attention, mixed on the logits.

    ``logits = sum_c alpha_c * logits_c`` with ``alpha = softmax(mix_logits)`` (learnable, starts
    equal), then the softmax over keys as usual. The paper's "R+V" is
    ``components=("random", "dot_product")`` (the default), "D+V" is ``("dense", "dot_product")``.

    Args:
        embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype: as
            :class:`DenseSynthesizer`.
        components: names among ``"dense"``, ``"random"``, ``"fixed_random"``,
            ``"factorized_random"``, ``"factorized_dense"``, ``"dot_product"`` (at least two,
            no repeats).
        k: rank of a ``"factorized_random"`` component.
        a: first factor of a ``"factorized_dense"`` component.

    Parameters: ``2(d^2+d)`` for G and W_O, plus each component's own (``"dot_product"``:
    ``2(d^2+d)`` for W_Q and W_K), plus one mixing logit per component.
    """

    def __init__(
        self,
        embed_dim,
        num_heads,
        max_len,
        dropout=0.0,
        bias=True,
        batch_first=False,
        device=None,
        dtype=None,
        components: Sequence[str] = ("random", "dot_product"),
        k=8,
        a=None,
    ):
        super().__init__(embed_dim, num_heads, max_len, dropout, bias, batch_first, device, dtype)
        components = tuple(components) if not isinstance(components, str) else (components,)
        unknown = [c for c in components if c not in _COMPONENTS]
        if unknown or len(components) < 2 or len(set(components)) != len(components):
            raise ValueError(
                f"SynthesizerMixture: `components` must be at least two different names among {sorted(_COMPONENTS)}, got {components!r}"
            )
        fk = {"device": device, "dtype": dtype}
        parts = {}
        for name in components:
            if name in ("dense", "dot_product"):
                parts[name] = _COMPONENTS[name](embed_dim, num_heads, max_len, bias=bias, **fk)
            elif name in ("random", "fixed_random"):
                parts[name] = RandomLogits(embed_dim, num_heads, max_len, trainable=(name == "random"), **fk)
            elif name == "factorized_random":
                _check_int("SynthesizerMixture", "k", k)
                parts[name] = FactorizedRandomLogits(embed_dim, num_heads, max_len, k=k, **fk)
            else:
                a_ = _default_a(max_len) if a is None else a
                _check_int("SynthesizerMixture", "a", a_)
                if max_len % a_ != 0:
                    raise ValueError(f"SynthesizerMixture: `a` must divide max_len={max_len}, got a={a!r}")
                parts[name] = FactorizedDenseLogits(embed_dim, num_heads, max_len, a=a_, bias=bias, **fk)
        self.components = nn.ModuleDict(parts)
        self.mix_logits = nn.Parameter(torch.zeros(len(components), **fk))

    @property
    def alpha(self) -> Tensor:
        """The mixing weights (they sum to 1)."""
        return torch.softmax(self.mix_logits, dim=0)

    def synthesize(self, query: Tensor, key: Tensor) -> Tensor:
        alpha = self.alpha  # (C,)
        logits = 0.0
        for weight, part in zip(alpha, self.components.values()):
            logits = logits + weight * part(query, key)  # (N, h, L, S)
        return logits

    def extra_repr(self) -> str:
        return super().extra_repr() + f", components={tuple(self.components)}"


SYNTHESIZER_KINDS = ("dense", "random", "fixed_random", "factorized_dense", "factorized_random", "random+dot_product", "dense+dot_product")


def make_synthesizer(kind: str, embed_dim: int, num_heads: int, max_len: int, **kwargs) -> _SynthesizerAttention:
    """Build a synthesizer layer by name (one of :data:`SYNTHESIZER_KINDS`; mixtures join names with "+").

    Extra keyword arguments (dropout, bias, batch_first, device, dtype, k, a) go to the constructor.
    """
    if not isinstance(kind, str):
        raise TypeError(f"make_synthesizer: `kind` must be a str, got {type(kind).__name__}")
    if "+" in kind:
        return SynthesizerMixture(embed_dim, num_heads, max_len, components=tuple(kind.split("+")), **kwargs)
    if kind == "dense":
        return DenseSynthesizer(embed_dim, num_heads, max_len, **kwargs)
    if kind in ("random", "fixed_random"):
        return RandomSynthesizer(embed_dim, num_heads, max_len, trainable=(kind == "random"), **kwargs)
    if kind == "factorized_dense":
        return FactorizedDenseSynthesizer(embed_dim, num_heads, max_len, **kwargs)
    if kind == "factorized_random":
        return FactorizedRandomSynthesizer(embed_dim, num_heads, max_len, **kwargs)
    raise ValueError(f"make_synthesizer: `kind` must be one of {SYNTHESIZER_KINDS} (or names joined by '+'), got {kind!r}")


def synthesizer_parameter_count(
    kind: str, embed_dim: int, num_heads: int, max_len: int, *, k: int = 8, a: int | None = None, bias: bool = True, include_shared: bool = True
) -> int:
    """The number of trainable parameters of a synthesizer layer, from the formulas.

    Args:
        kind: ``"dense"``, ``"random"``, ``"fixed_random"``, ``"factorized_dense"``,
            ``"factorized_random"``, ``"dot_product"`` (the Q and K projections of vanilla
            attention) or a mixture: names joined by ``"+"``.
        embed_dim, num_heads, max_len: d, h, l.
        k: rank of factorized random; a: first factor of factorized dense.
        bias: whether the layer has biases.
        include_shared: add G and W_O, ``2(d^2 + d)`` (``2 d^2`` without bias).

    Returns:
        int: the count (``count_parameters(layer)`` of the matching layer).
    """
    d, h, l = embed_dim, num_heads, max_len
    dh = d // h
    nb = 1 if bias else 0
    linear = d * d + nb * d
    if a is None:
        a = _default_a(l)
    b = l // a
    own = {
        "dense": linear + h * (dh * l + nb * l),
        "random": h * l * l,
        "fixed_random": 0,
        "factorized_random": 2 * h * l * k,
        "factorized_dense": linear + h * (dh + nb) * (a + b),
        "dot_product": 2 * linear,
    }
    parts = kind.split("+")
    unknown = [p for p in parts if p not in own]
    if unknown:
        raise ValueError(f"synthesizer_parameter_count: unknown kind {kind!r}; use names among {sorted(own)} joined by '+'")
    total = sum(own[p] for p in parts) + (len(parts) if len(parts) > 1 else 0)
    return total + (2 * linear if include_shared else 0)
