"""The Transformer, rebuilt from the course's own ``MultiheadAttention``.

Drop-in twins of ``torch.nn.TransformerEncoderLayer``, ``TransformerDecoderLayer``,
``TransformerEncoder``, ``TransformerDecoder`` and ``Transformer``: the same constructor
arguments and defaults, the same forward arguments, the same ``state_dict`` keys, so
``ours.load_state_dict(theirs.state_dict())`` works and the outputs agree.

The module tree::

    Transformer
    ├── encoder: TransformerEncoder
    │   ├── layers: ModuleList of N deep copies of one TransformerEncoderLayer
    │   │     self_attn, linear1, dropout, linear2, norm1, norm2, dropout1, dropout2
    │   └── norm: LayerNorm            (the final encoder norm nn.Transformer always adds)
    └── decoder: TransformerDecoder
        ├── layers: ModuleList of N deep copies of one TransformerDecoderLayer
        │     self_attn, multihead_attn, linear1, dropout, linear2, norm1..3, dropout1..3
        └── norm: LayerNorm            (the final decoder norm)

Plugging in another self-attention (e.g. a synthesizer): every layer and ``Transformer`` take a
keyword-only ``self_attn_factory``. It is called like ``MultiheadAttention``'s constructor,
``self_attn_factory(d_model, nhead, dropout=..., bias=..., batch_first=..., device=..., dtype=...)``,
and must return a module whose forward has ``MultiheadAttention.forward``'s interface
``(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
average_attn_weights=True, is_causal=False) -> (output, weights)``. The layers call it as
``self_attn(x, x, x, attn_mask=..., key_padding_mask=..., need_weights=False, is_causal=...)``.
Extra constructor arguments go in with :func:`functools.partial`, e.g.
``self_attn_factory=functools.partial(DenseSynthesizer, max_len=32)``. The decoder's
cross-attention (``multihead_attn``) always stays a ``MultiheadAttention``.

Bad input is refused with an error that names the argument the user passed (``tgt_key_padding_mask``,
``memory_mask``, ``nhead``...), not the inner ``MultiheadAttention``'s.

Differences from PyTorch:
    1. A mask passed with a causal flag (``is_causal``, ``tgt_is_causal``...) is checked like any
       other. Without a padding mask PyTorch does not use it (SDPA builds the causal mask) and
       accepts one of the wrong shape (``MultiheadAttention``'s Difference 3).
    2. The causal flags must be bools (or None where None means "detect"); PyTorch accepts any
       value where it ignores the flag (with a padding mask).
    3. ``num_layers < 0`` is refused; PyTorch builds an empty stack (``num_layers = 0`` is accepted
       by both, and both refuse to run it).
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MultiheadAttention

__all__ = [
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerInputError",
    "generate_square_subsequent_mask",
    "get_clones",
    "record_attention",
]

AttentionFactory = Callable[..., nn.Module]


class TransformerInputError(ValueError, RuntimeError):
    """Bad input to a Transformer module.

    A ``ValueError`` (the course's convention for bad arguments) that is also a
    ``RuntimeError`` (what ``torch.nn.Transformer`` raises), so code written for either
    catches it.
    """


# ---------------------------------------------------------------------------- helpers
def generate_square_subsequent_mask(sz: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """The causal mask: 0 on and below the diagonal, ``-inf`` above it (position i sees 0..i).

    Args:
        sz: sequence length.
        device, dtype: of the returned mask (default: the default device and float dtype).

    Shape:
        - output: :math:`(sz, sz)`
    """
    return torch.triu(torch.full((sz, sz), float("-inf"), dtype=dtype, device=device), diagonal=1)  # (sz, sz)


def get_clones(module: nn.Module, n: int) -> nn.ModuleList:
    """``n`` deep copies of ``module`` in a ``ModuleList``: distinct parameters that START EQUAL.

    This is what ``torch.nn.TransformerEncoder``/``Decoder`` do with the layer you give them
    (``torch.nn.modules.transformer._get_clones``). ``n = 0`` gives an empty list, as in PyTorch.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"`num_layers` must be an int >= 0, got {n!r}")
    return nn.ModuleList([copy.deepcopy(module) for _ in range(n)])


