"""course_utils.MultiheadAttention against torch.nn.MultiheadAttention, option by option.

The sweep loads PyTorch's (randomised) state_dict into ours and compares outputs, weights and
gradients over the cross-product of: batch_first x bias x add_bias_kv x add_zero_attn x
{self, encoder-decoder, distinct key/value, kdim/vdim} x 11 mask kinds x
{weights averaged, weights per head, no weights} x {batched, unbatched} x {train, eval, eval+no_grad}
in float64 (12,672 configurations), and a third of them again in float32 (4,224).

PyTorch 2.13 disagrees with itself in two places (reference section 2.7); both are handled
explicitly below, never by loosening a tolerance:

1. ``is_causal=True`` + ``add_bias_kv``/``add_zero_attn`` + ``need_weights=False`` + no padding mask:
   PyTorch's SDPA path hides the appended slot, its mask path does not. Ours uses the mask; the
   test compares with PyTorch given the same mask without the hint (the same SDPA kernel) and
   asserts that the quirk is still there.
2. Fully masked query rows: NaN on PyTorch's explicit and native fast paths, 0 on its SDPA path.
   Tested on their own in ``test_fully_masked_rows``; the sweep's masks leave key 0 visible.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import nn

from course_utils import MultiheadAttention

E, H, KDIM, VDIM = 12, 2, 5, 7  # head_dim 6: sqrt(1/6) is inexact, so the scaling order shows
L, S, N = 4, 5, 3
KINDS = ["self", "encdec", "distinct", "kvdim"]
MASKS = ["none", "bool2d", "float2d", "bool3d", "float3d", "bool_kpm", "float_kpm", "both_bool", "both_float", "causal", "causal_kpm"]
WEIGHTS = [(True, True), (True, False), (False, True)]  # (need_weights, average_attn_weights)
MODES = ["train", "eval", "eval_nograd"]
TOL = {torch.float64: dict(atol=1e-12, rtol=1e-10), torch.float32: dict(atol=1e-6, rtol=1e-5)}

COUNT = {"configurations": 0}


def randomise(module: nn.Module, seed: int) -> None:
    """Random values for every parameter, biases included (the default zero biases hide bias bugs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.5)


def make_pair(dtype, seed=0, **options):
    theirs = nn.MultiheadAttention(E, H, **options).to(dtype)
    randomise(theirs, seed)
    ours = MultiheadAttention(E, H, **options).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return ours, theirs


def make_inputs(kind, batched, batch_first, dtype, seed):
    """query, key, value with the identities (`is`) that each kind needs."""
    g = torch.Generator().manual_seed(seed)

    def rnd(length, width):
        shape = ((N, length, width) if batch_first else (length, N, width)) if batched else (length, width)
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)

    if kind == "self":
        x = rnd(L, E)
        return x, x, x, L
    if kind == "encdec":
        q, kv = rnd(L, E), rnd(S, E)
        return q, kv, kv, S
    if kind == "distinct":
        return rnd(L, E), rnd(S, E), rnd(S, E), S
    return rnd(L, E), rnd(S, KDIM), rnd(S, VDIM), S


def make_masks(mask_kind, batched, src_len, dtype, seed):
    """(attn_mask, key_padding_mask, is_causal). Key 0 always stays visible: no fully masked rows."""
    g = torch.Generator().manual_seed(seed + 1)
    n = N if batched else 1
    lead = (n * H,) if True else ()

    def bool_mask(*shape):
        m = torch.rand(shape, generator=g) > 0.6
        m[..., 0] = False  # key 0 visible for every query
        return m

    def as_float(m):
        values = torch.randn(m.shape, generator=g, dtype=torch.float64).to(dtype)
        return values.masked_fill(m, float("-inf"))

    kpm_bool = torch.zeros(n, src_len, dtype=torch.bool)
    kpm_bool[:, -1] = True  # pad the last key of every sequence
    kpm_bool[0, -2] = True  # and one more in the first
    kpm_bool = kpm_bool if batched else kpm_bool[0]
    causal = torch.ones(L, src_len, dtype=torch.bool).triu(1)  # True above the diagonal = blocked
    attn, kpm, is_causal = None, None, False
    if mask_kind == "bool2d":
        attn = bool_mask(L, src_len)
    elif mask_kind == "float2d":
        attn = as_float(bool_mask(L, src_len))
    elif mask_kind == "bool3d":
        attn = bool_mask(*lead, L, src_len)
    elif mask_kind == "float3d":
        attn = as_float(bool_mask(*lead, L, src_len))
    elif mask_kind == "bool_kpm":
        kpm = kpm_bool
    elif mask_kind == "float_kpm":
        kpm = as_float(kpm_bool)
    elif mask_kind == "both_bool":
        attn, kpm = bool_mask(L, src_len), kpm_bool
    elif mask_kind == "both_float":
        attn, kpm = as_float(bool_mask(*lead, L, src_len)), as_float(kpm_bool)
    elif mask_kind == "causal":
        attn, is_causal = causal, True
    elif mask_kind == "causal_kpm":
        attn, kpm, is_causal = causal, kpm_bool, True
    return attn, kpm, is_causal


