"""Exercises of notebook 10: generating fast (registered on import): the cache update, its size, GQA's repeat, a mask_mod,
cached generation."""

from __future__ import annotations

import warnings

import torch

from ..attention_toolbox import sliding_window
from ..gpt import GPT
from ..i18n import N_
from ..kv_cache import KVCache, kv_cache_bytes, repeat_kv
from .core import Case, Exercise, Mistake, register

# --------------------------------------------------------------------------- 10.append_to_cache


def append_to_cache(past: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    """Reference for 10.append_to_cache: the cached keys (or values) followed by the new ones, along time.

    Shape:
        - past: :math:`(B, H_{kv}, T_{past}, D)` or None (nothing cached yet);
          new: :math:`(B, H_{kv}, T_{new}, D)`; output: :math:`(B, H_{kv}, T_{past} + T_{new}, D)`
    """
    if past is None:
        return new
    return torch.cat([past, new], dim=2)  # (B, H_kv, T_past + T_new, D)


def _append_cases():
    g = torch.Generator().manual_seed(10)
    return [
        Case(N_("one decoding step: past (2, 3, 4, 5), new (2, 3, 1, 5)"), (torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 1, 5, generator=g))),
        Case(N_("the first call (the prompt): past None, new (2, 3, 4, 5)"), (None, torch.randn(2, 3, 4, 5, generator=g))),
        Case(N_("two new tokens: past (1, 3, 5, 4), new (1, 3, 2, 4), float64"),
             (torch.randn(1, 3, 5, 4, generator=g, dtype=torch.float64), torch.randn(1, 3, 2, 4, generator=g, dtype=torch.float64))),
    ]


def _append_overwrite(past, new):
    return new


def _append_new_first(past, new):
    return new if past is None else torch.cat([new, past], dim=2)


def _append_heads(past, new):
    return new if past is None else torch.cat([past, new], dim=1)


def _append_batch(past, new):
    return new if past is None else torch.cat([past, new], dim=0)


def _append_features(past, new):
    return new if past is None else torch.cat([past, new], dim=3)


def _append_no_first_step(past, new):
    return torch.cat([past, new], dim=2)