def _get_activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if isinstance(activation, str):
        if activation == "relu":
            return F.relu
        if activation == "gelu":
            return F.gelu
        raise TransformerInputError(
            f"`activation` must be 'relu', 'gelu' or a unary callable (e.g. torch.tanh or nn.SiLU()), got {activation!r}"
        )
    if not callable(activation):
        raise TypeError(f"`activation` must be 'relu', 'gelu' or a unary callable, got {type(activation).__name__}")
    return activation


def _canonical_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """A bool mask (True = blocked) becomes an additive float mask (-inf = blocked); float masks stay."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"`{name}` must be a bool or float tensor or None, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))
    if not mask.is_floating_point():
        raise TypeError(f"`{name}` must be bool (True = blocked) or floating point (added to the scores), got dtype {mask.dtype}")
    return mask


def _detect_is_causal_mask(mask: Tensor | None, is_causal: bool | None, size: int | None) -> bool:
    """The hint if one is given; otherwise whether ``mask`` equals the causal mask of ``size`` (in its own dtype)."""
    if is_causal is not None:
        return bool(is_causal)
    if mask is None:
        return False
    size = size if size is not None else mask.size(-2)
    causal = generate_square_subsequent_mask(size, device=mask.device, dtype=mask.dtype)  # (size, size)
    return mask.size() == causal.size() and bool((mask == causal).all())


def _check_layer_args(who: str, d_model, nhead, dim_feedforward, dropout, layer_norm_eps) -> None:
    """The constructor arguments, checked under the names the user passed (not ``embed_dim``/``num_heads``)."""
    for name, value, minimum in (("d_model", d_model, 1), ("nhead", nhead, 1), ("dim_feedforward", dim_feedforward, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{who}: `{name}` must be an int, got {type(value).__name__} {value!r}")
        if value < minimum:
            raise TransformerInputError(f"{who}: `{name}` must be >= {minimum}, got {value}")
    if d_model % nhead != 0:
        working = ", ".join(str(h) for h in range(1, d_model + 1) if d_model % h == 0)
        raise TransformerInputError(
            f"{who}: d_model={d_model} is not divisible by nhead={nhead}: each head gets d_model // nhead features. "
            f"Values of nhead that work for d_model={d_model}: {working}."
        )
    for name, value in (("dropout", dropout), ("layer_norm_eps", layer_norm_eps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{who}: `{name}` must be a number, got {type(value).__name__} {value!r}")
    if not 0.0 <= dropout <= 1.0:
        raise TransformerInputError(f"{who}: `dropout` must be a probability in [0, 1], got {dropout}")


def _check_input(who: str, name: str, x: Any, d_model: int, dtype: torch.dtype | None = None) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{who}: `{name}` must be a tensor, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise TransformerInputError(
            f"{who}: `{name}` must be 2-D (sequence, d_model) or 3-D (batched), got shape {tuple(x.shape)}"
        )
    if x.size(-1) != d_model:
        raise TransformerInputError(
            f"{who}: `{name}` must have d_model={d_model} features in its last dimension, got shape {tuple(x.shape)}"
        )
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{who}: `{name}` must have the dtype of the model's parameters ({dtype}), got {x.dtype}")


def _param_dtype(module: nn.Module) -> torch.dtype | None:
    first = next(module.parameters(), None)
    return None if first is None else first.dtype


def _batch_size(x: Tensor, batch_first: bool) -> int | None:
    return None if x.dim() == 2 else x.size(0 if batch_first else 1)


def _check_mask_type(who: str, name: str, mask: Any, true_means: str) -> None:
    """A mask is a bool tensor (True = ``true_means``) or a float tensor (added to the scores)."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{who}: `{name}` must be a bool or float tensor or None, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"{who}: `{name}` must be bool (True = {true_means}) or floating point (added to the scores), got dtype {mask.dtype}; "
            f"for a 0/1 integer mask use `{name}.bool()`"
        )


def _check_attn_mask(who: str, name: str, mask: Any, L: int, S: int, N: int | None, nhead: int | None) -> None:
    """An attention mask: bool or float, shape (L, S) or (N * nhead, L, S) ((nhead, L, S) unbatched)."""
    if mask is None:
        return
    _check_mask_type(who, name, mask, true_means="blocked")
    allowed = [(L, S)]
    expected = f"(L, S) = ({L}, {S})"
    if nhead is not None:
        stacked = nhead * (N if N is not None else 1)
        allowed.append((stacked, L, S))
        expected += f" or ({'N * nhead' if N is not None else 'nhead'}, L, S) = ({stacked}, {L}, {S})"
    if tuple(mask.shape) not in allowed:
        raise TransformerInputError(f"{who}: `{name}` must have shape {expected}, got {tuple(mask.shape)}")


