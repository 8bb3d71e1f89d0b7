"""The key/value cache of fast generation, and the head repetition of grouped-query attention.

A decoder that generates one token at a time recomputes, at every step, the keys and values of
every earlier token, although they never change (the mask stops earlier tokens from seeing later
ones). :class:`KVCache` keeps them, per layer, so that a step computes only the new token's
query, key and value. :func:`repeat_kv` lets ``n_kv_head`` cached key/value heads serve
``n_head`` query heads (multi-query attention when ``n_kv_head == 1``, grouped-query otherwise).
:func:`kv_cache_bytes` is the cache's size: what grouped-query attention divides.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["KVCache", "kv_cache_bytes", "repeat_kv"]


class KVCache:
    """Keys and values of the tokens seen so far, one pair of tensors per layer.

    Args:
        n_layer: the number of attention layers that share this cache.

    A model must use a cache of exactly its own number of layers (``GPT`` checks
    :attr:`n_layer` before it writes anything).

    Shape:
        - ``update(layer, k, v)``: k and v :math:`(B, H_{kv}, T_{new}, D)`; returns the layer's whole
          keys and values :math:`(B, H_{kv}, T_{past} + T_{new}, D)`.
    """

    def __init__(self, n_layer: int) -> None:
        if isinstance(n_layer, bool) or not isinstance(n_layer, int) or n_layer < 1:
            raise ValueError(f"KVCache: n_layer must be a positive int, got {n_layer!r}")
        self.keys: list[Tensor | None] = [None] * n_layer
        self.values: list[Tensor | None] = [None] * n_layer

    @property
    def n_layer(self) -> int:
        """The number of layers this cache has a slot for."""
        return len(self.keys)

    def __len__(self) -> int:
        """The number of cached positions (those of layer 0)."""
        k = self.keys[0]
        return 0 if k is None else k.shape[2]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append the new positions' ``k`` and ``v`` to ``layer``'s cache and return all of them."""
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(self.keys):
            raise ValueError(f"KVCache.update: `layer` must be an int in [0, {len(self.keys)}), got {layer!r}")
        if not isinstance(k, Tensor) or not isinstance(v, Tensor):
            raise TypeError(f"KVCache.update: `k` and `v` must be tensors (B, H_kv, T_new, D), got {type(k).__name__} and {type(v).__name__}")
        if k.dim() != 4 or k.shape != v.shape:
            raise ValueError(f"KVCache.update: k and v must both be (B, H_kv, T_new, D), got {tuple(k.shape)} and {tuple(v.shape)}")
        if k.dtype != v.dtype or k.device != v.device:
            raise ValueError(f"KVCache.update: k and v must share dtype and device, got {k.dtype} on {k.device} and {v.dtype} on {v.device}")
        cached = self.keys[layer]
        if cached is not None and (k.shape[:2] != cached.shape[:2] or k.shape[3] != cached.shape[3]):
            raise ValueError(f"KVCache.update: layer {layer} caches (B, H_kv, T, D) = {tuple(cached.shape)}; the new k and v "
                             f"must match it in B, H_kv and D, got {tuple(k.shape)}")
        if cached is not None and (k.dtype != cached.dtype or k.device != cached.device):
            raise ValueError(f"KVCache.update: layer {layer} caches {cached.dtype} on {cached.device}; the new k and v "
                             f"must match it, got {k.dtype} on {k.device}")
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)  # (B, H_kv, T_past + T_new, D)
            v = torch.cat([self.values[layer], v], dim=2)  # (B, H_kv, T_past + T_new, D)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def nbytes(self) -> int:
        """Bytes held by the cached tensors: layers x 2 x B x H_kv x T x D x element size."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """Repeat each key/value head ``n_rep`` times, so ``H_kv`` heads serve ``H_kv * n_rep`` query heads.

    Query head ``h`` uses key/value head ``h // n_rep``: the grouping of
    ``F.scaled_dot_product_attention(..., enable_gqa=True)``.

    Args:
        x: keys or values.
        n_rep: how many query heads share each key/value head.

    Shape:
        - x: :math:`(B, H_{kv}, T, D)`; output: :math:`(B, H_{kv} \\cdot n_{rep}, T, D)`.
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"repeat_kv: `x` must be a 4-D tensor (B, H_kv, T, D), got {tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if isinstance(n_rep, bool) or not isinstance(n_rep, int) or n_rep < 1:
        raise ValueError(f"repeat_kv: `n_rep` must be a positive int, got {n_rep!r}")
    if n_rep == 1:
        return x
    return x.repeat_interleave(n_rep, dim=1)  # (B, H_kv * n_rep, T, D)


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_dim: int, seq_len: int, batch: int = 1,
                   dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a full KV cache: ``n_layer x 2 x n_kv_head x head_dim x seq_len x batch x element size``.

    Every layer keeps one key and one value vector of ``head_dim`` numbers per key/value head,
    per position and per sequence (the 2 counts keys and values).

    Args:
        n_layer: attention layers.
        n_kv_head: key/value heads per layer (``n_head`` without grouping, 1 for multi-query).
        head_dim: numbers per head (``n_embd // n_head``).
        seq_len: cached positions per sequence.
        batch: sequences.
        dtype: the cache's dtype (float32: 4 bytes, bfloat16/float16: 2).

    Example:
        >>> kv_cache_bytes(n_layer=12, n_kv_head=12, head_dim=64, seq_len=1024)  # GPT-2 small, float32
        75497472
    """
    for name, value in (("n_layer", n_layer), ("n_kv_head", n_kv_head), ("head_dim", head_dim), ("seq_len", seq_len), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"kv_cache_bytes: `{name}` must be an int >= 0, got {value!r}")
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"kv_cache_bytes: `dtype` must be a torch.dtype, got {dtype!r}")
    element_size = torch.empty((), dtype=dtype).element_size()
    return n_layer * 2 * n_kv_head * head_dim * seq_len * batch * element_size
