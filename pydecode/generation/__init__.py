"""Hugging Face-compatible generation: config, processors, plan, scheduler, stopping, streamers, outputs."""

import importlib
import sys
import types

from .config import GenerationConfig, GenerationMode, WatermarkingConfig

# generate, the outputs (transformers' own output classes when it is installed) and the runner protocol are
# imported on first use, so that importing pydecode (or its config) does not import transformers.
_LAZY = {
    "custom_generate": "generate",
    "generate": "generate",
    "patch": "generate",
    "unpatch": "generate",
    "GenerateBeamDecoderOnlyOutput": "outputs",
    "GenerateBeamEncoderDecoderOutput": "outputs",
    "GenerateDecoderOnlyOutput": "outputs",
    "GenerateEncoderDecoderOutput": "outputs",
    "compute_transition_scores": "outputs",
    "StepFunction": "runner",
}


def __getattr__(name: str):  # noqa: ANN202 - PEP 562 module attribute hook
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """The import system binds a loaded submodule as an attribute of its package; for the submodule
    ``generate`` that would hide the function ``generate``, so that binding is skipped (the submodule stays
    in ``sys.modules``), as the former eager ``from .generate import generate`` overwrote it."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "generate" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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

# Stopping criteria and the watermark detector (aux's modules), imported on first use like the names above.
_AUX_EXPORTS = {
    **{
        name: "stopping"
        for name in (
            "ConfidenceCriteria", "EosTokenCriteria", "MaxLengthCriteria", "MaxTimeCriteria", "StopStringCriteria",
            "StoppingCriteria", "StoppingCriteriaList", "build_stopping_criteria",
        )
    },
    "WatermarkDetector": "watermark_detector",
    "WatermarkDetectorOutput": "watermark_detector",
}
_LAZY.update(_AUX_EXPORTS)
__all__ += sorted(_AUX_EXPORTS)
