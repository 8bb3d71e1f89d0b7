"""Interactive explorers that also work where widgets do not.

Every explorer is shown as ONE output with three representations: the live widget
(JupyterLab with ipywidgets), a static PNG of a few settings (GitHub, nbviewer, the
HTML handouts, a browser without the widget extension) and a fixed line of text (what
nbval compares). Figures are redrawn by replacing the ``Output`` widget's outputs, which
travels as widget state rather than as cell output, so stored outputs stay stable.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence

import ipywidgets as W
import matplotlib.image as mpimg
from IPython.display import Image, display
from matplotlib.figure import Figure

from .i18n import _

EXPLORER_CLASS = "course-explorer"  # the browser tests find explorers by this CSS class


def figure_to_png(fig: Figure) -> str:
    """Render a Matplotlib figure to a base64 PNG string."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def display_with_fallback(widget: W.Widget, fallback: Figure, text: str) -> None:
    """Display ``widget`` with a static image and a text line as fallbacks.

    Args:
        widget: the live widget.
        fallback: a figure shown wherever the widget cannot render.
        text: the plain-text representation (stable, so nbval can compare it).
    """
    bundle = widget._repr_mimebundle_()
    bundle["image/png"] = figure_to_png(fallback)
    bundle["text/plain"] = text
    display(bundle, raw=True)


def explorer(
    draw: Callable[..., Figure],
    controls: Mapping[str, W.ValueWidget],
    fallback_settings: Sequence[Mapping[str, object]],
    title: str,
) -> None:
    """Display an interactive explorer with a static fallback.

    Args:
        draw, controls, title: as for :func:`build_explorer`.
        fallback_settings: a few settings drawn one under the other in the static
            image; each is a full mapping of keyword -> value.
    """
    root = build_explorer(draw, controls, title)
    display_with_fallback(root, _small_multiples(draw, fallback_settings, title), _("Interactive explorer: {title}").format(title=title))


def build_explorer(draw: Callable[..., Figure], controls: Mapping[str, W.ValueWidget], title: str) -> W.VBox:
    """Build (without displaying) an explorer: controls above a figure that redraws.

    Args:
        draw: ``draw(**values) -> Figure``; must build a ``matplotlib.figure.Figure``
            (not ``pyplot``) so nothing leaks into the cell output.
        controls: keyword -> widget; their values are passed to ``draw``. Prefer
            ``IntSlider``, ``SelectionSlider`` and ``Dropdown`` (float sliders echo
            rounding errors back to the kernel).
        title: one line saying what the explorer shows.

    Returns:
        The explorer's root widget, tagged with the CSS class ``course-explorer``.
    """
    output = W.Output()

    def redraw(_change=None) -> None:
        fig = draw(**{name: control.value for name, control in controls.items()})
        output.outputs = ()
        output.append_display_data(Image(data=base64.b64decode(figure_to_png(fig)), format="png"))

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    root = W.VBox([W.HTML(f"<b>{title}</b>"), W.HBox(list(controls.values())), output])
    root.add_class(EXPLORER_CLASS)
    return root


def _small_multiples(draw: Callable[..., Figure], settings: Sequence[Mapping[str, object]], title: str) -> Figure:
    """Draw ``settings`` one under the other in a single static figure."""
    images = [draw(**setting) for setting in settings]
    pngs = [mpimg.imread(io.BytesIO(base64.b64decode(figure_to_png(fig))), format="png") for fig in images]
    width = max(png.shape[1] for png in pngs) / 80
    height = sum(png.shape[0] for png in pngs) / 80
    combined = Figure(figsize=(width, height + 0.4))
    combined.suptitle(_("{title} (static view: run the notebook to interact)").format(title=title), fontsize=9)
    axes = combined.subplots(len(pngs), 1, squeeze=False)[:, 0]
    for ax, png, setting in zip(axes, pngs, settings):
        ax.imshow(png)
        ax.set_axis_off()
        ax.set_title(", ".join(f"{k}={v}" for k, v in setting.items()), fontsize=8)
    return combined
