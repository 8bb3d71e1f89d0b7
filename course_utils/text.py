"""The course's text corpus, a character-level tokenizer and a deterministic train/held-out split (notebook 09).

The corpus is the English text of the Python Language Reference topics shipped with CPython
3.11 (``pydoc_data/topics.py``, PSF licence): see ``course_utils/data/README.md``. Nothing is
downloaded.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from importlib import resources

import torch
from torch import Tensor

__all__ = ["CharTokenizer", "get_batch", "load_corpus", "train_val_split"]

CORPUS_FILE = "python_reference.txt"


def load_corpus() -> str:
    """The course corpus as one string (465,048 characters of the Python Language Reference)."""
    return resources.files("course_utils").joinpath("data", CORPUS_FILE).read_text(encoding="utf-8")


class CharTokenizer:
    """One token per distinct character of a text, numbered in sorted order.

    Args:
        text: the text whose characters make the vocabulary.

    Attributes:
        chars: the vocabulary, sorted; token i is ``chars[i]``.
        vocab_size: ``len(chars)``.
    """

    def __init__(self, text: str) -> None:
        if not isinstance(text, str) or not text:
            raise ValueError(f"CharTokenizer: `text` must be a non-empty str, got {text!r:.40}")
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        self._index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> Tensor:
        """Characters -> token ids, a 1-D int64 tensor. Unknown characters raise a ValueError."""
        if not isinstance(text, str):
            raise TypeError(f"CharTokenizer.encode: `text` must be a str, got {type(text).__name__}")
        unknown = sorted(set(text) - self._index.keys())
        if unknown:
            raise ValueError(f"CharTokenizer.encode: `text` has characters outside the vocabulary: {''.join(unknown)!r}")
        return torch.tensor([self._index[c] for c in text], dtype=torch.long)  # (len(text),)

    def decode(self, ids: Tensor | Iterable[int]) -> str:
        """Token ids (a 1-D integer tensor, or any iterable of ints: a list, a range, a generator) -> text."""
        if isinstance(ids, Tensor):
            if ids.dim() != 1 or ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
                raise ValueError(f"CharTokenizer.decode: `ids` must be a 1-D integer tensor, got dtype {ids.dtype}, shape {tuple(ids.shape)}")
            ids = ids.tolist()
        elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"CharTokenizer.decode: `ids` must be a 1-D integer tensor or an iterable of ints, got {type(ids).__name__}")
        given = list(ids)  # an iterator is read once, here
        indices = [_as_index(i) for i in given]
        bad = [g for g, i in zip(given, indices) if i is None or not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"CharTokenizer.decode: `ids` must be ints in [0, {self.vocab_size}), got {bad[:5]}")
        return "".join(self.chars[i] for i in indices)

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


def train_val_split(data: Tensor, val_fraction: float = 0.1) -> tuple[Tensor, Tensor]:
    """Split a token sequence into a training part and a held-out part: the first and last pieces.

    Contiguous, not shuffled: the held-out text is text the model never saw, not characters
    sprinkled inside its training text. The same input always gives the same split.

    Args:
        data: the whole corpus as token ids.
        val_fraction: the share held out, in (0, 1).

    Shape:
        - data: :math:`(N,)`; outputs :math:`(N - n_{val},)` and :math:`(n_{val},)`,
          :math:`n_{val} = \\lfloor N \\cdot \\text{val\\_fraction} \\rfloor`.
    """
    if not isinstance(data, Tensor) or data.dim() != 1:
        raise ValueError(f"train_val_split: `data` must be a 1-D tensor of token ids, got {_describe(data)}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 < val_fraction < 1.0:
        raise ValueError(f"train_val_split: `val_fraction` must be in (0, 1), got {val_fraction!r}")
    n_val = int(len(data) * val_fraction)
    if n_val == 0 or n_val == len(data):
        raise ValueError(f"train_val_split: {len(data)} tokens with val_fraction={val_fraction} leave an empty part")
    return data[: len(data) - n_val], data[len(data) - n_val :]


def get_batch(data: Tensor, batch_size: int, block_size: int, generator: torch.Generator | None = None, device=None) -> tuple[Tensor, Tensor]:
    """Random windows of ``block_size`` tokens, and the same windows shifted by one: inputs and targets.

    Args:
        data: token ids.
        batch_size: number of windows B (0 gives an empty batch).
        block_size: window length T.
        generator: a CPU generator for the window starts (reproducible batches).
        device: where to put the batch.

    Shape:
        - data: :math:`(N,)`, N > block_size; outputs x, y: :math:`(B, T)`, ``y[:, t] = data[start + t + 1]``.
    """
    if not isinstance(data, Tensor) or data.dim() != 1:
        raise ValueError(f"get_batch: `data` must be a 1-D tensor of token ids, got {_describe(data)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"get_batch: `batch_size` must be an int >= 0, got {batch_size!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"get_batch: `block_size` must be a positive int, got {block_size!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"get_batch: `generator` must be a torch.Generator or None, got {type(generator).__name__}")
    if len(data) <= block_size:
        raise ValueError(f"get_batch: `data` has {len(data)} tokens, it needs more than block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(block_size)  # (T,)
    x = data[starts[:, None] + offsets]  # (B, T)
    y = data[starts[:, None] + offsets + 1]  # (B, T): the next token of every position
    return x.to(device), y.to(device)


def _as_index(i) -> int | None:
    """``i`` as a Python int if it is an integer (int, NumPy integer, 0-d integer tensor), else None."""
    if isinstance(i, (bool, float)) or (isinstance(i, Tensor) and (i.dtype == torch.bool or i.dim() != 0)):
        return None
    try:
        return operator.index(i)
    except TypeError:
        return None


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