register(
    Exercise(
        id="10.append_to_cache",
        title=N_("Append the new keys (or values) to the cache"),
        reference=append_to_cache,
        cases=_append_cases,
        mistakes=[
            Mistake("overwrote the cache", N_("you returned only the new keys: the cache forgot every earlier token. "
                    "Concatenate the past and the new ones: torch.cat([past, new], dim=2)"), _append_overwrite),
            Mistake("new before past", N_("you put the new keys BEFORE the cached ones; positions must stay in order, oldest first: "
                    "torch.cat([past, new], dim=2)"), _append_new_first),
            Mistake("appended along the heads", N_("you concatenated along dim 1, the heads; the cache grows along time, dim 2 "
                    "of (B, H_kv, T, D)"), _append_heads),
            Mistake("appended along the batch", N_("you concatenated along dim 0, the batch; the cache grows along time, dim 2 "
                    "of (B, H_kv, T, D)"), _append_batch),
            Mistake("appended along the features", N_("you concatenated along the last dim, the features; the cache grows along "
                    "time, dim 2 of (B, H_kv, T, D)"), _append_features),
            Mistake("no first step", N_("on the first call nothing is cached yet (past is None): return `new` itself then"),
                    _append_no_first_step),
        ],
        minutes=5,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 10.cache_bytes


def _bytes_cases():
    return [
        Case(N_("n_layer=2, n_kv_head=3, head_dim=5, seq_len=7, batch=11, float32"), (2, 3, 5, 7, 11)),
        Case(N_("n_layer=12, n_kv_head=12, head_dim=64, seq_len=1024, batch=1, float16"), (12, 12, 64, 1024, 1), {"dtype": torch.float16}),
        Case(N_("n_layer=3, n_kv_head=1, head_dim=4, seq_len=10, batch=13, float64"), (3, 1, 4, 10, 13), {"dtype": torch.float64}),
    ]


def _size(dtype):
    return torch.empty((), dtype=dtype).element_size()


register(
    Exercise(
        id="10.cache_bytes",
        title=N_("The size of a KV cache in bytes"),
        reference=kv_cache_bytes,
        cases=_bytes_cases,
        mistakes=[
            Mistake("keys only", N_("you counted only the keys: the cache holds keys AND values (the factor 2)"),
                    lambda n_layer, n_kv_head, head_dim, seq_len, batch=1, dtype=torch.float32: n_layer * n_kv_head * head_dim * seq_len * batch * _size(dtype)),
            Mistake("numbers, not bytes", N_("you counted numbers, not bytes: multiply by the dtype's size (torch.empty((), dtype=dtype).element_size())"),
                    lambda n_layer, n_kv_head, head_dim, seq_len, batch=1, dtype=torch.float32: n_layer * 2 * n_kv_head * head_dim * seq_len * batch),
            Mistake("always 4 bytes", N_("you assumed 4 bytes per number; use the dtype's size (torch.empty((), dtype=dtype).element_size())"),
                    lambda n_layer, n_kv_head, head_dim, seq_len, batch=1, dtype=torch.float32: n_layer * 2 * n_kv_head * head_dim * seq_len * batch * 4),
            Mistake("one layer", N_("you counted one layer: every layer caches its own keys and values"),
                    lambda n_layer, n_kv_head, head_dim, seq_len, batch=1, dtype=torch.float32: 2 * n_kv_head * head_dim * seq_len * batch * _size(dtype)),
            Mistake("one sequence", N_("you forgot the batch: every sequence has its own cache"),
                    lambda n_layer, n_kv_head, head_dim, seq_len, batch=1, dtype=torch.float32: n_layer * 2 * n_kv_head * head_dim * seq_len * _size(dtype)),
        ],
        minutes=4,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 10.repeat_kv


def _repeat_cases():
    g = torch.Generator().manual_seed(11)
    return [
        Case(N_("3 key/value heads for 6 query heads: x (4, 3, 5, 6), n_rep=2"), (torch.randn(4, 3, 5, 6, generator=g), 2)),
        Case(N_("multi-query: x (1, 1, 5, 2), n_rep=4"), (torch.randn(1, 1, 5, 2, generator=g), 4)),
        Case(N_("2 key/value heads for 8 query heads, float64: x (1, 2, 5, 3), n_rep=4"), (torch.randn(1, 2, 5, 3, generator=g, dtype=torch.float64), 4)),
    ]


register(
    Exercise(
        id="10.repeat_kv",
        title=N_("Repeat each key/value head for its group of query heads"),
        reference=repeat_kv,
        cases=_repeat_cases,
        mistakes=[
            Mistake("tiled instead of grouped", N_("you tiled the heads (x.repeat: kv heads 0, 1, 0, 1, ...), so query head h used kv "
                    "head h % H_kv; each kv head serves a block of n_rep NEIGHBOURING query heads (0, 0, 1, 1, ...): "
                    "x.repeat_interleave(n_rep, dim=1)"), lambda x, n_rep: x.repeat(1, n_rep, 1, 1)),
            Mistake("repeated along time", N_("you repeated along dim 2, time; repeat the heads, dim 1 of (B, H_kv, T, D)"),
                    lambda x, n_rep: x.repeat_interleave(n_rep, dim=2)),
            Mistake("repeated along the features", N_("you repeated along the last dim, the features; repeat the heads, dim 1 of (B, H_kv, T, D)"),
                    lambda x, n_rep: x.repeat_interleave(n_rep, dim=3)),
            Mistake("expanded without reshaping", N_("you inserted a group axis and expanded it, but left it there: merge it with the "
                    "heads, (B, H_kv, n_rep, T, D) -> (B, H_kv * n_rep, T, D)"),
                    lambda x, n_rep: x[:, :, None].expand(-1, -1, n_rep, -1, -1)),
            Mistake("not repeated", N_("x came back unchanged: each of the H_kv heads must appear n_rep times"), lambda x, n_rep: x),
        ],
        minutes=8,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 10.sliding_window


def _mask_of(factory, case):
    from torch.nn.attention.flex_attention import create_mask

    length, window = case.args
    mask_mod = factory(window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_mask(mask_mod, None, None, length, length, device="cpu")[0, 0]  # (L, L), what flex_attention would see


def _window_cases():
    return [
        Case(N_("L=7, window=3"), (7, 3)),
        Case(N_("L=5, window=1 (each token sees only itself)"), (5, 1)),
        Case(N_("L=4, window=6 (longer than the sequence: plain causal)"), (4, 6)),
    ]


def _window_off_by_one(window):
    return lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) & (q_idx - kv_idx <= window)


def _window_both_sides(window):
    return lambda b, h, q_idx, kv_idx: (q_idx - kv_idx).abs() < window


def _window_reversed(window):
    return lambda b, h, q_idx, kv_idx: (kv_idx >= q_idx) & (kv_idx - q_idx < window)


def _window_ignored(window):
    return lambda b, h, q_idx, kv_idx: q_idx >= kv_idx


def _window_not_causal(window):
    return lambda b, h, q_idx, kv_idx: q_idx - kv_idx < window


def _window_python_and(window):
    return lambda b, h, q_idx, kv_idx: (q_idx >= kv_idx) and (q_idx - kv_idx < window)


register(
    Exercise(
        id="10.sliding_window",
        title=N_("A FlexAttention mask_mod for causal sliding-window attention"),
        reference=sliding_window,
        cases=_window_cases,
        observe=_mask_of,
        mistakes=[
            Mistake("off by one", N_("each query sees window + 1 keys: with <= the window counts itself AND `window` earlier keys; "
                    "query i must see keys i - window + 1 .. i, so q_idx - kv_idx < window"), _window_off_by_one),
            Mistake("both sides", N_("your window reaches into the FUTURE (|q_idx - kv_idx| < window): add the causal condition "
                    "q_idx >= kv_idx"), _window_both_sides),
            Mistake("causal reversed", N_("your mask lets each query see the keys AFTER it (kv_idx >= q_idx): causal is "
                    "q_idx >= kv_idx"), _window_reversed),
            Mistake("window ignored", N_("this is plain causal attention: also require q_idx - kv_idx < window"), _window_ignored),
            Mistake("not causal", N_("keys after the query pass your test (q_idx - kv_idx is negative, so < window): add "
                    "q_idx >= kv_idx"), _window_not_causal),
            Mistake("Python `and`", N_("FlexAttention runs your mask_mod on tensors of indices (through torch.vmap), where Python's "
                    "`and`, `or` and `if` cannot decide: combine the conditions with the tensor operators & and |"),
                    _window_python_and),
        ],
        minutes=8,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 10.cached_generate


def cached_generate(model, idx: torch.Tensor, max_new_tokens: int) -> tuple[torch.Tensor, KVCache]:
    """Reference for 10.cached_generate: greedy generation that feeds the prompt once, then one token per step.

    Returns the prompt followed by the new tokens, and the filled cache.

    Shape:
        - idx: :math:`(B, T)`; output: :math:`(B, T + \\text{max\\_new\\_tokens})` and a cache of
          :math:`(B, H_{kv}, T + \\text{max\\_new\\_tokens} - 1, D)` keys and values per layer
    """
    cache = KVCache(model.n_layer)
    logits, _ = model(idx, cache=cache)  # (B, T, V): the whole prompt, once
    for step in range(max_new_tokens):
        next_token = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1): the last position's best token
        idx = torch.cat([idx, next_token], dim=1)  # (B, T + step + 1)
        if step < max_new_tokens - 1:
            logits, _ = model(next_token, cache=cache)  # (B, 1, V): only the new token
    return idx, cache


def _generate_cases():
    g = torch.Generator().manual_seed(13)
    return [
        Case(N_("a prompt of shape (2, 3), 5 new tokens, 2 layers, 4 heads of which 2 key/value heads"),
             (dict(vocab_size=11, n_embd=16, n_head=4, n_kv_head=2, n_layer=2), torch.randint(0, 11, (2, 3), generator=g), 5)),
        Case(N_("a prompt of shape (3, 6), 4 new tokens, 1 layer, 2 heads"),
             (dict(vocab_size=13, n_embd=8, n_head=2, n_layer=1), torch.randint(0, 13, (3, 6), generator=g), 4)),
        Case(N_("a prompt of shape (1, 4), 1 new token, 3 layers, 2 heads"),
             (dict(vocab_size=7, n_embd=12, n_head=2, n_layer=3), torch.randint(0, 7, (1, 4), generator=g), 1)),
    ]


FED_KEY = N_("tokens fed to the model, over all calls")
CACHE_KEY = N_("the returned cache's keys, per layer")


def _observe_generate(candidate, case):
    """The tokens; how many tokens the model was fed in all (the cache's point); and the shapes the cache holds."""
    config, idx, max_new_tokens = case.args
    torch.manual_seed(len(config) + idx.numel())
    model = GPT(block_size=16, positions="rope", **config).eval()  # block_size above every case's final length
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # sharper logits: no near-ties for argmax to break differently
    fed = []
    model.register_forward_pre_hook(lambda module, args, kwargs: fed.append(int(args[0].shape[1])), with_kwargs=True)
    with torch.no_grad():
        result = candidate(model, idx, max_new_tokens)
    tokens, cache = result if isinstance(result, tuple) and len(result) == 2 else (result, None)
    keys = [tuple(k.shape) if isinstance(k, torch.Tensor) else None for k in getattr(cache, "keys", [])] if cache is not None else None
    return {N_("tokens"): tokens, FED_KEY: sum(fed), CACHE_KEY: keys}


def _recompute(model, idx, max_new_tokens):
    for _ in range(max_new_tokens):
        logits, _ = model(idx)  # (B, T, V): the whole sequence again
        idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
    return idx, KVCache(model.n_layer)


def _fresh_cache_each_step(model, idx, max_new_tokens):
    logits, _ = model(idx, cache=KVCache(model.n_layer))
    cache = KVCache(model.n_layer)
    for step in range(max_new_tokens):
        next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_token], dim=1)
        if step < max_new_tokens - 1:
            cache = KVCache(model.n_layer)
            logits, _ = model(next_token, cache=cache)
    return idx, cache


def _first_position(model, idx, max_new_tokens):
    cache = KVCache(model.n_layer)
    logits, _ = model(idx, cache=cache)
    for step in range(max_new_tokens):
        next_token = logits[:, 0].argmax(dim=-1, keepdim=True)  # position 0 of the prompt's logits
        idx = torch.cat([idx, next_token], dim=1)
        if step < max_new_tokens - 1:
            logits, _ = model(next_token, cache=cache)
    return idx, cache


def _one_extra_step(model, idx, max_new_tokens):
    cache = KVCache(model.n_layer)
    logits, _ = model(idx, cache=cache)
    for _ in range(max_new_tokens):
        next_token = logits[:, -1].argmax(dim=-1, keepdim=True)
        idx = torch.cat([idx, next_token], dim=1)
        logits, _ = model(next_token, cache=cache)  # also after the last token: one forward pass for nothing
    return idx, cache


def _feeds_everything_to_the_cache(model, idx, max_new_tokens):
    cache = KVCache(model.n_layer)
    logits, _ = model(idx, cache=cache)
    for step in range(max_new_tokens):
        idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
        if step < max_new_tokens - 1:
            logits, _ = model(idx[:, -2:], cache=cache)  # the previous token again: it is cached twice
    return idx, cache


register(
    Exercise(
        id="10.cached_generate",
        title=N_("Greedy generation with a KV cache, equal to recomputing everything"),
        reference=cached_generate,
        cases=_generate_cases,
        observe=_observe_generate,
        mistakes=[
            Mistake("recomputed", N_("your tokens are right, but you fed the whole sequence to the model at every step: feed the "
                    "prompt once with cache=cache, then only the one new token per step"), _recompute),
            Mistake("fresh cache each step", N_("you created a new KVCache inside the loop, so each new token sees only itself "
                    "(at position 0): create one cache before the prompt and pass the same one to every call"),
                    _fresh_cache_each_step),
            Mistake("first position", N_("you took the next token from position 0 of the logits: the prediction for the next "
                    "token is at the LAST position, logits[:, -1]"), _first_position),
            Mistake("one extra step", N_("your tokens are right, but after the last new token you ran the model once more: the "
                    "cache holds one position too many, and that call is wasted"), _one_extra_step),
            Mistake("fed a token twice", N_("you fed the previous token again with each new one (idx[:, -2:]): it is already in "
                    "the cache, so it is cached twice and shifts every later position; feed only the new token"),
                    _feeds_everything_to_the_cache),
        ],
        atol=1e-6,
        minutes=20,
        difficulty=3,
    )
)
