"""Philox4x32-10, the counter-based generator behind every random draw in pydecode.

The randomness contract (DESIGN.md): a draw is a pure function of
``key = (seed & 0xffffffff, seed >> 32)`` and
``counter = (token index, offset & 0xffffffff, offset >> 32, stream)``; samplers use output
word 0 as a uniform ``(w >> 9 + 0.5) * 2**-23`` in (0, 1). ``offset`` is the request's
position (tokens generated so far), so a request's tokens do not depend on its batch row or on
the other requests. The same stream comes from the torch reference here, the C++ kernels
(csrc/include/pydecode/philox.h), CUDA and Triton (``tl.philox``, bit-identical).

Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11); the round
constants are Random123's.
"""

from __future__ import annotations

from typing import Optional, Union

import torch

from .. import _ext
from ._library import call, define_op
from ._registry import register
from ._validate import check_device, constant_rows

# Counter word 3: independent streams for independent uses of one seed.
STREAM_SAMPLE = 0
STREAM_SPECULATIVE = 1

_M0, _M1 = 0xD2511F53, 0xCD9E8D57
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK32 = 0xFFFFFFFF
_INT64_RANGE = (-(2**63), 2**63 - 1)

SeedLike = Union[int, torch.Tensor, None]


# --------------------------------------------------------------------------- reference
def _mulhilo(multiplier: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``multiplier * x`` for x in [0, 2**32), in int64 arithmetic.

    The 64-bit product would overflow int64, so x is split into 16-bit halves.
    """
    t = multiplier * (x & 0xFFFF)
    u = multiplier * (x >> 16) + (t >> 16)
    return u >> 16, ((u & 0xFFFF) << 16) | (t & 0xFFFF)


def _philox_words(
    c0: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, k0: torch.Tensor, k1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    for _ in range(10):
        hi0, lo0 = _mulhilo(_M0, c0)
        hi1, lo1 = _mulhilo(_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


@register("philox4x32_10", "torch")
def philox4x32_10_torch(counters: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    c = counters.to(torch.int64)
    k = keys.to(torch.int64)
    words = _philox_words(c[:, 0], c[:, 1], c[:, 2], c[:, 3], k[:, 0], k[:, 1])
    return torch.stack(words, dim=1)


def _split64(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) 32-bit words of int64 values, two's complement like a C++ uint64 cast."""
    return x & _MASK32, (x >> 32) & _MASK32


def philox_uniform_at(
    seed: torch.Tensor, offset: torch.Tensor, token: torch.Tensor, stream: int = STREAM_SAMPLE
) -> torch.Tensor:
    """Uniforms in (0, 1) (float32) for matching 1-D int64 tensors of seeds, offsets, token ids.

    The sparse form of :func:`philox_uniform`: a reference sampler draws noise only for the
    tokens that survive filtering.
    """
    k0, k1 = _split64(seed.to(torch.int64))
    o0, o1 = _split64(offset.to(torch.int64))
    c0 = token.to(torch.int64) & _MASK32
    w0 = _philox_words(c0, o0, o1, torch.full_like(c0, stream), k0, k1)[0]
    return ((w0 >> 9).to(torch.float32) + 0.5) * (1.0 / 8388608.0)


@register("philox_uniform", "torch")
def philox_uniform_torch(seed: torch.Tensor, offset: torch.Tensor, vocab: int, stream: int) -> torch.Tensor:
    rows = seed.shape[0]
    tokens = torch.arange(vocab, device=seed.device, dtype=torch.int64).expand(rows, vocab)
    u = philox_uniform_at(
        seed[:, None].expand(rows, vocab).reshape(-1),
        offset[:, None].expand(rows, vocab).reshape(-1),
        tokens.reshape(-1),
        stream,
    )
    return u.view(rows, vocab)


def gumbel_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log(u))`` (float32): argmax(logits + noise) samples softmax."""
    return -torch.log(-torch.log(u))


# --------------------------------------------------------------------------- cpu / cuda
@register("philox4x32_10", "cpu")
def _philox4x32_10_cpu(counters: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    c = counters.to(torch.int64).to(torch.uint32).contiguous()
    k = keys.to(torch.int64).to(torch.uint32).contiguous()
    out = torch.empty_like(c)
    _ext.cpu_module().philox4x32_10(c.data_ptr(), k.data_ptr(), out.data_ptr(), c.shape[0])
    return out.to(torch.int64)


@register("philox_uniform", "cpu")
def _philox_uniform_cpu(seed: torch.Tensor, offset: torch.Tensor, vocab: int, stream: int) -> torch.Tensor:
    seed, offset = seed.contiguous(), offset.contiguous()
    out = torch.empty(seed.shape[0], vocab, dtype=torch.float32)
    _ext.cpu_module().philox_uniform(seed.data_ptr(), offset.data_ptr(), out.data_ptr(), seed.shape[0], vocab, stream)
    return out


@register("philox_uniform", "cuda")
def _philox_uniform_cuda(seed: torch.Tensor, offset: torch.Tensor, vocab: int, stream: int) -> torch.Tensor:
    seed, offset = seed.contiguous(), offset.contiguous()
    out = torch.empty(seed.shape[0], vocab, dtype=torch.float32, device=seed.device)
    with torch.cuda.device(seed.device):
        _ext.cuda_module().philox_uniform(
            seed.data_ptr(), offset.data_ptr(), out.data_ptr(), seed.shape[0], vocab, stream,
            torch.cuda.current_stream(seed.device).cuda_stream,
        )
    return out


define_op(
    "philox4x32_10", "(Tensor counters, Tensor keys) -> Tensor", lambda counters, keys: torch.empty_like(counters)
)
define_op(
    "philox_uniform",
    "(Tensor seed, Tensor offset, int vocab, int stream) -> Tensor",
    lambda seed, offset, vocab, stream: seed.new_empty((seed.shape[0], vocab), dtype=torch.float32),
)


# --------------------------------------------------------------------------- public API
def _check_uint32(t: torch.Tensor, name: str, cols: int) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype not in (torch.int64, torch.int32, torch.uint32):
        raise TypeError(f"{name} must be an int64, int32 or uint32 tensor")
    if t.dim() != 2 or t.shape[1] != cols:
        raise ValueError(f"{name} must have shape (n, {cols}), got {tuple(t.shape)}")
    if t.dtype == torch.int64 and t.numel() and bool(((t < 0) | (t > _MASK32)).any()):
        raise ValueError(f"{name} must hold 32-bit unsigned values in [0, 2**32)")


def philox4x32_10(counters: torch.Tensor, keys: torch.Tensor, *, backend: Optional[str] = None) -> torch.Tensor:
    """Raw Philox4x32-10: ``(n, 4)`` counters and ``(n, 2)`` keys (uint32 values) -> ``(n, 4)`` int64."""
    _check_uint32(counters, "counters", 4)
    _check_uint32(keys, "keys", 2)
    if keys.shape[0] != counters.shape[0]:
        raise ValueError(f"keys must have {counters.shape[0]} rows like counters, got {keys.shape[0]}")
    check_device(keys, "keys", counters.device)
    return call("philox4x32_10", backend, counters, keys)


def resolve_seed(
    seed: SeedLike,
    offset: SeedLike,
    batch: int,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(seed, offset)`` int64 tensors of shape ``(batch,)`` on ``device``.

    ``seed=None`` draws one seed from ``generator`` (or torch's global generator, so
    ``torch.manual_seed`` makes the call reproducible); ``offset`` defaults to 0.
    """
    if seed is None:
        seed = int(torch.randint(_INT64_RANGE[0], _INT64_RANGE[1], (), generator=generator, dtype=torch.int64))
    elif generator is not None:
        raise ValueError("pass either seed or generator, not both")
    return _as_rows(seed, "seed", batch, device), _as_rows(0 if offset is None else offset, "offset", batch, device)


