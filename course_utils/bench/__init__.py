"""Benchmarks (``make bench``): the course's modules timed side by side with PyTorch's.

Speed is measured here, never asserted in a test. :func:`time_side_by_side` runs the
candidates in interleaved rounds (A, B, A, B, ...) after a warm-up, so drifting machine
load affects them alike, and reports the median time of each.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def time_side_by_side(
    candidates: Mapping[str, Callable[[], Any]],
    *,
    warmup: int = 3,
    repeats: int = 15,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Median wall time in seconds of each zero-argument callable, measured in interleaved rounds.

    Args:
        candidates: name -> callable that does one unit of work.
        warmup: untimed rounds first.
        repeats: timed rounds.
        device: synchronise this CUDA device around each call (ignored on the CPU).

    Returns:
        dict: name -> median seconds.
    """
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    _sync(device)
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    """Print a fixed-width table."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
