"""Exercises of notebook 09 (registered on import): the pre-LN block, weight tying, top-k sampling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..gpt import CausalSelfAttention, sample_next_token
from ..i18n import N_
from . import isolation
from .core import Case, Exercise, Mistake, register

# --------------------------------------------------------------------------- 09.block


def block_forward(x: torch.Tensor, attn: nn.Module, mlp: nn.Module, ln1: nn.Module, ln2: nn.Module) -> torch.Tensor:
    """Reference for 09.block: a pre-LN block, ``x + attn(ln1(x))`` then ``x + mlp(ln2(x))``.

    Shape:
        - x: :math:`(B, T, C)`; output: the same shape
    """
    x = x + attn(ln1(x))  # (B, T, C)
    return x + mlp(ln2(x))  # (B, T, C)


def _block_cases():
    def case(label, B, T, C, n_head, seed):
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        attn = CausalSelfAttention(C, n_head)
        mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))
        ln1, ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
        with torch.no_grad():
            for ln in (ln1, ln2):  # different gains and shifts, so that swapping them shows
                ln.weight.copy_(1.0 + 0.5 * torch.randn(C, generator=g))
                ln.bias.copy_(0.5 * torch.randn(C, generator=g))
        x = torch.randn(B, T, C, generator=g) * 2.0 + 1.0
        return Case(label, (x, attn, mlp, ln1, ln2))

    return [case(N_("x of shape (2, 5, 16), 4 heads"), 2, 5, 16, 4, 0), case(N_("x of shape (1, 7, 8), 2 heads"), 1, 7, 8, 2, 1)]


def _observe_block(candidate, case):
    return candidate(*case.args)


def _block_post_ln(x, attn, mlp, ln1, ln2):
    x = ln1(x + attn(x))
    return ln2(x + mlp(x))


def _block_no_residuals(x, attn, mlp, ln1, ln2):
    return mlp(ln2(attn(ln1(x))))


def _block_normalised_residual(x, attn, mlp, ln1, ln2):
    h = ln1(x)
    x = h + attn(h)
    h = ln2(x)
    return h + mlp(h)


def _block_ln1_twice(x, attn, mlp, ln1, ln2):
    x = x + attn(ln1(x))
    return x + mlp(ln1(x))


def _block_parallel(x, attn, mlp, ln1, ln2):
    return x + attn(ln1(x)) + mlp(ln2(x))


def _block_mlp_first(x, attn, mlp, ln1, ln2):
    x = x + mlp(ln2(x))
    return x + attn(ln1(x))


register(
    Exercise(
        id="09.block",
        title=N_("The pre-LN transformer block: two residual sublayers, each normalising its input"),
        reference=block_forward,
        cases=_block_cases,
        observe=_observe_block,
        mistakes=[
            Mistake("post-LN", N_("you normalised AFTER each residual sum (post-LN, the 2017 layout): pre-LN is x + attn(ln1(x)), "
                    "then x + mlp(ln2(x)), with no norm on the residual stream itself"), _block_post_ln),
            Mistake("no residuals", N_("there are no residual connections: add each sublayer's output to its input, x = x + attn(ln1(x))"),
                    _block_no_residuals),
            Mistake("residual from the normalised x", N_("your residual adds the NORMALISED x (h = ln1(x); h + attn(h)): the stream "
                    "must carry the raw x, x + attn(ln1(x))"), _block_normalised_residual),
            Mistake("ln1 twice", N_("you used ln1 before the MLP too: each sublayer has its own LayerNorm (ln2 before the MLP)"),
                    _block_ln1_twice),
            Mistake("parallel sublayers", N_("your MLP reads the block's input, in parallel with the attention (x + attn(ln1(x)) + "
                    "mlp(ln2(x))); in this block the MLP reads the stream AFTER the attention was added"), _block_parallel),
            Mistake("MLP first", N_("you applied the MLP before the attention: attention first, x + attn(ln1(x)), then the MLP"),
                    _block_mlp_first),
        ],
        atol=1e-5,
        rtol=1e-4,
        minutes=8,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 09.tied_lm


class TiedBigramLM(nn.Module):
    """Reference for 09.tied_lm: embed each token, score the next one with the SAME matrix.

    ``self.token_embedding = nn.Embedding(vocab_size, n_embd)``, ``self.lm_head =
    nn.Linear(n_embd, vocab_size, bias=False)`` whose weight IS the embedding's weight.

    Shape:
        - idx: :math:`(B, T)`; logits :math:`(B, T, V)`
    """

    def __init__(self, vocab_size: int, n_embd: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.token_embedding.weight  # one Parameter, used twice

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.token_embedding(idx))  # (B, T, C) -> (B, T, V)


def _tied_cases():
    g = torch.Generator().manual_seed(9)
    return [
        Case(N_("vocab_size=11, n_embd=6, idx of shape (2, 5)"), (11, 6, torch.randint(0, 11, (2, 5), generator=g))),
        Case(N_("vocab_size=7, n_embd=4, idx of shape (1, 9)"), (7, 4, torch.randint(0, 7, (1, 9), generator=g))),
    ]


def _observe_tied(cls, case):
    vocab_size, n_embd, idx = case.args
    model = cls(vocab_size, n_embd)
    n_parameters = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(vocab_size)
    with torch.no_grad():  # set the embedding to known values: a tied head follows, an untied one does not
        model.token_embedding.weight.copy_(torch.randn(vocab_size, n_embd, generator=g))
    logits = model(idx)
    return {N_("number of parameters"): n_parameters, N_("logits after setting the embedding"): logits}


class _Untied(TiedBigramLM):
    def __init__(self, vocab_size, n_embd):
        nn.Module.__init__(self)
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)


class _CopiedOnce(_Untied):
    def __init__(self, vocab_size, n_embd):
        super().__init__(vocab_size, n_embd)
        with torch.no_grad():
            self.lm_head.weight.copy_(self.token_embedding.weight)


class _DataShared(_Untied):
    def __init__(self, vocab_size, n_embd):
        super().__init__(vocab_size, n_embd)
        self.lm_head.weight.data = self.token_embedding.weight.data


class _TiedWithBias(TiedBigramLM):
    def __init__(self, vocab_size, n_embd):
        nn.Module.__init__(self)
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)
        self.lm_head.weight = self.token_embedding.weight


register(
    Exercise(
        id="09.tied_lm",
        title=N_("Weight tying: the LM head and the token embedding share one matrix"),
        reference=TiedBigramLM,
        cases=_tied_cases,
        observe=_observe_tied,
        mistakes=[
            Mistake("untied", N_("the LM head has its own weight: tie it with self.lm_head.weight = self.token_embedding.weight"),
                    _Untied),
            Mistake("copied once", N_("you COPIED the embedding into the head once: the two separate parameters drift apart as soon "
                    "as either changes; assign the Parameter itself, self.lm_head.weight = self.token_embedding.weight"), _CopiedOnce),
            Mistake("shared storage, two parameters", N_("the head follows the embedding, but the model has two Parameter objects "
                    "that share one storage (as `.data = ...` or nn.Parameter(self.token_embedding.weight) make): they are "
                    "counted twice and each gets its own gradient and optimizer state; assign the Parameter itself, "
                    "self.lm_head.weight = self.token_embedding.weight"),
                    _DataShared),
            Mistake("head with a bias", N_("your LM head has a bias (vocab_size extra parameters): build it with bias=False"),
                    _TiedWithBias),
        ],
        minutes=5,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 09.sample


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, generator: torch.Generator) -> torch.Tensor:
    """Reference for 09.sample: greedy at temperature 0, else temperature, top-k, softmax, one multinomial draw.

    Shape:
        - logits: :math:`(B, V)`; output :math:`(B, 1)`, int64
    """
    return sample_next_token(logits, temperature, top_k, generator)


def _sample_cases():
    g = torch.Generator().manual_seed(10)
    logits = torch.randn(300, 8, generator=g) * 2.0  # (B, V)
    tied = torch.randint(0, 4, (200, 9), generator=g).float()  # (B, V): whole numbers, so the k-th largest is often tied
    return [
        Case(N_("temperature=1.0, top_k=None"), (logits, 1.0, None)),
        Case(N_("temperature=0.5, top_k=3"), (logits, 0.5, 3)),
        Case(N_("temperature=2.0, top_k=5"), (logits, 2.0, 5)),
        Case(N_("temperature=0 (greedy), top_k=None"), (logits, 0.0, None)),
        Case(N_("logits with ties at the k-th largest, temperature=1.0, top_k=2"), (tied, 1.0, 2)),
    ]


#: The seeds of the candidate's generator (and the key of each one's tokens); torch's global generator is seeded differently each time.
SAMPLE_SEEDS = {0: N_("tokens drawn with generator seeded 0"), 1: N_("tokens drawn with generator seeded 1"),
                2: N_("tokens drawn with generator seeded 2")}
FROM_GENERATOR = N_("the draws come from `generator` (not from torch's global random state)")


def _observe_sample(candidate, case):
    """The tokens drawn with generators seeded 0, 1, 2, and whether `generator` (and nothing else) decides them.

    Before each call torch's global generator is seeded with another number, so a candidate
    that draws from it, or reseeds it, draws differently from the reference.
    """
    logits, temperature, top_k = case.args
    draws = []
    for seed in (*SAMPLE_SEEDS, 0):
        isolation.reseed(1000 + len(draws))
        draws.append(candidate(logits, temperature, top_k, torch.Generator().manual_seed(seed)))
    *draws, again = draws
    tokens = {SAMPLE_SEEDS[seed]: d for seed, d in zip(SAMPLE_SEEDS, draws)}
    if all(isinstance(d, torch.Tensor) for d in (*draws, again)) and len({(d.shape, d.dtype) for d in (*draws, again)}) == 1:
        if not torch.equal(draws[0], again):  # the same generator seed, another global state: other draws
            return {FROM_GENERATOR: False}
        if temperature != 0 and all(torch.equal(draws[0], d) for d in draws[1:]):  # the generator's seed changes nothing
            return {FROM_GENERATOR: False} | tokens
    return {FROM_GENERATOR: True} | tokens


def _sample(logits, temperature, top_k, generator, *, scale="divide", keep="largest", fill=float("-inf"), strict=True,
            greedy_at_zero=True, dim=-1, always_greedy=False, global_rng=False):
    if always_greedy or (greedy_at_zero and temperature == 0):
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature if scale == "divide" else logits * temperature
    if top_k is not None:
        if keep == "exactly k":
            drop = ~torch.zeros_like(logits, dtype=torch.bool).scatter(-1, torch.topk(logits, top_k, dim=-1).indices, True)
        elif keep == "largest":
            kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
            drop = logits < kth if strict else logits <= kth
        else:
            kth = torch.topk(logits, top_k, dim=-1, largest=False).values[:, -1:]
            drop = logits > kth
        logits = logits.masked_fill(drop, fill)
    probs = F.softmax(logits, dim=dim)
    if global_rng:
        if global_rng == "reseeded":
            torch.manual_seed(0)
        return torch.multinomial(probs, num_samples=1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


register(
    Exercise(
        id="09.sample",
        title=N_("Greedy, temperature and top-k sampling of the next token"),
        reference=sample_next,
        cases=_sample_cases,
        observe=_observe_sample,
        mistakes=[
            Mistake("temperature multiplied", N_("you multiplied the logits by the temperature: divide them (T < 1 sharpens, T > 1 flattens)"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, scale="multiply")),
            Mistake("k smallest kept", N_("your top-k kept the k LEAST likely tokens: keep the k largest logits"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, keep="smallest")),
            Mistake("filled with 0", N_("you set the logits outside the top k to 0, and exp(0) > 0 keeps them possible: use float('-inf')"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, fill=0.0)),
            Mistake("k-th dropped", N_("you dropped logits <= the k-th largest, which keeps only k - 1 tokens: drop those strictly below it"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, strict=False)),
            Mistake("no greedy case", N_("temperature 0 divides by zero (inf and NaN probabilities): at temperature 0 return the argmax"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, greedy_at_zero=False)),
            Mistake("softmax over the batch", N_("your softmax normalised over the batch (dim=0): each row's probabilities over the "
                    "vocabulary must sum to 1, dim=-1"), lambda lo, t, k, g: _sample(lo, t, k, g, dim=0)),
            Mistake("always greedy", N_("you always took the argmax: sample with torch.multinomial unless the temperature is 0"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, always_greedy=True)),
            Mistake("exactly k kept", N_("you kept exactly k tokens (torch.topk's indices), dropping some tied with the k-th largest "
                    "logit; the rule keeps every token tied with it: set to -inf only the logits strictly below it"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, keep="exactly k")),
            Mistake("global generator", N_("your draws do not come from `generator`: they follow torch's global random state, "
                    "so they change with whatever ran before; pass generator=generator to torch.multinomial"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, global_rng="global")),
            Mistake("reseeded global generator", N_("your draws do not come from `generator`: you seed torch's global generator inside "
                    "your function (torch.manual_seed), so every seed of `generator` gives the same tokens; pass "
                    "generator=generator to torch.multinomial and seed nothing"),
                    lambda lo, t, k, g: _sample(lo, t, k, g, global_rng="reseeded")),
        ],
        minutes=10,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 09.lm_loss


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Reference for 09.lm_loss: the mean cross-entropy of each position predicting the NEXT token.

    Position t's logits score token t + 1; the last position has no next token, and positions
    whose next token is ``pad_id`` do not count.

    Shape:
        - logits: :math:`(B, T, V)`; tokens: :math:`(B, T)`; output: a scalar
    """
    B, T, V = logits.shape
    predictions = logits[:, :-1].reshape(B * (T - 1), V)  # (B*(T-1), V): positions 0 .. T-2
    targets = tokens[:, 1:].reshape(B * (T - 1))  # (B*(T-1),): tokens 1 .. T-1, the next token of each
    return F.cross_entropy(predictions, targets, ignore_index=pad_id)


