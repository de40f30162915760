"""End-to-end generate: ``pydecode.generate`` and transformers' ``model.generate`` side by side.

Shared by ``pydecode bench`` and ``bench/bench_generate.py``. Both implementations run on the
same model, inputs and generation arguments, interleaved (transformers, pydecode, transformers,
...) so that load from other processes hits both alike; one warm-up call of each is excluded
from the timing and gives the outputs that are compared: greedy and beam search must produce
identical ids (the parity the tests check), sampling draws from pydecode's Philox stream, not
transformers' ``torch.multinomial``, so its ids are not compared.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .common import OtherLoad
from .memory import PeakMemory

# The strategies of `pydecode bench`: generation arguments on top of the lengths.
STRATEGIES: dict[str, dict[str, Any]] = {
    "greedy": {"do_sample": False, "num_beams": 1},
    "sample": {"do_sample": True, "num_beams": 1, "top_k": 50, "top_p": 0.9, "temperature": 0.8,
               "repetition_penalty": 1.1},
    "beam": {"do_sample": False, "num_beams": 4},
}

# Prompt text for the benchmarks: English prose and Python (what the demo model was trained on);
# rows of a batch are different windows of its tokens, so they are not copies of one another.
PROMPT_TEXT = (
    "The standard library contains built-in modules that provide access to system functionality "
    "such as file I/O, as well as modules written in Python that provide standardized solutions for "
    "many problems that occur in everyday programming.\n\n"
    "def read_config(path):\n    \"\"\"Return the settings stored in the file at path.\"\"\"\n"
    "    with open(path, encoding='utf-8') as handle:\n        return json.load(handle)\n\n"
    "class Counter(dict):\n    def most_common(self, n=None):\n"
    "        return sorted(self.items(), key=lambda item: item[1], reverse=True)[:n]\n"
)


def prompt_ids(tokenizer: Any, vocab_size: int, batch: int, length: int, seed: int = 1) -> torch.Tensor:
    """``(batch, length)`` int64 prompt ids: windows of :data:`PROMPT_TEXT`'s tokens (random ids
    in ``[3, vocab_size)`` without a tokenizer)."""
    if tokenizer is None:
        return torch.randint(3, vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))
    tokens = tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"]
    stride = 7
    need = stride * (batch - 1) + length
    tokens = (tokens * (need // max(1, len(tokens)) + 1))[:need]
    return torch.tensor([tokens[i * stride : i * stride + length] for i in range(batch)], dtype=torch.int64)


@dataclass
class Comparison:
    """Timings (seconds) of the timed repeats, peak memory (bytes) and the output check."""

    pd_s: list[float] = field(default_factory=list)
    hf_s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # transformers time / pydecode time, per pair
    pd_peak: Optional[int] = None
    hf_peak: Optional[int] = None
    same: Optional[bool] = None  # None: not compared (sampling, or no transformers run)
    shape: tuple[int, ...] = ()
    other_cpu: Optional[float] = None

    @property
    def speedup(self) -> Optional[float]:
        return statistics.median(self.ratios) if self.ratios else None


def _max(a: Optional[int], b: Optional[int]) -> Optional[int]:
    return b if a is None else a if b is None else max(a, b)


def compare(
    model: Any,
    input_ids: torch.Tensor,
    gen_kwargs: dict[str, Any],
    repeats: int,
    *,
    against_transformers: bool = True,
    seed: int = 0,
    check: Optional[bool] = None,
    progress: Optional[Callable[[], None]] = None,
) -> Comparison:
    """Time ``pydecode.generate`` (and ``model.generate`` when ``against_transformers``) on
    ``input_ids`` with ``gen_kwargs``: one warm-up call each, then ``repeats`` interleaved timed
    calls, each under :class:`PeakMemory`. ``check``: compare the ids (default: when not sampling).
    ``progress`` is called after every generate call."""
    import pydecode

    mask = torch.ones_like(input_ids)
    sampling = bool(gen_kwargs.get("do_sample"))
    tick = progress or (lambda: None)

    def hf() -> torch.Tensor:
        torch.manual_seed(seed)
        with torch.no_grad():
            return model.generate(input_ids, attention_mask=mask, **gen_kwargs)

    def ours() -> torch.Tensor:
        return pydecode.generate(model, input_ids, attention_mask=mask, **({"seed": seed} if sampling else {}),
                                 **gen_kwargs)

    result = Comparison()
    b = ours()
    tick()
    result.shape = tuple(b.shape)
    if against_transformers:
        a = hf()
        tick()
        if a.shape != b.shape:
            raise RuntimeError(f"pydecode returned {tuple(b.shape)} ids, transformers {tuple(a.shape)}")
        if check if check is not None else not sampling:
            result.same = bool(torch.equal(a, b))
    device = input_ids.device
    with OtherLoad() as load:
        for _ in range(repeats):
            if against_transformers:
                start = time.perf_counter()
                with PeakMemory(device) as mem:  # its exit synchronises a CUDA device
                    hf()
                result.hf_s.append(time.perf_counter() - start)
                result.hf_peak = _max(result.hf_peak, mem.peak_bytes)
                tick()
            start = time.perf_counter()
            with PeakMemory(device) as mem:
                ours()
            result.pd_s.append(time.perf_counter() - start)
            result.pd_peak = _max(result.pd_peak, mem.peak_bytes)
            tick()
            if against_transformers:
                result.ratios.append(result.hf_s[-1] / result.pd_s[-1])
    result.other_cpu = load.fraction
    return result
