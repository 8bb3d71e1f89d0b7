"""GPT.from_gpt2 against Hugging Face's GPT2LMHeadModel: small models with random weights, built and saved here (no download)."""

import json
import pickle

import pytest
import torch
from torch import nn

from course_utils.gpt import GPT

transformers = pytest.importorskip("transformers", reason="the test-only requirements (make test installs requirements-test.txt)")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

# Two shapes of GPT-2: one deep (4 blocks, 6 heads of 8, GPT-2's tanh GELU), one shallow and wide-headed
# (2 blocks, 2 heads of 16) whose config.json asks for the exact GELU.
CONFIGS = {
    "deep": dict(vocab_size=97, n_positions=40, n_embd=48, n_layer=4, n_head=6),
    "exact_gelu": dict(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=2, activation_function="gelu"),
}


def hf_gpt2(name: str, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT-2 with random weights, biases and layer-norm parameters (none left at its initial value)."""
    config = GPT2Config(**CONFIGS[name], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name_, p in model.named_parameters():
            if name_.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.uniform_(0.5, 1.5)  # layer-norm gains around 1
            else:
                p.normal_(0.0, 0.2 if p.dim() == 1 else 0.08)  # biases and weights alike
    return model


@pytest.fixture(scope="module", params=list(CONFIGS))
def saved(request, tmp_path_factory):
    """(name, Hugging Face model, the folder it was saved to with save_pretrained)."""
    model = hf_gpt2(request.param)
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)  # model.safetensors + config.json
    assert (folder / "model.safetensors").is_file()
    return request.param, model, folder


def tokens(name: str, B: int, T: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, CONFIGS[name]["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


# --- loading: the configuration, the ways in ----------------------------------------------------------------------


def test_the_configuration_is_read_from_the_weights_and_config_json(saved):
    name, hf, folder = saved
    ours = GPT.from_gpt2(folder)
    c = CONFIGS[name]
    assert (ours.vocab_size, ours.block_size, ours.n_embd, ours.n_head, ours.n_layer) == (
        c["vocab_size"], c["n_positions"], c["n_embd"], c["n_head"], c["n_layer"])
    assert ours.bias is True and ours.positions == "learned"
    assert ours.activation == ("gelu" if c.get("activation_function") == "gelu" else "gelu_tanh")
    assert ours.lm_head.weight is ours.token_embedding.weight  # still tied
    assert not ours.training
    assert all(m.eps == hf.config.layer_norm_epsilon == 1e-5 for m in ours.modules() if isinstance(m, nn.LayerNorm))
    assert sum(p.numel() for p in ours.parameters()) == hf.num_parameters()


def test_the_file_the_folder_and_the_state_dicts_load_alike(saved):
    name, hf, folder = saved
    n_head = CONFIGS[name]["n_head"]
    reference = GPT.from_gpt2(folder).state_dict()
    state = hf.state_dict()  # "transformer." prefixes and the lm_head key
    bare = {k.removeprefix("transformer."): v for k, v in state.items() if k != "lm_head.weight"}
    with_buffers = bare | {f"h.{n}.attn.bias": torch.ones(1, 1, 4, 4).tril() for n in range(CONFIGS[name]["n_layer"])} \
                        | {"h.0.attn.masked_bias": torch.tensor(-1e4)}  # the mask buffers of older checkpoints
    torch.save(bare, folder / "weights.bin")
    for source, kwargs in [(folder / "model.safetensors", {}), (str(folder), {}), (folder / "weights.bin", {}),
                           (state, {"n_head": n_head}), (bare, {"n_head": n_head}), (with_buffers, {"n_head": n_head})]:
        loaded = GPT.from_gpt2(source, **kwargs).state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference), source if not isinstance(source, dict) else "a state dict"


def test_loading_leaves_the_random_number_generator_untouched(saved):
    _, _, folder = saved
    before = torch.get_rng_state()
    GPT.from_gpt2(folder)
    assert torch.equal(torch.get_rng_state(), before)


def test_gpt2_small_has_gpt2s_parameter_count():
    with torch.device("meta"):
        ours = GPT(50257, 1024, 768, 12, 12, bias=True, activation="gelu_tanh")
        theirs = GPT2LMHeadModel(GPT2Config())
    assert sum(p.numel() for p in ours.parameters()) == theirs.num_parameters() == 124_439_808


# --- the same function: logits, loss, cached greedy decoding -------------------------------------------------------


def test_logits_agree_in_float32(saved):
    name, hf, folder = saved
    ours = GPT.from_gpt2(folder)
    idx = tokens(name, 3, CONFIGS[name]["n_positions"])
    with torch.no_grad():
        expected = hf(idx).logits  # (B, T, V)
        logits, _ = ours(idx)
    assert expected.abs().max() > 1.0  # logits big enough for a wrong weight to show
    assert (logits - expected).abs().max().item() < 1e-5


def test_logits_agree_in_float64(saved):
    name, hf, folder = saved
    ours = GPT.from_gpt2(folder).double()
    hf64 = GPT2LMHeadModel(hf.config).double().eval()
    hf64.load_state_dict(hf.state_dict())
    idx = tokens(name, 2, CONFIGS[name]["n_positions"], seed=2)
    with torch.no_grad():
        assert (ours(idx)[0] - hf64(idx).logits).abs().max().item() < 1e-12


def test_the_loss_agrees(saved):
    name, hf, folder = saved
    ours = GPT.from_gpt2(folder)
    idx = tokens(name, 4, 12, seed=3)
    with torch.no_grad():
        expected = hf(idx, labels=idx).loss  # Hugging Face shifts the labels itself
        _, loss = ours(idx[:, :-1], targets=idx[:, 1:])  # the course passes the next tokens
    assert abs(loss.item() - expected.item()) < 1e-5


def test_cached_greedy_generation_gives_hugging_faces_tokens(saved):
    name, hf, folder = saved
    ours = GPT.from_gpt2(folder)
    prompt = tokens(name, 2, 5, seed=4)
    new = CONFIGS[name]["n_positions"] - 5  # up to the last position Hugging Face accepts
    cached = ours.generate(prompt, new, temperature=0, use_cache=True)
    uncached = ours.generate(prompt, new, temperature=0, use_cache=False)
    expected = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, min_new_tokens=new,
                           do_sample=False, pad_token_id=0)
    assert cached.shape == (2, CONFIGS[name]["n_positions"])
    assert torch.equal(cached, expected)
    assert torch.equal(uncached, expected)


# --- defaults unchanged -------------------------------------------------------------------------------------------


def test_the_defaults_keep_the_course_model():
    torch.manual_seed(0)
    default = GPT(13, 8, 16, 4, 2)
    torch.manual_seed(0)
    explicit = GPT(13, 8, 16, 4, 2, bias=False, activation="gelu")
    assert not any(k.endswith(("query.bias", "key.bias", "value.bias")) for k in default.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), explicit.state_dict().values(), strict=True))
    assert default.blocks[0].mlp[1].approximate == "none"
    gpt2_like = GPT(13, 8, 16, 4, 2, bias=True, activation="gelu_tanh")
    assert gpt2_like.blocks[0].mlp[1].approximate == "tanh"
    assert set(gpt2_like.state_dict()) - set(default.state_dict()) == {
        f"blocks.{n}.attn.{p}.bias" for n in range(2) for p in ("query", "key", "value")}
    assert all(torch.all(b == 0) for k, b in gpt2_like.state_dict().items() if k.endswith(("query.bias", "key.bias", "value.bias")))


# --- bad checkpoints ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deep():
    """The deep model's state dict without prefixes, and its n_head."""
    hf = hf_gpt2("deep")
    return {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}, CONFIGS["deep"]["n_head"]


def test_a_missing_key_is_listed(deep):
    state, n_head = deep
    broken = {k: v for k, v in state.items() if k not in ("h.2.mlp.c_fc.bias", "ln_f.weight")}
    with pytest.raises(ValueError, match=r"2 keys missing: ln_f\.weight, h\.2\.mlp\.c_fc\.bias"):
        GPT.from_gpt2(broken, n_head=n_head)


def test_a_missing_block_is_listed(deep):
    state, n_head = deep
    broken = {k: v for k, v in state.items() if not k.startswith("h.1.")}
    with pytest.raises(ValueError, match=r"incomplete \(4 blocks\): 12 keys missing: h\.1\.ln_1\.weight"):
        GPT.from_gpt2(broken, n_head=n_head)


def test_a_dropped_last_block_is_caught_by_config_json(tmp_path):
    hf = hf_gpt2("deep")
    hf.save_pretrained(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "model.safetensors")
    save_file({k: v for k, v in state.items() if ".h.3." not in k}, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"gives n_layer=4, but the weights have n_layer=3"):
        GPT.from_gpt2(tmp_path)


def test_a_wrong_shape_is_named(deep):
    state, n_head = deep
    broken = state | {"h.3.mlp.c_fc.weight": state["h.3.mlp.c_fc.weight"].t()}  # stored as nn.Linear, not Conv1D
    with pytest.raises(ValueError, match=r"h\.3\.mlp\.c_fc\.weight: expected \(48, 192\), got \(192, 48\)"):
        GPT.from_gpt2(broken, n_head=n_head)


def test_an_unexpected_key_is_listed(deep):
    state, n_head = deep
    with pytest.raises(ValueError, match=r"1 keys that GPT-2 does not: h\.0\.attn\.q_proj\.weight"):
        GPT.from_gpt2(state | {"h.0.attn.q_proj.weight": torch.zeros(48, 48)}, n_head=n_head)


def test_an_untied_lm_head_is_refused(deep):
    state, n_head = deep
    with pytest.raises(ValueError, match="lm_head.weight` differs from `wte.weight`"):
        GPT.from_gpt2(state | {"lm_head.weight": state["wte.weight"] + 1}, n_head=n_head)


def test_not_a_gpt2_checkpoint():
    with pytest.raises(ValueError, match="not a GPT-2 checkpoint.*no `wte.weight`.*first keys are: blocks.0"):
        GPT.from_gpt2(GPT(13, 8, 16, 4, 2).state_dict(), n_head=4)
    with pytest.raises(ValueError, match="not a GPT-2 checkpoint"):
        GPT.from_gpt2({}, n_head=4)


def test_n_head_must_be_known_and_agree(deep, tmp_path):
    state, n_head = deep
    with pytest.raises(ValueError, match=r"do not store the number of heads: pass `n_head` \(gpt2: 12"):
        GPT.from_gpt2(state)
    for bad in (5, 0, -6, 6.0, True, "6"):
        with pytest.raises(ValueError, match=r"`n_head` must be a positive int dividing n_embd=48"):
            GPT.from_gpt2(state, n_head=bad)
    hf_gpt2("deep").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"`n_head`=8 disagrees with n_head=6 in .*config\.json"):
        GPT.from_gpt2(tmp_path, n_head=8)
    assert GPT.from_gpt2(tmp_path, n_head=6).n_head == 6


