"""OpenAI's GPT-2 weights, in Hugging Face's layout, renamed and reshaped for the course's :class:`~course_utils.gpt.GPT`.

:meth:`GPT.from_gpt2 <course_utils.gpt.GPT.from_gpt2>` calls :func:`read_gpt2_checkpoint`. GPT-2 stores
each linear layer as a ``Conv1D`` whose weight is (in, out), the transpose of ``nn.Linear``'s
(out, in), and the query, key and value projections as one ``c_attn`` of width 3C:

==================================  ======================================  ==========================
GPT-2 key (``transformer.`` or not)   course ``GPT`` key                       how
==================================  ======================================  ==========================
``wte.weight`` (V, C)               ``token_embedding.weight``              as is; ``lm_head`` shares it
``wpe.weight`` (block_size, C)      ``position_embedding.weight``           as is
``h.N.ln_1``, ``h.N.ln_2``          ``blocks.N.ln1``, ``blocks.N.ln2``      as is (weight and bias)
``h.N.attn.c_attn.weight`` (C, 3C)  ``blocks.N.attn.{query,key,value}``     transposed, cut in 3 rows
``h.N.attn.c_attn.bias`` (3C,)      ``blocks.N.attn.{query,key,value}``     cut in 3
``h.N.attn.c_proj`` (C, C)          ``blocks.N.attn.proj``                  weight transposed
``h.N.mlp.c_fc`` (C, 4C)            ``blocks.N.mlp.0``                      weight transposed
``h.N.mlp.c_proj`` (4C, C)          ``blocks.N.mlp.2``                      weight transposed
``ln_f``                            ``ln_f``                                as is
``lm_head.weight`` (optional)       (tied to ``token_embedding.weight``)    must equal ``wte.weight``
``h.N.attn.bias``, ``masked_bias``  (none)                                  skipped: the causal mask
==================================  ======================================  ==========================

Within each of q, k and v the heads sit side by side in head order, as in the course's
:class:`~course_utils.gpt.CausalSelfAttention`, so no reordering is needed.

Files are read without unpickling code: ``.safetensors`` with the ``safetensors`` library, ``.bin``
/ ``.pt`` / ``.pth`` with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["GPT2_SIZES", "read_gpt2_checkpoint"]

#: OpenAI's four GPT-2 sizes: name -> (n_layer, n_head, n_embd). The weights do not store n_head.
GPT2_SIZES = {"gpt2": (12, 12, 768), "gpt2-medium": (24, 16, 1024), "gpt2-large": (36, 20, 1280), "gpt2-xl": (48, 25, 1600)}

_WHO = "GPT.from_gpt2"
_SKIPPED = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")  # the causal-mask buffers of older checkpoints
_LAYER = re.compile(r"^h\.(\d+)\.")
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}


def read_gpt2_checkpoint(path_or_state_dict, n_head: int | None = None) -> tuple[dict, dict[str, Tensor]]:
    """GPT-2's configuration and weights, renamed for the course's ``GPT``.

    Args:
        path_or_state_dict: a ``model.safetensors`` (or ``.bin`` / ``.pt``) file, a folder holding
            one (``model.safetensors`` first, then ``pytorch_model.bin``), or a state dict in
            Hugging Face's GPT-2 layout (keys with or without the ``transformer.`` prefix).
        n_head: the number of attention heads, which the weights do not store. ``None`` reads it
            from the ``config.json`` beside the file (Hugging Face saves one); a state dict
            without ``n_head`` is refused. When both are there they must agree.

    Returns:
        ``(config, state_dict)``: ``GPT(**config)`` builds the model (its keys are
        ``vocab_size, block_size, n_embd, n_head, n_layer, bias, activation``) and
        ``load_state_dict(state_dict)`` fills it.

    Shape:
        - ``wte.weight``: :math:`(V, C)` gives vocab_size and n_embd; ``wpe.weight``:
          :math:`(\\text{block\\_size}, C)`; the number of ``h.N`` blocks gives n_layer.
    """
    weights, config_file = _read_weights(path_or_state_dict)
    weights = {key.removeprefix("transformer."): value for key, value in weights.items()}
    if "wte.weight" not in weights:
        shown = ", ".join(sorted(weights)[:5]) or "none"
        raise ValueError(f"{_WHO}: this is not a GPT-2 checkpoint in Hugging Face's layout: it has no `wte.weight` "
                         f"(nor `transformer.wte.weight`); its first keys are: {shown}")
    for key, value in weights.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ValueError(f"{_WHO}: `{key}` must be a floating-point tensor, got {_describe(value)}")
    config = _infer_config(weights)
    saved = _read_config_json(config_file) if config_file is not None else {}
    config["n_head"] = _choose_n_head(n_head, saved.get("n_head"), config["n_embd"], config_file)
    config["activation"] = _check_saved_config(saved, config, config_file)
    _check_keys_and_shapes(weights, config)
    return config, _renamed(weights, config["n_layer"], config["n_embd"])


# ----------------------------------------------------------------------------------------------- reading


def _read_weights(source) -> tuple[Mapping[str, Tensor], Path | None]:
    """The tensors of ``source`` and the ``config.json`` beside it (or None)."""
    if isinstance(source, Mapping):
        bad = [key for key in source if not isinstance(key, str)]
        if bad:
            raise TypeError(f"{_WHO}: a state dict's keys must be str, got {bad[0]!r}")
        return source, None
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{_WHO}: `path_or_state_dict` must be a path (str or Path) or a state dict, got {type(source).__name__}")
    path = Path(source).expanduser()
    if path.is_dir():
        found = [path / name for name in ("model.safetensors", "pytorch_model.bin") if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{_WHO}: the folder {path} holds no model.safetensors nor pytorch_model.bin "
                                    f"(download GPT-2's model.safetensors and config.json into it)")
        path = found[0]
    elif not path.is_file():
        raise FileNotFoundError(f"{_WHO}: no file or folder at {path}")
    config_file = path.parent / "config.json"
    return _load_file(path), (config_file if config_file.is_file() else None)


def _load_file(path: Path) -> Mapping[str, Tensor]:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            from safetensors import SafetensorError
            from safetensors.torch import load_file
        except ImportError as error:
            raise ImportError(f"{_WHO}: reading {path.name} needs the `safetensors` package (pip install safetensors)") from error
        try:
            return load_file(path, device="cpu")
        except SafetensorError as error:
            raise ValueError(f"{_WHO}: {path} is not a readable safetensors file ({error})") from error
    if suffix in (".bin", ".pt", ".pth"):
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)  # never runs code stored in the file
        except Exception as error:  # noqa: BLE001 - pickle reports many kinds of bad file
            raise ValueError(f"{_WHO}: {path} could not be read as tensors with torch.load(weights_only=True) "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from error
        if not isinstance(loaded, Mapping):
            raise ValueError(f"{_WHO}: {path} holds a {type(loaded).__name__}, not a state dict of tensors")
        return _read_weights(loaded)[0]
    raise ValueError(f"{_WHO}: expected a .safetensors, .bin, .pt or .pth file, got {path.name}")


def _read_config_json(path: Path) -> dict:
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{_WHO}: {path} is not valid JSON ({error})") from error
    if not isinstance(saved, dict):
        raise ValueError(f"{_WHO}: {path} must hold a JSON object, got {type(saved).__name__}")
    return saved


# ----------------------------------------------------------------------------------------------- the configuration


def _infer_config(weights: Mapping[str, Tensor]) -> dict:
    wte = weights["wte.weight"]
    if wte.dim() != 2:
        raise ValueError(f"{_WHO}: `wte.weight` must be (vocab_size, n_embd), got shape {tuple(wte.shape)}")
    if "wpe.weight" not in weights:
        raise ValueError(f"{_WHO}: the checkpoint is incomplete: missing `wpe.weight` (the learned positions)")
    wpe = weights["wpe.weight"]
    if wpe.dim() != 2 or wpe.shape[1] != wte.shape[1]:
        raise ValueError(f"{_WHO}: `wpe.weight` must be (block_size, n_embd={wte.shape[1]}), got shape {tuple(wpe.shape)}")
    layers = {int(match.group(1)) for key in weights if (match := _LAYER.match(key))}
    if not layers:
        raise ValueError(f"{_WHO}: the checkpoint is incomplete: it has no transformer blocks (no `h.0.` keys)")
    vocab_size, n_embd = wte.shape
    return dict(vocab_size=vocab_size, block_size=wpe.shape[0], n_embd=n_embd, n_head=None, n_layer=max(layers) + 1, bias=True)


def _choose_n_head(given, saved, n_embd: int, config_file: Path | None) -> int:
    if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < 1 or n_embd % given != 0):
        raise ValueError(f"{_WHO}: `n_head` must be a positive int dividing n_embd={n_embd}, got {given!r}")
    if saved is not None and (isinstance(saved, bool) or not isinstance(saved, int) or saved < 1 or n_embd % saved != 0):
        raise ValueError(f"{_WHO}: {config_file} gives n_head={saved!r}, which does not divide n_embd={n_embd}")
    if given is not None and saved is not None and given != saved:
        raise ValueError(f"{_WHO}: `n_head`={given} disagrees with n_head={saved} in {config_file}")
    if given is None and saved is None:
        sizes = ", ".join(f"{name}: {heads}" for name, (_, heads, _) in GPT2_SIZES.items())
        raise ValueError(f"{_WHO}: the weights do not store the number of heads: pass `n_head` ({sizes}), "
                         f"or keep GPT-2's config.json beside model.safetensors")
    return given if given is not None else saved


def _check_saved_config(saved: dict, config: dict, config_file: Path | None) -> str:
    """The activation named by config.json (GPT-2's tanh GELU without one); refuse what the course's GPT cannot compute."""
    if not saved:
        return "gelu_tanh"
    if saved.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{_WHO}: {config_file} describes a {saved['model_type']!r} model, not GPT-2 (model_type 'gpt2')")
    for name, ours in (("vocab_size", "vocab_size"), ("n_positions", "block_size"), ("n_embd", "n_embd"), ("n_layer", "n_layer")):
        if name in saved and saved[name] != config[ours]:
            raise ValueError(f"{_WHO}: {config_file} gives {name}={saved[name]!r}, but the weights have {ours}={config[ours]}")
    unsupported = [
        (saved.get("layer_norm_epsilon", 1e-5), 1e-5, "layer_norm_epsilon", "the course's LayerNorms use eps=1e-5"),
        (saved.get("n_inner"), None, "n_inner", "the course's MLP is 4 * n_embd wide"),
        (saved.get("scale_attn_weights", True), True, "scale_attn_weights", "the course's attention scales by 1/sqrt(head size)"),
        (saved.get("scale_attn_by_inverse_layer_idx", False), False, "scale_attn_by_inverse_layer_idx", "the course's attention does not"),
    ]
    for value, expected, name, why in unsupported:
        if value != expected and not (name == "n_inner" and value == 4 * config["n_embd"]):
            raise ValueError(f"{_WHO}: {config_file} sets {name}={value!r}, which the course's GPT cannot compute ({why})")
    activation = saved.get("activation_function", "gelu_new")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{_WHO}: {config_file} sets activation_function={activation!r}; the course's GPT computes "
                         f"{sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[activation]


# ----------------------------------------------------------------------------------------------- keys and shapes


def _expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    V, P, C = config["vocab_size"], config["block_size"], config["n_embd"]
    shapes = {"wte.weight": (V, C), "wpe.weight": (P, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for n in range(config["n_layer"]):
        shapes |= {
            f"h.{n}.ln_1.weight": (C,), f"h.{n}.ln_1.bias": (C,),
            f"h.{n}.attn.c_attn.weight": (C, 3 * C), f"h.{n}.attn.c_attn.bias": (3 * C,),
            f"h.{n}.attn.c_proj.weight": (C, C), f"h.{n}.attn.c_proj.bias": (C,),
            f"h.{n}.ln_2.weight": (C,), f"h.{n}.ln_2.bias": (C,),
            f"h.{n}.mlp.c_fc.weight": (C, 4 * C), f"h.{n}.mlp.c_fc.bias": (4 * C,),
            f"h.{n}.mlp.c_proj.weight": (4 * C, C), f"h.{n}.mlp.c_proj.bias": (C,),
        }  # Conv1D weights are (in, out)
    return shapes


def _check_keys_and_shapes(weights: Mapping[str, Tensor], config: dict) -> None:
    expected = _expected_shapes(config)
    optional = {"lm_head.weight": expected["wte.weight"]}
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected and key not in optional and not _SKIPPED.match(key)]
    if missing:
        raise ValueError(f"{_WHO}: the checkpoint is incomplete ({config['n_layer']} blocks): {len(missing)} keys missing: {_listed(missing)}")
    if unexpected:
        raise ValueError(f"{_WHO}: the checkpoint has {len(unexpected)} keys that GPT-2 does not: {_listed(unexpected)}")
    wrong = [f"{key}: expected {shape}, got {tuple(weights[key].shape)}"
             for key, shape in (expected | optional).items() if key in weights and tuple(weights[key].shape) != shape]
    if wrong:
        raise ValueError(f"{_WHO}: unexpected shapes (vocab_size={config['vocab_size']}, block_size={config['block_size']}, "
                         f"n_embd={config['n_embd']}): {_listed(wrong)}")
    if "lm_head.weight" in weights and not torch.equal(weights["lm_head.weight"], weights["wte.weight"]):
        raise ValueError(f"{_WHO}: `lm_head.weight` differs from `wte.weight`; the course's GPT ties them (one matrix), "
                         f"so it cannot hold this checkpoint")


def _renamed(weights: Mapping[str, Tensor], n_layer: int, n_embd: int) -> dict[str, Tensor]:
    state = {"token_embedding.weight": weights["wte.weight"], "position_embedding.weight": weights["wpe.weight"]}
    for n in range(n_layer):
        h, block = f"h.{n}.", f"blocks.{n}."
        q, k, v = weights[h + "attn.c_attn.weight"].t().split(n_embd, dim=0)  # (C, 3C) -> (3C, C) -> 3 x (C, C)
        q_bias, k_bias, v_bias = weights[h + "attn.c_attn.bias"].split(n_embd)  # 3 x (C,)
        state |= {
            block + "ln1.weight": weights[h + "ln_1.weight"], block + "ln1.bias": weights[h + "ln_1.bias"],
            block + "attn.query.weight": q, block + "attn.key.weight": k, block + "attn.value.weight": v,
            block + "attn.query.bias": q_bias, block + "attn.key.bias": k_bias, block + "attn.value.bias": v_bias,
            block + "attn.proj.weight": weights[h + "attn.c_proj.weight"].t(),  # (C, C), transposed
            block + "attn.proj.bias": weights[h + "attn.c_proj.bias"],
            block + "ln2.weight": weights[h + "ln_2.weight"], block + "ln2.bias": weights[h + "ln_2.bias"],
            block + "mlp.0.weight": weights[h + "mlp.c_fc.weight"].t(),  # (4C, C)
            block + "mlp.0.bias": weights[h + "mlp.c_fc.bias"],
            block + "mlp.2.weight": weights[h + "mlp.c_proj.weight"].t(),  # (C, 4C)
            block + "mlp.2.bias": weights[h + "mlp.c_proj.bias"],
        }
    state |= {"ln_f.weight": weights["ln_f.weight"], "ln_f.bias": weights["ln_f.bias"], "lm_head.weight": weights["wte.weight"]}
    return state


def _listed(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _describe(x) -> str:
    return f"dtype {x.dtype}, shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__

