"""course_utils.module_tools.trace_shapes: rows, order, table, and that no hook is left behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from course_utils import trace_shapes
from course_utils.module_tools import format_shapes, shape_table


class Shared(nn.Module):
    """Calls the same layer twice and returns a tuple."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.head = nn.Sequential(nn.Linear(4, 6), nn.GELU())

    def forward(self, x, scale=1.0):
        h = self.proj(self.proj(x)) * scale  # (B, 4)
        return self.head(h), h.sum(-1)  # (B, 6), (B,)


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_rows_follow_call_order_with_shapes_and_parameters(capsys):
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Sequential(nn.Linear(16, 3), nn.Tanh()))
    rows = trace_shapes(model, torch.zeros(8, 2))
    assert [r.name for r in rows] == ["", "0", "1", "2", "2.0", "2.1"]
    assert [r.depth for r in rows] == [0, 1, 1, 1, 2, 2]
    assert [r.type for r in rows] == ["Sequential", "Linear", "ReLU", "Sequential", "Linear", "Tanh"]
    assert rows[0].input_shapes == [(8, 2)] and rows[0].output_shape == (8, 3)
    assert rows[1].output_shape == (8, 16) and rows[4].input_shapes == [(8, 16)]
    assert [r.n_parameters for r in rows] == [0, 2 * 16 + 16, 0, 0, 16 * 3 + 3, 0]
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["module", "type", "input", "output", "params"]
    assert "(model)" in out and "(8, 16)" in out and "    2.0" in out


def test_repeated_calls_kwargs_and_tuple_outputs():
    model = Shared()
    before = hook_count(model)
    rows = trace_shapes(model, torch.zeros(3, 4), print_table=False, scale=torch.tensor(2.0))
    assert [r.name for r in rows] == ["", "proj", "proj", "head", "head.0", "head.1"]
    assert rows[0].input_shapes == [(3, 4), ()]  # the keyword tensor too
    assert rows[0].output_shape == ((3, 6), (3,))
    assert format_shapes(rows[0].output_shape) == "(3, 6), (3)"
    assert hook_count(model) == before  # hooks removed


def test_hooks_are_removed_even_when_forward_raises():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1))
    with pytest.raises(RuntimeError):
        trace_shapes(model, torch.zeros(5, 2), print_table=False)
    assert hook_count(model) == 0


def test_table_is_aligned_and_input_checked():
    rows = trace_shapes(nn.Linear(3, 2), torch.zeros(1, 3), print_table=False)
    lines = shape_table(rows).splitlines()
    assert len(lines) == 2 and lines[1].split() == ["(model)", "Linear", "(1,", "3)", "(1,", "2)", "8"]
    assert lines[0].index("type") == lines[1].index("Linear")
    with pytest.raises(TypeError, match="nn.Module"):
        trace_shapes(lambda x: x, torch.zeros(1))