def _check_padding_mask(who: str, name: str, mask: Any, N: int | None, S: int) -> None:
    """A key padding mask: bool or float, shape (N, S) batched, (S,) unbatched."""
    if mask is None:
        return
    _check_mask_type(who, name, mask, true_means="padding")
    expected = (S,) if N is None else (N, S)
    if tuple(mask.shape) != expected:
        layout = "(S,)" if N is None else "(N, S)"
        raise TransformerInputError(f"{who}: `{name}` must have shape {layout} = {expected}, got {tuple(mask.shape)}")


def _check_causal_hint(who: str, flag_name: str, flag: Any, mask_name: str, mask: Any, none_ok: bool = False) -> None:
    """``is_causal``-like flags are bools (None = detect, where allowed) and need their mask."""
    if not (isinstance(flag, bool) or (none_ok and flag is None)):
        allowed = "a bool or None" if none_ok else "a bool"
        raise TypeError(f"{who}: `{flag_name}` must be {allowed}, got {type(flag).__name__} {flag!r}")
    if flag and mask is None:
        raise TransformerInputError(
            f"{who}: `{flag_name}=True` is only a hint and needs the causal mask itself in `{mask_name}` "
            f"(e.g. generate_square_subsequent_mask(L)); got {mask_name}=None"
        )


def _check_layer_masks(who, x, attn_mask, padding_mask, is_causal, names, batch_first, nhead, memory=None,
                       memory_names=None, memory_masks=(None, None, False), none_ok=False) -> None:
    """Every mask of a layer or stack call, checked under the caller's argument names.

    ``names`` = (mask, padding mask, causal flag) names for the self-attention over ``x``;
    ``memory_names`` the same for the cross-attention from ``x`` to ``memory`` (decoders).
    """
    N, L = _batch_size(x, batch_first), _seq_len(x, batch_first)
    mask_name, padding_name, flag_name = names
    _check_attn_mask(who, mask_name, attn_mask, L, L, N, nhead)
    _check_padding_mask(who, padding_name, padding_mask, N, L)
    _check_causal_hint(who, flag_name, is_causal, mask_name, attn_mask, none_ok)
    if memory is not None:
        S = _seq_len(memory, batch_first)
        memory_mask, memory_padding, memory_causal = memory_masks
        mask_name, padding_name, flag_name = memory_names
        _check_attn_mask(who, mask_name, memory_mask, L, S, N, nhead)
        _check_padding_mask(who, padding_name, memory_padding, N, S)
        _check_causal_hint(who, flag_name, memory_causal, mask_name, memory_mask)


