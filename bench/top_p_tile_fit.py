"""``python -m bench.top_p_tile_fit``: how often the Triton chain's top-p tile serves a row.

Top-p without a top-k (triton_kernels/sampling.py, ``_top_p_tile``) copies the entries at or above
a class bound (the rank-th largest of the row's column-class maxima) to a tile while it sums the
row's softmax denominator Z. The row finishes there, in 2 reads, only when the entries fit the tile
and the nucleus lies on it (the mass below the bound <= (1 - p) * Z); otherwise the tile's read is
wasted and the row path's pivot search reads the row ~9 more times. So the tile pays only if it
serves nearly every row: one row that misses it sets a call's time.

This counts it on the CPU, for the logits the op benchmark times (``randn * std``, cast to the
dtype, at temperature T: pydecode.benchmarks.ops) and each (rank, tile size): the rows served,
the entries at the bound (mean, max), the nucleus (mean, max). Same rule as the kernel: classes are
column mod ``--classes`` (the kernel's min(BLOCK, CLASSES): 2048 on a GPU at these vocabularies);
on a split row (``--splits``: the decode call below the GPU's SM count) its slices' folded classes;
the rank is the kernel's (_p_tile_rank), against the tile used before (rank 432, 512 entries);
ties with the bound are on the tile. The kernel's float sums differ from
these in the last bits.

    python -m bench.top_p_tile_fit --csv bench/results/top_p_tile_fit_cpu.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import append_rows, environment, print_table
from pydecode.triton_kernels._common import split_shape
from pydecode.triton_kernels.sampling import _CAP, _P_CAP, _p_tile_rank

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def class_maxima(x: torch.Tensor, classes: int) -> torch.Tensor:
    """(rows, classes): each row's maxima over its column classes, column mod ``classes``."""
    rows, vocab = x.shape
    padded = torch.cat([x, x.new_full((rows, (-vocab) % classes), float("-inf"))], dim=1)
    return padded.reshape(rows, -1, classes).amax(dim=1)


def split_class_maxima(x: torch.Tensor, splits: int) -> torch.Tensor:
    """(rows, splits x FOLD): a split row's folded class maxima as its slices' records hold them
    (triton_kernels/_common.py split_shape for the chain's top-k tile, _CAP, on a GPU: classes are
    the position in the slice mod FOLD)."""
    slice_len, splits, _, _, fold = split_shape(x.shape[1], splits, _CAP)
    return torch.cat([class_maxima(x[:, s * slice_len : (s + 1) * slice_len], fold) for s in range(splits)], dim=1)


def tile_fit(x: torch.Tensor, top_p: float, class_max: torch.Tensor, rank: int, cap: int) -> dict:
    """Per-row statistics of the top-p tile of ``cap`` entries whose edge is the rank-th largest of
    the class maxima ``class_max`` on the float32 rows ``x`` (already scaled by the temperature)."""
    bound = class_max.sort(dim=1, descending=True).values[:, rank - 1 : rank]
    on = x >= bound
    w = torch.exp(x - x.amax(dim=1, keepdim=True))
    z = w.sum(dim=1)
    below = torch.where(on, 0.0, w).sum(dim=1)
    n_on = on.sum(dim=1)
    served = (n_on <= cap) & (below <= (1 - top_p) * z)
    # the nucleus: transformers keeps the tokens whose ascending cumulative mass is > 1 - p
    ascending = w.sort(dim=1).values.cumsum(dim=1)
    nucleus = (ascending > (1 - top_p) * z[:, None]).sum(dim=1)
    return {"served": int(served.sum()), "n_on": n_on.float(), "nucleus": nucleus.float()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"], choices=sorted(DTYPES))
    parser.add_argument("--stds", nargs="+", type=float, default=[3.0], help="logits are randn * std")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.9)
    parser.add_argument("--classes", type=int, default=2048, help="column classes of one program per row")
    parser.add_argument("--splits", type=int, nargs="*", default=[2, 5, 15],
                        help="split rows (programs per row) whose tile to count too")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", default=None)
    args = parser.parse_args()
    env = environment()
    out = []
    for dtype in args.dtypes:
        for std in args.stds:
            g = torch.Generator().manual_seed(args.seed)
            logits = (torch.randn(args.rows, args.vocab, generator=g) * std).to(DTYPES[dtype]).float()
            x = logits * torch.tensor(1.0 / args.temperature, dtype=torch.float64).float()  # torch's x * (1/T)
            # (programs per row, class maxima, rank, tile entries): the tile before, then the kernel's
            maxima = class_maxima(x, args.classes)
            tiles = [(1, maxima, 432, 512), (1, maxima, _p_tile_rank(args.vocab, args.classes), _P_CAP)]
            for splits in args.splits:
                maxima = split_class_maxima(x, splits)
                tiles.append((splits, maxima, _p_tile_rank(args.vocab, maxima.shape[1]), _P_CAP))
            for splits, maxima, rank, cap in tiles:
                fit = tile_fit(x, args.top_p, maxima, rank, cap)
                out.append({
                    "vocab": args.vocab, "dtype": dtype, "logits": f"randn x {std:g}", "T": args.temperature,
                    "top_p": args.top_p, "splits": splits, "classes": maxima.shape[1], "rank": rank, "tile": cap,
                    "rows": args.rows, "served_pct": round(100.0 * fit["served"] / args.rows, 1),
                    "entries_mean": round(float(fit["n_on"].mean()), 1), "entries_max": int(fit["n_on"].max()),
                    "nucleus_mean": round(float(fit["nucleus"].mean()), 1), "nucleus_max": int(fit["nucleus"].max()),
                    "torch": env["torch"],
                })
    print_table(out, list(out[0]))
    if args.csv:
        append_rows(Path(args.csv), out)


if __name__ == "__main__":
    main()
