"""Toy sequence-to-sequence tasks on digits, generated on the fly (no download), and a small model.

A task maps a sequence of digits to another: ``"copy"`` (the same digits), ``"reverse"``
(right to left) or ``"sort"`` (ascending). Sequences have random lengths and are padded, so
every mask of the Transformer has a job:

=====================  ===================================  ==============================
tensor                 example (reverse, max_len=5)          mask built from it
=====================  ===================================  ==============================
``src``                ``3 1 4 P P``                          ``src_key_padding_mask`` (and memory's)
``tgt_in``             ``B 4 1 3 E P``                        causal ``tgt_mask`` + ``tgt_key_padding_mask``
``tgt_out``            ``4 1 3 E P P``                        the loss ignores ``P``
=====================  ===================================  ==============================

(``P`` = PAD, ``B`` = BOS, ``E`` = EOS.) The decoder reads ``tgt_in`` (the answer shifted right by
one, after BOS) and learns to predict ``tgt_out``, one token ahead, never seeing the future
thanks to the causal mask. At inference :func:`greedy_decode` feeds its own predictions back in.

Reverse is a fixed rearrangement of positions (a good case for synthesizers, notebook 06); sort
needs tokens to compare their contents (token-token attention).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .transformer import Transformer, generate_square_subsequent_mask

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "TASKS",
    "VOCAB_SIZE",
    "Seq2SeqTransformer",
    "ToyBatch",
    "decode_tokens",
    "greedy_decode",
    "make_batch",
    "sequence_accuracy",
    "sequence_loss",
]

N_DIGITS = 10
PAD, BOS, EOS = 10, 11, 12
VOCAB_SIZE = 13
_NAMES = {PAD: "_", BOS: "<s>", EOS: "</s>"}


def _copy(digits: Tensor, lengths: Tensor) -> Tensor:
    return digits


def _reverse(digits: Tensor, lengths: Tensor) -> Tensor:
    positions = torch.arange(digits.size(1), device=digits.device)  # (L,)
    source = (lengths[:, None] - 1 - positions).clamp(min=0)  # (N, L): read position len-1-i
    return digits.gather(1, source)  # (N, L); positions >= len are padding anyway


def _sort(digits: Tensor, lengths: Tensor) -> Tensor:
    positions = torch.arange(digits.size(1), device=digits.device)  # (L,)
    padded = positions[None, :] >= lengths[:, None]  # (N, L)
    return digits.masked_fill(padded, N_DIGITS).sort(dim=1).values  # padding (10) sorts last: (N, L)


TASKS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"copy": _copy, "reverse": _reverse, "sort": _sort}


class ToyBatch(NamedTuple):
    """A batch of a toy task (all ``long``, padded with ``PAD``).

    Attributes:
        src: (N, S) digits, S = max_len.
        tgt_in: (N, T) ``BOS`` then the answer, T = max_len + 1 (the decoder's input).
        tgt_out: (N, T) the answer then ``EOS`` (what the decoder must predict).
    """

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor


def make_batch(
    task: str,
    batch_size: int,
    min_len: int = 3,
    max_len: int = 8,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> ToyBatch:
    """A random batch of ``task``: digits of random lengths in [min_len, max_len], padded to max_len.

    Args:
        task: ``"copy"``, ``"reverse"`` or ``"sort"``.
        batch_size: N.
        min_len, max_len: length range of the digit sequences (1 <= min_len <= max_len).
        generator: a seeded ``torch.Generator`` (CPU) for reproducible batches.
        device: where the returned tensors live (generated on the CPU, then moved).

    Returns:
        :class:`ToyBatch` ``(src (N, max_len), tgt_in (N, max_len + 1), tgt_out (N, max_len + 1))``.
    """
    if task not in TASKS:
        raise ValueError(f"make_batch: `task` must be one of {sorted(TASKS)}, got {task!r}")
    for name, value in (("batch_size", batch_size), ("min_len", min_len), ("max_len", max_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"make_batch: `{name}` must be a positive int, got {value!r}")
    if min_len > max_len:
        raise ValueError(f"make_batch: `min_len` ({min_len}) must be <= `max_len` ({max_len})")
    digits = torch.randint(0, N_DIGITS, (batch_size, max_len), generator=generator)  # (N, L)
    lengths = torch.randint(min_len, max_len + 1, (batch_size,), generator=generator)  # (N,)
    positions = torch.arange(max_len)  # (L,)
    padded = positions[None, :] >= lengths[:, None]  # (N, L), True = padding
    src = digits.masked_fill(padded, PAD)  # (N, L)
    answer = TASKS[task](digits, lengths).masked_fill(padded, PAD)  # (N, L)
    column = torch.full((batch_size, 1), PAD, dtype=torch.long)  # (N, 1)
    tgt_out = torch.cat([answer, column], dim=1)  # (N, L+1)
    tgt_out[torch.arange(batch_size), lengths] = EOS  # EOS right after the answer
    tgt_in = torch.cat([column.fill_(BOS), answer], dim=1)  # (N, L+1): BOS, answer
    return ToyBatch(src.to(device), tgt_in.to(device), tgt_out.to(device))


def decode_tokens(tokens: Tensor | list[int]) -> str:
    """Token ids -> a readable string: digits as digits, ``<s>``/``</s>``, padding as ``_``; stops after ``</s>``."""
    out = []
    for t in torch.as_tensor(tokens).tolist():
        out.append(_NAMES.get(t, str(t)))
        if t == EOS:
            break
    return " ".join(out)


class Seq2SeqTransformer(nn.Module):
    """Token embeddings + learned positions + :class:`course_utils.Transformer` + a linear read-out.

    Args:
        vocab_size: number of token ids (default: digits, PAD, BOS, EOS).
        d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout, norm_first:
            passed to the Transformer (``batch_first=True``).
        max_len: longest sequence the position table covers.
        transformer_cls: the Transformer class (``course_utils.Transformer`` or ``torch.nn.Transformer``).
        self_attn_factory: passed to ``course_utils.Transformer`` (e.g. a synthesizer; notebook 06).

    Shape:
        - src: (N, S) token ids; tgt_in: (N, T) token ids
        - output: (N, T, vocab_size) logits
    """

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        d_model: int = 32,
        nhead: int = 4,
        num_encoder_layers: int = 1,
        num_decoder_layers: int = 1,
        dim_feedforward: int = 64,
        dropout: float = 0.0,
        max_len: int = 16,
        norm_first: bool = False,
        *,
        transformer_cls: type[nn.Module] = Transformer,
        self_attn_factory: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        extra = {} if self_attn_factory is None else {"self_attn_factory": self_attn_factory}
        self.transformer = transformer_cls(
            d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward, dropout,
            batch_first=True, norm_first=norm_first, **extra,
        )
        self.readout = nn.Linear(d_model, vocab_size)

    def embed(self, tokens: Tensor) -> Tensor:
        """(N, L) token ids -> (N, L, d_model): scaled token embedding + position embedding."""
        length = tokens.size(1)
        if length > self.max_len:
            raise ValueError(f"Seq2SeqTransformer: sequences of length {length} exceed max_len={self.max_len}")
        positions = torch.arange(length, device=tokens.device)  # (L,)
        return self.token_embedding(tokens) * self.d_model**0.5 + self.position_embedding(positions)  # (N, L, E)

    def encode(self, src: Tensor) -> Tensor:
        """(N, S) -> memory (N, S, d_model); padded source positions are masked."""
        return self.transformer.encoder(self.embed(src), src_key_padding_mask=src == PAD)  # (N, S, E)

    def decode(self, tgt_in: Tensor, memory: Tensor, src: Tensor) -> Tensor:
        """(N, T) decoder input + memory -> (N, T, vocab_size) logits, causally masked."""
        T = tgt_in.size(1)
        causal = generate_square_subsequent_mask(T, device=tgt_in.device)  # (T, T): -inf above the diagonal
        tgt_padding = torch.zeros(tgt_in.shape, device=tgt_in.device).masked_fill(tgt_in == PAD, float("-inf"))  # (N, T)
        src_padding = torch.zeros(src.shape, device=src.device).masked_fill(src == PAD, float("-inf"))  # (N, S)
        hidden = self.transformer.decoder(
            self.embed(tgt_in), memory, tgt_mask=causal, tgt_key_padding_mask=tgt_padding,
            memory_key_padding_mask=src_padding,
        )  # (N, T, E)
        return self.readout(hidden)  # (N, T, V)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits (N, T, vocab_size) for the next token at every position of ``tgt_in``."""
        return self.decode(tgt_in, self.encode(src), src)


def sequence_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over every non-padding target token.

    Shape:
        - logits: (N, T, V); targets: (N, T) token ids (``PAD`` is ignored)
    """
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)  # (N*T, V) vs (N*T,)


@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, src: Tensor, max_new_tokens: int | None = None) -> Tensor:
    """Generate answers one token at a time, always taking the most likely next token.

    The source is encoded once; the decoder then reruns on the growing answer (BOS, then its own
    predictions) until every sequence has produced EOS. Positions after EOS are ``PAD``.

    Args:
        model: a trained :class:`Seq2SeqTransformer` (put in eval mode for the call).
        src: (N, S) token ids.
        max_new_tokens: longest answer (default: S + 1, room for EOS).

    Returns:
        (N, max_new_tokens) token ids, comparable with ``ToyBatch.tgt_out``.
    """
    was_training = model.training
    model.eval()
    try:
        steps = src.size(1) + 1 if max_new_tokens is None else max_new_tokens
        memory = model.encode(src)  # (N, S, E), computed once
        answer = torch.full((src.size(0), 1), BOS, dtype=torch.long, device=src.device)  # (N, 1)
        finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)  # (N,)
        for _ in range(steps):
            logits = model.decode(answer, memory, src)  # (N, t, V)
            next_token = logits[:, -1].argmax(dim=-1)  # (N,): most likely token after the last one
            next_token = next_token.masked_fill(finished, PAD)  # (N,)
            answer = torch.cat([answer, next_token[:, None]], dim=1)  # (N, t+1)
            finished |= next_token == EOS
            if bool(finished.all()):
                break
        out = answer[:, 1:]  # drop BOS: (N, t)
        if out.size(1) < steps:
            out = F.pad(out, (0, steps - out.size(1)), value=PAD)  # (N, steps)
        return out
    finally:
        model.train(was_training)


def sequence_accuracy(predicted: Tensor, targets: Tensor) -> dict[str, float]:
    """Exact-match and per-token accuracy of predicted answers against ``tgt_out``.

    Args:
        predicted: (N, T) token ids from :func:`greedy_decode`.
        targets: (N, T) ``ToyBatch.tgt_out``.

    Returns:
        ``{"sequence": fraction of answers entirely right, "token": fraction of non-padding target tokens right}``.
    """
    if predicted.shape != targets.shape:
        raise ValueError(f"sequence_accuracy: `predicted` {tuple(predicted.shape)} and `targets` {tuple(targets.shape)} differ")
    real = targets != PAD  # (N, T)
    correct = (predicted == targets) | ~real  # (N, T)
    return {
        "sequence": correct.all(dim=1).float().mean().item(),
        "token": ((predicted == targets) & real).sum().item() / max(1, int(real.sum())),
    }
