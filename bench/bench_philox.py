"""philox_uniform on every available backend: time, GB/s and the ratio to a one-pass floor.

The op writes ``batch * vocab`` float32 uniforms; the floor is the time to write the same bytes
(``torch.Tensor.fill_`` on a buffer of that size, measured in the same run), so the ratio says
how far the generator is from being purely memory-bound.

    python -m bench.bench_philox [--device cuda] [--csv bench/results/philox.csv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import append_csv, environment, print_table, time_call
from pydecode.ops import BACKENDS, backend_unavailable_reason, philox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 128256])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    backends = [b for b in BACKENDS if not backend_unavailable_reason(b, device)]
    if device.type == "cpu":
        backends = [b for b in backends if b != "triton"]  # the interpreter is not a benchmark
    rows = []
    for batch in args.batch:
        for vocab in args.vocab:
            nbytes = batch * vocab * 4
            buffers = [torch.empty(batch, vocab, device=device) for _ in range(4)]
            floor = time_call(lambda b: b.fill_(0.5), buffers, repeats=args.repeats)["median_us"]
            seeds = [torch.arange(batch, device=device) + i for i in range(4)]
            offsets = torch.zeros(batch, dtype=torch.int64, device=device)
            for backend in backends:
                stats = time_call(
                    lambda s, be=backend, o=offsets, v=vocab: philox.philox_uniform(s, o, v, backend=be),
                    seeds, repeats=args.repeats,
                )
                rows.append({
                    "bench": "philox_uniform", "case": "uniform", "provider": "pydecode", "backend": backend,
                    "batch": batch, "vocab": vocab, "dtype": "float32", **stats,
                    "gbps": nbytes / stats["median_us"] / 1e3, "ratio_to_floor": stats["median_us"] / floor,
                })
    env = environment()
    print(f"# {env['device']}, torch {env['torch']}, triton {env['triton']}, git {env['git_sha']}")
    print_table(rows, ["backend", "batch", "vocab", "median_us", "gbps", "ratio_to_floor"])
    if args.csv:
        append_csv(args.csv, rows)


if __name__ == "__main__":
    main()
