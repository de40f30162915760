"""The cuda backend of the watermark ops (csrc/cuda/watermark.cu) against the torch references on
the same CUDA tensors and the cpu backend, bit for bit. GPU only (`gpu` marker); tests named `big`
run the full shapes and are left out of the compute-sanitizer run."""

from __future__ import annotations

import pytest
import torch

from pydecode import _ext
from pydecode.ops.watermark import hash_greenlist_mask, watermark_bias_hash, watermark_bias_hf, watermark_scatter_bias
from tests.helpers import assert_same
from tests.ops.logit_cases import BIG_SHAPES, DTYPES, SMALL_SHAPES, assert_exact, make_logits

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _need_cuda_module() -> None:
    if not torch.cuda.is_available() or _ext.cuda_module() is None:
        pytest.skip(f"the CUDA module cannot run here: {_ext.cuda_unavailable_reason()}")


def _check_hash(batch: int, vocab: int, dtype: torch.dtype) -> None:
    logits = make_logits(batch, vocab, batch * 7 + vocab, dtype)
    g = torch.Generator().manual_seed(vocab)
    input_ids = torch.randint(-5, 2**40, (batch, 4), generator=g).cuda()  # any int64: hashed by their low word
    ratios = (torch.rand(batch, generator=g, dtype=torch.float64) * 0.98 + 0.01).cuda()
    biases = (torch.randn(batch, generator=g) * 3).cuda()
    for kw in (
        dict(greenlist_ratio=0.25, bias=2.0, hashing_key=15485863, context_width=1),
        dict(greenlist_ratio=ratios, bias=biases, hashing_key=2**63 - 1, context_width=3),
    ):
        got = watermark_bias_hash(logits, input_ids, backend="cuda", **kw)
        assert_exact(got, watermark_bias_hash(logits, input_ids, backend="torch", **kw), f"{dtype} hash")
        cpu_kw = {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in kw.items()}
        cpu = watermark_bias_hash(logits.cpu(), input_ids.cpu(), backend="cpu", **cpu_kw)
        assert_exact(got, cpu.cuda(), f"{dtype} hash, cuda vs cpu")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_hash_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_hash(*shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIG_SHAPES)
def test_big_hash_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_hash(*shape, dtype)


def test_hash_greenlists_and_strided_views() -> None:
    vocab = 50021
    logits = torch.zeros(6, vocab, device="cuda")
    input_ids = torch.randint(0, vocab, (6, 5), device="cuda")
    ratios = torch.tensor([1e-3, 0.1, 0.25, 0.5, 0.9, 0.999], dtype=torch.float64, device="cuda")
    for width in (1, 2, 5):
        got = watermark_bias_hash(logits, input_ids, greenlist_ratio=ratios, bias=1.0, context_width=width,
                                  hashing_key=42, backend="cuda")
        mask = hash_greenlist_mask(input_ids[:, 5 - width:], vocab, greenlist_ratio=ratios, hashing_key=42)
        assert_same(got == 1.0, mask, what=f"greenlist width={width}")
    base = make_logits(8, 2 * 20001, 1, torch.float16)
    ids = torch.randint(0, 20001, (8, 6), device="cuda").t().contiguous().t()
    for view in (base[:, ::2], base[::2, 3:20004], base[:, 1:20002], base[0:1, :20001].expand(8, 20001)):
        got = watermark_bias_hash(view, ids[: view.shape[0]], context_width=2, backend="cuda")
        want = watermark_bias_hash(view, ids[: view.shape[0]], context_width=2, backend="torch")
        assert_exact(got, want, f"strides {view.stride()}")


def test_hash_extreme_thresholds() -> None:
    logits = make_logits(4, 3001, 2)
    prev = torch.zeros(4, 1, dtype=torch.int64, device="cuda")
    bias = torch.full((4,), 1.5, device="cuda")
    out = torch.empty(4, 3001, device="cuda")
    mod = _ext.cuda_module()
    stream = torch.cuda.current_stream().cuda_stream
    for thresholds, green in (([0, -5, -(2**40), 0], False), ([2**32, 2**32 + 1, 2**40, 2**62], True)):
        thr = torch.tensor(thresholds, dtype=torch.int64, device="cuda")
        mod.watermark_hash_bias(logits.data_ptr(), 0, 4, 3001, 3001, prev.data_ptr(), 1, thr.data_ptr(),
                                bias.data_ptr(), 7, out.data_ptr(), stream)
        assert_exact(out, logits + 1.5 if green else logits, f"green={green}")


