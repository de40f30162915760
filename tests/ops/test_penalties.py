"""Penalty ops against transformers' processors (bit-exact) and an explicit loop (presence/frequency)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    EncoderRepetitionPenaltyLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
)

from pydecode.ops import penalties as P
from pydecode.ops._registry import BackendUnavailableError, backend_unavailable_reason
from tests.helpers import assert_same

# (batch, seq, vocab): batch 1 and odd batches, vocab 1..5000, empty histories.
SHAPES = [(1, 1, 1), (1, 6, 1), (7, 13, 50), (3, 40, 5000), (2, 0, 10), (4, 25, 7), (5, 9, 111)]


# --------------------------------------------------------------------------- inputs
def make_logits(batch: int, vocab: int, seed: int, *, bad_rows: bool = True) -> torch.Tensor:
    """Random float32 logits with exact zeros (both signs), ties, and, when there are rows to
    spare, an all -inf row, a row with NaNs and a row with -inf entries."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    x[:, ::5] = 0.0
    x[:, 1::7] = -0.0
    x[:, 2::4] = 1.5  # ties
    if bad_rows and batch >= 4:
        x[1] = -math.inf
        x[2, ::3] = math.nan
        x[3, ::2] = -math.inf
    return x


def make_ids(batch: int, seq: int, high: int, seed: int) -> torch.Tensor:
    """Ids in [0, high) from a small pool so tokens repeat, plus planted copies of earlier ones."""
    g = torch.Generator().manual_seed(seed)
    pool = max(1, min(high, 12))
    ids = torch.randint(0, pool, (batch, seq), generator=g)
    if high > pool and seq > 0:
        ids += torch.randint(0, high - pool + 1, (batch, 1), generator=g)
        ids[:, ::3] = torch.randint(0, high, (batch, len(range(0, seq, 3))), generator=g)
    if seq > 4:
        ids[:, -2:] = ids[:, 1:3]  # a planted repeat
    return ids


def hf_repetition(
    logits: torch.Tensor, ids: torch.Tensor, penalty: float, ignore: Optional[object] = None
) -> torch.Tensor:
    return RepetitionPenaltyLogitsProcessor(float(penalty), prompt_ignore_length=ignore)(ids, logits.float().clone())