def run(module, inputs, masks, need_weights, average, grad_outputs):
    """Forward, and (when grad is enabled) the gradients of a random projection of the outputs."""
    q, k, v = inputs
    attn, kpm, is_causal = masks
    params = [p for _, p in sorted(module.named_parameters())]
    leaves = list({id(t): t for t in (q, k, v)}.values())
    out, weights = module(q, k, v, key_padding_mask=kpm, need_weights=need_weights, attn_mask=attn,
                          average_attn_weights=average, is_causal=is_causal)
    result = {"out": out.detach(), "weights": None if weights is None else weights.detach(), "stride": out.stride()}
    if torch.is_grad_enabled() and module.training:  # (with dropout 0, eval's gradients are train's: skipped for speed)
        go, gw = grad_outputs
        loss = (out * go[: out.numel()].reshape(out.shape)).sum()
        if weights is not None:
            loss = loss + (weights * gw[: weights.numel()].reshape(weights.shape)).sum()
        grads = torch.autograd.grad(loss, leaves + params)
        result["grads"] = grads
    return result


def assert_same(ours, theirs, tol, where):
    if "train" in where:  # the layout decides a following dropout's mask; PyTorch's native fast path (eval) returns (N, L, E) contiguous
        assert ours["stride"] == theirs["stride"], f"{where}: output strides {ours['stride']} vs {theirs['stride']}"
    torch.testing.assert_close(ours["out"], theirs["out"], **tol, msg=lambda m: f"{where}: output\n{m}")
    if theirs["weights"] is None:
        assert ours["weights"] is None, f"{where}: weights should be None"
    else:
        torch.testing.assert_close(ours["weights"], theirs["weights"], **tol, msg=lambda m: f"{where}: weights\n{m}")
    if "grads" in theirs:
        for i, (a, b) in enumerate(zip(ours["grads"], theirs["grads"])):
            torch.testing.assert_close(a, b, **tol, msg=lambda m, i=i: f"{where}: gradient {i}\n{m}")


