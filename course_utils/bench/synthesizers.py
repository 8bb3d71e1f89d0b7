"""Benchmark section ``synthesizers``: every synthesizer against ``nn.MultiheadAttention``.

One self-attention forward pass (inference, ``torch.no_grad()``) of each layer at several
sequence lengths: median time from :func:`course_utils.bench.time_side_by_side` (interleaved
rounds) and peak memory from :func:`course_utils.scaling.peak_memory`, then the ratios to
``nn.MultiheadAttention`` at the longest length.
"""

from __future__ import annotations

import torch

from ..scaling import attention_candidates, attention_weight_bytes, measure_scaling, ratio_rows, robust_exponent
from . import print_table

BASELINE = "nn.MultiheadAttention"


def run(device: torch.device) -> None:
    device = torch.device(device)
    on_gpu = device.type == "cuda"
    batch, embed_dim, num_heads = (8, 512, 8) if on_gpu else (4, 128, 4)
    lengths = [256, 512, 1024, 2048, 4096] if on_gpu else [128, 256, 512, 1024]
    candidates = attention_candidates(embed_dim, num_heads, max(lengths), device=device)
    result = measure_scaling(
        candidates, lengths, batch=batch, embed_dim=embed_dim, num_heads=num_heads, device=device, warmup=2, repeats=7 if on_gpu else 5
    )
    print(f"\n[synthesizers] self-attention forward, no_grad, N={batch}, E={embed_dim}, h={num_heads}, float32, {device}")
    header = ("layer", *(f"L={L}" for L in lengths), "time slope", "memory slope")
    rows = [
        (name, *(f"{t * 1e3:.2f} ms" for t in result.seconds[name]),
         f"{robust_exponent(lengths, result.seconds[name]):.2f}", f"{robust_exponent(lengths, result.peak_bytes[name]):.2f}")
        for name in result.seconds
    ]
    print_table("median time per forward pass (slopes: median of pairwise log-log slopes, 1 = linear, 2 = quadratic)", rows, header)
    L = lengths[-1]
    print(f"\none (N, h, L, L) float32 weight tensor at L={L}: {attention_weight_bytes(batch, num_heads, L) / 2**20:.1f} MiB")
    print_table(
        f"at L={L}, against {BASELINE} (need_weights=False)",
        ratio_rows(result, baseline=BASELINE),
        ("layer", "time", "time ratio", "peak MiB", "memory ratio"),
    )
