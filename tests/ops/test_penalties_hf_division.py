"""transformers' division by a Python float, as every backend reproduces it on each device.

transformers computes ``scores / x`` with ``x`` a Python float (temperature, repetition penalty,
encoder penalty ``q = 1 / penalty``). On CPU torch divides by ``float32(x)``; on CUDA it multiplies
by ``float32(1.0 / x)``, the reciprocal taken in double (measured on an H200: penalty 3.1 turns 1.5
into 0x1.ef7bdep-2; ``1.0f / float32(3.1)`` would give 0x1.ef7be0p-2). ``scores * x`` is
``scores * float32(x)`` on both. The CPU tests here check the CUDA rule against numpy (float64
reciprocal, float32 products) on the torch references and, under the Triton interpreter, on the
Triton kernels with that rule forced; the ``gpu`` tests compare every backend with transformers on
CUDA at values where the two reciprocals differ (3.1, 1.1, 0.85, 2.3). The cuda kernels' arithmetic
on CPU: tests/cuda_emulation (the temperature of the filter chain).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    EncoderRepetitionPenaltyLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
)

from pydecode.ops import backend_unavailable_reason
from pydecode.ops import penalties as P
from pydecode.ops import sampling as S
from tests.helpers import assert_same

# Values where float32(1.0 / x) (double reciprocal) != 1.0f / float32(x), and two where they agree.
DIFFERING = (3.1, 1.1, 0.85, 2.3)
AGREEING = (1.3, 0.7)
_TRITON_CPU_WHY = backend_unavailable_reason("triton", torch.device("cpu"))
needs_triton_cpu = pytest.mark.skipif(bool(_TRITON_CPU_WHY), reason=f"triton on CPU: {_TRITON_CPU_WHY}")


def f32_reciprocal(x: float) -> np.float32:
    return np.float32(1.0 / float(x))  # the division in float64, then one rounding


def cuda_rule(scores: torch.Tensor, x: float) -> torch.Tensor:
    """numpy: scores < 0 ? scores * float32(x) : scores * float32(1.0 / x), float32 products."""
    s = scores.detach().cpu().float().numpy()
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.where(s < 0, s * np.float32(x), s * f32_reciprocal(x))
    return torch.from_numpy(out.astype(np.float32))


def logits_rows(batch: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 3
    x[:, ::4] = 1.5  # the measured value
    x[:, 1::9] = -0.0
    x[0, ::5] = math.nan
    if batch > 2:
        x[2] = -math.inf
    return x


def penalised(logits: torch.Tensor, ids: torch.Tensor, x_of_row: list[float]) -> torch.Tensor:
    """The CUDA rule on every distinct id of each row (the definition, row by row)."""
    out = logits.float().clone()
    for b in range(out.shape[0]):
        cols = sorted({int(t) for t in ids[b].tolist() if 0 <= int(t) < out.shape[1]})
        if cols:
            out[b, cols] = cuda_rule(logits[b, cols], x_of_row[b])
    return out


def test_the_measured_value_and_the_rule() -> None:
    one_half = torch.tensor([[1.5, -1.5, 0.0, -0.0, 2.0**-140, math.inf, -math.inf, math.nan]])
    got = P.hf_penalize(one_half, torch.tensor([[3.1]], dtype=torch.float64), reciprocal=True)
    assert got[0, 0].item() == float.fromhex("0x1.ef7bdep-2")  # what transformers gives on an H200
    assert_same(got, cuda_rule(one_half, 3.1))
    for x in DIFFERING:
        assert f32_reciprocal(x) != np.float32(1.0) / np.float32(x), x  # the values do tell the rules apart
    for x in DIFFERING + AGREEING:
        s = logits_rows(3, 500, seed=int(x * 100))
        rows = torch.full((3, 1), x, dtype=torch.float64)
        assert_same(P.hf_penalize(s, rows, reciprocal=True), cuda_rule(s, x), what=f"CUDA rule x={x}")
        # The CPU rule is transformers' on CPU tensors.
        hf_cpu = torch.where(s < 0, s * x, s / x)
        assert_same(P.hf_penalize(s, rows, reciprocal=False), hf_cpu, what=f"CPU rule x={x}")
        # float32 rows: the reciprocal of the float32 value (transformers has no such input).
        rows32 = rows.float()
        assert_same(P.hf_penalize(s, rows32, reciprocal=True), cuda_rule(s, float(rows32[0, 0])))
        t = torch.full((3,), x, dtype=torch.float64)
        assert_same(S._temperature(s, t, reciprocal=True), torch.from_numpy(s.numpy() * f32_reciprocal(x)),
                    what=f"temperature T={x}")
        assert_same(S._temperature(s, t, reciprocal=False), s / x, what=f"temperature CPU T={x}")


@pytest.fixture
def cuda_rule_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The penalty references apply the CUDA rule to CPU tensors."""
    monkeypatch.setattr(P, "_reciprocal_rule", lambda device: True)


