"""The cuda backend of pydecode.ops.sampling (csrc/cuda/sampling.cu) against the torch reference
run on the same GPU, the cpu backend, and the sampling distribution.

Exact (tests.helpers.assert_same) wherever the kernel and torch compute the same float ops:
temperature, greedy, top-k masks, top-k sampling (same Philox stream and Gumbel noise).
Top-p and min-p depend on float32 sums whose order torch does not specify (softmax denominator,
cumsum), which the kernel replaces by exact fixed-point masses (top-p) or by the exp-domain
comparison exp(y - max) >= min_p (min-p). There a decision may differ only for a token whose
double-precision cumulative mass (or p / p_max) lies within WINDOW of the threshold;
`check_near_threshold` asserts exactly that, entry by entry.

Tests whose name contains "big" run the full shapes (batch up to 64, vocab up to 152064);
`-k "cuda and not big"` keeps the compute-sanitizer run short.
"""

from __future__ import annotations

import math

import pytest
import torch

from pydecode import _ext
from pydecode.ops import sampling as S
from tests.helpers import assert_same
from tests.helpers import edge_rows as rows

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available() or _ext.cuda_module() is None, reason="needs the CUDA module and a GPU"
    ),
]

NEG_INF, INF, NAN = float("-inf"), float("inf"), float("nan")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Relative window around a threshold inside which float32 rounding may flip a decision: torch's
# float32 softmax sum and cumsum over <= 152064 terms in a tree order err by a few 1e-7 relative.
WINDOW = 2e-5


def gpu(x: torch.Tensor) -> torch.Tensor:
    return x.to("cuda")


