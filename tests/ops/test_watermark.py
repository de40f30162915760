"""Watermark bias: transformers' lefthash/selfhash (bit-exact) and pydecode's hash scheme."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.generation.logits_process import WatermarkLogitsProcessor

from pydecode.ops.watermark import (
    HASH_SCHEME,
    hash_greenlist_mask,
    hf_greenlist_ids,
    watermark_bias_hash,
    watermark_bias_hf,
    watermark_scatter_bias,
)
from tests.helpers import assert_same

NEG_INF = float("-inf")
NAN = float("nan")


def assert_bits(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    """float32 equal bit for bit (NaN payload and sign of zero included)."""
    assert actual.dtype == torch.float32 and expected.dtype == torch.float32, what
    assert_same(actual.contiguous().view(torch.int32), expected.contiguous().view(torch.int32), what=what)


def hf_processor(vocab_size, ratio=0.25, bias=2.0, key=15485863, scheme="lefthash", width=1):
    return WatermarkLogitsProcessor(vocab_size, "cpu", ratio, bias, key, scheme, width)


def hf_apply(logits, input_ids, **kw) -> torch.Tensor:
    return hf_processor(**kw)(input_ids, logits.to(torch.float32).clone())


# --------------------------------------------------------------------------- transformers' scheme
HF_CONFIGS = [
    # (scheme, context_width, ratio, bias, key)
    ("lefthash", 1, 0.25, 2.0, 15485863),
    ("lefthash", 3, 0.5, 0.7, 12345),
    ("lefthash", 1, 0.1, -1.5, 2**62 + 11),
    ("selfhash", 1, 0.25, 2.0, 15485863),
    ("selfhash", 2, 0.25, 2.5, 15485863),
    ("selfhash", 4, 0.4, 1.0, 7),
    # products of the key and two table entries wrap around int64, as in transformers
    ("selfhash", 2, 0.25, 2.0, 2**62 + 11),
]


@pytest.mark.parametrize(("scheme", "width", "ratio", "bias", "key"), HF_CONFIGS)
def test_matches_hf_processor(scheme: str, width: int, ratio: float, bias: float, key: int) -> None:
    vocab, batch = 211, 5
    logits = torch.randn(batch, vocab) * 3
    input_ids = torch.randint(0, vocab, (batch, width + 2))
    input_ids[1] = input_ids[0]  # rows with the same context get the same greenlist
    expected = hf_apply(
        logits, input_ids, vocab_size=vocab, ratio=ratio, bias=bias, key=key, scheme=scheme, width=width
    )
    got = watermark_bias_hf(
        logits,
        input_ids,
        vocab_size=vocab,
        greenlist_ratio=ratio,
        bias=bias,
        hashing_key=key,
        seeding_scheme=scheme,
        context_width=width,
    )
    assert_bits(got, expected, f"{scheme} width={width}")
    assert bool((got != logits).any())


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_matches_hf_batch_one_and_minimal_context(scheme: str) -> None:
    for width in (1, 2, 3):
        logits = torch.randn(1, 64)
        input_ids = torch.randint(0, 64, (1, width))
        expected = hf_apply(logits, input_ids, vocab_size=64, scheme=scheme, width=width)
        got = watermark_bias_hf(logits, input_ids, vocab_size=64, seeding_scheme=scheme, context_width=width)
        assert_bits(got, expected, f"{scheme} width={width}")


def test_tiny_vocab_lefthash() -> None:
    for vocab, ratio in ((1, 0.5), (1, 0.99), (4, 0.5), (7, 0.75)):
        logits = torch.randn(3, vocab)
        input_ids = torch.randint(0, vocab, (3, 2))
        expected = hf_apply(logits, input_ids, vocab_size=vocab, ratio=ratio)
        got = watermark_bias_hf(logits, input_ids, vocab_size=vocab, greenlist_ratio=ratio)
        assert_bits(got, expected, f"V={vocab}")


def test_vocab_size_smaller_than_logits() -> None:
    """transformers permutes the tokenizer vocabulary; padded logit columns are never green."""
    logits = torch.randn(3, 120)
    input_ids = torch.randint(0, 100, (3, 4))
    for scheme in ("lefthash", "selfhash"):
        expected = hf_apply(logits, input_ids, vocab_size=100, scheme=scheme)
        got = watermark_bias_hf(logits, input_ids, vocab_size=100, seeding_scheme=scheme)
        assert_bits(got, expected, scheme)
        assert_bits(got[:, 100:], logits[:, 100:], "padding columns")


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_short_input_is_left_unchanged(scheme: str) -> None:
    logits = torch.randn(2, 50)
    input_ids = torch.randint(0, 50, (2, 2))
    expected = hf_apply(logits, input_ids, vocab_size=50, scheme=scheme, width=3)
    got = watermark_bias_hf(logits, input_ids, vocab_size=50, seeding_scheme=scheme, context_width=3)
    assert_bits(got, expected, "short")
    assert_bits(got, logits, "unchanged")
    assert got.data_ptr() != logits.data_ptr()


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_per_row_parameters_equal_hf_row_by_row(scheme: str) -> None:
    vocab = 150
    logits = torch.randn(4, vocab)
    input_ids = torch.randint(0, vocab, (4, 3))
    ratios = torch.tensor([0.1, 0.25, 0.29, 0.9], dtype=torch.float64)  # 0.29 * 100 rounds down in float64
    biases = torch.tensor([0.5, 2.0, -1.0, 3.25])
    got = watermark_bias_hf(
        logits,
        input_ids,
        vocab_size=vocab,
        greenlist_ratio=ratios,
        bias=biases,
        seeding_scheme=scheme,
        context_width=2,
    )
    for b in range(4):
        expected = hf_apply(
            logits[b : b + 1],
            input_ids[b : b + 1],
            vocab_size=vocab,
            ratio=float(ratios[b]),
            bias=float(biases[b]),
            scheme=scheme,
            width=2,
        )
        assert_bits(got[b : b + 1], expected, f"row {b}")
    scalar = watermark_bias_hf(
        logits, input_ids, vocab_size=vocab, greenlist_ratio=0.3, bias=1.5, seeding_scheme=scheme
    )
    tensors = watermark_bias_hf(
        logits,
        input_ids,
        vocab_size=vocab,
        greenlist_ratio=torch.full((4,), 0.3),
        bias=torch.full((4,), 1.5),
        seeding_scheme=scheme,
    )
    # A float32 ratio tensor holds float32(0.3): row b matches transformers run with that value.
    expected = hf_apply(
        logits, input_ids, vocab_size=vocab, ratio=float(torch.tensor(0.3)), bias=1.5, scheme=scheme
    )
    assert_bits(tensors, expected, "float32 ratio tensor")
    assert_bits(
        scalar, hf_apply(logits, input_ids, vocab_size=vocab, ratio=0.3, bias=1.5, scheme=scheme), "scalar"
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_half_inputs(dtype: torch.dtype, scheme: str) -> None:
    logits = (torch.randn(3, 90) * 2).to(
        dtype
    )  # ties after rounding: selfhash sorts them as transformers does
    input_ids = torch.randint(0, 90, (3, 2))
    expected = hf_apply(logits, input_ids, vocab_size=90, scheme=scheme)
    got = watermark_bias_hf(logits, input_ids, vocab_size=90, seeding_scheme=scheme)
    assert_bits(got, expected, str(dtype))


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_strided_and_int32_inputs(scheme: str) -> None:
    base = torch.randn(3, 160)
    logits = base[:, ::2]
    input_ids = torch.randint(0, 80, (3, 8))[:, ::2]
    expected = hf_apply(logits, input_ids, vocab_size=80, scheme=scheme, width=2)
    got = watermark_bias_hf(logits, input_ids, vocab_size=80, seeding_scheme=scheme, context_width=2)
    assert_bits(got, expected, "strided")
    got32 = watermark_bias_hf(
        logits, input_ids.to(torch.int32), vocab_size=80, seeding_scheme=scheme, context_width=2
    )
    assert_bits(got32, expected, "int32 ids")
    transposed = torch.randn(80, 3).t()
    assert_bits(
        watermark_bias_hf(transposed, input_ids, vocab_size=80, seeding_scheme=scheme),
        hf_apply(transposed, input_ids, vocab_size=80, scheme=scheme),
        "transposed",
    )


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_bad_rows_match_hf(scheme: str) -> None:
    logits = torch.randn(4, 60)
    logits[0, :30] = NEG_INF
    logits[1] = NEG_INF
    logits[2, 5] = NAN
    logits[3] = NAN
    logits[3, :10] = 1.0
    input_ids = torch.randint(0, 60, (4, 3))
    expected = hf_apply(logits, input_ids, vocab_size=60, scheme=scheme)
    got = watermark_bias_hf(logits, input_ids, vocab_size=60, seeding_scheme=scheme)
    assert_bits(got, expected, "bad rows")
    assert bool(torch.isneginf(got[1]).all())
    assert bool(torch.isnan(got[3, 10:]).all())


def test_selfhash_small_vocab_defined() -> None:
    """V < 40: transformers raises IndexError; pydecode tries every token."""
    vocab = 12
    logits = torch.randn(2, vocab)
    input_ids = torch.randint(0, vocab, (2, 3))
    with pytest.raises(IndexError):
        hf_apply(logits, input_ids, vocab_size=vocab, scheme="selfhash")
    got = watermark_bias_hf(logits, input_ids, vocab_size=vocab, seeding_scheme="selfhash", context_width=2)
    expected = logits.clone()
    for b in range(2):
        for v in range(vocab):
            context = torch.cat([input_ids[b], torch.tensor([v])])
            if (
                v
                in hf_greenlist_ids(
                    context, vocab_size=vocab, seeding_scheme="selfhash", context_width=2
                ).tolist()
            ):
                expected[b, v] += 2.0
    assert_bits(got, expected, "small vocab")


def test_selfhash_no_green_candidate_defined() -> None:
    """An empty greenlist (int(V * ratio) == 0): transformers raises IndexError; pydecode leaves the row."""
    logits = torch.randn(2, 100)
    input_ids = torch.randint(0, 100, (2, 2))
    with pytest.raises(IndexError):
        hf_apply(logits, input_ids, vocab_size=100, ratio=0.005, scheme="selfhash")
    got = watermark_bias_hf(
        logits, input_ids, vocab_size=100, greenlist_ratio=0.005, seeding_scheme="selfhash"
    )
    assert_bits(got, logits, "no green candidate")
    lefthash = watermark_bias_hf(logits, input_ids, vocab_size=100, greenlist_ratio=0.005)
    assert_bits(
        lefthash, hf_apply(logits, input_ids, vocab_size=100, ratio=0.005), "empty lefthash greenlist"
    )


@pytest.mark.parametrize(
    ("scheme", "width", "key"),
    [("lefthash", 1, 15485863), ("lefthash", 2, 99), ("selfhash", 1, 15485863), ("selfhash", 3, 2**62 + 11)],
)
def test_hf_greenlist_ids_match_processor(scheme: str, width: int, key: int) -> None:
    processor = hf_processor(500, 0.3, 2.0, key, scheme, width)
    for _ in range(5):
        context = torch.randint(0, 500, (int(torch.randint(1, 6, ())),))
        got = hf_greenlist_ids(
            context,
            vocab_size=500,
            greenlist_ratio=0.3,
            hashing_key=key,
            seeding_scheme=scheme,
            context_width=width,
        )
        assert got.dtype == torch.int64
        assert_same(got, processor._get_greenlist_ids(context), what=f"greenlist of {context.tolist()}")


def test_hf_greenlist_ids_bad_inputs() -> None:
    with pytest.raises(ValueError, match="input_ids_row"):
        hf_greenlist_ids(torch.zeros(0, dtype=torch.int64), vocab_size=10)
    with pytest.raises(ValueError, match="input_ids_row"):
        hf_greenlist_ids(torch.zeros(1, 2, dtype=torch.int64), vocab_size=10)
    with pytest.raises(TypeError, match="input_ids_row"):
        hf_greenlist_ids([1, 2], vocab_size=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="vocab_size"):
        hf_greenlist_ids(torch.ones(2, dtype=torch.int64), vocab_size=0)
    with pytest.raises(ValueError, match="greenlist_ratio"):
        hf_greenlist_ids(torch.ones(2, dtype=torch.int64), vocab_size=10, greenlist_ratio=1.0)
    with pytest.raises(ValueError, match="seeding_scheme"):
        hf_greenlist_ids(torch.ones(2, dtype=torch.int64), vocab_size=10, seeding_scheme=HASH_SCHEME)


def test_hf_bad_inputs() -> None:
    logits, ids = torch.randn(2, 50), torch.randint(0, 50, (2, 3))

    def run(**kw):
        args = {"logits": logits, "input_ids": ids, "vocab_size": 50, **kw}
        return watermark_bias_hf(args.pop("logits"), args.pop("input_ids"), **args)

    for name, value, exc in [
        ("seeding_scheme", "foo", ValueError),
        ("seeding_scheme", HASH_SCHEME, ValueError),
        ("greenlist_ratio", 0.0, ValueError),
        ("greenlist_ratio", 1.0, ValueError),
        ("greenlist_ratio", NAN, ValueError),
        ("greenlist_ratio", torch.tensor([0.5, 1.5]), ValueError),
        ("greenlist_ratio", torch.full((3,), 0.5), ValueError),
        ("greenlist_ratio", "0.5", TypeError),
        ("bias", float("inf"), ValueError),
        ("bias", NAN, ValueError),
        ("bias", torch.tensor([1.0, NEG_INF]), ValueError),
        ("vocab_size", 0, ValueError),
        ("vocab_size", 51, ValueError),
        ("vocab_size", 50.0, TypeError),
        ("context_width", 0, ValueError),
        ("hashing_key", -1, ValueError),
        ("hashing_key", 2**63, ValueError),
        ("hashing_key", 1.5, TypeError),
    ]:
        with pytest.raises(exc, match=name):
            run(**{name: value})
    for bad, exc in [
        (torch.zeros(3, 3, dtype=torch.int64), ValueError),
        (ids.float(), TypeError),
        (ids[0], ValueError),
    ]:
        with pytest.raises(exc, match="input_ids"):
            run(input_ids=bad)
    with pytest.raises(ValueError, match="input_ids"):
        run(input_ids=ids.to("meta"))
    with pytest.raises(ValueError, match="logits"):
        run(logits=torch.randn(50))
    with pytest.raises(TypeError, match="logits"):
        run(logits=torch.zeros(2, 50, dtype=torch.int64))


# --------------------------------------------------------------------------- scatter (the device half)
def test_scatter_bias() -> None:
    logits = torch.tensor([[-0.0, 1.0, NEG_INF, NAN, 2.0], [0.0, -0.0, 3.0, 4.0, 5.0]])
    green = torch.tensor([[2, 3, 4, -1], [4, 1, -1, -1]])
    got = watermark_scatter_bias(logits, green, torch.tensor([1.0, -2.0]))
    expected = torch.tensor([[-0.0, 1.0, NEG_INF, NAN, 3.0], [0.0, -2.0, 3.0, 4.0, 3.0]])
    assert_bits(got, expected, "scatter")
    assert got.data_ptr() != logits.data_ptr()
    assert_bits(watermark_scatter_bias(logits, green[:, :0]), logits, "no ids")
    half = watermark_scatter_bias(logits.to(torch.bfloat16), green.to(torch.int32), 1.0)
    assert_bits(half, watermark_scatter_bias(logits.to(torch.bfloat16).float(), green, 1.0), "bf16 / int32")
    with pytest.raises(ValueError, match="green_ids"):
        watermark_scatter_bias(logits, torch.tensor([[5], [0]]))
    with pytest.raises(ValueError, match="green_ids"):
        watermark_scatter_bias(logits, torch.tensor([[-2], [0]]))
    with pytest.raises(ValueError, match="green_ids"):
        watermark_scatter_bias(logits, torch.tensor([[1]]))
    with pytest.raises(TypeError, match="green_ids"):
        watermark_scatter_bias(logits, torch.tensor([[1.0], [0.0]]))
    with pytest.raises(ValueError, match="bias"):
        watermark_scatter_bias(logits, green, NAN)


# --------------------------------------------------------------------------- pydecode-hash scheme
M32 = 0xFFFFFFFF


def py_mix(x: int) -> int:
    """lowbias32 in plain Python (independent of the torch reference)."""
    x &= M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & M32
    x ^= x >> 16
    return x


def py_hash(key: int, prev: list[int], v: int) -> int:
    ctx = py_mix(py_mix(key & M32) ^ (key >> 32))
    for t in prev:
        ctx = py_mix(ctx ^ (t & M32))
    return py_mix(ctx ^ ((v * 0x9E3779B9) & M32))


def test_hash_known_answers() -> None:
    # Written down once from py_hash / py_mix (plain Python ints).
    assert py_mix(1) == 0x688990C0 and py_mix(0xDEADBEEF) == 0xE628C683
    assert py_hash(15485863, [42], 7) == 1087681233
    assert py_hash(2**40 + 5, [3, -1], 123456) == 2837380255
    ratio = 1087681233 / 2**32  # ~0.2532: token 7 is green exactly when ratio > this
    prev = torch.tensor([[42], [42]])
    mask = hash_greenlist_mask(
        prev, 8, greenlist_ratio=torch.tensor([ratio - 1e-9, ratio + 1e-9], dtype=torch.float64)
    )
    assert mask[:, 7].tolist() == [False, True]
    mask = hash_greenlist_mask(torch.tensor([[3, -1]]), 123457, greenlist_ratio=0.66, hashing_key=2**40 + 5)
    assert bool(mask[0, 123456]) == (2837380255 < math.floor(0.66 * 2**32))


def test_hash_mask_matches_plain_python() -> None:
    keys = [0, 15485863, 2**33 + 17, 2**63 - 1]
    prevs = [[0], [5, 2**31 - 1], [-7, 3, 2**40 + 3]]
    vocab = 300
    for key in keys:
        for prev in prevs:
            for ratio in (0.1, 0.5, 0.97):
                mask = hash_greenlist_mask(
                    torch.tensor([prev]), vocab, greenlist_ratio=ratio, hashing_key=key
                )
                threshold = math.floor(ratio * 2**32)
                expected = [py_hash(key, prev, v) < threshold for v in range(vocab)]
                assert mask[0].tolist() == expected, (key, prev, ratio)


def test_hash_green_fraction_binomial_bound() -> None:
    """Over V = 2**17 tokens the green count is Binomial(V, p): within 6 sigma of p * V."""
    vocab = 2**17
    prev = torch.randint(0, 50000, (6, 2))
    ratios = torch.tensor([0.25, 0.25, 0.1, 0.5, 0.9, 0.01], dtype=torch.float64)
    frac = hash_greenlist_mask(prev, vocab, greenlist_ratio=ratios).double().mean(dim=1)
    sigma = torch.sqrt(ratios * (1 - ratios) / vocab)
    assert bool(((frac - ratios).abs() < 6 * sigma).all()), (frac, ratios)


def test_hash_contexts_give_independent_greenlists() -> None:
    """Greenlists of different contexts overlap like independent sets: p**2 * V shared tokens.

    Contexts differ by one bit of a token, only in a token's high bits, by order, and by a key
    that differs only in its high 32 bits.
    """
    vocab, p = 2**16, 0.25
    pairs = [
        ([[100]], [[101]], 15485863, 15485863),
        ([[100]], [[100 + 2**20]], 15485863, 15485863),
        ([[1, 2]], [[2, 1]], 15485863, 15485863),
        ([[7]], [[7]], 5, 5 + 2**32),
    ]
    bound = 6 * math.sqrt(p * p * (1 - p * p) / vocab)
    for a, b, ka, kb in pairs:
        ga = hash_greenlist_mask(torch.tensor(a), vocab, greenlist_ratio=p, hashing_key=ka)
        gb = hash_greenlist_mask(torch.tensor(b), vocab, greenlist_ratio=p, hashing_key=kb)
        overlap = (ga & gb).double().mean().item()
        assert abs(overlap - p * p) < bound, (a, b, ka, kb, overlap)
    # Many contexts: the mean pairwise overlap is p**2 and each token is green for ~p of contexts.
    masks = hash_greenlist_mask(torch.arange(64)[:, None], 4096, greenlist_ratio=p).double()
    overlaps = (masks @ masks.t()) / 4096
    off = overlaps[~torch.eye(64, dtype=torch.bool)]
    assert abs(off.mean().item() - p * p) < 0.005
    per_token = masks.mean(dim=0)
    assert abs(per_token.mean().item() - p) < 0.01 and per_token.std().item() < 2 * math.sqrt(
        p * (1 - p) / 64
    )


def test_hash_bias_definition_and_determinism() -> None:
    vocab, width = 500, 3
    logits = torch.randn(7, vocab)
    logits[5, :10] = -0.0  # row 5 has a positive bias: -0.0 + 0.0 would give +0.0
    logits[1] = NEG_INF
    logits[2, 3] = NAN
    input_ids = torch.randint(0, vocab, (7, 6))
    bias = torch.linspace(-1, 3, 7)
    got = watermark_bias_hash(logits, input_ids, bias=bias, context_width=width)
    green = hash_greenlist_mask(input_ids[:, -width:], vocab)
    expected = torch.where(green, logits + bias[:, None], logits)
    assert_bits(got, expected, "definition")
    assert_bits(got, watermark_bias_hash(logits, input_ids, bias=bias, context_width=width), "determinism")
    # A row's result depends only on its own context, not on its batch position or neighbours.
    for b in (0, 4, 6):
        single = watermark_bias_hash(
            logits[b : b + 1], input_ids[b : b + 1], bias=float(bias[b]), context_width=width
        )
        assert_bits(single, got[b : b + 1], f"row {b} alone")
    flipped = watermark_bias_hash(logits.flip(0), input_ids.flip(0), bias=bias.flip(0), context_width=width)
    assert_bits(flipped, got.flip(0), "reordered batch")


def test_hash_context_window() -> None:
    logits = torch.zeros(1, 1000)
    ids = torch.tensor([[5, 6, 7, 8]])
    base = watermark_bias_hash(logits, ids, context_width=2)
    assert_bits(
        watermark_bias_hash(logits, torch.tensor([[9, 9, 7, 8]]), context_width=2), base, "older tokens"
    )
    assert not torch.equal(watermark_bias_hash(logits, torch.tensor([[5, 6, 8, 7]]), context_width=2), base)
    assert not torch.equal(watermark_bias_hash(logits, ids, context_width=3), base)
    assert not torch.equal(watermark_bias_hash(logits, ids, context_width=2, hashing_key=1), base)
    short = watermark_bias_hash(logits, ids, context_width=5)
    assert_bits(short, logits, "fewer tokens than context_width: unchanged")
    assert short.data_ptr() != logits.data_ptr()


def test_hash_dtypes_and_strides() -> None:
    logits = torch.randn(3, 2 * 257)[:, ::2]
    ids = torch.randint(0, 257, (3, 4))
    got = watermark_bias_hash(logits, ids, context_width=2, greenlist_ratio=0.4)
    assert_bits(
        got, watermark_bias_hash(logits.contiguous(), ids, context_width=2, greenlist_ratio=0.4), "strided"
    )
    assert_bits(
        watermark_bias_hash(logits, ids.to(torch.int32), context_width=2, greenlist_ratio=0.4),
        got,
        "int32 ids",
    )
    for dtype in (torch.float16, torch.bfloat16):
        half = logits.to(dtype)
        assert_bits(
            watermark_bias_hash(half, ids, context_width=2, greenlist_ratio=0.4),
            watermark_bias_hash(half.float(), ids, context_width=2, greenlist_ratio=0.4),
            str(dtype),
        )
    per_row = watermark_bias_hash(
        logits, ids, greenlist_ratio=torch.tensor([0.2, 0.4, 0.6]), bias=torch.tensor([1.0, 2.0, 3.0])
    )
    for b, (r, s) in enumerate([(0.2, 1.0), (0.4, 2.0), (0.6, 3.0)]):
        row = watermark_bias_hash(
            logits[b : b + 1], ids[b : b + 1], greenlist_ratio=float(torch.tensor(r)), bias=s
        )
        assert_bits(per_row[b : b + 1], row, f"per-row {b}")
    one = watermark_bias_hash(torch.randn(2, 1), torch.zeros(2, 1, dtype=torch.int64))
    assert one.shape == (2, 1)


def test_hash_device(device: torch.device) -> None:
    logits = torch.randn(3, 100)
    ids = torch.randint(0, 100, (3, 2))
    got = watermark_bias_hash(logits.to(device), ids.to(device), context_width=2)
    assert_bits(got.cpu(), watermark_bias_hash(logits, ids, context_width=2), f"{device}")


def test_hash_bad_inputs() -> None:
    logits, ids = torch.randn(2, 50), torch.randint(0, 50, (2, 3))
    for name, value, exc in [
        ("greenlist_ratio", 0.0, ValueError),
        ("greenlist_ratio", 1.0, ValueError),
        ("greenlist_ratio", torch.tensor([0.5, NAN]), ValueError),
        ("bias", float("-inf"), ValueError),
        ("bias", torch.ones(3), ValueError),
        ("context_width", 0, ValueError),
        ("context_width", True, TypeError),
        ("hashing_key", -5, ValueError),
        ("hashing_key", 2**64, ValueError),
    ]:
        with pytest.raises(exc, match=name):
            watermark_bias_hash(logits, ids, **{name: value})
    with pytest.raises(ValueError, match="input_ids"):
        watermark_bias_hash(logits, ids[:1])
    with pytest.raises(TypeError, match="input_ids"):
        watermark_bias_hash(logits, ids.float())
    with pytest.raises(TypeError, match="logits"):
        watermark_bias_hash(logits.double(), ids)
    with pytest.raises(TypeError, match="prev_tokens"):
        hash_greenlist_mask(ids.float(), 10)
    with pytest.raises(ValueError, match="prev_tokens"):
        hash_greenlist_mask(ids[0], 10)
    with pytest.raises(ValueError, match="vocab"):
        hash_greenlist_mask(ids, -1)
    with pytest.raises(ValueError, match="greenlist_ratio"):
        hash_greenlist_mask(ids, 10, greenlist_ratio=1.5)


# --------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_torch_compile() -> None:
    logits = torch.randn(3, 120)
    ids = torch.randint(0, 120, (3, 4))
    green = torch.tensor([[1, 5, -1], [0, -1, -1], [7, 8, 9]])

    def run(x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x * 1.0
        return (
            watermark_bias_hf(x, ids, vocab_size=120, seeding_scheme="lefthash", context_width=2),
            watermark_bias_hf(x, ids, vocab_size=120, seeding_scheme="selfhash", context_width=2),
            watermark_bias_hash(x, ids, context_width=2, bias=0.5),
            watermark_scatter_bias(x, green, 1.5),
        )

    compiled = torch.compile(run, fullgraph=False)
    for got, expected in zip(compiled(logits, ids), run(logits, ids)):
        assert_bits(got, expected, "compiled")


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_transformers_detector_finds_pydecode_watermark(scheme: str) -> None:
    """End to end: greedy decoding with pydecode's bias, then transformers' WatermarkDetector."""
    from transformers import GPT2Config, WatermarkDetector, WatermarkingConfig

    vocab, steps = 200, 40
    config = WatermarkingConfig(bias=6.0, seeding_scheme=scheme, context_width=2)
    gen = torch.Generator().manual_seed(3)
    marked = torch.randint(0, vocab, (2, 3), generator=gen)
    plain = marked.clone()
    for _ in range(steps):
        logits = torch.randn(2, vocab, generator=gen)
        biased = watermark_bias_hf(
            logits, marked, vocab_size=vocab, bias=6.0, seeding_scheme=scheme, context_width=2
        )
        marked = torch.cat([marked, biased.argmax(dim=1, keepdim=True)], dim=1)
        plain = torch.cat([plain, logits.argmax(dim=1, keepdim=True)], dim=1)
    detector = WatermarkDetector(GPT2Config(vocab_size=vocab, bos_token_id=vocab + 1), "cpu", config)
    assert detector(marked[:, 3:]).tolist() == [True, True]
    assert detector(plain[:, 3:]).tolist() == [False, False]


def test_scatter_bias_repeated_id_adds_one_at_a_time() -> None:
    """An id listed m times gets m float32 additions in a row, on every device's reference: with
    these values x + 4b (what index_put_(accumulate=True) computes on CUDA) is 1 ulp away."""
    from pydecode.ops.watermark import watermark_scatter_bias_torch

    x, b = 1.8249409198760986, -2.904761791229248
    logits = torch.tensor([[x, 0.0, -1.0]])
    ids = torch.tensor([[0, 0, 2, 0, 0, -1]])
    out = watermark_scatter_bias_torch(logits, ids, torch.tensor([b]))
    one_at_a_time = torch.tensor(x)
    for _ in range(4):
        one_at_a_time = one_at_a_time + torch.tensor(b)
    assert out[0, 0] == one_at_a_time and out[0, 0] != torch.tensor(x) + 4 * torch.tensor(b)
    assert out[0, 1] == 0.0 and out[0, 2] == torch.tensor(-1.0) + torch.tensor(b)
