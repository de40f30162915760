"""CPU checks of the cuda beam top-k launcher (pydecode/ops/beam.py, csrc/cuda/beam.cu) on a machine
with the CUDA module built but no GPU: the split count the module picks, the sizes the C++ side
checks before any launch, and the call reaching the kernel launch (which then fails for lack of a
driver) with one block per row and with split rows. Skipped where a GPU is present:
tests/ops/test_beam_cuda.py runs the kernels there."""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import beam as B
from tests.ops import cuda_wiring

RAW = cuda_wiring.raw_cuda_module()


@pytest.fixture(autouse=True)
def _launch_on_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_wiring.launch_on_cpu_tensors(monkeypatch, RAW)
    monkeypatch.delenv(B.BEAM_SPLITS_ENV, raising=False)


def test_split_count() -> None:
    # batch 1 x 4 beams of 128256: ~2 blocks per SM of an H100 would be 64 slices a row; slices of
    # >= 4096 entries allow 31
    assert RAW.beam_splits(4, 128256, 4, 8) == 31
    assert RAW.beam_splits(64, 128256, 4, 8) == 4
    assert RAW.beam_splits(128, 128256, 4, 8) == 1  # enough rows to fill the card
    assert RAW.beam_splits(4, 6000, 4, 8) == 1  # slices of >= 4096 entries
    assert RAW.beam_splits(4, 100, 4, 8, forced=3) == 3
    assert RAW.beam_splits(4, 128256, 4, 65) == 1  # a slice's list holds row_k and its ties
    assert RAW.beam_splits(4, 8, 4, 8, forced=3) == 1  # k >= vocab: every entry is a candidate
    assert RAW.beam_splits(16, 128256, 16, 32) == 4  # 16 beams x 32 x 4 slices: the item's merge has room
    assert RAW.beam_splits(4, 100, 4, 8, forced=500) == 64  # forced: bounded by the merge, then the vocabulary


def _args(x: torch.Tensor, k: int, keep: list) -> dict:  # noqa: ANN001
    rows, vocab = x.shape
    def buf(n: int, dtype: torch.dtype) -> int:
        keep.append(torch.zeros(n, dtype=dtype))
        return keep[-1].data_ptr()
    return dict(logits=x.data_ptr(), dtype=0, rows=rows, vocab=vocab, row_stride=vocab,
                beam_scores=buf(rows, torch.float32), num_beams=4, k=k, apply_log_softmax=True,
                candidates=buf(rows * k, torch.int64), row_stats=buf(2 * rows, torch.float32),
                scores=buf(rows // 4 * k, torch.float32), tokens=buf(rows // 4 * k, torch.int64),
                beams=buf(rows // 4 * k, torch.int64), stream=0)


def test_split_sizes_are_checked_before_the_launch() -> None:
    x, keep = torch.randn(8, 9000), []
    args = _args(x, 8, keep)
    small = torch.zeros(8 * 3 * RAW.BEAM_SLICE_WORDS - 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="split_scratch must hold rows \\* splits \\* 133"):
        RAW.beam_topk(**args, splits=3, split_scratch=small.data_ptr(), split_scratch_len=small.numel())
    with pytest.raises(ValueError, match="splits must be in \\[1, 65535\\]"):
        RAW.beam_topk(**args, splits=0)
    wide = _args(x, 65, keep)  # k beyond the slices' lists
    with pytest.raises(ValueError, match="splits > 1 needs min\\(k, vocab\\) < vocab and <= 64"):
        RAW.beam_topk(**wide, splits=2, split_scratch=small.data_ptr(), split_scratch_len=small.numel())
    enough = torch.zeros(8 * 3 * RAW.BEAM_SLICE_WORDS, dtype=torch.int64)
    with pytest.raises(RuntimeError, match=r"^beam_topk launch: "):
        RAW.beam_topk(**args, splits=3, split_scratch=enough.data_ptr(), split_scratch_len=enough.numel())


@pytest.mark.parametrize("forced", [None, "1", "3"])
def test_the_op_reaches_the_launch(monkeypatch: pytest.MonkeyPatch, forced: str | None) -> None:
    """The registered cuda launcher on CPU tensors: one block per row (batch 1 x 4 beams of 6000
    entries is too short to split) or forced slices, whose scratch it sizes."""
    if forced is not None:
        monkeypatch.setenv(B.BEAM_SPLITS_ENV, forced)
    sizes = []
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **kw: sizes.append(a) or real_empty(*a, **kw))
    with pytest.raises(RuntimeError, match=r"^beam_topk launch: "):
        B._beam_topk_cuda(torch.randn(4, 6000), torch.zeros(4), 4, 8, True)
    splits = int(forced or 1)
    assert (4 * splits * RAW.BEAM_SLICE_WORDS if splits > 1 else 0,) in sizes


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_forced_splits_must_be_positive(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(B.BEAM_SPLITS_ENV, value)
    with pytest.raises(ValueError, match="PYDECODE_CUDA_BEAM_SPLITS must be a positive integer"):
        B._beam_topk_cuda(torch.randn(4, 6000), torch.zeros(4), 4, 8, True)
