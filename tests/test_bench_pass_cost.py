"""bench/triton_pass_cost.py: the Triton row passes compiled for sm_90 (no GPU), their loops'
instructions per element counted from the SASS."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from bench import triton_pass_cost
from pydecode.triton_kernels._common import ROW_STAGES

ROOT = Path(__file__).resolve().parent.parent


def test_loop_instructions_of_a_listing() -> None:
    """The largest backward branch's range, and the same less the largest forward-branch region in it."""
    sass = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
        /*0010*/                   ISETP.GE.AND P0, PT, R2, R3, PT ;
        /*0020*/                   LDG.E R4, desc[UR4][R2.64] ;
        /*0030*/              @!P0 BRA 0x60 ;
        /*0040*/                   IADD3 R5, R5, 0x1, RZ ;
        /*0050*/                   STG.E desc[UR4][R6.64], R5 ;
        /*0060*/                   ISETP.NE.AND P1, PT, R4, RZ, PT ;
        /*0070*/               @P1 BRA 0x20 ;
        /*0080*/                   EXIT ;
    """
    assert triton_pass_cost.loop_instructions(sass) == (6, 4)
    assert triton_pass_cost.loop_instructions("/*0000*/ EXIT ;") == (0, 0)


def test_pass_costs_for_sm90(tmp_path: Path) -> None:
    """The stats pass with the class maxima issues fewer instructions per element than with the
    top-byte histogram, and a copy block that selects nothing skips most of the copy's (pinned on
    the installed triton; the README's table has 3.6's and 3.9's counts); the once-per-program
    selects are counted as straight-line code."""
    out = tmp_path / "cost.csv"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile, not interpret
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    fixed_out = tmp_path / "fixed.csv"
    done = subprocess.run([sys.executable, "-m", "bench.triton_pass_cost", "--csv", str(out), "--fixed-csv",
                           str(fixed_out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    cost = {r["pass"]: (float(r["instructions_per_element"]), float(r["skipping_guarded"]))
            for r in csv.DictReader(out.open())}
    assert set(cost) == {name for name, *_ in triton_pass_cost.PROBES}
    assert all(total > 0 for total, _ in cost.values()), cost
    assert cost["stats + class maxima"][0] < cost["stats + histogram"][0], cost
    assert cost["copy"][1] < cost["copy"][0] / 2, cost
    assert cost["copy, 1 entry"][0] < cost["copy, scan"][0] / 1.5, cost
    assert cost["pivot pass, 4 pivots"][0] < cost["pivot pass, 16 pivots"][0] / 2, cost
    assert cost["final pass"][1] < cost["final pass"][0] / 2, cost  # a block that skips the Philox rounds
    assert cost["sum"][0] < cost["sum + bound"][0], cost
    # the default pipelines every production row loop: its blocks ahead load asynchronously (LDGSTS)
    stages = {r["pass"]: (int(r["stages"]), int(r["async_loads"])) for r in csv.DictReader(out.open())}
    assert all(n == ROW_STAGES for n, _ in stages.values()), stages
    assert all(loads > 0 for name, (_, loads) in stages.items() if name != "copy, 1 entry"), stages
    # the fixed parts are straight-line code (so the static count is each thread's for one call)
    fixed = {r["part"]: (int(r["instructions_per_thread"]), int(r["loops"])) for r in csv.DictReader(fixed_out.open())}
    assert set(fixed) == {name for name, *_ in triton_pass_cost.FIXED_PROBES}
    assert all(total > 100 and loops == 0 for total, loops in fixed.values()), fixed
    assert fixed["select over 512 keys"][0] <= fixed["select over 1024 keys"][0], fixed


def _argmax_sass(stages: int) -> str:
    code = ("from bench import triton_pass_cost as P; print(P.sass_of(P._argmax_probe, "
            f"{{'x_ptr': '*bf16', 'out_ptr': '*fp32', 'vocab': 'i32'}}, {{'BLOCK': 2048, 'STAGES': {stages}}}, 90))")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile, not interpret
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_row_loads_are_16_bytes_when_aligned() -> None:
    """Specialised as triton's JIT specialises a launch on a 16-byte aligned row of a length that is
    a multiple of 16 (the row kernels no longer opt out of it for stride and vocab), a row pass loads
    its 8 bfloat16 a thread per step as one 16-byte load, not 8 two-byte ones: an LDG unpipelined
    (1 stage), an asynchronous copy to shared memory (LDGSTS) for each block ahead when pipelined."""
    loads = [line for line in _argmax_sass(1).splitlines() if "LDG" in line]
    assert any("LDG.E.128" in line for line in loads) and not any("LDG.E.U16" in line for line in loads), loads
    assert not any("LDGSTS" in line for line in loads), loads
    loads = [line for line in _argmax_sass(3).splitlines() if "LDG" in line]
    assert any("LDGSTS" in line and ".128" in line for line in loads), loads
    assert not any("U16" in line or ("LDGSTS" in line and ".128" not in line) for line in loads), loads