def _check_same_batch(who: str, a_name: str, a: Tensor, b_name: str, b: Tensor, batch_first: bool) -> None:
    if a.dim() != b.dim():
        raise TransformerInputError(
            f"{who}: `{a_name}` and `{b_name}` must both be batched (3-D) or both unbatched (2-D), "
            f"got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dim() == 3:
        dim = 0 if batch_first else 1
        if a.size(dim) != b.size(dim):
            layout = "(N, S, E)" if batch_first else "(S, N, E)"
            raise TransformerInputError(
                f"{who}: `{a_name}` and `{b_name}` must have the same batch size N (dim {dim}, layout {layout}, "
                f"batch_first={batch_first}), got shapes {tuple(a.shape)} and {tuple(b.shape)}"
            )


def _seq_len(x: Tensor, batch_first: bool) -> int:
    return x.size(0) if x.dim() == 2 else x.size(1 if batch_first else 0)


def _layer_batch_first(layer: nn.Module) -> bool:
    if hasattr(layer, "batch_first"):
        return bool(layer.batch_first)
    return bool(getattr(layer.self_attn, "batch_first", False))


def _layer_d_model(layer: nn.Module) -> int | None:
    if hasattr(layer, "d_model"):
        return layer.d_model
    return getattr(getattr(layer, "self_attn", None), "embed_dim", None)


def _layer_nhead(layer: nn.Module) -> int | None:
    if hasattr(layer, "nhead"):
        return layer.nhead
    return getattr(getattr(layer, "self_attn", None), "num_heads", None)


def _first_layer(who: str, layers: nn.ModuleList) -> nn.Module:
    if len(layers) == 0:
        raise TransformerInputError(
            f"{who}: the stack has no layers (built with num_layers=0), so there is nothing to run; build it with num_layers >= 1"
        )
    return layers[0]


def _make_self_attn(factory: AttentionFactory | None, d_model, nhead, dropout, bias, batch_first, device, dtype) -> nn.Module:
    factory = MultiheadAttention if factory is None else factory
    if not callable(factory):
        raise TypeError(f"`self_attn_factory` must be a callable returning a module, got {type(factory).__name__}")
    module = factory(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first, device=device, dtype=dtype)
    if not isinstance(module, nn.Module):
        raise TypeError(f"`self_attn_factory` must return an nn.Module, got {type(module).__name__}")
    return module


# ---------------------------------------------------------------------------- layers
class TransformerEncoderLayer(nn.Module):
    r"""Self-attention then a feed-forward block, each wrapped in a residual connection and a LayerNorm.

    Post-LN (``norm_first=False``, the default, as in "Attention Is All You Need")::

        x = norm1(x + dropout1(self_attn(x)))
        x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))

    Pre-LN (``norm_first=True``)::

        x = x + dropout1(self_attn(norm1(x)))
        x = x + dropout2(linear2(dropout(activation(linear1(norm2(x))))))

    Args:
        d_model: width E of the input.
        nhead: number of attention heads.
        dim_feedforward: hidden width of the feed-forward block. Default: 2048.
        dropout: dropout probability (attention weights, feed-forward, residual branches). Default: 0.1.
        activation: ``"relu"``, ``"gelu"`` or a unary callable. Default: ``F.relu``.
        layer_norm_eps: ``eps`` of the LayerNorms. Default: 1e-5.
        batch_first: (N, S, E) instead of (S, N, E). Default: False.
        norm_first: pre-LN instead of post-LN. Default: False.
        bias: biases in every Linear, both attention projections and every LayerNorm. Default: True.
        device, dtype: where and how the parameters are created.
        self_attn_factory: keyword only; builds ``self_attn`` instead of ``MultiheadAttention``
            (see the module docstring for the interface).

    Shape:
        - src: :math:`(S, E)`, :math:`(S, N, E)`, or :math:`(N, S, E)` with ``batch_first``
        - src_mask: :math:`(S, S)` or :math:`(N \cdot \text{nhead}, S, S)`; bool True = blocked, float = added
        - src_key_padding_mask: :math:`(S)` or :math:`(N, S)`; True marks padding
        - output: like ``src``
    """

    __constants__ = ["norm_first"]

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        self_attn_factory: AttentionFactory | None = None,
    ) -> None:
        _check_layer_args("TransformerEncoderLayer", d_model, nhead, dim_feedforward, dropout, layer_norm_eps)
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        # the same registration order as PyTorch, so state_dict keys come in the same order
        self.self_attn = _make_self_attn(self_attn_factory, d_model, nhead, dropout, bias, batch_first, device, dtype)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _get_activation(activation)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool = False,
    ) -> Tensor:
        """Run the layer. ``is_causal`` is a hint that ``src_mask`` is the causal mask (the mask is still needed)."""
        who = "TransformerEncoderLayer"
        _check_input(who, "src", src, self.d_model, _param_dtype(self))
        _check_layer_masks(who, src, src_mask, src_key_padding_mask, is_causal, ("src_mask", "src_key_padding_mask", "is_causal"),
                           self.batch_first, self.nhead)
        src_key_padding_mask = _canonical_mask(src_key_padding_mask, "src_key_padding_mask", src.dtype)  # (N, S)
        src_mask = _canonical_mask(src_mask, "src_mask", src.dtype)  # (S, S) or (N*h, S, S)
        x = src  # (S, N, E) or (N, S, E)
        if self.norm_first:  # pre-LN: normalise the input of each block, add the block's output to x
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:  # post-LN: add the block's output to x, then normalise the sum
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool) -> Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]  # same shape as x
        return self.dropout1(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))  # E -> dim_feedforward -> E
        return self.dropout2(x)


