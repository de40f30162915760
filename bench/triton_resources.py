"""``python -m bench.triton_resources``: registers, spills, shared memory and the kind of row loads
of the Triton row kernels' decode-step launches compiled for an NVIDIA target, without a GPU.

A row kernel's program is alone on its SM once it takes more than 128 registers a thread (8 warps:
256 threads x 129+ registers > half of the 64K register file), and then only its own loads in flight
hide the memory latency; how the rows are loaded says how many: 16-byte loads a thread waits for
(``LDG.E.128``) or asynchronous copies of the blocks ahead (``LDGSTS``: the pipelined row loops,
``PYDECODE_TRITON_STAGES``). Spills (a local-memory stack) cost memory traffic where they sit.

The launches are those the interpreted Triton op tests record (bench/triton_compile_check.py), kept
to the GPU's decode-step shapes: bfloat16 rows; the chain's tile variants (tokens, a top-k or a
top-p, no row written: a top-p call without a top-k too), the split pass, beam top-k's row and
split kernels. Each is compiled as the GPU launch of a 128256-entry row is: the block sizes and
class counts the launchers pick on a GPU (BLOCK 2048, 8 warps, 2048 classes folded to 512;
libdevice's exp and log, a temperature as a multiplication by its reciprocal), the pointers, row
stride, vocabulary and slice length specialised as multiples of 16, and ``STAGES`` set to each
``--stages`` value. Spills are counted in all (the stack's bytes) and inside the row loops (their
local-memory loads and stores).

    python -m bench.triton_resources [--launches FILE] [--stages 1 3] [--csv FILE]

(--launches: a recording of ``python -m bench.triton_compile_check``'s first step; without it the
tests are run to record one, ~6 minutes here.)
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import tempfile
from collections import Counter
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from bench.common import append_rows
from bench.triton_compile_check import divisibility_of, record_launches, signature_of
from bench.triton_pass_cost import branches, cubin_listing, listing
from pydecode.triton_kernels._common import T_DIVIDE, T_MUL_RECIP

KERNELS = ("_filter_chain_kernel", "_split_pass_kernel", "_beam_row_topk_kernel", "_beam_split_kernel")
# The variant a row of the table stands for: the constexprs that pick a kernel's paths.
VARIANT_KEYS = ("TILE", "SPLIT", "PTILE", "LOG_SOFTMAX", "PASS")
GPU_SIZES = {"BLOCK": 2048, "BLOCK_P": 2048, "NCK": 512, "CAP": 512}  # BLOCK_P: 8192 // 4 pivots
ALIGNED = [["tt.divisibility", 16]]


def decode_step_launches(launches: list[dict]) -> list[dict]:
    """One recorded launch per decode-step variant of each row kernel (see the module's docstring)."""
    chosen, seen = [], set()
    for launch in launches:
        if launch["kernel"] not in KERNELS or launch["args"].get("x_ptr") != ["tensor", "bfloat16"]:
            continue
        constants = {name: value for name, (kind, value) in launch["args"].items() if kind != "tensor"}
        tiled = constants.get("TILE") or constants.get("PTILE")  # a top-k's candidate tile or a top-p tile
        if launch["kernel"] == "_filter_chain_kernel" and (not tiled or constants.get("MIN_KEEP_GT1")):
            continue
        key = (launch["kernel"], *(constants.get(name) for name in VARIANT_KEYS))
        if key not in seen:
            seen.add(key)
            chosen.append(launch)
    return chosen


def compile_for_gpu(launch: dict, stages: int, arch: int) -> tuple[dict, dict]:
    """(the variant's constexprs, its resources) compiled as a GPU launch on a 128256-entry row."""
    kernel = getattr(importlib.import_module(launch["module"]), launch["kernel"])
    signature, constexprs = signature_of(kernel, launch)
    variant = {name: constexprs[name] for name in VARIANT_KEYS if name in constexprs}
    constexprs.update({name: size for name, size in GPU_SIZES.items() if name in constexprs})
    if "NC" in constexprs and launch["kernel"] in ("_filter_chain_kernel", "_beam_row_topk_kernel"):
        constexprs["NC"] = 2048  # min(BLOCK, CLASSES): the row's column classes
    if "PRECISE" in constexprs:
        constexprs["PRECISE"] = True  # libdevice's expf/logf, as on a GPU (the interpreter has none)
    if constexprs.get("TRANSFORM") == T_DIVIDE:
        constexprs["TRANSFORM"] = T_MUL_RECIP  # a temperature on CUDA: x * (1 / t), as torch computes it there
    constexprs["STAGES"] = stages
    attrs = divisibility_of(kernel, launch)
    for name in ("stride", "vocab", "slice_len"):  # an aligned row of 128256: multiples of 16
        if name in kernel.arg_names and not kernel.params[kernel.arg_names.index(name)].do_not_specialize:
            attrs[(kernel.arg_names.index(name),)] = ALIGNED
    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs),
                              target=GPUTarget("cuda", arch, 32), options={**launch["options"], "num_warps": 8})
    usage = cubin_listing(compiled.asm["cubin"], "-res-usage")
    sass = cubin_listing(compiled.asm["cubin"])
    loads = Counter(re.findall(r"\b(LDGSTS|LDG\.E\.128)\b", sass))
    return variant, {
        "registers": int(re.search(r"REG:(\d+)", usage).group(1)),
        "spill_stack_bytes": int(re.search(r"STACK:(\d+)", usage).group(1)),
        "spill_ops_in_row_loops": spill_ops_in_row_loops(sass),
        "shared_bytes": compiled.metadata.shared,
        "async_loads": loads["LDGSTS"],
        "loads_16_bytes": loads["LDG.E.128"],
    }


def spill_ops_in_row_loops(sass: str) -> int:
    """Local-memory loads and stores (LDL / STL: spills) inside the row loops of a listing: the
    innermost loops (a backward branch's range holding no other) that load from global memory."""
    rows = listing(sass)
    loops = [(to, at) for at, to in branches(rows) if to < at]
    innermost = [(lo, hi) for lo, hi in loops if not any(lo <= a and b <= hi and (a, b) != (lo, hi) for a, b in loops)]
    spills = 0
    for lo, hi in innermost:
        body = [text for at, text in rows if lo <= at <= hi]
        if any(re.search(r"\bLDG", text) for text in body):
            spills += sum(1 for text in body if re.search(r"\b(LDL|STL)\b", text))
    return spills


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=Path, help="launches recorded by bench.triton_compile_check")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 3], help="PYDECODE_TRITON_STAGES values")
    parser.add_argument("--target", type=int, default=90, help="compute capability (90: H100/H200)")
    parser.add_argument("--csv", type=Path, help="append the rows to this CSV file")
    args = parser.parse_args(argv)
    path = args.launches
    if path is None:
        path = Path(tempfile.mkdtemp()) / "launches.json"
        record_launches(path)
    rows = []
    print(f"triton {triton.__version__}, sm_{args.target}, 8 warps, bfloat16 rows of 128256 (aligned)")
    for launch in decode_step_launches(json.loads(path.read_text())):
        for stages in args.stages:
            variant, used = compile_for_gpu(launch, stages, args.target)
            row = {"triton": triton.__version__, "target": f"sm_{args.target}", "kernel": launch["kernel"],
                   "variant": " ".join(f"{k}={v}" for k, v in variant.items()), "stages": stages, **used}
            rows.append(row)
            print("  ".join(f"{k} {v}" for k, v in row.items() if k not in ("triton", "target")), flush=True)
    if args.csv and rows:
        append_rows(args.csv, rows)
    return rows


if __name__ == "__main__":
    main()