def loop_presence_frequency(
    logits: torch.Tensor,
    ids: torch.Tensor,
    presence: torch.Tensor,
    frequency: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The definition, one entry at a time in numpy float32: s - (presence + frequency * count)."""
    out = logits.float().clone()
    batch, vocab = out.shape
    with np.errstate(invalid="ignore", over="ignore"):
        for b in range(batch):
            counts: dict[int, int] = {}
            for j in range(ids.shape[1]):
                t = int(ids[b, j])
                if (mask is None or bool(mask[b, j])) and t < vocab:
                    counts[t] = counts.get(t, 0) + 1
            for t, c in counts.items():
                delta = np.float32(presence[b]) + np.float32(frequency[b]) * np.float32(c)
                out[b, t] = float(np.float32(out[b, t].item()) - delta)
    return out


def check_new_float32(out: torch.Tensor, logits: torch.Tensor) -> None:
    assert out.dtype == torch.float32 and out.shape == logits.shape
    assert out is not logits and (logits.numel() == 0 or out.data_ptr() != logits.data_ptr())


# --------------------------------------------------------------------------- repetition
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("penalty", [1.0, 1.3, 0.6, 17.0])
def test_repetition_matches_hf(shape: tuple[int, int, int], penalty: float) -> None:
    batch, seq, vocab = shape
    logits = make_logits(batch, vocab, seed=seq + vocab)
    ids = make_ids(batch, seq, vocab, seed=batch)
    out = P.repetition_penalty(logits, ids, penalty)
    check_new_float32(out, logits)
    assert_same(out, hf_repetition(logits, ids, penalty), what=f"repetition {shape} p={penalty}")


def test_repetition_off_is_identity_copy() -> None:
    logits = make_logits(7, 50, seed=1)
    out = P.repetition_penalty(logits, make_ids(7, 20, 50, seed=2), 1.0)
    check_new_float32(out, logits)
    assert torch.equal(out.view(torch.int32)[~logits.isnan()], logits.view(torch.int32)[~logits.isnan()])


def test_repetition_per_row_tensor_equals_hf_row_by_row() -> None:
    logits = make_logits(7, 60, seed=3)
    ids = make_ids(7, 30, 60, seed=4)
    penalty = torch.tensor([1.0, 1.2, 0.5, 3.0, 1.7, 0.9, 1.05])
    out = P.repetition_penalty(logits, ids, penalty)
    expected = torch.cat([hf_repetition(logits[b : b + 1], ids[b : b + 1], float(penalty[b])) for b in range(7)])
    assert_same(out, expected, what="per-row penalty")
    # a 0-d tensor is a scalar
    assert_same(P.repetition_penalty(logits, ids, torch.tensor(1.3)), hf_repetition(logits, ids, 1.3))


@pytest.mark.parametrize("ignore", [0, 3, 29, 30, 100])
def test_repetition_prompt_ignore_length_int(ignore: int) -> None:
    logits = make_logits(5, 40, seed=5)
    ids = make_ids(5, 30, 40, seed=6)
    out = P.repetition_penalty(logits, ids, 1.4, prompt_ignore_length=ignore)
    assert_same(out, hf_repetition(logits, ids, 1.4, ignore), what=f"prompt_ignore_length={ignore}")


def test_repetition_prompt_ignore_length_per_row() -> None:
    logits = make_logits(7, 40, seed=7)
    ids = make_ids(7, 30, 40, seed=8)
    ignore = torch.tensor([0, 1, 5, 29, 30, 31, 12])
    out = P.repetition_penalty(logits, ids, 1.4, prompt_ignore_length=ignore)
    assert_same(out, hf_repetition(logits, ids, 1.4, ignore.clone()), what="tensor ignore vs HF tensor")
    rows = [hf_repetition(logits[b : b + 1], ids[b : b + 1], 1.4, int(ignore[b])) for b in range(7)]
    assert_same(out, torch.cat(rows), what="tensor ignore vs HF int per row")
    # int32 ignore lengths and int32 ids are accepted too
    out32 = P.repetition_penalty(logits, ids.int(), 1.4, prompt_ignore_length=ignore.int())
    assert_same(out32, out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_repetition_low_precision_inputs(dtype: torch.dtype) -> None:
    logits = make_logits(7, 300, seed=9).to(dtype)
    ids = make_ids(7, 20, 300, seed=10)
    out = P.repetition_penalty(logits, ids, 1.25)
    check_new_float32(out, logits)
    assert_same(out, hf_repetition(logits, ids, 1.25), what=str(dtype))


def test_repetition_strided_logits() -> None:
    base = make_logits(101, 7, seed=11, bad_rows=False).t()  # (7, 101), column-major
    sliced = make_logits(7, 202, seed=12)[:, ::2]
    ids = make_ids(7, 15, 101, seed=13)
    for logits in (base, sliced):
        assert not logits.is_contiguous()
        assert_same(P.repetition_penalty(logits, ids, 1.5), hf_repetition(logits.contiguous(), ids, 1.5))


def test_repetition_bad_rows_documented() -> None:
    logits = make_logits(5, 30, seed=14)
    ids = torch.arange(30).repeat(5, 1)  # every token penalised
    out = P.repetition_penalty(logits, ids, 2.0)
    assert bool(torch.isneginf(out[1]).all())  # all -inf stays all -inf
    nan = logits[2].isnan()
    assert bool(out[2][nan].isnan().all()) and not bool(out[2][~nan].isnan().any())
    assert_same(out, hf_repetition(logits, ids, 2.0))


def test_repetition_errors() -> None:
    logits = make_logits(3, 10, seed=15)
    ids = make_ids(3, 5, 10, seed=16)
    with pytest.raises(TypeError, match="logits"):
        P.repetition_penalty(logits.long(), ids, 1.2)
    with pytest.raises(TypeError, match="logits"):
        P.repetition_penalty([[0.0]], ids, 1.2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="logits"):
        P.repetition_penalty(logits[0], ids, 1.2)
    for bad in (0.0, -1.0, math.nan, torch.tensor([1.0, math.nan, 1.0]), torch.tensor([1.0, 0.0, 1.0])):
        with pytest.raises(ValueError, match="penalty"):
            P.repetition_penalty(logits, ids, bad)
    with pytest.raises(ValueError, match="penalty"):
        P.repetition_penalty(logits, ids, torch.ones(4))
    with pytest.raises(TypeError, match="penalty"):
        P.repetition_penalty(logits, ids, "1.2")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="input_ids"):
        P.repetition_penalty(logits, ids.float(), 1.2)
    with pytest.raises(ValueError, match="input_ids"):
        P.repetition_penalty(logits, ids[0], 1.2)
    with pytest.raises(ValueError, match="input_ids"):
        P.repetition_penalty(logits, ids[:2], 1.2)
    with pytest.raises(ValueError, match="input_ids"):
        P.repetition_penalty(logits, ids.to("meta"), 1.2)
    with pytest.raises(ValueError, match="input_ids"):
        P.repetition_penalty(logits, ids - 5, 1.2)
    with pytest.raises(ValueError, match="prompt_ignore_length"):
        P.repetition_penalty(logits, ids, 1.2, prompt_ignore_length=-1)
    with pytest.raises(ValueError, match="prompt_ignore_length"):
        P.repetition_penalty(logits, ids, 1.2, prompt_ignore_length=torch.tensor([0, -1, 0]))
    with pytest.raises(ValueError, match="prompt_ignore_length"):
        P.repetition_penalty(logits, ids, 1.2, prompt_ignore_length=torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="prompt_ignore_length"):
        P.repetition_penalty(logits, ids, 1.2, prompt_ignore_length=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prompt_ignore_length"):
        P.repetition_penalty(logits, ids, 1.2, prompt_ignore_length=torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(BackendUnavailableError, match="repetition_penalty"):
        P.repetition_penalty(logits, ids, 1.2, backend="cuda")
    assert_same(P.repetition_penalty(logits, ids, 1.2, backend="torch"), hf_repetition(logits, ids, 1.2))


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "cuda", "triton"])
def test_repetition_matches_hf_on_cuda(backend: str) -> None:
    # transformers' division by a Python float is, on CUDA, a multiply by float32(1.0 / p) with the
    # reciprocal in double; for 3.1 that differs from 1.0f / float32(3.1) (tests/ops/test_penalties_hf_division.py).
    if backend_unavailable_reason(backend, torch.device("cuda")):
        pytest.skip(f"{backend}: {backend_unavailable_reason(backend, torch.device('cuda'))}")
    logits = make_logits(7, 5000, seed=41).cuda()
    ids = make_ids(7, 300, 5000, seed=42).cuda()
    for penalty in (1.3, 0.7, 1.17, 3.1):
        want = hf_repetition(logits, ids, penalty)
        assert_same(P.repetition_penalty(logits, ids, penalty, backend=backend), want, what=f"p={penalty}")
        rows = torch.full((7,), penalty, dtype=torch.float64, device="cuda")
        assert_same(P.repetition_penalty(logits, ids, rows, backend=backend), want, what=f"float64 rows p={penalty}")
        # float32 rows hold float32(p): transformers given that value (as a Python float).
        rows32 = rows.float()
        assert_same(P.repetition_penalty(logits, ids, rows32, backend=backend),
                    hf_repetition(logits, ids, float(rows32[0])), what=f"float32 rows p={penalty}")
        enc = ids[:, :40]  # one encoder row per logits row: transformers does not broadcast a single row
        assert_same(P.encoder_repetition_penalty(logits, enc, penalty, backend=backend),
                    hf_encoder_repetition(logits, enc, penalty), what=f"encoder p={penalty}")


# --------------------------------------------------------------------------- encoder repetition
def hf_encoder_repetition(logits: torch.Tensor, enc: torch.Tensor, penalty: float) -> torch.Tensor:
    proc = EncoderRepetitionPenaltyLogitsProcessor(float(penalty), enc)
    return proc(torch.zeros(logits.shape[0], 1, dtype=torch.long), logits.float().clone())


# (batch, enc_batch, enc_len, vocab)
ENC_SHAPES = [(1, 1, 5, 10), (6, 2, 9, 50), (7, 7, 12, 30), (4, 1, 20, 5000), (3, 3, 0, 10), (5, 5, 4, 1)]


@pytest.mark.parametrize("shape", ENC_SHAPES)
@pytest.mark.parametrize("penalty", [1.0, 1.3, 0.7])
def test_encoder_repetition_matches_hf(shape: tuple[int, int, int, int], penalty: float) -> None:
    batch, enc_batch, enc_len, vocab = shape
    logits = make_logits(batch, vocab, seed=vocab)
    enc = make_ids(enc_batch, enc_len, vocab, seed=enc_len)
    out = P.encoder_repetition_penalty(logits, enc, penalty)
    check_new_float32(out, logits)
    assert_same(out, hf_encoder_repetition(logits, enc, penalty), what=f"encoder {shape}")


def test_encoder_repetition_per_row_and_dtypes() -> None:
    logits = make_logits(6, 80, seed=17)
    enc = make_ids(2, 15, 80, seed=18)
    penalty = torch.tensor([1.0, 1.1, 0.3, 2.5, 1.9, 0.77], dtype=torch.float64)
    out = P.encoder_repetition_penalty(logits, enc, penalty)
    rows = [
        hf_encoder_repetition(logits[b : b + 1], enc[b // 3 : b // 3 + 1], float(penalty[b])) for b in range(6)
    ]
    assert_same(out, torch.cat(rows), what="per-row encoder penalty")
    for dtype in (torch.float16, torch.bfloat16):
        low = logits.to(dtype)
        assert_same(P.encoder_repetition_penalty(low, enc, 1.3), hf_encoder_repetition(low, enc, 1.3))
    strided = make_logits(6, 160, seed=19)[:, ::2]
    assert_same(P.encoder_repetition_penalty(strided, enc, 1.3), hf_encoder_repetition(strided.contiguous(), enc, 1.3))


@pytest.mark.parametrize("backend", ["torch", "cpu", "triton"])
def test_malformed_ids_raise_and_out_of_vocab_modes(backend: str) -> None:
    """Negative ids in any penalty history raise on every backend (the cpu backend checks them in
    C++, the others in Python). Ids >= vocab raise by default (out_of_vocab="raise"), at any
    position, also ignored or masked ones; out_of_vocab="ignore" drops them, as transformers does."""
    if backend_unavailable_reason(backend):
        pytest.skip(f"{backend}: {backend_unavailable_reason(backend)}")
    logits = make_logits(2, 20, seed=20)
    negative = torch.tensor([[3, -1, 4, 3], [7, 7, 3, 1]])
    oov = torch.tensor([[3, 25, 4, 3], [7, 7, 30, 1]])
    in_vocab = torch.tensor([[3, 3, 4, 3], [7, 7, 7, 1]])  # the same set of in-vocab tokens
    ops = {  # argument name -> the ops that read it
        "input_ids": [
            lambda ids, **kw: P.repetition_penalty(logits, ids, 1.4, backend=backend, **kw),
            lambda ids, **kw: P.apply_penalties(logits, ids, None, repetition_penalty=1.4, backend=backend, **kw),
        ],
        "output_ids": [
            lambda ids, **kw: P.presence_frequency_penalty(logits, ids, 0.5, 0.25, backend=backend, **kw),
            lambda ids, **kw: P.apply_penalties(logits, None, ids, frequency_penalty=0.25, backend=backend, **kw),
        ],
        "encoder_input_ids": [lambda ids, **kw: P.encoder_repetition_penalty(logits, ids, 1.5, backend=backend, **kw)],
    }
    for name, fns in ops.items():
        for fn in fns:
            for dtype in (torch.int64, torch.int32):
                for mode in ("raise", "ignore"):
                    with pytest.raises(ValueError, match=f"{name} must hold token ids >= 0, got -1"):
                        fn(negative.to(dtype), out_of_vocab=mode)
                with pytest.raises(ValueError, match=rf"{name} must hold token ids < 20 \(.*\), got (25|30)"):
                    fn(oov.to(dtype))
            with pytest.raises(ValueError, match="out_of_vocab must be 'raise' or 'ignore', got 'clamp'"):
                fn(in_vocab, out_of_vocab="clamp")
            if name != "output_ids":
                assert_same(fn(oov, out_of_vocab="ignore"), fn(in_vocab))
    assert_same(  # presence/frequency: as if the out-of-vocabulary positions were masked out
        P.presence_frequency_penalty(logits, oov, 0.5, 0.25, out_of_vocab="ignore", backend=backend),
        P.presence_frequency_penalty(logits, oov.clamp(max=19), 0.5, 0.25, output_mask=oov < 20, backend=backend),
    )
    # Excluded positions are checked too: the rule is "every id of the tensor", as for negative ids.
    with pytest.raises(ValueError, match="input_ids must hold token ids < 20"):
        P.repetition_penalty(logits, oov, 1.4, prompt_ignore_length=3, backend=backend)
    with pytest.raises(ValueError, match="output_ids must hold token ids < 20"):
        P.presence_frequency_penalty(logits, oov, 0.5, 0.25, output_mask=oov < 20, backend=backend)


@pytest.mark.parametrize("update_backend", ["torch", "cpu"])
def test_penalty_state_out_of_vocab_modes(update_backend: str) -> None:
    """PenaltyState refuses ids >= vocab_size by default, in the prompt (masked positions too) and
    in update (the state unchanged); "ignore" drops them and matches apply_penalties(..., "ignore")."""
    if backend_unavailable_reason(update_backend):
        pytest.skip(f"{update_backend}: {backend_unavailable_reason(update_backend)}")
    prompt = torch.tensor([[3, 25, 4, 3], [7, 7, 30, 1]])
    with pytest.raises(ValueError, match=r"prompt_ids must hold token ids < 20 \(vocab_size\), got 30"):
        P.PenaltyState(prompt, 20, attention_mask=(prompt < 20).long())
    with pytest.raises(ValueError, match="out_of_vocab must be 'raise' or 'ignore'"):
        P.PenaltyState(prompt, 20, out_of_vocab=None)  # type: ignore[arg-type]
    state = P.PenaltyState(prompt.clamp(max=19), 20)
    before = [t.clone() for t in (state.tokens, state.in_rep, state.counts, state.lengths)]
    for bad, message in ((torch.tensor([3, 21]), r"new_tokens must hold token ids < 20 \(.*\), got 21"),
                         (torch.tensor([-4, 3]), "new_tokens must hold token ids >= 0, got -4")):
        with pytest.raises(ValueError, match=message):
            state.update(bad, backend=update_backend)
        assert all(torch.equal(a, b) for a, b in zip(before, (state.tokens, state.in_rep, state.counts, state.lengths)))
    ignoring = P.PenaltyState(prompt, 20, prompt_ignore_length=1, out_of_vocab="ignore")
    steps = torch.tensor([[3, 21], [20, 5], [3, 5]])
    for step in steps:
        ignoring.update(step, backend=update_backend)
    logits = make_logits(2, 20, seed=23)
    kw = dict(repetition_penalty=1.3, presence_penalty=0.5, frequency_penalty=0.25)
    assert_same(
        P.apply_penalties_from_state(logits, ignoring, **kw),
        P.apply_penalties(logits, torch.cat([prompt, steps.t()], 1), steps.t(), prompt_ignore_length=1,
                          out_of_vocab="ignore", **kw),
    )


def test_encoder_repetition_errors() -> None:
    logits = make_logits(6, 10, seed=21)
    enc = make_ids(2, 5, 10, seed=22)
    for bad in (0.0, -2.0, math.nan, torch.tensor([1.0] * 5 + [math.nan])):
        with pytest.raises(ValueError, match="penalty"):
            P.encoder_repetition_penalty(logits, enc, bad)
    for bad_enc in (make_ids(4, 5, 10, seed=0), make_ids(7, 5, 10, seed=0), enc[:0]):
        with pytest.raises(ValueError, match="encoder_input_ids"):
            P.encoder_repetition_penalty(logits, bad_enc, 1.2)
    # A 1-D tensor is one prompt shared by every row (as in encoder_no_repeat_ngram_mask).
    assert_same(P.encoder_repetition_penalty(logits, enc[0], 1.2), P.encoder_repetition_penalty(logits, enc[:1], 1.2))
    with pytest.raises(TypeError, match="encoder_input_ids"):
        P.encoder_repetition_penalty(logits, enc.float(), 1.2)
    with pytest.raises(ValueError, match="encoder_input_ids"):
        P.encoder_repetition_penalty(logits, enc - 20, 1.2)
    with pytest.raises(ValueError, match="encoder_input_ids"):
        P.encoder_repetition_penalty(logits, enc.to("meta"), 1.2)


# --------------------------------------------------------------------------- presence / frequency
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("params", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.25), (1.5, -0.3), (-2.0, 0.7)])
def test_presence_frequency_matches_loop(shape: tuple[int, int, int], params: tuple[float, float]) -> None:
    batch, gen, vocab = shape
    logits = make_logits(batch, vocab, seed=gen * 3 + vocab)
    ids = make_ids(batch, gen, vocab, seed=gen)
    out = P.presence_frequency_penalty(logits, ids, *params)
    check_new_float32(out, logits)
    rows = torch.full((batch,), params[0]), torch.full((batch,), params[1])
    assert_same(out, loop_presence_frequency(logits, ids, *rows), what=f"{shape} {params}")


def test_presence_frequency_off_is_identity() -> None:
    logits = make_logits(7, 50, seed=23)
    out = P.presence_frequency_penalty(logits, make_ids(7, 20, 50, seed=24), 0.0, 0.0)
    keep = ~logits.isnan()
    assert torch.equal(out.view(torch.int32)[keep], logits.view(torch.int32)[keep])


def test_presence_frequency_per_row_and_mask() -> None:
    logits = make_logits(7, 40, seed=25)
    ids = make_ids(7, 30, 40, seed=26)
    presence = torch.tensor([0.0, 0.5, 1.0, -0.5, 2.0, 0.1, 0.0])
    frequency = torch.tensor([0.0, 0.1, 0.0, 0.3, -1.0, 0.05, 0.9])
    mask = torch.rand(7, 30, generator=torch.Generator().manual_seed(1)) > 0.3
    mask[0] = False
    mask[1] = True
    out = P.presence_frequency_penalty(logits, ids, presence, frequency, output_mask=mask)
    assert_same(out, loop_presence_frequency(logits, ids, presence, frequency, mask), what="per-row + mask")
    # a fully masked row is untouched; int32 ids give the same result
    assert_same(out[0], logits[0])
    assert_same(P.presence_frequency_penalty(logits, ids.int(), presence, frequency, output_mask=mask), out)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_presence_frequency_low_precision_and_strided(dtype: torch.dtype) -> None:
    logits = make_logits(7, 300, seed=27).to(dtype)[:, ::3]
    ids = make_ids(7, 25, 100, seed=28)
    out = P.presence_frequency_penalty(logits, ids, 0.4, 0.15)
    check_new_float32(out, logits)
    expected = loop_presence_frequency(logits, ids, torch.full((7,), 0.4), torch.full((7,), 0.15))
    assert_same(out, expected, what=str(dtype))


def test_presence_frequency_bad_rows_documented() -> None:
    logits = make_logits(5, 30, seed=29)
    ids = torch.arange(30).repeat(5, 2)
    out = P.presence_frequency_penalty(logits, ids, 1.0, 1.0)
    assert bool(torch.isneginf(out[1]).all())
    nan = logits[2].isnan()
    assert bool(out[2][nan].isnan().all()) and not bool(out[2][~nan].isnan().any())


def test_presence_frequency_errors() -> None:
    logits = make_logits(3, 10, seed=30)
    ids = make_ids(3, 5, 10, seed=31)
    for bad in (math.inf, -math.inf, math.nan, 1e39, torch.tensor([0.0, math.inf, 0.0])):
        with pytest.raises(ValueError, match="presence_penalty"):
            P.presence_frequency_penalty(logits, ids, bad, 0.0)
        with pytest.raises(ValueError, match="frequency_penalty"):
            P.presence_frequency_penalty(logits, ids, 0.0, bad)
    with pytest.raises(ValueError, match="presence_penalty"):
        P.presence_frequency_penalty(logits, ids, torch.zeros(2), 0.0)
    with pytest.raises(TypeError, match="output_mask"):
        P.presence_frequency_penalty(logits, ids, 0.1, 0.1, output_mask=torch.ones(3, 5))
    with pytest.raises(ValueError, match="output_mask"):
        P.presence_frequency_penalty(logits, ids, 0.1, 0.1, output_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="output_mask"):
        P.presence_frequency_penalty(logits, ids, 0.1, 0.1, output_mask=torch.ones(3, 5, dtype=torch.bool).to("meta"))
    with pytest.raises(ValueError, match="output_ids"):
        P.presence_frequency_penalty(logits, ids[:1], 0.1, 0.1)
    with pytest.raises(ValueError, match="output_ids"):
        P.presence_frequency_penalty(logits, -ids - 1, 0.1, 0.1)
    with pytest.raises(TypeError, match="output_ids"):
        P.presence_frequency_penalty(logits, ids.double(), 0.1, 0.1)


# --------------------------------------------------------------------------- combined
def test_apply_penalties_is_the_two_ops_in_sequence() -> None:
    logits = make_logits(7, 64, seed=32)
    input_ids = make_ids(7, 30, 64, seed=33)
    output_ids = input_ids[:, 20:]
    rep = torch.tensor([1.0, 1.2, 0.8, 1.5, 2.0, 1.1, 1.3])
    presence = torch.tensor([0.0, 0.5, 0.2, -0.1, 1.0, 0.3, 0.0])
    ignore = torch.tensor([0, 2, 4, 6, 8, 10, 31])
    mask = torch.ones(7, 10, dtype=torch.bool)
    mask[3, 5:] = False
    out = P.apply_penalties(
        logits, input_ids, output_ids, repetition_penalty=rep, presence_penalty=presence,
        frequency_penalty=0.2, prompt_ignore_length=ignore, output_mask=mask,
    )
    check_new_float32(out, logits)
    step = P.repetition_penalty(logits, input_ids, rep, prompt_ignore_length=ignore)
    step = P.presence_frequency_penalty(step, output_ids, presence, 0.2, output_mask=mask)
    assert_same(out, step, what="fused vs sequence")
    hf = torch.cat(
        [hf_repetition(logits[b : b + 1], input_ids[b : b + 1], float(rep[b]), int(ignore[b])) for b in range(7)]
    )
    expected = loop_presence_frequency(hf, output_ids, presence, torch.full((7,), 0.2), mask)
    assert_same(out, expected, what="fused vs HF + loop")


def test_apply_penalties_parts() -> None:
    logits = make_logits(5, 40, seed=34).to(torch.bfloat16)
    input_ids = make_ids(5, 12, 40, seed=35)
    out = P.apply_penalties(logits, input_ids, None, repetition_penalty=1.3)
    assert_same(out, hf_repetition(logits, input_ids, 1.3))
    out = P.apply_penalties(logits, None, input_ids, frequency_penalty=0.5)
    assert_same(out, P.presence_frequency_penalty(logits, input_ids, 0.0, 0.5))
    out = P.apply_penalties(logits, None, input_ids, presence_penalty=0.5)
    assert_same(out, P.presence_frequency_penalty(logits, input_ids, 0.5, 0.0))
    out = P.apply_penalties(logits, input_ids, input_ids)
    check_new_float32(out, logits)
    assert_same(out, logits.float())


def test_apply_penalties_errors() -> None:
    logits = make_logits(3, 10, seed=36)
    ids = make_ids(3, 5, 10, seed=37)
    with pytest.raises(ValueError, match="input_ids"):
        P.apply_penalties(logits, None, ids, repetition_penalty=1.2)
    with pytest.raises(ValueError, match="output_ids"):
        P.apply_penalties(logits, ids, None, presence_penalty=0.2)
    with pytest.raises(ValueError, match="repetition_penalty"):
        P.apply_penalties(logits, ids, ids, repetition_penalty=0.0)
    with pytest.raises(ValueError, match="frequency_penalty"):
        P.apply_penalties(logits, ids, ids, frequency_penalty=math.nan)
    with pytest.raises(ValueError, match="prompt_ignore_length"):
        P.apply_penalties(logits, ids, ids, repetition_penalty=1.2, prompt_ignore_length=-3)
    with pytest.raises(ValueError, match="output_mask"):
        P.apply_penalties(logits, ids, ids, presence_penalty=0.1, output_mask=torch.ones(3, 1, dtype=torch.bool))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 5),
    seq=st.integers(0, 12),
    vocab=st.integers(1, 9),
    rep=st.sampled_from([1.0, 1.5, 0.5]),
    presence=st.sampled_from([0.0, 0.3, -1.0]),
    frequency=st.sampled_from([0.0, 0.2, -0.6]),
    ignore=st.integers(0, 13),
    seed=st.integers(0, 2**16),
)
def test_apply_penalties_property(
    batch: int, seq: int, vocab: int, rep: float, presence: float, frequency: float, ignore: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randint(-3, 4, (batch, vocab), generator=g).float()  # many ties and zeros
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    out = P.apply_penalties(
        logits, ids, ids, repetition_penalty=rep, presence_penalty=presence,
        frequency_penalty=frequency, prompt_ignore_length=ignore,
    )
    expected = loop_presence_frequency(
        hf_repetition(logits, ids, rep, ignore), ids, torch.full((batch,), presence), torch.full((batch,), frequency)
    )
    assert_same(out, expected)


# --------------------------------------------------------------------------- torch.compile
def _compiled_equal(fn, *args) -> None:  # type: ignore[no-untyped-def]
    torch._dynamo.reset()
    assert_same(torch.compile(fn, fullgraph=False)(*args), fn(*args), what="compiled vs eager")


@pytest.mark.slow
def test_compile_and_opcheck() -> None:
    logits = make_logits(7, 50, seed=38)
    ids = make_ids(7, 13, 50, seed=39)
    enc = make_ids(7, 9, 50, seed=40)
    _compiled_equal(lambda x, i: P.repetition_penalty(x, i, 1.3, prompt_ignore_length=2), logits, ids)
    _compiled_equal(lambda x, e: P.encoder_repetition_penalty(x, e, 1.3), logits, enc)
    _compiled_equal(lambda x, i: P.presence_frequency_penalty(x, i, 0.5, 0.1), logits, ids)
    _compiled_equal(
        lambda x, i: P.apply_penalties(x, i, i[:, 5:], repetition_penalty=1.2, frequency_penalty=0.3), logits, ids
    )
    # opcheck compares outputs with assert_close, where NaN != NaN: no bad rows here.
    logits = make_logits(7, 50, seed=38, bad_rows=False)
    rows = torch.full((7,), 1.3)
    opcheck = torch.library.opcheck
    opcheck(torch.ops.pydecode.repetition_penalty.default, (logits, ids, rows, torch.full((7,), 2)))
    opcheck(torch.ops.pydecode.encoder_repetition_penalty.default, (logits, enc, rows))
    opcheck(torch.ops.pydecode.presence_frequency_penalty.default, (logits, ids, rows, rows, ids > 3))
    opcheck(
        torch.ops.pydecode.apply_penalties.default, (logits, ids, ids, rows, rows, rows, None, None)
    )
