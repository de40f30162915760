"""pydecode: kernel-accelerated decoding for PyTorch language models.

Importing pydecode needs no compiler, no GPU and no built extension: without them every op
runs on its pure-torch reference.
"""

from . import ops
from .generation import GenerationConfig, GenerationMode, WatermarkingConfig
from .version import __version__

__all__ = ["GenerationConfig", "GenerationMode", "WatermarkingConfig", "__version__", "ops"]
