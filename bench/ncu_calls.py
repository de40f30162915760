"""``python -m bench.ncu_calls``: a few decode-step op calls for Nsight Compute to profile.

bench/profile_ops.py says how long a call's kernels take; Nsight Compute (``ncu``, installed on the
GPU host) says why: achieved bandwidth against the card's, occupancy, and where the warps stall
(waiting on a load, at a barrier, on the issue pipes). This script only makes the calls: the same
inputs as bench_ops / profile_ops (``randn * 3`` bfloat16 logits, per-row seed tensors), each case
on each GPU backend at each batch, ``--calls`` times after one warm-up call (Triton compiles there).
``bench/gpu_check.sh`` (step ``ncu-kernels``) runs it under ``ncu`` with a kernel-name filter and a
launch count, so that only the row kernels are replayed:

    ncu --kernel-name regex:'filter_chain|split_pass|beam_row|beam_split|beam_slice' --launch-count 48 \\
        --section SpeedOfLight --section Occupancy --section WarpStateStats --csv \\
        python -m bench.ncu_calls --batch 1 256
"""

from __future__ import annotations

import argparse
from typing import Optional

import torch

from pydecode.benchmarks import ops as ops_bench

DEFAULT_CASES = ["temp_topk_topp_sample", "temp_topp_sample", "beam_topk"]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 256], help="rows (beam_topk: items x 4 beams)")
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES, choices=list(ops_bench.CASES))
    parser.add_argument("--backends", nargs="+", default=["cuda", "triton"], choices=["cuda", "triton"])
    parser.add_argument("--calls", type=int, default=2, help="calls after the warm-up, per case, backend and batch")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("bench.ncu_calls needs a CUDA device")
    if min(args.batch) < 1 or args.vocab < 1 or args.calls < 1:
        raise SystemExit("--batch, --vocab and --calls must be >= 1")
    device = torch.device("cuda")
    made = 0
    for case, backend, stage_ops in ops_bench.each_backend(args.cases, device, args.backends, "skipped"):
        fn = ops_bench.pydecode_fn(case, backend, stage_ops, args.vocab)
        for batch in args.batch:
            rows = ops_bench.rows_for(case, batch)
            x = ops_bench.make_inputs(case, rows, args.vocab, torch.bfloat16, device, 3.0, sets=1)[0]
            for _ in range(1 + args.calls):
                fn(x)
            torch.cuda.synchronize()
            made += 1
            print(f"{case.name} {backend} batch {rows} x {args.vocab}: {1 + args.calls} calls", flush=True)
    return 0 if made else 1


if __name__ == "__main__":
    raise SystemExit(main())
