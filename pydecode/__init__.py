"""pydecode: kernel-accelerated decoding for PyTorch language models.

Importing pydecode needs no compiler, no GPU and no built extension: without them every op
runs on its pure-torch reference.
"""

from . import generation, ops
from .generation import GenerationConfig, GenerationMode, WatermarkingConfig
from .version import __version__

_FROM_GENERATION = ("compute_transition_scores", "custom_generate", "generate", "patch", "unpatch")


def __getattr__(name: str):  # noqa: ANN202 - PEP 562: generate & co. load transformers on first use only
    if name in _FROM_GENERATION:
        value = getattr(generation, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
