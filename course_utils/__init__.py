"""course_utils: reference solutions, checks, plots and widgets for *Attention, from the inside*.

The notebooks teach each idea step by step, then import the reference version from here
and check their own code against it.
"""

from .core import get_device, seed_everything

__all__ = ["get_device", "seed_everything"]

# --- issue 3: activations and module tools (notebooks 01-02) ---
# --- issue 4: attention (notebooks 03-04) ---
# --- issue 5: transformer (notebook 05) ---
# --- issue 6: synthesizers (notebooks 06-07) ---
