"""Per-call cost of pydecode's op plumbing (validation, backend resolution, torch.library).

Compares, for one small op call (philox_uniform at batch 1 x vocab 32, where the work itself
is tiny), the public function (raw path), the same op through ``torch.ops.pydecode`` (what
torch.compile records) and the bare backend function. The difference is what registration
would add to every decode step if the public functions always went through torch.ops. Then a
decode-loop ``filter_and_sample`` call (temperature, top-k, top-p as Python numbers, a seed
tensor; batch 1 x vocab 64): the public op against its backend function, i.e. the Python time
every sampling step pays on any backend (the H200 profile: ~110 us of a 147 us eager CUDA call).

    python -m bench.bench_dispatch [--csv bench/results/dispatch.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import append_csv, environment, print_table, time_call
from pydecode.ops import _registry, philox, sampling


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=None, help="append results to this CSV")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()

    seeds = [torch.tensor([i], dtype=torch.int64) for i in range(8)]
    offsets = torch.zeros(1, dtype=torch.int64)
    vocab = 32
    backend = _registry.resolve_name("philox_uniform", torch.device("cpu"))
    impl = _registry.resolve("philox_uniform", torch.device("cpu"))
    cases = {
        "backend function (no checks)": lambda s: impl(s, offsets, vocab, 0),
        "public op, raw path": lambda s: philox.philox_uniform(s, offsets, vocab),
        "torch.ops.pydecode (library op)": lambda s: torch.ops.pydecode.philox_uniform(s, offsets, vocab, 0),
    }
    rows = []
    for case, fn in cases.items():
        stats = time_call(fn, seeds, repeats=args.repeats, warmup=50)
        rows.append({"bench": "dispatch", "case": case, "provider": "pydecode", "backend": backend,
                     "batch": 1, "vocab": vocab, "dtype": "int64", **stats})

    logits = [torch.randn(1, 64, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    cpu = torch.device("cpu")
    sample_backend = _registry.resolve_name("filter_and_sample", cpu)
    sample_impl = _registry.resolve("filter_and_sample", cpu)
    params = sampling._filter_rows(logits[0], 0.7, 50, 0.9, None, sample_backend)  # checked once
    sample_cases = {
        "filter_and_sample T+k+p: backend function": lambda x: sample_impl(
            x, *params, 1, seeds[0], offsets, False, False),
        "filter_and_sample T+k+p: public op": lambda x: sampling.filter_and_sample(
            x, temperature=0.7, top_k=50, top_p=0.9, seed=seeds[0], offset=offsets),
    }
    for case, fn in sample_cases.items():
        stats = time_call(fn, logits, repeats=args.repeats, warmup=50)
        rows.append({"bench": "dispatch", "case": case, "provider": "pydecode", "backend": sample_backend,
                     "batch": 1, "vocab": 64, "dtype": "float32", **stats})
    print(f"# {environment()['device']}, torch {environment()['torch']}")
    print_table(rows, ["case", "backend", "median_us", "p10_us", "p90_us"])
    if args.csv:
        append_csv(args.csv, rows)


if __name__ == "__main__":
    main()