def _as_rows(value: Union[int, torch.Tensor], name: str, batch: int, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.int64 and value.shape == (batch,) and value.device == device:
            return value  # the hot-loop case: already per-row int64 on the right device
        if value.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"{name} must be an int64 tensor, got {value.dtype}")
        if value.dim() > 1 or (value.dim() == 1 and value.shape[0] != batch):
            raise ValueError(f"{name} must be an int or a ({batch},) tensor, got shape {tuple(value.shape)}")
        if value.dim() == 1:
            check_device(value, name, device)
        return value.to(device=device, dtype=torch.int64).expand(batch).contiguous()
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or a ({batch},) int64 tensor, got {type(value).__name__}")
    if not (_INT64_RANGE[0] <= value <= 2**64 - 1):
        raise ValueError(f"{name} must fit in 64 bits, got {value}")
    if value > _INT64_RANGE[1]:  # a uint64 seed: same bits as int64
        value -= 2**64
    return constant_rows(value, batch, torch.int64, device)


def philox_uniform(
    seed: SeedLike,
    offset: SeedLike = 0,
    vocab: int = 1,
    *,
    batch: int = 1,
    device: Union[str, torch.device] = "cpu",
    stream: int = STREAM_SAMPLE,
    generator: Optional[torch.Generator] = None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """``(batch, vocab)`` float32 uniforms in (0, 1): entry ``[b, v]`` is the draw of the contract
    for ``seed[b]``, ``offset[b]``, token ``v`` and ``stream``. ``batch`` is taken from a tensor seed."""
    device = torch.device(device)
    if isinstance(seed, torch.Tensor) and seed.dim() == 1:
        batch, device = seed.shape[0], seed.device
    if isinstance(vocab, bool) or not isinstance(vocab, int) or not (0 <= vocab < 2**32):
        raise ValueError(f"vocab must be an int in [0, 2**32), got {vocab!r}")
    if isinstance(stream, bool) or not isinstance(stream, int) or not (0 <= stream <= _MASK32):
        raise ValueError(f"stream must be an int in [0, 2**32), got {stream!r}")
    seeds, offsets = resolve_seed(seed, offset, batch, device, generator)
    return call("philox_uniform", backend, seeds, offsets, vocab, stream)
