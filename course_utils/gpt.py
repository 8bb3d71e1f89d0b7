"""A decoder-only GPT built from the course's pieces (notebook 09), with the KV cache of notebook 10.

=========================  ===========================================================================
piece                      what it is
=========================  ===========================================================================
:class:`MultiHeadFromHeads`  notebook 03's :class:`~course_utils.attention.Head`, n of them, concatenated
                           and projected: the same function as ``nn.MultiheadAttention``
                           (:func:`to_multihead_attention` copies the weights across)
:class:`CausalSelfAttention`  the same thing in one batched module, with RoPE, grouped-query heads
                           (``n_kv_head``) and a :class:`~course_utils.kv_cache.KVCache`
:class:`Block`             pre-LN: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``
:class:`GPT`               token embedding + positions, blocks, final LayerNorm, tied LM head;
                           ``forward`` and ``generate``
:func:`sample_next_token`  greedy, temperature and top-k sampling of the next token
:func:`evaluate_loss`      the mean next-token loss over every window of a held-out text
=========================  ===========================================================================

``GPT(..., bias=True, activation="gelu_tanh")`` is GPT-2's configuration, and :meth:`GPT.from_gpt2`
loads OpenAI's GPT-2 weights (Hugging Face's layout) into it (:mod:`course_utils.gpt2_checkpoint`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import Head
from .i18n import _
from .kv_cache import KVCache, repeat_kv
from .positions import apply_rope, sinusoidal_positions
from .synthesizer import DenseSynthesizer, RandomSynthesizer, SynthesizerMixture

__all__ = [
    "ACTIVATIONS",
    "ATTENTIONS",
    "POSITIONS",
    "GPT",
    "Block",
    "CausalSelfAttention",
    "MultiHeadFromHeads",
    "evaluate_loss",
    "sample_next_token",
    "to_multihead_attention",
]

POSITIONS = ("learned", "sinusoidal", "rope", "none")
ATTENTIONS = ("dot", "dense", "random", "mixture")
ACTIVATIONS = ("gelu", "gelu_tanh")


def _check_positive_int(who: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: `{name}` must be a positive int, got {value!r}")


def _check_bool(who: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{who}: `{name}` must be a bool, got {value!r}")


def _check_dropout(who: str, dropout) -> None:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"{who}: `dropout` must be a number in [0, 1), got {dropout!r}")


# ----------------------------------------------------------------------------------------------
# From one Head to many
# ----------------------------------------------------------------------------------------------


class MultiHeadFromHeads(nn.Module):
    """``n_head`` causal :class:`~course_utils.attention.Head` s side by side, concatenated, then projected.

    Each head reads the whole input and writes ``n_embd // n_head`` features; the output
    projection mixes what the heads found.

    Args:
        n_embd: width C of the input and output (divisible by ``n_head``).
        n_head: number of heads.
        block_size: the longest sequence accepted.
        dropout: dropout on each head's weights and on the output (training only).

    Shape:
        - input: :math:`(B, T, C)`, T <= block_size; output: :math:`(B, T, C)`
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        _check_positive_int("MultiHeadFromHeads", "n_head", n_head)
        if n_embd % n_head != 0:
            raise ValueError(f"MultiHeadFromHeads: `n_embd` ({n_embd}) must be divisible by `n_head` ({n_head})")
        self.heads = nn.ModuleList([Head(n_embd, n_embd // n_head, block_size, dropout) for _ in range(n_head)])
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.cat([head(x) for head in self.heads], dim=-1)  # n_head x (B, T, hs) -> (B, T, C)
        return self.dropout(self.proj(out))  # (B, T, C)


def to_multihead_attention(module: MultiHeadFromHeads) -> nn.MultiheadAttention:
    """An ``nn.MultiheadAttention`` (batch_first) computing the same function as ``module``.

    ``in_proj_weight`` stacks [W_q; W_k; W_v], and each of them stacks the heads' weights in head
    order, which is how ``nn.MultiheadAttention`` splits its projections into heads. The Heads
    have no q/k/v biases, so ``in_proj_bias`` is zero; ``out_proj`` is the projection. Call it
    with a causal mask: ``mha(x, x, x, attn_mask=nn.Transformer.generate_square_subsequent_mask(T))``.
    """
    if not isinstance(module, MultiHeadFromHeads):
        raise TypeError(f"to_multihead_attention: `module` must be a MultiHeadFromHeads, got {type(module).__name__}")
    n_embd, n_head = module.proj.in_features, len(module.heads)
    mha = nn.MultiheadAttention(n_embd, n_head, dropout=module.heads[0].dropout.p, batch_first=True,
                                device=module.proj.weight.device, dtype=module.proj.weight.dtype)
    with torch.no_grad():
        stacked = [torch.cat([getattr(h, name).weight for h in module.heads], dim=0) for name in ("query", "key", "value")]  # 3 x (C, C)
        mha.in_proj_weight.copy_(torch.cat(stacked, dim=0))  # (3C, C)
        mha.in_proj_bias.zero_()
        mha.out_proj.weight.copy_(module.proj.weight)
        mha.out_proj.bias.copy_(module.proj.bias)
    return mha


# ----------------------------------------------------------------------------------------------
# Batched causal self-attention with RoPE, grouped-query heads and a KV cache
# ----------------------------------------------------------------------------------------------


def _causal_mask(T: int, S: int, device) -> Tensor:
    """Bool (T, S), True = attend: the T newest queries sit at positions S-T .. S-1 (bottom-right)."""
    query_position = torch.arange(S - T, S, device=device)[:, None]  # (T, 1)
    key_position = torch.arange(S, device=device)[None, :]  # (1, S)
    return key_position <= query_position  # (T, S)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention in one module: the Heads of notebook 03, batched.

    With ``n_kv_head < n_head`` the keys and values have fewer heads than the queries, and each
    key/value head serves ``n_head // n_kv_head`` query heads (grouped-query attention;
    ``n_kv_head=1`` is multi-query attention). With ``rope=True`` queries and keys are rotated
    by :func:`~course_utils.positions.apply_rope` at their absolute positions (values never are).

    Args:
        n_embd: model width C (divisible by ``n_head``).
        n_head: number of query heads.
        n_kv_head: number of key/value heads (divides ``n_head``; default ``n_head``).
        dropout: dropout on the attention weights and on the output (training only).
        rope: rotate queries and keys by position.
        layer_index: this layer's slot in a shared :class:`~course_utils.kv_cache.KVCache`.
        bias: give the query, key and value projections a bias (GPT-2 has them; notebook 03's
            ``Head`` does not). The output projection always has one.

    Shape:
        - x: :math:`(B, T, C)`; output: :math:`(B, T, C)`. With a cache holding ``start``
          positions, x holds the T new tokens at positions ``start .. start + T - 1``.
    """

    def __init__(self, n_embd: int, n_head: int, n_kv_head: int | None = None, dropout: float = 0.0,
                 rope: bool = False, layer_index: int = 0, bias: bool = False) -> None:
        super().__init__()
        n_kv_head = n_head if n_kv_head is None else n_kv_head
        for name, value in (("n_embd", n_embd), ("n_head", n_head), ("n_kv_head", n_kv_head)):
            _check_positive_int("CausalSelfAttention", name, value)
        if n_embd % n_head != 0 or n_head % n_kv_head != 0:
            raise ValueError(f"CausalSelfAttention: `n_head` must divide n_embd and `n_kv_head` must divide n_head, "
                             f"got n_embd={n_embd}, n_head={n_head}, n_kv_head={n_kv_head}")
        if isinstance(layer_index, bool) or not isinstance(layer_index, int) or layer_index < 0:
            raise ValueError(f"CausalSelfAttention: `layer_index` must be an int >= 0, got {layer_index!r}")
        _check_dropout("CausalSelfAttention", dropout)
        _check_bool("CausalSelfAttention", "rope", rope)
        _check_bool("CausalSelfAttention", "bias", bias)
        if rope and (n_embd // n_head) % 2 != 0:
            raise ValueError(f"CausalSelfAttention: `rope=True` rotates pairs of features, so the head size n_embd // n_head must be even, got {n_embd // n_head}")
        self.n_head, self.n_kv_head, self.head_size = n_head, n_kv_head, n_embd // n_head
        self.rope, self.layer_index, self.dropout_p = rope, layer_index, float(dropout)
        self.query = nn.Linear(n_embd, n_head * self.head_size, bias=bias)
        self.key = nn.Linear(n_embd, n_kv_head * self.head_size, bias=bias)
        self.value = nn.Linear(n_embd, n_kv_head * self.head_size, bias=bias)
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, start: int = 0) -> Tensor:
        n_embd = self.proj.in_features
        if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != n_embd:
            raise ValueError(f"CausalSelfAttention: `x` must be a tensor (B, T, C={n_embd}), got {_describe(x)}")
        B, T, C = x.shape
        q = self.query(x).view(B, T, self.n_head, self.head_size).transpose(1, 2)  # (B, H, T, D)
        k = self.key(x).view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, H_kv, T, D)
        v = self.value(x).view(B, T, self.n_kv_head, self.head_size).transpose(1, 2)  # (B, H_kv, T, D)
        if self.rope:
            positions = torch.arange(start, start + T, device=x.device)  # (T,)
            q, k = apply_rope(q, positions), apply_rope(k, positions)  # rotated at their absolute positions
        if cache is not None:
            k, v = cache.update(self.layer_index, k, v)  # (B, H_kv, S, D), S = start + T
        n_rep = self.n_head // self.n_kv_head
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S, D)
        S = k.shape[2]
        mask = None if T == 1 or S == T else _causal_mask(T, S, x.device)  # one new query sees every cached key
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=(S == T and T > 1), dropout_p=self.dropout_p if self.training else 0.0
        )  # (B, H, T, D)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side
        return self.dropout(self.proj(y))  # (B, T, C)


class _SynthesizerSelfAttention(nn.Module):
    """A causal synthesizer layer of notebook 06 (``batch_first``), called as self-attention."""

    def __init__(self, kind: str, n_embd: int, n_head: int, block_size: int, dropout: float) -> None:
        super().__init__()
        if kind == "dense":
            self.layer = DenseSynthesizer(n_embd, n_head, block_size, dropout=dropout, batch_first=True)
        elif kind == "random":
            self.layer = RandomSynthesizer(n_embd, n_head, block_size, dropout=dropout, batch_first=True)
        else:  # the paper's "R+V": random logits mixed with dot-product logits
            self.layer = SynthesizerMixture(n_embd, n_head, block_size, dropout=dropout, batch_first=True,
                                            components=("random", "dot_product"))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, start: int = 0) -> Tensor:
        """Always the whole sequence (``start == 0``): synthesized logits are not cached."""
        out, _ = self.layer(x, x, x, need_weights=False, is_causal=True)  # (B, T, C)
        return self.dropout(out)


class Block(nn.Module):
    """A pre-LN transformer block: ``x = x + attn(ln1(x))``, then ``x = x + mlp(ln2(x))``.

    The MLP is C -> 4C -> C with a GELU, as in GPT-2. Both layer norms use PyTorch's default
    ``eps=1e-5``, GPT-2's ``layer_norm_epsilon``.

    Args:
        n_embd, n_head, block_size, dropout, n_kv_head: as :class:`GPT`.
        attention: ``"dot"`` (:class:`CausalSelfAttention`) or a synthesizer kind.
        rope: rotary positions inside the attention (``"dot"`` only).
        layer_index: the block's slot in a KV cache.
        bias: biases on the attention's query/key/value projections (``"dot"`` only).
        activation: the MLP's GELU: ``"gelu"`` (exact, erf) or ``"gelu_tanh"`` (the tanh
            approximation GPT-2 was trained with).

    Shape:
        - x: :math:`(B, T, C)`; output: :math:`(B, T, C)`
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float = 0.0, n_kv_head: int | None = None,
                 attention: str = "dot", rope: bool = False, layer_index: int = 0, bias: bool = False,
                 activation: str = "gelu") -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"Block: `attention` must be one of {ATTENTIONS}, got {attention!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"Block: `activation` must be one of {ACTIVATIONS}, got {activation!r}")
        _check_bool("Block", "bias", bias)
        if bias and attention != "dot":
            raise ValueError(f"Block: `bias=True` adds biases to the query/key/value projections of attention='dot'; attention={attention!r} has none")
        self.ln1 = nn.LayerNorm(n_embd)
        if attention == "dot":
            self.attn = CausalSelfAttention(n_embd, n_head, n_kv_head, dropout, rope, layer_index, bias)
        else:
            self.attn = _SynthesizerSelfAttention(attention, n_embd, n_head, block_size, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        gelu = nn.GELU(approximate="tanh" if activation == "gelu_tanh" else "none")
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), gelu, nn.Linear(4 * n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x: Tensor, cache: KVCache | None = None, start: int = 0) -> Tensor:
        x = x + self.attn(self.ln1(x), cache, start)  # (B, T, C)
        return x + self.mlp(self.ln2(x))  # (B, T, C)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


