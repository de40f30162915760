"""The only place that imports pydecode's compiled modules.

``pydecode._C`` holds the CPU kernels, ``pydecode._C_cuda`` the CUDA kernels. Either may be
missing (no compiler at install time, ``PYDECODE_BUILD_CUDA=0``, a module built for another
Python); pydecode then runs on the remaining backends and these functions say why.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType
from typing import Optional

_BUILD_HINT = "rebuild with `pip install -e .` (needs a C++17 compiler{extra})"


@functools.cache
def _load(name: str) -> tuple[Optional[ModuleType], str]:
    try:
        return importlib.import_module(f"pydecode.{name}"), ""
    except ImportError as exc:  # not built, or built for another interpreter
        return None, f"pydecode.{name} is not importable ({exc})"


def cpu_module() -> Optional[ModuleType]:
    """The compiled CPU kernel module, or None."""
    return _load("_C")[0]


def cpu_unavailable_reason() -> str:
    """Why the CPU kernels are missing ('' when they are available)."""
    module, why = _load("_C")
    return "" if module is not None else f"{why}; {_BUILD_HINT.format(extra='')}"


def cuda_module() -> Optional[ModuleType]:
    """The compiled CUDA kernel module when it imports and a CUDA device is visible, else None."""
    module, _ = _load("_C_cuda")
    if module is None or _cuda_device_error(module):
        return None
    return module


@functools.cache
def _cuda_device_error(module: ModuleType) -> str:
    count, error = module.device_count()
    if error:
        return f"no CUDA device ({error})"
    return "" if count > 0 else "no CUDA device (device count is 0)"


def cuda_unavailable_reason() -> str:
    """Why the CUDA kernels are unusable here ('' when they are usable)."""
    module, why = _load("_C_cuda")
    if module is None:
        return f"{why}; {_BUILD_HINT.format(extra=' and nvcc, PYDECODE_BUILD_CUDA=1')}"
    return _cuda_device_error(module)


def cuda_module_built() -> bool:
    """True when the CUDA module was compiled and imports (a GPU may still be absent)."""
    return _load("_C_cuda")[0] is not None
