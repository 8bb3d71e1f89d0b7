"""Exercises of notebook 05 (registered on import): the causal mask, where the residuals and norms
go in an encoder layer, the encoder stack with its final norm, and the vision reshape."""

from __future__ import annotations

import torch
from torch import nn

from ..i18n import N_
from ..transformer import TransformerEncoder, TransformerEncoderLayer, generate_square_subsequent_mask
from .core import Case, Exercise, Mistake, register

# --------------------------------------------------------------------------- 05.causal_mask


def causal_mask(size: int, device=None, dtype=None) -> torch.Tensor:
    """Reference for 05.causal_mask: ``nn.Transformer.generate_square_subsequent_mask``.

    Shape:
        - output: (size, size); 0 on and below the diagonal (key j <= query i), -inf above.
    """
    return generate_square_subsequent_mask(size, device=device, dtype=dtype)


def _mask_cases():
    return [
        Case(N_("size=4"), (4,)),
        Case(N_("size=1"), (1,)),
        Case(N_("size=3, dtype=torch.float64"), (3,), {"dtype": torch.float64}),
    ]


def _full(size, value, device=None, dtype=None):
    return torch.full((size, size), value, device=device, dtype=dtype)


register(
    Exercise(
        id="05.causal_mask",
        title=N_("The causal (square subsequent) mask"),
        reference=causal_mask,
        cases=_mask_cases,
        mistakes=[
            Mistake("tril", N_("your mask blocks the PAST and lets every token see the FUTURE: -inf belongs above the "
                    "diagonal (key j > query i), i.e. torch.triu, not torch.tril"),
                    lambda size, device=None, dtype=None: torch.tril(_full(size, float("-inf"), device, dtype), diagonal=-1)),
            Mistake("diagonal 0", N_("your mask also hides each token from itself (diagonal=0): the first token then has no key "
                    "left and softmax gives NaN; keep the diagonal visible with diagonal=1"),
                    lambda size, device=None, dtype=None: torch.triu(_full(size, float("-inf"), device, dtype), diagonal=0)),
            Mistake("diagonal 2", N_("your mask lets each token see the NEXT token (diagonal=2): during training the model "
                    "can copy the answer it is asked to predict; use diagonal=1"),
                    lambda size, device=None, dtype=None: torch.triu(_full(size, float("-inf"), device, dtype), diagonal=2)),
            Mistake("bool allowed", N_("you returned a boolean mask with True = ALLOWED (the convention of "
                    "F.scaled_dot_product_attention); nn.Transformer reads True as BLOCKED, and this exercise asks for "
                    "the float mask: 0 where allowed, -inf where blocked"),
                    lambda size, device=None, dtype=None: torch.ones(size, size, dtype=torch.bool, device=device).tril()),
            Mistake("bool blocked", N_("a boolean mask with True = blocked works in nn.Transformer, but "
                    "generate_square_subsequent_mask returns a FLOAT mask: 0 where allowed, -inf where blocked"),
                    lambda size, device=None, dtype=None: torch.ones(size, size, dtype=torch.bool, device=device).triu(1)),
            Mistake("ones", N_("a float mask is ADDED to the scores: adding 1 (or any finite number) does not block "
                    "anything; use -inf above the diagonal"),
                    lambda size, device=None, dtype=None: torch.triu(_full(size, 1.0, device, dtype), diagonal=1)),
            Mistake("-1e9", N_("-1e9 almost blocks, but the causal mask holds exactly -inf, so blocked weights are exactly 0 "
                    "and nn.Transformer recognises the mask as causal"),
                    lambda size, device=None, dtype=None: torch.triu(_full(size, -1e9, device, dtype), diagonal=1)),
            Mistake("dtype ignored", N_("your mask ignores the `dtype` argument: pass dtype (and device) on to torch.full"),
                    lambda size, device=None, dtype=None: torch.triu(_full(size, float("-inf")), diagonal=1)),
        ],
        minutes=5,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 05.encoder_layer

E, H, FF = 8, 2, 16
_LAYER_KWARGS = dict(d_model=E, nhead=H, dim_feedforward=FF, dropout=0.0, batch_first=True)


class EncoderLayer(TransformerEncoderLayer):
    """Reference for 05.encoder_layer: the residual connections and norms of post-LN and pre-LN.

    ``self._sa_block(x, mask, padding, is_causal)`` is dropout1(self_attn(x, x, x)) and
    ``self._ff_block(x)`` is dropout2(linear2(dropout(activation(linear1(x))))).
    """

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src  # (N, S, E)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)  # (N, S, E)
            x = x + self._ff_block(self.norm2(x))  # (N, S, E)
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))  # (N, S, E)
            x = self.norm2(x + self._ff_block(x))  # (N, S, E)
        return x