def sample_next_token(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> Tensor:
    """Pick the next token from the last position's logits.

    ``temperature == 0`` is greedy: the argmax. Otherwise the logits are divided by the
    temperature (below 1 sharpens, above 1 flattens), all but the ``top_k`` largest are set to
    ``-inf`` (ties with the k-th largest are kept), and one token is drawn from the softmax with
    ``torch.multinomial(probs, num_samples=1, generator=generator)``.

    A temperature so small that the division overflows (say 1e-300) is taken at its limit:
    each row keeps only its largest logits, and the draw is among them.

    Args:
        logits: scores over the vocabulary: finite, or ``-inf`` for a token ruled out (at least
            one finite per row).
        temperature: >= 0.
        top_k: keep only the k most likely tokens (1 <= top_k <= V), or None for all.
        generator: the random stream of the draw (on the logits' device), for reproducible samples.

    Shape:
        - logits: :math:`(B, V)`, V >= 1; output: :math:`(B, 1)`, int64
    """
    _check_logits("sample_next_token", logits)
    _check_sampling("sample_next_token", temperature, top_k, logits.shape[-1], generator, logits.device)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1): greedy
    scaled = logits / temperature  # (B, V)
    overflowed = (~torch.isfinite(scaled) & torch.isfinite(logits)).any(dim=-1, keepdim=True)  # (B, 1)
    if overflowed.any():  # the limit of a vanishing temperature: only each row's largest logits stay
        largest_only = torch.where(logits == logits.amax(dim=-1, keepdim=True), 0.0, float("-inf")).to(logits.dtype)  # (B, V)
        scaled = torch.where(overflowed, largest_only, scaled)  # (B, V)
    logits = scaled  # (B, V)
    if top_k is not None:
        kth_largest = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))  # (B, V): only the top k stay
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def _check_logits(who: str, logits) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2 or not logits.is_floating_point() or logits.shape[-1] == 0:
        raise ValueError(f"{who}: `logits` must be a float tensor of shape (B, V) with V >= 1, got {_describe(logits)}")
    if logits.numel() and (torch.isnan(logits).any() or (logits == float("inf")).any() or (logits == float("-inf")).all(dim=-1).any()):
        raise ValueError(f"{who}: `logits` must be finite or -inf, with a finite value in every row; got NaN, +inf or a row of -inf")


