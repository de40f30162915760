"""pydecode: kernel-accelerated decoding for PyTorch language models.

Importing pydecode needs no compiler, no GPU and no built extension: without them every op
runs on its pure-torch reference.
"""

from . import ops
from .generation import (
    GenerationConfig,
    GenerationMode,
    WatermarkingConfig,
    compute_transition_scores,
    custom_generate,
    generate,
    patch,
    unpatch,
)
from .version import __version__

__all__ = [
    "GenerationConfig",
    "GenerationMode",
    "WatermarkingConfig",
    "__version__",
    "compute_transition_scores",
    "custom_generate",
    "generate",
    "ops",
    "patch",
    "unpatch",
]