def _ids(batch: int, seq: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, seq), generator=g)


def test_penalty_references_follow_the_cuda_rule(cuda_rule_on_cpu: None) -> None:
    logits = logits_rows(5, 300, seed=1)
    ids = _ids(5, 120, 300, seed=2)
    per_row = torch.tensor(DIFFERING + AGREEING[:1], dtype=torch.float64)
    for penalty in (3.1, per_row):
        xs = per_row.tolist() if isinstance(penalty, torch.Tensor) else [penalty] * 5
        want = penalised(logits, ids, xs)
        assert_same(P.repetition_penalty(logits, ids, penalty, backend="torch"), want, what="repetition")
        got = P.apply_penalties(logits, ids, None, repetition_penalty=penalty, backend="torch")
        assert_same(got, want, what="apply_penalties")
        state = P.PenaltyState(ids, 300)
        assert_same(state.apply(logits, repetition_penalty=penalty, backend="torch"), want, what="state")
        # The encoder penalty is the same rule with x = 1 / penalty (a Python float in transformers).
        enc = ids[:, :30]
        want = penalised(logits, enc, [1.0 / x for x in xs])
        assert_same(P.encoder_repetition_penalty(logits, enc, penalty, backend="torch"), want, what="encoder")


@needs_triton_cpu
def test_triton_penalty_kernels_cuda_rule_on_the_interpreter(cuda_rule_on_cpu: None) -> None:
    from pydecode.triton_kernels import penalties as TP

    logits = logits_rows(7, 200, seed=3)
    ids = _ids(7, 90, 200, seed=4)
    rows = torch.tensor(DIFFERING + AGREEING + (3.1,), dtype=torch.float64)
    for p in (rows, rows.float()):
        want = P.repetition_penalty_torch(logits, ids, p, None)
        assert_same(want, penalised(logits, ids, p.double().tolist()), what="reference")
        got = TP._launch(logits, ids, 1, p, None, None, None, None, None, reciprocal=True)
        assert_same(got, want, what=f"triton rows kernel {p.dtype}")
        state = P.PenaltyState(ids, 200)
        got = TP.apply_penalties_state_triton(logits, state.tokens, state.in_rep, state.counts, state.lengths, p,
                                              None, None, reciprocal=True)
        assert_same(got, want, what=f"triton state kernel {p.dtype}")
    enc = ids[:1, :40]  # one encoder row serving every logits row
    q = 1.0 / rows
    got = TP._launch(logits, enc, 7, q, None, None, None, None, None, reciprocal=True)
    assert_same(got, P.encoder_repetition_penalty_torch(logits, enc, q), what="triton encoder")
    # Unforced, CPU tensors keep the CPU rule.
    assert_same(TP._launch(logits, ids, 1, rows, None, None, None, None, None),
                penalised_cpu(logits, ids, rows.tolist()), what="triton CPU rule")