def _check_sampling(who: str, temperature, top_k, vocab_size: int, generator, device=None) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0 or math.isinf(temperature):
        raise ValueError(f"{who}: `temperature` must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise ValueError(f"{who}: `top_k` must be None or an int in [1, vocab_size={vocab_size}], got {top_k!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{who}: `generator` must be a torch.Generator or None, got {type(generator).__name__}")
    if generator is not None and device is not None and generator.device.type != torch.device(device).type:
        raise ValueError(f"{who}: `generator` must be on the device of the {'logits' if who == 'sample_next_token' else 'model'} "
                         f"({torch.device(device).type}), got a generator on {generator.device.type}")


def _describe(x) -> str:
    return f"dtype {x.dtype}, shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


class GPT(nn.Module):
    r"""A decoder-only transformer language model (GPT-2's layout, pre-LN).

    ``idx`` (token ids) -> token embedding (+ position embedding) -> ``n_layer`` :class:`Block` s
    -> final LayerNorm -> LM head -> logits for the next token at every position. The LM head
    shares its weight with the token embedding (weight tying, as in GPT-2): the score of token
    v is the dot product of the final hidden state with v's own embedding, and the model saves
    ``vocab_size * n_embd`` parameters.

    Args:
        vocab_size: number of tokens V.
        block_size: the longest context (learned positions and synthesizers have exactly
            ``block_size`` positions; generation always keeps the last ``block_size`` tokens).
        n_embd: model width C (divisible by ``n_head``).
        n_head: number of attention heads.
        n_layer: number of blocks.
        dropout: dropout probability (embeddings, attention weights, residual branches).
        n_kv_head: key/value heads, a divisor of ``n_head`` (grouped-query attention; 1 =
            multi-query; default ``n_head``). ``attention="dot"`` only.
        positions: ``"learned"`` (an ``nn.Embedding`` of ``block_size`` rows, added),
            ``"sinusoidal"`` (the fixed table, added), ``"rope"`` (queries and keys rotated
            in every layer) or ``"none"``.
        attention: ``"dot"`` (dot-product attention), or a causal synthesizer of notebook 06:
            ``"dense"``, ``"random"``, ``"mixture"`` (random + dot-product logits, the paper's
            R+V).
        bias: biases on the attention's query/key/value projections (``attention="dot"``
            only). ``False`` (the default) is notebook 03's ``Head``; GPT-2 has them.
        activation: the MLP's GELU: ``"gelu"`` (exact, the default) or ``"gelu_tanh"`` (the tanh
            approximation, GPT-2's ``gelu_new``).

    GPT-2 is ``GPT(50257, 1024, 768, 12, 12, positions="learned", bias=True,
    activation="gelu_tanh")`` (the small model); :meth:`from_gpt2` builds it from a checkpoint.

    Shape:
        - idx: :math:`(B, T)` token ids in [0, V), int64 (or int32, as ``nn.Embedding`` takes), on
          the model's device; B may be 0
        - targets: :math:`(B, T)` int64, the next token of every position (-100 = no loss there)
        - logits: :math:`(B, T, V)`; loss: a scalar, or None without targets
    """

    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_head: int, n_layer: int, dropout: float = 0.0,
                 n_kv_head: int | None = None, positions: str = "learned", attention: str = "dot", bias: bool = False,
                 activation: str = "gelu") -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("block_size", block_size), ("n_embd", n_embd),
                            ("n_head", n_head), ("n_layer", n_layer)):
            _check_positive_int("GPT", name, value)
        _check_dropout("GPT", dropout)
        if n_embd % n_head != 0:
            raise ValueError(f"GPT: `n_embd` ({n_embd}) must be divisible by `n_head` ({n_head})")
        if positions not in POSITIONS:
            raise ValueError(f"GPT: `positions` must be one of {POSITIONS}, got {positions!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"GPT: `attention` must be one of {ATTENTIONS}, got {attention!r}")
        if n_kv_head is not None:
            _check_positive_int("GPT", "n_kv_head", n_kv_head)
            if n_head % n_kv_head != 0:
                raise ValueError(f"GPT: `n_kv_head` must divide n_head={n_head} (each key/value head serves n_head // n_kv_head query heads), got {n_kv_head}")
            if attention != "dot" and n_kv_head != n_head:
                raise ValueError(f"GPT: `n_kv_head` groups the keys and values of attention='dot'; attention={attention!r} has no keys, so leave n_kv_head=None")
        _check_bool("GPT", "bias", bias)
        if bias and attention != "dot":
            raise ValueError(f"GPT: `bias=True` adds biases to the query/key/value projections of attention='dot'; attention={attention!r} has none, so leave bias=False")
        if activation not in ACTIVATIONS:
            raise ValueError(f"GPT: `activation` must be one of {ACTIVATIONS}, got {activation!r}")
        if positions == "rope" and attention != "dot":
            raise ValueError(f"GPT: positions='rope' rotates queries and keys, which attention={attention!r} does not have; use attention='dot'")
        if positions == "rope" and (n_embd // n_head) % 2 != 0:
            raise ValueError(f"GPT: positions='rope' rotates pairs of features, so the head size n_embd // n_head must be even, got {n_embd // n_head}")
        self.vocab_size, self.block_size, self.n_embd, self.n_head, self.n_layer = vocab_size, block_size, n_embd, n_head, n_layer
        self.n_kv_head = n_head if n_kv_head is None else n_kv_head
        self.positions, self.attention, self.bias, self.activation = positions, attention, bias, activation

        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        if positions == "learned":
            self.position_embedding = nn.Embedding(block_size, n_embd)
        elif positions == "sinusoidal":
            self.register_buffer("position_table", sinusoidal_positions(block_size, n_embd), persistent=False)  # (block_size, C)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([
            Block(n_embd, n_head, block_size, dropout, n_kv_head, attention, rope=(positions == "rope"), layer_index=i,
                  bias=bias, activation=activation)
            for i in range(n_layer)
        ])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # weight tying: one (V, C) matrix, two uses
        self.apply(self._init_weights)

    @classmethod
    def from_gpt2(cls, path_or_state_dict, n_head: int | None = None) -> GPT:
        """A :class:`GPT` holding OpenAI's GPT-2 weights (Hugging Face's layout), in eval mode.

        The configuration comes from the weights: vocab_size and n_embd from ``wte``, block_size
        from ``wpe``, n_layer from the ``h.N`` blocks; n_head, which no weight's shape shows, from
        the argument or from the ``config.json`` that Hugging Face keeps beside
        ``model.safetensors``. The model is ``GPT(..., bias=True, activation="gelu_tanh")`` with
        float32 parameters on the CPU (``.to(device)`` or ``.double()`` after). Nothing in the file
        is executed: ``.safetensors`` holds tensors only, ``.bin`` / ``.pt`` files are read with
        ``torch.load(weights_only=True)``. A wrong or partial checkpoint raises a ``ValueError``
        that lists the missing keys or names the unexpected shapes; building the model leaves the
        random number generators untouched. See :mod:`course_utils.gpt2_checkpoint` for the
        renaming (Conv1D weights transposed, ``c_attn`` cut into query, key and value).

        Args:
            path_or_state_dict: a ``model.safetensors`` (or ``.bin`` / ``.pt``) file, a folder
                holding one, or a state dict with GPT-2's keys (``transformer.`` prefix optional).
            n_head: attention heads (GPT-2 small 12, medium 16, large 20, xl 25); ``None`` reads
                ``n_head`` from ``config.json`` beside the file, and a state dict needs it given.

        Shape:
            - the returned model takes idx :math:`(B, T)`, T <= block_size (1024 for GPT-2), token
              ids of GPT-2's BPE tokenizer (vocab_size 50257).
        """
        from .gpt2_checkpoint import read_gpt2_checkpoint

        config, state_dict = read_gpt2_checkpoint(path_or_state_dict, n_head)
        with torch.device("meta"):  # no memory and no random draws for weights about to be replaced
            model = cls(**config)
        model.to_empty(device="cpu")  # leaves the memory uninitialised, and gives lm_head its own copy:
        model.lm_head.weight = model.token_embedding.weight  # tie them again
        model.load_state_dict(state_dict)
        return model.eval()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2's initialisation, less one rule: N(0, 0.02) weights, zero biases (synthesizer tables keep their own).

        GPT-2 also scales the weights of the two projections that write into the residual stream
        (here ``attn.proj`` and ``mlp.2``) by 1/sqrt(2 * n_layer), so that the stream's variance at
        initialisation does not grow with depth. The course's GPT does not: with that scaling the
        trained numbers of notebook 09 change, and notebook 10's grouped-query model
        (``n_kv_head=2``) ends at a held-out loss of 2.61, past the bound of 2.6 that notebook
        asserts. Loaded GPT-2 weights (:meth:`from_gpt2`) do not depend on it.
        """
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ forward

    def _check_idx(self, idx, name: str = "idx") -> None:
        if not isinstance(idx, Tensor) or idx.dim() != 2:
            raise ValueError(f"GPT: `{name}` must be a 2-D tensor (B, T) of token ids, got {_describe(idx)}")
        if idx.dtype not in (torch.long, torch.int32):
            raise TypeError(f"GPT: `{name}` must hold integer token ids (torch.long, or torch.int32 as nn.Embedding accepts), got dtype {idx.dtype}")
        if idx.shape[1] == 0:
            raise ValueError(f"GPT: `{name}` must hold at least one token per sequence, got shape {tuple(idx.shape)}")
        device = self.token_embedding.weight.device
        if idx.device != device:
            raise ValueError(f"GPT: `{name}` must be on the model's device ({device}), got a tensor on {idx.device} (use .to(device))")

    def _position_encoding(self, start: int, T: int, device) -> Tensor | None:
        """What is added to the token embeddings at positions start .. start+T-1, or None."""
        end = start + T
        if self.positions == "learned":
            return self.position_embedding(torch.arange(start, end, device=device))  # (T, C)
        if self.positions == "sinusoidal":
            if end <= self.block_size:
                return self.position_table[start:end]  # (T, C)
            return sinusoidal_positions(T, self.n_embd, start=start, device=device, dtype=self.position_table.dtype)  # (T, C)
        return None  # "rope" acts inside the attention, "none" adds nothing

    def forward(self, idx: Tensor, targets: Tensor | None = None, *, cache: KVCache | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits for the next token at every position, and the cross-entropy loss when targets are given.

        Args:
            idx: token ids.
            targets: the token that follows each position (``-100`` = ignored), or None.
            cache: a :class:`~course_utils.kv_cache.KVCache` of ``n_layer`` layers
                (``attention="dot"`` only): ``idx`` then holds only the *new* tokens, at
                positions ``len(cache) ..``; their keys and values are appended to it.

        Shape:
            - idx, targets: :math:`(B, T)`; logits :math:`(B, T, V)`; loss: scalar or None.
        """
        self._check_idx(idx)
        B, T = idx.shape
        start = 0
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"GPT: `cache` must be a KVCache or None, got {type(cache).__name__}")
            if self.attention != "dot":
                raise ValueError(f"GPT: a KV cache needs attention='dot'; attention={self.attention!r} is recomputed instead (use_cache=False)")
            if len(cache.keys) != self.n_layer:
                raise ValueError(f"GPT: `cache` must have one slot per block, KVCache({self.n_layer}), got KVCache({len(cache.keys)})")
            if cache.keys[0] is not None and cache.keys[0].shape[0] != B:
                raise ValueError(f"GPT: `cache` holds a batch of {cache.keys[0].shape[0]} sequences, but `idx` has {B}")
            start = len(cache)
        if start + T > self.block_size and (self.positions == "learned" or self.attention != "dot"):
            why = _("learned positions have") if self.positions == "learned" else _("attention={attention} has").format(attention=repr(self.attention))
            room = self.block_size - start
            fix = (_("crop it to its last {room} tokens (idx[:, -{room}:])").format(room=room) if room > 0
                   else _("the cache already fills every position: start a new KVCache from the last tokens"))
            raise ValueError(
                _("GPT: `idx` reaches position {last}, but {why} only block_size={block_size} positions (0..{top}); {fix}"
                  ).format(last=start + T - 1, why=why, block_size=self.block_size, top=self.block_size - 1, fix=fix)
            )
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.vocab_size):
            raise ValueError(f"GPT: `idx` holds token ids in [{int(idx.min())}, {int(idx.max())}], but vocab_size={self.vocab_size} "
                             f"allows [0, {self.vocab_size - 1}]")

        x = self.token_embedding(idx)  # (B, T, C)
        if self.positions == "sinusoidal":
            x = x * math.sqrt(self.n_embd)  # (B, T, C): as in Vaswani et al., so the fixed waves do not drown the tokens
        position = self._position_encoding(start, T, idx.device)
        if position is not None:
            x = x + position  # (B, T, C) + (T, C)
        x = self.drop(x)  # (B, T, C)
        for block in self.blocks:
            x = block(x, cache, start)  # (B, T, C)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)

        if targets is None:
            return logits, None
        if not isinstance(targets, Tensor) or targets.shape != idx.shape:
            raise ValueError(f"GPT: `targets` must have the shape of idx {tuple(idx.shape)}, got {_describe(targets)}")
        if targets.dtype != torch.long:
            raise TypeError(f"GPT: `targets` must hold integer token ids (torch.long), got dtype {targets.dtype}")
        if targets.device != idx.device:
            raise ValueError(f"GPT: `targets` must be on the device of idx ({idx.device}), got a tensor on {targets.device}")
        counted = targets[targets != -100]  # the positions that count in the loss
        if counted.numel() and (int(counted.min()) < 0 or int(counted.max()) >= self.vocab_size):
            raise ValueError(f"GPT: `targets` holds token ids in [{int(counted.min())}, {int(counted.max())}]; expected ids in "
                             f"[0, {self.vocab_size - 1}], or -100 for a position without loss")
        loss = F.cross_entropy(logits.reshape(B * T, self.vocab_size), targets.reshape(B * T))  # mean over positions, -100 ignored
        return logits, loss

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> Tensor:
        """Append ``max_new_tokens`` tokens to ``idx``, one at a time, each drawn from the model's prediction.

        Every step sees at most the last ``block_size`` tokens. Without the cache each step runs
        the whole (cropped) context through the model. With the cache (``attention="dot"``) the
        first step runs the prompt and keeps every layer's keys and values; later steps run only
        the new token. When the context grows past ``block_size`` the window slides, every
        position shifts, and the cache is re-filled from the cropped window, exactly what the
        uncached path computes. Synthesizer attention has no keys to cache: it always
        recomputes (``use_cache`` is ignored). Both paths give the same tokens (logits equal up
        to float rounding). The model runs in eval mode (no dropout) and is put back after.

        Args:
            idx: the prompt, token ids.
            max_new_tokens: how many tokens to add (>= 0).
            temperature: 0 = greedy (argmax); else see :func:`sample_next_token`.
            top_k: sample only among the k most likely tokens.
            use_cache: keep keys and values between steps.
            generator: the random stream of the draws (on the model's device).

        Shape:
            - idx: :math:`(B, T)`; output: :math:`(B, T + \\text{max\\_new\\_tokens})`
        """
        self._check_idx(idx)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"GPT.generate: `max_new_tokens` must be an int >= 0, got {max_new_tokens!r}")
        _check_sampling("GPT.generate", temperature, top_k, self.vocab_size, generator, self.token_embedding.weight.device)
        if not isinstance(use_cache, bool):
            raise TypeError(f"GPT.generate: `use_cache` must be a bool, got {use_cache!r}")
        was_training = self.training
        self.eval()
        try:
            cache = None
            for _ in range(max_new_tokens):
                if not use_cache or self.attention != "dot":
                    logits, _ = self(idx[:, -self.block_size :])  # (B, T', V): the whole window again
                elif cache is None or idx.shape[1] > self.block_size:
                    cache = KVCache(self.n_layer)  # start, or the window slid: every position changed
                    logits, _ = self(idx[:, -self.block_size :], cache=cache)  # (B, T', V)
                else:
                    logits, _ = self(idx[:, -1:], cache=cache)  # (B, 1, V): only the newest token
                next_token = sample_next_token(logits[:, -1], temperature, top_k, generator)  # (B, 1)
                idx = torch.cat([idx, next_token], dim=1)  # (B, T + 1)
        finally:
            self.train(was_training)
        return idx


