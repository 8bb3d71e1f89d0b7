"""Exercises of notebook 08 (registered on import): the sinusoidal table, applying RoPE, ALiBi's bias."""

from __future__ import annotations

import torch

from ..i18n import N_
from ..positions import alibi_bias, apply_rope, sinusoidal_positions
from . import isolation
from .core import Case, Exercise, Mistake, register


def _forbidding(function, key: str, reference):
    """An ``observe`` that runs the candidate and says whether ``function`` ran, through any name or helper.

    The reference is the only code allowed to call it (it is built on it).
    """

    def observe(candidate, case):
        with isolation.CallRecorder() as calls:
            out = candidate(*case.args, **dict(case.kwargs))
        if calls.called(function) and candidate is not reference:  # the output does not matter then
            return {key: "called"}
        return {key: "not called", N_("output"): out}

    return observe

# --------------------------------------------------------------------------- 08.sinusoidal


def sinusoidal_table(num_positions: int, d_model: int) -> torch.Tensor:
    """Reference for 08.sinusoidal: column 2i = sin(p / 10000^(2i/d)), column 2i+1 = cos of the same.

    Shape:
        - output: :math:`(\\text{num\\_positions}, d_{model})`, float32
    """
    return sinusoidal_positions(num_positions, d_model, dtype=torch.float32)


def _sinusoidal_cases():
    return [
        Case(N_("num_positions=10, d_model=8"), (10, 8)),
        Case(N_("num_positions=7, d_model=6"), (7, 6)),
        Case(N_("num_positions=40, d_model=16"), (40, 16)),
    ]


