"""``python -m bench.triton_pass_cost``: machine instructions per logits element of each Triton
row pass, counted in the SASS the installed triton compiles for an NVIDIA target, without a GPU.

A row pass of the sampling chain reads the row once; whether its time is the read's or its own
arithmetic's depends on how many instructions it issues per element. An H200 SM issues 128
thread-instructions per clock while a full-bandwidth read brings it ~9 bfloat16 elements per clock
(4.8 TB/s / 132 SMs / 1.98 GHz), so a pass above ~14 instructions per element is compute-bound.
The H200 run measured the Triton chain far from the read floor, and the histogram passes
(tl.histogram of 512 bins: per element, triton 3.6 lowers it to ballots and per-bin popcounts,
triton 3.9 to shared-memory atomics) were the suspects: this counts them.

Each pass is the production helper of ``pydecode.triton_kernels.sampling``, wrapped in a probe
kernel over a bfloat16 row; the count is the instructions of the probe's row loop (the range of
its backward branch in the cuobjdump listing) divided by the elements a thread takes per loop
step (BLOCK / threads). Static counts: every instruction of the loop, once (the probes have no
data-dependent branch inside it, except the copy's guard; ``skipping`` is the count of a loop step
that skips the largest guarded region, as a copy's block that selects nothing does).

Fixed costs per program (``--fixed-csv``): the selects over class maxima and tiles that a program
runs once, not per element (the class bound's select, the split path's selects over a slice's
and over a row's maxima). They compile to straight-line code (no loop: checked), so the count is
each thread's instructions for one call, the probe's load and store included.

    python -m bench.triton_pass_cost [--target 90] [--stages N] [--csv FILE] [--fixed-csv FILE]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from bench.common import append_rows
from pydecode.triton_kernels import sampling as S
from pydecode.triton_kernels._common import (
    ROW_STAGES,
    append_few,
    append_scan,
    class_bound,
    keys_select,
    load_row,
    prefix_at_least,
)

BLOCK, NUM_WARPS, NC = 2048, 8, 512


@triton.jit
def _stats_probe(x_ptr, out_ptr, vocab, HIST: tl.constexpr, CLASSES: tl.constexpr, BLOCK: tl.constexpr,
                 NC: tl.constexpr, STAGES: tl.constexpr):
    m, n_nan, hist0, cmax = S._stats_range(x_ptr, 0, vocab, 1.0, HIST, 0, False, BLOCK, CLASSES, NC, STAGES)
    tl.store(out_ptr, m + n_nan)
    tl.store(out_ptr + 1 + tl.arange(0, 512), hist0.to(tl.float32))
    tl.store(out_ptr + 600 + tl.arange(0, NC), cmax.to(tl.float32))


@triton.jit
def _digit_probe(x_ptr, out_ptr, vocab, key, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    hist = S._digit_hist(x_ptr, 0, vocab, 1.0, 16, key.to(tl.int64) >> 24, 0, False, BLOCK, STAGES)
    tl.store(out_ptr + tl.arange(0, 512), hist.to(tl.float32))


@triton.jit
def _copy_probe(x_ptr, out_ptr, idx_ptr, vocab, key, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    n = S._copy_prefix(x_ptr, 0, vocab, 1.0, key.to(tl.int64), 0, out_ptr + 1, idx_ptr, 0, False, BLOCK, 512,
                       STAGES)
    tl.store(out_ptr, n.to(tl.float32))


@triton.jit
def _append_probe(x_ptr, out_ptr, idx_ptr, vocab, key, SCAN: tl.constexpr, BLOCK: tl.constexpr,
                  STAGES: tl.constexpr):
    """A copy whose every block takes one store path: the scan (append_scan), or else the count and
    one append_few step (a block selecting one entry)."""
    written = tl.full((), 0, tl.int32)
    for start in tl.range(0, vocab, BLOCK, num_stages=STAGES):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = load_row(x_ptr, cols, mask, 1.0, 0, False)
        sel = mask & prefix_at_least(x, 0, key.to(tl.int64))
        n = tl.sum(sel.to(tl.int32), axis=0)
        if SCAN:
            append_scan(x, cols, sel, written, out_ptr + 1, idx_ptr, 512)
        else:
            append_few(x, cols, sel, tl.minimum(n, 1), written, out_ptr + 1, idx_ptr, 512)
        written += n
    tl.store(out_ptr, written.to(tl.float32))


@triton.jit
def _mass_probe(x_ptr, out_ptr, idx_ptr, vocab, key, BOUND: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    z, n, n_on, below = S._row_mass(x_ptr, vocab, 1.0, 2.0, float("-inf"), key.to(tl.int64), out_ptr + 1, idx_ptr, 0,
                                    False, BLOCK, 512, BOUND, STAGES)
    tl.store(out_ptr, z + n + n_on + below)


@triton.jit
def _pivot_probe(x_ptr, out_ptr, vocab, NP: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    pivots = 2.0 + tl.arange(0, NP).to(tl.float32) * 0.01
    acc, cnt = S._pivot_masses(x_ptr, vocab, 1.0, 3.0, float("-inf"), pivots, 0, False, BLOCK, NP, STAGES)
    tl.store(out_ptr + tl.arange(0, NP), acc + cnt)


@triton.jit
def _final_probe(x_ptr, out_ptr, vocab, key, LOGPROBS: tl.constexpr, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    best, idx, z = S._final_pass(x_ptr, vocab, 1.0, 3.0, float("-inf"), 3.0, key > 0, key, key > 1, 1.0, 0.0, out_ptr,
                                 0.0, 1234, 0, 0, 0, False, BLOCK, False, False, True, LOGPROBS,
                                 STAGES)
    tl.store(out_ptr, best + idx + z)


@triton.jit
def _argmax_probe(x_ptr, out_ptr, vocab, BLOCK: tl.constexpr, STAGES: tl.constexpr):
    best, idx = S._argmax_range(x_ptr, 0, vocab, BLOCK, STAGES)
    tl.store(out_ptr, best + idx)


# (pass, what it is, probe, extra signature, constexprs)
PROBES = [
    ("argmax", "greedy's read (the floor's arithmetic)", _argmax_probe, {}, {}),
    ("stats + histogram", "stats pass with the top byte's 512-bin histogram (before)", _stats_probe, {},
     {"HIST": True, "CLASSES": False, "NC": NC}),
    ("stats + class maxima", "stats pass with the class maxima (the class bound)", _stats_probe, {},
     {"HIST": False, "CLASSES": True, "NC": NC}),
    ("radix digit", "a radix select's digit histogram over the row", _digit_probe, {}, {}),
    ("copy", "copy of the entries at or above a key to the tile (all its code)", _copy_probe,
     {"idx_ptr": "*i32"}, {}),
    ("copy, 1 entry", "a copy step whose block selects one entry (append_few)", _append_probe,
     {"idx_ptr": "*i32"}, {"SCAN": False}),
    ("copy, scan", "a copy step storing by a scan of the block (append_scan, > FEW entries)", _append_probe,
     {"idx_ptr": "*i32"}, {"SCAN": True}),
    ("pivot pass, 16 pivots", "top-p row path: masses and counts at 16 pivots, BLOCK 512 (before)", _pivot_probe,
     {}, {"NP": 16, "BLOCK": 512}),
    ("pivot pass, 4 pivots", "the same at 4 pivots, BLOCK 2048 (now: each pass shrinks the interval 4x, not 16x)",
     _pivot_probe, {}, {"NP": 4, "BLOCK": 2048}),
    ("final pass", "row path's last pass: filters' verdict, Gumbel-max sample (skipping: no Philox)",
     _final_probe, {}, {"LOGPROBS": False}),
    ("final + log-prob", "the same with the log-prob's sum (libdevice exp)", _final_probe, {}, {"LOGPROBS": True}),
    ("sum", "Z pass (top-k filtered softmax denominator)", _mass_probe, {"idx_ptr": "*i32"}, {"BOUND": False}),
    ("sum + bound", "Z pass with the top-p tile's copy and the mass below it (skipping: a block copying nothing)",
     _mass_probe, {"idx_ptr": "*i32"}, {"BOUND": True}),
]


@triton.jit
def _bound_probe(x_ptr, out_ptr, rank, NC: tl.constexpr, NR: tl.constexpr):
    tl.store(out_ptr, class_bound(tl.load(x_ptr + tl.arange(0, NC)), rank, NC, NR))


@triton.jit
def _select_probe(x_ptr, out_ptr, rank, N: tl.constexpr):
    ukeys = tl.load(x_ptr + tl.arange(0, N)).to(tl.int64) + 2147483648
    key, remaining, at_digit = keys_select(ukeys, ukeys >= 0, tl.full((), 0, tl.int64), rank, 0)
    tl.store(out_ptr, key + remaining + at_digit)


# (part, what it is, probe, constexprs): run once per program (or per row), not per element
FIXED_PROBES = [
    ("class bound, 2048 -> 512", "the k-th largest of 2048 class maxima folded to 512 (a top-k select's bound; "
     "each split slice's own bound)", _bound_probe, {"NC": 2048, "NR": 512}),
    ("select over 512 keys", "keys_select: a tile's four digits (the top-k tile's select)", _select_probe, {"N": 512}),
    ("select over 1024 keys", "keys_select over a split row's slices' folded maxima (gather_bounded's bound)",
     _select_probe, {"N": 1024}),
]


def cuobjdump() -> str:
    """triton's bundled cuobjdump (else one on PATH)."""
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    return str(bundled) if bundled.exists() else (shutil.which("cuobjdump") or "cuobjdump")


