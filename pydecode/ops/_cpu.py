"""What the ``cpu`` backend's launchers share: the compiled module, dtype codes, raw pointers.

Launchers (``@register(op, "cpu")`` in each op family module) pass ``tensor.data_ptr()`` and
sizes to ``pydecode._C``; the C++ side re-checks sizes. Rows must be contiguous along the
vocabulary (any row stride): :func:`rows_view` makes them so, copying only when needed.
"""

from __future__ import annotations

from types import ModuleType

import torch

from .. import _ext

# Must match pydecode::DType in csrc/include/pydecode/dtype.h.
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def module() -> ModuleType:
    mod = _ext.cpu_module()
    if mod is None:  # the registry only picks the cpu backend when the module imports
        raise RuntimeError(_ext.cpu_unavailable_reason())
    return mod


def rows_view(x: torch.Tensor) -> torch.Tensor:
    """``x`` (2-D) with unit stride along the last dimension, copying only when it is not."""
    if x.dim() == 2 and (x.stride(1) == 1 or x.shape[1] <= 1) and x.stride(0) >= 0:
        return x
    return x.contiguous()


def row_stride(x: torch.Tensor) -> int:
    """Elements between rows of a :func:`rows_view` tensor (its width when it has one row)."""
    return x.stride(0) if x.shape[0] > 1 else x.shape[1]


def contiguous(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous tensor of ``dtype`` (per-row parameters, ids), copying only when needed."""
    return x if (x.dtype == dtype and x.is_contiguous()) else x.to(dtype).contiguous()
