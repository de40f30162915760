"""``python -m bench.profile_ops``: where one decode-step op call's time goes.

bench_ops times whole calls. This splits them, for the sampling and beam cases of
:mod:`pydecode.benchmarks.ops` (same inputs: ``randn * 3`` logits, per-row seed tensors, Python
numbers for temperature / top-k / top-p), on every pydecode backend that runs here:

* ``eager_us``: median wall time of one public-op call, synchronised (Python, validation,
  allocations, launch latency and the kernels);
* ``host_us``: median time until the call returns, the device idle before it and not waited for
  after (on CUDA the host's part: Python, validation, allocations and the launches' enqueueing);
* ``graph_us`` (CUDA): the call captured once in a CUDA graph, per replay, the median over rounds
  of back-to-back replays (what a decode loop that captures its step pays; issue 6's batch-1
  target is < 10 us);
* ``device_us`` (CUDA): the GPU time of the call's kernels, memsets and copies, summed
  (torch.profiler / CUPTI), and ``launches``: how many of them the call enqueues;
* ``host_ops``: the outermost ``aten::`` ops a call runs on the host (each costs a few us of
  Python and dispatch on a GPU, and a launch when it touches device memory);
* ``top_kernels``: the three longest device activities (name: us per call).

* ``x_read_floor``: the call's time over the one-pass read floor of the same bytes, measured the
  same way in the same run: a ``read floor`` row per shape times ``x.sum()`` over float32 buffers
  of the logits' bytes (two of them, rotated like the cases' two input sets). On CUDA the ratio is
  ``device_us`` over the floor's ``device_us`` (kernel time against kernel time: bench_ops' floor
  is an eager call, launch and synchronisation included, which flatters the kernels at small
  shapes); on CPU, where the call is the work, ``eager_us`` over the floor's. ``gbps``: the
  logits' bytes over that time (once read).

``eager_us`` well above ``device_us`` means the call is host-bound (the GPU idles between
launches); ``x_read_floor`` well above 1 means the kernels are.

    python -m bench.profile_ops --device cuda --csv bench/results/profile_ops_h200.csv
    python -m bench.profile_ops --device cpu --batch 1 8 --vocab 32000        # host_ops, eager_us
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from bench.common import append_rows, environment, print_table, time_call
from pydecode.benchmarks import ops as ops_bench

DEFAULT_CASES = ["temp_topk_topp_sample", "temp_topp_sample", "temp_minp_sample", "beam_topk"]
COLUMNS = ["case", "backend", "batch", "vocab", "eager_us", "host_us", "graph_us", "device_us", "x_read_floor", "gbps",
           "launches", "host_ops", "top_kernels"]
FLOOR_CASE = "read floor"


def short_name(name: str) -> str:
    """A kernel's name without its return type, namespaces and arguments."""
    name = name.replace("(anonymous namespace)::", "").split("(", 1)[0].strip().removeprefix("void ")
    head, _, template = name.partition("<")
    head = head.rsplit("::", 1)[-1]
    if not template:
        return head
    return f"{head}<{template}" if len(template) <= 24 else f"{head}<{template[:20]}...>"


def _outermost_aten(event: Any) -> bool:
    parent = event.cpu_parent
    return event.name.startswith("aten::") and (parent is None or not parent.name.startswith("aten::"))


def profile_calls(fn: Callable[[Any], Any], inputs: list, calls: int, device: torch.device) -> dict[str, Any]:
    """host_ops, and on CUDA device_us / launches / top_kernels, per call, over ``calls`` calls."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(calls):
            fn(inputs[i % len(inputs)])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.events()
    out: dict[str, Any] = {"host_ops": sum(_outermost_aten(e) for e in events) / calls}
    if device.type != "cuda":
        return out
    by_name: dict[str, float] = defaultdict(float)
    launches = 0
    for e in events:
        if e.device_type == DeviceType.CUDA:
            by_name[short_name(e.name)] += e.time_range.elapsed_us()
            launches += 1
    if launches == 0:  # CUPTI gave no device activity (not available, or another profiler holds it)
        return {**out, "note": "no device activity recorded"}
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:3]
    return {
        **out,
        "device_us": sum(by_name.values()) / calls,
        "launches": launches / calls,
        "top_kernels": "; ".join(f"{name}: {us / calls:.1f}" for name, us in top),
    }


def host_us(fn: Callable[[Any], Any], inputs: list, repeats: int, device: torch.device) -> float:
    """Median microseconds until a call of ``fn`` returns, the device synchronised before each call
    (so no queue of earlier work delays the launches) and not after it."""
    times = []
    for i in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn(inputs[i % len(inputs)])
        times.append((time.perf_counter() - start) * 1e6)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return statistics.median(times)


def graph_replay_us(fn: Callable[[Any], Any], x: Any, rounds: int = 7,
                    replays: int = 20) -> tuple[Optional[float], str]:
    """Per-replay microseconds of ``fn(x)`` captured in a CUDA graph (median over ``rounds`` of
    ``replays`` back-to-back replays), or (None, why) when the call cannot be captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up on a side stream, as torch.cuda.graphs asks
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            fn(x)
    except Exception as exc:  # noqa: BLE001 (reported in the table, not fatal to the run)
        torch.cuda.synchronize()
        return None, f"capture failed: {type(exc).__name__}: {str(exc)[:120]}"
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / replays)
    return statistics.median(times), ""