def _lm_cases():
    g = torch.Generator().manual_seed(12)

    def case(label, B, T, V, pad_id, padded):
        logits = torch.randn(B, T, V, generator=g) * 2.0  # (B, T, V)
        tokens = torch.randint(0, V, (B, T), generator=g)  # (B, T)
        tokens = tokens.masked_fill(tokens == pad_id, (pad_id + 1) % V)  # pad only where a case puts it
        for row, length in padded:  # a shorter sequence, padded at its end
            tokens[row, length:] = pad_id
        return Case(label, (logits, tokens, pad_id))

    return [
        case(N_("logits (2, 7, 11), no padding, pad_id=0"), 2, 7, 11, 0, []),
        case(N_("logits (3, 5, 13), the second sequence padded after 2 tokens, pad_id=4"), 3, 5, 13, 4, [(1, 2)]),
        case(N_("logits (4, 9, 6), two sequences padded, pad_id=5"), 4, 9, 6, 5, [(0, 6), (3, 3)]),
    ]


def _lm(logits, tokens, pad_id, *, shift="next", reduction="mean", ignore=True, wrap=False, transpose=False, probabilities=False):
    B, T, V = logits.shape
    if wrap:  # every position predicts the next one, the last one "predicting" the first
        predictions, targets = logits, tokens.roll(-1, dims=1)
    elif shift == "next":
        predictions, targets = logits[:, :-1], tokens[:, 1:]
    elif shift == "none":
        predictions, targets = logits, tokens
    else:  # "previous": position t + 1's logits scored against token t
        predictions, targets = logits[:, 1:], tokens[:, :-1]
    if transpose:  # flattened time-major for the logits, batch-major for the targets
        predictions = predictions.transpose(0, 1)
    predictions = predictions.reshape(-1, V)
    if probabilities:
        predictions = F.softmax(predictions, dim=-1)
    return F.cross_entropy(predictions, targets.reshape(-1), ignore_index=pad_id if ignore else -100, reduction=reduction)


