"""``make bench`` section: generating with the KV cache against recomputing the whole context (notebook 10).

:func:`time_generation` times ``GPT.generate(..., use_cache=True)`` and ``use_cache=False`` side by
side (interleaved rounds after a warm-up, medians; greedy, so no random draws) for several
numbers of new tokens. The table reports both times and the speed-up recompute / cache, which
grows with the length: each recomputing step runs the whole context, each cached step one token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..gpt import GPT
from . import print_table, time_side_by_side

MODELS = {  # name -> GPT keyword arguments (an untrained model times the same as a trained one)
    "learned positions": dict(positions="learned"),
}


def time_generation(model: GPT, new_tokens: Sequence[int], *, prompt_length: int = 1, batch: int = 1,
                    warmup: int = 1, repeats: int = 3) -> dict[str, list[float]]:
    """Median seconds of ``model.generate`` with and without the KV cache, for each number of new tokens.

    Args:
        model: the GPT to time (its parameters' device is used).
        new_tokens: the numbers of tokens to generate, each at most ``block_size - prompt_length``.
        prompt_length: tokens in the (fixed, all-zero) prompt.
        batch: sequences generated at once.
        warmup, repeats: untimed and timed rounds of :func:`course_utils.bench.time_side_by_side`.

    Returns:
        ``{"recompute": [seconds per length], "cache": [seconds per length]}``.
    """
    device = next(model.parameters()).device
    too_long = [n for n in new_tokens if prompt_length + n > model.block_size]
    if too_long:
        raise ValueError(f"time_generation: `new_tokens` {too_long} do not fit after a prompt of {prompt_length} "
                         f"in block_size={model.block_size}")
    prompt = torch.zeros(batch, prompt_length, dtype=torch.long, device=device)  # (B, T0)
    seconds: dict[str, list[float]] = {"recompute": [], "cache": []}
    for n in new_tokens:
        times = time_side_by_side(
            {
                "recompute": lambda n=n: model.generate(prompt, n, temperature=0, use_cache=False),
                "cache": lambda n=n: model.generate(prompt, n, temperature=0, use_cache=True),
            },
            warmup=warmup,
            repeats=repeats,
            device=device,
        )
        for name in seconds:
            seconds[name].append(times[name])
    return seconds


def run(device: torch.device, repeats: int = 3, warmup: int = 1) -> list[tuple[str, ...]]:
    """Time cached and uncached generation at several lengths; print and return the table rows."""
    on_gpu = device.type == "cuda"
    block_size, n_embd, n_layer = (2048, 512, 8) if on_gpu else (256, 128, 2)
    lengths = [128, 256, 512, 1024, 2047] if on_gpu else [32, 64, 128, 255]
    threads = torch.get_num_threads()
    if not on_gpu:
        torch.set_num_threads(1)  # one token at a time is too little work to share between threads
    rows = []
    try:
        for name, options in MODELS.items():
            torch.manual_seed(0)
            model = GPT(100, block_size, n_embd, n_head=4, n_layer=n_layer, **options).to(device).eval()
            seconds = time_generation(model, lengths, warmup=warmup, repeats=repeats)
            for n, slow, fast in zip(lengths, seconds["recompute"], seconds["cache"]):
                rows.append((name, str(n), f"{slow * 1e3:.1f}", f"{fast * 1e3:.1f}", f"{slow / fast:.1f}x"))
    finally:
        torch.set_num_threads(threads)
    print_table(
        f"GPT.generate: recompute vs KV cache (device {device}, n_embd={n_embd}, n_layer={n_layer}, batch 1, greedy, "
        f"{torch.get_num_threads() if on_gpu else 1} CPU thread(s), median of {repeats})",
        rows,
        ("model", "new tokens", "recompute ms", "cache ms", "speed-up"),
    )
    return rows
