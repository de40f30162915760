"""Logits-processing ops against transformers, llama.cpp and the one-pass floor (issue 3's comparisons).

For each case and ``(batch, vocab)`` shape, times every provider on the same rotated inputs:

* ``pydecode`` on every backend that can run here and implements every op of the case
  (``registered_ops()``; cpu and torch on CPU, cuda / triton / torch on a GPU). ``torch`` is
  pydecode's pure-torch reference, the oracle the kernels are tested against.
* ``transformers``: its processors as ``generate()`` runs them: ``LogitsProcessorList`` on
  ``logits.float()`` then ``softmax`` + ``torch.multinomial`` (``_sample``), or ``log_softmax``
  + running beam scores + view + ``topk`` + ``//`` / ``%`` (``_beam_search``). generate() also
  makes a defensive float32 *copy* of the logits each step; it is left out here (it would add
  about one copy floor to transformers' time and flatter the speed-ups).
* ``llama.cpp``: its CPU sampler chain through llama-cpp-python (:mod:`pydecode.benchmarks.llama_cpp_provider`),
  one chain per row, for the sampling cases, when ``llama_cpp`` is importable.
* ``floor``: the one-pass floor measured in the same run on buffers of the logits' bytes, with
  the same rotation. ``read`` is ``x.sum()`` over a float32 buffer: a reduction is the cheapest
  streaming read torch has (vectorised, split over all threads, nothing written), so the time
  to read the logits once is measured directly instead of being derived from a copy, whose
  byte count (read + write + write-allocate) is a matter of convention. ``copy`` is
  ``dst.copy_(src)`` of the same bytes: the floor of ops that return new ``(batch, vocab)``
  logits (they must read and write every entry). ``ratio_to_floor`` uses the case's floor
  (``floor_kind``): ``read`` for the cases that return tokens / top-k candidates (a, b, c),
  ``copy`` for the ones that return logits (d, e, f). ``ratio_to_copy_floor`` (printed as
  ``x copy``) is every row's time over the copy floor of the same run: issue 3's "within 3x of
  the one-pass read floor (bytes of logits / copy bandwidth)", the copy's bandwidth being the
  rate this machine streams the logits' bytes through the cores while writing as much.

Cases (issue 3):

* ``rep_temp_topk_topp_sample`` (a): repetition penalty 1.2 over 640 ids per row (512 prompt +
  128 generated), temperature 0.7, top-k 50, top-p 0.9, sample. pydecode: ``apply_penalties``
  (or ``repetition_penalty``) then ``filter_and_sample``.
* ``temp_topp_sample`` (b): temperature 0.7, top-p 0.9, sample (no top-k: the full-vocabulary
  sort case).
* ``temp_topk_topp_sample``: temperature 0.7, top-k 50, top-p 0.9, sample: (a) without the
  penalty, the chain issue 3 quotes llama.cpp's per-row time for.
* ``temp_minp_sample``: temperature 0.7, min-p 0.1, sample (no top-k or top-p: the min-p-only
  setting llama.cpp and vLLM users run; transformers' ``MinPLogitsWarper``).
* ``beam_topk`` (c): ``batch // 4`` items x 4 beams (``batch`` = rows, so 32 -> 8 x 4), k = 8.
* ``repetition_penalty`` (d), ``watermark_hash`` (e: pydecode's hash scheme; transformers'
  ``WatermarkLogitsProcessor`` lefthash, the same feature), ``watermark_hf`` (the HF-exact
  scheme, bit-identical to transformers), ``no_repeat_ngram`` (f: n = 3 over 1024 ids, the
  current bigram repeated 4 times earlier in the row, so 4 tokens are banned).

Inputs: logits ``randn * --logit-std`` (default 3: at temperature 0.7 the top-p 0.9 nucleus is
~340 tokens of 128256 and the top token has p ~ 0.2, a peaked LM-like row), cast to
``--dtype``; random ids. At least 4 input sets and 32 MiB of logits in total (8x the L2),
rotated call by call. Timing: warm-up excluded, median of repeats, the repeats scaled to
``--budget`` seconds per measurement (min 3, max ``--repeats``): transformers' 400 ms calls get
a handful. GB/s counts the logits' bytes read once (the ids are not counted).

    pydecode bench-ops --quick --csv bench/results/ops_cpu.csv     (or: python -m bench.bench_ops ...)
    pydecode bench-ops --cases rep_temp_topk_topp_sample temp_topp_sample \\
        --batch 1 8 32 --vocab 32000 128256 152064 --csv bench/results/ops_cpu.csv
    python -m bench.render_tables bench/results/ops_cpu.csv
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from pydecode import ops
from pydecode.benchmarks import flashinfer_provider, llama_cpp_provider
from pydecode.benchmarks.common import OtherLoad, append_csv, environment, time_budgeted, wait_for_idle

READ, COPY = "read", "copy"
HISTORY = 640  # 512 prompt + 128 generated ids per row
NGRAM_HISTORY = 1024
BEAMS = 4
TEMPERATURE, TOP_K, TOP_P, MIN_P, REP_PENALTY = 0.7, 50, 0.9, 0.1, 1.2
MIN_SETS, MAX_SETS, MIN_SET_BYTES = 4, 64, 32 << 20


@dataclass(frozen=True)
class Case:
    name: str
    stages: tuple[tuple[str, ...], ...]  # pydecode ops run in sequence; each: alternatives, preferred first
    floor_kind: str
    params: str
    history: int = 0
    sampling: bool = False


CASES = {
    c.name: c
    for c in (
        Case("rep_temp_topk_topp_sample", (("apply_penalties", "repetition_penalty"), ("filter_and_sample",)), READ,
             f"rep={REP_PENALTY} hist={HISTORY} T={TEMPERATURE} k={TOP_K} p={TOP_P}", HISTORY, True),
        Case("temp_topp_sample", (("filter_and_sample",),), READ, f"T={TEMPERATURE} p={TOP_P}", 1, True),
        Case("temp_topk_topp_sample", (("filter_and_sample",),), READ,
             f"T={TEMPERATURE} k={TOP_K} p={TOP_P}", 1, True),
        Case("temp_minp_sample", (("filter_and_sample",),), READ, f"T={TEMPERATURE} min_p={MIN_P}", 1, True),
        Case("beam_topk", (("beam_topk",),), READ, f"beams={BEAMS} k={2 * BEAMS} items=batch/{BEAMS}", 1),
        Case("repetition_penalty", (("repetition_penalty", "apply_penalties"),), COPY,
             f"rep={REP_PENALTY} hist={HISTORY}", HISTORY),
        Case("watermark_hash", (("watermark_hash_bias",),), COPY, "ratio=0.25 bias=2 ctx=1 (hf: lefthash)", HISTORY),
        Case("watermark_hf", (("watermark_scatter_bias",),), COPY, "lefthash ratio=0.25 bias=2 ctx=1", HISTORY),
        Case("no_repeat_ngram", (("no_repeat_ngram_mask",),), COPY, f"n=3 hist={NGRAM_HISTORY}", NGRAM_HISTORY),
    )
}
DEFAULT_CASES = list(CASES)
QUICK_CASES = ["rep_temp_topk_topp_sample", "temp_topp_sample", "temp_topk_topp_sample", "beam_topk"]


@dataclass
class InputSet:
    logits: torch.Tensor
    ids: torch.Tensor
    seed: torch.Tensor
    offset: torch.Tensor
    beam_scores: Optional[torch.Tensor] = None
    state: Any = None  # rep case: a PenaltyState of `ids` (generate builds it once per call)

    @property
    def device(self) -> torch.device:  # benchmarks.common.time_call synchronises this device
        return self.logits.device


@dataclass
class Provider:
    provider: str
    backend: str
    fn: Callable[[InputSet], Any]
    note: str = ""
    cleanup: list = field(default_factory=list)


# --------------------------------------------------------------------------- inputs
def rows_for(case: Case, batch: int) -> int:
    """Logits rows of a case at ``--batch`` ``batch`` (beam search: whole items of BEAMS rows)."""
    return max(1, batch // BEAMS) * BEAMS if case.name == "beam_topk" else batch


def num_sets(nbytes: int) -> int:
    return max(MIN_SETS, min(MAX_SETS, math.ceil(MIN_SET_BYTES / nbytes)))


def make_inputs(case: Case, rows: int, vocab: int, dtype: torch.dtype, device: torch.device,
                logit_std: float, sets: int) -> list[InputSet]:
    out = []
    for s in range(sets):
        g = torch.Generator().manual_seed(1000 * s + rows + vocab)
        logits = (torch.randn(rows, vocab, generator=g) * logit_std).to(dtype)
        ids = torch.randint(0, vocab, (rows, max(case.history, 1)), generator=g)
        if case.name == "no_repeat_ngram":
            # Repeat the current bigram 4 times earlier in the row: 4 tokens get banned.
            starts = torch.randperm(case.history - 8, generator=g)[:4]
            for p in starts.tolist():
                ids[:, p : p + 2] = ids[:, -2:]
        beam_scores = -10 * torch.rand(rows, generator=g) if case.name == "beam_topk" else None
        out.append(InputSet(
            logits=logits.to(device),
            ids=ids.to(device),
            seed=(torch.arange(rows, dtype=torch.int64) + 7919 * s).to(device),
            offset=torch.zeros(rows, dtype=torch.int64, device=device),
            beam_scores=None if beam_scores is None else beam_scores.to(device),
            state=ops.PenaltyState(ids.to(device), vocab) if case.name == "rep_temp_topk_topp_sample" else None,
        ))
    return out


# --------------------------------------------------------------------------- providers
def pydecode_backends(case: Case, device: torch.device, only: Optional[list[str]]) -> tuple[dict, list[str]]:
    """backend -> the op chosen for each stage; and why the other backends were left out."""
    registered = ops.registered_ops()
    chosen, skipped = {}, []
    for backend in ops.BACKENDS:
        if only and backend not in only:
            continue
        why = ops.backend_unavailable_reason(backend, device)
        if not why and backend == "triton" and device.type == "cpu":
            why = "the triton interpreter is not a benchmark"
        if why:
            skipped.append(f"{backend}: {why}")
            continue
        stage_ops = []
        for alternatives in case.stages:
            op = next((o for o in alternatives if backend in registered.get(o, ())), None)
            if op is None:
                skipped.append(f"{backend}: implements none of {'/'.join(alternatives)} yet")
                break
            stage_ops.append(op)
        else:
            chosen[backend] = stage_ops
    return chosen, skipped


def each_backend(names: list[str], device: torch.device, only: Optional[list[str]],
                 left_out: str) -> Iterator[tuple[Case, str, list[str]]]:
    """(case, backend, its stage ops) for each named case on each backend that runs it on ``device``
    (``only``: these backends); prints ``# NAME: LEFT_OUT: why`` for the others (profile_ops,
    ncu_calls)."""
    for name in names:
        case = CASES[name]
        chosen, skipped = pydecode_backends(case, device, only)
        for line in skipped:
            print(f"# {name}: {left_out}: {line}")
        for backend, stage_ops in chosen.items():
            yield case, backend, stage_ops


def pydecode_fn(case: Case, backend: str, stage_ops: list[str], vocab: int) -> Callable[[InputSet], Any]:
    b = backend
    if case.name == "rep_temp_topk_topp_sample":
        if b == "cpu":  # one pass: the penalties patched into the rows as the chain reads them
            return lambda x: ops.filter_and_sample_from_state(
                x.logits, x.state, repetition_penalty=REP_PENALTY, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                seed=x.seed, offset=x.offset, backend=b).tokens
        if stage_ops[0] == "apply_penalties":
            def penalise(x: InputSet) -> torch.Tensor:
                return ops.apply_penalties(x.logits, x.ids, None, repetition_penalty=REP_PENALTY, backend=b)
        else:
            def penalise(x: InputSet) -> torch.Tensor:
                return ops.repetition_penalty(x.logits, x.ids, REP_PENALTY, backend=b)

        def run(x: InputSet) -> torch.Tensor:
            return ops.filter_and_sample(penalise(x), temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                                         seed=x.seed, offset=x.offset, backend=b).tokens
        return run
    if case.name == "temp_topp_sample":
        return lambda x: ops.filter_and_sample(x.logits, temperature=TEMPERATURE, top_p=TOP_P,
                                               seed=x.seed, offset=x.offset, backend=b).tokens
    if case.name == "temp_topk_topp_sample":
        return lambda x: ops.filter_and_sample(x.logits, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                                               seed=x.seed, offset=x.offset, backend=b).tokens
    if case.name == "temp_minp_sample":
        return lambda x: ops.filter_and_sample(x.logits, temperature=TEMPERATURE, min_p=MIN_P,
                                               seed=x.seed, offset=x.offset, backend=b).tokens
    if case.name == "beam_topk":
        return lambda x: tuple(ops.beam_topk(x.logits, x.beam_scores, BEAMS, 2 * BEAMS, backend=b))
    if case.name == "repetition_penalty":
        if stage_ops[0] == "repetition_penalty":
            return lambda x: ops.repetition_penalty(x.logits, x.ids, REP_PENALTY, backend=b)
        return lambda x: ops.apply_penalties(x.logits, x.ids, None, repetition_penalty=REP_PENALTY, backend=b)
    if case.name == "watermark_hash":
        return lambda x: ops.watermark_bias_hash(x.logits, x.ids, backend=b)
    if case.name == "watermark_hf":
        return lambda x: ops.watermark_bias_hf(x.logits, x.ids, vocab_size=vocab, backend=b)
    if case.name == "no_repeat_ngram":
        return lambda x: ops.no_repeat_ngram_mask(x.logits, x.ids, 3, backend=b)
    raise KeyError(case.name)


def transformers_fn(case: Case, rows: int, vocab: int, device: torch.device) -> Callable[[InputSet], Any]:
    import transformers as tf  # heavy import, only when benchmarking
    from torch.nn import functional as F

    def sampler(processors: list) -> Callable[[InputSet], Any]:
        chain = tf.LogitsProcessorList(processors)

        def run(x: InputSet) -> torch.Tensor:
            scores = chain(x.ids, x.logits.float())
            probs = F.softmax(scores, dim=-1)
            return torch.multinomial(probs, num_samples=1).squeeze(1)
        return run

    def processor(proc: Callable) -> Callable[[InputSet], Any]:
        return lambda x: proc(x.ids, x.logits.float())

    if case.name == "rep_temp_topk_topp_sample":
        return sampler([tf.RepetitionPenaltyLogitsProcessor(REP_PENALTY), tf.TemperatureLogitsWarper(TEMPERATURE),
                        tf.TopKLogitsWarper(TOP_K), tf.TopPLogitsWarper(TOP_P)])
    if case.name == "temp_topp_sample":
        return sampler([tf.TemperatureLogitsWarper(TEMPERATURE), tf.TopPLogitsWarper(TOP_P)])
    if case.name == "temp_topk_topp_sample":
        return sampler([tf.TemperatureLogitsWarper(TEMPERATURE), tf.TopKLogitsWarper(TOP_K),
                        tf.TopPLogitsWarper(TOP_P)])
    if case.name == "temp_minp_sample":
        return sampler([tf.TemperatureLogitsWarper(TEMPERATURE), tf.MinPLogitsWarper(MIN_P)])
    if case.name == "beam_topk":
        items = rows // BEAMS

        def beam(x: InputSet) -> tuple[torch.Tensor, ...]:
            log_probs = F.log_softmax(x.logits.float(), dim=-1)
            log_probs = log_probs.reshape(items, BEAMS, vocab) + x.beam_scores.reshape(items, BEAMS)[:, :, None]
            log_probs = torch.reshape(log_probs, (items, -1))
            top_scores, top_indices = torch.topk(log_probs, k=2 * BEAMS)
            return top_scores, top_indices % vocab, top_indices // vocab
        return beam
    if case.name == "repetition_penalty":
        return processor(tf.RepetitionPenaltyLogitsProcessor(REP_PENALTY))
    if case.name in ("watermark_hash", "watermark_hf"):
        return processor(tf.WatermarkLogitsProcessor(vocab_size=vocab, device=device))
    if case.name == "no_repeat_ngram":
        return processor(tf.NoRepeatNGramLogitsProcessor(3))
    raise KeyError(case.name)


def llama_provider(case: Case, rows: int, vocab: int, inputs: list[InputSet], order: str) -> Provider:
    kwargs: dict[str, Any] = {"temperature": TEMPERATURE, "order": order}
    if case.name == "temp_minp_sample":
        kwargs["min_p"] = MIN_P
    else:
        kwargs["top_p"] = TOP_P
    if case.name in ("rep_temp_topk_topp_sample", "temp_topk_topp_sample"):
        kwargs["top_k"] = TOP_K
    if case.name == "rep_temp_topk_topp_sample":
        kwargs.update(repetition_penalty=REP_PENALTY, history=inputs[0].ids)
    chains = llama_cpp_provider.LlamaSamplerChains(rows, vocab, **kwargs)
    note = "" if order == "hf" else "llama.cpp order: nucleus before temperature"
    return Provider("llama.cpp", f"cpu-chain/{order}", lambda x: chains.sample(x.logits), note, [chains.close])


# --------------------------------------------------------------------------- checks
def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a.nan_to_num(), b.nan_to_num()))
    return a == b


# Beam scores: the kernels sum the log-softmax exactly (fixed point), torch in float32, so scores may
# differ in their last bits (~1e-6 relative at vocab 152064) while the selection is the same.
BEAM_SCORE_RTOL = 1e-5


def _agreement(case: Case, got: Any, reference: Any) -> tuple[bool, str]:
    """(whether a kernel backend's output matches the torch reference's, a note for the row). Token
    ids and indices must be equal; beam scores equal within BEAM_SCORE_RTOL, and then the note says
    by how much they differ."""
    if _same(got, reference):
        return True, ""
    if case.name == "beam_topk":
        (scores, ids, beams), (ref_scores, ref_ids, ref_beams) = got, reference
        if torch.equal(ids, ref_ids) and torch.equal(beams, ref_beams):
            diff = (scores.double() - ref_scores.double()).abs()
            finite = torch.isfinite(ref_scores)
            if torch.equal(torch.isfinite(scores), finite) and bool(
                    (diff[finite] <= BEAM_SCORE_RTOL * ref_scores.double().abs()[finite]).all()):
                largest = float(diff[finite].max()) if bool(finite.any()) else 0.0
                return True, f"ids identical to the torch reference, scores within {largest:.1e}"
    return False, "OUTPUT DIFFERS FROM TORCH REFERENCE"


# --------------------------------------------------------------------------- main loop
_floors: dict[tuple[str, int], dict[str, dict[str, float]]] = {}


def touch_pages(inputs: list) -> None:
    """Read one element per 4 KiB page of every input tensor, untimed.

    This VM runs DAMON-based reclaim (kdamond): buffers left untouched while the bench sleeps in
    wait_for_idle come back through page faults, which made the first pass over 32 MiB of
    inputs after a sleep 2-5x slower (batch-1 top-p: 2.4 ms against 0.46 ms without the sleep).
    The caches stay cold: only residency is restored."""
    for item in inputs:
        tensors = item if isinstance(item, tuple) else vars(item).values()
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel():
                flat = t.reshape(-1)
                flat[:: max(1, 4096 // t.element_size())].sum()


def timed(fn: Callable[[Any], Any], inputs: list, args: argparse.Namespace, label: str,
          max_repeats: int, warmup: int = 3) -> dict[str, Any]:
    """time_budgeted, on a quiet machine where possible: waits up to ``--wait-idle`` seconds for
    other processes to calm down, measures the CPU they take meanwhile and re-measures (up to
    ``--retries`` times) when it exceeds ``--busy-threshold``. When every attempt was disturbed,
    the fastest one is kept (load only ever adds time) and the row gets a note."""
    best: Optional[dict[str, Any]] = None
    for attempt in range(args.retries + 1):
        if args.wait_idle > 0:
            wait_for_idle(args.wait_idle, args.busy_threshold)
            touch_pages(inputs)
        with OtherLoad() as load:
            stats = time_budgeted(fn, inputs, budget_s=args.budget, max_repeats=max_repeats, warmup=warmup)
        busy = load.fraction
        stats["other_cpu"] = "" if busy is None else round(busy, 3)
        if busy is None or busy < args.busy_threshold:
            return stats
        if best is None or stats["median_us"] < best["median_us"]:
            best = stats
        print(f"  [{label}] other processes took {busy:.0%} of the CPU while timing"
              + (", measuring again" if attempt < args.retries else ": keeping the fastest attempt, with a note"),
              file=sys.stderr)
    assert best is not None
    best["note"] = f"other processes took {float(best['other_cpu']):.0%} CPU"
    return best


def floors(nbytes: int, sets: int, device: torch.device, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Median read (``x.sum()``) and copy (``dst.copy_(src)``) times over float32 buffers of ``nbytes``."""
    key = (str(device), nbytes)
    if key not in _floors:
        n = max(1, nbytes // 4)
        src = [torch.rand(n, device=device) for _ in range(sets)]
        dst = [torch.empty(n, device=device) for _ in range(sets)]
        read = timed(lambda x: x.sum(), src, args, f"floor read {nbytes} B", args.repeats * 4, warmup=5)
        copy = timed(lambda p: p[1].copy_(p[0]), list(zip(src, dst)), args, f"floor copy {nbytes} B",
                     args.repeats * 4, warmup=5)
        _floors[key] = {READ: read, COPY: copy}
    return _floors[key]


def measure(case: Case, batch: int, vocab: int, dtype: torch.dtype, device: torch.device,
            args: argparse.Namespace, skipped: set[str]) -> list[dict[str, Any]]:
    """The CSV rows of one case at one shape; adds why providers were left out to ``skipped``."""
    rows = rows_for(case, batch)
    nbytes = rows * vocab * dtype.itemsize
    sets = num_sets(nbytes)
    inputs = make_inputs(case, rows, vocab, dtype, device, args.logit_std, sets)
    params = f"{case.params} std={args.logit_std}"

    providers: list[Provider] = []
    chosen, not_run = pydecode_backends(case, device, args.backends)
    skipped.update(not_run)
    for backend, stage_ops in chosen.items():
        fused_state = case.name == "rep_temp_topk_topp_sample" and backend == "cpu"
        note = "filter_and_sample_from_state (state prebuilt)" if fused_state else "+".join(stage_ops)
        providers.append(Provider("pydecode", backend, pydecode_fn(case, backend, stage_ops, vocab),
                                  note=note if len(stage_ops) > 1 else ""))
    if not args.no_transformers:
        providers.append(Provider("transformers", "processors", transformers_fn(case, rows, vocab, device)))
    if case.sampling and device.type == "cuda" and not args.no_flashinfer:
        why = flashinfer_provider.unavailable_reason()
        fn = None if why else flashinfer_provider.sampler(case.name, TEMPERATURE, TOP_K, TOP_P, MIN_P)
        if why or fn is None:
            skipped.add(f"flashinfer: {why or 'no counterpart for this case'}")
        else:
            providers.append(Provider("flashinfer", "sampling", fn, "other random stream: time only"))
    if case.sampling and not args.no_llama:
        why = llama_cpp_provider.unavailable_reason()
        if not why and device.type != "cpu":
            why = "llama.cpp's sampler chain runs on CPU logits only"
        if why:
            skipped.add(f"llama.cpp: {why}")
        else:
            providers.append(llama_provider(case, rows, vocab, inputs, args.llama_order))

    # Every provider runs once before timing: one that raises (a kernel registered before its
    # C++ side is built, say) is left out with the reason; kernel backends must agree with the
    # torch reference, or their times mean nothing.
    first: dict[int, Any] = {}
    for p in list(providers):
        try:
            first[id(p)] = p.fn(inputs[0])
        except Exception as exc:  # report and go on: the other providers still get measured
            skipped.add(f"{p.provider}/{p.backend}: raised {type(exc).__name__}: {str(exc)[:160]}")
            providers.remove(p)
    reference = next((first[id(p)] for p in providers if p.provider == "pydecode" and p.backend == "torch"), None)
    for p in providers:
        if p.provider == "pydecode" and p.backend != "torch" and reference is not None:
            agrees, note = _agreement(case, first[id(p)], reference)
            if note:
                p.note = (p.note + "; " if p.note else "") + note
            if not agrees:
                print(f"  WARNING [{case.name} {rows}x{vocab}] pydecode/{p.backend} differs from the torch reference",
                      file=sys.stderr)

    fl = floors(nbytes, sets, device, args)
    floor_us = fl[case.floor_kind]["median_us"]
    results = [
        {"provider": "floor", "backend": "read (x.sum)", **fl[READ]},
        {"provider": "floor", "backend": "copy (dst.copy_)", **fl[COPY]},
    ]
    for p in providers:
        stats = timed(p.fn, inputs, args, f"{case.name} {rows}x{vocab} {p.provider}/{p.backend}", args.repeats)
        note = "; ".join(n for n in (p.note, stats.pop("note", "")) if n)
        results.append({"provider": p.provider, "backend": p.backend, "note": note, **stats})
        for close in p.cleanup:
            close()

    hf = next((r["median_us"] for r in results if r["provider"] == "transformers"), None)
    ref = next((r["median_us"] for r in results if r["provider"] == "pydecode" and r["backend"] == "torch"), None)
    threads = torch.get_num_threads()
    out = []
    for r in results:
        t = r["median_us"]
        out.append({
            "bench": "ops", "case": case.name, "batch": rows, "vocab": vocab, "dtype": str(dtype).replace("torch.", ""),
            **r,
            "us_per_row": t / rows,
            "gbps": nbytes / t / 1e3,
            "ratio_to_floor": t / floor_us,
            "ratio_to_copy_floor": t / fl[COPY]["median_us"],
            "floor_us": floor_us,
            "floor_kind": case.floor_kind,
            "speedup_vs_transformers": hf / t if hf else "",
            "speedup_vs_torch": ref / t if ref else "",
            "bytes": nbytes,
            "threads": threads,
            "params": params,
        })
    return out


def _ms(us: Any) -> str:
    if us == "" or us is None:
        return ""
    ms = float(us) / 1e3
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def _x(v: Any) -> str:
    if v == "" or v is None:
        return ""
    v = float(v)
    return f"{v:.2f}x" if v < 10 else f"{v:.0f}x"


def print_case_table(case: Case, rows: list[dict[str, Any]]) -> None:
    print(f"\n## {case.name}  ({rows[0]['params']}; floor = {case.floor_kind}; dtype {rows[0]['dtype']})")
    header = ["provider", "backend", "batch", "vocab", "median ms", "ms/row", "vs transformers", "vs torch ref",
              "GB/s", "x floor", "x copy", "repeats", "note"]
    table = [[
        r["provider"], r["backend"], str(r["batch"]), str(r["vocab"]), _ms(r["median_us"]), _ms(r["us_per_row"]),
        _x(r["speedup_vs_transformers"]), _x(r["speedup_vs_torch"]), f"{r['gbps']:.2f}", f"{r['ratio_to_floor']:.2f}",
        f"{r['ratio_to_copy_floor']:.2f}", str(r.get("repeats", "")), r.get("note", ""),
    ] for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for t in table:
        print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pydecode bench-ops`` and ``python -m bench.bench_ops``."""
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="rows (beam_topk: items x 4 beams)")
    parser.add_argument("--vocab", type=int, nargs="+", default=None)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--cases", nargs="+", default=None, choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=None, help="most timed repeats per measurement")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timed calls per measurement")
    parser.add_argument("--backends", nargs="+", default=None, choices=list(ops.BACKENDS),
                        help="pydecode backends to try (default: every one that can run the case)")
    parser.add_argument("--logit-std", type=float, default=3.0, help="logits are randn * this")
    parser.add_argument("--llama-order", default="hf", choices=list(llama_cpp_provider.ORDERS))
    parser.add_argument("--no-llama", action="store_true", help="leave llama.cpp out even when installed")
    parser.add_argument("--no-transformers", action="store_true")
    parser.add_argument("--no-flashinfer", action="store_true", help="leave FlashInfer out even when importable")
    parser.add_argument("--wait-idle", type=float, default=10.0,
                        help="seconds to wait, before each measurement, for other processes to go quiet (0: don't)")
    parser.add_argument("--busy-threshold", type=float, default=0.1,
                        help="share of the CPU other processes may take during a measurement before it is redone")
    parser.add_argument("--retries", type=int, default=2, help="re-measurements of a measurement taken under load")
    parser.add_argument("--csv", type=Path, default=None, help="append the rows to this CSV")
    parser.add_argument("--quick", action="store_true",
                        help="batch 32 x vocab 128256, the README's cases, small repeats (< 3 minutes)")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the benchmark ``args`` describe (parsed with :func:`add_arguments`); prints a table per
    case and returns the CSV rows. Bad option values raise ValueError."""
    if args.quick:
        args.batch = args.batch or [32]
        args.vocab = args.vocab or [128256]
        args.cases = args.cases or QUICK_CASES
        args.repeats = args.repeats or 30
        args.budget = args.budget or 1.5
    # On a GPU the grid: batch 1/8/64/256 (the CPU default stays smaller).
    args.batch = args.batch or ([1, 8, 64, 256] if args.device == "cuda" else [1, 8, 32])
    args.vocab = args.vocab or [32000, 128256, 152064]
    args.cases = args.cases or DEFAULT_CASES
    args.repeats = args.repeats or 50
    args.budget = args.budget or 2.0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    for name in ("batch", "vocab"):
        if min(getattr(args, name)) < 1:
            raise ValueError(f"--{name} values must be >= 1, got {getattr(args, name)}")
    if args.repeats < 1 or args.budget <= 0:
        raise ValueError(f"--repeats must be >= 1 and --budget > 0, got {args.repeats} and {args.budget}")
    for backend in args.backends or ():
        why = ops.backend_unavailable_reason(backend, device)
        if why:
            raise ValueError(f"--backends {backend}: not available on {device.type} here ({why})")
    dtype = getattr(torch, args.dtype)

    env = environment()
    llama_why = llama_cpp_provider.unavailable_reason()
    llama = "not measured (--no-llama)" if args.no_llama else (
        f"llama-cpp-python {llama_cpp_provider.version()}" if not llama_why else f"llama.cpp: {llama_why}")
    print(f"# {env['device']}, torch {env['torch']} ({torch.get_num_threads()} threads), "
          f"transformers {env['transformers']}, git {env['git_sha']}, "
          f"PYDECODE_NUM_THREADS={os.environ.get('PYDECODE_NUM_THREADS', 'unset')}")
    print(f"# {llama}")
    load = os.getloadavg()[0]
    print(f"# load average at start {load:.2f} on {os.cpu_count()} cores"
          + (" (other processes are running: timings will be noisy)" if load > 0.5 else ""))
    all_rows = []
    for name in args.cases:
        case = CASES[name]
        case_rows: list[dict[str, Any]] = []
        skipped: set[str] = set()
        for batch in args.batch:
            for vocab in args.vocab:
                shape_rows = measure(case, batch, vocab, dtype, device, args, skipped)
                if args.csv:  # per shape: a run cut by a time limit keeps every shape it measured
                    append_csv(args.csv, shape_rows)
                case_rows += shape_rows
        print_case_table(case, case_rows)
        for line in sorted(skipped):
            print(f"  (not measured: {line})")
        all_rows += case_rows
    if args.csv:
        print(f"\nappended {len(all_rows)} rows to {args.csv}")
    return all_rows


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_ops", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog="\n".join(__doc__.splitlines()[1:]))
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        run(args)
    except ValueError as exc:
        parser.error(str(exc))


if __name__ == "__main__":
    main()
