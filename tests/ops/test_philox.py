"""Philox4x32-10: known-answer vectors and one stream on every backend."""

from __future__ import annotations

import pytest
import torch

from pydecode import _ext
from pydecode.ops import philox
from pydecode.ops._registry import backend_unavailable_reason
from tests.helpers import assert_same

# Random123's kat_vectors for philox4x32_10: (counter, key) -> output.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]

KERNEL_BACKENDS = [b for b in ("cpu", "triton") if not backend_unavailable_reason(b, torch.device("cpu"))]


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_known_answers(backend: str) -> None:
    if backend_unavailable_reason(backend, torch.device("cpu")):
        pytest.skip(backend_unavailable_reason(backend, torch.device("cpu")))
    counters = torch.tensor([c for c, _, _ in KAT], dtype=torch.int64)
    keys = torch.tensor([k for _, k, _ in KAT], dtype=torch.int64)
    out = philox.philox4x32_10(counters, keys, backend=backend)
    assert out.tolist() == [list(o) for _, _, o in KAT]


def test_triton_interpreter_matches_known_answer() -> None:
    """tl.philox is the same generator (the premise of the cross-backend contract)."""
    if backend_unavailable_reason("triton", torch.device("cpu")):
        pytest.skip(backend_unavailable_reason("triton", torch.device("cpu")))
    u = philox.philox_uniform(0, 0, 1, backend="triton")
    assert u.item() == ((0x6627E8D5 >> 9) + 0.5) / 2**23


@pytest.mark.parametrize("backend", KERNEL_BACKENDS)
@pytest.mark.parametrize("vocab", [1, 7, 1000, 4099])
def test_uniform_stream_is_the_same_on_every_backend(backend: str, vocab: int) -> None:
    seeds = torch.tensor([0, 1, 2**40 + 7, -5, 2**63 - 1], dtype=torch.int64)
    offsets = torch.tensor([0, 3, 2**33, -1, 17], dtype=torch.int64)
    for stream in (philox.STREAM_SAMPLE, philox.STREAM_SPECULATIVE, 2**32 - 1):
        expected = philox.philox_uniform(seeds, offsets, vocab, stream=stream, backend="torch")
        assert_same(philox.philox_uniform(seeds, offsets, vocab, stream=stream, backend=backend), expected)


def test_uniform_is_open_interval_and_uniform() -> None:
    u = philox.philox_uniform(123, 0, 200_000)
    assert u.dtype == torch.float32
    assert float(u.min()) > 0.0 and float(u.max()) < 1.0
    # 200k uniforms: mean within 5 sigma (sigma = sqrt(1/12/n) ~ 6.5e-4), so a false failure
    # needs a 5-sigma event.
    assert abs(float(u.double().mean()) - 0.5) < 5 * (1 / 12 / u.numel()) ** 0.5
    counts = torch.histc(u, bins=10, min=0, max=1)
    assert float((counts - 20_000).abs().max()) < 5 * (20_000 * 0.9) ** 0.5


def test_draws_depend_on_seed_offset_stream_and_token_only() -> None:
    base = philox.philox_uniform(torch.tensor([9, 9, 10]), torch.tensor([4, 5, 4]), 64)
    assert torch.equal(base[0], philox.philox_uniform(9, 4, 64)[0])  # row position is irrelevant
    assert not torch.equal(base[0], base[1])  # offset changes the stream
    assert not torch.equal(base[0], base[2])  # seed changes the stream
    assert not torch.equal(base[0], philox.philox_uniform(9, 4, 64, stream=1)[0])
    # Token v's draw does not depend on the vocab size it is drawn in.
    assert torch.equal(philox.philox_uniform(9, 4, 10)[0], base[0, :10])


def test_uint64_seed_aliases_int64_bits() -> None:
    assert torch.equal(philox.philox_uniform(2**64 - 1, 0, 8), philox.philox_uniform(-1, 0, 8))


def test_sparse_draws_match_dense() -> None:
    dense = philox.philox_uniform(torch.tensor([3, 4]), torch.tensor([1, 2]), 50)
    rows = torch.tensor([0, 1, 1])
    tokens = torch.tensor([7, 0, 49])
    sparse = philox.philox_uniform_at(torch.tensor([3, 4])[rows], torch.tensor([1, 2])[rows], tokens)
    assert_same(sparse, dense[rows, tokens])


def test_resolve_seed_generator_reproducible() -> None:
    g1 = torch.Generator().manual_seed(42)
    g2 = torch.Generator().manual_seed(42)
    s1, o1 = philox.resolve_seed(None, 3, 4, torch.device("cpu"), g1)
    s2, _ = philox.resolve_seed(None, 3, 4, torch.device("cpu"), g2)
    assert torch.equal(s1, s2) and s1.shape == (4,) and bool((s1 == s1[0]).all()) and o1.tolist() == [3] * 4
    with pytest.raises(ValueError, match="seed or generator"):
        philox.resolve_seed(1, 0, 4, torch.device("cpu"), g1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"seed": 1.5, "vocab": 4}, TypeError, "seed"),
        ({"seed": 2**64, "vocab": 4}, ValueError, "seed"),
        ({"seed": torch.tensor([1.0]), "vocab": 4}, TypeError, "seed"),
        ({"seed": torch.tensor([1, 2]), "offset": torch.tensor([1, 2, 3]), "vocab": 4}, ValueError, "offset"),
        ({"seed": 1, "vocab": -1}, ValueError, "vocab"),
        ({"seed": 1, "vocab": 4, "stream": -1}, ValueError, "stream"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        philox.philox_uniform(**kwargs)


def test_raw_generator_rejects_bad_words() -> None:
    with pytest.raises(ValueError, match="counters"):
        philox.philox4x32_10(torch.full((1, 4), -1), torch.zeros(1, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="keys"):
        philox.philox4x32_10(torch.zeros(2, 4, dtype=torch.int64), torch.zeros(1, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        philox.philox4x32_10(torch.zeros(1, 4, dtype=torch.int64), torch.zeros(1, 3, dtype=torch.int64))


@pytest.mark.skipif(_ext.cpu_module() is None, reason="CPU module not built")
def test_cpu_module_checks_sizes_in_cpp() -> None:
    """The C++ entry points re-check what Python checked: bad sizes are a ValueError, not a crash."""
    with pytest.raises(ValueError, match="rows must be >= 0"):
        _ext.cpu_module().philox_uniform(0, 0, 0, -1, 4, 0)
    with pytest.raises(ValueError, match="null pointer"):
        _ext.cpu_module().philox_uniform(0, 0, 0, 2, 4, 0)
    with pytest.raises(ValueError, match="null pointer"):
        _ext.cpu_module().philox4x32_10(0, 0, 0, 3)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_stream_matches_reference(backend: str) -> None:
    dev = torch.device("cuda")
    if backend_unavailable_reason(backend, dev):
        pytest.skip(backend_unavailable_reason(backend, dev))
    seeds = torch.tensor([0, 1, 2**40 + 7, -5], device=dev)
    offsets = torch.tensor([0, 3, 2**33, -1], device=dev)
    expected = philox.philox_uniform(seeds.cpu(), offsets.cpu(), 128256, backend="torch")
    assert_same(philox.philox_uniform(seeds, offsets, 128256, backend=backend).cpu(), expected)