class TransformerDecoderLayer(nn.Module):
    r"""Masked self-attention, cross-attention to the encoder's ``memory``, then a feed-forward block.

    Post-LN (``norm_first=False``)::

        x = norm1(x + dropout1(self_attn(x)))
        x = norm2(x + dropout2(multihead_attn(x, memory)))
        x = norm3(x + dropout3(feed_forward(x)))

    Pre-LN (``norm_first=True``): ``x = x + dropout_i(block_i(norm_i(x)))`` for the three blocks.

    Args:
        d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first,
        bias, device, dtype: as for :class:`TransformerEncoderLayer`.
        self_attn_factory: keyword only; builds ``self_attn`` (the cross-attention stays a
            ``MultiheadAttention``).

    Note:
        Unlike ``torch.nn.TransformerDecoderLayer`` in PyTorch 2.13, a *module* activation (e.g.
        ``nn.GELU()``) survives ``copy.deepcopy``: PyTorch's ``__setstate__`` replaces it with
        ``F.relu`` in every layer that ``nn.TransformerDecoder`` clones.

    Shape:
        - tgt: :math:`(T, E)`, :math:`(T, N, E)`, or :math:`(N, T, E)` with ``batch_first``
        - memory: :math:`(S, E)`, :math:`(S, N, E)`, or :math:`(N, S, E)` with ``batch_first``
        - tgt_mask: :math:`(T, T)` or :math:`(N \cdot \text{nhead}, T, T)`
        - memory_mask: :math:`(T, S)` or :math:`(N \cdot \text{nhead}, T, S)`
        - tgt_key_padding_mask: :math:`(T)` or :math:`(N, T)`; memory_key_padding_mask: :math:`(S)` or :math:`(N, S)`
        - output: like ``tgt``
    """

    __constants__ = ["norm_first"]

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        self_attn_factory: AttentionFactory | None = None,
    ) -> None:
        _check_layer_args("TransformerDecoderLayer", d_model, nhead, dim_feedforward, dropout, layer_norm_eps)
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.self_attn = _make_self_attn(self_attn_factory, d_model, nhead, dropout, bias, batch_first, device, dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first, bias=bias, **factory)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _get_activation(activation)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool = False,
        memory_is_causal: bool = False,
    ) -> Tensor:
        """Run the layer. The ``*_is_causal`` flags are hints that the matching mask is causal."""
        who = "TransformerDecoderLayer"
        _check_input(who, "tgt", tgt, self.d_model, _param_dtype(self))
        _check_input(who, "memory", memory, self.d_model, _param_dtype(self))
        _check_same_batch(who, "tgt", tgt, "memory", memory, self.batch_first)
        _check_layer_masks(who, tgt, tgt_mask, tgt_key_padding_mask, tgt_is_causal, ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"),
                           self.batch_first, self.nhead, memory, ("memory_mask", "memory_key_padding_mask", "memory_is_causal"),
                           (memory_mask, memory_key_padding_mask, memory_is_causal))
        x = tgt  # (T, N, E) or (N, T, E)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool) -> Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                           need_weights=False)[0]  # (T, N, E)
        return self.dropout1(x)

    def _mha_block(self, x: Tensor, mem: Tensor, attn_mask: Tensor | None, key_padding_mask: Tensor | None,
                   is_causal: bool) -> Tensor:
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask, is_causal=is_causal,
                                need_weights=False)[0]  # queries from tgt, keys/values from memory: (T, N, E)
        return self.dropout2(x)

    def _ff_block(self, x: Tensor) -> Tensor:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))  # E -> dim_feedforward -> E
        return self.dropout3(x)


# ---------------------------------------------------------------------------- stacks
def _why_no_nested_tensor(layer: nn.Module) -> str:
    """Why PyTorch's encoder would not take its nested-tensor path for stacks of ``layer`` ('' if it would)."""
    attn = getattr(layer, "self_attn", None)
    activation = getattr(layer, "activation", None)
    if not isinstance(layer, (TransformerEncoderLayer, nn.TransformerEncoderLayer)):
        return "the layer is not a TransformerEncoderLayer"
    if layer.norm_first:
        return "norm_first was True"
    if not getattr(attn, "batch_first", False):
        return "self_attn.batch_first was not True"
    if not getattr(attn, "_qkv_same_embed_dim", False):
        return "self_attn is not a MultiheadAttention with one packed in-projection"
    if getattr(attn, "in_proj_bias", None) is None:
        return "self_attn has no bias"
    if not (activation is F.relu or activation is F.gelu or isinstance(activation, (nn.ReLU, nn.GELU))):
        return "the activation is not relu/gelu"
    if layer.norm1.eps != layer.norm2.eps:
        return "norm1.eps != norm2.eps"
    if attn.num_heads % 2 == 1:
        return "num_heads is odd"
    return ""


