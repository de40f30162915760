"""pydecode.ops.sampling against transformers' warpers, plus the four sampler test kinds
(exact, support, distribution, determinism) of DESIGN.md."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from pydecode import ops
from pydecode.ops import sampling
from pydecode.ops.philox import STREAM_SAMPLE, gumbel_from_uniform, philox_uniform
from tests.helpers import clamp_top_k

NEG_INF = float("-inf")
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LAYOUTS = ("contiguous", "strided", "transposed")


# --------------------------------------------------------------------------- helpers
def assert_same(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """Exact equality, NaN matching NaN; prints the mismatch count and first indices."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if actual.dtype.is_floating_point:
        nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
        bad = (nan_a != nan_e) | (~nan_a & ~nan_e & (actual != expected))
    else:
        bad = actual != expected
    if bool(bad.any()):
        idx = bad.nonzero()[:5]
        pairs = [(tuple(i.tolist()), actual[tuple(i)].item(), expected[tuple(i)].item()) for i in idx]
        count = f"{int(bad.sum())} of {bad.numel()} entries differ"
        pytest.fail(f"{what}: {count}; first (index, actual, expected): {pairs}")


def adversarial(vocab: int, seed: int = 0) -> torch.Tensor:
    """Rows that break samplers: ties, flat, masked, all -inf, NaN, +inf, underflow, peaks."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda: torch.randn(vocab, generator=g)  # noqa: E731
    rows = [
        randn() * 3,
        torch.randint(0, 4, (vocab,), generator=g).float(),  # many ties at every k-th value
        torch.zeros(vocab),  # flat
        randn().masked_fill(torch.rand(vocab, generator=g) < 0.5, NEG_INF),
        torch.full((vocab,), NEG_INF),
        randn().masked_fill(torch.rand(vocab, generator=g) < 0.3, math.nan),
        torch.full((vocab,), math.nan),
        randn() * 200,  # most probabilities underflow to exactly 0
        (randn() * 2).round() / 2,  # ties at multiples of 0.5
        randn() - 1e4,
        randn().masked_fill(torch.rand(vocab, generator=g) < 0.2, math.inf),
    ]
    rows[9][vocab // 2] = 30.0  # one-hot peak
    return torch.stack(rows)


def layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "strided":
        big = torch.full((x.shape[0], 2 * x.shape[1]), 7.0, dtype=x.dtype)
        big[:, ::2] = x
        return big[:, ::2]
    if kind == "transposed":
        return x.t().contiguous().t()
    return x


def inputs(vocab: int, dtype: torch.dtype, kind: str, seed: int = 0) -> torch.Tensor:
    x = layout(adversarial(vocab, seed).to(dtype), kind)
    assert vocab == 1 or (kind == "contiguous") == x.is_contiguous()
    return x


def hf_chain(
    scores: torch.Tensor,
    *,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    min_tokens_to_keep: int = 1,
    filter_value: float = NEG_INF,
) -> torch.Tensor:
    """transformers' sampling warpers in generate()'s order, added under generate()'s conditions."""
    ids = torch.zeros((scores.shape[0], 1), dtype=torch.long)
    m = min_tokens_to_keep
    if temperature is not None and temperature != 1.0:
        scores = TemperatureLogitsWarper(float(temperature))(ids, scores)
    if top_k is not None and top_k != 0:
        scores = TopKLogitsWarper(int(top_k), filter_value=filter_value, min_tokens_to_keep=m)(ids, scores)
    if top_p is not None and top_p < 1.0:
        scores = TopPLogitsWarper(float(top_p), filter_value=filter_value, min_tokens_to_keep=m)(ids, scores)
    if min_p is not None:
        scores = MinPLogitsWarper(float(min_p), filter_value=filter_value, min_tokens_to_keep=m)(ids, scores)
    return scores


def hf_rows(scores: torch.Tensor, **params: torch.Tensor | float | int | None) -> torch.Tensor:
    """hf_chain row by row, each row with its own scalar parameters."""
    out = []
    for i in range(scores.shape[0]):
        row = {k: (v[i].item() if isinstance(v, torch.Tensor) else v) for k, v in params.items()}
        out.append(hf_chain(scores[i : i + 1], **row))
    return torch.cat(out)


