"""The triton backend of the penalty ops (triton_kernels/penalties.py) against the torch
references, bit for bit: under the interpreter on CPU at small shapes, compiled on a GPU
(``gpu`` marker) at small and full shapes."""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import penalties as P
from tests.ops.triton_inputs import DEVICES, DTYPES, GPU_SHAPES, assert_exact, check, make_ids, make_logits, strided


def check_ignoring(fn, *args, **kwargs) -> torch.Tensor:
    """:func:`check` on the out_of_vocab="ignore" path: make_ids plants ids >= vocab."""
    return check(fn, *args, out_of_vocab="ignore", **kwargs)


def _all_ops(logits: torch.Tensor, ids: torch.Tensor, what: str) -> None:
    """Every stateless penalty op, scalar and per-row parameters, int64 and int32 ids."""
    batch, device = logits.shape[0], logits.device
    per_row = torch.linspace(0.5, 3.0, batch, device=device)
    mask = torch.rand(ids.shape, generator=torch.Generator().manual_seed(batch)) < 0.7
    mask = mask.to(device)
    check_ignoring(P.repetition_penalty, logits, ids, 1.3, what=f"rep {what}")
    check_ignoring(P.repetition_penalty, logits, ids.int(), per_row, prompt_ignore_length=3, what=f"rep per-row {what}")
    check_ignoring(P.encoder_repetition_penalty, logits, ids[:1], 0.7, what=f"enc {what}")
    check_ignoring(P.encoder_repetition_penalty, logits, ids, per_row, what=f"enc per-row {what}")
    check_ignoring(P.presence_frequency_penalty, logits, ids, 0.5, -0.25, output_mask=mask, what=f"pf {what}")
    check_ignoring(P.presence_frequency_penalty, logits, ids.int(), per_row - 1, per_row, what=f"pf per-row {what}")
    gen = ids[:, ids.shape[1] // 3 :]
    check_ignoring(P.apply_penalties, logits, ids, gen, repetition_penalty=per_row, presence_penalty=0.3,
          frequency_penalty=0.6, output_mask=mask[:, ids.shape[1] // 3 :], what=f"fused {what}")
    check_ignoring(P.apply_penalties, logits, ids, gen, repetition_penalty=1.1, what=f"fused rep only {what}")
    check_ignoring(P.apply_penalties, logits, ids, gen, frequency_penalty=-2.0, what=f"fused freq only {what}")


@pytest.mark.parametrize("dev", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 111), (33, 300)])
def test_penalties_match_reference(dev: str, dtype: torch.dtype, shape: tuple[int, int]) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch + vocab, dtype=dtype, device=dev)
    _all_ops(logits, make_ids(batch, 50, vocab, seed=vocab, device=dev), f"{shape} {dtype}")


@pytest.mark.parametrize("dev", DEVICES)
def test_penalties_strides_ignore_length_and_long_history(dev: str) -> None:
    logits = make_logits(6, 777, seed=1, device=dev)
    ids = make_ids(6, 600, 777, seed=2, device=dev)  # longer than one block of lanes on a GPU
    buffer = torch.zeros(6, 700, dtype=torch.int32, device=dev)
    buffer[:, :600] = ids
    for mode in ("wide", "every_other", "column_major"):
        x = strided(logits.bfloat16(), mode)
        check_ignoring(P.apply_penalties, x, buffer[:, :600], ids.t().contiguous().t(), repetition_penalty=1.7,
              presence_penalty=0.5, what=mode)
    check_ignoring(P.repetition_penalty, logits[:1].expand(5, -1), ids[:1].expand(5, -1), 1.2, what="stride-0 rows")
    per_row = torch.tensor([0, 1, 59, 600, 601, 10**6], device=dev)
    for ignore in (0, 7, 600, 10**6, per_row, per_row.int()):
        check_ignoring(P.repetition_penalty, logits, ids, 1.4, prompt_ignore_length=ignore, what=f"ignore={ignore}")


