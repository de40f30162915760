"""Argument checks shared by every public op.

Public ops validate here, in Python, before any backend runs: wrong dtype/device/shape or
an out-of-range parameter raises a ``TypeError``/``ValueError`` that names the argument and
the allowed values. Backends then receive per-row parameters as ``(batch,)`` tensors on the
logits' device, whatever the caller passed (a Python scalar or a tensor).

Checking the *values* of a parameter tensor (range, NaN) needs one device-to-host sync per
call; set ``PYDECODE_CHECK_VALUES=0`` to skip those checks in a hot loop whose parameters
were validated once (shapes, dtypes and devices are always checked: they cost nothing). They
are skipped on their own inside a CUDA graph capture and under torch.compile (:func:`values_checked`).
Ops whose ``cpu`` kernels check every value again in C++ skip the Python scans when that
backend runs (:func:`scan_values`): the scans cost 35-93 us per call at batch 1, more than the
kernels themselves at small vocabularies, and the kernels raise the same ``ValueError``.
"""

from __future__ import annotations

import functools
import math
import os
from numbers import Integral, Real
from typing import Optional, Union

import torch

from ._registry import resolve_name

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
INDEX_DTYPES = (torch.int64, torch.int32)
RowParam = Union[float, int, torch.Tensor, None]


def values_checked() -> bool:
    """Whether parameter values are scanned: not with ``PYDECODE_CHECK_VALUES=0``, and not while a
    CUDA graph is being captured or torch.compile traces, which both forbid reading a value back
    (capture fails with cudaErrorStreamCaptureUnsupported; tracing would break the graph). Checking
    the eager call before a capture, as every warm-up does, is what validates those values."""
    if os.environ.get("PYDECODE_CHECK_VALUES", "1") == "0":
        return False
    if torch.compiler.is_compiling():
        return False
    return not (torch.cuda.is_initialized() and torch.cuda.is_current_stream_capturing())


def env_switch(name: str, default: bool = True) -> bool:
    """An on/off setting from the environment variable ``name``: "1" or "0" (``default`` when unset)."""
    value = os.environ.get(name, "1" if default else "0").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return value == "1"


def env_count(name: str, meaning: str) -> Optional[int]:
    """A positive count from the environment variable ``name`` (``meaning`` says what it counts, for
    the error), or None when it is unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer ({meaning}), got {value!r}")
    return int(value)


class _ScanAnswer:
    """:func:`scan_values`' answer, worked out when first asked (``bool()``): only a tensor
    parameter needs it, and a decode step usually passes Python numbers, for which working it out
    (resolving the backend, reading the environment) was ~10% of a batch-1 call's Python time."""

    __slots__ = ("_op", "_device", "_backend", "_answer")

    def __init__(self, op: str, device: torch.device, backend: Optional[str]) -> None:
        self._op, self._device, self._backend = op, device, backend
        self._answer: Optional[bool] = None

    def __bool__(self) -> bool:
        if self._answer is None:
            self._answer = _scan_values_now(self._op, self._device, self._backend)
        return self._answer


def scan_values(op: str, device: torch.device, backend: Optional[str]) -> _ScanAnswer:
    """Whether the public op ``op`` should scan parameter values in Python (truthy; decided on
    first use): not when the backend that will run it is ``cpu`` (its C++ entry points check every
    value and raise ``ValueError`` themselves, without a second pass in torch), nor when
    ``PYDECODE_CHECK_VALUES=0``.

    Only ops whose cpu launchers pass every checked value to a kernel that re-checks it may
    call this; the others keep :func:`values_checked`."""
    return _ScanAnswer(op, device, backend)


def _scan_values_now(op: str, device: torch.device, backend: Optional[str]) -> bool:
    if not values_checked():
        return False
    try:
        return resolve_name(op, device, backend) != "cpu"
    except Exception:  # an unavailable backend is reported by the call itself, with its reason
        return True


def check_logits(logits: torch.Tensor, name: str = "logits") -> torch.Tensor:
    """A 2-D ``(batch, vocab)`` float32/float16/bfloat16 tensor (any strides)."""
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (batch, vocab), got {type(logits).__name__}")
    if logits.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, vocab), got shape {tuple(logits.shape)}")
    if logits.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32, float16 or bfloat16, got {logits.dtype}")
    return logits


def check_index_tensor(
    ids: torch.Tensor, name: str, device: torch.device, *, batch: Optional[int] = None, dim: int = 2
) -> torch.Tensor:
    """An int64/int32 tensor of ``dim`` dimensions on ``device`` whose first size is ``batch``."""
    if not isinstance(ids, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(ids).__name__}")
    if ids.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name} must be int64 or int32, got {ids.dtype}")
    if ids.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(ids.shape)}")
    if batch is not None and ids.shape[0] != batch:
        raise ValueError(f"{name} must have {batch} rows (the batch of logits), got shape {tuple(ids.shape)}")
    check_device(ids, name, device)
    return ids