def _table(num_positions, d_model, *, base=10000.0, swap=False, exponent="2i", halves=False, first=0, multiply=False):
    p = torch.arange(first, first + num_positions, dtype=torch.float64)[:, None]  # (P, 1)
    pair = torch.arange(d_model // 2, dtype=torch.float64)  # (d/2,)
    column = torch.arange(d_model, dtype=torch.float64)  # (d,)
    if exponent == "2i":
        power = base ** (2 * pair / d_model)  # (d/2,)
        sin_arg, cos_arg = (p * power, p * power) if multiply else (p / power, p / power)
    elif exponent == "i":
        power = base ** (pair / d_model)
        sin_arg = cos_arg = p / power
    else:  # "column": each column its own frequency
        sin_arg, cos_arg = p / base ** (column[0::2] / d_model), p / base ** (column[1::2] / d_model)
    first_fn, second_fn = (torch.cos, torch.sin) if swap else (torch.sin, torch.cos)
    table = torch.empty(num_positions, d_model, dtype=torch.float64)
    if halves:
        table[:, : d_model // 2], table[:, d_model // 2 :] = first_fn(sin_arg), second_fn(cos_arg)
    else:
        table[:, 0::2], table[:, 1::2] = first_fn(sin_arg), second_fn(cos_arg)
    return table.float()


register(
    Exercise(
        id="08.sinusoidal",
        title=N_("The sinusoidal position table, from the formula"),
        reference=sinusoidal_table,
        cases=_sinusoidal_cases,
        mistakes=[
            Mistake("sin and cos swapped", N_("you put cos in the even columns and sin in the odd ones: column 2i is the sin, column 2i+1 the cos"),
                    lambda n, d: _table(n, d, swap=True)),
            Mistake("base 1000", N_("your frequencies use base 1000; the paper's wavelengths grow geometrically up to 10000 * 2π: base 10000"),
                    lambda n, d: _table(n, d, base=1000.0)),
            Mistake("exponent per column", N_("every column got its own frequency (exponent j/d for column j); sin and cos of one pair share "
                    "it: both columns 2i and 2i+1 use 10000^(2i/d_model)"), lambda n, d: _table(n, d, exponent="column")),
            Mistake("exponent i/d", N_("your exponent is i/d_model with i the pair number; it is 2i/d_model (the even column's index over d_model)"),
                    lambda n, d: _table(n, d, exponent="i")),
            Mistake("sin and cos halves", N_("you put all the sines in the first half and the cosines in the second; the paper interleaves them: "
                    "sin in column 2i, cos in column 2i+1"), lambda n, d: _table(n, d, halves=True)),
            Mistake("positions from 1", N_("your positions start at 1; the first row is position 0 (sin 0 = 0, cos 0 = 1)"),
                    lambda n, d: _table(n, d, first=1)),
            Mistake("multiplied by the power", N_("you multiplied the position by 10000^(2i/d); divide: the angle is p / 10000^(2i/d_model)"),
                    lambda n, d: _table(n, d, multiply=True)),
        ],
        atol=1e-5,
        rtol=1e-4,
        vectorised=True,  # the prompt: without Python loops
        minutes=10,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 08.rope


def rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Reference for 08.rope: rotate features (2i, 2i+1) at position p by the angle p * 10000^(-2i/d).

    Shape:
        - x: :math:`(..., T, d)`, positions :math:`(T,)`; output like x
    """
    return apply_rope(x, positions)


def _rope_cases():
    g = torch.Generator().manual_seed(8)
    return [
        Case(N_("x of shape (2, 5, 8), positions 0..4"), (torch.randn(2, 5, 8, generator=g), torch.arange(5))),
        Case(N_("x of shape (1, 2, 4, 6) (batch, heads, T, d), positions [3, 7, 8, 20]"),
             (torch.randn(1, 2, 4, 6, generator=g), torch.tensor([3, 7, 8, 20]))),
    ]


def _rope(x, positions, *, base=10000.0, sign=1.0, halves=False, exponent="2i", swap=False, arange=False):
    T, d = x.shape[-2], x.shape[-1]
    if arange:
        positions = torch.arange(T)
    i = torch.arange(d // 2, dtype=torch.float32)
    frequency = base ** (-(2 * i if exponent == "2i" else i) / d)
    angle = positions.float()[:, None] * frequency * sign  # (T, d/2)
    cos, sin = (angle.sin(), angle.cos()) if swap else (angle.cos(), angle.sin())
    if halves:
        a, b = x[..., : d // 2], x[..., d // 2 :]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


register(
    Exercise(
        id="08.rope",
        title=N_("Rotary position embedding: rotate each pair of features by its position"),
        reference=rope,
        cases=_rope_cases,
        observe=_forbidding(apply_rope, N_("the course's apply_rope"), rope),
        mistakes=[
            Mistake("called apply_rope", N_("your code calls the course's apply_rope (directly, through another name or a "
                    "helper); the exercise is to write the rotation yourself"), lambda x, p: apply_rope(x, p)),
            Mistake("rotated backwards", N_("you rotate by -angle (the sin terms have the wrong signs): the pair (a, b) becomes "
                    "(a cos θ - b sin θ, a sin θ + b cos θ)"), lambda x, p: _rope(x, p, sign=-1.0)),
            Mistake("halves paired", N_("you paired feature i with feature i + d/2 (the 'rotate_half' layout of some libraries); this "
                    "exercise pairs neighbours: features 2i and 2i+1"), lambda x, p: _rope(x, p, halves=True)),
            Mistake("exponent i/d", N_("your frequencies are 10000^(-i/d) with i the pair number; they are 10000^(-2i/d)"),
                    lambda x, p: _rope(x, p, exponent="i")),
            Mistake("base 1000", N_("your frequencies use base 1000: RoPE's base is 10000"), lambda x, p: _rope(x, p, base=1000.0)),
            Mistake("cos and sin swapped", N_("you swapped cos and sin in the rotation: at position 0 nothing may change (cos 0 = 1, sin 0 = 0)"),
                    lambda x, p: _rope(x, p, swap=True)),
            Mistake("positions ignored", N_("you rotated by 0..T-1 instead of the `positions` given"), lambda x, p: _rope(x, p, arange=True)),
        ],
        atol=1e-5,
        rtol=1e-4,
        minutes=15,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 08.alibi


def alibi(n_head: int, length: int) -> torch.Tensor:
    """Reference for 08.alibi: the causal ALiBi bias ``-m_h * (i - j)``, ``-inf`` above the diagonal.

    Shape:
        - output: :math:`(n\\_head, L, L)`, float32
    """
    return alibi_bias(n_head, length, causal=True)


def _alibi_cases():
    return [
        Case(N_("n_head=8, length=5"), (8, 5)),
        Case(N_("n_head=4, length=6"), (4, 6)),
        Case(N_("n_head=2, length=3"), (2, 3)),
    ]


def _alibi(n_head, length, *, slopes="paper", sign=-1.0, future="-inf", diagonal_blocked=False):
    h = torch.arange(1, n_head + 1, dtype=torch.float32)
    m = {"paper": 2.0 ** (-8.0 * h / n_head), "from 1": 2.0 ** (-8.0 * (h - 1) / n_head), "eight heads": 2.0 ** (-h)}[slopes]
    i = torch.arange(length)
    distance = (i[:, None] - i[None, :]).float()  # (L, L)
    if future == "abs":
        distance = distance.abs()
    bias = sign * m[:, None, None] * distance
    blocked = torch.ones(length, length, dtype=torch.bool).triu(0 if diagonal_blocked else 1)
    if future in ("-inf", "abs_blocked"):
        bias = bias.masked_fill(blocked, float("-inf"))
    elif future == "0":
        bias = bias.masked_fill(blocked, 0.0)
    return bias


register(
    Exercise(
        id="08.alibi",
        title=N_("ALiBi: a causal additive bias that penalises distance, one slope per head"),
        reference=alibi,
        cases=_alibi_cases,
        observe=_forbidding(alibi_bias, N_("the course's alibi_bias"), alibi),
        mistakes=[
            Mistake("called alibi_bias", N_("your code calls the course's alibi_bias (directly, through another name or a "
                    "helper); the exercise is to build the bias yourself"), lambda n, L: alibi_bias(n, L)),
            Mistake("sign flipped", N_("your bias grows with distance (+m·(i - j)): ALiBi *penalises* far keys, -m·(i - j)"),
                    lambda n, L: _alibi(n, L, sign=1.0)),
            Mistake("slopes from 1", N_("your first head has slope 1: the slopes are 2^(-8h/n) for h = 1..n (8 heads: 1/2, 1/4, ..., 1/256)"),
                    lambda n, L: _alibi(n, L, slopes="from 1")),
            Mistake("slopes of 8 heads", N_("you used 1/2, 1/4, 1/8, ... whatever the number of heads; the ratio depends on n: 2^(-8h/n)"),
                    lambda n, L: _alibi(n, L, slopes="eight heads")),
            Mistake("future 0", N_("the future (j > i) is 0 instead of -inf: adding 0 leaves the future visible"),
                    lambda n, L: _alibi(n, L, future="0")),
            Mistake("future not blocked", N_("above the diagonal your bias is a reward (-m·(i - j) > 0 there) and nothing blocks the future: "
                    "fill j > i with -inf"), lambda n, L: _alibi(n, L, future="none")),
            Mistake("symmetric, not causal", N_("you penalised |i - j| both ways and left the future visible: this is the causal bias, -inf for j > i"),
                    lambda n, L: _alibi(n, L, future="abs")),
            Mistake("diagonal blocked", N_("you also blocked the diagonal (triu(0)): a token must see itself (row 0 would be all -inf)"),
                    lambda n, L: _alibi(n, L, diagonal_blocked=True)),
        ],
        minutes=10,
        difficulty=2,
    )
)
