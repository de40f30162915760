"""Per-step cost of the processor plan vs transformers' processor list (the logits -> token part of a step).

Issue 4's sampling case (repetition penalty 1.1, temperature 0.8, top-k 50, top-p 0.9), batch 8, 32-token
prompts growing by one sampled token per step, on CPU. transformers: its processor list, softmax and
``torch.multinomial``; pydecode: ``plan.next_tokens`` (fused penalties + one ``filter_and_sample``), also
with ``need_scores`` and with the penalty state off. Runs are interleaved (A, B, A, B, ...) so machine
load hits all alike; the table gives the median microseconds per step and the median per-pair ratio.

    python -m bench.bench_plan [--vocab 32000 128256] [--steps 64] [--repeats 7] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import transformers.generation.logits_process as hf

from pydecode.generation import processors as pd
from pydecode.generation.plan import build_plan

BATCH, PROMPT = 8, 32


def _lists():
    ours = pd.LogitsProcessorList([
        pd.RepetitionPenaltyLogitsProcessor(1.1), pd.TemperatureLogitsWarper(0.8), pd.TopKLogitsWarper(50),
        pd.TopPLogitsWarper(0.9),
    ])
    theirs = hf.LogitsProcessorList([
        hf.RepetitionPenaltyLogitsProcessor(1.1), hf.TemperatureLogitsWarper(0.8), hf.TopKLogitsWarper(50),
        hf.TopPLogitsWarper(0.9),
    ])
    return ours, theirs


def bench_vocab(vocab: int, args: argparse.Namespace, ours, theirs) -> None:  # noqa: ANN001
    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, vocab, (BATCH, PROMPT), generator=g)
    logits = [torch.randn(BATCH, vocab, generator=g) * 3 for _ in range(8)]

    def run_hf(steps: int) -> None:
        ids = prompt
        for s in range(steps):
            probs = theirs(ids, logits[s % 8]).softmax(-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1)], 1)

    def run_plan(steps: int, state: bool, need_scores: bool) -> None:
        plan = build_plan(ours, None, strategy="sample", use_penalty_state=state)
        ids, seeds = prompt, torch.arange(BATCH)
        for s in range(steps):
            tokens, _ = plan.next_tokens(ids, logits[s % 8], seeds, torch.full((BATCH,), s), need_scores)
            ids = torch.cat([ids, tokens[:, None]], 1)

    variants = {
        "transformers list+multinomial": run_hf,
        "plan (state)": lambda n: run_plan(n, True, False),
        "plan (stateless)": lambda n: run_plan(n, False, False),
        "plan (state, need_scores)": lambda n: run_plan(n, True, True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn(4)  # warm-up
    for _ in range(args.repeats):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn(args.steps)
            times[name].append((time.perf_counter() - start) / args.steps * 1e6)
    base = times["transformers list+multinomial"]
    for name, ts in times.items():
        ratio = statistics.median(b / t for b, t in zip(base, ts))
        print(f"{vocab:>7} {name:<28} {statistics.median(ts):>9.0f} {ratio:>18.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 128256])
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ours, theirs = _lists()
    print(f"batch {BATCH}, prompt {PROMPT}, {args.steps} steps, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'vocab':>7} {'variant':<28} {'us/step':>9} {'x vs transformers':>18}")
    for vocab in args.vocab:
        bench_vocab(vocab, args, ours, theirs)


if __name__ == "__main__":
    main()