def check_token_ids(
    ids: object,
    name: str,
    device: torch.device,
    *,
    batch: Optional[int] = None,
    vocab: Optional[int] = None,
    values: bool = True,
) -> torch.Tensor:
    """:func:`check_index_tensor` for token ids: 2-D, every id in ``[0, vocab)`` (``>= 0`` when
    ``vocab`` is None).

    A negative id would index from the end of the vocabulary, an id ``>= vocab`` past it (or
    crash a kernel). Checking values costs a sync on a GPU; ``values=False`` (the caller's
    kernel checks them) or ``PYDECODE_CHECK_VALUES=0`` skips it.
    """
    check_index_tensor(ids, name, device, batch=batch)  # type: ignore[arg-type]
    assert isinstance(ids, torch.Tensor)
    if values and values_checked() and ids.numel() > 0:
        low, high = int(ids.min()), int(ids.max())  # one pass each; no per-element host copy
        if low < 0:
            raise ValueError(f"{name} must hold token ids >= 0, got {low}")
        if vocab is not None and high >= vocab:
            raise ValueError(f"{name} must hold token ids < {vocab} (the vocabulary of logits), got {high}")
    return ids


def check_encoder_ids(
    encoder_input_ids: object,
    batch: int,
    device: torch.device,
    *,
    vocab: Optional[int] = None,
    values: bool = True,
) -> torch.Tensor:
    """Encoder prompt ids ``(enc_batch, enc_len)`` (a 1-D tensor is one prompt) whose row count
    divides ``batch``: row ``b`` of the logits belongs to prompt ``b // (batch // enc_batch)``.
    ``vocab``/``values`` as in :func:`check_token_ids`."""
    if isinstance(encoder_input_ids, torch.Tensor) and encoder_input_ids.dim() == 1:
        encoder_input_ids = encoder_input_ids.unsqueeze(0)
    ids = check_token_ids(encoder_input_ids, "encoder_input_ids", device, vocab=vocab, values=values)
    if ids.shape[0] == 0 or batch % ids.shape[0] != 0:
        raise ValueError(
            f"encoder_input_ids must have a number of rows that divides the batch of logits ({batch}), "
            f"got {ids.shape[0]}"
        )
    return ids


def check_device(tensor: torch.Tensor, name: str, device: torch.device) -> None:
    if tensor.device != device:
        raise ValueError(f"{name} must be on {device} (the device of logits), got {tensor.device}")


def _range_text(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    # An absent bound admits the infinity itself (temperature=inf is a valid, flat row).
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def _in_range(v: float, low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> bool:
    if math.isnan(v):
        return False
    if low is not None and (v <= low if low_open else v < low):
        return False
    return not (high is not None and (v >= high if high_open else v > high))


def row_param(
    value: RowParam,
    name: str,
    batch: int,
    device: torch.device,
    *,
    dtype: torch.dtype = torch.float32,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    values: bool = True,
) -> torch.Tensor:
    """A per-row parameter as a ``(batch,)`` tensor of ``dtype`` on ``device``.

    ``value`` may be a Python number (broadcast to every row), a 0-d tensor, or a ``(batch,)``
    tensor on ``device``. Values outside the range (or NaN) raise ``ValueError``; for a tensor
    that scan is skipped when ``values`` is False (the kernel that runs checks them) or
    ``PYDECODE_CHECK_VALUES=0``. A Python number is always checked (it costs nothing).
    """
    integral = not dtype.is_floating_point
    if isinstance(value, torch.Tensor):
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != batch):
            raise ValueError(f"{name} must be a scalar or a ({batch},) tensor, got shape {tuple(value.shape)}")
        if integral and value.dtype.is_floating_point:
            raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
        if value.dim() == 1:
            check_device(value, name, device)
        if values and values_checked() and value.numel() > 0:
            v = value.to(torch.float64)
            ok = ~torch.isnan(v)
            if low is not None:
                ok &= v > low if low_open else v >= low
            if high is not None:
                ok &= v < high if high_open else v <= high
            if not bool(ok.all()):
                first = int((~ok).nonzero()[0, -1]) if v.dim() else 0
                bad = v.reshape(-1)[first].item()
                allowed = _range_text(low, high, low_open, high_open)
                raise ValueError(f"{name} must be in {allowed} for every row, got {bad} at row {first}")
        if value.dtype == dtype and value.dim() == 1:
            return value  # already (batch,) on the right device and dtype: no copy
        return value.to(device=device, dtype=dtype).expand(batch).contiguous()
    kind = type(value)  # int and float first: the numbers.* ABC checks cost ~1 us each
    if kind is not float and kind is not int:
        if isinstance(value, bool) or not isinstance(value, (Integral, Real)):
            raise TypeError(f"{name} must be a number or a ({batch},) tensor, got {type(value).__name__}")
        kind = int if isinstance(value, Integral) else float
    if integral and kind is not int:
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not _in_range(float(value), low, high, low_open, high_open):
        raise ValueError(f"{name} must be in {_range_text(low, high, low_open, high_open)}, got {value}")
    return constant_rows(value, batch, dtype, device)


@functools.lru_cache(maxsize=256, typed=True)
def _constant_rows(value: Union[int, float], batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), value, dtype=dtype, device=device)


def constant_rows(value: Union[int, float], batch: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``torch.full((batch,), value)``, cached: a decode step passes the same Python numbers
    (temperature, top-p, offsets of a fixed seed...) every call, and creating them was about a
    third of a batch-1 sampling call's Python time. The tensors are shared: ops only read their
    parameters, never write them."""
    return _constant_rows(value if isinstance(value, int) else float(value), batch, dtype, torch.device(device))


def check_int(value: object, name: str, *, low: int) -> int:
    """A Python int >= ``low`` (for structural, not per-row, arguments)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)