def per_row(values: list, batch: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor([values[i % len(values)] for i in range(batch)], dtype=dtype)


# --------------------------------------------------------------------------- exact masks
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("vocab", [1, 7, 111])
def test_temperature_matches_hf(vocab: int, kind: str, dtype: torch.dtype) -> None:
    x = inputs(vocab, dtype, kind)
    for t in (0.7, 1.0, 1.3, 1e-3, 2 / 3, 123.0):
        assert_same(ops.apply_temperature(x, t), hf_chain(x.float(), temperature=t), f"T={t}")
    temps = per_row([0.7, 1.0, 1.3, 1e-3, 2 / 3], x.shape[0], torch.float64)
    assert_same(ops.apply_temperature(x, temps), hf_rows(x.float(), temperature=temps), "per-row T")
    assert_same(ops.apply_temperature(x, temps.float()), hf_rows(x.float(), temperature=temps.float()), "f32 T")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("vocab", [1, 5, 111])
def test_top_k_matches_hf(vocab: int, kind: str, dtype: torch.dtype) -> None:
    x = inputs(vocab, dtype, kind)
    for k in sorted({1, 2, 3, vocab - 1, vocab} - {0} - set(range(vocab + 1, 4))):
        for m in (1, 3):
            for fv in (NEG_INF, -100.0):
                got = ops.top_k_mask_logits(x, k, min_tokens_to_keep=m, filter_value=fv)
                want = hf_chain(x.float(), top_k=k, min_tokens_to_keep=m, filter_value=fv)
                assert_same(got, want, f"k={k} m={m} fv={fv}")
    ks = per_row([0, 1, 2, 3, vocab, 50], x.shape[0], torch.int64).clamp(max=vocab)
    assert_same(ops.top_k_mask_logits(x, ks), hf_rows(x.float(), top_k=ks), "per-row k")
    assert_same(ops.top_k_mask_logits(x, 0), x.float(), "k=0 disables")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("vocab", [1, 5, 111])
def test_top_p_matches_hf(vocab: int, kind: str, dtype: torch.dtype) -> None:
    x = inputs(vocab, dtype, kind)
    for p in (0.0, 0.1, 0.5, 0.9, 0.95, 0.999, 1.0):
        for m in (1, 3):
            got = ops.top_p_mask_logits(x, p, min_tokens_to_keep=m)
            assert_same(got, hf_chain(x.float(), top_p=p, min_tokens_to_keep=m), f"p={p} m={m}")
    ps = per_row([0.0, 0.3, 0.9, 1.0, 0.95, 0.5], x.shape[0], torch.float64)
    assert_same(ops.top_p_mask_logits(x, ps), hf_rows(x.float(), top_p=ps), "per-row p")
    ps32 = ps.float()  # rounded to float32 first: HF must see the same float
    assert_same(ops.top_p_mask_logits(x, ps32), hf_rows(x.float(), top_p=ps32), "per-row f32 p")
    assert_same(ops.top_p_mask_logits(x, 1.0, filter_value=-7.5), x.float(), "p=1 disables")


def test_top_p_boundary_is_bit_equal() -> None:
    # Probabilities 1/8, 1/8, 1/4, 1/2: cumulative sums hit 1 - p exactly for p in {0.5, 0.75, 0.875}.
    x = torch.log(torch.tensor([[0.125, 0.5, 0.25, 0.125], [0.25, 0.25, 0.25, 0.25]]))
    for p in (0.5, 0.75, 0.875, 0.25, 0.2500001, 0.9):
        assert_same(ops.top_p_mask_logits(x, p), hf_chain(x, top_p=p), f"p={p}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("vocab", [1, 5, 111])
def test_min_p_matches_hf(vocab: int, kind: str, dtype: torch.dtype) -> None:
    x = inputs(vocab, dtype, kind)
    for p in (0.0, 0.05, 0.1, 0.5, 0.9, 1.0):
        for m in (1, 3, vocab + 2):
            got = ops.min_p_mask_logits(x, p, min_tokens_to_keep=m)
            assert_same(got, hf_chain(x.float(), min_p=p, min_tokens_to_keep=m), f"min_p={p} m={m}")
    ps = per_row([0.0, 0.05, 0.3, 1.0, 0.1], x.shape[0], torch.float64)
    assert_same(ops.min_p_mask_logits(x, ps), hf_rows(x.float(), min_p=ps), "per-row min_p")


CHAINS = [
    {"temperature": 0.7},
    {"top_k": 3},
    {"top_p": 0.8},
    {"min_p": 0.1},
    {"temperature": 1.3, "top_k": 5, "top_p": 0.9},
    {"temperature": 0.5, "top_k": 50, "top_p": 0.95, "min_p": 0.05},
    {"top_k": 2, "min_p": 0.3, "min_tokens_to_keep": 2},
    {"top_p": 0.0, "min_tokens_to_keep": 3},
    {},
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["contiguous", "strided"])
@pytest.mark.parametrize("vocab", [1, 9, 111])
def test_filter_and_sample_filtered_matches_hf_chain(vocab: int, kind: str, dtype: torch.dtype) -> None:
    x = inputs(vocab, dtype, kind, seed=1)
    for params in CHAINS:
        out = ops.filter_and_sample(x, seed=5, return_filtered=True, **clamp_top_k(params, x.shape[1]))
        assert_same(out.filtered, hf_chain(x.float(), **params), str(params))
        assert out.logprobs is None


def test_filter_and_sample_per_row_params_match_hf_row_by_row() -> None:
    x = torch.cat([adversarial(64, seed=2), torch.randn(10, 64) * 2])
    b = x.shape[0]
    params = {
        "temperature": per_row([0.7, 1.0, 1.5, 0.2], b, torch.float64),
        "top_k": per_row([0, 5, 1, 64, 20, 3], b, torch.int64),
        "top_p": per_row([1.0, 0.9, 0.5, 0.0, 0.99], b, torch.float64),
        "min_p": per_row([0.0, 0.1, 0.02], b, torch.float64),
    }
    for m in (1, 2):
        out = ops.filter_and_sample(
            x, seed=3, return_filtered=True, min_tokens_to_keep=m, **clamp_top_k(params, x.shape[1])
        )
        assert_same(out.filtered, hf_rows(x, min_tokens_to_keep=m, **params), f"m={m}")


@pytest.mark.parametrize("batch", [1, 7])
def test_random_large_vocab_matches_hf(batch: int) -> None:
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 5000, generator=g) * 4
    for params in CHAINS:
        out = ops.filter_and_sample(x, seed=1, return_filtered=True, **clamp_top_k(params, x.shape[1]))
        assert_same(out.filtered, hf_chain(x, **params), str(params))


def test_masks_return_new_tensors() -> None:
    x = torch.randn(3, 8)
    results = [
        ops.apply_temperature(x, 1.0),
        ops.top_k_mask_logits(x, 0),
        ops.top_p_mask_logits(x, 1.0),
        ops.min_p_mask_logits(x, 0.0),
        ops.filter_and_sample(x, seed=0, return_filtered=True).filtered,
    ]
    for r in results:
        assert r is not x and r.data_ptr() != x.data_ptr()
        assert_same(r, x)


def test_batch_zero() -> None:
    x = torch.empty(0, 6)
    out = ops.filter_and_sample(x, top_k=2, top_p=0.5, min_p=0.1, temperature=0.5, seed=0, return_logprobs=True)
    assert out.tokens.shape == (0,) and out.logprobs.shape == (0,)
    assert ops.top_k_mask_logits(x, 3).shape == (0, 6)
    assert ops.greedy(x).shape == (0,)


# --------------------------------------------------------------------------- renormalised probs
def _expected_renorm(probs: torch.Tensor, masked_log: torch.Tensor) -> torch.Tensor:
    p = probs.float().contiguous()  # the op sums contiguous rows, whatever the input strides
    log_p = torch.log(p)
    removed = (masked_log != log_p) & ~torch.isnan(log_p)
    kept = p.masked_fill(removed, 0.0)
    total = kept.sum(-1, keepdim=True)
    return torch.where(total == 0, 0.0, kept / total)


def _prob_rows(vocab: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(6, vocab, generator=g) * 2, -1)
    p[1] = torch.randint(0, 3, (vocab,), generator=g).float() / vocab  # ties and zeros, unnormalised
    p[2] = 0.0
    p[3, ::2] = 0.0
    p[4, 0] = math.nan
    p[5] = 1.0 / vocab
    return p


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
@pytest.mark.parametrize("vocab", [1, 6, 50])
def test_renorm_probs(vocab: int, kind: str, dtype: torch.dtype) -> None:
    probs = layout(_prob_rows(vocab).to(dtype), kind)
    log_p = torch.log(probs.float())
    for k in sorted({0, 1, 2, 3, vocab} & set(range(vocab + 1))):
        got = ops.top_k_renorm_probs(probs, k)
        want = _expected_renorm(probs, log_p if k == 0 else hf_chain(log_p, top_k=k))
        assert_same(got, want, f"k={k}")
    for p in (0.0, 0.3, 0.9, 1.0):
        got = ops.top_p_renorm_probs(probs, p)
        assert_same(got, _expected_renorm(probs, hf_chain(log_p, top_p=p)), f"p={p}")
    ks = per_row([0, 2, 1], probs.shape[0], torch.int64).clamp(max=vocab)
    got = ops.top_k_renorm_probs(probs, ks)
    assert_same(got, _expected_renorm(probs, hf_rows(log_p, top_k=ks)), "per-row k")
    ok = ~torch.isnan(got).any(-1) & (probs.float().sum(-1) > 0)
    torch.testing.assert_close(got[ok].sum(-1), torch.ones(int(ok.sum())))
    assert bool((got[2] == 0).all()), "an all-zero row stays all zero"
    assert bool(torch.isnan(got[4]).all()), "a NaN row becomes all NaN"


# --------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", LAYOUTS)
def test_greedy(dtype: torch.dtype, kind: str) -> None:
    x = inputs(33, dtype, kind)
    got = ops.greedy(x)
    clean = x.float().masked_fill(torch.isnan(x.float()), NEG_INF)
    assert_same(got, clean.argmax(-1))
    no_nan = ~torch.isnan(x.float()).any(-1)
    assert_same(got[no_nan], x.float()[no_nan].argmax(-1), "HF greedy (torch.argmax) on rows without NaN")
    ties = torch.tensor([[1.0, 3.0, 3.0, 3.0], [NEG_INF] * 4, [math.nan] * 4, [math.nan, 2.0, 5.0, 5.0]])
    assert ops.greedy(layout(ties.to(dtype), kind)).tolist() == [1, 0, 0, 2]


# --------------------------------------------------------------------------- samplers
def _logits_samplers(x: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor) -> dict[str, torch.Tensor]:
    kw = {"seed": seed, "offset": offset}
    return {
        "sampling_from_logits": ops.sampling_from_logits(x, **kw),
        "top_k_top_p_sampling_from_logits": ops.top_k_top_p_sampling_from_logits(x, 4, 0.9, temperature=0.7, **kw),
        "filter_and_sample": ops.filter_and_sample(x, top_k=3, min_p=0.05, top_p=0.8, **kw).tokens,
    }


def _probs_samplers(p: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor) -> dict[str, torch.Tensor]:
    kw = {"seed": seed, "offset": offset}
    return {
        "sampling_from_probs": ops.sampling_from_probs(p, **kw),
        "top_k_sampling_from_probs": ops.top_k_sampling_from_probs(p, 3, **kw),
        "top_p_sampling_from_probs": ops.top_p_sampling_from_probs(p, 0.7, **kw),
        "min_p_sampling_from_probs": ops.min_p_sampling_from_probs(p, 0.1, **kw),
        "top_k_top_p_sampling_from_probs": ops.top_k_top_p_sampling_from_probs(p, 4, 0.8, **kw),
    }


def test_exact_peaked_rows_give_the_argmax() -> None:
    n, vocab = 300, 50
    peak = torch.arange(n) % vocab
    logits = torch.full((n, vocab), -1e4)
    logits[torch.arange(n), peak] = 30.0  # beats any Gumbel draw (noise lies in [-2.8, 16.7])
    seeds, offsets = torch.arange(n) * 7919, torch.arange(n)
    for name, tokens in _logits_samplers(logits, seeds, offsets).items():
        assert_same(tokens, peak, name)
    probs = torch.nn.functional.one_hot(peak, vocab).float()
    for name, tokens in _probs_samplers(probs, seeds, offsets).items():
        assert_same(tokens, peak, name)


def test_support_never_outside_kept_set() -> None:
    base = torch.cat([adversarial(40, seed=3), torch.randn(4, 40) * 3])
    reps = 60
    x = base.repeat(reps, 1)
    seeds = torch.arange(x.shape[0]) % 5 + 11
    offsets = torch.arange(x.shape[0])
    candidates = lambda f: f > NEG_INF  # noqa: E731 (NaN and -inf are never candidates)
    for params in CHAINS:
        out = ops.filter_and_sample(
            x, seed=seeds, offset=offsets, return_logprobs=True, **clamp_top_k(params, x.shape[1])
        )
        kept = candidates(hf_chain(x, **params))
        rows = torch.arange(x.shape[0])
        has = kept.any(-1)
        assert bool(kept[rows[has], out.tokens[has]].all()), f"{params}: token outside the kept set"
        assert bool((out.tokens[~has] == 0).all()), f"{params}: a row without candidates must give 0"
        assert bool((out.logprobs[~has] == NEG_INF).all())
        assert bool(torch.isfinite(out.logprobs[has & torch.isfinite(x).all(-1)]).all())
    probs = torch.softmax(base.nan_to_num(nan=NEG_INF, posinf=50.0), -1).nan_to_num(0.0).repeat(reps, 1)
    log_p = torch.log(probs)
    expected = {
        "sampling_from_probs": log_p,
        "top_k_sampling_from_probs": hf_chain(log_p, top_k=3),
        "top_p_sampling_from_probs": hf_chain(log_p, top_p=0.7),
        "min_p_sampling_from_probs": hf_chain(log_p, min_p=0.1),
        "top_k_top_p_sampling_from_probs": hf_chain(log_p, top_k=4, top_p=0.8),
    }
    for name, tokens in _probs_samplers(probs, seeds, offsets).items():
        kept = candidates(expected[name])
        has = kept.any(-1)
        rows = torch.arange(x.shape[0])
        assert bool(kept[rows[has], tokens[has]].all()), f"{name}: token outside the kept set"
        assert bool((tokens[~has] == 0).all()), name


def test_logprobs_are_log_softmax_of_filtered_row() -> None:
    x = torch.cat([torch.randn(5, 30) * 2, adversarial(30)])
    out = ops.filter_and_sample(x, top_k=6, temperature=0.8, seed=9, return_logprobs=True, return_filtered=True)
    clean = out.filtered.masked_fill(torch.isnan(out.filtered), NEG_INF)
    want = torch.log_softmax(clean, -1).gather(-1, out.tokens[:, None])[:, 0]
    want = torch.where((clean > NEG_INF).any(-1), want, NEG_INF)
    assert_same(out.logprobs, want)


def test_tokens_follow_the_randomness_contract() -> None:
    """Sparse noise in the reference == dense philox_uniform (the kernels' form) over candidates."""
    x = torch.cat([torch.randn(6, 77) * 2, adversarial(77, seed=4)])
    seeds = torch.arange(x.shape[0], dtype=torch.int64) * 1_000_003 - 2**62
    offsets = torch.arange(x.shape[0], dtype=torch.int64) * 3 + 2**40
    out = ops.filter_and_sample(
        x, temperature=0.9, top_k=20, top_p=0.9, seed=seeds, offset=offsets, return_filtered=True
    )
    noise = gumbel_from_uniform(philox_uniform(seeds, offsets, 77, stream=STREAM_SAMPLE, backend="torch"))
    scored = torch.where(out.filtered > NEG_INF, out.filtered + noise, NEG_INF)
    assert_same(out.tokens, scored.argmax(-1))


# Pearson chi-square critical values at significance 1e-6 for 1..15 degrees of freedom
# (scipy.stats.chi2.isf(1e-6, df), to 2 decimals): with a truly random source each check fails
# with probability 1e-6 (10 checks below: 1e-5 in all). The draws use fixed seeds, so the test
# is deterministic anyway.
# fmt: off
CHI2_CRIT = [23.93, 27.63, 30.66, 33.38, 35.89, 38.26, 40.52, 42.70, 44.81, 46.86, 48.87, 50.83, 52.75,
             54.64, 56.49]
# fmt: on
N_DRAWS = 20_000


def _check_distribution(tokens: torch.Tensor, filtered: torch.Tensor, name: str) -> None:
    probs = torch.softmax(filtered.double(), -1)
    counts = torch.bincount(tokens, minlength=probs.numel()).double()
    kept = probs > 0
    assert counts[~kept].sum() == 0, f"{name}: draws outside the kept set"
    n_kept = int(kept.sum())
    if n_kept == 1:
        return
    expected = N_DRAWS * probs[kept]
    assert float(expected.min()) >= 5, "chi-square needs >= 5 expected counts per cell"
    chi2 = float(((counts[kept] - expected) ** 2 / expected).sum())
    assert chi2 < CHI2_CRIT[n_kept - 2], f"{name}: chi2 {chi2:.1f} over {n_kept - 1} dof"
    # Total variation: E[TV] <= 0.5 * sqrt(K / N) (Cauchy-Schwarz on the binomial deviations),
    # and one draw moves TV by at most 1/N, so P(TV > E[TV] + 0.03) <= exp(-2 N 0.03^2) = 2e-16
    # (McDiarmid).
    tv = 0.5 * float((counts / N_DRAWS - probs).abs().sum())
    assert tv < 0.5 * math.sqrt(n_kept / N_DRAWS) + 0.03, f"{name}: total variation {tv:.4f}"


def test_distribution_matches_renormalised_reference() -> None:
    vocab = 16
    logits = torch.randn(vocab, generator=torch.Generator().manual_seed(42)) * 1.2
    i = torch.arange(N_DRAWS)
    seeds, offsets = 123 + i % 5, i // 5  # 5 seeds, the draw index as offset
    batch = logits.expand(N_DRAWS, vocab)
    logit_cases = {
        "plain": {},
        "top_p": {"top_p": 0.8},
        "min_p": {"min_p": 0.1},
        "chain": {"temperature": 1.5, "top_k": 8, "top_p": 0.9, "min_p": 0.05},
    }
    for name, params in logit_cases.items():
        tokens = ops.filter_and_sample(batch, seed=seeds, offset=offsets, **clamp_top_k(params, batch.shape[1])).tokens
        _check_distribution(tokens, hf_chain(logits[None], **params)[0], name)
    tokens = ops.top_k_top_p_sampling_from_logits(batch, 6, 0.85, temperature=0.8, seed=seeds, offset=offsets)
    _check_distribution(tokens, hf_chain(logits[None], temperature=0.8, top_k=6, top_p=0.85)[0], "tk_tp_logits")

    probs = torch.softmax(logits, -1)
    log_p = torch.log(probs)[None]
    probs_batch = probs.expand(N_DRAWS, vocab)
    expected = {
        "sampling_from_probs": log_p,
        "top_k_sampling_from_probs": hf_chain(log_p, top_k=3),
        "top_p_sampling_from_probs": hf_chain(log_p, top_p=0.7),
        "min_p_sampling_from_probs": hf_chain(log_p, min_p=0.1),
        "top_k_top_p_sampling_from_probs": hf_chain(log_p, top_k=4, top_p=0.8),
    }
    for name, tokens in _probs_samplers(probs_batch, seeds, offsets).items():
        _check_distribution(tokens, expected[name][0], name)


# --------------------------------------------------------------------------- determinism
def _all_samplers(x: torch.Tensor, seed, offset) -> dict[str, torch.Tensor]:  # noqa: ANN001
    p = torch.softmax(x.nan_to_num(nan=NEG_INF), -1).nan_to_num(0.0)
    return {**_logits_samplers(x, seed, offset), **_probs_samplers(p, seed, offset)}


def test_same_seed_same_tokens_and_batch_independence() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(13, 200, generator=g) * 2
    seeds = torch.randint(-(2**63), 2**63 - 1, (13,), generator=g)
    offsets = torch.randint(0, 10**6, (13,), generator=g)
    first = _all_samplers(x, seeds, offsets)
    again = _all_samplers(x.clone(), seeds.clone(), offsets.clone())
    perm = torch.randperm(13, generator=g)
    permuted = _all_samplers(x[perm], seeds[perm], offsets[perm])
    for name, tokens in first.items():
        assert_same(again[name], tokens, f"{name}: rerun")
        assert_same(permuted[name], tokens[perm], f"{name}: permuted batch")
        for row in (0, 7):
            alone = _all_samplers(x[row : row + 1], int(seeds[row]), int(offsets[row]))[name]
            assert_same(alone, tokens[row : row + 1], f"{name}: row {row} alone, scalar seed")


def test_offsets_and_seeds_give_different_streams() -> None:
    n, vocab = 128, 1000
    x = torch.zeros(n, vocab)  # flat: two independent streams agree with probability 1/1000
    seeds = torch.arange(n) * 31 + 5
    base = ops.sampling_from_logits(x, seed=seeds, offset=0)
    assert float((ops.sampling_from_logits(x, seed=seeds, offset=1) == base).float().mean()) < 0.05
    assert float((ops.sampling_from_logits(x, seed=seeds + 1, offset=0) == base).float().mean()) < 0.05
    assert len(set(base.tolist())) > 100, "tokens across seeds should spread over the vocabulary"
    assert_same(ops.sampling_from_logits(x, seed=2**64 - 1), ops.sampling_from_logits(x, seed=-1), "uint64 seed")


def test_generator_and_manual_seed_reproducibility() -> None:
    x = torch.randn(9, 300)
    gen_tokens = [
        ops.sampling_from_logits(x, generator=torch.Generator().manual_seed(1234), offset=3) for _ in range(2)
    ]
    assert_same(gen_tokens[0], gen_tokens[1], "generator")
    other = ops.sampling_from_logits(x, generator=torch.Generator().manual_seed(4321), offset=3)
    assert not torch.equal(other, gen_tokens[0])
    global_tokens = []
    for _ in range(2):
        torch.manual_seed(77)
        global_tokens.append(ops.top_k_sampling_from_probs(torch.softmax(x, -1), 20))
    assert_same(global_tokens[0], global_tokens[1], "torch.manual_seed")
    with pytest.raises(ValueError, match="generator"):
        ops.sampling_from_logits(x, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="generator"):
        ops.filter_and_sample(x, seed=torch.zeros(9, dtype=torch.int64), generator=torch.Generator())


# --------------------------------------------------------------------------- bad inputs
X = torch.randn(3, 10)
P = torch.softmax(X, -1)
BAD_CASES = [
    # (call, exception, match)
    (lambda: ops.apply_temperature(X.tolist(), 1.0), TypeError, "logits"),
    (lambda: ops.apply_temperature(X.long(), 1.0), TypeError, "logits"),
    (lambda: ops.apply_temperature(X[0], 1.0), ValueError, "logits"),
    (lambda: ops.apply_temperature(X[:, :0], 1.0), ValueError, "logits"),
    (lambda: ops.apply_temperature(X, 0.0), ValueError, "temperature.*do_sample=False"),
    (lambda: ops.apply_temperature(X, -1.0), ValueError, "temperature"),
    (lambda: ops.apply_temperature(X, math.nan), ValueError, "temperature"),
    (lambda: ops.apply_temperature(X, torch.tensor([1.0, 0.0, 1.0])), ValueError, "temperature"),
    (lambda: ops.apply_temperature(X, torch.ones(4)), ValueError, "temperature"),
    (lambda: ops.apply_temperature(X, torch.ones(3, device="meta")), ValueError, "temperature"),
    (lambda: ops.apply_temperature(X, "hot"), TypeError, "temperature"),
    (lambda: ops.top_k_mask_logits(X, -1), ValueError, "top_k"),
    (lambda: ops.top_k_mask_logits(X, 1.5), TypeError, "top_k"),
    (lambda: ops.top_k_mask_logits(X, torch.ones(3)), TypeError, "top_k"),
    (lambda: ops.top_k_mask_logits(X, torch.tensor([1, -2, 3])), ValueError, "top_k"),
    (lambda: ops.top_k_mask_logits(X, torch.ones(2, dtype=torch.int64)), ValueError, "top_k"),
    (lambda: ops.top_k_mask_logits(X, 2, min_tokens_to_keep=0), ValueError, "min_tokens_to_keep"),
    (lambda: ops.top_k_mask_logits(X, 2, min_tokens_to_keep=1.0), TypeError, "min_tokens_to_keep"),
    (lambda: ops.top_k_mask_logits(X, 2, filter_value="x"), TypeError, "filter_value"),
    (lambda: ops.top_k_mask_logits(X.to(torch.float64), 2), TypeError, "logits"),
    (lambda: ops.top_p_mask_logits(X, -0.1), ValueError, "top_p"),
    (lambda: ops.top_p_mask_logits(X, 1.1), ValueError, "top_p"),
    (lambda: ops.top_p_mask_logits(X, math.nan), ValueError, "top_p"),
    (lambda: ops.top_p_mask_logits(X, torch.tensor([0.5, 2.0, 0.5])), ValueError, "top_p"),
    (lambda: ops.top_p_mask_logits(X, 0.5, min_tokens_to_keep=-3), ValueError, "min_tokens_to_keep"),
    (lambda: ops.min_p_mask_logits(X, 1.5), ValueError, "min_p"),
    (lambda: ops.min_p_mask_logits(X, -0.5), ValueError, "min_p"),
    (lambda: ops.min_p_mask_logits(X, 0.1, filter_value=None), TypeError, "filter_value"),
    (lambda: ops.top_k_renorm_probs(P.long(), 2), TypeError, "probs"),
    (lambda: ops.top_k_renorm_probs(P, -2), ValueError, "top_k"),
    (lambda: ops.top_p_renorm_probs(P[0], 0.5), ValueError, "probs"),
    (lambda: ops.top_p_renorm_probs(P, 3), ValueError, "top_p"),
    (lambda: ops.greedy(X.int()), TypeError, "logits"),
    (lambda: ops.greedy(X[None]), ValueError, "logits"),
    (lambda: ops.filter_and_sample(X, temperature=0.0, seed=0), ValueError, "temperature"),
    (lambda: ops.filter_and_sample(X, top_k=-1, seed=0), ValueError, "top_k"),
    (lambda: ops.filter_and_sample(X, top_k=X.shape[1] + 1, seed=0), ValueError, "top_k"),
    (lambda: ops.top_k_mask_logits(X, X.shape[1] + 1), ValueError, "top_k"),
    (lambda: ops.top_k_renorm_probs(P, P.shape[1] + 1), ValueError, "top_k"),
    (lambda: ops.top_k_sampling_from_probs(P, torch.tensor([1, P.shape[1] + 1] + [1] * (P.shape[0] - 2)), seed=0),
     ValueError, "top_k"),
    (lambda: ops.filter_and_sample(X, top_p=1.5, seed=0), ValueError, "top_p"),
    (lambda: ops.filter_and_sample(X, min_p=-1, seed=0), ValueError, "min_p"),
    (lambda: ops.filter_and_sample(X, min_tokens_to_keep=0, seed=0), ValueError, "min_tokens_to_keep"),
    (lambda: ops.filter_and_sample(X, seed=1.5), TypeError, "seed"),
    (lambda: ops.filter_and_sample(X, seed=torch.zeros(3)), TypeError, "seed"),
    (lambda: ops.filter_and_sample(X, seed=torch.zeros(4, dtype=torch.int64)), ValueError, "seed"),
    (lambda: ops.filter_and_sample(X, seed=2**64), ValueError, "seed"),
    (
        lambda: ops.filter_and_sample(X, seed=0, offset=torch.zeros(2, dtype=torch.int64)),
        ValueError,
        "offset",
    ),
    (lambda: ops.filter_and_sample(X, seed=0, offset="0"), TypeError, "offset"),
    (lambda: ops.sampling_from_logits(X.long(), seed=0), TypeError, "logits"),
    (lambda: ops.top_k_top_p_sampling_from_logits(X, -1, 0.5, seed=0), ValueError, "top_k"),
    (
        lambda: ops.top_k_top_p_sampling_from_logits(X, 1, 0.5, temperature=-1, seed=0),
        ValueError,
        "temperature",
    ),
    (lambda: ops.sampling_from_probs(P.long(), seed=0), TypeError, "probs"),
    (lambda: ops.top_k_sampling_from_probs(P, -1, seed=0), ValueError, "top_k"),
    (lambda: ops.top_p_sampling_from_probs(P, 1.01, seed=0), ValueError, "top_p"),
    (lambda: ops.min_p_sampling_from_probs(P, 2.0, seed=0), ValueError, "min_p"),
    (lambda: ops.top_k_top_p_sampling_from_probs(P, 2, -0.1, seed=0), ValueError, "top_p"),
    (lambda: ops.top_k_top_p_sampling_from_probs(P, 2, 0.5, seed=0, offset=1.0), TypeError, "offset"),
    (lambda: ops.top_k_mask_logits(X, 2, backend="nope"), ValueError, "backend"),
]


@pytest.mark.parametrize("case", range(len(BAD_CASES)))
def test_bad_inputs_raise_naming_the_argument(case: int) -> None:
    fn, exc, match = BAD_CASES[case]
    with pytest.raises(exc, match=match):
        fn()


def test_ops_are_registered_with_a_torch_backend() -> None:
    names = {
        "apply_temperature",
        "top_k_mask_logits",
        "top_p_mask_logits",
        "min_p_mask_logits",
        "top_k_renorm_probs",
        "top_p_renorm_probs",
        "greedy",
        "filter_and_sample",
        "sampling_from_probs",
    }
    registered = ops.registered_ops()
    for name in names:
        assert "torch" in registered[name], name
        assert ops.resolve_name(name, torch.device("cpu"), "torch") == "torch"
    assert set(sampling.__all__) <= set(ops.__all__)


# --------------------------------------------------------------------------- torch.compile
# Each case gets logits and probs made eagerly: a softmax inside the compiled region would be
# inductor's, which rounds differently from eager.
COMPILE_CASES = {
    "apply_temperature": lambda x, p: ops.apply_temperature(x, 0.7),
    "top_k_mask_logits": lambda x, p: ops.top_k_mask_logits(x, 3),
    "top_p_mask_logits": lambda x, p: ops.top_p_mask_logits(x, 0.8),
    "min_p_mask_logits": lambda x, p: ops.min_p_mask_logits(x, 0.2),
    "top_k_renorm_probs": lambda x, p: ops.top_k_renorm_probs(p, 3),
    "top_p_renorm_probs": lambda x, p: ops.top_p_renorm_probs(p, 0.8),
    "greedy": lambda x, p: ops.greedy(x * 2),
    "filter_and_sample": lambda x, p: tuple(
        ops.filter_and_sample(
            x, temperature=0.8, top_k=5, top_p=0.9, seed=3, offset=4, return_logprobs=True, return_filtered=True
        )
    ),
    "sampling_from_probs": lambda x, p: ops.top_k_top_p_sampling_from_probs(p, 4, 0.9, seed=5),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMPILE_CASES))
