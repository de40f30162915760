"""What this machine runs pydecode with: versions, devices, compiled modules, backends.

Shared by ``pydecode show-config`` and the benchmark CSVs (every number is recorded with the
hardware and versions that produced it).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from . import _ext
from .ops import _registry
from .version import __version__

_ENV_KEYS = (
    "PYDECODE_BACKEND",
    "PYDECODE_CHECK_VALUES",
    "PYDECODE_NUM_THREADS",
    "TRITON_INTERPRET",
    "CUDA_VISIBLE_DEVICES",
)


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cuda_devices() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def collect() -> dict[str, Any]:
    """Everything ``show-config`` prints, as a JSON-able dict."""
    backends = {b: (_registry.backend_unavailable_reason(b) or "available") for b in _registry.BACKENDS}
    if backends["triton"] == "available":
        backends["triton"] += (
            " (interpreter on: CPU tensors too)"
            if os.environ.get("TRITON_INTERPRET") == "1"
            else " for CUDA tensors (CPU tensors need TRITON_INTERPRET=1)"
        )
    return {
        "pydecode": __version__,
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: _package_version(name) for name in ("torch", "triton", "transformers", "numpy", "safetensors")
        },
        "torch_cuda": torch.version.cuda or "none (CPU build)",
        "devices": {
            "cpu": f"{cpu_name()} ({os.cpu_count()} logical cores)",
            "cuda": cuda_devices() or "none",
        },
        "compiled_modules": {
            "pydecode._C (cpu kernels)": _ext.cpu_unavailable_reason()
            or f"built, {_ext.cpu_module().num_threads()} kernel threads (PYDECODE_NUM_THREADS)",
            "pydecode._C_cuda (cuda kernels)": "built" if _ext.cuda_module_built() else _ext.cuda_unavailable_reason(),
        },
        "backends": backends,
        "backend_selected": _registry.get_backend() or "auto",
        "gpu_kernels_in_auto": _registry.gpu_kernels_enabled(),
        "ops": {op: list(impls) for op, impls in _registry.registered_ops().items()},
        "environment": {key: os.environ[key] for key in _ENV_KEYS if key in os.environ},
    }


def hardware_line() -> str:
    """One line naming the device(s) a measurement ran on."""
    gpus = cuda_devices()
    return ", ".join(gpus) if gpus else f"CPU: {cpu_name()}, {os.cpu_count()} cores"
