"""Exercises of notebook 00: a warm-up that shows how checks work."""

import torch

from ..i18n import N_
from .core import Case, Exercise, Mistake, register


def center(x: torch.Tensor) -> torch.Tensor:
    """Subtract the mean of each row of ``x`` (reference for exercise 00.center).

    Shape:
        - x: :math:`(*, N)`; output: the same shape.
    """
    return x - x.mean(dim=-1, keepdim=True)


def _cases():
    g = torch.Generator().manual_seed(0)
    return [
        Case(N_("a 1-D tensor of 5 values"), (torch.randn(5, generator=g),)),
        Case(N_("a (3, 4) tensor"), (torch.randn(3, 4, generator=g) * 3 + 1,)),
        Case(N_("a (2, 3, 6) float64 tensor"), (torch.randn(2, 3, 6, generator=g, dtype=torch.float64),)),
    ]


register(
    Exercise(
        id="00.center",
        title=N_("Center each row of a tensor"),
        reference=center,
        cases=_cases,
        mistakes=[
            Mistake("global mean", N_("you subtracted the mean of the whole tensor; take the mean of each row (dim=-1)"),
                    lambda x: x - x.mean()),
            Mistake("mean over dim 0", N_("you took the mean over dim 0 (columns); rows are the last dimension, dim=-1"),
                    lambda x: x - x.mean(dim=0, keepdim=True)),
            Mistake("no keepdim", N_("the row means lost their dimension: use keepdim=True so they broadcast along each row"),
                    lambda x: x - x.mean(dim=-1)),
            Mistake("returned the mean", N_("you returned the row means; subtract them from x"),
                    lambda x: x.mean(dim=-1, keepdim=True)),
        ],
        minutes=3,
        difficulty=1,
    )
)
