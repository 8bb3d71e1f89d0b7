"""course_utils: reference solutions, checks, plots and widgets for *Attention, from the inside*.

The notebooks teach each idea step by step, then import the reference version from here
and check their own code against it.
"""

from . import activations, progress
from .attention import Head, MultiheadAttention, scaled_dot_product_attention
from .core import get_device, seed_everything
from .gpt import GPT, evaluate_loss, sample_next_token
from .i18n import get_language, set_language
from .kv_cache import KVCache, kv_cache_bytes, repeat_kv
from .module_tools import trace_shapes
from .positions import alibi_bias, alibi_slopes, apply_rope, sinusoidal_positions
from .synthesizer import (
    DenseSynthesizer,
    FactorizedDenseSynthesizer,
    FactorizedRandomSynthesizer,
    RandomSynthesizer,
    SynthesizerMixture,
    make_synthesizer,
    synthesizer_parameter_count,
)
from .text import CharTokenizer, load_corpus, train_val_split
from .toy_tasks import Seq2SeqTransformer, greedy_decode, make_batch
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    record_attention,
)

__all__ = [
    # core (notebook 00)
    "get_device", "seed_everything",
    # activations and nn.Module tools (notebooks 01-02)
    "activations", "trace_shapes",
    # attention (notebooks 03-04)
    "Head", "MultiheadAttention", "scaled_dot_product_attention",
    # the Transformer (notebook 05)
    "Transformer", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer",
    "record_attention", "Seq2SeqTransformer", "greedy_decode", "make_batch",
    # synthesizers (notebooks 06-07)
    "DenseSynthesizer", "RandomSynthesizer", "FactorizedDenseSynthesizer", "FactorizedRandomSynthesizer",
    "SynthesizerMixture", "make_synthesizer", "synthesizer_parameter_count",
    # positions and the GPT (notebooks 08-09)
    "sinusoidal_positions", "apply_rope", "alibi_slopes", "alibi_bias",
    "GPT", "sample_next_token", "evaluate_loss", "CharTokenizer", "load_corpus", "train_val_split",
    # generating fast (notebook 10)
    "KVCache", "kv_cache_bytes", "repeat_kv",
    # the learner's own progress table: course_utils.progress()
    "progress",
    # the language of checks, hints and plots: "en" or "zh" (also $COURSE_LANG)
    "set_language", "get_language",
]
