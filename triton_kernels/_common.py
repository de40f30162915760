"""Helpers shared by the Triton sampling and beam kernels: order-preserving float keys,
row loading with the float32 transform every backend applies, precise logs, launch sizes."""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

try:  # libdevice's logf is accurate to 1 ulp; the interpreter has no libdevice
    from triton.language.extra import libdevice as _libdevice
except ImportError:  # pragma: no cover - very old triton
    _libdevice = None

# Transforms applied to every loaded element (constexpr codes shared by the launchers).
T_NONE, T_DIVIDE, T_MUL_RECIP, T_LOG = 0, 1, 2, 3


@triton.jit
def float_key(x):
    """int32 key ordered like the float32 values; -0.0 is folded onto +0.0 and every NaN onto
    the positive quiet NaN, which ranks above +inf (torch.topk / torch.sort order)."""
    x = tl.where(x == 0.0, 0.0, x)
    x = tl.where(x != x, float("nan"), x)
    bits = x.to(tl.int32, bitcast=True)
    return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


@triton.jit
def key_value(key):
    """Inverse of float_key for a scalar key (int64 holding an int32 value)."""
    k32 = key.to(tl.int32)
    bits = tl.where(k32 < 0, k32 ^ 0x7FFFFFFF, k32)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def precise_log(x, PRECISE: tl.constexpr):
    if PRECISE:
        return _libdevice.log(x)
    else:
        return tl.log(x)


@triton.jit
def load_row(row_ptr, cols, mask, scale, TRANSFORM: tl.constexpr, PRECISE: tl.constexpr):
    """float32 values of one row block, transformed as torch does it (missing entries: -inf).

    T_DIVIDE: ``x / t`` correctly rounded (torch on CPU); T_MUL_RECIP: ``x * (1/t)`` (torch on
    CUDA turns the division by a scalar into a multiplication by its float32 reciprocal);
    T_LOG: ``log(x)`` for probability inputs.
    """
    if TRANSFORM == 3:
        x = tl.load(row_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        return precise_log(x, PRECISE)
    else:
        x = tl.load(row_ptr + cols, mask=mask, other=float("-inf")).to(tl.float32)
        if TRANSFORM == 1:
            x = tl.math.div_rn(x, scale)
        elif TRANSFORM == 2:
            x = x * scale
        return x


def interpreting(t: torch.Tensor) -> bool:
    """True when kernels on ``t`` run under the Triton interpreter (CPU tensors)."""
    return t.device.type != "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def precise_log_available(t: torch.Tensor) -> bool:
    return not interpreting(t) and _libdevice is not None


def rows_2d(x: torch.Tensor) -> torch.Tensor:
    """A (rows, vocab) view whose columns are contiguous (copied when they are not)."""
    return x if x.stride(1) == 1 or x.shape[1] == 1 else x.contiguous()


# The interpreter runs one numpy call per op and loop step, so there blocks take whole rows up
# to this size (tests lower it to run the multi-block paths on small rows).
INTERPRET_BLOCK = 16384


def block_for(vocab: int, cap: int = 2048, interpret: bool = False) -> int:
    """Elements per loop step: on a GPU, 2048 keeps 8 warps busy with 8 elements each."""
    if interpret:
        cap = INTERPRET_BLOCK
    return max(16, min(cap, triton.next_power_of_2(vocab)))
