"""``MultiheadAttention`` from the inside: a drop-in twin of :class:`torch.nn.MultiheadAttention`.

Read it next to ``torch.nn.functional.multi_head_attention_forward``: the steps have the same
order and the same names (``tgt_len`` = L, ``src_len`` = S, ``bsz`` = N, ``head_dim`` = d_h).
``ours.load_state_dict(theirs.state_dict())`` works, and the two give the same outputs, weights and
gradients for every option, with two deliberate, documented exceptions where PyTorch 2.13 disagrees
with itself (see :class:`MultiheadAttention`, "Differences from PyTorch").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .i18n import _


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def canonical_mask(mask: Tensor | None, name: str, dtype: torch.dtype) -> Tensor | None:
    """Turn a boolean "blocked" mask into an additive float mask (``-inf`` where True, 0 elsewhere).

    ``nn.MultiheadAttention`` reads a boolean mask as True = "do NOT attend" (the opposite of
    ``F.scaled_dot_product_attention``). Float masks are added to the scores as they are (cast to
    ``dtype``). Integer masks are refused.

    Args:
        mask: None, a bool tensor, or a float tensor.
        name: the argument's name, for error messages.
        dtype: the float dtype of the scores.
    """
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"`{name}` must be a bool or float tensor, got {type(mask).__name__}")
    if mask.dtype == torch.bool:
        return torch.zeros_like(mask, dtype=dtype).masked_fill_(mask, float("-inf"))  # 0 = attend, -inf = blocked
    if not mask.is_floating_point():
        raise TypeError(
            f"`{name}` must be bool (True = blocked) or floating point (added to the scores), got dtype {mask.dtype}; "
            f"for a 0/1 integer mask use `{name}.bool()`"
        )
    return mask.to(dtype)


class MultiheadAttention(nn.Module):
    r"""Multi-head attention, written out step by step; a drop-in twin of ``torch.nn.MultiheadAttention``.

    .. math::
        \text{MultiHead}(Q, K, V) = \text{Concat}(\text{head}_1, \dots, \text{head}_h) W^O,\quad
        \text{head}_i = \text{softmax}\Big(\frac{Q W_i^Q (K W_i^K)^\top}{\sqrt{d_h}} + M\Big) V W_i^V

    Args:
        embed_dim: total width E of the model; split into ``num_heads`` heads of ``E // num_heads``.
        num_heads: number of parallel heads h; must divide ``embed_dim``.
        dropout: dropout probability on the attention weights (training only). Default: 0.0.
        bias: add biases to the input and output projections. Default: True.
        add_bias_kv: append a learnable key and value (``bias_k``, ``bias_v``) to the sequence. Default: False.
        add_zero_attn: append an all-zero key and value after the head split. Default: False.
        kdim: feature width of ``key`` (default ``embed_dim``).
        vdim: feature width of ``value`` (default ``embed_dim``).
        batch_first: inputs and output are (N, L, E) instead of (L, N, E). Default: False.
        device, dtype: where and how the parameters are created.

    Parameters (the same names as PyTorch's, so ``state_dict`` keys match):
        ``in_proj_weight`` (3E, E) = [W_q; W_k; W_v] when kdim = vdim = E, otherwise ``q_proj_weight``
        (E, E), ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim); ``in_proj_bias`` (3E);
        ``out_proj`` (a Linear E -> E); ``bias_k``, ``bias_v`` (1, 1, E).

    Shape:
        - query: (L, E) unbatched, (L, N, E), or (N, L, E) with ``batch_first``
        - key: (S, kdim), (S, N, kdim) or (N, S, kdim)
        - value: (S, vdim), (S, N, vdim) or (N, S, vdim)
        - key_padding_mask: (S) or (N, S); True (or -inf) marks padding
        - attn_mask: (L, S) or (N * num_heads, L, S), batch-major: index n * num_heads + head
        - output: like query, with width E
        - weights: (N, L, S) averaged over heads, or (N, num_heads, L, S); no N when unbatched

    Differences from PyTorch (1 and 2 are places where PyTorch 2.13 disagrees with itself):
        1. ``is_causal=True`` with ``add_bias_kv`` or ``add_zero_attn`` (``need_weights=False``, no
           padding mask): PyTorch drops ``attn_mask`` and asks SDPA for a top-left causal mask on an
           L x (L+1) problem, which also hides the appended bias/zero slot; with ``need_weights=True``
           it uses the mask and the slot stays visible. This class always uses the mask there, so
           both values of ``need_weights`` agree (with PyTorch's mask path).
        2. Query rows whose keys are all masked: PyTorch's explicit path and its native fast path
           give NaN, its SDPA path gives 0 (output row = ``out_proj.bias``). This class gives NaN
           with ``need_weights=True`` (explicit softmax, like PyTorch) and the SDPA answer with
           ``need_weights=False``, whether or not grad is enabled.
        3. ``attn_mask`` is always checked. With ``is_causal=True, need_weights=False`` and no
           padding mask, PyTorch does not use ``attn_mask`` (SDPA builds the causal mask itself) and
           accepts one of any (L', S') shape, which it would refuse with ``need_weights=True``. A
           mask that does not fit the inputs is a mistake, so this class refuses it on both paths.
        4. The constructor refuses a ``dropout`` that is not a number in [0, 1] (PyTorch stores it
           and fails, or not, in ``forward``).
    """

    __constants__ = ["batch_first"]

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        for name, value in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"MultiheadAttention: `{name}` must be an int, got {type(value).__name__} {value!r}")
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(
                f"MultiheadAttention: `embed_dim` and `num_heads` must be greater than 0, got embed_dim={embed_dim} and num_heads={num_heads}"
            )
        if embed_dim % num_heads != 0:
            raise ValueError(
                _("MultiheadAttention: embed_dim={embed_dim} is not divisible by num_heads={num_heads}: each head gets "
                  "embed_dim // num_heads features, so num_heads must divide embed_dim. "
                  "Head counts that work for embed_dim={embed_dim}: {counts}."
                  ).format(embed_dim=embed_dim, num_heads=num_heads, counts=", ".join(map(str, _divisors(embed_dim))))
            )
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"MultiheadAttention: `dropout` must be a number in [0, 1], got {type(dropout).__name__} {dropout!r}")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: `dropout` must be a probability in [0, 1], got {dropout}")
        for name, value in (("kdim", kdim), ("vdim", vdim)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"MultiheadAttention: `{name}` must be None or a positive int, got {value!r}")
        factory = {"device": device, "dtype": dtype}
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads

        if self._qkv_same_embed_dim:  # one packed (3E, E) matrix: rows [W_q; W_k; W_v]
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:  # key/value widths differ from E: three separate matrices
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
        else:
            self.bias_k = self.bias_v = None
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's initialisation: Xavier on the (whole) in-projection, zero biases."""
        if self._qkv_same_embed_dim:
            nn.init.xavier_uniform_(self.in_proj_weight)  # on the whole (3E, E): bound sqrt(6 / 4E)
        else:
            nn.init.xavier_uniform_(self.q_proj_weight)
            nn.init.xavier_uniform_(self.k_proj_weight)
            nn.init.xavier_uniform_(self.v_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)
        if self.bias_k is not None:
            nn.init.xavier_normal_(self.bias_k)
            nn.init.xavier_normal_(self.bias_v)

    def extra_repr(self) -> str:
        parts = [f"embed_dim={self.embed_dim}", f"num_heads={self.num_heads}"]
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if not self._qkv_same_embed_dim:
            parts.append(f"kdim={self.kdim}, vdim={self.vdim}")
        if self.add_zero_attn:
            parts.append("add_zero_attn=True")
        if self.batch_first:
            parts.append("batch_first=True")
        return ", ".join(parts)

    # ------------------------------------------------------------------ forward
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
        """Attend from ``query`` to ``key``/``value``.

        Args:
            query, key, value: see the class's Shape section.
            key_padding_mask: (N, S) or (S); bool True / float -inf marks keys to ignore.
            need_weights: also return the attention weights (computed explicitly); False lets the
                fused ``F.scaled_dot_product_attention`` kernel do the work.
            attn_mask: (L, S) or (N * num_heads, L, S); bool True = blocked, float = added.
            average_attn_weights: average the returned weights over heads.
            is_causal: a hint that ``attn_mask`` is the causal mask (the mask is still required).

        Returns:
            (attn_output, attn_weights or None)
        """
        is_batched = self._check_inputs(query, key, value, key_padding_mask, attn_mask)
        if is_causal and attn_mask is None:
            raise ValueError(
                "MultiheadAttention: `is_causal=True` is only a hint and needs the causal mask itself in `attn_mask` "
                "(e.g. nn.Transformer.generate_square_subsequent_mask(L)); got attn_mask=None"
            )
        if self.batch_first and is_batched:  # (N, L, E) -> (L, N, E) views, keeping `query is key` identities
            if key is value:
                if query is key:
                    query = key = value = query.transpose(0, 1)
                else:
                    query = query.transpose(0, 1)
                    key = value = key.transpose(0, 1)
            else:
                query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        output, weights = self._attention(query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights,
                                          is_causal, is_batched)
        if self.batch_first and is_batched:
            output = output.transpose(0, 1)  # (N, L, E), a view of a contiguous (L, N, E), as in PyTorch
        return output, weights

    def _attention(self, query, key, value, key_padding_mask, need_weights, attn_mask, average_attn_weights, is_causal,
                   is_batched):
        """The body of ``F.multi_head_attention_forward``, in (L, N, E) layout."""
        if not is_batched:  # pretend there is a batch of one: (L, E) -> (L, 1, E)
            # (each is unsqueezed on its own, as in PyTorch, so `query is key` no longer holds here)
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)  # (L, 1, E), (S, 1, kdim), (S, 1, vdim)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        tgt_len, bsz, embed_dim = query.shape  # L, N, E
        num_heads, head_dim = self.num_heads, self.head_dim

        # 1. masks -> additive float masks (bool True = blocked -> -inf)
        key_padding_mask = canonical_mask(key_padding_mask, "key_padding_mask", query.dtype)  # (N, S)
        appends_slots = self.bias_k is not None or self.add_zero_attn
        if is_causal and key_padding_mask is None and not need_weights and not appends_slots:
            attn_mask = None  # SDPA builds the causal mask itself (difference 1 in the class docstring)
        else:
            attn_mask = canonical_mask(attn_mask, "attn_mask", query.dtype)
            is_causal = False  # the mask is used as given
        # 2. in-projection: (L, N, E) -> q (L, N, E); (S, N, kdim/vdim) -> k, v (S, N, E)
        q, k, v = self._in_projection(query, key, value)
        # 3. attn_mask: (L, S) -> (1, L, S) so it broadcasts over the N * h batch
        if attn_mask is not None and attn_mask.dim() == 2:
            attn_mask = attn_mask.unsqueeze(0)  # (1, L, S) or (N*h, L, S)
        # 4. learnable bias key/value: one more slot on the sequence axis, always attendable
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.repeat(1, bsz, 1)])  # (S+1, N, E)
            v = torch.cat([v, self.bias_v.repeat(1, bsz, 1)])  # (S+1, N, E)
            attn_mask = F.pad(attn_mask, (0, 1)) if attn_mask is not None else None  # (., L, S+1)
            key_padding_mask = F.pad(key_padding_mask, (0, 1)) if key_padding_mask is not None else None  # (N, S+1)
        # 5. split the heads: (L, N, E) -> (L, N*h, d_h) -> (N*h, L, d_h), batch-major (n * h + head)
        q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)  # (N*h, L, d_h)
        k = k.reshape(k.shape[0], bsz * num_heads, head_dim).transpose(0, 1)  # (N*h, S, d_h)
        v = v.reshape(v.shape[0], bsz * num_heads, head_dim).transpose(0, 1)  # (N*h, S, d_h)
        # 6. zero attention: an all-zero key/value slot, added after the split
        if self.add_zero_attn:
            zeros = torch.zeros(bsz * num_heads, 1, head_dim, dtype=k.dtype, device=k.device)  # (N*h, 1, d_h)
            k = torch.cat([k, zeros], dim=1)  # (N*h, S+1, d_h)
            v = torch.cat([v, zeros], dim=1)  # (N*h, S+1, d_h)
            attn_mask = F.pad(attn_mask, (0, 1)) if attn_mask is not None else None
            key_padding_mask = F.pad(key_padding_mask, (0, 1)) if key_padding_mask is not None else None
        src_len = k.shape[1]  # S, counting the appended slots
        # 7. merge the padding mask into the attention mask (float addition: -inf + x = -inf)
        if key_padding_mask is not None:
            kpm = key_padding_mask.view(bsz, 1, 1, src_len).expand(-1, num_heads, -1, -1).reshape(bsz * num_heads, 1, src_len)
            attn_mask = kpm if attn_mask is None else attn_mask + kpm  # (N*h, L or 1, S)
        dropout_p = self.dropout if self.training else 0.0

        if need_weights:
            # 8a. explicit attention: scale q first (as PyTorch does), scores, softmax, dropout, weighted sum
            q_scaled = q * math.sqrt(1.0 / head_dim)  # (N*h, L, d_h)
            if attn_mask is not None:
                scores = torch.baddbmm(attn_mask, q_scaled, k.transpose(-2, -1))  # mask + q k^T: (N*h, L, S)
            else:
                scores = torch.bmm(q_scaled, k.transpose(-2, -1))  # (N*h, L, S)
            weights = F.softmax(scores, dim=-1)  # (N*h, L, S), rows sum to 1
            if dropout_p > 0.0:
                weights = F.dropout(weights, p=dropout_p)  # (N*h, L, S)
            out = torch.bmm(weights, v)  # (N*h, L, d_h)
            out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)  # heads side by side: (L*N, E)
            out = F.linear(out, self.out_proj.weight, self.out_proj.bias).view(tgt_len, bsz, embed_dim)  # (L, N, E)
            weights = weights.view(bsz, num_heads, tgt_len, src_len)  # (N, h, L, S)
            if average_attn_weights:
                weights = weights.mean(dim=1)  # (N, L, S)
            if not is_batched:
                out, weights = out.squeeze(1), weights.squeeze(0)  # (L, E); (L, S) or (h, L, S)
            return out, weights

        # 8b. no weights wanted: the fused kernel on (N, h, L, d_h)
        if attn_mask is not None:
            attn_mask = attn_mask.unsqueeze(0) if attn_mask.size(0) == 1 else attn_mask.view(bsz, num_heads, -1, src_len)
        q = q.view(bsz, num_heads, tgt_len, head_dim)  # (N, h, L, d_h)
        k = k.view(bsz, num_heads, src_len, head_dim)  # (N, h, S, d_h)
        v = v.view(bsz, num_heads, src_len, head_dim)  # (N, h, S, d_h)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)  # (N, h, L, d_h)
        out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)  # (L*N, E)
        out = F.linear(out, self.out_proj.weight, self.out_proj.bias).view(tgt_len, bsz, embed_dim)  # (L, N, E)
        if not is_batched:
            out = out.squeeze(1)  # (L, E)
        return out, None

    def _in_projection(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v, sharing GEMMs like PyTorch.

        With the packed weight, self-attention (``query is key is value``) is ONE matrix product with
        the (3E, E) weight, and encoder-decoder attention (``key is value``) is one for q and one for
        k and v together. The arithmetic is the same; fewer, larger GEMMs are faster.
        """
        E = self.embed_dim
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)  # (E,) each
        if not self._qkv_same_embed_dim:
            return F.linear(query, self.q_proj_weight, b_q), F.linear(key, self.k_proj_weight, b_k), F.linear(value, self.v_proj_weight, b_v)
        w = self.in_proj_weight  # (3E, E) = [W_q; W_k; W_v]
        if query is key and key is value:
            qkv = F.linear(query, w, self.in_proj_bias)  # (L, N, 3E)
            qkv = qkv.unflatten(-1, (3, E)).movedim(-2, 0).contiguous()  # (3, L, N, E)
            return qkv[0], qkv[1], qkv[2]
        w_q, w_k, w_v = w.chunk(3)  # (E, E) each
        if key is value:
            kv_bias = None if self.in_proj_bias is None else self.in_proj_bias[E:]
            kv = F.linear(key, w[E:], kv_bias)  # (S, N, 2E)
            kv = kv.unflatten(-1, (2, E)).movedim(-2, 0).contiguous()  # (2, S, N, E)
            return F.linear(query, w_q, b_q), kv[0], kv[1]
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def _check_inputs(self, query, key, value, key_padding_mask, attn_mask) -> bool:
        """Clear errors for wrong shapes. Returns whether the input is batched."""
        for name, x in (("query", query), ("key", key), ("value", value)):
            if not isinstance(x, Tensor):
                raise TypeError(f"MultiheadAttention: `{name}` must be a tensor, got {type(x).__name__}")
        if query.dim() not in (2, 3):
            raise ValueError(
                f"MultiheadAttention: `query` must be 2-D (L, E) unbatched or 3-D batched, got a {query.dim()}-D tensor of shape {tuple(query.shape)}"
            )
        if key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                f"MultiheadAttention: `query`, `key` and `value` must all be {query.dim()}-D, got {query.dim()}-D, {key.dim()}-D and {value.dim()}-D"
            )
        weight = self.in_proj_weight if self._qkv_same_embed_dim else self.q_proj_weight
        for name, x in (("query", query), ("key", key), ("value", value)):
            if x.dtype != weight.dtype:
                raise TypeError(
                    f"MultiheadAttention: `{name}` must have the dtype of the module's parameters ({weight.dtype}), got {x.dtype}"
                )
        is_batched = query.dim() == 3
        layout = "(N, L, E)" if (is_batched and self.batch_first) else ("(L, N, E)" if is_batched else "(L, E)")
        for name, x, width in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if x.shape[-1] != width:
                arg = {"query": "embed_dim", "key": "kdim", "value": "vdim"}[name]
                raise ValueError(
                    _("MultiheadAttention: `{name}` must have {width} features ({arg}) in its last dimension, got shape {shape}"
                      ).format(name=name, width=width, arg=arg, shape=tuple(x.shape))
                )
        seq = 1 if (is_batched and self.batch_first) else 0
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"MultiheadAttention: `key` and `value` must agree in all but the last dimension, got {tuple(key.shape)} and {tuple(value.shape)}")
        if is_batched and query.shape[1 - seq] != key.shape[1 - seq]:
            raise ValueError(
                f"MultiheadAttention: `query` and `key` must have the same batch size N (layout {layout}), got {tuple(query.shape)} and {tuple(key.shape)}"
            )
        L, S = query.shape[seq], key.shape[seq]
        N = query.shape[1 - seq] if is_batched else None
        if attn_mask is not None:
            if not isinstance(attn_mask, Tensor):
                raise TypeError(f"MultiheadAttention: `attn_mask` must be a tensor or None, got {type(attn_mask).__name__}")
            canonical_mask(attn_mask, "attn_mask", query.dtype)  # its dtype, checked even on a path that drops it
            heads = self.num_heads * (N if is_batched else 1)
            allowed = [(L, S), (heads, L, S)]
            if tuple(attn_mask.shape) not in allowed:
                what = f"(N * num_heads, L, S) = ({N}*{self.num_heads}, {L}, {S})" if is_batched else f"(num_heads, L, S) = ({self.num_heads}, {L}, {S})"
                raise ValueError(
                    f"MultiheadAttention: `attn_mask` must have shape (L, S) = ({L}, {S}) or {what}, got {tuple(attn_mask.shape)}"
                )
        if key_padding_mask is not None:
            if not isinstance(key_padding_mask, Tensor):
                raise TypeError(f"MultiheadAttention: `key_padding_mask` must be a tensor or None, got {type(key_padding_mask).__name__}")
            expected = (N, S) if is_batched else (S,)
            if tuple(key_padding_mask.shape) != expected:
                raise ValueError(
                    f"MultiheadAttention: `key_padding_mask` must have shape {'(N, S)' if is_batched else '(S,)'} = {expected}, got {tuple(key_padding_mask.shape)}"
                )
        return is_batched
