"""The cpu backend of beam_topk (csrc/cpu/beam.cpp) against the torch reference.

The kernel reproduces torch's CPU log_softmax (its SIMD lane count, SLEEF exp/log and lane
reduction order, for the CPU capability torch runs with), so the comparison is exact: scores bit
for bit (NaN payloads aside), token ids and beam indices identical, ties included. The generic
fallback (ARM/POWER capabilities, where the constant may differ by an ulp) is covered by
test_scores_within_an_ulp_of_the_constant below, which states its tolerance.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from pydecode import _ext
from pydecode.ops import _cpu, beam
from pydecode.ops.beam import beam_candidates, beam_topk
from tests.helpers import assert_same, row_kinds

if _ext.cpu_module() is None:
    pytest.skip(f"the CPU module is not built: {_ext.cpu_unavailable_reason()}", allow_module_level=True)

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
KINDS = 9
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- inputs and checks
def make_logits(rows: int, vocab: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Every row kind of tests.helpers.row_kinds, with the ninth (log-probs rounding into ties)."""
    return row_kinds(rows, vocab, seed, dtype, scale=4.0, peak=40.0, kinds=KINDS)


def make_beam_scores(rows: int, seed: int) -> torch.Tensor:
    """Running beam scores: negative, some -0.0, -1e9 (transformers' first step) and -inf (dead)."""
    g = torch.Generator().manual_seed(seed + 1)
    s = -torch.rand(rows, generator=g) * 20
    s[::4] = -0.0
    s[1::6] = -1e9
    s[2::7] = -math.inf
    return s


def assert_exact(got: beam.BeamTopK, expected: beam.BeamTopK, what: str) -> None:
    assert got.scores.dtype == torch.float32 and got.token_ids.dtype == torch.int64
    assert got.beam_indices.dtype == torch.int64
    assert_same(got.token_ids, expected.token_ids, what=f"{what}: token_ids")
    assert_same(got.beam_indices, expected.beam_indices, what=f"{what}: beam_indices")
    nan = torch.isnan(expected.scores)
    assert_same(torch.isnan(got.scores), nan, what=f"{what}: NaN positions")
    # Bit for bit, sign of zero included.
    assert_same(got.scores.view(torch.int32)[~nan], expected.scores.view(torch.int32)[~nan], what=f"{what}: bits")


def both(logits, beam_scores, num_beams, k, apply_log_softmax=True):
    got = beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=apply_log_softmax, backend="cpu")
    expected = beam_topk(logits, beam_scores, num_beams, k, apply_log_softmax=apply_log_softmax, backend="torch")
    return got, expected


# --------------------------------------------------------------------------- against the reference
# (batch, num_beams, vocab): vocab 1 to 262144 with odd sizes (lane tails of 16 and 8), batch 1 to
# 64; 1, 3 and 5 rows of a long vocabulary take the path that splits rows across threads.
SHAPES = [
    (1, 1, 1), (4, 2, 1), (1, 3, 2), (7, 2, 7), (3, 1, 15), (2, 2, 16), (5, 3, 17), (64, 1, 50),
    (9, 4, 111), (3, 5, 1000), (8, 4, 5003), (2, 2, 32000), (1, 1, 32768 + 5), (1, 3, 65536 + 17),
    (5, 1, 40000), (1, 4, 128256), (1, 1, 262144),
]