@torch.no_grad()
def evaluate_loss(model: GPT, data: Tensor, batch_size: int = 64) -> float:
    """The mean next-token cross-entropy of ``model`` over every non-overlapping window of ``data``.

    Deterministic: the windows are ``data[i * T : i * T + T]`` (T = ``model.block_size``), each
    predicting the token after each of its positions, so every token of ``data`` but the last
    few is predicted once. The model runs in eval mode and is put back after.

    Args:
        model: a :class:`GPT`.
        data: token ids, longer than ``model.block_size``.
        batch_size: windows per forward pass.

    Shape:
        - data: :math:`(N,)`
    """
    if not isinstance(model, GPT):
        raise TypeError(f"evaluate_loss: `model` must be a GPT, got {type(model).__name__}")
    T = model.block_size
    if not isinstance(data, Tensor) or data.dim() != 1 or len(data) <= T:
        raise ValueError(f"evaluate_loss: `data` must be a 1-D tensor longer than block_size={T}, got {_describe(data)}")
    if data.dtype not in (torch.long, torch.int32):
        raise TypeError(f"evaluate_loss: `data` must hold integer token ids (torch.long or torch.int32), got dtype {data.dtype}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"evaluate_loss: `batch_size` must be a positive int, got {batch_size!r}")
    if int(data.min()) < 0 or int(data.max()) >= model.vocab_size:
        raise ValueError(f"evaluate_loss: `data` holds token ids in [{int(data.min())}, {int(data.max())}], but the model's "
                         f"vocab_size={model.vocab_size} allows [0, {model.vocab_size - 1}]")
    n_windows = (len(data) - 1) // T
    device = next(model.parameters()).device
    inputs = data[: n_windows * T].view(n_windows, T).to(device, torch.long)  # (W, T)
    targets = data[1 : n_windows * T + 1].view(n_windows, T).to(device, torch.long)  # (W, T)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for i in range(0, n_windows, batch_size):
            _, loss = model(inputs[i : i + batch_size], targets[i : i + batch_size])
            total += loss.item() * len(inputs[i : i + batch_size])
    finally:
        model.train(was_training)
    return total / n_windows