class TransformerEncoder(nn.Module):
    r"""A stack of ``num_layers`` encoder layers (deep copies of ``encoder_layer``), then ``norm``.

    Args:
        encoder_layer: the layer to copy (a :class:`TransformerEncoderLayer` or any module with its forward).
        num_layers: number of copies. They start with EQUAL weights (``get_clones`` deep-copies);
            ``Transformer._reset_parameters`` re-initialises them.
        norm: a final norm applied after the last layer (``nn.Transformer`` always passes one).
        enable_nested_tensor: PyTorch packs padded batches into a NestedTensor in eval mode without
            grad; the visible effect, reproduced here, is that the stack's output at padded positions
            is exactly 0 (``norm.bias`` after the final norm). Valid positions are unaffected.
        mask_check: as in PyTorch, that packing only happens when the padding is at the end of each
            sequence.

    Shape:
        - src: :math:`(S, E)`, :math:`(S, N, E)`, or :math:`(N, S, E)` with ``batch_first``
        - mask: :math:`(S, S)` or :math:`(N \cdot \text{nhead}, S, S)`
        - src_key_padding_mask: :math:`(S)` or :math:`(N, S)`
        - output: like ``src``
    """

    __constants__ = ["norm"]

    def __init__(
        self,
        encoder_layer: nn.Module,
        num_layers: int,
        norm: nn.Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ) -> None:
        super().__init__()
        self.layers = get_clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.enable_nested_tensor = enable_nested_tensor
        self.use_nested_tensor = enable_nested_tensor and _why_no_nested_tensor(encoder_layer) == ""
        self.mask_check = mask_check

    def forward(
        self,
        src: Tensor,
        mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        is_causal: bool | None = None,
    ) -> Tensor:
        """Run every layer in turn. ``is_causal=None`` detects whether ``mask`` is the causal mask."""
        who = "TransformerEncoder"
        first = _first_layer(who, self.layers)
        batch_first = _layer_batch_first(first)
        d_model = _layer_d_model(first)
        if d_model is not None:
            _check_input(who, "src", src, d_model, _param_dtype(first))
            _check_layer_masks(who, src, mask, src_key_padding_mask, is_causal, ("mask", "src_key_padding_mask", "is_causal"),
                               batch_first, _layer_nhead(first), none_ok=True)
        src_key_padding_mask = _canonical_mask(src_key_padding_mask, "src_key_padding_mask", src.dtype)  # (N, S)
        mask = _canonical_mask(mask, "mask", src.dtype)  # (S, S) or (N*h, S, S)
        is_causal = _detect_is_causal_mask(mask, is_causal, _seq_len(src, batch_first))
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, is_causal=is_causal, src_key_padding_mask=src_key_padding_mask)
        if self._zeroes_padding(src, mask, src_key_padding_mask):
            output = output.masked_fill((src_key_padding_mask != 0).unsqueeze(-1), 0.0)  # padded rows -> 0
        if self.norm is not None:
            output = self.norm(output)
        return output

    def _zeroes_padding(self, src: Tensor, mask: Tensor | None, src_key_padding_mask: Tensor | None) -> bool:
        """Whether PyTorch's encoder would take its nested-tensor path on this call."""
        if not (getattr(self, "use_nested_tensor", False) and torch.backends.mha.get_fastpath_enabled()):
            return False
        if self.layers[0].training or src.dim() != 3 or src_key_padding_mask is None or mask is not None:
            return False
        if torch.is_grad_enabled() and (src.requires_grad or any(p.requires_grad for p in self.layers[0].parameters())):
            return False
        if torch.is_autocast_enabled():
            return False
        if self.mask_check:
            valid = (src_key_padding_mask == 0).int()  # (N, S), 1 = a real token
            if bool((valid[:, 1:] > valid[:, :-1]).any()):  # a real token after padding: not left-aligned
                return False
        return True