@pytest.mark.parametrize("change, message", [
    ({"model_type": "llama"}, "describes a 'llama' model, not GPT-2"),
    ({"activation_function": "relu"}, "activation_function='relu'"),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon=1e-06"),
    ({"n_inner": 100}, "n_inner=100"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
    ({"n_positions": 1024}, "gives n_positions=1024, but the weights have block_size=40"),
])
def test_a_config_the_course_gpt_cannot_compute_is_refused(tmp_path, change, message):
    hf_gpt2("deep").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | change))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GPT.from_gpt2(tmp_path)


def test_bad_files_and_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no file or folder at"):
        GPT.from_gpt2(tmp_path / "nowhere.safetensors")
    with pytest.raises(FileNotFoundError, match="holds no model.safetensors nor pytorch_model.bin"):
        GPT.from_gpt2(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"this is not a safetensors file at all")
    with pytest.raises(ValueError, match="is not a readable safetensors file"):
        GPT.from_gpt2(tmp_path)
    (tmp_path / "weights.txt").write_text("wte")
    with pytest.raises(ValueError, match=r"expected a \.safetensors, \.bin, \.pt or \.pth file, got weights\.txt"):
        GPT.from_gpt2(tmp_path / "weights.txt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        GPT.from_gpt2(tmp_path / "list.pt")
    with pytest.raises(TypeError, match="must be a path .* or a state dict, got int"):
        GPT.from_gpt2(3)


_RAN = []


def _planted():
    _RAN.append(True)
    return {}


class _Payload:
    def __reduce__(self):
        return (_planted, ())


def test_a_pickle_carrying_code_is_refused_and_never_run(tmp_path):
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"wte.weight": _Payload()}, f, protocol=2)
    with pytest.raises(ValueError, match=r"could not be read as tensors with torch\.load\(weights_only=True\)"):
        GPT.from_gpt2(tmp_path)
    assert _RAN == []


def test_values_that_are_not_float_tensors_are_named(deep):
    state, n_head = deep
    with pytest.raises(ValueError, match="`h.0.ln_1.bias` must be a floating-point tensor, got list"):
        GPT.from_gpt2(state | {"h.0.ln_1.bias": [0.0] * 48}, n_head=n_head)
    with pytest.raises(ValueError, match="`wpe.weight` must be a floating-point tensor, got dtype torch.int64"):
        GPT.from_gpt2(state | {"wpe.weight": torch.zeros(40, 48, dtype=torch.long)}, n_head=n_head)