def listing(sass: str) -> list[tuple[int, str]]:
    """(address, instruction) of every instruction in a cuobjdump listing."""
    return [(int(at, 16), text) for at, text in re.findall(r"/\*([0-9a-f]{4,})\*/\s+(.*?);", sass)]


def branches(rows: list[tuple[int, str]]) -> list[tuple[int, int]]:
    """(address, target) of every branch of a listing (``listing``); target < address: a loop's end."""
    out = []
    for at, text in rows:
        target = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if target:
            out.append((at, int(target.group(1), 16)))
    return out


def loop_instructions(sass: str) -> tuple[int, int]:
    """(instructions of the largest loop: from a backward branch's target to the branch; the same
    less the largest region a forward branch inside it jumps over: a block that skips its guarded
    part, as the copies' blocks that select nothing do)."""
    rows = listing(sass)
    jumps = branches(rows)
    loop = max(((to, at) for at, to in jumps if to < at), key=lambda r: r[1] - r[0], default=None)
    if loop is None:
        return 0, 0
    lo, hi = loop
    total = sum(1 for a, _ in rows if lo <= a <= hi)
    skipped = max((sum(1 for a, _ in rows if at < a < to) for at, to in jumps if lo <= at < to <= hi), default=0)
    return total, total - skipped


def cubin_listing(cubin: bytes, flag: str = "-sass") -> str:
    """cuobjdump's output for a cubin: its listing (``-sass``) or its resources (``-res-usage``)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        return subprocess.run([cuobjdump(), flag, str(path)], capture_output=True, text=True, check=True).stdout


def sass_of(probe, signature: dict, constexprs: dict, arch: int) -> str:  # noqa: ANN001
    """The cuobjdump listing of ``probe`` compiled for sm_``arch`` with NUM_WARPS warps, specialised
    as a launch on a 16-byte aligned row whose length is a multiple of 16 is (vocab 32000, 128256,
    152064): the pointers and ``vocab`` divisible by 16, so a thread's 8 bfloat16 load as one
    16-byte LDG (with unknown alignment: 8 two-byte loads)."""
    signature = {**signature, **{name: "constexpr" for name in constexprs}}
    aligned = [["tt.divisibility", 16]]
    attrs = {(probe.arg_names.index(name),): aligned for name, kind in signature.items()
             if kind.startswith("*") or name == "vocab"}
    compiled = triton.compile(ASTSource(fn=probe, signature=signature, constexprs=constexprs, attrs=attrs),
                              target=GPUTarget("cuda", arch, 32), options={"num_warps": NUM_WARPS})
    return cubin_listing(compiled.asm["cubin"])


def fixed_count(probe, constexprs: dict, arch: int) -> tuple[int, int]:  # noqa: ANN001
    """(instructions of the probe's listing, backward branches in it: 0 for straight-line code)."""
    sass = sass_of(probe, {"x_ptr": "*i32", "out_ptr": "*i64", "rank": "i32"}, constexprs, arch)
    rows = listing(sass)
    return len(rows), sum(1 for at, to in branches(rows) if to < at)


def count(probe, extra: dict, constexprs: dict, arch: int, stages: int) -> tuple[float, float, int]:  # noqa: ANN001
    """(instructions per element of the probe's row loop, the same for a step skipping its guarded
    part, the loop's asynchronous loads: LDGSTS, the copies to shared memory a pipelined loop (stages
    > 1) issues for the blocks ahead; 0 where each step loads and waits with an LDG)."""
    signature = {"x_ptr": "*bf16", "out_ptr": "*fp32", **extra, "vocab": "i32"}
    if "key" in probe.arg_names:
        signature["key"] = "i32"  # a runtime key or prefix: the compiler must not fold the comparisons
    # a probe may take its own BLOCK (the pivot pass's 512)
    constexprs = {"BLOCK": BLOCK, **constexprs, "STAGES": stages}
    sass = sass_of(probe, signature, constexprs, arch)
    per_thread = constexprs["BLOCK"] / (32 * NUM_WARPS)  # elements a thread takes per loop step
    total, skipping = loop_instructions(sass)
    return total / per_thread, skipping / per_thread, len(re.findall(r"\bLDGSTS\b", sass))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=int, default=90, help="compute capability (90: H100/H200)")
    parser.add_argument("--stages", type=int, default=ROW_STAGES,
                        help=f"row loops' pipeline stages (PYDECODE_TRITON_STAGES; default {ROW_STAGES}, 1 = none)")
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV file")
    parser.add_argument("--fixed-csv", type=Path, help="append the fixed costs' rows to this CSV file")
    args = parser.parse_args(argv)
    rows = []
    print(f"triton {triton.__version__}, sm_{args.target}, bfloat16 row, BLOCK {BLOCK}, {NUM_WARPS} warps, "
          f"{args.stages} stages")
    print(f"{'pass':<22} {'instr/element':>13} {'skipping':>9} {'LDGSTS':>6}  what")
    for name, what, probe, extra, constexprs in PROBES:
        per, skipping, async_loads = count(probe, extra, constexprs, args.target, args.stages)
        print(f"{name:<22} {per:>13.1f} {skipping:>9.1f} {async_loads:>6d}  {what}", flush=True)
        rows.append({"triton": triton.__version__, "target": f"sm_{args.target}", "stages": args.stages, "pass": name,
                     "instructions_per_element": round(per, 1), "skipping_guarded": round(skipping, 1),
                     "async_loads": async_loads, "what": what})
    if args.csv:
        append_rows(args.csv, rows)
    fixed = []
    print(f"\nfixed costs, {NUM_WARPS} warps: instructions per thread for one call")
    for name, what, probe, constexprs in FIXED_PROBES:
        total, loops = fixed_count(probe, constexprs, args.target)
        print(f"{name:<26} {total:>6d}  {what}" + (f"  ({loops} loops: a lower bound)" if loops else ""), flush=True)
        fixed.append({"triton": triton.__version__, "target": f"sm_{args.target}", "part": name,
                      "instructions_per_thread": total, "loops": loops, "what": what})
    if args.fixed_csv:
        append_rows(args.fixed_csv, fixed)


if __name__ == "__main__":
    main()