def _green_ids(batch: int, vocab: int, width: int, seed: int) -> torch.Tensor:
    """Per row: distinct ids then -1 padding; row 1 repeats one id 4 times (a scatter-add)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((batch, width), -1, dtype=torch.int64)
    for b in range(batch):
        n = int(torch.randint(0, min(width, vocab) + 1, (1,), generator=g))
        ids[b, :n] = torch.randperm(vocab, generator=g)[:n]
    if batch > 1 and width >= 4:
        ids[1, :4] = ids[1, 0].clamp(min=0)
    return ids.cuda()


def _check_scatter(batch: int, vocab: int, dtype: torch.dtype) -> None:
    logits = make_logits(batch, vocab, batch + vocab, dtype)
    ids = _green_ids(batch, vocab, max(4, vocab // 4), vocab)
    biases = torch.randn(batch, device="cuda") * 2
    for id_dtype in (torch.int64, torch.int32):
        for bias in (2.0, biases):
            got = watermark_scatter_bias(logits, ids.to(id_dtype), bias, backend="cuda")
            want = watermark_scatter_bias(logits, ids.to(id_dtype), bias, backend="torch")
            assert_exact(got, want, f"{dtype} scatter, ids {id_dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SMALL_SHAPES)
def test_scatter_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_scatter(*shape, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", BIG_SHAPES)
def test_big_scatter_bias_equals_reference(shape: tuple[int, int], dtype: torch.dtype) -> None:
    _check_scatter(*shape, dtype)


def test_scatter_bias_subnormals_strided_and_empty() -> None:
    # Subnormal sums: a float atomicAdd would flush them to zero; the reference keeps them.
    logits = torch.full((3, 64), 1e-40, device="cuda")
    ids = torch.tensor([[0, 1, 1, -1], [5, 5, 5, 5], [-1, -1, -1, -1]], device="cuda")
    got = watermark_scatter_bias(logits, ids, 1e-40, backend="cuda")
    assert_exact(got, watermark_scatter_bias(logits, ids, 1e-40, backend="torch"), "subnormal")
    assert got[1, 5].item() > 4e-40
    base = make_logits(6, 4000, 3)[:, ::2]
    ids = _green_ids(6, 2000, 300, 3)
    for green in (ids.t().contiguous().t(), ids[:, ::3], torch.empty(6, 0, dtype=torch.int64, device="cuda")):
        got = watermark_scatter_bias(base, green, 0.75, backend="cuda")
        assert_exact(got, watermark_scatter_bias(base, green, 0.75, backend="torch"), f"ids {green.stride()}")


@pytest.mark.parametrize("scheme", ["lefthash", "selfhash"])
def test_hf_scheme_cuda_equals_cpu(scheme: str) -> None:
    # Distinct scores: selfhash ranks candidates with torch.sort, whose order of ties differs
    # between CPU and CUDA.
    logits = torch.randn(5, 3001, device="cuda") * 3
    input_ids = torch.randint(0, 3001, (5, 4), device="cuda")
    kw = dict(vocab_size=3001, seeding_scheme=scheme, context_width=2)
    got = watermark_bias_hf(logits, input_ids, backend="cuda", **kw)
    cpu = watermark_bias_hf(logits.cpu(), input_ids.cpu(), backend="cpu", **kw)
    assert_exact(got, cpu.cuda(), scheme)


def test_kernels_refuse_malformed_calls() -> None:
    mod = _ext.cuda_module()
    logits = make_logits(2, 10, 1)
    out = torch.empty_like(logits)
    stream = torch.cuda.current_stream().cuda_stream
    with pytest.raises(ValueError, match="threshold"):
        mod.watermark_hash_bias(logits.data_ptr(), 0, 2, 10, 10, 0, 0, 0, logits.data_ptr(), 1, out.data_ptr(),
                                stream)
    with pytest.raises(ValueError, match="rows"):
        mod.watermark_scatter_bias(logits.data_ptr(), 0, -2, 10, 10, 0, True, 0, 0, logits.data_ptr(),
                                   out.data_ptr(), stream)
    with pytest.raises(ValueError, match="green_ids"):
        mod.watermark_scatter_bias(logits.data_ptr(), 0, 2, 10, 10, 0, True, 3, 3, logits.data_ptr(),
                                   out.data_ptr(), stream)
