"""Tools for looking inside an ``nn.Module``: a shape tracer built on forward hooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .i18n import _, display_width

__all__ = ["ShapeRow", "trace_shapes", "format_shapes"]


@dataclass
class ShapeRow:
    """One call of one module during a traced forward pass.

    Attributes:
        name: the module's qualified name in the model (``""`` for the model itself,
            ``"net.0"`` for the first layer of ``self.net``).
        type: the module's class name.
        depth: how deeply it is nested (0 for the model).
        input_shapes: the shape of each tensor argument (positional, then keyword).
        output_shape: the output's shape (a tuple of shapes for a tuple or list output, a dict
            of shapes for a dict output).
        n_parameters: number of parameters the module holds *itself* (not its children).
    """

    name: str
    type: str
    depth: int
    input_shapes: list
    output_shape: object = None
    n_parameters: int = 0


def format_shapes(value) -> str:
    """``(8, 16)`` for a tensor shape; shapes of a list/tuple joined by commas, of a dict as
    ``key: (8, 16)``; ``-`` for nothing."""
    if value is None:
        return "-"
    if isinstance(value, Mapping):
        return ", ".join(f"{key}: {format_shapes(v)}" for key, v in value.items()) if value else "-"
    if isinstance(value, torch.Size) or (isinstance(value, tuple) and all(isinstance(v, int) for v in value)):
        return "(" + ", ".join(str(int(v)) for v in value) + ")"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_shapes(v) for v in value) if value else "-"
    return type(value).__name__


def _shapes_of(value):
    """Replace every tensor in ``value`` by its shape (a tuple of ints); other leaves by None."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, Mapping):
        return {key: _shapes_of(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_shapes_of(v) for v in value)
    return None


def trace_shapes(model: nn.Module, *inputs, print_table: bool = True, **kwargs) -> list[ShapeRow]:
    """Run ``model(*inputs, **kwargs)`` once and record every module call's input and output shapes.

    A forward *pre*-hook on every module records the calls in the order they start (so a
    container comes before its children), and a forward hook fills in the output shape
    when each call returns. The hooks are removed afterwards, whatever happens.

    Args:
        model: any module.
        *inputs, **kwargs: what to call it with.
        print_table: print a table of module, type, input shapes and output shape.

    Returns:
        list of :class:`ShapeRow`, one per module call, in call order.

    Example::

        >>> rows = trace_shapes(nn.Sequential(nn.Linear(2, 4), nn.ReLU()), torch.zeros(8, 2))
        module    type        input   output   params
        (model)   Sequential  (8, 2)  (8, 4)   0
          0       Linear      (8, 2)  (8, 4)   12
          1       ReLU        (8, 4)  (8, 4)   0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"trace_shapes: `model` must be an nn.Module, got {type(model).__name__}")
    rows: list[ShapeRow] = []
    open_calls: dict[int, list[ShapeRow]] = {}  # id(module) -> rows still waiting for their output
    handles = []

    def make_hooks(name: str, module: nn.Module):
        depth = 0 if name == "" else name.count(".") + 1
        own = sum(p.numel() for p in module.parameters(recurse=False))

        def pre_hook(mod, args, kw):
            shapes = [s for s in _shapes_of(tuple(args) + tuple(kw.values())) if s is not None]
            row = ShapeRow(name, type(mod).__name__, depth, shapes, None, own)
            rows.append(row)
            open_calls.setdefault(id(mod), []).append(row)

        def hook(mod, args, kw, output):
            open_calls[id(mod)].pop().output_shape = _shapes_of(output)

        return pre_hook, hook

    try:
        for name, module in model.named_modules():
            pre_hook, hook = make_hooks(name, module)
            handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(hook, with_kwargs=True))
        model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    if print_table:
        print(shape_table(rows))
    return rows


def shape_table(rows: Sequence[ShapeRow]) -> str:
    """The text table :func:`trace_shapes` prints."""
    header = (_("module"), _("type"), _("input"), _("output"), _("params"))
    model = _("(model)")
    lines = [
        ("  " * row.depth + (row.name or model), row.type, format_shapes(row.input_shapes),
         format_shapes(row.output_shape), str(row.n_parameters))
        for row in rows
    ]  # fmt: skip
    widths = [max(display_width(r[i]) for r in [header, *lines]) for i in range(len(header))]
    text = ["  ".join(cell + " " * (w - display_width(cell)) for cell, w in zip(line, widths)).rstrip() for line in [header, *lines]]
    return "\n".join(text)

