"""CPU checks of the cuda launchers of the penalties, ngram and watermark families: on a machine
with the CUDA module built but no GPU, each launcher's call reaches the kernel launch (which then
fails for lack of a driver) with the argument count, types and sizes the C++ side accepts; bad
sizes are refused before any launch. Skipped where a GPU is present (CPU pointers must not reach
a real launch there): tests/ops/test_*_cuda.py run the kernels on the GPU."""

from __future__ import annotations

import pytest
import torch

from pydecode.ops import _registry
from pydecode.ops import ngram as N
from pydecode.ops import penalties as P
from tests.ops import cuda_wiring

RAW = cuda_wiring.raw_cuda_module()


@pytest.fixture(autouse=True)
def _launch_on_cpu_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda_wiring.launch_on_cpu_tensors(monkeypatch, RAW)


def _impl(op: str):
    return _registry._IMPLS[op]["cuda"]


def _reaches_launch(op: str, *args) -> None:
    # "<kernel> launch: <CUDA's message>": the arguments passed every check on the way.
    with pytest.raises(RuntimeError, match=r"^\w+ launch: "):
        _impl(op)(*args)


B, V = 4, 50
LOGITS = torch.randn(B, 2 * V).to(torch.float16)[:, 1 : V + 1]  # strided, offset rows
IDS = torch.randint(0, V + 3, (B, 7))
ROW = torch.linspace(0.5, 2.0, B)


def test_penalty_launchers_reach_the_launch() -> None:
    out_ids = torch.randint(0, V, (B, 5), dtype=torch.int32)
    mask = torch.rand(B, 5) < 0.7
    ignore = torch.tensor([0, 2, 9, 1])
    _reaches_launch("apply_penalties", LOGITS, IDS, IDS, ROW, ROW, ROW, ignore, None)
    _reaches_launch("repetition_penalty", LOGITS, IDS, ROW, ignore)
    _reaches_launch("encoder_repetition_penalty", LOGITS, IDS[:2].int(), ROW)
    _reaches_launch("presence_frequency_penalty", LOGITS, out_ids, ROW, ROW, mask)
    long_ids = torch.randint(0, V, (B, 3000))  # a count table in the global workspace
    _reaches_launch("presence_frequency_penalty", LOGITS, long_ids, ROW, ROW, None)
    state = P.PenaltyState(IDS, V, out_of_vocab="ignore")  # IDS holds ids >= V
    for step in range(3):
        state.update(torch.full((B,), step), backend="torch")
    _reaches_launch("apply_penalties_state", LOGITS, state.tokens, state.in_rep, state.counts, state.lengths,
                    ROW, ROW, ROW)
    _reaches_launch("apply_penalties_state", LOGITS, state.tokens, state.in_rep, state.counts, state.lengths,
                    None, ROW, ROW)
    # Nothing to launch: the output comes back (empty) without touching the device.
    empty = _impl("apply_penalties")(LOGITS[:0], IDS[:0], IDS[:0], ROW[:0], ROW[:0], ROW[:0], None, None)
    assert empty.shape == (0, V) and empty.dtype == torch.float32


def test_ngram_and_watermark_launchers_reach_the_launch() -> None:
    _reaches_launch("no_repeat_ngram_mask", LOGITS, IDS, 3)
    _reaches_launch("encoder_no_repeat_ngram_mask", LOGITS, IDS, IDS[:1].int(), 2)
    table = N.SequenceBiasTable.from_sequence_bias({(1,): 1.0, (2, 3): -1.0, (4, 2, 3): 0.5})
    _reaches_launch("sequence_bias", LOGITS, IDS, table.single_ids, table.single_biases, table.prefixes,
                    table.last_tokens, table.biases)
    green = torch.tensor([[3, 1, -1], [2, 2, 2], [-1, -1, -1], [0, 49, 7]], dtype=torch.int32)
    _reaches_launch("watermark_scatter_bias", LOGITS, green, ROW)
    _reaches_launch("watermark_hash_bias", LOGITS, IDS[:, -2:], torch.full((B,), 2**30), ROW, 15485863)


def test_kernels_refuse_malformed_sizes_before_launching() -> None:
    out = torch.empty(2, 10)
    x = torch.zeros(2, 10)
    ids = torch.zeros(2, 4, dtype=torch.int64)
    p = x.data_ptr()
    with pytest.raises(ValueError, match="divides the batch"):
        RAW.apply_penalties(p, 0, 2, 10, 10, out.data_ptr(), ids.data_ptr(), True, 3, 4, 4, p, 0, 0, True, 0, 0, 0,
                            0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="workspace"):
        RAW.apply_penalties(p, 0, 2, 10, 10, out.data_ptr(), 0, True, 0, 0, 0, 0, 0, ids.data_ptr(), True, 5000,
                            4, 0, 0, p, p, 0, 0, 0)
    with pytest.raises(ValueError, match="capacity"):
        RAW.apply_penalties_state(p, 0, 2, 10, 10, out.data_ptr(), p, p, p, p, 8, 4, p, 0, 0, 0)
    with pytest.raises(ValueError, match="ngram_size"):
        RAW.no_repeat_ngram_mask(p, 0, 2, 10, 10, out.data_ptr(), ids.data_ptr(), True, 4, 4, 0, 0)
    with pytest.raises(ValueError, match="encoder_input_ids"):
        RAW.encoder_no_repeat_ngram_mask(p, 0, 2, 10, 10, out.data_ptr(), ids.data_ptr(), True, 4, 4,
                                         ids.data_ptr(), True, 3, 4, 4, 2, 0)
    with pytest.raises(ValueError, match="order"):
        RAW.sequence_bias(p, 0, 2, 10, 10, out.data_ptr(), ids.data_ptr(), True, 4, 4, 0, 0, 1, p, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="green_ids"):
        RAW.watermark_scatter_bias(p, 0, 2, 10, 10, 0, True, 3, 3, p, out.data_ptr(), 0)
    with pytest.raises(ValueError, match="threshold"):
        RAW.watermark_hash_bias(p, 0, 2, 10, 10, 0, 0, 0, p, 1, out.data_ptr(), 0)
    with pytest.raises(ValueError, match="dtype code"):
        RAW.watermark_hash_bias(p, 3, 2, 10, 10, 0, 0, 0, p, 1, out.data_ptr(), 0)
