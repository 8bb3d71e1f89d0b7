"""``make bench`` section: ``course_utils.MultiheadAttention`` timed against ``torch.nn.MultiheadAttention``.

Both modules hold the same weights and run the same inputs, in interleaved rounds
(:func:`course_utils.bench.time_side_by_side`); the table shows the ratio ours / PyTorch's
(target: within 1.15x), for forward and forward+backward (training mode, dropout 0), with and
without ``need_weights``. The "inference" rows (eval mode, no grad) are where PyTorch takes its
native fast path (``torch._native_multi_head_attention``) while ours stays on the same Python code.
"""

from __future__ import annotations

import torch
from torch import nn

from ..mha import MultiheadAttention
from . import print_table, time_side_by_side

SHAPES = [  # (N, L, E, heads)
    (8, 256, 256, 8),
    (2, 1024, 256, 8),
]


def _pair(E: int, heads: int, device: torch.device):
    torch.manual_seed(0)
    theirs = nn.MultiheadAttention(E, heads, batch_first=True, device=device)
    ours = MultiheadAttention(E, heads, batch_first=True, device=device)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _step(module: nn.Module, x: torch.Tensor, mask: torch.Tensor, need_weights: bool, kind: str):
    def fn():
        module.train(kind != "inference")
        with torch.set_grad_enabled(kind != "inference"):
            out, w = module(x, x, x, attn_mask=mask, need_weights=need_weights)
        if kind == "forward+backward":
            loss = out.sum() if w is None else out.sum() + w.sum()
            loss.backward()
        return out

    return fn


def run(device: torch.device, repeats: int = 10, warmup: int = 3) -> list[tuple[str, ...]]:
    """Time both modules at each shape; print and return the table rows."""
    rows = []
    for N, L, E, heads in SHAPES:
        ours, theirs = _pair(E, heads, device)
        x = torch.randn(N, L, E, device=device, requires_grad=True)
        mask = torch.ones(L, L, dtype=torch.bool, device=device).triu(1)  # causal, True = blocked
        for kind in ("forward", "forward+backward", "inference"):
            for need_weights in (True, False):
                times = time_side_by_side(
                    {
                        "ours": _step(ours, x, mask, need_weights, kind),
                        "torch": _step(theirs, x, mask, need_weights, kind),
                    },
                    warmup=warmup,
                    repeats=repeats,
                    device=device,
                )
                rows.append(
                    (
                        f"N={N} L={L} E={E} h={heads}",
                        kind,
                        str(need_weights),
                        f"{times['torch'] * 1e3:.2f}",
                        f"{times['ours'] * 1e3:.2f}",
                        f"{times['ours'] / times['torch']:.3f}x",
                    )
                )
    print_table(
        f"MultiheadAttention: course_utils vs torch.nn (device {device}, causal bool mask, batch_first, median of {repeats})",
        rows,
        ("shape", "pass", "need_weights", "torch ms", "ours ms", "ours/torch"),
    )
    return rows


if __name__ == "__main__":
    from ..core import get_device

    run(get_device())