@pytest.mark.parametrize("dev", DEVICES)
def test_penalties_empty_and_degenerate(dev: str) -> None:
    for batch, vocab, seq in [(0, 10, 3), (3, 0, 4), (4, 9, 0), (1, 1, 1), (2, 5, 1)]:
        logits = make_logits(batch, vocab, seed=5, device=dev)
        ids = make_ids(batch, seq, max(vocab, 1), seed=6, device=dev)
        if batch and vocab and seq:
            _all_ops(logits, ids, f"{(batch, vocab, seq)}")
        check_ignoring(P.repetition_penalty, logits, ids, 1.5, what=f"{(batch, vocab, seq)}")
        check_ignoring(P.presence_frequency_penalty, logits, ids, 0.5, 1.0, what=f"{(batch, vocab, seq)}")
    logits = make_logits(4, 50, seed=7, device=dev)
    ids = make_ids(4, 30, 50, seed=8, device=dev)
    # Every position masked out / ignored: nothing but the float32 copy.
    none = torch.zeros(ids.shape, dtype=torch.bool, device=dev)
    check_ignoring(P.presence_frequency_penalty, logits, ids, 0.5, 1.0, output_mask=none, what="all masked")
    check_ignoring(P.repetition_penalty, logits, ids, 2.0, prompt_ignore_length=30, what="all ignored")
    # frequency * count overflows to inf; presence + inf - inf is NaN: IEEE as in the reference.
    check_ignoring(P.presence_frequency_penalty, logits, ids, 3e38, 3e38, what="overflow")
    check_ignoring(P.presence_frequency_penalty, logits, ids, -3e38, 3e38, what="inf - inf")


@pytest.mark.parametrize("dev", DEVICES)
def test_penalties_batch_1024(dev: str) -> None:
    logits = make_logits(1024, 40, seed=9, dtype=torch.float16, device=dev)
    ids = make_ids(1024, 12, 40, seed=10, device=dev)
    check_ignoring(P.apply_penalties, logits, ids, ids[:, 4:], repetition_penalty=1.3, presence_penalty=0.2,
          frequency_penalty=0.1, what="batch 1024")


def _state_steps(dev: str, batch: int, vocab: int, prompt_len: int, steps: int, seed: int) -> None:
    """PenaltyState over ``steps`` decode steps: the triton op equals the torch op on the state and
    apply_penalties on the full history, at every step (capacity growth included)."""
    g = torch.Generator().manual_seed(seed)
    prompt = make_ids(batch, prompt_len, vocab, seed=seed, device=dev)
    ignore = torch.randint(0, prompt_len + 3, (batch,), generator=g).to(dev)
    state = P.PenaltyState(prompt, vocab, prompt_ignore_length=ignore, out_of_vocab="ignore")
    generated = torch.zeros(batch, 0, dtype=torch.int64, device=dev)
    active_steps = torch.zeros(batch, 0, dtype=torch.bool, device=dev)
    rep = torch.linspace(0.6, 1.8, batch, device=dev)
    for step in range(steps):
        logits = make_logits(batch, vocab, seed=seed + step, dtype=DTYPES[step % 3], device=dev)
        kw = dict(repetition_penalty=rep, presence_penalty=0.4, frequency_penalty=0.3)
        got = check(P.apply_penalties_from_state, logits, state, **kw, what=f"state step {step}")
        full = P.apply_penalties(logits, torch.cat([prompt, generated], 1), generated, prompt_ignore_length=ignore,
                                 output_mask=active_steps, out_of_vocab="ignore", **kw, backend="torch")
        assert_exact(got, full, what=f"state vs history, step {step}")
        check(P.apply_penalties_from_state, logits, state, presence_penalty=-1.0, what=f"pf only, step {step}")
        new = torch.randint(0, vocab + 2, (batch,), generator=g).to(dev)  # some >= vocab: never counted
        active = (torch.rand(batch, generator=g) < 0.8).to(dev)
        state.update(new, active, backend="torch")
        generated = torch.cat([generated, new[:, None]], 1)
        active_steps = torch.cat([active_steps, active[:, None]], 1)


@pytest.mark.parametrize("dev", DEVICES)
def test_penalty_state_matches_history(dev: str) -> None:
    _state_steps(dev, batch=5, vocab=23, prompt_len=9, steps=70, seed=11)  # 70 > the first capacity
    _state_steps(dev, batch=3, vocab=1000, prompt_len=0, steps=3, seed=12)  # empty prompt


# --------------------------------------------------------------------------- full shapes on a GPU
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", GPU_SHAPES)
def test_penalties_full_shapes_gpu(shape: tuple[int, int], dtype: torch.dtype) -> None:
    batch, vocab = shape
    logits = make_logits(batch, vocab, seed=batch + vocab, dtype=dtype, device="cuda")
    ids = make_ids(batch, 640, vocab, seed=vocab, pool=300, device="cuda")
    _all_ops(logits, ids, f"{shape} {dtype}")
    state = P.PenaltyState(ids[:, :512], vocab, out_of_vocab="ignore")
    for t in range(512, 640):
        state.update(ids[:, t], backend="torch")
    check(P.apply_penalties_from_state, logits, state, repetition_penalty=1.2, presence_penalty=0.5,
          frequency_penalty=0.25, what=f"state {shape} {dtype}")
