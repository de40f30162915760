"""The CUDA sampling chain on the CPU model of the kernels (tests/cuda_emulation, built by
bench/cuda_row_reads.py): row reads of the compact paths, and their tokens and kept sets against
the full-row path and the split rows. The full comparison (every output, bit for bit, many more
rows) is tests/cuda_emulation/check_model.py, outside the suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bench import cuda_row_reads as reads

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU model of the CUDA kernels needs g++")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return reads.build_model(reads.ROOT / "csrc", Path(tmp_path_factory.mktemp("cuda_model")))


# (logits, vocab) -> reads of (top-k 50 + top-p, one block), (the same, split), (top-p alone, either):
# top-k: statistics with the key-bin histogram, list (split rows: statistics, gap histogram, list);
# top-p alone: narrow nucleus 3 (statistics, gap histogram, list), wide ones 4 (the bounds' bins
# fit the list: statistics, histogram, list, sample) or 5 (randn x 1 at 128256: exact histograms of
# the bounds' bins first). The full-row path reads 9-11 times.
READS = {("randn x 1", 128256): (2, 3, 5), ("randn x 3", 30000): (2, 3, 3), ("rand", 30000): (2, 3, 4)}


@pytest.mark.parametrize(("kind", "vocab"), list(READS))
def test_chain_reads_and_outputs(model, kind: str, vocab: int) -> None:  # noqa: ANN001
    x = reads.rows_of(kind, 1, vocab, seed=3)
    top_k_one, top_k_split, top_p = READS[kind, vocab]
    for top_k, expected in ((50, {1: top_k_one, 3: top_k_split}), (None, {1: top_p, 3: top_p})):
        want = None
        for splits, count in expected.items():
            off = reads.chain_reads(model, x, top_k, 0.9, splits, compact=False)[0]
            on, barriers, _, _ = reads.chain_reads(model, x, top_k, 0.9, splits, compact=True)
            assert on == pytest.approx(count) and off >= 9, (kind, top_k, splits, on, off)
            assert (barriers > 0) == (splits > 1)
            # the same token and kept set as the full-row path, split or not
            for compact in (False, True):
                _, _, tokens, rows = reads.chain_reads(model, x, top_k, 0.9, splits, compact, filtered=True)
                want = (tokens, rows) if want is None else want
                assert torch.equal(tokens, want[0]) and torch.equal(rows, want[1]), (kind, top_k, splits, compact)
