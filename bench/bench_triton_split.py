"""``python -m bench.bench_triton_split``: the Triton sampling and beam kernels' split path (rows spread
over several programs at small batches, triton_kernels/_common.py ``split_count``) against one
program per row, on a GPU.

For batch 1/2/4/8 x vocab 32000/128256/152064 (bfloat16 logits ``randn * 3``), times ``greedy``,
``filter_and_sample`` (temperature 0.7, top-k 50, top-p 0.9; tokens only: the decode-loop call)
and ``beam_topk`` (batch items x 4 beams, k = 8) with the general rule's split count (forced, also for the
ops that only split when forced or from a vocabulary size: greedy, beam top-k, sampling below 65536) and with one
program per row, checks that both give the same tokens, prints a table and appends CSV rows
(``--csv``). Times are CUDA-event medians over ``--repeats`` calls each, after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from bench.common import append_rows
from pydecode.ops import beam as B
from pydecode.ops import sampling as S
from pydecode.triton_kernels import _common


def _time_us(fn, repeats: int) -> float:  # noqa: ANN001
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 128256, 152064])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_triton_split needs a CUDA GPU")
    rows = []
    print(f"{'op':20} {'batch':>5} {'vocab':>6} {'splits':>6} {'split us':>9} {'one-prog us':>11} {'speed-up':>8}")
    for vocab in args.vocab:
        for batch in args.batch:
            x = (torch.randn(batch, vocab, device="cuda") * 3).to(torch.bfloat16)
            seed = torch.arange(batch, dtype=torch.int64, device="cuda") + 7
            offset = torch.zeros(batch, dtype=torch.int64, device="cuda")
            beam_scores = torch.zeros(batch * 4, device="cuda")
            beams = (torch.randn(batch * 4, vocab, device="cuda") * 3).to(torch.bfloat16)
            ops = {
                "greedy": lambda x=x: S.greedy(x, backend="triton"),
                "filter_and_sample": lambda x=x, seed=seed, offset=offset: S.filter_and_sample(
                    x, temperature=0.7, top_k=50, top_p=0.9, seed=seed, offset=offset, backend="triton").tokens,
                # beam search: batch items x 4 beams, k = 8 (the token ids stand for the whole result)
                "beam_topk x4 beams": lambda beams=beams, beam_scores=beam_scores: B.beam_topk(
                    beams, beam_scores, 4, 8, backend="triton").token_ids,
            }
            for name, fn in ops.items():
                # the slice count of the general rule, forced: some ops only split when forced
                splits = _common.split_count(batch * 4 if name.startswith("beam") else batch, vocab, x)
                result = {}
                for mode in ("split", "one"):
                    _common.SPLITS_OVERRIDE = splits if mode == "split" else 1
                    result[mode] = (_time_us(fn, args.repeats), fn())
                _common.SPLITS_OVERRIDE = None
                same = bool(torch.equal(result["split"][1], result["one"][1]))
                split_us, one_us = result["split"][0], result["one"][0]
                print(f"{name:20} {batch:5d} {vocab:6d} {splits:6d} {split_us:9.1f} {one_us:11.1f} "
                      f"{one_us / split_us:7.2f}x" + ("" if same else "  TOKENS DIFFER"))
                rows.append(dict(op=name, batch=batch, vocab=vocab, splits=splits, split_us=round(split_us, 2),
                                 one_program_us=round(one_us, 2), same_tokens=same,
                                 device=torch.cuda.get_device_name(0)))
    if args.csv is not None:
        append_rows(args.csv, rows)
    if not all(r["same_tokens"] for r in rows):
        raise SystemExit("the split path and one program per row gave different tokens")


if __name__ == "__main__":
    main()
