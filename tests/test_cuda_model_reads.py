"""The CUDA sampling chain on the CPU model of the kernels (tests/cuda_emulation, built by
bench/cuda_row_reads.py): row reads of the compact and wide-nucleus paths, and their tokens against
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


@pytest.mark.parametrize("kind", ["randn x 1", "randn x 3", "rand"])
def test_chain_reads_and_tokens(model, kind: str) -> None:  # noqa: ANN001
    x = reads.rows_of(kind, 1, 30000, seed=3)
    # top-k 50 + top-p: stats, histogram, list; top-p alone: narrow nuclei 3, wide ones (randn x 1:
    # exact bin histograms first; rand: the bounds' bins fit) 4-5; the full-row path 10-11
    for top_k, most in ((50, 3), (None, 5)):
        want = None
        for splits in (1, 3):
            off = reads.chain_reads(model, x, top_k, 0.9, splits, compact=False)[0]
            on, barriers, _, _ = reads.chain_reads(model, x, top_k, 0.9, splits, compact=True)
            assert on <= most + 1e-9 < off, (kind, top_k, splits, on, off)
            assert (barriers > 0) == (splits > 1)
            # the same token and kept set as the full-row path, split or not
            for compact in (False, True):
                _, _, tokens, rows = reads.chain_reads(model, x, top_k, 0.9, splits, compact, filtered=True)
                want = (tokens, rows) if want is None else want
                assert torch.equal(tokens, want[0]) and torch.equal(rows, want[1]), (kind, top_k, splits, compact)