def test_runs_under_torch_compile(name: str) -> None:
    fn = COMPILE_CASES[name]
    x = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    p = torch.softmax(x, -1)
    targets: list[str] = []

    def capture(gm: torch.fx.GraphModule, example_inputs: list) -> object:
        targets.extend(str(node.target) for node in gm.graph.nodes if node.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=capture, fullgraph=False)(x, p)
    recorded = {f"pydecode.{name}", f"pydecode.{name}.default"} & set(targets)
    assert recorded, f"dynamo did not record torch.ops.pydecode.{name}: {targets}"
    torch._dynamo.reset()
    eager = fn(x, p)
    compiled = torch.compile(fn, fullgraph=False)(x, p)
    eager = eager if isinstance(eager, tuple) else (eager,)
    compiled = compiled if isinstance(compiled, tuple) else (compiled,)
    assert len(compiled) == len(eager)
    for c, e in zip(compiled, eager):
        assert_same(c, e, name)


def _opcheck_cases() -> dict[str, tuple]:
    x = torch.randn(4, 20, generator=torch.Generator().manual_seed(1))
    p = torch.softmax(x, -1)
    f64 = lambda v: torch.full((4,), v, dtype=torch.float64)  # noqa: E731
    i64 = lambda v: torch.full((4,), v, dtype=torch.int64)  # noqa: E731
    return {
        "apply_temperature": (x, f64(1.0)),
        "top_k_mask_logits": (x, i64(3), NEG_INF, 1),
        "top_p_mask_logits": (x, f64(1.0), NEG_INF, 1),
        "min_p_mask_logits": (x, f64(0.2), NEG_INF, 2),
        "top_k_renorm_probs": (p, i64(3)),
        "top_p_renorm_probs": (p, f64(0.8)),
        "greedy": (x,),
        "filter_and_sample": (x, f64(0.8), i64(5), f64(0.9), f64(0.0), 1, i64(3), i64(0), True, True),
        "filter_and_sample_disabled": (x, f64(1.0), i64(0), f64(1.0), f64(0.0), 1, i64(3), i64(0), False, True),
        "sampling_from_probs": (p, i64(5), f64(0.9), f64(0.1), i64(3), i64(0)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(_opcheck_cases()))
def test_opcheck(case: str) -> None:
    """Schema (no aliasing, even with every row disabled), fake kernel and dynamic-shape AOT checks."""
    op = getattr(torch.ops.pydecode, case.removesuffix("_disabled"))
    torch.library.opcheck(op, _opcheck_cases()[case])