class TransformerDecoder(nn.Module):
    r"""A stack of ``num_layers`` decoder layers (deep copies of ``decoder_layer``), then ``norm``.

    Every layer attends to the same ``memory`` (the encoder's output).

    Args:
        decoder_layer: the layer to copy.
        num_layers: number of copies (equal weights at first, as for :class:`TransformerEncoder`).
        norm: a final norm applied after the last layer.

    Shape:
        see :class:`TransformerDecoderLayer`.
    """

    __constants__ = ["norm"]

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layers = get_clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        """Run every layer in turn. ``tgt_is_causal=None`` detects whether ``tgt_mask`` is the causal mask."""
        who = "TransformerDecoder"
        first = _first_layer(who, self.layers)
        batch_first = _layer_batch_first(first)
        d_model = _layer_d_model(first)
        if d_model is not None:
            _check_input(who, "tgt", tgt, d_model, _param_dtype(first))
            _check_input(who, "memory", memory, d_model, _param_dtype(first))
        _check_same_batch(who, "tgt", tgt, "memory", memory, batch_first)
        if d_model is not None:
            _check_layer_masks(who, tgt, tgt_mask, tgt_key_padding_mask, tgt_is_causal,
                               ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"), batch_first, _layer_nhead(first), memory,
                               ("memory_mask", "memory_key_padding_mask", "memory_is_causal"),
                               (memory_mask, memory_key_padding_mask, memory_is_causal), none_ok=True)
        tgt_is_causal = _detect_is_causal_mask(tgt_mask, tgt_is_causal, _seq_len(tgt, batch_first))
        output = tgt
        for layer in self.layers:
            output = layer(output, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                           tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                           tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)
        if self.norm is not None:
            output = self.norm(output)
        return output


# ---------------------------------------------------------------------------- the whole model
class Transformer(nn.Module):
    r"""Encoder-decoder Transformer; a drop-in twin of ``torch.nn.Transformer``.

    ``memory = encoder(src)``, then ``output = decoder(tgt, memory)``. Both stacks end with a final
    LayerNorm, even with ``norm_first=False`` (as in PyTorch). After construction every parameter
    with more than one dimension is re-initialised with ``xavier_uniform_`` (``_reset_parameters``),
    so the layers, cloned equal, end up different.

    Args:
        d_model: width E of the encoder/decoder inputs. Default: 512.
        nhead: number of attention heads. Default: 8.
        num_encoder_layers: Default: 6.
        num_decoder_layers: Default: 6.
        dim_feedforward: hidden width of the feed-forward blocks. Default: 2048.
        dropout: Default: 0.1.
        activation: ``"relu"``, ``"gelu"`` or a unary callable. Default: ``F.relu``.
        custom_encoder: used instead of the default encoder stack.
        custom_decoder: used instead of the default decoder stack.
        layer_norm_eps: Default: 1e-5.
        batch_first: (N, S, E) instead of (S, N, E). Default: False.
        norm_first: pre-LN layers. Default: False.
        bias: biases in the Linear, attention and LayerNorm layers. Default: True.
        device, dtype: where and how the parameters are created.
        self_attn_factory: keyword only; builds the self-attention of every encoder and decoder
            layer (see the module docstring). Like every other parameter with more than one
            dimension, the plug-in's matrices are then re-drawn by ``_reset_parameters``; re-run the
            plug-in's own initialisation afterwards if it needs one.

    Shape:
        - src: :math:`(S, E)`, :math:`(S, N, E)`, or :math:`(N, S, E)` with ``batch_first``
        - tgt: :math:`(T, E)`, :math:`(T, N, E)`, or :math:`(N, T, E)` with ``batch_first``
        - src_mask: :math:`(S, S)` or :math:`(N \cdot \text{nhead}, S, S)`
        - tgt_mask: :math:`(T, T)` or :math:`(N \cdot \text{nhead}, T, T)`
        - memory_mask: :math:`(T, S)`
        - src_key_padding_mask, memory_key_padding_mask: :math:`(S)` or :math:`(N, S)`
        - tgt_key_padding_mask: :math:`(T)` or :math:`(N, T)`
        - output: like ``tgt``
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str | Callable[[Tensor], Tensor] = F.relu,
        custom_encoder: nn.Module | None = None,
        custom_decoder: nn.Module | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
        *,
        self_attn_factory: AttentionFactory | None = None,
    ) -> None:
        if custom_encoder is None or custom_decoder is None:
            _check_layer_args("Transformer", d_model, nhead, dim_feedforward, dropout, layer_norm_eps)
        for name, value in (("num_encoder_layers", num_encoder_layers), ("num_decoder_layers", num_decoder_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Transformer: `{name}` must be an int >= 0, got {value!r}")
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first, bias)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            encoder_layer = TransformerEncoderLayer(*layer_args, **factory, self_attn_factory=self_attn_factory)
            encoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
            self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers, encoder_norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            decoder_layer = TransformerDecoderLayer(*layer_args, **factory, self_attn_factory=self_attn_factory)
            decoder_norm = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
            self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, decoder_norm)
        self._reset_parameters()
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        memory_mask: Tensor | None = None,
        src_key_padding_mask: Tensor | None = None,
        tgt_key_padding_mask: Tensor | None = None,
        memory_key_padding_mask: Tensor | None = None,
        src_is_causal: bool | None = None,
        tgt_is_causal: bool | None = None,
        memory_is_causal: bool = False,
    ) -> Tensor:
        """Encode ``src`` into ``memory``, then decode ``tgt`` while attending to ``memory``.

        Masks: bool True = blocked (the opposite of ``F.scaled_dot_product_attention``), float masks
        are added to the scores. ``src_is_causal``/``tgt_is_causal`` = None detect a causal mask.
        """
        who = "Transformer"
        _check_input(who, "src", src, self.d_model, _param_dtype(self))
        _check_input(who, "tgt", tgt, self.d_model, _param_dtype(self))
        _check_same_batch(who, "src", src, "tgt", tgt, self.batch_first)
        for name, stack in (("num_encoder_layers", self.encoder), ("num_decoder_layers", self.decoder)):
            if isinstance(stack, (TransformerEncoder, TransformerDecoder)) and len(stack.layers) == 0:
                raise TransformerInputError(
                    f"{who}: built with {name}=0, so there is no layer to run (PyTorch accepts it too, then fails here); use {name} >= 1"
                )
        _check_layer_masks(who, src, src_mask, src_key_padding_mask, src_is_causal, ("src_mask", "src_key_padding_mask", "src_is_causal"),
                           self.batch_first, self.nhead, none_ok=True)
        _check_layer_masks(who, tgt, tgt_mask, tgt_key_padding_mask, tgt_is_causal, ("tgt_mask", "tgt_key_padding_mask", "tgt_is_causal"),
                           self.batch_first, self.nhead, src, ("memory_mask", "memory_key_padding_mask", "memory_is_causal"),
                           (memory_mask, None, memory_is_causal), none_ok=True)
        _check_padding_mask(who, "memory_key_padding_mask", memory_key_padding_mask, _batch_size(tgt, self.batch_first),
                            _seq_len(src, self.batch_first))
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """The causal mask: 0 on and below the diagonal, ``-inf`` above. Shape :math:`(sz, sz)`."""
        return generate_square_subsequent_mask(sz, device=device, dtype=dtype)

    def _reset_parameters(self) -> None:
        """``xavier_uniform_`` on every parameter with more than one dimension; biases and norms keep theirs."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)