def _lm_no_flatten(logits, tokens, pad_id):
    return F.cross_entropy(logits[:, :-1], tokens[:, 1:], ignore_index=pad_id)


def _lm_mean_of_sequence_means(logits, tokens, pad_id):
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:], ignore_index=pad_id, reduction="none")  # (B, T-1)
    counted = (tokens[:, 1:] != pad_id).float()
    return ((losses * counted).sum(dim=1) / counted.sum(dim=1)).mean()


register(
    Exercise(
        id="09.lm_loss",
        title=N_("The language-model loss: each position predicts the next token"),
        reference=lm_loss,
        cases=_lm_cases,
        mistakes=[
            Mistake("no shift", N_("you scored each position against its OWN token (no shift): position t must predict token t + 1, "
                    "so pair logits[:, :-1] with tokens[:, 1:]"), lambda lo, tk, p: _lm(lo, tk, p, shift="none")),
            Mistake("shifted the wrong way", N_("you shifted the wrong way (logits[:, 1:] against tokens[:, :-1]): each position "
                    "would predict the token BEFORE it; pair logits[:, :-1] with tokens[:, 1:]"),
                    lambda lo, tk, p: _lm(lo, tk, p, shift="previous")),
            Mistake("wrapped around", N_("the last position has no next token, but you gave it one (tokens.roll(-1) makes it "
                    "predict the first token): drop the last position, logits[:, :-1] with tokens[:, 1:]"),
                    lambda lo, tk, p: _lm(lo, tk, p, wrap=True)),
            Mistake("padding counted", N_("the padded positions count in your loss: pass ignore_index=pad_id to F.cross_entropy, "
                    "so that predicting a pad token costs nothing and the mean runs over the real tokens only"),
                    lambda lo, tk, p: _lm(lo, tk, p, ignore=False)),
            Mistake("sum, not mean", N_("you summed the losses (reduction='sum'); the loss is their MEAN over the counted positions, "
                    "so that it does not grow with the batch or the length"), lambda lo, tk, p: _lm(lo, tk, p, reduction="sum")),
            Mistake("mixed-up flattening", N_("your logits and targets are flattened in different orders (one batch-major, the other "
                    "time-major after a transpose), so each prediction is scored against another position's token: reshape "
                    "both straight from (B, T - 1, ...)"), lambda lo, tk, p: _lm(lo, tk, p, transpose=True)),
            Mistake("softmax first", N_("you passed probabilities to F.cross_entropy, which applies log-softmax itself: pass the "
                    "raw logits"), lambda lo, tk, p: _lm(lo, tk, p, probabilities=True)),
            Mistake("vocabulary not on dim 1", N_("F.cross_entropy wants the classes on dim 1: (N, V) logits with (N,) targets, or "
                    "(B, V, T) with (B, T); flatten to (B * (T - 1), V) and (B * (T - 1),)"), _lm_no_flatten),
            Mistake("mean of sequence means", N_("you averaged each sequence's loss, then the sequences: a short, padded sequence "
                    "then weighs as much as a long one; take one mean over every counted position"), _lm_mean_of_sequence_means),
        ],
        atol=1e-5,
        rtol=1e-4,
        minutes=15,
        difficulty=3,
    )
)
