"""Peak memory of one call: CUDA's allocator counter on a GPU, sampled RSS growth on CPU.

Why sampled RSS on CPU: ``tracemalloc`` sees only allocations made through Python's allocator,
not torch's tensor storage (C++ ``malloc``), so it reports almost nothing for a generate call;
``resource.getrusage().ru_maxrss`` is the process's peak since it started and cannot be reset
between calls. A thread that reads ``/proc/self/statm`` every ``interval_s`` gives the peak
resident-set growth over the value at the start of the call: the KV cache, logits and
temporaries the call touches. Two limits, documented where it is printed: a spike shorter than
the interval can be missed, and memory the allocator kept from an earlier call (glibc reuses
freed chunks below its mmap threshold) is not counted again, so it measures the *new* memory a
call needs, for both implementations alike. Without ``/proc`` (not Linux) it reports None.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class PeakMemory:
    """Context manager: ``peak_bytes`` = the most memory the block added (None: unknown).

    On ``device`` cuda: ``torch.cuda.max_memory_allocated`` minus the allocation at the start
    (the peak counter is reset on entry). On CPU: the sampled RSS growth described above.
    """

    peak_bytes: Optional[int] = None

    def __init__(self, device: torch.device, interval_s: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._start = 0
        self._peak = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        start = _rss_bytes()
        if start is None:
            return self
        self._start = self._peak = start
        self._thread = threading.Thread(target=self._sample, name="pydecode-peak-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            rss = _rss_bytes()
            if rss is not None and rss > self._peak:
                self._peak = rss

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated(self.device) - self._start)
            return
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        rss = _rss_bytes()  # the end of the block counts too (a call shorter than one interval)
        if rss is not None:
            self._peak = max(self._peak, rss)
        self.peak_bytes = self._peak - self._start