def strided(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same values contiguous, with a longer (unaligned) row stride, and column-strided."""
    wide = torch.full((x.shape[0], x.shape[1] + 3), 7.0, dtype=x.dtype, device=x.device)
    wide[:, : x.shape[1]] = x
    cols = torch.full((x.shape[0], 2 * x.shape[1]), 7.0, dtype=x.dtype, device=x.device)
    cols[:, ::2] = x
    return {"contiguous": x, "row-strided": wide[:, : x.shape[1]], "col-strided": cols[:, ::2]}


def both(fn, *args, **kwargs):  # noqa: ANN001, ANN201
    return fn(*args, backend="cuda", **kwargs), fn(*args, backend="torch", **kwargs)


def stable_cum(scores: torch.Tensor) -> torch.Tensor:
    """Double-precision top-p mass per entry: softmax of the row sorted ascending, ties by index
    (a stable sort), cumulative sum, scattered back."""
    s = scores.double()
    order = torch.sort(s, dim=-1, stable=True).indices
    probs = torch.softmax(s.gather(-1, order), dim=-1)
    cum = probs.cumsum(-1)
    return torch.empty_like(cum).scatter_(-1, order, cum)


def check_near_threshold(got: torch.Tensor, want: torch.Tensor, measure: torch.Tensor, threshold: torch.Tensor,
                         what: str, values: torch.Tensor | None = None) -> None:
    """got == want except where the entry's `measure` is within WINDOW (relative) of the row's
    threshold (at most a fifth of the rows), or where the entry belongs to a group of equal
    `values` at the boundary that both sides cut to the same size, give or take the one entry
    float rounding at the threshold can add (torch does not specify the order of equal values)."""
    bad = ~((got == want) | (torch.isnan(got) & torch.isnan(want)))
    if not bool(bad.any()):
        return
    thr = threshold.double().reshape(-1, 1).expand_as(measure)
    near = (measure - thr).abs() <= WINDOW * torch.maximum(measure.abs(), thr.abs()) + 2.0**-30
    far = bad & ~near
    if values is not None:
        kept_got, kept_want = got > NEG_INF, want > NEG_INF
        for r, c in far.nonzero().tolist():
            group = values[r] == values[r, c]
            sizes = int((kept_got[r] & group).sum()), int((kept_want[r] & group).sum())
            if int(group.sum()) > 1 and abs(sizes[0] - sizes[1]) <= 1:
                far[r, c] = False
    assert not bool(far.any()), (
        f"{what}: {int(far.sum())} decisions differ away from the threshold, first at "
        f"{far.nonzero()[:5].tolist()}: measure {measure[far][:5].tolist()} vs threshold {thr[far][:5].tolist()}"
    )
    rows_near = (bad & near).any(-1)
    n_near = int(rows_near.sum())
    assert n_near <= max(1, bad.shape[0] // 5), f"{what}: {n_near} rows differ near the threshold"


# --------------------------------------------------------------------------- element-wise ops
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_temperature_and_greedy(dtype: torch.dtype) -> None:
    for vocab in (1, 7, 1000, 4099):
        x = gpu(rows(vocab, seed=vocab).to(dtype))
        n = x.shape[0]
        for name, view in strided(x).items():
            for t in (0.7, 1.0, 3.0, torch.linspace(0.05, 5.0, n, dtype=torch.float64, device="cuda")):
                got, want = both(S.apply_temperature, view, t)
                assert_same(got, want, what=f"temperature {name} V={vocab}")
            got, want = both(S.greedy, view)
            assert_same(got, want, what=f"greedy {name} V={vocab}")
    row = x[:1].expand(4, -1)  # stride-0 rows
    assert_same(S.greedy(row, backend="cuda"), S.greedy(row, backend="torch"))


def test_cuda_greedy_split_rows() -> None:
    """Small batches split a row over several blocks: ties across slices go to the lowest index."""
    x = torch.randn(4, 50001, generator=torch.Generator().manual_seed(5))
    x[0, [30000, 100, 45000]] = 10.0
    x[1] = NEG_INF
    x[2] = NAN
    x[2, 49999] = -3.0
    x[3, 50000] = INF
    for dtype in DTYPES:
        got, want = both(S.greedy, gpu(x.to(dtype)))
        assert_same(got, want, what=f"greedy split {dtype}")
        assert got.tolist() == [100, 0, 49999, 50000]


def test_cuda_half_conversion_is_torchs() -> None:
    bits = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
    for dtype in (torch.float16, torch.bfloat16):
        x = gpu(bits.view(dtype).reshape(64, 1024))
        assert_same(S.apply_temperature(x, 1.0, backend="cuda"), x.float(), what=str(dtype))


# --------------------------------------------------------------------------- masks
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_top_k_mask(dtype: torch.dtype) -> None:
    for vocab in (1, 5, 111, 5000):
        x = gpu(rows(vocab, seed=1).to(dtype))
        n = x.shape[0]
        ks = [k for k in (1, 2, 50, vocab - 1, vocab, 0) if 0 <= k <= vocab]
        ks.append(torch.randint(0, vocab + 1, (n,), device="cuda"))
        for name, view in strided(x).items():
            for k in ks:
                for m in (1, 3):
                    # The reference runs on CPU: on the H200 (torch 2.11) CUDA torch.topk on the
                    # bfloat16 NaN row (edge row 7) gave a NaN k-th value at V=111, k=50, which kept
                    # the whole row, where NaN ranks highest and the row keeps its 50 largest (CPU
                    # torch.topk and transformers' rule agree). Masks are exact: only a threshold.
                    got = S.top_k_mask_logits(view, k, min_tokens_to_keep=m, backend="cuda")
                    want = S.top_k_mask_logits(view.cpu(), k.cpu() if isinstance(k, torch.Tensor) else k,
                                               min_tokens_to_keep=m, backend="torch")
                    assert_same(got, want, what=f"{name} V={vocab} k={k} m={m}")
        got, want = both(S.top_k_mask_logits, x, min(3, vocab), filter_value=-5.0)
        assert_same(got, want, what="filter_value")


def _check_top_p(x: torch.Tensor, p, m: int, what: str) -> None:  # noqa: ANN001
    got, want = both(S.top_p_mask_logits, x, p, min_tokens_to_keep=m)
    scores = x.float()
    top_p = torch.as_tensor(p, dtype=torch.float64, device=x.device).expand(x.shape[0])
    threshold = (1 - top_p).to(torch.float32)
    check_near_threshold(got, want, stable_cum(scores), threshold, what, values=scores)


def _check_min_p(x: torch.Tensor, p, m: int, what: str) -> None:  # noqa: ANN001
    got, want = both(S.min_p_mask_logits, x, p, min_tokens_to_keep=m)
    scores = x.float().double()
    ratio = torch.exp(scores - scores.amax(-1, keepdim=True))  # p / p_max
    min_p = torch.as_tensor(p, dtype=torch.float64, device=x.device).expand(x.shape[0]).to(torch.float32)
    # torch.topk ranks min_tokens_to_keep by float32 probability, where underflowed ones tie at 0.
    check_near_threshold(got, want, ratio, min_p, what, values=torch.softmax(x.float(), -1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_top_p_and_min_p_masks(dtype: torch.dtype) -> None:
    for vocab in (1, 2, 17, 111, 3000):
        x = gpu(rows(vocab, seed=3).to(dtype))
        n = x.shape[0]
        for name, view in strided(x).items():
            for p in (0.0, 0.3, 0.9, 0.999, 1.0, torch.rand(n, dtype=torch.float64, device="cuda")):
                for m in (1, 3):
                    _check_top_p(view, p, m, f"top_p {name} V={vocab} p={p} m={m}")
                    _check_min_p(view, p, m, f"min_p {name} V={vocab} p={p} m={m}")


def test_cuda_top_p_ties_keep_highest_indices() -> None:
    """A flat row: transformers' stable ascending sort removes the lowest indices first."""
    x = torch.zeros(2, 1000, device="cuda")
    got, want = both(S.top_p_mask_logits, x, 0.25)
    kept = torch.isfinite(got[0]).nonzero().flatten()
    assert kept.numel() in (250, 251) and int(kept[-1]) == 999 and bool((kept.diff() == 1).all())
    check_near_threshold(got, want, stable_cum(x), torch.full((2,), 0.75, device="cuda"), "flat row", values=x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_renorm_probs(dtype: torch.dtype) -> None:
    for vocab in (1, 9, 2000):
        logits = torch.randn(6, vocab, generator=torch.Generator().manual_seed(vocab)) * 2
        logits[1] = 0.0  # ties
        probs = gpu(torch.softmax(logits, -1).to(dtype))
        probs[2] = 0.0  # a row with nothing kept
        for k in sorted({min(k, vocab) for k in (0, 1, 5, vocab)}):  # the op takes k in [0, vocab]
            got, want = both(S.top_k_renorm_probs, probs, k)
            assert_same(got, want, what=f"top_k_renorm V={vocab} k={k}")
        for p in (0.0, 0.5, 0.95, 1.0):
            got, want = both(S.top_p_renorm_probs, probs, p)
            same = (got > 0) == (want > 0)
            if not bool(same.all()):
                logp = torch.log(probs.float())
                check_near_threshold(torch.where(got > 0, 0.0, NEG_INF), torch.where(want > 0, 0.0, NEG_INF),
                                     stable_cum(logp), torch.full((6,), 1 - p, device="cuda"),
                                     f"top_p_renorm V={vocab}", values=logp)
            else:
                assert_same(got, want, atol=1e-6, rtol=1e-5, what=f"top_p_renorm V={vocab} p={p}")


# --------------------------------------------------------------------------- samplers
def test_cuda_edge_rows() -> None:
    """All -inf rows, NaN rows, +inf, V below the block size, k >= V, p in {0, 1}."""
    x = gpu(torch.stack([
        torch.full((7,), NEG_INF),
        torch.full((7,), NAN),
        torch.tensor([0.0, NAN, 1.0, NEG_INF, 2.0, NAN, -1.0]),
        torch.tensor([0.0, INF, 1.0, INF, 2.0, 0.0, -1.0]),
        torch.tensor([NEG_INF] * 6 + [3.0]),
    ]))
    for kwargs in ({}, {"top_k": 3}, {"top_k": 7}, {"top_p": 0.0}, {"top_p": 1.0}, {"min_p": 0.5},
                   {"top_k": 2, "top_p": 0.5, "min_p": 0.1, "temperature": 0.5}):
        got = S.filter_and_sample(x, seed=5, return_logprobs=True, return_filtered=True, backend="cuda", **kwargs)
        want = S.filter_and_sample(x, seed=5, return_logprobs=True, return_filtered=True, backend="torch", **kwargs)
        assert_same(got.tokens, want.tokens, what=f"tokens {kwargs}")
        assert_same(got.filtered, want.filtered, what=f"filtered {kwargs}")
        assert_same(got.logprobs, want.logprobs, atol=1e-5, what=f"logprobs {kwargs}")
    assert S.greedy(x, backend="cuda").tolist() == [0, 0, 4, 1, 6]


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_top_k_sampling_matches_reference(dtype: torch.dtype) -> None:
    """Top-k (and temperature) decide the kept set exactly; the Philox Gumbel noise is the same,
    so the tokens and the filtered rows equal the reference's."""
    for vocab in (3, 1000, 5001):
        x = gpu((torch.randn(33, vocab, generator=torch.Generator().manual_seed(vocab)) * 3).to(dtype))
        seed = torch.arange(33, device="cuda") * 7919 - 5
        for kwargs in ({}, {"top_k": 1}, {"top_k": min(50, vocab)}, {"top_k": min(40, vocab), "temperature": 0.7},
                       {"top_k": torch.randint(0, vocab + 1, (33,), device="cuda")}):
            got = S.filter_and_sample(x, seed=seed, offset=11, return_logprobs=True, return_filtered=True,
                                      backend="cuda", **kwargs)
            want = S.filter_and_sample(x, seed=seed, offset=11, return_logprobs=True, return_filtered=True,
                                       backend="torch", **kwargs)
            assert_same(got.tokens, want.tokens, what=f"tokens V={vocab} {kwargs}")
            assert_same(got.filtered, want.filtered, what=f"filtered V={vocab} {kwargs}")
            assert_same(got.logprobs, want.logprobs, atol=2e-5, rtol=1e-5, what=f"logprobs V={vocab} {kwargs}")


def test_cuda_sampling_from_probs() -> None:
    probs = gpu(torch.softmax(torch.randn(7, 3000, generator=torch.Generator().manual_seed(3)) * 2, -1))
    for kwargs in ({}, {"top_k": 20}, {"top_p": 0.8}, {"min_p": 0.05}):
        got = S._sample_probs(probs, kwargs.get("top_k"), kwargs.get("top_p"), kwargs.get("min_p"), 9, 0, None,
                              "cuda")
        want = S._sample_probs(probs, kwargs.get("top_k"), kwargs.get("top_p"), kwargs.get("min_p"), 9, 0, None,
                               "torch")
        assert_same(got, want, what=f"sampling_from_probs {kwargs}")


def test_cuda_determinism_and_batch_position() -> None:
    """Same seed, same tokens: twice in a row, and for a row moved to another batch position."""
    x = gpu(torch.randn(16, 4000, generator=torch.Generator().manual_seed(1)) * 2)
    seed = torch.arange(16, device="cuda") + 100
    kw = {"top_k": 100, "top_p": 0.9, "min_p": 0.01, "temperature": 0.8, "offset": 3, "backend": "cuda"}
    a = S.filter_and_sample(x, seed=seed, **kw).tokens
    b = S.filter_and_sample(x, seed=seed, **kw).tokens
    perm = torch.randperm(16, device="cuda")
    c = S.filter_and_sample(x[perm], seed=seed[perm], **kw).tokens
    assert_same(a, b, what="repeat")
    assert_same(c, a[perm], what="batch position")


def test_cuda_matches_cpu_backend() -> None:
    """Cross-backend determinism: the same seed gives the same tokens on cuda and cpu (temperature
    0.5 and 2 divide exactly, so x / T == x * (1 / T) and both backends see the same logits)."""
    if _ext.cpu_module() is None:
        pytest.skip("cpu module not built")
    x = torch.randn(33, 3001, generator=torch.Generator().manual_seed(4)) * 3
    seed = torch.arange(33) * 31 + 1
    for kwargs in ({}, {"top_k": 50}, {"top_k": 10, "temperature": 0.5}, {"min_p": 0.05, "temperature": 2.0},
                   {"top_p": 0.9}, {"top_k": 64, "top_p": 0.8, "min_p": 0.02}):
        cpu = S.filter_and_sample(x, seed=seed, offset=2, backend="cpu", **kwargs).tokens
        cuda = S.filter_and_sample(gpu(x), seed=gpu(seed), offset=2, backend="cuda", **kwargs).tokens
        same = cpu == cuda.cpu()
        # top-p may decide a token within float rounding of 1 - top_p differently; nothing else may differ
        assert int((~same).sum()) <= (1 if "top_p" in kwargs else 0), f"{kwargs}: {(~same).nonzero().flatten()}"


def test_cuda_sampling_distribution() -> None:
    """20000 draws (offsets 0..19999) of one 10-token row after top-k 6: total variation from the
    renormalised softmax <= 0.02 (the expected TV of 20000 draws over 6 outcomes is ~0.006)."""
    logits = torch.tensor([[1.0, 0.5, 2.0, -1.0, 0.0, 1.5, -3.0, 0.2, 0.9, -0.5]], device="cuda")
    n = 20000
    x = logits.expand(n, -1)
    tokens = S.filter_and_sample(x, top_k=6, seed=123, offset=torch.arange(n, device="cuda"), backend="cuda").tokens
    counts = torch.bincount(tokens, minlength=10).double() / n
    kept = logits[0] >= torch.topk(logits[0], 6).values[-1]
    probs = torch.softmax(logits[0].masked_fill(~kept, NEG_INF), -1).double()
    assert float(counts[~kept].sum()) == 0.0
    assert 0.5 * float((counts - probs).abs().sum()) <= 0.02


# --------------------------------------------------------------------------- full shapes
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch,vocab", [(1, 128256), (7, 32000), (33, 152064), (64, 128256)])
def test_cuda_big_filter_and_sample(dtype: torch.dtype, batch: int, vocab: int) -> None:
    x = gpu((torch.randn(batch, vocab, generator=torch.Generator().manual_seed(batch)) * 4).to(dtype))
    seed = torch.arange(batch, device="cuda") + 17
    got = S.filter_and_sample(x, top_k=50, seed=seed, backend="cuda").tokens
    want = S.filter_and_sample(x, top_k=50, seed=seed, backend="torch").tokens
    assert_same(got, want, what="top-k 50 tokens")
    assert_same(S.greedy(x, backend="cuda"), S.greedy(x, backend="torch"), what="greedy")
    _check_top_p(x, 0.9, 1, f"top_p big {batch}x{vocab}")
    _check_min_p(x, 0.05, 1, f"min_p big {batch}x{vocab}")
    got = S.filter_and_sample(x, top_k=1000, top_p=0.95, min_p=0.01, seed=seed, backend="cuda",
                              return_filtered=True, return_logprobs=True)
    want = S.filter_and_sample(x, top_k=1000, top_p=0.95, min_p=0.01, seed=seed, backend="torch",
                               return_filtered=True, return_logprobs=True)
    differs = got.tokens != want.tokens
    kept_differs = ((got.filtered > NEG_INF) != (want.filtered > NEG_INF)).any(-1)
    assert not bool((differs & ~kept_differs).any()), "a token differs although the kept sets agree"
    assert int(kept_differs.sum()) <= max(1, batch // 10)


# --------------------------------------------------------------------------- split-vocabulary path
# Small batches split each row of the fused chain over several blocks (csrc/cuda/sampling.cu,
# RowSync). PYDECODE_CUDA_CHAIN_SPLITS forces the count; the outputs must equal the one-block
# path's bit for bit (the same merged integers decide everything). "thorough" and "big" tests are
# left out of the compute-sanitizer run (bench/gpu_check.sh); test_cuda_split_chain_small is its share.
def _chain_outputs(x: torch.Tensor, splits: int, monkeypatch: pytest.MonkeyPatch, **kwargs) -> list[torch.Tensor]:
    monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", str(splits))
    seed = torch.arange(x.shape[0], device="cuda") * 7919 - 5
    got = S.filter_and_sample(x, seed=seed, offset=3, return_logprobs=True, return_filtered=True, backend="cuda",
                              **kwargs)
    return [got.tokens, got.logprobs, got.filtered]


def _check_splits(x: torch.Tensor, splits: tuple[int, ...], kwargs_list, monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
                  what: str) -> None:
    for kwargs in kwargs_list:
        if "top_k" in kwargs:
            kwargs = {**kwargs, "top_k": min(kwargs["top_k"], x.shape[1])}
        want = _chain_outputs(x, 1, monkeypatch, **kwargs)
        for n in splits:
            got = _chain_outputs(x, n, monkeypatch, **kwargs)
            for name, g, w in zip(("tokens", "logprobs", "filtered"), got, want):
                assert_same(g, w, what=f"{n} splits vs 1: {name} {what} {kwargs}")


SPLIT_KWARGS = ({}, {"top_k": 1}, {"top_k": 50, "temperature": 0.7}, {"top_p": 0.9}, {"top_p": 0.0},
                {"min_p": 0.05}, {"top_k": 64, "top_p": 0.8, "min_p": 0.02, "temperature": 1.3},
                {"top_p": 0.5, "min_tokens_to_keep": 5}, {"min_p": 0.5, "min_tokens_to_keep": 3})


def _edge_block() -> torch.Tensor:
    return torch.stack([
        torch.full((7,), NEG_INF), torch.full((7,), NAN), torch.tensor([0.0, NAN, 1.0, NEG_INF, 2.0, NAN, -1.0]),
        torch.tensor([0.0, INF, 1.0, INF, 2.0, 0.0, -1.0]), torch.tensor([NEG_INF] * 6 + [3.0]),
    ])


def test_cuda_split_chain_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 blocks per row against 1 on edge rows (NaN, +-inf, all -inf, V < block) and an unaligned row."""
    kwargs_list = ({}, {"top_k": 3, "top_p": 0.8, "min_p": 0.02}, {"top_p": 0.5, "min_tokens_to_keep": 5})
    _check_splits(gpu(_edge_block()), (3,), kwargs_list, monkeypatch, "edge rows")
    _check_splits(strided(gpu(rows(1000, seed=3)))["row-strided"], (3,), kwargs_list, monkeypatch, "row-strided")


def test_cuda_split_chain_thorough(monkeypatch: pytest.MonkeyPatch) -> None:
    """2, 3 and 7 blocks per row against 1: every stage and output, ties, every dtype, strided rows,
    slices that are empty (V < 8 * splits), probability inputs (renorm)."""
    ties = torch.randint(0, 4, (6, 1000), generator=torch.Generator().manual_seed(2)).float()
    for x in (_edge_block(), rows(1000, seed=3), ties, rows(4099, seed=4).to(torch.bfloat16),
              rows(333, seed=5).to(torch.float16)):
        for name, view in strided(gpu(x)).items():
            _check_splits(view, (2, 3, 7), SPLIT_KWARGS, monkeypatch, f"{name} {tuple(view.shape)} {view.dtype}")
    probs = gpu(torch.softmax(torch.randn(5, 3000, generator=torch.Generator().manual_seed(6)) * 2, -1))
    for op, arg in ((S.top_k_renorm_probs, 20), (S.top_p_renorm_probs, 0.8)):
        monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", "1")
        want = op(probs, arg, backend="cuda")
        for n in (2, 7):
            monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", str(n))
            assert_same(op(probs, arg, backend="cuda"), want, what=f"{n} splits {op.__name__}")


def test_cuda_split_chain_in_cuda_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    """The split path (a cooperative kernel, its scratch zeroed on the stream) captured in a CUDA
    graph: replays equal eager calls, and follow new seeds / offsets written to the same tensors."""
    monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", "4")
    monkeypatch.setenv("PYDECODE_CHECK_VALUES", "0")  # value scans would sync with the host
    x = gpu(torch.randn(2, 40000, generator=torch.Generator().manual_seed(8)) * 3)
    kw = {"temperature": gpu(torch.tensor([0.8, 1.2], dtype=torch.float64)),
          "top_k": gpu(torch.tensor([100, 0])), "top_p": gpu(torch.tensor([0.9, 0.7], dtype=torch.float64)),
          "seed": gpu(torch.tensor([5, 9])), "offset": gpu(torch.tensor([0, 4])), "backend": "cuda",
          "return_logprobs": True}

    def step():  # noqa: ANN202
        return S.filter_and_sample(x, **kw)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for new_offset in (0, 1, 2):
        kw["offset"].fill_(new_offset)
        graph.replay()
        want = step()
        assert_same(out.tokens, want.tokens, what=f"graph tokens, offset {new_offset}")
        assert_same(out.logprobs, want.logprobs, what=f"graph logprobs, offset {new_offset}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("batch", [1, 2, 4, 8])
@pytest.mark.parametrize("vocab", [32000, 128256, 152064])
def test_cuda_big_split_chain(dtype: torch.dtype, batch: int, vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full shapes: the automatic split count (> 1 at these batches) against one block per row,
    bit for bit, and the tokens against the torch reference where the kept sets agree."""
    monkeypatch.delenv("PYDECODE_CUDA_CHAIN_SPLITS", raising=False)
    auto = _ext.cuda_module().chain_splits(batch, vocab)
    assert auto > 1, f"no split at batch {batch}, vocab {vocab}"
    x = gpu((torch.randn(batch, vocab, generator=torch.Generator().manual_seed(vocab + batch)) * 4).to(dtype))
    _check_splits(x, (auto,), ({"top_k": 50}, {"top_p": 0.9}, {"min_p": 0.05, "temperature": 0.5}),
                  monkeypatch, f"{batch}x{vocab}")
    kwargs = {"top_k": 1000, "top_p": 0.95, "min_p": 0.01, "temperature": 0.8}
    monkeypatch.delenv("PYDECODE_CUDA_CHAIN_SPLITS")
    seed = torch.arange(batch, device="cuda") * 7919 - 5
    got = S.filter_and_sample(x, seed=seed, offset=3, return_filtered=True, backend="cuda", **kwargs)
    want = S.filter_and_sample(x, seed=seed, offset=3, return_filtered=True, backend="torch", **kwargs)
    differs = got.tokens != want.tokens
    kept_differs = ((got.filtered > NEG_INF) != (want.filtered > NEG_INF)).any(-1)
    assert not bool((differs & ~kept_differs).any()), "a token differs although the kept sets agree"
    assert int(kept_differs.sum()) <= max(1, batch // 4)


# --------------------------------------------------------------------------- compact path
# Top-k with k <= 4096 and top-p with a small nucleus run their stages on a candidate list in
# shared memory (csrc/cuda/sampling.cu, "compact path"); PYDECODE_CUDA_CHAIN_COMPACT=0 runs every
# stage on the full row. The two must agree bit for bit, with one block per row and split rows.
COMPACT_KWARGS = ({"top_k": 50, "temperature": 0.7, "top_p": 0.9}, {"top_k": 1}, {"top_k": 4096},
                  {"top_k": 4097, "top_p": 0.9}, {"top_p": 0.9, "temperature": 0.7}, {"top_p": 0.99},
                  {"top_p": 0.3, "min_tokens_to_keep": 40}, {"top_k": 20, "min_p": 0.1},
                  {"top_p": 0.9, "min_p": 0.05, "temperature": 1.5}, {"top_k": 7, "top_p": 0.0})


def _compact_outputs(x: torch.Tensor, compact: str, splits: int, monkeypatch: pytest.MonkeyPatch,
                     **kwargs) -> list[torch.Tensor]:
    monkeypatch.setenv("PYDECODE_CUDA_CHAIN_COMPACT", compact)
    return _chain_outputs(x, splits, monkeypatch, **kwargs)


def _check_compact(x: torch.Tensor, splits: tuple[int, ...], monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    for kwargs in COMPACT_KWARGS:
        if "top_k" in kwargs:
            kwargs = {**kwargs, "top_k": min(kwargs["top_k"], x.shape[1])}
        for n in splits:
            want = _compact_outputs(x, "0", n, monkeypatch, **kwargs)
            got = _compact_outputs(x, "1", n, monkeypatch, **kwargs)
            for name, g, w in zip(("tokens", "logprobs", "filtered"), got, want):
                assert_same(g, w, what=f"compact vs full row, {n} splits: {name} {what} {kwargs}")


def test_cuda_compact_path_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Edge rows (NaN, +-inf, all -inf: the full-row path), ties, a row of one value, unaligned rows."""
    ties = torch.randint(0, 4, (6, 1000), generator=torch.Generator().manual_seed(2)).float()
    flat = torch.full((2, 5000), 1.5)
    for x in (_edge_block(), rows(1000, seed=3), ties, flat):
        for name, view in strided(gpu(x)).items():
            _check_compact(view, (1, 3), monkeypatch, f"{name} {tuple(view.shape)}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("std", [1.0, 3.0, 8.0])
def test_cuda_big_compact_path(dtype: torch.dtype, std: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Full shapes, logits randn * std (nuclei from thousands of tokens to a few: std 1 takes the
    wide-nucleus top-p path, its exact bin histograms included), a row with -inf entries and one
    with a -1e30 outlier (a range too wide for the gap bins)."""
    g = torch.Generator().manual_seed(int(std * 10))
    x = torch.randn(6, 128256, generator=g) * std
    x[1, ::3] = NEG_INF
    x[2, 5] = -1e30
    _check_compact(gpu(x.to(dtype)), (1, 4), monkeypatch, f"std {std} {dtype}")


# --------------------------------------------------------------------------- one-read top-k list
# PYDECODE_CUDA_TOPK_SCAN (on by default): bfloat16 top-k rows with k <= 64, and top-p or min-p rows
# without top-k (their 64 largest entries), list their candidates as they read the row
# (csrc/cuda/sampling.cu, "one-read top-k"). The same bits as without it.
SCAN_KWARGS = ({"top_k": 50, "temperature": 0.7, "top_p": 0.9}, {"top_k": 1}, {"top_k": 64, "min_p": 0.05},
               {"top_k": 50, "temperature": 1.1, "top_p": 0.95}, {"top_k": 8, "temperature": 1e39},
               {"top_k": 20, "top_p": 0.5, "min_tokens_to_keep": 30}, {"top_k": 65, "top_p": 0.9},
               {"temperature": 0.7, "top_p": 0.9}, {"top_p": 0.5, "min_p": 0.05}, {"top_p": 0.99},
               {"temperature": 0.7, "top_p": 0.3, "min_tokens_to_keep": 80}, {"min_p": 0.1},
               {"temperature": 0.7, "min_p": 0.3, "min_tokens_to_keep": 100}, {"temperature": 1.5, "min_p": 0.02})


@pytest.mark.parametrize(("batch", "vocab"), [(4, 1000), (6, 128256), (300, 32000)])
def test_cuda_top_k_scan_matches(batch: int, vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random rows at three scales, ascending values (every entry beats the running threshold),
    thousands of ties (a buffer that cannot make room), -inf entries, fewer finite entries than k;
    one block per row and split rows; top-p nuclei and min-p sets inside the list and wider."""
    g = torch.Generator().manual_seed(vocab)
    x = torch.randn(batch, vocab, generator=g) * torch.tensor([0.3, 1.0, 3.0])[torch.arange(batch) % 3, None]
    x[0] = torch.arange(vocab, dtype=torch.float32) / 100
    x[1] = torch.randint(0, 3, (vocab,), generator=g).float()
    x[2, ::3] = NEG_INF
    x[3, 20:] = NEG_INF
    x = gpu(x.to(torch.bfloat16))
    for kwargs in SCAN_KWARGS:
        for n in (1, 3) if batch < 64 else (1,):
            monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "0")
            want = _chain_outputs(x, n, monkeypatch, **kwargs)
            monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "1")
            got = _chain_outputs(x, n, monkeypatch, **kwargs)
            for name, a, b in zip(("tokens", "logprobs", "filtered"), got, want):
                assert_same(a, b, what=f"one-read list, {n} splits: {name} {kwargs}")


def test_cuda_split_list_is_a_top_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A split row's one-read list is every entry at or above the highest of its blocks' floors (a
    top prefix of the row, which top-p's and min-p's stages need), not the union of the blocks'
    lists: the first slice's ramp (0, -0.001, ...) has entries below its own list's floor and above
    the other slices' groups of 64 (-0.0645, -0.1); top-p boundaries and min-p bars around them
    (the CPU model's test_split_list_is_a_top_prefix, at a GPU block's size)."""
    v = 3 * 40000
    x = torch.full((1, v), -10.0)
    x[0, :2000] = -0.001 * torch.arange(2000, dtype=torch.float32)
    x[0, 40000:40064] = -0.0645
    x[0, 80000:80064] = -0.1
    x = gpu(x.to(torch.bfloat16))
    calls = [{"top_p": p} for p in (0.06, 0.08, 0.1, 0.12, 0.15, 0.18)]
    calls += [{"min_p": math.exp(bar)} for bar in (-0.0641, -0.0643, -0.08, -0.09)]
    for kwargs in calls:
        monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "0")
        want = _chain_outputs(x, 3, monkeypatch, temperature=1.0, **kwargs)
        monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "1")
        got = _chain_outputs(x, 3, monkeypatch, temperature=1.0, **kwargs)
        for name, a, b in zip(("tokens", "logprobs", "filtered"), got, want):
            assert_same(a, b, what=f"split one-read list: {name} {kwargs}")


def test_cuda_top_p_list_that_surely_holds_the_nucleus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Top-p rows without top-k whose one-read list shows by itself that it holds the nucleus sum
    the row's mass without the gap histogram: 20 entries at 0 above the rest at -gap - 4 + randn,
    a row per gap, the bound failing at the small gaps and holding at the large ones (the CPU model's
    test_top_p_list_that_surely_holds_the_nucleus at a GPU block's size), against the full-row path;
    one block per row and split rows."""
    gaps = (2.0, 4.0, 5.0, 6.0, 7.0, 9.0, 12.0)
    g = torch.Generator().manual_seed(9)
    x = torch.randn(len(gaps), 128256, generator=g) - 4.0 - torch.tensor(gaps)[:, None]
    x[:, :20] = 0.0
    x = gpu(x.to(torch.bfloat16))
    for kwargs in ({"top_p": 0.9}, {"top_p": 0.5}, {"top_p": 0.99}, {"top_p": 0.9, "min_tokens_to_keep": 30}):
        for n in (1, 3):
            want = _compact_outputs(x, "0", n, monkeypatch, temperature=1.0, **kwargs)
            got = _compact_outputs(x, "1", n, monkeypatch, temperature=1.0, **kwargs)
            for name, a, b in zip(("tokens", "logprobs", "filtered"), got, want):
                assert_same(a, b, what=f"top-p list that holds the nucleus, {n} splits: {name} {kwargs}")


# PYDECODE_CUDA_WARP_FINISH (on by default): a call that returns tokens and log-probs only finishes a
# short candidate list (at most 128 entries; a top-k row's one-read list cut to top-k's set first) in
# one warp (csrc/cuda/sampling.cu, "one-warp list finish"). The same bits as the block's stages.
@pytest.mark.parametrize(("batch", "vocab"), [(1, 128256), (4, 1000), (6, 128256), (300, 32000)])
def test_cuda_warp_finish_matches(batch: int, vocab: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows of the one-read list's test (ascending values, thousands of ties, -inf entries, fewer
    finite entries than k) at the decode call (tokens and log-probs, no filtered row), one block per
    row and split rows, in bfloat16 (the one-read list) and float32 (the key-bin and gap lists)."""
    g = torch.Generator().manual_seed(vocab + batch)
    x = torch.randn(batch, vocab, generator=g) * torch.tensor([0.3, 1.0, 3.0])[torch.arange(batch) % 3, None]
    if batch >= 4:
        x[0] = torch.arange(vocab, dtype=torch.float32) / 100
        x[1] = torch.randint(0, 3, (vocab,), generator=g).float()
        x[2, ::3] = NEG_INF
        x[3, 20:] = NEG_INF
    seed = torch.arange(batch, device="cuda") * 7919 - 5
    for dtype in (torch.bfloat16, torch.float32):
        xd = gpu(x.to(dtype))
        for kwargs in SCAN_KWARGS:
            for n in (1, 3) if batch < 64 else (1,):
                monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", str(n))
                outs = []
                for on in ("0", "1"):
                    monkeypatch.setenv("PYDECODE_CUDA_WARP_FINISH", on)
                    got = S.filter_and_sample(xd, seed=seed, offset=3, return_logprobs=True, backend="cuda", **kwargs)
                    outs.append((got.tokens, got.logprobs))
                for name, a, b in zip(("tokens", "logprobs"), outs[1], outs[0]):
                    assert_same(a, b, what=f"warp finish, {dtype}, {n} splits: {name} {kwargs}")
