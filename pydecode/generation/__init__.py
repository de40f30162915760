"""Hugging Face-compatible generation: config, processors, plan, scheduler, stopping, streamers, outputs."""

from .config import GenerationConfig, GenerationMode, WatermarkingConfig
from .generate import custom_generate, generate, patch, unpatch
from .outputs import (
    GenerateBeamDecoderOnlyOutput,
    GenerateBeamEncoderDecoderOutput,
    GenerateDecoderOnlyOutput,
    GenerateEncoderDecoderOutput,
    compute_transition_scores,
)
from .runner import StepFunction

__all__ = [
    "GenerateBeamDecoderOnlyOutput",
    "GenerateBeamEncoderDecoderOutput",
    "GenerateDecoderOnlyOutput",
    "GenerateEncoderDecoderOutput",
    "GenerationConfig",
    "GenerationMode",
    "StepFunction",
    "WatermarkingConfig",
    "compute_transition_scores",
    "custom_generate",
    "generate",
    "patch",
    "unpatch",
]
