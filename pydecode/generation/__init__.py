"""Hugging Face-compatible generation: config, processors, plan, scheduler, stopping, streamers, outputs."""

from .config import GenerationConfig, GenerationMode, WatermarkingConfig

__all__ = ["GenerationConfig", "GenerationMode", "WatermarkingConfig"]
