"""What the CPU checks of the cuda launchers share (tests/ops/test_*_cuda_wiring.py,
test_cuda_r_wiring.py): on a machine with the CUDA module built but no GPU, the launchers run on
CPU tensors with the module loaded without its device check, so that a call reaches the kernel
launch (which then fails for lack of a driver) after every size check on the way."""

from __future__ import annotations

import contextlib
from types import ModuleType

import pytest

from pydecode import _ext
from pydecode.ops import _cuda_launch


def raw_cuda_module() -> ModuleType:
    """The built CUDA module; skips the calling test module where it is not built, or where a GPU is
    present (CPU pointers must not reach a real launch there: the GPU tests run the kernels)."""
    if not _ext.cuda_module_built():
        pytest.skip("the CUDA module is not built", allow_module_level=True)
    if _ext.cuda_module() is not None:
        pytest.skip("a GPU is present: the GPU tests run the kernels", allow_module_level=True)
    return _ext._load("_C_cuda")[0]


def launch_on_cpu_tensors(monkeypatch: pytest.MonkeyPatch, raw: ModuleType) -> None:
    """Route the launchers to ``raw``, the null stream and no device switch."""
    monkeypatch.setattr(_cuda_launch, "module", lambda: raw)
    monkeypatch.setattr(_cuda_launch, "stream", lambda device: 0)
    monkeypatch.setattr(_cuda_launch, "on_device", lambda device: contextlib.nullcontext())
