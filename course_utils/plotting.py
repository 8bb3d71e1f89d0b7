"""Plotting helpers shared by the notebooks: function curves and attention heatmaps."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .i18n import _


def function_and_derivative(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor):
    """Evaluate ``fn`` and its derivative (from autograd) on the points ``x``.

    Args:
        fn: an element-wise function of a tensor.
        x: 1-D tensor of points.

    Returns:
        (y, dy_dx): two detached 1-D tensors shaped like ``x``.
    """
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    (dy_dx,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), dy_dx.detach()


def plot_functions(
    functions: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor | None = None,
    *,
    derivative: bool = True,
    ax: Axes | Sequence[Axes] | None = None,
    title: str | None = None,
) -> Figure:
    """Line plots of several functions, and of their derivatives beside them.

    Args:
        functions: label -> element-wise function.
        x: 1-D tensor of points (default: 401 points on [-5, 5]).
        derivative: also draw f' (computed with autograd) in a second panel.
        ax: one Axes, or two when ``derivative`` is True (default: a new figure).
        title: figure title.

    Returns:
        The figure drawn on.
    """
    x = torch.linspace(-5, 5, 401) if x is None else x
    if ax is None:
        fig, axes = plt.subplots(1, 2 if derivative else 1, figsize=(9 if derivative else 4.5, 3.2), squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, Sequence) else [ax]
        fig = axes[0].figure
    for label, fn in functions.items():
        y, dy = function_and_derivative(fn, x)
        axes[0].plot(x, y, label=label)
        if derivative:
            axes[1].plot(x, dy, label=label)
    axes[0].set_title("f(x)")
    if derivative:
        axes[1].set_title(_("f'(x) from autograd"))
    for a in axes:
        a.axhline(0, color="0.8", lw=0.8, zorder=0)
        a.axvline(0, color="0.8", lw=0.8, zorder=0)
        a.set_xlabel("x")
        a.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_function_grid(
    functions: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor | None = None,
    *,
    ncols: int = 4,
    ylim: tuple[float, float] | None = None,
    title: str | None = None,
) -> Figure:
    """One small panel per function: f (solid) and its derivative f' from autograd (dashed).

    Curves that would hide each other on one plot (ReLU under LeakyReLU, ReLU6...) each get
    their own panel, on shared axes so that they can still be compared.

    Args:
        functions: label -> element-wise function.
        x: 1-D tensor of points (default: 401 points on [-5, 5]).
        ncols: panels per row.
        ylim: y limits shared by every panel (default: Matplotlib's choice, shared).
        title: figure title.

    Returns:
        The figure.
    """
    x = torch.linspace(-5, 5, 401) if x is None else x
    nrows = -(-len(functions) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.0 * nrows + 0.4), sharex=True, sharey=True,
                             squeeze=False)
    for a, (label, fn) in zip(axes.flat, functions.items()):
        y, dy = function_and_derivative(fn, x)
        a.axhline(0, color="0.8", lw=0.8, zorder=0)
        a.axvline(0, color="0.8", lw=0.8, zorder=0)
        a.plot(x, y, color="C0", label="f(x)")
        a.plot(x, dy, color="C3", ls="--", lw=1.2, label="f'(x)")
        a.set_title(label, fontsize=9)
    for a in list(axes.flat)[len(functions):]:
        a.axis("off")
    if ylim is not None:
        axes[0, 0].set_ylim(*ylim)
    axes[0, 0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attention(
    weights: torch.Tensor,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
    annotate: bool | None = None,
    colorbar: bool = True,
    vmax: float | None = None,
) -> Axes:
    """Heatmap of one attention matrix, queries down the side, keys along the top.

    Args:
        weights: (L, S) tensor; row i holds how much query i attends to each key.
        query_labels: L token labels for the rows.
        key_labels: S token labels for the columns (default: ``query_labels``).
        ax: where to draw (default: a new figure).
        title: axes title.
        annotate: write each weight in its cell (default: when L, S <= 12).
        colorbar: draw a colour bar.
        vmax: top of the colour scale (default: the largest weight); give the same value, e.g. 1.0,
            to heatmaps that are compared with each other.

    Shape:
        - weights: :math:`(L, S)`

    Returns:
        The Axes drawn on.
    """
    weights = torch.as_tensor(weights).detach().float().cpu()
    if weights.dim() != 2:
        raise ValueError(f"plot_attention: `weights` must be 2-D (L, S), got shape {tuple(weights.shape)}")
    L, S = weights.shape
    key_labels = key_labels if key_labels is not None else query_labels
    for name, labels, n in (("query_labels", query_labels, L), ("key_labels", key_labels, S)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"plot_attention: `{name}` has {len(labels)} labels but weights has {n} along that axis")
    if ax is None:
        ax = plt.subplots(figsize=(0.45 * S + 1.8, 0.45 * L + 1.2))[1]
    vmax = max(1e-9, float(weights.max())) if vmax is None else vmax
    image = ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(S), key_labels if key_labels is not None else range(S), rotation=90 if key_labels else 0)
    ax.set_yticks(range(L), query_labels if query_labels is not None else range(L))
    ax.set_xlabel(_("key"))
    ax.set_ylabel(_("query"))
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = L <= 12 and S <= 12
    if annotate:
        threshold = 0.6 * vmax
        for i in range(L):
            for j in range(S):
                w = float(weights[i, j])
                ax.text(j, i, f"{w:.2f}", ha="center", va="center", fontsize=7, color="black" if w > threshold else "white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_attention_heads(
    weights: torch.Tensor,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    ncols: int = 4,
    vmax: float | None = None,
) -> Figure:
    """One heatmap per head, side by side, on one shared colour scale with one colour bar.

    Args:
        weights: (h, L, S) tensor of per-head attention weights.
        query_labels, key_labels: token labels, as for :func:`plot_attention`.
        title: figure title.
        ncols: heads per row.
        vmax: top of the shared colour scale (default: the largest weight of any head).

    Shape:
        - weights: :math:`(h, L, S)`

    Returns:
        The figure.
    """
    weights = torch.as_tensor(weights).detach()
    if weights.dim() != 3:
        raise ValueError(f"plot_attention_heads: `weights` must be 3-D (heads, L, S), got shape {tuple(weights.shape)}")
    h, L, S = weights.shape
    ncols = min(ncols, h)
    nrows = -(-h // ncols)
    vmax = max(1e-9, float(weights.max())) if vmax is None else vmax
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * (0.3 * S + 1.2) + 0.8, nrows * (0.3 * L + 1.2)), squeeze=False)
    for head, ax in enumerate(axes.flat):
        if head < h:
            plot_attention(weights[head], query_labels, key_labels, ax=ax, title=_("head {head}").format(head=head), annotate=False, colorbar=False,
                           vmax=vmax)
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.colorbar(axes.flat[0].images[0], ax=list(axes.flat), fraction=0.02, pad=0.02, label=_("weight"))
    return fig
