"""Timing and CSV helpers shared by the bench/ scripts.

Timing: warm-up calls excluded, then the median of ``repeats`` timed calls, each on the next
of several input sets so caches do not flatter the result (DESIGN.md, Benchmarks). Every CSV
row carries the hardware, versions and git sha that produced it.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

from pydecode import sysinfo

CSV_FIELDS = [
    "timestamp", "bench", "case", "provider", "backend", "batch", "vocab", "dtype",
    "median_us", "p10_us", "p90_us", "gbps", "ratio_to_floor", "device", "torch", "triton",
    "transformers", "git_sha",
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


def _device_of(x: Any) -> torch.device:
    if isinstance(x, torch.Tensor):
        return x.device
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0].device
    return torch.device("cpu")


def environment() -> dict[str, str]:
    info = sysinfo.collect()
    return {
        "device": sysinfo.hardware_line(),
        "torch": info["versions"]["torch"],
        "triton": info["versions"]["triton"],
        "transformers": info["versions"]["transformers"],
        "git_sha": info["git_sha"],
    }


def append_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows (missing fields left empty) to ``path``, writing the header for a new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    env = environment()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        for row in rows:
            writer.writerow({"timestamp": stamp, **env, **row})


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        print("  ".join(_fmt(row.get(c, "")).ljust(widths[c]) for c in columns))


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