class _NoResidual(TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return self._ff_block(self.norm2(x))
        x = self.norm1(self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(self._ff_block(x))


class _NormInsideResidual(TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x))
        x = x + self.norm1(self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return x + self.norm2(self._ff_block(x))


class _AlwaysPreLN(TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src + self._sa_block(self.norm1(src), src_mask, src_key_padding_mask, is_causal)
        return x + self._ff_block(self.norm2(x))


class _AlwaysPostLN(TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = self.norm1(src + self._sa_block(src, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class _ResidualFromNormalised(TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            h = self.norm1(x)
            x = h + self._sa_block(h, src_mask, src_key_padding_mask, is_causal)
            h = self.norm2(x)
            return h + self._ff_block(h)
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x))


class _MasksDropped(TransformerEncoderLayer):
    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), None, None, False)
            return x + self._ff_block(self.norm2(x))
        x = self.norm1(x + self._sa_block(x, None, None, False))
        return self.norm2(x + self._ff_block(x))


def _random_state(module: nn.Module, seed: int) -> dict:
    """A state_dict for ``module`` with random values everywhere (biases and norms included)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.5 + (1.0 if k.endswith("norm1.weight") or k.endswith("norm2.weight") else 0.0)
            for k, v in module.state_dict().items()}


def _layer_cases():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, E, generator=g)  # (N, S, E)
    padding = torch.tensor([[False] * 5, [False] * 3 + [True] * 2])  # (N, S)
    causal = generate_square_subsequent_mask(5)  # (S, S)
    return [
        Case(N_("post-LN (norm_first=False), no mask"), (x,), {"norm_first": False}),
        Case(N_("pre-LN (norm_first=True), no mask"), (x,), {"norm_first": True}),
        Case(N_("post-LN with a causal src_mask and a padding mask"), (x,),
             {"norm_first": False, "src_mask": causal, "src_key_padding_mask": padding, "is_causal": True}),
    ]


def _observe_layer(candidate, case):
    kwargs = dict(case.kwargs)
    layer = candidate(**_LAYER_KWARGS, norm_first=kwargs.pop("norm_first"))
    layer.load_state_dict(_random_state(TransformerEncoderLayer(**_LAYER_KWARGS), seed=1))
    layer.eval()
    return layer(*case.args, **kwargs)


register(
    Exercise(
        id="05.encoder_layer",
        title=N_("Residual connections and LayerNorms of an encoder layer (post-LN and pre-LN)"),
        reference=EncoderLayer,
        cases=_layer_cases,
        observe=_observe_layer,
        mistakes=[
            Mistake("no residual", N_("there is no residual connection: each block's output must be ADDED to its input x "
                    "(x + block(x)), otherwise the layer forgets its input"), _NoResidual),
            Mistake("norm inside the residual", N_("the residual is in the wrong place: you normalised the block's output and "
                    "then added x (x + norm(block(x))); post-LN normalises the SUM: norm1(x + block(x))"), _NormInsideResidual),
            Mistake("always pre-LN", N_("your layer always normalises first (pre-LN); with norm_first=False the norm comes "
                    "AFTER the residual addition: x = norm1(x + sa(x))"), _AlwaysPreLN),
            Mistake("always post-LN", N_("your layer ignores self.norm_first: with norm_first=True (pre-LN) the input of each "
                    "block is normalised and the residual adds the raw x: x = x + sa(norm1(x))"), _AlwaysPostLN),
            Mistake("residual from the normalised input", N_("in pre-LN the residual must carry the RAW x: x = x + "
                    "sa(norm1(x)); you added the block's output to norm1(x) instead"), _ResidualFromNormalised),
            Mistake("masks dropped", N_("the masks never reached self-attention: pass src_mask, src_key_padding_mask and "
                    "is_causal on to self._sa_block"), _MasksDropped),
        ],
        atol=1e-5,
        minutes=10,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 05.encoder_stack


class Encoder(TransformerEncoder):
    """Reference for 05.encoder_stack: every layer in turn, each with the masks, then the optional final norm."""

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src  # (S, N, E)
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask)  # (S, N, E)
        if self.norm is not None:
            output = self.norm(output)  # (S, N, E)
        return output


class _NoFinalNorm(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return output


class _NormEveryLayer(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
            if self.norm is not None:
                output = self.norm(output)
        return output


class _FirstLayerOnly(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for _ in self.layers:
            output = self.layers[0](output, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return self.norm(output) if self.norm is not None else output


class _ReturnInsideLoop(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        for layer in self.layers:
            output = layer(src, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
            return self.norm(output) if self.norm is not None else output


class _EveryLayerOnSrc(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for layer in self.layers:
            output = layer(src, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return self.norm(output) if self.norm is not None else output


class _NormAlways(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for layer in self.layers:
            output = layer(output, src_mask=mask, src_key_padding_mask=src_key_padding_mask)
        return self.norm(output)


class _StackMasksDropped(TransformerEncoder):
    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for layer in self.layers:
            output = layer(output)
        return self.norm(output) if self.norm is not None else output


def _stack_cases():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(5, 2, E, generator=g)  # (S, N, E)
    padding = torch.tensor([[False] * 5, [False] * 4 + [True]])  # (N, S)
    return [
        Case(N_("3 layers and a final norm, no mask"), (x,), {"norm": True}),
        Case(N_("2 layers, no final norm (norm=None)"), (x,), {"norm": False}),
        Case(N_("3 layers, final norm, causal mask and padding"), (x,),
             {"norm": True, "mask": generate_square_subsequent_mask(5), "src_key_padding_mask": padding}),
    ]


def _observe_stack(candidate, case):
    kwargs = dict(case.kwargs)
    with_norm = kwargs.pop("norm")
    layer = TransformerEncoderLayer(E, H, FF, dropout=0.0)
    num_layers = 3 if with_norm else 2
    encoder = candidate(layer, num_layers, nn.LayerNorm(E) if with_norm else None)
    reference = TransformerEncoder(layer, num_layers, nn.LayerNorm(E) if with_norm else None)
    encoder.load_state_dict(_random_state(reference, seed=2 + num_layers))  # every layer (and the norm) different
    encoder.eval()
    return encoder(*case.args, **kwargs)


register(
    Exercise(
        id="05.encoder_stack",
        title=N_("The encoder stack: every layer in turn, then the final norm"),
        reference=Encoder,
        cases=_stack_cases,
        observe=_observe_stack,
        mistakes=[
            Mistake("no final norm", N_("you forgot the final norm: after the last layer apply self.norm (nn.Transformer "
                    "always gives its encoder and decoder one, even for post-LN)"), _NoFinalNorm),
            Mistake("norm after every layer", N_("self.norm is applied once, after the LAST layer; the layers have their "
                    "own norms inside"), _NormEveryLayer),
            Mistake("first layer only", N_("you ran self.layers[0] again and again: call each layer of self.layers in turn, "
                    "they hold different weights"), _FirstLayerOnly),
            Mistake("return inside the loop", N_("your loop returns after the first layer (is `return` indented inside the "
                    "for loop?)"), _ReturnInsideLoop),
            Mistake("every layer on src", N_("every layer must take the PREVIOUS layer's output, not src: "
                    "output = layer(output, ...)"), _EveryLayerOnSrc),
            Mistake("norm is optional", N_("self.norm can be None (TransformerEncoder(layer, n) has no final norm): apply it "
                    "only when it is not None"), _NormAlways),
            Mistake("masks dropped", N_("the masks never reached the layers: pass src_mask=mask and src_key_padding_mask to "
                    "every layer"), _StackMasksDropped),
        ],
        atol=1e-5,
        minutes=8,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 05.image_to_sequence


def image_to_sequence(x: torch.Tensor) -> torch.Tensor:
    """Reference for 05.image_to_sequence: a feature map (B, C, H, W) -> a sequence (H*W, B, C).

    Pixel (h, w) becomes position ``h * W + w`` (row by row), its C channels its features.
    """
    return x.flatten(2).permute(2, 0, 1)  # (B, C, H*W) -> (H*W, B, C)


def _image_cases():
    g = torch.Generator().manual_seed(9)
    return [
        Case(N_("x of shape (2, 3, 4, 5)"), (torch.randn(2, 3, 4, 5, generator=g),)),
        Case(N_("x of shape (1, 6, 2, 3)"), (torch.randn(1, 6, 2, 3, generator=g),)),
    ]


def _image_view(x):
    B, C, H, W = x.shape
    return x.reshape(H * W, B, C)


def _image_batch_first(x):
    return x.flatten(2).transpose(1, 2)


def _image_column_major(x):
    return x.transpose(2, 3).flatten(2).permute(2, 0, 1)


def _image_channels_last_reshape(x):
    B, C, H, W = x.shape
    return x.reshape(B, H * W, C).transpose(0, 1)


register(
    Exercise(
        id="05.image_to_sequence",
        title=N_("A (B, C, H, W) feature map as a (H*W, B, C) sequence"),
        reference=image_to_sequence,
        cases=_image_cases,
        mistakes=[
            Mistake("reshape only", N_("a bare reshape to (H*W, B, C) keeps the memory order (B, C, H, W) and scrambles "
                    "pixels, channels and images; flatten H and W, then move the axes with permute"), _image_view),
            Mistake("batch first", N_("you returned (B, H*W, C), the batch_first layout; nn.Transformer's default "
                    "is (sequence, batch, features) = (H*W, B, C)"), _image_batch_first),
            Mistake("reshape to (B, H*W, C)", N_("reshaping (B, C, H, W) to (B, H*W, C) mixes channels into positions; "
                    "flatten(2) gives (B, C, H*W), then permute(2, 0, 1)"), _image_channels_last_reshape),
            Mistake("column major", N_("your positions run column by column (w * H + h); flatten the pixels row by row "
                    "(h * W + w), as x.flatten(2) does"), _image_column_major),
        ],
        minutes=4,
        difficulty=1,
    )
)
