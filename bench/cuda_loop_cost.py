"""``python -m bench.cuda_loop_cost``: machine instructions per logits element of the CUDA row kernels'
full-row loops, counted in the SASS nvcc compiles for an NVIDIA target, without a GPU.

The question bench/triton_pass_cost.py asks of the Triton passes: an H200 SM issues 128
thread-instructions per clock while a full-bandwidth read brings it ~9 bfloat16 elements per clock
(4.8 TB/s / 132 SMs / 1.98 GHz), so a row loop above ~14 instructions per element is compute-bound.
The loops counted are the passes every call makes over the whole row (csrc/cuda/device.cuh's
``for_row<D, kFastLoads>``: 4 16-byte loads in flight a thread, 32 bfloat16 entries a loop step) in
the bfloat16 instantiation of each kernel: the statistics pass, beam top-k's sum, the split rows'
passes. Per loop: instructions per entry, and how many of them are branches, convergence barriers
(``BSSY``, which nvcc puts around every branch that may diverge), shared-memory atomics, exps
(``MUFU.EX2``), double-precision operations (the log of probability inputs) and local-memory
loads and stores (spills, ``LDL``/``STL``). Static counts:
every instruction of the loop once, so a loop with branches inside counts every path (an upper
bound for the path a row takes); a branch-free loop's count is exact. ``hot_per_entry``: the
fewest instructions an iteration can execute (the shortest path from the loop's head to its back
edge, every forward branch inside it taken or not), per entry: the loop's cost when its rare parts
are skipped, as the one-read top-k list's rounds with no hit skip theirs; a branch-free loop's
equals ``per_entry``.

    python -m bench.cuda_loop_cost [--sources sampling beam] [--arch 90] [--csrc DIR --label WHAT] [--csv FILE]

(sampling.cu takes ~6 minutes to compile on 2 cores, beam.cu ~1.)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from bench.common import append_rows, environment
from bench.triton_pass_cost import branches, cuobjdump, listing

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("sampling", "beam")
LOADS_PER_STEP = 4  # kFastLoads
BF16_PER_LOAD = 8
FEATURES = {"branches": r"\bBRA\b", "convergence_barriers": r"\bBSSY\b", "shared_atomics": r"\bATOMS\b",
            "exps": r"\bMUFU\.EX2\b", "double_ops": r"\bD(?:FMA|MUL|ADD)\b", "spill_ops": r"\b(?:LDL|STL)\b"}


def compile_sass(source: Path, csrc: Path, arch: int) -> str:
    """The cuobjdump listing of ``source`` compiled as setup.py compiles it, for sm_``arch`` only."""
    with tempfile.TemporaryDirectory() as tmp:
        cubin = Path(tmp) / "kernels.cubin"
        subprocess.run(["nvcc", "-cubin", "-o", str(cubin), str(source), "-O3", "-std=c++17",
                        "--expt-relaxed-constexpr", f"-I{csrc}", f"-I{csrc / 'include'}", f"-arch=sm_{arch}"],
                       check=True, capture_output=True, text=True)
        return subprocess.run([cuobjdump(), "-sass", str(cubin)], check=True, capture_output=True, text=True).stdout


def kernel_name(mangled: str) -> str | None:
    """``filter_chain_kernel<bf16, 0, 1>`` for the bfloat16 instantiation of a kernel (its boolean
    template arguments as 0/1), None for the other dtypes' and for non-template kernels. (Itanium
    mangling: each name is its length, then its characters.)"""
    for start in range(len(mangled)):  # a length may follow other digits (a hash's): try every start
        length = re.match(r"\d+", mangled[start:])
        if length is None:
            continue
        end = start + length.end()
        name = mangled[end:end + int(length.group())]
        rest = mangled[end + len(name):]
        if name.endswith("_kernel") and rest.startswith("ILi2E"):
            flags = re.match(r"ILi2E((?:Lb[01]E)*)", rest).group(1)
            return f"{name}<{', '.join(['bf16', *re.findall(r'Lb([01])E', flags)])}>"
    return None


def shortest_path(rows: list[tuple[int, str]], head: int, back_edge: int) -> int:
    """The fewest instructions from ``head`` to the branch at ``back_edge`` (both counted), along
    fall-throughs and the forward branches that stay inside the loop (a predicated ``@P BRA`` or a
    ``BRA.DIV`` may go either way, a bare ``BRA`` only to its target)."""
    body = [(at, text) for at, text in rows if head <= at <= back_edge]
    order = {at: i for i, (at, _) in enumerate(body)}
    inf = len(body) + 1
    dist = [inf] * len(body)
    dist[0] = 1
    for i, (at, text) in enumerate(body[:-1]):
        if dist[i] == inf:
            continue
        jump = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if jump and int(jump.group(1), 16) in order and int(jump.group(1), 16) > at:
            j = order[int(jump.group(1), 16)]
            dist[j] = min(dist[j], dist[i] + 1)
        always = re.match(r"\s*BRA\s", text)  # no predicate, no .DIV / .CONV condition
        if not always and not re.match(r"\s*EXIT\b", text):
            dist[i + 1] = min(dist[i + 1], dist[i] + 1)
    return dist[-1]


def row_loops(sass: str) -> list[dict]:
    """One row per full-row loop (an innermost loop holding LOADS_PER_STEP 16-byte loads) of every
    bfloat16 kernel in a cuobjdump listing."""
    out = []
    for mangled, body in re.findall(r"Function : (\S+)\n(.*?)(?=\n\s*Function : |\Z)", sass, re.S):
        name = kernel_name(mangled)
        if name is None:
            continue
        rows = listing(body)
        back_edges = [(at, target) for at, target in branches(rows) if target < at]
        for at, target in back_edges:
            if any(target <= t < a < at for a, t in back_edges):
                continue  # an outer loop (a radix select's passes over the row): its inner loops count
            loop = [text for a, text in rows if target <= a <= at]
            if sum(bool(re.search(r"\bLDG\.E\.128\b", t)) for t in loop) != LOADS_PER_STEP:
                continue
            entries = LOADS_PER_STEP * BF16_PER_LOAD
            row = {"kernel": name, "loop_at": hex(target), "instructions": len(loop),
                   "per_entry": round(len(loop) / entries, 1),
                   "hot_per_entry": round(shortest_path(rows, target, at) / entries, 1)}
            for feature, pattern in FEATURES.items():
                row[feature] = round(sum(bool(re.search(pattern, t)) for t in loop) / entries, 2)
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES)
    parser.add_argument("--arch", type=int, default=90, help="compute capability (90: H100/H200)")
    parser.add_argument("--csrc", type=Path, default=ROOT / "csrc", help="the kernels' sources to count")
    parser.add_argument("--label", help="what --csrc is, for the CSV (default: this checkout's commit)")
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV file")
    args = parser.parse_args(argv)
    rows = []
    for source in args.sources:
        for row in row_loops(compile_sass(args.csrc / "cuda" / f"{source}.cu", args.csrc, args.arch)):
            rows.append({"source": f"{source}.cu", "arch": f"sm_{args.arch}", **row})
    columns = ["kernel", "loop_at", "per_entry", "hot_per_entry", *FEATURES]
    print("  ".join(columns) + "   (per bfloat16 entry)")
    for row in rows:
        print("  ".join(str(row[c]) for c in columns))
    if args.csv and rows:
        label = args.label or environment()["git_sha"]
        append_rows(args.csv, [{**row, "csrc": label} for row in rows])
    return rows


if __name__ == "__main__":
    main()
