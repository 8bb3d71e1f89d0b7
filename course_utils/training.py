"""The course's one training loop, with a progress bar.

Notebook 02 writes the loop out by hand; later notebooks call :func:`train`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import nn
from tqdm import tqdm

# A fixed-width bar without the rate: its last state reads the same on every machine once
# tests/nbval_sanitize.cfg masks the [elapsed<remaining, loss=...] part.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def train(
    model: nn.Module,
    get_batch: Callable[[int], tuple],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    desc: str = "training",
    progress: bool = True,
) -> list[float]:
    """Train ``model`` for ``steps`` optimizer steps and return the loss of each step.

    Each step: ``inputs, targets = get_batch(step)``; ``output = model(*inputs)`` when
    ``inputs`` is a tuple, else ``model(inputs)``; ``loss = loss_fn(output, targets)``;
    backward; optimizer step. The model is put in training mode first.

    Args:
        model: the module to train.
        get_batch: step -> ``(inputs, targets)``.
        loss_fn: ``(output, targets) -> scalar loss``.
        optimizer: an optimizer over ``model``'s parameters.
        steps: number of optimizer steps (> 0).
        desc: label of the progress bar.
        progress: show a progress bar (on stdout, so notebooks store only its last state).

    Returns:
        list of ``steps`` floats: the loss at each step.
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"train: `steps` must be a positive int, got {steps!r}")
    model.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, file=sys.stdout, disable=not progress, mininterval=0.5, bar_format=BAR_FORMAT)
    for step in bar:
        inputs, targets = get_batch(step)
        output = model(*inputs) if isinstance(inputs, tuple) else model(inputs)
        loss = loss_fn(output, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    return losses
