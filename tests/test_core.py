"""get_device, seed_everything, the environment report, plotting and widget helpers."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

import course_utils
from course_utils import env, plotting, widgets


def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert course_utils.get_device() == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert course_utils.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert course_utils.get_device() == torch.device("cpu")


def test_seed_everything_makes_every_generator_repeat():
    import random

    import numpy as np

    def draw():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    course_utils.seed_everything(7)
    first = draw()
    course_utils.seed_everything(7)
    assert draw() == first
    course_utils.seed_everything(8)
    assert draw() != first


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds_by_name(bad):
    with pytest.raises(ValueError, match="`seed` must be a non-negative int"):
        course_utils.seed_everything(bad)


def test_environment_report_says_this_setup_works(capsys):
    report = env.environment_report()
    assert report["torch_pinned"] is True
    assert report["device"] == str(course_utils.get_device())
    assert report["widgets_ok"] is True
    assert report["problems"] == []
    assert "math" in report["sdpa_backends"]
    env.print_environment_report(report)
    assert "Your setup works" in capsys.readouterr().out


def test_environment_report_names_a_wrong_torch(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.1.0+cpu")
    report = env.environment_report()
    assert not report["torch_pinned"]
    assert any("2.1.0" in p and "2.13.0" in p for p in report["problems"])


def test_function_and_derivative_uses_autograd():
    x = torch.linspace(-2, 2, 9)
    y, dy = plotting.function_and_derivative(lambda t: t**3, x)
    assert torch.allclose(y, x**3)
    assert torch.allclose(dy, 3 * x**2)


def test_plot_functions_draws_f_and_its_derivative():
    fig = plotting.plot_functions({"square": lambda t: t**2, "relu": torch.relu})
    f_ax, df_ax = fig.axes
    assert f_ax.get_legend_handles_labels()[1] == ["square", "relu"]
    assert df_ax.get_legend_handles_labels()[1] == ["square", "relu"]
    x, dy = df_ax.get_legend_handles_labels()[0][0].get_data()
    assert abs(float(dy[-1]) - 2 * float(x[-1])) < 1e-5


def test_plot_attention_labels_rows_and_columns():
    weights = torch.softmax(torch.randn(3, 4), dim=-1)
    ax = plotting.plot_attention(weights, ["a", "b", "c"], ["w", "x", "y", "z"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert len(ax.texts) == 12  # annotated cells


def test_plot_attention_errors_name_the_argument():
    with pytest.raises(ValueError, match="`weights` must be 2-D"):
        plotting.plot_attention(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="`query_labels` has 2 labels but weights has 3"):
        plotting.plot_attention(torch.rand(3, 3), ["a", "b"])


def test_plot_attention_heads_one_panel_per_head():
    fig = plotting.plot_attention_heads(torch.rand(3, 4, 4), ncols=2)
    assert sum(1 for ax in fig.axes if ax.images) == 3


def test_explorer_redraws_when_a_control_moves():
    import ipywidgets as W

    calls = []

    def draw(n):
        calls.append(n)
        fig = Figure(figsize=(2, 2))
        fig.subplots().plot([0, 1], [0, n])
        return fig

    slider = W.IntSlider(value=1, min=1, max=3)
    root = widgets.build_explorer(draw, {"n": slider}, "demo")
    output = root.children[-1]
    first = output.outputs[0]["data"]["image/png"]
    slider.value = 3
    assert calls == [1, 3]
    assert output.outputs[0]["data"]["image/png"] != first
    assert widgets.EXPLORER_CLASS in root._dom_classes


def test_display_with_fallback_has_widget_png_and_fixed_text(monkeypatch):
    import ipywidgets as W

    shown = []
    monkeypatch.setattr(widgets, "display", lambda bundle, raw: shown.append(bundle))
    fig = Figure()
    fig.subplots().plot([0, 1])
    widgets.display_with_fallback(W.IntSlider(), fig, "an explorer")
    (bundle,) = shown
    assert bundle["text/plain"] == "an explorer"
    assert bundle["image/png"].startswith("iVBOR")  # base64 of the PNG signature
    assert "application/vnd.jupyter.widget-view+json" in bundle
