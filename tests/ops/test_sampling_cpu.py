"""The cpu backend of pydecode.ops.sampling (csrc/cpu/sampling.cpp) against its torch reference.

Exact equality (tests.helpers.assert_same, NaN == NaN) everywhere, except one justified place:

* top-p without top-k on rows where more than 8192 entries have a nonzero probability. There the
  kernel does not sort the row, and transformers' softmax denominator is a float32 sum taken
  over the *sorted* row in torch's SIMD lane order, which only a full sort reproduces; the kernel
  uses the exact (double) sum instead. torch's float32 sum of V terms in L lanes has relative
  error at most gamma = (ceil(V / L) + log2(L)) * 2^-24 (each lane adds ceil(V / L) terms in
  sequence, then a log2(L)-step butterfly), so every probability and cumulative mass can move by
  that much relative; with a few ulps for the products and the cumsum's final rounding, a
  token's decision can only differ when its reference cumulative mass is within
  (gamma + 4 * 2^-24) * max(cum, threshold) + 2^-23 of the threshold. `check_top_p` asserts that
  every mismatch lies in that window, and that rows with any mismatch stay rare (<= 10%; ~4% of
  flat 128K-262K rows, ~1% of randn rows, none of peaked rows seen).

Everything else is bit-equal by construction: softmax / log_softmax are emulated lane by lane
(Sleef exp/log, torch's float32 reduction order), ties at the top-p boundary and at
min_tokens_to_keep follow a replay of torch.sort / torch.topk (libstdc++'s std::sort,
std::partial_sort, std::nth_element), and the Gumbel noise uses correctly rounded logs, which
torch's MKL log matches on all but ~0.1% of the 2^23 possible uniforms (one ulp; a sampled token
could only change on a near-exact tie of two noisy scores, not seen in these tests).
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
from pydecode.ops import penalties as P
from pydecode.ops import sampling as S
from tests.helpers import assert_same, clamp_top_k
from tests.helpers import edge_rows as rows

pytestmark = pytest.mark.skipif(_ext.cpu_module() is None, reason="pydecode._C (cpu kernels) is not built")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():  # noqa: ANN202
    """The torch references run single-threaded here: with two OpenMP threads on a 2-core machine
    that other processes also load, torch's spinning barriers made this file take minutes
    instead of ~15 s. (The cpu kernels use their own pool; results do not depend on either.)"""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

NEG_INF, INF, NAN = float("-inf"), float("inf"), float("nan")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
EXACT_TOP_P = 8192  # the kernel's bound on nonzero-probability entries for exact top-p


# --------------------------------------------------------------------------- inputs
def layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same values as contiguous rows, rows with a longer stride, every other column of a
    wider tensor (copied by the launcher) and, for one row, a stride-0 expanded batch."""
    wide = torch.full((x.shape[0], x.shape[1] + 5), 7.0, dtype=x.dtype)
    wide[:, : x.shape[1]] = x
    cols = torch.full((x.shape[0], 2 * x.shape[1]), 7.0, dtype=x.dtype)
    cols[:, ::2] = x
    return {"contiguous": x, "row-strided": wide[:, : x.shape[1]], "col-strided": cols[:, ::2]}


def both(fn, *args, **kwargs):  # noqa: ANN001, ANN201
    return fn(*args, backend="cpu", **kwargs), fn(*args, backend="torch", **kwargs)


def reference_cum(scores: torch.Tensor) -> torch.Tensor:
    """transformers' top-p cumulative mass per token (sorted ascending, softmax, cumsum, unsorted)."""
    sorted_scores, index = torch.sort(scores, descending=False)
    cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    return torch.empty_like(cum).scatter_(-1, index, cum)