def timings(fn: Callable[[Any], Any], inputs: list, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """A row's measured columns for calls ``fn(inputs[i])``: eager_us, host_us, graph_us (CUDA),
    profile_calls' columns and a note."""
    out: dict[str, Any] = {"eager_us": time_call(fn, inputs, repeats=args.repeats, warmup=3)["median_us"],
                           "host_us": host_us(fn, inputs, args.repeats, device)}
    notes = []
    if device.type == "cuda":
        out["graph_us"], why = graph_replay_us(fn, inputs[0])
        notes.append(why)
    stats = profile_calls(fn, inputs, args.calls, device)
    notes.append(stats.pop("note", ""))
    out.update(stats)
    out["note"] = "; ".join(n for n in notes if n)
    return out


def read_floor(rows: int, vocab: int, dtype: torch.dtype, args: argparse.Namespace) -> dict[str, Any]:
    """The read floor row of a shape: ``x.sum()`` over two float32 buffers of the logits' bytes."""
    device = torch.device(args.device)
    nbytes = rows * vocab * dtype.itemsize
    buffers = [torch.rand(max(1, nbytes // 4), device=device) for _ in range(2)]
    fn = lambda x: x.sum()  # noqa: E731
    row: dict[str, Any] = {"case": FLOOR_CASE, "backend": "x.sum (float32)", "batch": rows, "vocab": vocab,
                           "dtype": str(dtype).removeprefix("torch."), "params": "x.sum() of the logits' bytes",
                           "bytes": nbytes}
    return {**row, **timings(fn, buffers, args, device)}


def floor_time(row: dict[str, Any], device: torch.device) -> Optional[float]:
    """The time x_read_floor divides: device_us on CUDA, eager_us on CPU (None: not measured)."""
    t = row.get("device_us") if device.type == "cuda" else row.get("eager_us")
    return t if isinstance(t, float) and t > 0 else None


def against_floor(row: dict[str, Any], floor: dict[str, Any], device: torch.device) -> None:
    """Adds x_read_floor and gbps to ``row``, from ``floor`` (the read floor row of its shape)."""
    t, f = floor_time(row, device), floor_time(floor, device)
    if t is not None:
        row["gbps"] = floor["bytes"] / t / 1e3
        if f is not None:
            row["x_read_floor"] = t / f


def measure(case: ops_bench.Case, backend: str, stage_ops: list[str], batch: int, vocab: int,
            args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    rows = ops_bench.rows_for(case, batch)
    inputs = ops_bench.make_inputs(case, rows, vocab, getattr(torch, args.dtype), device, 3.0, sets=2)
    fn = ops_bench.pydecode_fn(case, backend, stage_ops, vocab)
    row: dict[str, Any] = {"case": case.name, "backend": backend, "batch": rows, "vocab": vocab,
                           "dtype": args.dtype, "params": case.params}
    return {**row, **timings(fn, inputs, args, device)}


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256], help="rows (beam_topk: items x 4 beams)")
    parser.add_argument("--vocab", type=int, nargs="+", default=[128256])
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(ops_bench.CASES))
    parser.add_argument("--backends", nargs="+", default=None, help="default: every one that runs the case here")
    parser.add_argument("--repeats", type=int, default=30, help="timed eager calls")
    parser.add_argument("--calls", type=int, default=10, help="profiled calls")
    parser.add_argument("--csv", type=Path, default=None, help="append the rows to this CSV")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device (use --device cpu for host_ops and eager_us)")
    if min(args.batch + args.vocab) < 1 or args.repeats < 1 or args.calls < 1:
        raise SystemExit("--batch, --vocab, --repeats and --calls must be >= 1")
    env = environment()
    print(f"# {env['device']}, torch {env['torch']}, triton {env['triton']}, git {env['git_sha']}")
    rows: list[dict[str, Any]] = []
    floors: dict[tuple[int, int], dict[str, Any]] = {}
    dtype = getattr(torch, args.dtype)
    for case, backend, stage_ops in ops_bench.each_backend(args.cases, device, args.backends, "not profiled"):
        for vocab in args.vocab:
            for batch in args.batch:
                shape = (ops_bench.rows_for(case, batch), vocab)
                if shape not in floors:
                    floors[shape] = read_floor(*shape, dtype, args)
                    against_floor(floors[shape], floors[shape], device)
                    rows.append(floors[shape])
                rows.append(measure(case, backend, stage_ops, batch, vocab, args))
                against_floor(rows[-1], floors[shape], device)
    if len(rows) == len(floors):
        raise SystemExit("nothing to profile: no backend runs these cases here")
    print_table(rows, COLUMNS + ["note"])
    if args.csv:
        fields = ["case", "backend", "batch", "vocab", "dtype", "params", *COLUMNS[4:], "note"]
        append_rows(args.csv, [{**{k: row.get(k, "") for k in fields}, **env} for row in rows])
        print(f"appended {len(rows)} rows to {args.csv}")
    return rows


if __name__ == "__main__":
    main()
