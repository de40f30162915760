"""What the ``cuda`` launchers share (the penalties, ngram and watermark families; the sampling
chain and beam top-k use the stream helpers and :func:`key_bins`).

Launchers (``@register(op, "cuda")`` at the end of each family module) pass ``data_ptr()``s,
sizes and the current stream's handle to ``pydecode._C_cuda``; the C++ side checks sizes again
and turns a failed launch into an exception. Rows must have unit stride along the vocabulary
(any row stride): :func:`pydecode.ops._cpu.rows_view` makes them so, copying only when needed.
"""

from __future__ import annotations

import contextlib
from types import ModuleType

import torch

from .. import _ext
from ._cpu import DTYPE_CODES, row_stride, rows_view
from ._validate import env_switch

__all__ = ["DTYPE_CODES", "KEY_BINS_ENV", "TOP_K_SCAN_ENV", "WARP_FINISH_ENV", "id_args", "key_bins", "logits_args",
           "module", "on_device", "row_stride", "rows_view", "stream", "top_k_scan", "warp_finish"]

# PYDECODE_CUDA_KEY_BINS=0: the compact paths of the sampling chain and of beam top-k list their
# candidates by the gap histogram only, never by the key bins the statistics pass takes
# (csrc/cuda/device.cuh; same outputs, one read more), for the GPU benchmarks that compare the two.
KEY_BINS_ENV = "PYDECODE_CUDA_KEY_BINS"


def key_bins() -> bool:
    return env_switch(KEY_BINS_ENV)


# PYDECODE_CUDA_TOPK_SCAN=0: the sampling chain lists the candidates of bfloat16 top-k rows with
# k <= 64 from the key-bin or gap histogram (two or three reads of the row), and reads top-p and
# min-p rows without top-k as before, instead of listing them as it reads the row
# (csrc/cuda/scan_list.cuh's one-read list, the default: same outputs; one read for top-k and for a
# min-p set within its 64 entries, two for a top-p nucleus within them; 3-6 instructions an entry);
# and beam top-k's bfloat16 rows with min(k, vocab) <= 64 take the statistics pass and its key-bin
# list (2 reads) instead of the one-read list (1 read, 2 with log-softmax); for the GPU benchmarks
# that compare the two.
TOP_K_SCAN_ENV = "PYDECODE_CUDA_TOPK_SCAN"


def top_k_scan() -> bool:
    return env_switch(TOP_K_SCAN_ENV)


# PYDECODE_CUDA_WARP_FINISH=0: the sampling chain runs its stages on a short candidate list (at most
# 128 entries: the one-read list of a decode step) with the whole block, radix passes and block
# reductions (~30 block barriers), instead of finishing it in one warp that sorts the list
# (csrc/cuda/sampling.cu's warp_finish, the default for calls that return tokens and log-probs
# only: same outputs); for the GPU benchmarks that compare the two.
WARP_FINISH_ENV = "PYDECODE_CUDA_WARP_FINISH"


def warp_finish() -> bool:
    return env_switch(WARP_FINISH_ENV)


def module() -> ModuleType:
    mod = _ext.cuda_module()
    if mod is None:  # the registry only picks the cuda backend when the module loads
        raise RuntimeError(_ext.cuda_unavailable_reason())
    return mod


def on_device(device: torch.device) -> contextlib.AbstractContextManager:
    """Make ``device`` current for the launch (a no-op, and no cost, when it already is)."""
    if device.index is None or device.index == torch.cuda.current_device():
        return contextlib.nullcontext()
    return torch.cuda.device(device)


def stream(device: torch.device) -> int:
    """The handle of the current stream on ``device``: kernels queue behind the caller's work."""
    return torch.cuda.current_stream(device).cuda_stream


def logits_args(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int, int, int]]:
    """The unit-stride view of ``logits``, a new contiguous float32 output, and their kernel
    arguments ``(address, dtype code, batch, vocab, row stride, out address)``."""
    x = rows_view(logits)
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    return x, out, (x.data_ptr(), DTYPE_CODES[x.dtype], x.shape[0], x.shape[1], row_stride(x), out.data_ptr())


def id_args(ids: torch.Tensor) -> tuple[torch.Tensor, tuple[int, bool, int, int]]:
    """``ids`` (2-D int64/int32) with unit stride along a row, and ``(address, is_int64, length,
    row stride)``."""
    ids = rows_view(ids)
    return ids, (ids.data_ptr(), ids.dtype == torch.int64, ids.shape[1], row_stride(ids))