@pytest.mark.parametrize(("batch", "num_beams", "vocab"), SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(batch: int, num_beams: int, vocab: int, dtype: torch.dtype) -> None:
    rows = batch * num_beams
    logits = make_logits(rows, vocab, seed=rows * 1000 + vocab, dtype=dtype)
    beam_scores = make_beam_scores(rows, seed=vocab)
    ks = {1, min(beam_candidates(num_beams, n_eos=2), num_beams * vocab)}
    if num_beams * vocab <= 5000:
        ks |= {min(vocab + 1, num_beams * vocab), num_beams * vocab}  # k > vocab and the full sort
    for k in sorted(ks):
        for log_softmax in (True, False):
            got, expected = both(logits, beam_scores, num_beams, k, log_softmax)
            assert_exact(got, expected, f"{dtype} k={k} log_softmax={log_softmax}")


def test_random_rows_without_special_values() -> None:
    """Plain random logits, a decode-like shape: identical ids and bit-identical scores."""
    for seed, (batch, num_beams, vocab) in enumerate([(8, 4, 32000), (2, 3, 128256), (16, 2, 4097)]):
        g = torch.Generator().manual_seed(seed)
        logits = torch.randn(batch * num_beams, vocab, generator=g) * 3
        beam_scores = -torch.rand(batch * num_beams, generator=g) * 10
        got, expected = both(logits, beam_scores, num_beams, 2 * num_beams)
        assert_exact(got, expected, f"random {batch}x{num_beams}x{vocab}")


@pytest.mark.parametrize("num_beams", [1, 2, 5])
def test_planted_ties_lowest_flat_index(num_beams: int) -> None:
    """Equal scores inside and across beams (same rows repeated): the lowest flat index wins."""
    vocab = 40000  # long enough for the selection's running threshold and the split path
    base = torch.randint(0, 4, (1, vocab)).float()
    logits = base.expand(num_beams, vocab).clone()
    logits[:, 17] = 10.0
    logits[:, 30001] = 10.0
    beam_scores = torch.zeros(num_beams)
    for k in (1, 2, num_beams * 2 + 1, 50):
        for log_softmax in (True, False):
            got, expected = both(logits, beam_scores, num_beams, k, log_softmax)
            assert_exact(got, expected, f"ties k={k}")
            flat = (got.beam_indices * vocab + got.token_ids)[0]
            s = got.scores[0]
            # Within equal scores, flat indices ascend.
            assert bool(((s[1:] < s[:-1]) | (flat[1:] > flat[:-1])).all())
    got = beam_topk(logits, beam_scores, num_beams, 2, backend="cpu")
    assert got.token_ids[0].tolist() == [17, 30001]
    assert got.beam_indices[0].tolist() == [0, 0]


def test_ties_created_by_rounding_and_signed_zeros() -> None:
    for logits, beam_scores, lsm in [
        (torch.tensor([[1.0, 1.0000001, -5.0]]), torch.tensor([1e8]), False),
        (torch.tensor([[-0.0, 0.0, -0.0], [0.0, -0.0, -1.0]]), torch.tensor([-0.0, 0.0]), False),
        (torch.tensor([[-0.0, -200.0, 0.0], [0.0, -200.0, -0.0]]), torch.tensor([-0.0, -0.0]), True),
    ]:
        num_beams = logits.shape[0]
        for k in range(1, num_beams * logits.shape[1] + 1):
            got, expected = both(logits, beam_scores, num_beams, k, lsm)
            assert_exact(got, expected, f"k={k}")


def test_infinite_and_nan_beam_scores() -> None:
    """A +inf beam score makes -inf logits score NaN (ranked first), breaking the monotone order
    the selection's skip relies on; NaN beam scores make every candidate NaN."""
    logits = make_logits(9, 20011, seed=9)
    logits[:, 5::50] = -math.inf
    for special in (math.inf, math.nan, -math.inf):
        beam_scores = make_beam_scores(9, seed=9)
        beam_scores[::2] = special
        for lsm in (True, False):
            got, expected = both(logits, beam_scores, 3, 40, lsm)
            assert_exact(got, expected, f"beam score {special} log_softmax={lsm}")


def test_strided_and_expanded_logits() -> None:
    base = make_logits(12, 2 * 3001, seed=3)
    beam_scores = make_beam_scores(6, seed=3)
    column_major = base[:6].T.contiguous().T[:, :3001]
    for logits in (base[::2, ::2], base[1::2, :3001], base[:6, 5:3006], base[0:1, :3001].expand(6, 3001), column_major):
        assert logits.shape == (6, 3001)
        for lsm in (True, False):
            got, expected = both(logits, beam_scores, 3, 6, lsm)
            assert_exact(got, expected, f"strides {logits.stride()}")


def test_2d_and_per_dtype_beam_scores() -> None:
    logits = make_logits(6, 999, seed=5)
    for beam_scores in (make_beam_scores(6, 5).reshape(2, 3), make_beam_scores(6, 5).to(torch.bfloat16)):
        got, expected = both(logits, beam_scores, 3, 6)
        assert_exact(got, expected, f"beam_scores {beam_scores.dtype} {tuple(beam_scores.shape)}")


def test_empty_batch() -> None:
    got = beam_topk(torch.zeros(0, 10), torch.zeros(0), 2, 3, backend="cpu")
    assert got.scores.shape == got.token_ids.shape == got.beam_indices.shape == (0, 3)


# --------------------------------------------------------------------------- torch's other kernels
def _direct(logits: torch.Tensor, beam_scores: torch.Tensor, num_beams: int, k: int, lsm: bool, mode: int):
    rows, vocab = logits.shape
    batch = rows // num_beams
    out = (torch.empty(batch, k), torch.empty(batch, k, dtype=torch.int64), torch.empty(batch, k, dtype=torch.int64))
    _cpu.module().beam_topk(
        logits.data_ptr(), _cpu.DTYPE_CODES[logits.dtype], rows, vocab, _cpu.row_stride(logits), beam_scores.data_ptr(),
        num_beams, k, lsm, mode, out[0].data_ptr(), out[1].data_ptr(), out[2].data_ptr(),
    )
    return beam.BeamTopK(*out)


def test_scalar_lane_models_match_the_simd_ones() -> None:
    """Modes -16/-8 (lane-by-lane scalar code, what a build without AVX512/AVX2 runs) equal the
    SIMD modes 16/8 bit for bit, and mode 16 (or -16) equals torch here when it runs AVX512."""
    for rows, vocab in [(3, 5), (4, 16), (2, 1000), (3, 40001), (1, 70001)]:
        logits = make_logits(rows, vocab, seed=vocab)
        beam_scores = make_beam_scores(rows, seed=1)
        for lsm in (True, False):
            for simd, scalar in ((16, -16), (8, -8)):
                a = _direct(logits, beam_scores, 1, 3, lsm, simd)
                b = _direct(logits, beam_scores, 1, 3, lsm, scalar)
                assert_exact(b, a, f"mode {scalar} vs {simd}, {rows}x{vocab}")
            if torch.backends.cpu.get_cpu_capability() == "AVX512":
                expected = beam_topk(logits, beam_scores, 1, 3, apply_log_softmax=lsm, backend="torch")
                assert_exact(_direct(logits, beam_scores, 1, 3, lsm, -16), expected, "mode -16 vs torch")


def test_other_lane_model_differs_only_by_the_row_constant() -> None:
    """Where the kernel cannot reproduce torch's log_softmax (a CPU capability other than
    AVX512/AVX2/DEFAULT, e.g. ARM: it then uses the AVX512 lane model), only the row constant
    c = log(sum(exp(x - max))) differs. Emulated here with the lane model of the other x86 kernel.

    Tolerance, from the arithmetic: both sums add V = 4000 terms in [0, 1] in float32, in 16 or 8
    lanes of V/16 or V/8 terms then a 4- or 3-level tree, so each is within (V/8 + 3) * 2^-24 of
    the exact sum, relative; c = log(sum) then differs by at most 2 * (V/8 + 3) * 2^-24 (d log =
    dS/S) plus an ulp of each log, and every score by that plus the 2 roundings that follow
    (- c, + beam score): |d score| <= 2 * (V/8 + 3) * 2^-24 + 2 ulp(c) + 2 ulp(score).
    Ids must be identical: the random scores' gaps near the top are far larger than that."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX512", "AVX2"):
        pytest.skip("compares the two x86 SIMD lane models")
    other = 8 if capability == "AVX512" else 16
    g = torch.Generator().manual_seed(11)
    vocab = 4000
    logits = torch.randn(32, vocab, generator=g) * 2
    beam_scores = -torch.rand(32, generator=g) * 10
    got = _direct(logits, beam_scores, 4, 8, True, other)
    expected = beam_topk(logits, beam_scores, 4, 8, backend="torch")
    assert_same(got.token_ids, expected.token_ids, what="token_ids")
    assert_same(got.beam_indices, expected.beam_indices, what="beam_indices")
    lse = torch.logsumexp(logits.double(), dim=1).float().reshape(8, 4).gather(1, expected.beam_indices)
    ulp = 2.0**-23
    bound = 2 * (vocab / 8 + 3) * 2.0**-24 + 2 * ulp * lse.abs() + 2 * ulp * expected.scores.abs()
    diff = (got.scores - expected.scores).abs()
    assert bool((diff <= bound).all()), float((diff / bound).max())
    # ... and the difference is the row's constant: equal, up to the final roundings, for every
    # candidate of the same beam row.
    row = expected.beam_indices
    for b in range(8):
        for j in row[b].unique():
            d = (got.scores[b] - expected.scores[b])[row[b] == j]
            assert float(d.max() - d.min()) <= 4 * ulp * float(expected.scores[b].abs().max())


@pytest.mark.parametrize(("capability", "threads"), [("avx2", 3), ("default", 4)])
def test_other_torch_capabilities(capability: str, threads: int) -> None:
    """torch restarted with ATEN_CPU_CAPABILITY=avx2 / default (8 lanes; SLEEF / libm): the
    kernel follows it bit for bit, and 3 or 4 threads split long rows into 3 or 4 slices."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX2"):
        pytest.skip("needs an x86 CPU with AVX2")
    script = textwrap.dedent(
        """
        import torch
        from pydecode.ops import beam
        from tests.ops.test_beam_cpu import assert_exact, both, make_beam_scores, make_logits
        assert beam._lse_mode() == {"AVX2": 8, "DEFAULT": 1}[torch.backends.cpu.get_cpu_capability()]
        for rows, vocab in [(1, 7), (3, 15), (4, 1000), (1, 65536 + 9), (3, 50000)]:
            logits = make_logits(rows, vocab, seed=vocab)
            beam_scores = make_beam_scores(rows, seed=2)
            for lsm in (True, False):
                got, expected = both(logits, beam_scores, 1, 4, lsm)
                assert_exact(got, expected, f"{rows}x{vocab}")
        print("ok", torch.backends.cpu.get_cpu_capability())
        """
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability, PYDECODE_NUM_THREADS=str(threads))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"ok {capability.upper()}"


# --------------------------------------------------------------------------- malformed calls
def test_malformed_calls_raise_value_error() -> None:
    m = _cpu.module()
    x = torch.zeros(4, 10)
    s = torch.zeros(4)
    out = torch.empty(2, 40)
    ids = torch.empty(2, 40, dtype=torch.int64)
    good = dict(
        logits=x.data_ptr(), dtype=0, rows=4, vocab=10, row_stride=10, beam_scores=s.data_ptr(), num_beams=2, k=3,
        apply_log_softmax=True, lse_mode=16, out_scores=out.data_ptr(), out_tokens=ids.data_ptr(),
        out_beams=ids.data_ptr(),
    )
    m.beam_topk(**good)
    bad = [
        dict(rows=-1), dict(vocab=-1), dict(vocab=0), dict(row_stride=-1), dict(num_beams=0), dict(num_beams=3),
        dict(k=0), dict(k=21), dict(dtype=3), dict(lse_mode=2), dict(logits=0), dict(beam_scores=0),
        dict(out_scores=0), dict(out_tokens=0), dict(out_beams=0), dict(rows=2, num_beams=2, vocab=2**31, k=1),
    ]
    for change in bad:
        with pytest.raises(ValueError):
            m.beam_topk(**{**good, **change})
