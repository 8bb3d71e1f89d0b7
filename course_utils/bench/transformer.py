"""``make bench`` section: ``course_utils.Transformer`` timed against ``torch.nn.Transformer``.

Both models hold the same weights and run the same inputs (causal target mask, padded
sources), in interleaved rounds (:func:`course_utils.bench.time_side_by_side`). The table shows
the ratio ours / PyTorch's (target: within 1.15x) for the training-time forward pass and for
forward+backward. One more row, for information only, times inference (eval + no_grad), where
PyTorch switches to its fused native kernels (``torch._transformer_encoder_layer_fwd``, the
nested-tensor encoder and the native MHA); the course's version never does.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..transformer import Transformer
from . import print_table, time_side_by_side

CONFIGS = [  # (N, S, T, d_model, nhead, layers, dim_feedforward)
    (8, 64, 64, 128, 8, 2, 512),
    (4, 128, 128, 256, 8, 2, 1024),
]


def _pair(d_model: int, nhead: int, layers: int, dim_feedforward: int, device: torch.device):
    torch.manual_seed(0)
    kwargs = dict(d_model=d_model, nhead=nhead, num_encoder_layers=layers, num_decoder_layers=layers,
                  dim_feedforward=dim_feedforward, dropout=0.1, batch_first=True, device=device)
    theirs = nn.Transformer(**kwargs)
    ours = Transformer(**kwargs)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def _inputs(N: int, S: int, T: int, d_model: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    src = torch.randn(N, S, d_model, generator=g).to(device)  # (N, S, E)
    tgt = torch.randn(N, T, d_model, generator=g).to(device)  # (N, T, E)
    lengths = torch.randint(S // 2, S + 1, (N,), generator=g)  # (N,)
    padding = (torch.arange(S)[None, :] >= lengths[:, None]).to(device)  # (N, S), True = padding
    masks = dict(tgt_mask=nn.Transformer.generate_square_subsequent_mask(T, device=device),
                 src_key_padding_mask=padding, memory_key_padding_mask=padding)
    return src, tgt, masks


def _step(model: nn.Module, src, tgt, masks, mode: str):
    if mode == "inference":
        def fn():
            with torch.no_grad():
                return model(src, tgt, **masks)
    elif mode == "forward":
        def fn():
            return model(src, tgt, **masks)
    else:
        def fn():
            out = model(src, tgt, **masks)
            out.sum().backward()
            return out
    return fn


def run(device: torch.device, repeats: int = 10, warmup: int = 3) -> list[tuple[str, ...]]:
    """Time both models on each configuration; print and return the table rows."""
    rows = []
    with warnings.catch_warnings():  # PyTorch's mask-type and nested-tensor notices, on every call
        warnings.simplefilter("ignore", UserWarning)
        for N, S, T, E, h, layers, ff in CONFIGS:
            ours, theirs = _pair(E, h, layers, ff, device)
            src, tgt, masks = _inputs(N, S, T, E, device)
            for mode in ("forward", "forward+backward", "inference"):
                for model in (ours, theirs):
                    model.train(mode != "inference")
                times = time_side_by_side(
                    {"ours": _step(ours, src, tgt, masks, mode), "torch": _step(theirs, src, tgt, masks, mode)},
                    warmup=warmup, repeats=repeats, device=device,
                )
                label = "inference (eval, no_grad; info only)" if mode == "inference" else f"{mode} (train mode)"
                rows.append((
                    f"N={N} S={S} T={T} E={E} h={h} layers={layers}+{layers} ff={ff}",
                    label,
                    f"{times['torch'] * 1e3:.2f}",
                    f"{times['ours'] * 1e3:.2f}",
                    f"{times['ours'] / times['torch']:.3f}x",
                ))
    print_table(
        f"Transformer: course_utils vs torch.nn (device {device}, batch_first, causal tgt_mask + padding, "
        f"dropout 0.1, median of {repeats})",
        rows,
        ("config", "pass", "torch ms", "ours ms", "ours/torch"),
    )
    return rows


if __name__ == "__main__":
    from ..core import get_device

    run(get_device())
