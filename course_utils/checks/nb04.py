"""Exercises of notebook 04 (registered on import): split the heads, build MultiheadAttention's
additive mask, and write ``multi_head_attention_forward`` itself."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..i18n import N_
from .core import Case, Exercise, Mistake, register

# --------------------------------------------------------------------------- 04.split_heads


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reference for 04.split_heads: (L, N, E) -> (N * num_heads, L, head_dim), batch-major.

    Row ``n * num_heads + h`` of the result holds head ``h`` of sequence ``n``, as in
    ``F.multi_head_attention_forward``.
    """
    L, N, E = x.shape
    return x.reshape(L, N * num_heads, E // num_heads).transpose(0, 1)  # (L, N*h, d_h) -> (N*h, L, d_h)


def _split_cases():
    g = torch.Generator().manual_seed(11)
    return [
        Case(N_("x of shape (3, 5, 8), num_heads=2"), (torch.randn(3, 5, 8, generator=g), 2)),
        Case(N_("x of shape (5, 2, 12), num_heads=3"), (torch.randn(5, 2, 12, generator=g), 3)),
    ]


def _split_head_major(x, num_heads):
    L, N, E = x.shape
    return x.reshape(L, N, num_heads, E // num_heads).permute(2, 1, 0, 3).reshape(num_heads * N, L, E // num_heads)


def _split_reshape_only(x, num_heads):
    L, N, E = x.shape
    return x.reshape(N * num_heads, L, E // num_heads)


def _split_interleaved(x, num_heads):
    L, N, E = x.shape
    d = E // num_heads
    return x.reshape(L, N, d, num_heads).transpose(-1, -2).reshape(L, N * num_heads, d).transpose(0, 1)


def _split_transpose_first(x, num_heads):
    L, N, E = x.shape
    return x.transpose(0, 1).reshape(N * num_heads, L, E // num_heads)


register(
    Exercise(
        id="04.split_heads",
        title=N_("Split (L, N, E) into (N * num_heads, L, head_dim), batch-major"),
        reference=split_heads,
        cases=_split_cases,
        mistakes=[
            Mistake("head-major", N_("your rows are laid out head-major (h * N + n); PyTorch's (N * num_heads) axis is batch-major: "
                    "row n * num_heads + h is head h of sequence n"), _split_head_major),
            Mistake("reshape without transpose", N_("you reshaped (L, N, E) straight to (N * h, L, d_h), which scrambles positions "
                    "and sequences: reshape to (L, N * h, d_h) first, then transpose(0, 1)"), _split_reshape_only),
            Mistake("interleaved features", N_("each head must get a CONTIGUOUS block of head_dim features (head h = features "
                    "h*d_h .. (h+1)*d_h - 1); you split E as (head_dim, num_heads)"), _split_interleaved),
            Mistake("transpose, then reshape", N_("you transposed to (N, L, E) and then reshaped to (N * h, L, d_h): that reshape "
                    "regroups the L * E numbers of a sequence across positions, so a 'head' mixes tokens. Split E first, "
                    "while it is the last axis: reshape to (L, N * h, d_h), then transpose(0, 1)"), _split_transpose_first),
        ],
        minutes=6,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 04.merge_masks


def merge_masks(attn_mask: torch.Tensor, key_padding_mask: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Reference for 04.merge_masks: MultiheadAttention-style boolean masks -> one additive float mask.

    Args:
        attn_mask: (N, L, S) bool, one mask per sequence, True = blocked.
        key_padding_mask: (N, S) bool, True = padding (blocked for every query).
        num_heads: h.

    Returns:
        (N * h, L, S) float32 mask, batch-major, -inf where blocked and 0 elsewhere.
    """
    blocked = attn_mask | key_padding_mask[:, None, :]  # (N, L, S): blocked by either mask
    additive = torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))  # (N, L, S)
    return additive.repeat_interleave(num_heads, dim=0)  # (N*h, L, S), row n*h + head


def _merge_cases():
    g = torch.Generator().manual_seed(13)

    def case(N, L, S, h, label):
        attn = torch.rand(N, L, S, generator=g) > 0.6  # (N, L, S)
        kpm = torch.zeros(N, S, dtype=torch.bool)
        kpm[0, -1] = True  # the first sequence has one padding key
        return Case(label, (attn, kpm, h))

    return [case(2, 3, 4, 5, N_("N=2, L=3, S=4, num_heads=5")), case(3, 2, 5, 4, N_("N=3, L=2, S=5, num_heads=4"))]


def _merge_head_major(attn, kpm, h):
    blocked = attn | kpm[:, None, :]
    return torch.zeros(blocked.shape).masked_fill(blocked, float("-inf")).repeat(h, 1, 1)


def _merge_not_repeated(attn, kpm, h):
    blocked = attn | kpm[:, None, :]
    return torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))  # (N, L, S): one mask per sequence only


def _merge_sdpa_meaning(attn, kpm, h):
    blocked = attn | kpm[:, None, :]
    return torch.zeros(blocked.shape).masked_fill(~blocked, float("-inf")).repeat_interleave(h, dim=0)


def _merge_and(attn, kpm, h):
    blocked = attn & kpm[:, None, :]
    return torch.zeros(blocked.shape).masked_fill(blocked, float("-inf")).repeat_interleave(h, dim=0)


def _merge_zero_one(attn, kpm, h):
    blocked = attn | kpm[:, None, :]
    return blocked.float().repeat_interleave(h, dim=0)


def _merge_no_kpm(attn, kpm, h):
    return torch.zeros(attn.shape).masked_fill(attn, float("-inf")).repeat_interleave(h, dim=0)


def _merge_minus_1e9(attn, kpm, h):
    blocked = attn | kpm[:, None, :]
    return torch.zeros(blocked.shape).masked_fill(blocked, -1e9).repeat_interleave(h, dim=0)


def _merge_bool(attn, kpm, h):
    return (attn | kpm[:, None, :]).repeat_interleave(h, dim=0)


def _merge_padding_on_queries(attn, kpm, h):
    blocked = attn | kpm[:, :, None]
    return torch.zeros(blocked.shape).masked_fill(blocked, float("-inf")).repeat_interleave(h, dim=0)


register(
    Exercise(
        id="04.merge_masks",
        title=N_("Merge an attention mask and a padding mask into MultiheadAttention's (N*h, L, S) float mask"),
        reference=merge_masks,
        cases=_merge_cases,
        mistakes=[
            Mistake("head-major", N_("your (N * h) axis is head-major (.repeat): MultiheadAttention reads row n * num_heads + head, "
                    "so each sequence's mask must be repeated num_heads times in a row (.repeat_interleave(num_heads, dim=0))"),
                    _merge_head_major),
            Mistake("not repeated per head", N_("you returned one (N, L, S) mask per sequence, but MultiheadAttention adds "
                    "the mask to the (N * num_heads, L, S) scores, one row per head: repeat each sequence's mask for every "
                    "head, batch-major (row n * num_heads + head), with .repeat_interleave(num_heads, dim=0)"),
                    _merge_not_repeated),
            Mistake("SDPA meaning", N_("you gave the boolean masks the F.scaled_dot_product_attention meaning (True = attend); in "
                    "MultiheadAttention True means BLOCKED: put -inf where the masks are True"), _merge_sdpa_meaning),
            Mistake("and instead of or", N_("a key is blocked if EITHER mask blocks it: combine with | (or), not & (and)"), _merge_and),
            Mistake("0/1 mask", N_("a float mask is ADDED to the scores, so 1.0 barely changes them: use -inf where blocked, 0 elsewhere"),
                    _merge_zero_one),
            Mistake("padding ignored", N_("the key_padding_mask is missing: padded keys must be blocked for every query "
                    "(key_padding_mask[:, None, :] broadcasts it over L)"), _merge_no_kpm),
            Mistake("-1e9", N_("you filled with -1e9; the module fills with float('-inf'), and they differ where it matters: "
                    "a fully blocked row turns uniform with -1e9 instead of NaN, and a float16 tensor cannot hold -1e9 at all (notebook 03)"),
                    _merge_minus_1e9),
            Mistake("boolean result", N_("you returned the boolean mask; the module adds a FLOAT mask to the scores: "
                    "a float32 tensor with -inf where blocked and 0.0 elsewhere (torch.zeros(...).masked_fill(blocked, "
                    "float('-inf')))"), _merge_bool),
            Mistake("padding along the queries", N_("key_padding_mask (N, S) marks KEYS, the last axis of (N, L, S): view it as "
                    "key_padding_mask[:, None, :] (N, 1, S) so it broadcasts over the queries, not [:, :, None]"),
                    _merge_padding_on_queries),
        ],
        minutes=8,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 04.mha_forward


def mha_forward(query, key, value, num_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, attn_mask=None):
    """Reference for 04.mha_forward: ``F.multi_head_attention_forward`` without the options.

    Args:
        query: (L, N, E); key, value: (S, N, E).
        num_heads: h, dividing E.
        in_proj_weight: (3E, E) = [W_q; W_k; W_v]; in_proj_bias: (3E,).
        out_proj_weight: (E, E); out_proj_bias: (E,).
        attn_mask: None or a bool (L, S) mask, True = blocked (MultiheadAttention's meaning).

    Returns:
        (output (L, N, E), weights (N, h, L, S) per head).
    """
    L, N, E = query.shape
    S = key.shape[0]
    d_h = E // num_heads
    w_q, w_k, w_v = in_proj_weight.chunk(3)  # (E, E) each: rows [W_q; W_k; W_v]
    b_q, b_k, b_v = in_proj_bias.chunk(3)  # (E,) each
    q = F.linear(query, w_q, b_q)  # (L, N, E)
    k = F.linear(key, w_k, b_k)  # (S, N, E)
    v = F.linear(value, w_v, b_v)  # (S, N, E)
    q = q.reshape(L, N * num_heads, d_h).transpose(0, 1)  # (N*h, L, d_h)
    k = k.reshape(S, N * num_heads, d_h).transpose(0, 1)  # (N*h, S, d_h)
    v = v.reshape(S, N * num_heads, d_h).transpose(0, 1)  # (N*h, S, d_h)
    scores = (q * math.sqrt(1.0 / d_h)) @ k.transpose(-2, -1)  # (N*h, L, S), q scaled first
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask, float("-inf"))  # True = blocked
    weights = F.softmax(scores, dim=-1)  # (N*h, L, S)
    out = weights @ v  # (N*h, L, d_h)
    out = out.transpose(0, 1).reshape(L, N, E)  # (L, N, E), heads side by side
    out = F.linear(out, out_proj_weight, out_proj_bias)  # (L, N, E)
    return out, weights.view(N, num_heads, L, S)


def _mha_cases():
    g = torch.Generator().manual_seed(17)

    def params(E):
        return (torch.randn(3 * E, E, generator=g) * E**-0.5, torch.randn(3 * E, generator=g) * 0.5,
                torch.randn(E, E, generator=g) * E**-0.5, torch.randn(E, generator=g) * 0.5)

    # L, N, E, the number of heads and head_dim differ in every case, so that a mixed-up view shows
    x = torch.randn(5, 3, 8, generator=g)  # (L, N, E): 4 heads of 2 features
    mask = torch.ones(5, 5, dtype=torch.bool).triu(1)  # causal, True = blocked
    mem = torch.randn(5, 2, 12, generator=g)  # (S, N, E): 3 heads of 4 features
    tgt = torch.randn(6, 2, 12, generator=g)  # (L, N, E)
    cross_mask = torch.rand(6, 5, generator=g) > 0.6
    cross_mask[:, 0] = False
    return [
        Case(N_("self-attention, L=5, N=3, E=8, 4 heads, no mask"), (x, x, x, 4, *params(8))),
        Case(N_("self-attention, L=5, N=3, E=8, 4 heads, causal mask"), (x, x, x, 4, *params(8)), {"attn_mask": mask}),
        Case(N_("cross-attention L=6, S=5, N=2, E=12, 3 heads, a random mask"), (tgt, mem, mem, 3, *params(12)), {"attn_mask": cross_mask}),
    ]


def _mha_variant(*, sdpa_mask=False, scale_e=False, no_scale=False, head_major=False, no_out_proj=False,
                 merge_no_transpose=False, query_as_key=False, softmax_dim=-1, no_in_bias=False, no_out_bias=False):
    def forward(query, key, value, num_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, attn_mask=None):
        L, N, E = query.shape
        S = key.shape[0]
        d_h = E // num_heads
        w_q, w_k, w_v = in_proj_weight.chunk(3)
        b_q, b_k, b_v = (None, None, None) if no_in_bias else in_proj_bias.chunk(3)
        if query_as_key:
            key = value = query
            S = L
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)
        split = _split_head_major if head_major else split_heads
        q, k, v = split(q, num_heads), split(k, num_heads), split(v, num_heads)
        scale = 1.0 if no_scale else math.sqrt(1.0 / (E if scale_e else d_h))
        scores = (q * scale) @ k.transpose(-2, -1)
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask if sdpa_mask else attn_mask, float("-inf"))
        weights = F.softmax(scores, dim=softmax_dim)
        out = weights @ v
        if merge_no_transpose:
            out = out.reshape(L, N, E)  # (N*h, L, d_h) read as (L, N, E): scrambled
        else:
            out = out.transpose(0, 1).reshape(L, N, E)  # merged batch-major, as it should be
        weights = weights.view(N, num_heads, L, S)
        if not no_out_proj:
            out = F.linear(out, out_proj_weight, None if no_out_bias else out_proj_bias)
        return out, weights

    return forward


register(
    Exercise(
        id="04.mha_forward",
        title=N_("multi_head_attention_forward, step by step"),
        reference=mha_forward,
        cases=_mha_cases,
        mistakes=[
            Mistake("scaled by E", N_("you scaled by sqrt(E); each head's dot product sums head_dim = E // num_heads terms, so scale by "
                    "sqrt(1 / head_dim)"), _mha_variant(scale_e=True)),
            Mistake("not scaled", N_("the scores are not scaled: multiply q by sqrt(1 / head_dim) before the product "
                    "(head_dim = E // num_heads)"), _mha_variant(no_scale=True)),
            Mistake("softmax over the wrong dim", N_("your softmax normalises over the queries (dim=-2); each query's weights over "
                    "the S keys must sum to 1: softmax over the last dim, dim=-1"), _mha_variant(softmax_dim=-2)),
            Mistake("in-projection biases missing", N_("your q, k and v leave out the in-projection biases: add "
                    "in_proj_bias.chunk(3) (b_q, b_k, b_v) in the three projections"), _mha_variant(no_in_bias=True)),
            Mistake("output bias missing", N_("the output projection leaves out its bias: F.linear(out, out_proj_weight, "
                    "out_proj_bias)"), _mha_variant(no_out_bias=True)),
            Mistake("no out_proj", N_("the output projection is missing: finish with F.linear(out, out_proj_weight, out_proj_bias)"),
                    _mha_variant(no_out_proj=True)),
            Mistake("bool mask with the SDPA meaning", N_("you read the boolean attn_mask as True = attend (F.scaled_dot_product_attention's "
                    "meaning); in MultiheadAttention True means BLOCKED"), _mha_variant(sdpa_mask=True)),
            Mistake("head-major", N_("you split the heads head-major (row h * N + n) but PyTorch's (N * h) axis, and the merge "
                    "back to (L, N, E), are batch-major (row n * num_heads + h): reshape to (L, N * h, d_h), then transpose(0, 1)"),
                    _mha_variant(head_major=True)),
            Mistake("query used as key and value", N_("your code attends from the query to ITSELF: project the `key` input with "
                    "W_k and the `value` input with W_v; in cross-attention they have their own length S"),
                    _mha_variant(query_as_key=True)),
            Mistake("merged without transposing", N_("the weights are right but the heads are merged wrongly: (N * h, L, d_h) "
                    "must go back to (L, N * h, d_h) with transpose(0, 1) BEFORE the reshape to (L, N, E)"),
                    _mha_variant(merge_no_transpose=True)),
        ],
        atol=1e-5,
        rtol=1e-4,
        minutes=20,
        difficulty=3,
    )
)
