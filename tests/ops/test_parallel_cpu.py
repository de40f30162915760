"""The CPU kernels' threads: torch's OpenMP team when torch's libgomp is loaded (the default), or
pydecode's own pool (PYDECODE_PARALLEL=pool): the same results either way; and a forked child
still runs the kernels (libgomp's team does not survive fork(), so the child uses a pool)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys

import pytest
import torch

from pydecode import _ext, ops

if _ext.cpu_module() is None:
    pytest.skip("the cpu kernels are not built", allow_module_level=True)

SCRIPT = """
import torch
from pydecode import ops
x = torch.randn(64, 50000, generator=torch.Generator().manual_seed(3))
s = torch.zeros(16, 4)
top = ops.beam_topk(x, s, 4, 8, backend="cpu")
ref = ops.beam_topk(x, s, 4, 8, backend="torch")
assert torch.equal(top.token_ids, ref.token_ids) and torch.equal(top.beam_indices, ref.beam_indices)
row = x[:1].repeat(1, 3)  # 150000 entries: a batch-1 top-p row split across the threads
print(ops.filter_and_sample(row, temperature=0.7, top_p=0.9, seed=1, backend="cpu").tokens.tolist(),
      ops.filter_and_sample(x, temperature=0.7, top_k=40, top_p=0.9, seed=2, backend="cpu").tokens.tolist())
"""


def test_both_thread_backends_give_the_same_results() -> None:
    outputs = []
    for mode in ("omp", "pool"):
        env = dict(os.environ, PYDECODE_PARALLEL=mode, PYDECODE_NUM_THREADS="2")
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        outputs.append(out.stdout)
    assert outputs[0] == outputs[1]


def _child(queue: multiprocessing.Queue) -> None:
    x = torch.randn(32, 40000, generator=torch.Generator().manual_seed(4))
    queue.put(ops.beam_topk(x, torch.zeros(8, 4), 4, 8, backend="cpu").token_ids.sum().item())


def test_forked_child_runs_the_kernels() -> None:
    x = torch.randn(32, 40000, generator=torch.Generator().manual_seed(4))
    torch.mm(torch.randn(256, 256), torch.randn(256, 256))  # torch's OpenMP team exists before the fork
    want = ops.beam_topk(x, torch.zeros(8, 4), 4, 8, backend="cpu").token_ids.sum().item()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in a parallel kernel")
    assert child.exitcode == 0
    assert queue.get(timeout=5) == want