def module_configs():
    """Every combination of the four constructor switches, each with one input kind: the kinds take
    turns so that each meets each switch both on and off (a 16-row design instead of all 64 rows,
    which tested each switch's interaction with the input kind four times over)."""
    combos = list(itertools.product([False, True], repeat=4))  # batch_first, bias, add_bias_kv, add_zero_attn
    return [(*combo, KINDS[(index + index // 4) % len(KINDS)]) for index, combo in enumerate(combos)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch_first,bias,add_bias_kv,add_zero_attn,kind", module_configs())
def test_parity_sweep(batch_first, bias, add_bias_kv, add_zero_attn, kind, dtype):
    options = dict(batch_first=batch_first, bias=bias, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn)
    if kind == "kvdim":
        options.update(kdim=KDIM, vdim=VDIM)
    ours, theirs = make_pair(dtype, seed=7, **options)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    g = torch.Generator().manual_seed(11)
    grad_outputs = (torch.randn(N * L * E, generator=g, dtype=torch.float64).to(dtype),
                    torch.randn(N * H * L * S + 2 * N * H * L, generator=g, dtype=torch.float64).to(dtype))
    for seed, (mask_kind, (need_weights, average), batched, mode) in enumerate(inner_configs(dtype)):
        where = f"{options} kind={kind} mask={mask_kind} need_weights={need_weights} average={average} batched={batched} mode={mode} {dtype}"
        q, k, v, src_len = make_inputs(kind, batched, batch_first, dtype, seed)
        if mode != "eval_nograd":
            for t in (q, k, v):
                t.requires_grad_(True)
        masks = make_masks(mask_kind, batched, src_len, dtype, seed)
        for m in (ours, theirs):
            m.train(mode == "train")
        quirk_causal_slot = masks[2] and masks[1] is None and not need_weights and (add_bias_kv or add_zero_attn)
        with torch.set_grad_enabled(mode != "eval_nograd"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch's deprecation warning for bool kpm + float attn mask
            got = run(ours, (q, k, v), masks, need_weights, average, grad_outputs)
            expected = run(theirs, (q, k, v), masks, need_weights, average, grad_outputs)
            if quirk_causal_slot:
                # Quirk 1: the reference is PyTorch on the same (SDPA) path given the same mask without
                # the hint, which is what its need_weights=True path computes too.
                without_hint = run(theirs, (q, k, v), (masks[0], None, False), need_weights, average, grad_outputs)
                assert not torch.allclose(without_hint["out"], expected["out"]), (
                    f"{where}: PyTorch no longer hides the bias/zero slot under is_causal; drop this special case"
                )
                expected = without_hint
        assert_same(got, expected, TOL[dtype], where)
        COUNT["configurations"] += 1


def inner_configs(dtype):
    """Per module: every mask kind x weights x batched x mode in float64; float32 (tolerance 1e-6)
    covers batched input with averaged and no weights, to keep the file fast."""
    if dtype == torch.float64:
        return list(itertools.product(MASKS, WEIGHTS, [True, False], MODES))
    return list(itertools.product(MASKS, [WEIGHTS[0], WEIGHTS[2]], [True], MODES))


def test_sweep_size():
    """The sweep's size, for the record."""
    configs = module_configs()
    for switch in range(4):  # every kind meets every switch on and off
        assert {(c[switch], c[4]) for c in configs} == {(on, kind) for on in (False, True) for kind in KINDS}
    total = len(configs) * (len(inner_configs(torch.float64)) + len(inner_configs(torch.float32)))
    assert total == 16 * (198 + 66) == 4224
    print(f"\nMHA parity sweep: {total} configurations ({COUNT['configurations']} run in this session)")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
def test_dropout_same_seed_same_result(batch_first, need_weights):
    """Training with dropout: the same seed draws the same dropout mask (needs the same memory layout)."""
    ours, theirs = make_pair(torch.float32, seed=3, dropout=0.3, batch_first=batch_first)
    x = torch.randn(N, L, E) if batch_first else torch.randn(L, N, E)
    mask = nn.Transformer.generate_square_subsequent_mask(L)
    results = []
    for m in (theirs, ours):
        torch.manual_seed(123)
        out, w = m(x, x, x, attn_mask=mask, need_weights=need_weights)
        follow = nn.functional.dropout(out, 0.5)  # a later dropout samples in memory order
        results.append((out, w, follow))
    torch.testing.assert_close(results[1][0], results[0][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(results[1][2], results[0][2], atol=1e-6, rtol=1e-5)
    if need_weights:
        torch.testing.assert_close(results[1][1], results[0][1], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("batch_first", [False, True])
def test_fully_masked_rows(batch_first):
    """Quirk 2: a sequence whose keys are all padded. PyTorch: NaN (explicit, fast path) or 0 (SDPA)."""
    ours, theirs = make_pair(torch.float32, seed=5, batch_first=batch_first)
    x = torch.randn(N, L, E) if batch_first else torch.randn(L, N, E)
    kpm = torch.zeros(N, L, dtype=torch.bool)
    kpm[1] = True  # sequence 1: every key is padding
    ours.eval(), theirs.eval()
    rows = (slice(None), 1) if not batch_first else (1,)
    # explicit path: both NaN on the dead sequence, equal elsewhere
    a, wa = ours(x, x, x, key_padding_mask=kpm)
    b, wb = theirs(x, x, x, key_padding_mask=kpm)
    torch.testing.assert_close(a, b, equal_nan=True)
    torch.testing.assert_close(wa, wb, equal_nan=True)
    assert a[rows].isnan().all() and wa[1].isnan().all()
    # SDPA path with grad enabled: both give out_proj.bias on the dead sequence
    a, _ = ours(x, x, x, key_padding_mask=kpm, need_weights=False)
    b, _ = theirs(x, x, x, key_padding_mask=kpm, need_weights=False)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a[rows], ours.out_proj.bias.detach().expand_as(a[rows]))
    # no_grad: PyTorch's native fast path (batch_first only) gives NaN; ours stays on the SDPA answer
    with torch.no_grad():
        a, _ = ours(x, x, x, key_padding_mask=kpm, need_weights=False)
        b, _ = theirs(x, x, x, key_padding_mask=kpm, need_weights=False)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            c, _ = theirs(x, x, x, key_padding_mask=kpm, need_weights=False)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    torch.testing.assert_close(a, c)
    if batch_first:
        assert b[rows].isnan().all(), "PyTorch's fast path no longer gives NaN here: update the docstring of MultiheadAttention"
        torch.testing.assert_close(a[0], b[0])
    else:
        torch.testing.assert_close(a, b)


def test_same_initialisation_under_the_same_seed():
    for options in [{}, {"kdim": KDIM, "vdim": VDIM}, {"add_bias_kv": True, "bias": True}, {"bias": False}]:
        torch.manual_seed(0)
        theirs = nn.MultiheadAttention(E, H, **options)
        torch.manual_seed(0)
        ours = MultiheadAttention(E, H, **options)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), name
        assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]


def test_unbatched_3d_mask_and_kpm():
    ours, theirs = make_pair(torch.float64, seed=9)
    x = torch.randn(L, E, dtype=torch.float64)
    attn = torch.rand(H, L, L) > 0.5
    attn[..., 0] = False
    kpm = torch.tensor([False, False, False, True])
    for need_weights in (True, False):
        a = ours(x, x, x, attn_mask=attn, key_padding_mask=kpm, need_weights=need_weights, average_attn_weights=False)
        b = theirs(x, x, x, attn_mask=attn, key_padding_mask=kpm, need_weights=need_weights, average_attn_weights=False)
        torch.testing.assert_close(a[0], b[0])
        if need_weights:
            assert a[1].shape == (H, L, L)
            torch.testing.assert_close(a[1], b[1])


def test_3d_mask_is_batch_major():
    """Row n*h + head of a (N*h, L, S) mask belongs to batch n, head `head`."""
    ours, _ = make_pair(torch.float64, seed=1)
    x = torch.randn(L, N, E, dtype=torch.float64)
    mask = torch.zeros(N * H, L, L, dtype=torch.bool)
    mask[1 * H + 0, :, 1:] = True  # batch 1, head 0: attend to key 0 only
    _, w = ours(x, x, x, attn_mask=mask, average_attn_weights=False)  # (N, h, L, S)
    assert torch.allclose(w[1, 0, :, 0], torch.ones(L, dtype=torch.float64))
    assert (w[0, 0, :, 1:] > 0).all() and (w[1, 1, :, 1:] > 0).all()


def test_errors_are_clear():
    with pytest.raises(ValueError, match=r"embed_dim=2 is not divisible by num_heads=4.*1, 2"):
        MultiheadAttention(2, 4)
    with pytest.raises(ValueError, match="greater than 0"):
        MultiheadAttention(8, 0)
    m = MultiheadAttention(8, 2)
    x = torch.randn(4, 3, 8)
    with pytest.raises(ValueError, match=r"`query` must have 8 features \(embed_dim\)"):
        m(torch.randn(4, 3, 6), x, x)
    with pytest.raises(ValueError, match=r"`attn_mask` must have shape \(L, S\) = \(4, 4\) or \(N \* num_heads, L, S\)"):
        m(x, x, x, attn_mask=torch.zeros(3, 4, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool.*or floating point"):
        m(x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`key_padding_mask` must have shape \(N, S\) = \(3, 4\)"):
        m(x, x, x, key_padding_mask=torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        m(x, x, x, is_causal=True)
    with pytest.raises(ValueError, match="2-D"):
        m(torch.randn(1, 4, 3, 8), x, x)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))])
@pytest.mark.parametrize("need_weights", [True, False])
def test_parity_on_device(device, need_weights):
    ours, theirs = make_pair(torch.float32, seed=2, batch_first=True)
    ours, theirs = ours.to(device), theirs.to(device)
    x = torch.randn(N, L, E, device=device)
    mask = torch.ones(L, L, dtype=torch.bool, device=device).triu(1)
    kpm = torch.zeros(N, L, dtype=torch.bool, device=device)
    kpm[:, -1] = True
    a = ours(x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=need_weights)
    b = theirs(x, x, x, attn_mask=mask, key_padding_mask=kpm, need_weights=need_weights)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-4)
    if need_weights:
        torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=1e-4)
