"""The training loop, its progress bar, the one-thread context, the per-function plot grid and the SDPA switches."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import env
from course_utils.plotting import plot_function_grid
from course_utils.training import one_thread, progress_bar, train


def test_one_thread_sets_one_thread_and_restores_the_count_even_after_an_error():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ZeroDivisionError), one_thread():
        raise ZeroDivisionError("inside the block")
    assert torch.get_num_threads() == before


def test_progress_bar_ends_on_a_fixed_width_line(capsys):
    assert list(progress_bar(range(3), desc="runs")) == [0, 1, 2]
    last = capsys.readouterr().out.split("\r")[-1]
    assert last.startswith("runs: 100%|") and "| 3/3 [" in last
    assert list(progress_bar(range(2), desc="quiet", disable=True)) == [0, 1]
    assert capsys.readouterr().out == ""


def test_train_lowers_the_loss_and_rejects_a_bad_step_count():
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = train(model, lambda step: (x, y), F.cross_entropy, optimizer, steps=30, progress=False)
    assert len(losses) == 30 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="`steps` must be a positive int, got 0"):
        train(model, lambda step: (x, y), F.cross_entropy, optimizer, steps=0)


def test_plot_function_grid_draws_one_panel_per_function_with_f_and_its_derivative():
    fig = plot_function_grid({"relu": torch.relu, "tanh": torch.tanh, "square": torch.square}, ncols=2, ylim=(-1, 4))
    drawn = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in drawn] == ["relu", "tanh", "square"]
    assert all(len(ax.lines) == 2 + 2 for ax in drawn)  # f, f' and the two zero lines
    x, dy = drawn[2].lines[3].get_data()  # the derivative of x**2
    assert torch.allclose(torch.as_tensor(dy), 2 * torch.as_tensor(x), atol=1e-5)
    assert drawn[0].get_ylim() == (-1, 4)


def test_sdpa_backends_on_the_cpu_read_the_switches_that_govern_it():
    assert env.sdpa_backends("cpu") == {"flash (CPU kernel)": True, "math": True}
    torch.backends.cuda.enable_flash_sdp(False)
    try:
        assert env.sdpa_backends("cpu")["flash (CPU kernel)"] is False
        assert env.sdpa_choice("cpu") == "MATH"
    finally:
        torch.backends.cuda.enable_flash_sdp(True)