def check_top_p(got: torch.Tensor, want: torch.Tensor, before: torch.Tensor, top_p: torch.Tensor, what: str) -> int:
    """Exact, except rows with > EXACT_TOP_P nonzero probabilities, where mismatches must lie in
    the module docstring's window around 1 - top_p. Returns the number of rows with a mismatch."""
    bad = ~((got == want) | (torch.isnan(got) & torch.isnan(want)))
    if not bool(bad.any()):
        return 0
    vocab = before.shape[-1]
    probs = torch.softmax(before, dim=-1)
    nonzero = (probs > 0).sum(-1)
    gamma = (math.ceil(vocab / 8) + 3 + 4) * 2.0**-24  # 8 lanes: the larger bound of AVX2 / AVX512
    cum = reference_cum(before)
    threshold = (1 - top_p.to(torch.float64)).to(torch.float32)[:, None].expand_as(cum)
    window = gamma * torch.maximum(cum, threshold) + 2.0**-23
    for r in bad.any(-1).nonzero().flatten().tolist():
        cols = bad[r].nonzero().flatten()
        assert int(nonzero[r]) > EXACT_TOP_P, f"{what}: row {r} must be exact, differs at {cols[:5].tolist()}"
        near = (cum[r, cols] - threshold[r, cols]).abs() <= window[r, cols]
        assert bool(near.all()), (
            f"{what}: row {r} differs at {cols[~near][:5].tolist()}, cumulative mass "
            f"{cum[r, cols[~near]][:5].tolist()} vs threshold {float(threshold[r, 0])}"
        )
    return int(bad.any(-1).sum())