# ---------------------------------------------------------------------------- looking inside
class record_attention:
    """Context manager that records the attention weights of every attention module while a model runs.

    The layers call their attention with ``need_weights=False`` (the fast kernel returns no
    weights). A forward hook on each attention module (``MultiheadAttention`` or any module given
    in ``modules``) re-runs it on the same inputs with ``need_weights=True,
    average_attn_weights=False`` and stores the per-head weights. Works for ``torch.nn`` models too.

    Example::

        with record_attention(model) as weights:
            model(src, tgt)
        weights["decoder.layers.0.multihead_attn"]  # (N, nhead, T, S)

    Args:
        model: the model to watch.
        modules: names of the submodules to record (default: every ``MultiheadAttention``, ours or PyTorch's).
    """

    def __init__(self, model: nn.Module, modules: list[str] | None = None) -> None:
        named = dict(model.named_modules())
        if modules is None:
            modules = [n for n, m in named.items() if isinstance(m, (MultiheadAttention, nn.MultiheadAttention))]
        missing = [n for n in modules if n not in named]
        if missing:
            raise ValueError(f"record_attention: no submodule named {missing[0]!r} in the model")
        self._targets = {n: named[n] for n in modules}
        self.weights: dict[str, Tensor] = {}
        self._handles: list = []

    def __enter__(self) -> dict[str, Tensor]:
        for name, module in self._targets.items():
            self._handles.append(module.register_forward_hook(self._hook(name), with_kwargs=True))
        return self.weights

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str):
        def hook(module, args, kwargs, output):
            kwargs = {**kwargs, "need_weights": True, "average_attn_weights": False}
            with torch.no_grad():
                _, weights = module.forward(*args, **kwargs)  # .forward: skips the hooks (no recursion)
            self.weights[name] = weights.detach()

        return hook