def penalised_cpu(logits: torch.Tensor, ids: torch.Tensor, xs: list[float]) -> torch.Tensor:
    out = logits.float().clone()
    for b in range(out.shape[0]):
        out[b : b + 1] = RepetitionPenaltyLogitsProcessor(float(xs[b]))(ids[b : b + 1], out[b : b + 1].clone())
    return out


@needs_triton_cpu
def test_triton_temperature_cuda_rule_on_the_interpreter() -> None:
    import triton

    from pydecode.triton_kernels import sampling as TS
    from pydecode.triton_kernels._common import T_MUL_RECIP

    x = logits_rows(4, 300, seed=5)
    t = torch.tensor(DIFFERING, dtype=torch.float64)
    want = S._temperature(x, t, reciprocal=True)
    assert_same(want, torch.from_numpy(x.numpy() * np.array([f32_reciprocal(v) for v in DIFFERING])[:, None]
                                       .astype(np.float32)), what="reference")
    out = torch.empty_like(x)
    TS._temperature_kernel[(4, triton.cdiv(300, 128))](x, x.stride(0), 300, t, out, TRANSFORM=T_MUL_RECIP, BLOCK=128)
    assert_same(out, want, what="triton temperature kernel")
    _, _, rows = TS._chain(x, transform=T_MUL_RECIP, temperature=t, filtered=True)
    assert rows is not None
    assert_same(rows, want, what="triton filter chain")


# --------------------------------------------------------------------------- on a GPU
def _backends() -> list[str]:
    return [b for b in ("torch", "cuda", "triton") if not backend_unavailable_reason(b, torch.device("cuda"))]


@pytest.mark.gpu
def test_penalties_match_transformers_on_cuda_where_the_reciprocals_differ() -> None:
    logits = logits_rows(7, 5000, seed=6).cuda()
    ids = _ids(7, 300, 5000, seed=7).cuda()
    enc = ids[:, :40]
    for backend in _backends():
        for penalty in DIFFERING:
            want = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
            assert_same(want.cpu(), penalised(logits.cpu(), ids.cpu(), [penalty] * 7), what="transformers = rule")
            assert_same(P.repetition_penalty(logits, ids, penalty, backend=backend), want, what=f"{backend} {penalty}")
            rows = torch.full((7,), penalty, dtype=torch.float64, device="cuda")
            assert_same(P.repetition_penalty(logits, ids, rows, backend=backend), want, what=f"{backend} rows")
            got = P.apply_penalties(logits, ids, None, repetition_penalty=penalty, backend=backend)
            assert_same(got, want, what=f"{backend} apply_penalties {penalty}")
            state = P.PenaltyState(ids, 5000)
            assert_same(state.apply(logits, repetition_penalty=penalty, backend=backend), want,
                        what=f"{backend} state {penalty}")
            enc_want = EncoderRepetitionPenaltyLogitsProcessor(penalty, enc)(ids[:, :1], logits.clone())
            assert_same(P.encoder_repetition_penalty(logits, enc, penalty, backend=backend), enc_want,
                        what=f"{backend} encoder {penalty}")


@pytest.mark.gpu
def test_temperature_matches_transformers_on_cuda_where_the_reciprocals_differ() -> None:
    x = logits_rows(7, 5000, seed=8).cuda()
    for backend in _backends():
        for t in DIFFERING:
            want = TemperatureLogitsWarper(t)(None, x.clone())
            assert_same(want.cpu(), torch.from_numpy(x.cpu().numpy() * f32_reciprocal(t)), what="transformers = rule")
            assert_same(S.apply_temperature(x, t, backend=backend), want, what=f"{backend} T={t}")
            out = S.filter_and_sample(x, temperature=t, seed=1, return_filtered=True, backend=backend)
            assert_same(out.filtered, want, what=f"{backend} filter_and_sample T={t}")