# --------------------------------------------------------------------------- element-wise ops
@pytest.mark.parametrize("dtype", DTYPES)
def test_apply_temperature_and_greedy(dtype: torch.dtype) -> None:
    for vocab in (1, 7, 111, 40000):
        x = rows(vocab, seed=vocab).to(dtype)
        n = x.shape[0]
        for name, view in layouts(x).items():
            for t in (0.7, 1.0, 3.0, torch.linspace(0.05, 5.0, n, dtype=torch.float64)):
                got, want = both(S.apply_temperature, view, t)
                assert_same(got, want, what=f"temperature {name} V={vocab}")
            got, want = both(S.greedy, view)
            assert_same(got, want, what=f"greedy {name} V={vocab}")
    t = torch.tensor([INF, 1e-30, 1e30, 0.5] * 3, dtype=torch.float64)[: x.shape[0]]
    got, want = both(S.apply_temperature, x, t)
    assert_same(got, want, what="extreme temperatures")
    row = x[:1].expand(4, -1)  # stride-0 rows
    assert_same(S.greedy(row, backend="cpu"), S.greedy(row, backend="torch"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_is_torch_argmax(dtype: torch.dtype) -> None:
    """ops.argmax == torch.argmax (NaN is the maximum, first index on ties, 0 for an all -inf
    row) on every row kind, with the vector loop's tail (V % 16) and a batch-1 row long enough
    to be split across threads, where the first NaN / maximum may lie in either chunk."""
    for vocab in (1, 15, 16, 17, 111, 40000):
        x = rows(vocab, seed=vocab).to(dtype)
        for name, view in layouts(x).items():
            got, want = both(S.argmax, view)
            assert_same(got, want, what=f"argmax {name} V={vocab}")
            assert_same(got, torch.argmax(view, dim=-1), what=f"torch.argmax {name} V={vocab}")
    long = torch.randn(1, 262144, generator=torch.Generator().manual_seed(3))
    for spot, value in ((200000, 50.0), (10, 50.0), (250000, NAN), (5, NAN)):
        row = long.clone()
        row[0, spot] = value
        row[0, spot + 100000 if spot < 100000 else spot - 100000] = value  # a second, later/earlier copy
        assert_same(S.argmax(row.to(dtype), backend="cpu"), torch.argmax(row.to(dtype), dim=-1),
                    what=f"split row {spot} {value}")


def test_half_conversion_is_torchs() -> None:
    """Every float16 and bfloat16 bit pattern converts exactly as torch's .float() (the kernel
    has its own branch-free float16 conversion)."""
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    for dtype in (torch.float16, torch.bfloat16):
        x = bits.view(dtype).reshape(64, 1024)
        got = S.apply_temperature(x, 1.0, backend="cpu")
        assert_same(got, x.float(), what=str(dtype))


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("dtype", DTYPES)
def test_top_k_mask(dtype: torch.dtype) -> None:
    for vocab in (1, 5, 111, 9000):
        x = rows(vocab, seed=1).to(dtype)
        n = x.shape[0]
        ks = [k for k in (1, 2, 50, vocab - 1, vocab, 0) if 0 <= k <= vocab] + [torch.randint(0, vocab + 1, (n,))]
        if vocab > 4097:
            ks.append(4097)  # above the candidate buffer: radix select
        for name, view in layouts(x).items():
            for k in ks:
                for m in (1, 3):
                    got, want = both(S.top_k_mask_logits, view, k, min_tokens_to_keep=m)
                    assert_same(got, want, what=f"{name} V={vocab} k={k} m={m}")
        got, want = both(S.top_k_mask_logits, x, min(3, vocab), filter_value=-5.0)
        assert_same(got, want, what="filter_value")


@pytest.mark.parametrize("dtype", DTYPES)
def test_min_p_mask(dtype: torch.dtype) -> None:
    for vocab in (1, 5, 111, 40000):
        x = rows(vocab, seed=2).to(dtype)
        n = x.shape[0]
        for name, view in layouts(x).items():
            for p in (0.0, 1e-3, 0.1, 0.5, 1.0, torch.rand(n, dtype=torch.float64)):
                for m in (1, 3):
                    got, want = both(S.min_p_mask_logits, view, p, min_tokens_to_keep=m)
                    assert_same(got, want, what=f"{name} V={vocab} min_p={p} m={m}")
        got, want = both(S.min_p_mask_logits, x, 0.2, filter_value=-1.5)
        assert_same(got, want, what="filter_value")


@pytest.mark.parametrize("dtype", DTYPES)
def test_top_p_mask_exact(dtype: torch.dtype) -> None:
    """Rows of at most 8192 entries, and rows where few entries have a nonzero probability, are
    decided exactly, ties included (torch.sort's order at the boundary)."""
    for vocab in (1, 2, 5, 17, 111, 8192):
        x = rows(vocab, seed=3).to(dtype)
        n = x.shape[0]
        for name, view in layouts(x).items():
            for p in (0.0, 0.3, 0.9, 0.999, 1.0, torch.rand(n, dtype=torch.float64)):
                for m in (1, 3):
                    got, want = both(S.top_p_mask_logits, view, p, min_tokens_to_keep=m)
                    assert_same(got, want, what=f"{name} V={vocab} p={p} m={m}")
    # A large vocabulary with few candidates (the rest -inf) and ties at every boundary.
    g = torch.Generator().manual_seed(4)
    x = torch.full((6, 262144), NEG_INF)
    cols = torch.randint(0, 262144, (6, 3000), generator=g)
    x.scatter_(1, cols, torch.randint(0, 6, (6, 3000), generator=g).float() / 4)
    for p in (0.1, 0.5, 0.9):
        got, want = both(S.top_p_mask_logits, x.to(dtype), p, filter_value=-7.0)
        assert_same(got, want, what=f"sparse tied V=262144 p={p}")


def test_top_p_mask_large_vocabulary() -> None:
    """Flat and peaked rows of 32K-262K entries: exact up to the documented window."""
    rows_with_mismatch = total = 0
    for vocab, batch in ((32000, 24), (128256, 12), (262144, 4)):
        g = torch.Generator().manual_seed(vocab)
        scale = torch.tensor([0.3, 1.0, 3.0, 8.0]).repeat(batch // 4)[:, None]
        x = torch.randn(batch, vocab, generator=g) * scale
        x[::3] = (x[::3] * 4).round() / 4  # tie groups at the boundary as well
        for p in (0.5, 0.9, 0.95):
            top_p = torch.full((batch,), p, dtype=torch.float64)
            got, want = both(S.top_p_mask_logits, x, p)
            rows_with_mismatch += check_top_p(got, want, x, top_p, f"V={vocab} p={p}")
            total += batch
    # The window bounds where a row can differ; how often it does depends on how many tokens sit in
    # it: ~4% of these flat rows (1/V-sized probabilities at the boundary), none of the peaked ones.
    assert rows_with_mismatch <= 0.1 * total, f"{rows_with_mismatch} of {total} rows differ"


def test_renorm_probs() -> None:
    for vocab in (3, 111, 9000):
        logits = rows(vocab, seed=5).nan_to_num(nan=NEG_INF, posinf=40.0)
        probs = torch.softmax(logits, -1).nan_to_num(0.0)
        probs[3] = probs[3].round(decimals=2)  # ties
        probs[4] = NAN
        for dtype in DTYPES:
            p = probs.to(dtype)
            ks = [k for k in (0, 1, 2, 50, vocab) if k <= vocab] + [torch.randint(0, min(4, vocab + 1), (p.shape[0],))]
            for k in ks:
                got, want = both(S.top_k_renorm_probs, p, k)
                assert_same(got, want, what=f"top-k V={vocab} k={k} {dtype}")
            for top_p in (0.0, 0.5, 0.9, 1.0):
                got, want = both(S.top_p_renorm_probs, p, top_p)
                assert_same(got, want, what=f"top-p V={vocab} p={top_p} {dtype}")


# --------------------------------------------------------------------------- fused sampler
CHAINS = [
    {},
    {"temperature": 0.7},
    {"top_k": 1},
    {"top_k": 50},
    {"top_p": 0.8},
    {"min_p": 0.1},
    {"temperature": 0.7, "top_k": 50, "top_p": 0.9},
    {"temperature": 1.3, "top_k": 5, "top_p": 0.9, "min_p": 0.05},
    {"temperature": 0.5, "top_p": 0.95, "min_p": 0.02},
    {"top_k": 2, "min_p": 0.3, "min_tokens_to_keep": 2},
    {"top_p": 0.0, "min_tokens_to_keep": 3},
]


def _check_sample(x: torch.Tensor, params: dict, seed: torch.Tensor, offset: torch.Tensor, what: str) -> int:
    params = clamp_top_k(params, x.shape[1])
    got = S.filter_and_sample(x, seed=seed, offset=offset, return_logprobs=True, return_filtered=True,
                              backend="cpu", **params)
    want = S.filter_and_sample(x, seed=seed, offset=offset, return_logprobs=True, return_filtered=True,
                               backend="torch", **params)
    vocab = x.shape[1]
    if "top_p" in params and "top_k" not in params and vocab > EXACT_TOP_P:
        before = S.apply_temperature(x, params.get("temperature", 1.0), backend="torch")
        top_p = torch.full((x.shape[0],), params["top_p"], dtype=torch.float64)
        if "min_p" in params:  # min-p's mask then follows top-p's: compare top-p alone
            only = S.filter_and_sample(x, seed=seed, offset=offset, return_filtered=True, backend="torch",
                                       temperature=params.get("temperature"), top_p=params["top_p"])
            mine = S.filter_and_sample(x, seed=seed, offset=offset, return_filtered=True, backend="cpu",
                                       temperature=params.get("temperature"), top_p=params["top_p"])
            differs = check_top_p(mine.filtered, only.filtered, before, top_p, what) > 0
            same_rows = ~((mine.filtered != only.filtered) & ~torch.isnan(only.filtered)).any(-1)
        else:
            differs = check_top_p(got.filtered, want.filtered, before, top_p, what) > 0
            same_rows = ~((got.filtered != want.filtered) & ~torch.isnan(want.filtered)).any(-1)
        if differs:  # the rest is compared on the rows whose kept sets agree
            assert_same(got.tokens[same_rows], want.tokens[same_rows], what=f"{what} tokens")
            assert_same(got.logprobs[same_rows], want.logprobs[same_rows], what=f"{what} logprobs")
            assert_same(got.filtered[same_rows], want.filtered[same_rows], what=f"{what} filtered")
            return int((~same_rows).sum())
    assert_same(got.filtered, want.filtered, what=f"{what} filtered")
    assert_same(got.tokens, want.tokens, what=f"{what} tokens")
    assert_same(got.logprobs, want.logprobs, what=f"{what} logprobs")
    return 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_and_sample(dtype: torch.dtype) -> None:
    for vocab in (1, 6, 111, 9000):
        x = rows(vocab, seed=6).to(dtype).repeat(2, 1)
        n = x.shape[0]
        seed = torch.arange(n) * 7919 - 3
        offset = torch.arange(n) + 2**40
        for name, view in layouts(x).items():
            for params in CHAINS:
                _check_sample(view, params, seed, offset, f"{name} V={vocab} {params}")


def test_filter_and_sample_per_row_and_large_vocabulary() -> None:
    batch = 64
    g = torch.Generator().manual_seed(7)
    x = torch.randn(batch, 4099, generator=g) * torch.linspace(0.5, 6.0, batch)[:, None]
    x[::5] = (x[::5] * 2).round()
    params = {
        "temperature": torch.linspace(0.3, 2.0, batch, dtype=torch.float64),
        "top_k": torch.randint(0, 300, (batch,), generator=g),
        "top_p": torch.rand(batch, generator=g, dtype=torch.float64),
        "min_p": torch.rand(batch, generator=g, dtype=torch.float64) * 0.2,
    }
    seed = torch.randint(-(2**62), 2**62, (batch,), generator=g)
    _check_sample(x, params, seed, torch.zeros(batch, dtype=torch.int64), "per-row parameters")
    differing = 0
    for vocab, b in ((32000, 8), (128256, 4)):
        x = torch.randn(b, vocab, generator=g) * torch.tensor([1.0, 3.0, 5.0, 8.0]).repeat(b // 4)[:, None]
        seed = torch.arange(b)
        for params in ({"temperature": 0.7, "top_k": 50, "top_p": 0.9}, {"temperature": 0.7, "top_p": 0.9},
                       {"min_p": 0.05}, {}):
            differing += _check_sample(x, params, seed, seed, f"V={vocab} {params}")
    assert differing <= 2


def test_sampling_from_probs() -> None:
    logits = rows(300, seed=8).nan_to_num(nan=NEG_INF, posinf=40.0)
    probs = torch.softmax(logits, -1).nan_to_num(0.0).repeat(3, 1)
    seed = torch.arange(probs.shape[0]) + 11
    for fn, args in (
        (S.sampling_from_probs, ()),
        (S.top_k_sampling_from_probs, (3,)),
        (S.top_p_sampling_from_probs, (0.7,)),
        (S.min_p_sampling_from_probs, (0.1,)),
        (S.top_k_top_p_sampling_from_probs, (4, 0.8)),
    ):
        for dtype in DTYPES:
            got, want = both(fn, probs.to(dtype), *args, seed=seed, offset=5)
            assert_same(got, want, what=f"{fn.__name__} {dtype}")


def test_row_split_and_batch_positions_agree() -> None:
    """Batch 1 splits the vocabulary across threads, larger batches split rows: same results,
    whatever the row's position in the batch. The row sums of the approximate top-p path are
    accumulated per fixed segment, so they are the same bits however the row is split."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 262144, generator=g) * 3  # >= 192K entries: batch 1 splits the row
    # >= 64K entries with top-p: batch 1 splits the row; flat rows take the mass-histogram path.
    flat = torch.randn(3, 100000, generator=g) * torch.tensor([[3.0], [0.5], [0.2]])
    for batch, params in ((x, {"temperature": 0.8, "top_p": 0.9, "min_p": 0.01}),
                         (flat, {"temperature": 0.7, "top_p": 0.9}), (flat, {"top_p": 0.5})):
        seed = torch.tensor([5, 6, 7])
        batched = S.filter_and_sample(batch, seed=seed, return_logprobs=True, return_filtered=True, backend="cpu",
                                      **params)
        for r in range(3):
            one = S.filter_and_sample(batch[r : r + 1], seed=seed[r : r + 1], return_logprobs=True,
                                      return_filtered=True, backend="cpu", **params)
            assert_same(one.tokens, batched.tokens[r : r + 1], what="tokens")
            assert_same(one.logprobs, batched.logprobs[r : r + 1], what="logprobs")
            assert_same(one.filtered, batched.filtered[r : r + 1], what="filtered")
    for k in (50, 5000):
        one = S.top_k_mask_logits(x[:1], k, backend="cpu")
        assert_same(one, S.top_k_mask_logits(x, k, backend="cpu")[:1], what=f"top-k {k}")


def test_avx2_lane_order() -> None:
    """On an AVX2 build torch sums in 8 lanes: the launcher passes 8 and results stay exact."""
    script = textwrap.dedent(
        """
        import torch
        from pydecode.ops import sampling as S
        if torch.backends.cpu.get_cpu_capability() != "AVX2":
            print(torch.backends.cpu.get_cpu_capability())
            raise SystemExit(3)
        assert S._softmax_lanes() == 8
        g = torch.Generator().manual_seed(0)
        x = torch.randn(6, 3001, generator=g) * torch.tensor([0.5, 1, 2, 4, 8, 16])[:, None]
        for kw in ({"top_p": 0.9}, {"min_p": 0.05}, {"temperature": 0.7, "top_k": 40, "top_p": 0.8}):
            a = S.filter_and_sample(x, seed=3, return_logprobs=True, return_filtered=True, backend="cpu", **kw)
            b = S.filter_and_sample(x, seed=3, return_logprobs=True, return_filtered=True, backend="torch", **kw)
            assert torch.equal(a.tokens, b.tokens) and torch.equal(a.logprobs, b.logprobs), kw
            assert torch.equal(a.filtered, b.filtered), kw
        """
    )
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode == 3:
        pytest.skip(f"torch does not run AVX2 kernels here: {done.stdout.strip()}")
    assert done.returncode == 0, done.stderr[-2000:]


# --------------------------------------------------------------------------- malformed calls
def test_malformed_calls_raise() -> None:
    m = _ext.cpu_module()
    x = torch.randn(2, 8)
    out = torch.empty(2, 8)
    t = torch.ones(2, dtype=torch.float64)
    tok = torch.empty(2, dtype=torch.int64)
    s = torch.zeros(2, dtype=torch.int64)
    p = x.data_ptr()

    def chain(**over: object) -> None:
        kw = dict(logits=p, dtype=0, rows=2, vocab=8, row_stride=8, transform=0, temperature=0, top_k=0, top_p=0,
                  min_p=0, min_tokens_to_keep=1, softmax_lanes=16, seed=s.data_ptr(), offset=s.data_ptr(),
                  tokens=tok.data_ptr(), logprobs=0, filtered=0, filter_value=0.0, renorm=0)
        kw.update(over)
        m.filter_chain(**kw)

    chain()  # well-formed
    bad = [
        {"rows": -1}, {"vocab": -3}, {"row_stride": -8}, {"logits": 0}, {"dtype": 7}, {"dtype": -1},
        {"transform": 3}, {"transform": 1}, {"min_tokens_to_keep": 0}, {"softmax_lanes": 4}, {"seed": 0},
        {"offset": 0}, {"tokens": 0, "logprobs": out.data_ptr()}, {"vocab": 2**31},
        {"filtered": out.data_ptr(), "renorm": out.data_ptr()},
    ]
    for over in bad:
        with pytest.raises(ValueError):
            chain(**over)
    # Parameter values: checked here because the Python layer skips its scans for this backend.
    f64 = torch.float64
    keep = {  # alive for the calls below (the kernel gets raw addresses)
        "k_past": torch.tensor([8, 9]), "k_neg": torch.tensor([-1, 0]), "k_edge": torch.tensor([8, 0]),
        "p_big": torch.tensor([0.5, 1.5], dtype=f64), "p_nan": torch.tensor([float("nan"), 1.0], dtype=f64),
        "min_neg": torch.tensor([-0.1, 0.0], dtype=f64), "t_zero": torch.tensor([1.0, 0.0], dtype=f64),
        "t_nan": torch.tensor([float("nan"), 1.0], dtype=f64), "t_edge": torch.tensor([float("inf"), 0.5], dtype=f64),
        "t_neg": torch.tensor([1.0, -2.0], dtype=f64),
    }
    addr = {name: t.data_ptr() for name, t in keep.items()}
    values = [
        ({"top_k": addr["k_past"]}, r"top_k must be in \[0, 8\] for every row, got 9 at row 1"),
        ({"top_k": addr["k_neg"]}, "top_k must be in .* got -1 at row 0"),
        ({"top_p": addr["p_big"]}, "top_p must be in .* at row 1"),
        ({"top_p": addr["p_nan"]}, "top_p must be in .* got nan at row 0"),
        ({"min_p": addr["min_neg"]}, "min_p"),
        ({"transform": 1, "temperature": addr["t_zero"]}, "temperature must be in .* at row 1"),
        ({"transform": 1, "temperature": addr["t_nan"]}, "temperature"),
    ]
    for over, message in values:
        with pytest.raises(ValueError, match=message):
            chain(**over)
    chain(top_k=addr["k_edge"], transform=1, temperature=addr["t_edge"])  # the edges of the ranges
    with pytest.raises(ValueError, match="temperature"):
        m.apply_temperature(p, 0, 2, 8, 8, addr["t_neg"], out.data_ptr())
    for args in (
        (p, 0, -1, 8, 8, t.data_ptr(), out.data_ptr()),
        (p, 0, 2, -8, 8, t.data_ptr(), out.data_ptr()),
        (0, 0, 2, 8, 8, t.data_ptr(), out.data_ptr()),
        (p, 0, 2, 8, 8, 0, out.data_ptr()),
        (p, 0, 2, 8, 8, t.data_ptr(), 0),
        (p, 9, 2, 8, 8, t.data_ptr(), out.data_ptr()),
    ):
        with pytest.raises(ValueError):
            m.apply_temperature(*args)
    for args in ((p, 0, -2, 8, 8, tok.data_ptr()), (p, 0, 2, 8, 8, 0), (0, 0, 2, 8, 8, tok.data_ptr()),
                 (p, 3, 2, 8, 8, tok.data_ptr())):
        with pytest.raises(ValueError):
            m.greedy(*args)


def _state_for(x: torch.Tensor, seed: int) -> P.PenaltyState:
    g = torch.Generator().manual_seed(seed)
    batch, vocab = x.shape
    # Penalise the top entries too (where the penalties change the kept set and the token).
    prompt = torch.cat([torch.randint(0, vocab, (batch, 24), generator=g),
                        x.float().nan_to_num(nan=0.0).topk(min(4, vocab), dim=-1).indices], dim=1)
    state = P.PenaltyState(prompt, vocab)
    for _ in range(3):
        state.update(torch.randint(0, vocab, (batch,), generator=g))
    state.update(prompt[:, -1])
    return state


@pytest.mark.parametrize("dtype", DTYPES)
def test_filter_and_sample_from_state_is_the_two_ops(dtype: torch.dtype) -> None:
    """The fused cpu op (penalties patched into the rows as they are read) against
    apply_penalties_from_state then filter_and_sample: tokens, log-probs and filtered rows equal,
    on the edge rows and on a row split across threads (batch 1, >= 64K entries with top-p)."""
    cases = [rows(1000, seed=3), torch.randn(1, 70000, generator=torch.Generator().manual_seed(2)) * 3]
    cases.append(rows(300, seed=4).t().contiguous().t())  # strided rows
    settings = ({"temperature": 0.7, "top_k": 50, "top_p": 0.9}, {"temperature": 0.7, "top_p": 0.9},
                {"top_p": 0.5, "min_p": 0.05}, {"top_k": 300}, {})
    penalties = ({"repetition_penalty": 1.3}, {"presence_penalty": 0.5, "frequency_penalty": -0.7},
                 {"repetition_penalty": 0.8, "presence_penalty": -2.0})
    for i, x in enumerate(cases):
        x = x.to(dtype)
        state = _state_for(x, i)
        seed = torch.arange(x.shape[0]) + 11
        for kw in settings:
            for pen in penalties:
                got = S.filter_and_sample_from_state(x, state, **pen, **kw, seed=seed, offset=3, return_logprobs=True,
                                                     return_filtered=True, backend="cpu")
                penalised = P.apply_penalties_from_state(x, state, **pen, backend="cpu")
                want = S.filter_and_sample(penalised, **kw, seed=seed, offset=3, return_logprobs=True,
                                           return_filtered=True, backend="cpu")
                what = f"case {i} {dtype} {kw} {pen}"
                assert_same(got.tokens, want.tokens, what=f"tokens {what}")
                assert_same(got.logprobs, want.logprobs, what=f"logprobs {what}")
                assert_same(got.filtered, want.filtered, what=f"filtered {what}")
    # Other backends run the two ops: the torch reference gives the same tokens.
    x = rows(500, seed=5)
    state = _state_for(x, 5)
    a = S.filter_and_sample_from_state(x, state, repetition_penalty=1.2, top_k=20, seed=1, backend="cpu")
    b = S.filter_and_sample_from_state(x, state, repetition_penalty=1.2, top_k=20, seed=1, backend="torch")
    assert_same(a.tokens, b.tokens, what="cpu vs torch")


def test_filter_and_sample_from_state_refuses_malformed_calls() -> None:
    x = torch.randn(2, 100)
    state = P.PenaltyState(torch.randint(0, 100, (2, 5)), 100)
    with pytest.raises(TypeError, match="state must be a PenaltyState"):
        S.filter_and_sample_from_state(x, object(), repetition_penalty=1.1, backend="cpu")
    with pytest.raises(ValueError, match="shape"):
        S.filter_and_sample_from_state(torch.randn(3, 100), state, repetition_penalty=1.1, backend="cpu")
    with pytest.raises(ValueError, match="repetition_penalty"):
        S.filter_and_sample_from_state(x, state, repetition_penalty=0.0, backend="cpu")
    with pytest.raises(ValueError, match="top_p"):
        S.filter_and_sample_from_state(x, state, repetition_penalty=1.1, top_p=1.5, backend="cpu")
    state.tokens[0, 0] = -3  # a corrupted state: the kernel checks every live id
    with pytest.raises(ValueError, match="state tokens"):
        S.filter_and_sample_from_state(x, state, repetition_penalty=1.1, backend="cpu")
