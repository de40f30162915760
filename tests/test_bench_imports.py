"""Importing a bench module must not change the process: a test module that imported one (for its
logits rows) once set TRITON_INTERPRET=1 for a whole GPU test session, so every later GPU test ran
the interpreter's code paths on compiled kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import importlib, json, os, sys
before = dict(os.environ)
changed = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    now = dict(os.environ)
    # torch's inductor sets its own cache folder on import (TORCHINDUCTOR_CACHE_DIR): not ours
    diff = sorted(k for k in set(before) | set(now)
                  if before.get(k) != now.get(k) and not k.startswith("TORCHINDUCTOR_"))
    if diff:
        changed[name] = diff
        before = now
print(json.dumps(changed))
"""


def test_bench_modules_leave_the_environment_alone() -> None:
    names = sorted(f"bench.{p.stem}" for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__")
    assert "bench.triton_row_reads" in names and "bench.cuda_row_reads" in names
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _PROBE, *names], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "{}", f"bench modules changed the environment on import: {out.stdout}"
