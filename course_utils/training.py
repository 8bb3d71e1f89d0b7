"""The course's one training loop, its progress bar, and a one-thread context for small models.

Notebook 02 writes the loop out by hand; later notebooks call :func:`train`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from tqdm import tqdm

from .i18n import _

# A fixed-width bar without the rate: its last state reads the same on every machine once
# tests/nbval_sanitize.cfg masks the [elapsed<remaining, loss=...] part.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def progress_bar(iterable: Iterable, desc: str, total: int | None = None, *, disable: bool = False) -> tqdm:
    """The course's progress bar around ``iterable``: on stdout, fixed width, at most two updates a second.

    Args:
        iterable: what to loop over.
        desc: the label shown before the bar.
        total: number of items, when ``len(iterable)`` does not give it.
        disable: show nothing.

    Returns:
        a ``tqdm`` iterator; its last state reads the same on every machine once the
        timing part is masked (tests/nbval_sanitize.cfg).
    """
    return tqdm(iterable, desc=desc, total=total, file=sys.stdout, disable=disable, mininterval=0.5,
                bar_format=BAR_FORMAT)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one CPU thread, then restore the previous thread count.

    Small tensors gain nothing from several threads, and on a busy machine the extra threads
    wait for each other: training a small model is faster, and reproducible, on one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train(
    model: nn.Module,
    get_batch: Callable[[int], tuple],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    desc: str | None = None,
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
        desc: label of the progress bar (default: "training", in the course's language).
        progress: show a progress bar (on stdout, so notebooks store only its last state).

    Returns:
        list of ``steps`` floats: the loss at each step.
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"train: `steps` must be a positive int, got {steps!r}")
    model.train()
    losses: list[float] = []
    bar = progress_bar(range(steps), desc=_("training") if desc is None else desc, disable=not progress)
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
