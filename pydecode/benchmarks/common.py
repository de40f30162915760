"""Timing and CSV helpers shared by the benchmarks (``pydecode bench*`` and the bench/ scripts).

Timing: warm-up calls excluded, then the median of ``repeats`` timed calls, each on the next
of several input sets so caches do not flatter the result (DESIGN.md, Benchmarks). Every CSV
row carries the hardware, versions and git sha that produced it.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from pydecode import sysinfo

CSV_FIELDS = [
    "timestamp", "bench", "case", "provider", "backend", "batch", "vocab", "dtype",
    "median_us", "p10_us", "p90_us", "gbps", "ratio_to_floor", "device", "torch", "triton",
    "transformers", "git_sha",
    # Added with bench_ops (older CSVs are migrated to this header on their next append):
    "us_per_row", "speedup_vs_transformers", "speedup_vs_torch", "floor_us", "floor_kind", "bytes",
    "repeats", "threads", "other_cpu", "params", "note",
    # Issue 3's "within 3x of the one-pass floor": time / the copy floor of the same run.
    "ratio_to_copy_floor",
    # Added with `pydecode bench` (generate): throughput, peak memory growth, greedy/beam parity.
    "tokens_per_s", "peak_mem_bytes", "ids_identical",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[Any], Any], inputs: Sequence[Any], *, repeats: int = 50, warmup: int = 5
) -> dict[str, float]:
    """Median / p10 / p90 microseconds of ``fn(inputs[i % len(inputs)])``."""
    device = _device_of(inputs[0])
    for i in range(warmup):
        fn(inputs[i % len(inputs)])
    _sync(device)
    samples = []
    for i in range(repeats):
        x = inputs[i % len(inputs)]
        start = time.perf_counter()
        fn(x)
        _sync(device)
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return {
        "median_us": statistics.median(samples),
        "p10_us": samples[len(samples) // 10],
        "p90_us": samples[(len(samples) * 9) // 10],
    }


def time_budgeted(
    fn: Callable[[Any], Any],
    inputs: Sequence[Any],
    *,
    budget_s: float = 2.0,
    max_repeats: int = 50,
    min_repeats: int = 3,
    warmup: int = 3,
) -> dict[str, float]:
    """:func:`time_call` with the repeats scaled to a time budget per measurement.

    Up to ``warmup`` untimed-for-the-result calls (fewer when they already use a quarter of the
    budget: a 400 ms call gets one), the fastest of them estimating the cost of a call; then
    ``budget_s / estimate`` timed repeats, clamped to ``[min_repeats, max_repeats]``, starting
    on the input set after the last warm-up one. Adds ``repeats`` to the result.
    """
    device = _device_of(inputs[0])
    estimate = float("inf")
    spent = 0.0
    done = 0
    for i in range(max(1, warmup)):
        start = time.perf_counter()
        fn(inputs[i % len(inputs)])
        _sync(device)
        elapsed = time.perf_counter() - start
        estimate, spent, done = min(estimate, elapsed), spent + elapsed, i + 1
        if spent > budget_s / 4:
            break
    repeats = max(min_repeats, min(max_repeats, int(budget_s / max(estimate, 1e-9))))
    rotated = [inputs[(done + i) % len(inputs)] for i in range(len(inputs))]
    return {**time_call(fn, rotated, repeats=repeats, warmup=0), "repeats": repeats}


def _proc_stat() -> Optional[tuple[float, float]]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(v) for v in handle.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / hz, sum(fields) / hz


class OtherLoad:
    """Context manager: the share of the machine's CPU time that *other* processes used while
    the block ran (machine busy time from /proc/stat minus this process's own CPU time).

    ``fraction`` is in [0, 1] (0.5 = one of two cores fully taken), or None where /proc/stat
    cannot be read or the block was shorter than its clock tick (10 ms). Timings taken with a
    noticeable fraction are not to be trusted on a small machine: a preempted worker thread
    stalls a whole parallel region for a scheduler slice.
    """

    fraction: Optional[float] = None

    def __enter__(self) -> OtherLoad:
        self._stat, self._own = _proc_stat(), os.times()
        return self

    def __exit__(self, *exc: object) -> None:
        stat, own = _proc_stat(), os.times()
        if self._stat is None or stat is None:
            return
        total = stat[1] - self._stat[1]
        mine = (own.user - self._own.user) + (own.system - self._own.system)
        if total > 0:
            self.fraction = min(1.0, max(0.0, (stat[0] - self._stat[0] - mine) / total))


def wait_for_idle(max_wait_s: float, threshold: float = 0.1, interval_s: float = 0.5) -> Optional[float]:
    """Sleep until other processes use less than ``threshold`` of the machine over ``interval_s``
    (or ``max_wait_s`` has passed); returns the last share measured (None: unknown)."""
    deadline = time.monotonic() + max_wait_s
    while True:
        with OtherLoad() as load:
            time.sleep(interval_s)
        if load.fraction is None or load.fraction < threshold or time.monotonic() >= deadline:
            return load.fraction


def _device_of(x: Any) -> torch.device:
    if isinstance(x, torch.Tensor):
        return x.device
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0].device
    device = getattr(x, "device", None)  # input-set objects may name their device
    return device if isinstance(device, torch.device) else torch.device("cpu")


def _dirty() -> bool:
    """Whether tracked files differ from HEAD (the sha alone would then misname the code measured)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def environment() -> dict[str, str]:
    info = sysinfo.collect()
    sha = info["git_sha"]
    return {
        "device": sysinfo.hardware_line(),
        "torch": info["versions"]["torch"],
        "triton": info["versions"]["triton"],
        "transformers": info["versions"]["transformers"],
        "git_sha": f"{sha}-dirty" if sha != "unknown" and _dirty() else sha,
    }


def _migrate_header(path: Path) -> None:
    """Rewrite a CSV written with an older CSV_FIELDS under the current header (new fields
    empty; fields CSV_FIELDS no longer has are dropped), so appended rows line up."""
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames == CSV_FIELDS:
            return
        old_rows = list(reader)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(old_rows)


def append_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (missing fields left empty) to ``path``, writing the header for a new file
    (and moving an existing file written with an older header to the current one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        _migrate_header(path)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    env = environment()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({"timestamp": stamp, **env, **row})


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows with their own fields (the first row's keys; a header for a new file) to
    ``path``: for the scripts whose rows are not the op benchmarks' (CSV_FIELDS, append_csv)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c, "")).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
