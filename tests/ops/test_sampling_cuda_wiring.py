"""CPU checks of the cuda filter-chain launcher (pydecode/ops/sampling.py, csrc/cuda/sampling.cu)
on a machine with the CUDA module built but no GPU: the call reaches the kernel launch (which then
fails for lack of a driver) with the arguments the C++ side accepts, for one block per row and for
the split-vocabulary path, whose scratch size and split count are checked before any launch.
Skipped where a GPU is present: tests/ops/test_sampling_cuda.py runs the kernels there."""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import _cuda_launch
from pydecode.ops import sampling as S
from tests.ops import cuda_wiring

RAW = cuda_wiring.raw_cuda_module()
NEG_INF = float("-inf")


@pytest.fixture(autouse=True)
def _launch_on_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_wiring.launch_on_cpu_tensors(monkeypatch, RAW)


def _launch(x: torch.Tensor) -> None:
    """_chain's cuda call on CPU tensors: tokens, log-probs and filtered rows with every stage on."""
    b, v = x.shape
    keep = [x]  # the per-row arrays must outlive the call
    def row(value, dtype):  # noqa: ANN001, ANN202
        keep.append(torch.full((b,), value, dtype=dtype))
        return keep[-1].data_ptr()
    out = torch.empty(b, v)
    tok, lp = torch.empty(b, dtype=torch.int64), torch.empty(b)
    head = (x.data_ptr(), 0, b, v, v, 1, row(0.7, torch.float64), row(5, torch.int64), row(0.9, torch.float64),
            row(0.1, torch.float64), 1)
    tail = (row(3, torch.int64), row(0, torch.int64), tok.data_ptr(), lp.data_ptr(), out.data_ptr(), NEG_INF, 0)
    S._chain_cuda(x, head, tail)


X = torch.randn(3, 40000)


def test_one_block_per_row_reaches_the_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYDECODE_CUDA_CHAIN_SPLITS", raising=False)
    assert RAW.chain_splits(3, 40000) == 1  # no device: nothing to split over
    with pytest.raises(RuntimeError, match=r"^filter_chain launch: "):
        _launch(X)


def test_split_path_checks_before_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    # Forced splits allocate the scratch (else the scratch check would fire first); this machine
    # has no device to hold the blocks, which the launcher refuses rather than hang.
    monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", "3")
    with pytest.raises(ValueError, match="rows \\* splits = 9 blocks exceed the 0"):
        _launch(X)
    args = dict(logits=X.data_ptr(), dtype=0, rows=3, vocab=40000, row_stride=40000, transform=0, temperature=0,
                top_k=0, top_p=0, min_p=0, min_tokens_to_keep=1, seed=0, offset=0, tokens=0, logprobs=0,
                filtered=0, filter_value=NEG_INF, renorm=0, stream=0)
    small = torch.zeros(3 * RAW.CHAIN_SCRATCH_WORDS - 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="scratch must hold rows"):
        RAW.filter_chain(**args, splits=2, scratch=small.data_ptr(), scratch_len=small.numel())
    with pytest.raises(ValueError, match="splits must be in"):
        RAW.filter_chain(**args, splits=0, scratch=0, scratch_len=0)


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_forced_splits_must_be_positive(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PYDECODE_CUDA_CHAIN_SPLITS", value)
    with pytest.raises(ValueError, match="PYDECODE_CUDA_CHAIN_SPLITS must be a positive integer"):
        _launch(X)


@pytest.mark.parametrize("value", ["2", "off", "-1"])
def test_compact_switch_must_be_0_or_1(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PYDECODE_CUDA_CHAIN_COMPACT", value)
    with pytest.raises(ValueError, match="PYDECODE_CUDA_CHAIN_COMPACT must be 0 or 1"):
        _launch(X)


@pytest.mark.parametrize("value", ["0", "1"])
@pytest.mark.parametrize("switch", ["PYDECODE_CUDA_CHAIN_COMPACT", "PYDECODE_CUDA_KEY_BINS", "PYDECODE_CUDA_TOPK_SCAN",
                                    "PYDECODE_CUDA_WARP_FINISH"])
def test_compact_switches_reach_the_launch(monkeypatch: pytest.MonkeyPatch, switch: str, value: str) -> None:
    monkeypatch.delenv("PYDECODE_CUDA_CHAIN_SPLITS", raising=False)
    monkeypatch.setenv(switch, value)
    with pytest.raises(RuntimeError, match=r"^filter_chain launch: "):
        _launch(X)


@pytest.mark.parametrize("switch", ["PYDECODE_CUDA_KEY_BINS", "PYDECODE_CUDA_TOPK_SCAN", "PYDECODE_CUDA_WARP_FINISH"])
def test_list_switches_must_be_0_or_1(monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    monkeypatch.setenv(switch, "no")
    with pytest.raises(ValueError, match=f"{switch} must be 0 or 1"):
        _launch(X)


def test_top_k_scan_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYDECODE_CUDA_TOPK_SCAN", raising=False)
    assert _cuda_launch.top_k_scan()
    monkeypatch.setenv("PYDECODE_CUDA_TOPK_SCAN", "0")
    assert not _cuda_launch.top_k_scan()


def test_warp_finish_is_on_unless_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYDECODE_CUDA_WARP_FINISH", raising=False)
    assert _cuda_launch.warp_finish()
    monkeypatch.setenv("PYDECODE_CUDA_WARP_FINISH", "0")
    assert not _cuda_launch.warp_finish()
