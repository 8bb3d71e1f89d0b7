"""course_utils: reference solutions, checks, plots and widgets for *Attention, from the inside*.

The notebooks teach each idea step by step, then import the reference version from here
and check their own code against it.
"""

from .core import get_device, seed_everything

__all__ = ["get_device", "seed_everything"]

# --- issue 3: activations and module tools (notebooks 01-02) ---
from . import activations  # noqa: E402
from .module_tools import trace_shapes  # noqa: E402

__all__ += ["activations", "trace_shapes"]
# --- issue 4: attention (notebooks 03-04) ---
from .attention import Head, MultiheadAttention, scaled_dot_product_attention  # noqa: E402

__all__ += ["Head", "MultiheadAttention", "scaled_dot_product_attention"]
# --- issue 5: transformer (notebook 05) ---
from .toy_tasks import Seq2SeqTransformer, greedy_decode, make_batch  # noqa: E402
from .transformer import (  # noqa: E402
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    record_attention,
)

__all__ += ["Transformer", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer",
            "record_attention", "Seq2SeqTransformer", "greedy_decode", "make_batch"]
# --- issue 6: synthesizers (notebooks 06-07) ---
from .synthesizer import (  # noqa: E402
    DenseSynthesizer,
    FactorizedDenseSynthesizer,
    FactorizedRandomSynthesizer,
    RandomSynthesizer,
    SynthesizerMixture,
    make_synthesizer,
    synthesizer_parameter_count,
)

__all__ += ["DenseSynthesizer", "RandomSynthesizer", "FactorizedDenseSynthesizer", "FactorizedRandomSynthesizer",
            "SynthesizerMixture", "make_synthesizer", "synthesizer_parameter_count"]
