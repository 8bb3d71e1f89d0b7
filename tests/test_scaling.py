"""Tests of the measuring code of notebook 07 (course_utils.scaling); speed is never asserted."""

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICES

from course_utils.scaling import (
    TensorMemoryTracker,
    attention_candidates,
    attention_weight_bytes,
    fit_exponent,
    line_colours,
    measure_scaling,
    naive_attention,
    peak_memory,
    plot_scaling,
    ratio_rows,
    robust_exponent,
)


def test_tracker_counts_created_tensors_views_once_and_frees():
    a = torch.randn(100, 100)  # made before tracking: not counted
    with torch.no_grad(), TensorMemoryTracker() as tracker:
        b = a * 2  # 40 000 bytes
        c = b.view(-1)  # a view: no new memory
        d = a[:10]  # a view of an untracked tensor: not counted
        del b, c
        e = a + 1  # b was freed: the peak stays at 40 000
    assert tracker.peak == 40_000 and tracker.current == 40_000
    assert d.shape == (10, 100) and e.shape == (100, 100)


@pytest.mark.parametrize("device", DEVICES)
def test_naive_attention_memory_is_quadratic_and_sdpa_is_not(device):
    peaks_naive, peaks_sdpa = [], []
    lengths = [64, 128, 256]
    for L in lengths:
        q = torch.randn(2, 2, L, 8, device=device)
        with torch.no_grad():
            peaks_naive.append(peak_memory(lambda q=q: naive_attention(q, q, q), device))
            peaks_sdpa.append(peak_memory(lambda q=q: F.scaled_dot_product_attention(q, q, q), device))
        # the scores and the weights are both materialised
        assert peaks_naive[-1] >= 2 * attention_weight_bytes(2, 2, L)
    assert fit_exponent(lengths, peaks_naive) > 1.8
    if device == "cpu":  # the CPU flash kernel works in blocks
        assert fit_exponent(lengths, peaks_sdpa) < 1.2


@pytest.mark.parametrize("causal", [False, True])
def test_naive_attention_matches_sdpa(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, 4, generator=g, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(naive_attention(q, k, v, is_causal=causal), F.scaled_dot_product_attention(q, k, v, is_causal=causal))


def test_weight_bytes():
    assert attention_weight_bytes(2, 4, 128) == 2 * 4 * 128 * 128 * 4
    assert attention_weight_bytes(1, 1, 10, 20, dtype=torch.float16) == 400


def test_fit_exponent():
    assert fit_exponent([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)
    assert fit_exponent([1, 2, 4], [5, 10, 20]) == pytest.approx(1.0)


def test_robust_exponent_is_exact_on_a_power_law_and_ignores_one_outlier():
    lengths = [64, 128, 256, 512, 1024]
    quadratic = [3.0 * L**2 for L in lengths]
    assert robust_exponent(lengths, quadratic) == pytest.approx(2.0)
    assert robust_exponent([10, 20], [5.0, 10.0]) == pytest.approx(1.0)
    for bad in range(len(lengths)):
        disturbed = list(quadratic)
        disturbed[bad] *= 10  # one measurement ten times too slow
        assert robust_exponent(lengths, disturbed) == pytest.approx(2.0)
        if bad != len(lengths) // 2:  # least squares is tilted by any point but the middle one
            assert abs(fit_exponent(lengths, disturbed) - 2.0) > 0.1


def test_robust_exponent_rejects_too_few_points():
    with pytest.raises(ValueError, match="at least two distinct lengths"):
        robust_exponent([8], [1.0])
    with pytest.raises(ValueError, match="one value per length"):
        robust_exponent([8, 16], [1.0])


def test_line_colours_are_all_different_and_never_black():
    colours = line_colours(16)
    assert len(set(colours)) == 16 and "black" not in colours
    with pytest.raises(ValueError, match="at most 16"):
        line_colours(17)


def test_measure_scaling_runs_every_candidate_and_reports_ratios():
    candidates = attention_candidates(16, 2, 32, synthesizers=("dense", "random"))
    assert {"naive attention", "F.scaled_dot_product_attention", "nn.MultiheadAttention", "dense", "random"} <= set(candidates)
    x = torch.randn(1, 32, 16)
    for name, fn in candidates.items():
        out = fn(x)
        out = out[0] if isinstance(out, tuple) else out
        assert out.shape[-2] == 32, name
    result = measure_scaling(candidates, [16, 32], batch=1, embed_dim=16, num_heads=2, warmup=0, repeats=1)
    assert result.lengths == [16, 32]
    assert all(len(v) == 2 and all(t > 0 for t in v) for v in result.seconds.values())
    assert all(len(v) == 2 for v in result.peak_bytes.values())
    rows = ratio_rows(result)
    assert [r[0] for r in rows] == list(candidates)
    assert dict((r[0], r[2]) for r in rows)["nn.MultiheadAttention"] == "1.00x"
    fig = plot_scaling(result)
    assert len(fig.axes) == 2
    for ax in fig.axes:  # one colour per candidate, the same in both panels
        colours = [line.get_color() for line in ax.get_lines() if line.get_label() in candidates]
        assert len(colours) == len(candidates) == len(set(colours))
    assert [line.get_color() for line in fig.axes[0].get_lines()] == [line.get_color() for line in fig.axes[1].get_lines()][: len(candidates)]
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_measure_scaling_shows_a_progress_bar_when_asked(capsys):
    candidates = attention_candidates(8, 2, 16, synthesizers=(), include_course_mha=False, include_mha_weights=False)
    measure_scaling(candidates, [8, 16], batch=1, embed_dim=8, num_heads=2, warmup=0, repeats=1, progress=True)
    assert "lengths: 100%" in capsys.readouterr().out
    measure_scaling(candidates, [8, 16], batch=1, embed_dim=8, num_heads=2, warmup=0, repeats=1)
    assert capsys.readouterr().out == ""
