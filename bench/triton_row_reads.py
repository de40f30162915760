"""``python -m bench.triton_row_reads``: how many times the Triton sampling chain and beam top-k
read each logits row, counted on CPU through the Triton interpreter, with the early tiles on and off
(``PYDECODE_TRITON_EARLY_TILE``).

The kernels are bandwidth-bound at decode shapes, so their time is about (row reads) x (the
one-pass floor): the read count is what the early tiles change, and it can be measured where no
GPU is. The script counts every logits element the kernels load (the chain's ``load_row``; beam's
statistics, sum, digit, copy (scores or logits) and write passes) and divides by the vocabulary
and the rows. Rows (``randn`` logits, seeded): ``randn x 1`` and ``randn x 3``; ``peaked``
(``randn x 2`` plus 20 tokens at 12-18, a confident step); ``flat`` (``randn x 0.3``, a
high-entropy step). Calls, one program per row (the split path reads the same amount, spread over
programs): the decode-loop chain (tokens only) with temperature 0.7 + top-k 50 + top-p 0.9 and
with temperature 0.7 + top-p 0.9, and beam top-k with log-softmax (k = 8). Prints a table;
``--csv`` appends rows.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path

if __name__ == "__main__":
    # Before triton is imported: CPU tensors run interpreted. Only as a script: an import (a test's)
    # must not switch the interpreter on for the whole process.
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from bench.common import append_rows  # noqa: E402
from bench.row_kinds import ROWS, logits  # noqa: E402
from pydecode.ops import beam as B  # noqa: E402
from pydecode.ops import sampling as S  # noqa: E402
from pydecode.triton_kernels import _common  # noqa: E402
from pydecode.triton_kernels import beam as triton_beam  # noqa: E402
from pydecode.triton_kernels import sampling as triton_sampling  # noqa: E402

BEAM_PASSES = ("_row_stats", "_row_mass", "_digit_hist", "_copy_top_scores", "_write_top")  # each over [lo, hi)


def _count(value) -> int:  # noqa: ANN001
    """Elements an interpreter mask or bound selects (a Python scalar counts as its value / 1)."""
    data = getattr(getattr(value, "handle", None), "data", value)
    return int(data.sum()) if hasattr(data, "sum") else int(data)


class Counter:
    """Wraps the jitted functions that read the row (the interpreter calls them as Python) and sums
    the elements they load."""

    def __init__(self) -> None:
        self.loaded = 0
        self._saved: list[tuple[object, str, object]] = []

    def wrap(self, module, name: str, elements) -> None:  # noqa: ANN001
        inner = getattr(module, name)

        def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.loaded += elements(*args)
            return inner(*args, **kwargs)

        self._saved.append((module, name, inner))
        setattr(module, name, counted)

    def restore(self) -> None:
        for module, name, inner in reversed(self._saved):
            setattr(module, name, inner)


def _span(row_ptr, lo, hi, *rest) -> int:  # noqa: ANN001
    return _count(hi) - _count(lo)


def count_reads(call, vocab: int, rows: int) -> float:  # noqa: ANN001
    counter = Counter()
    # the chain loads every row element through load_row(row_ptr, cols, mask, ...)
    counter.wrap(triton_sampling, "load_row", lambda row_ptr, cols, mask, *rest: _count(mask))
    for name in BEAM_PASSES:
        counter.wrap(triton_beam, name, _span)
    try:
        call()
    finally:
        counter.restore()
    return counter.loaded / (vocab * rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--rows", type=int, default=4, help="rows per kind")
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    _common.SPLITS_OVERRIDE = 1  # one program per row
    seed = torch.arange(args.rows, dtype=torch.int64)
    offset = torch.zeros(args.rows, dtype=torch.int64)
    calls = {
        "T0.7 top-k 50 top-p 0.9 sample": lambda x: S.filter_and_sample(
            x, temperature=0.7, top_k=50, top_p=0.9, seed=seed, offset=offset, backend="triton"),
        "T0.7 top-p 0.9 sample": lambda x: S.filter_and_sample(
            x, temperature=0.7, top_p=0.9, seed=seed, offset=offset, backend="triton"),
        "beam top-k 8 (log-softmax)": lambda x: B.beam_topk(
            x, torch.zeros(args.rows), 1, 8, apply_log_softmax=True, backend="triton"),
    }
    results = []
    print(f"row reads per call, vocab {args.vocab}, {args.rows} rows per kind (Triton interpreter, CPU)")
    print(f"{'rows':<10} {'call':<32} {'tiles off':>9} {'tiles on':>9}")
    for i, kind in enumerate(ROWS):
        x = logits(kind, args.rows, args.vocab, seed=100 + i)
        for name, call in calls.items():
            reads = {}
            for early in ("0", "1"):
                os.environ[_common.EARLY_TILE_ENV] = early
                reads[early] = count_reads(functools.partial(call, x), args.vocab, args.rows)
            print(f"{kind:<10} {name:<32} {reads['0']:>9.2f} {reads['1']:>9.2f}")
            results.append(dict(vocab=args.vocab, rows=args.rows, logits=kind, call=name,
                                reads_tiles_off=round(reads["0"], 3), reads_tiles_on=round(reads["1"], 3)))
    os.environ.pop(_common.EARLY_TILE_ENV, None)
    if args.csv is not None:
        append_rows(args.csv, results)


if __name__ == "__main__":
    main()
