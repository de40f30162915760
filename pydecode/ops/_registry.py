"""Backend registry and dispatch for ``pydecode.ops``.

Every op has a pure-torch reference registered as the ``torch`` backend; kernel backends
(``cpu``, ``cuda``, ``triton``) register the ops they implement. Selection, per call:

1. the ``backend=`` argument of the op, else ``set_backend(...)``, else ``PYDECODE_BACKEND``;
2. ``None``/``"auto"``: the first usable backend for the tensor's device, quietly
   (CUDA tensors: cuda, triton, torch; CPU tensors: cpu, torch);
3. an explicit backend that cannot run the op (not built, wrong device, op not implemented
   there) raises :class:`BackendUnavailableError` with the reason and how to fix it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from typing import Callable, Optional

import torch

from .. import _ext

BACKENDS = ("cuda", "triton", "cpu", "torch")
_AUTO_ORDER = {"cuda": ("cuda", "triton", "torch"), "cpu": ("cpu", "torch")}
# The cuda and triton kernels compile here and pass their CPU checks (the Triton interpreter, a
# CPU model of the CUDA kernels), but have not yet passed bench/gpu_check.sh on a GPU. Until they
# have, automatic selection runs the torch reference on CUDA tensors, so nobody silently gets
# tokens from an unverified kernel. PYDECODE_GPU_KERNELS=1 opts in to cuda -> triton -> torch;
# an explicit backend ("cuda", "triton") always runs what it names.
GPU_KERNELS_VERIFIED = False

_IMPLS: dict[str, dict[str, Callable]] = {}
_default_backend: Optional[str] = None
_triton_kernels_loaded = False


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run an op here."""


def register(op: str, backend: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn`` as ``backend``'s implementation of ``op``.

    Implementations receive validated arguments (per-row parameters already ``(batch,)``
    tensors on the logits' device) and must return new tensors, never an input object.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")

    def decorator(fn: Callable) -> Callable:
        _IMPLS.setdefault(op, {})[backend] = fn
        _resolve_cached.cache_clear()
        return fn

    return decorator


def registered_ops() -> dict[str, tuple[str, ...]]:
    """Op name -> the backends that implement it."""
    _load_triton_kernels()
    return {op: tuple(b for b in BACKENDS if b in impls) for op, impls in sorted(_IMPLS.items())}


def set_backend(backend: Optional[str]) -> None:
    """Process-wide backend choice (``None``/``"auto"`` restores automatic selection)."""
    global _default_backend
    _default_backend = _check_name(backend)
    _resolve_cached.cache_clear()


def get_backend() -> Optional[str]:
    """The requested backend in force (``None`` = automatic)."""
    if _default_backend is not None:
        return _default_backend
    try:
        return _check_name(os.environ.get("PYDECODE_BACKEND"))
    except ValueError as exc:
        raise ValueError(f"PYDECODE_BACKEND: {exc}") from None


def _check_name(backend: Optional[str]) -> Optional[str]:
    if backend is None or backend in ("", "auto"):
        return None
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {('auto',) + BACKENDS}, got {backend!r}")
    return backend


def backend_unavailable_reason(backend: str, device: Optional[torch.device] = None) -> str:
    """Why ``backend`` cannot run on ``device`` (any device when None); '' when it can."""
    device_type = None if device is None else torch.device(device).type
    if backend == "torch":
        return ""
    if backend == "cpu":
        if device_type not in (None, "cpu"):
            return f"the cpu backend runs on CPU tensors, not {device_type} tensors"
        return _ext.cpu_unavailable_reason()
    if backend == "cuda":
        if device_type not in (None, "cuda"):
            return f"the cuda backend runs on CUDA tensors, not {device_type} tensors"
        return _ext.cuda_unavailable_reason()
    if backend == "triton":
        why = _triton_unavailable_reason()
        if why:
            return why
        if device_type == "cpu" and not _interpret():
            return "triton runs on CPU tensors only under the interpreter: set TRITON_INTERPRET=1"
        if device_type not in (None, "cpu", "cuda"):
            return f"the triton backend runs on CUDA tensors, not {device_type} tensors"
        return ""
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


@functools.cache
def _triton_unavailable_reason() -> str:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install triton; Linux x86_64 only)"
    try:
        import triton  # noqa: F401
    except Exception as exc:  # a broken install must not break pydecode
        return f"triton fails to import ({exc})"
    return ""


def _load_triton_kernels() -> None:
    """Import pydecode.triton_kernels once, which registers the triton implementations."""
    global _triton_kernels_loaded
    if _triton_kernels_loaded or _triton_unavailable_reason():
        return
    _triton_kernels_loaded = True
    importlib.import_module("pydecode.triton_kernels")
    _resolve_cached.cache_clear()


def resolve(op: str, device: torch.device, backend: Optional[str] = None) -> Callable:
    """The implementation of ``op`` to run for tensors on ``device``."""
    requested = _check_name(backend) if backend is not None else get_backend()
    name = _resolve_cached(op, device.type, requested, _interpret(), gpu_kernels_enabled())
    return _IMPLS[op][name]


def resolve_name(op: str, device: torch.device, backend: Optional[str] = None) -> str:
    """The name of the backend :func:`resolve` picks (for logs, benchmarks and tests)."""
    requested = _check_name(backend) if backend is not None else get_backend()
    return _resolve_cached(op, torch.device(device).type, requested, _interpret(), gpu_kernels_enabled())


def gpu_kernels_enabled() -> bool:
    """Whether automatic selection may pick the cuda/triton kernels for CUDA tensors."""
    return GPU_KERNELS_VERIFIED or os.environ.get("PYDECODE_GPU_KERNELS") == "1"


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


# torch.compile traces the public ops' Python code: the backend choice must be a constant to it, not
# code it steps into (it refuses importlib.util.find_spec, module loading, ...). So the cached
# resolution returns only the backend's name, and dynamo calls it at trace time and keeps the
# result (assume_constant_result); the implementation is then a plain dict lookup.
@functools.cache
@torch.compiler.assume_constant_result  # inside the cache: dynamo looks through functools.cache to this function
def _resolve_cached(
    op: str, device_type: str, requested: Optional[str], interpret: bool, gpu_kernels: bool
) -> str:
    # `interpret` is part of the cache key only: TRITON_INTERPRET changes triton's reach.
    if op not in _IMPLS:
        raise KeyError(f"unknown pydecode op {op!r}")
    if requested == "triton" or (requested is None and device_type == "cuda" and gpu_kernels):
        _load_triton_kernels()
    impls = _IMPLS[op]
    device = torch.device(device_type)
    if requested is not None:
        why = backend_unavailable_reason(requested, device)
        if not why and requested not in impls:
            why = f"op {op!r} has no {requested} implementation (it has: {', '.join(impls)})"
        if why:
            raise BackendUnavailableError(f"backend {requested!r} requested for {op!r} is unavailable: {why}")
        return requested
    order = _AUTO_ORDER.get(device_type, ("torch",)) if device_type != "cuda" or gpu_kernels else ("torch",)
    for name in order:
        if name in impls and not backend_unavailable_reason(name, device):
            return name
    raise BackendUnavailableError(f"no backend can run {op!r} on {device_type} tensors")
