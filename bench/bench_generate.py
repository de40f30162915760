"""End-to-end generate throughput: pydecode.generate vs transformers' model.generate.

Issue 4's benchmark: a tiny random Llama (2 layers, hidden 128, built from a config), batch 8,
32-token prompts, 64 new tokens, on CPU; cases greedy, sampling (top-k 50, top-p 0.9, temperature
0.8, repetition penalty 1.1) and beam search (4 beams); vocab 32000 and 128256. The two
implementations run interleaved (A, B, A, B, ...) on the same model and prompts so machine load
hits both alike; the statistic is the median of the per-pair time ratios (and the min times).
(The timing loop is pydecode.benchmarks.generate.compare, shared with `pydecode bench`.)
Both must generate the same number of tokens (EOS is disabled so every row runs 64 steps; greedy
and beam outputs are also checked to be identical).

    python -m bench.bench_generate [--vocab 32000 128256] [--repeats 7] [--threads 2]
        [--device cpu|cuda] [--csv bench/results/generate_cpu.csv]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from pydecode.benchmarks.common import append_csv, environment, print_table
from pydecode.benchmarks.generate import compare

CASES = {
    "greedy": {"do_sample": False},
    "sample": {"do_sample": True, "top_k": 50, "top_p": 0.9, "temperature": 0.8, "repetition_penalty": 1.1},
    "beam4": {"num_beams": 4, "do_sample": False},
}


def tiny_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 128256])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=32)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu (issue 4's benchmark) or cuda")
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for vocab in args.vocab:
        model = tiny_llama(vocab).to(args.device)
        ids = torch.randint(3, vocab, (args.batch, args.prompt), generator=torch.Generator().manual_seed(1))
        ids = ids.to(args.device)
        tokens = args.batch * args.new
        for case in args.cases:
            kw = dict(max_new_tokens=args.new, eos_token_id=None, pad_token_id=0, **CASES[case])

            cmp = compare(model, ids, kw, args.repeats, check=True)  # warm-up, output check, timed pairs
            same = bool(cmp.same)
            if case != "sample" and not same:
                raise AssertionError(f"{case}: pydecode and transformers outputs differ")
            t_hf, t_pd, ratios = cmp.hf_s, cmp.pd_s, cmp.ratios
            row = {
                "bench": "generate", "case": case, "provider": "pydecode", "backend": "auto", "batch": args.batch,
                "vocab": vocab, "dtype": "float32",
                "median_us": statistics.median(t_pd) * 1e6,
                "p10_us": min(t_pd) * 1e6, "p90_us": max(t_pd) * 1e6,
                "speedup_vs_transformers": statistics.median(ratios),
                "repeats": args.repeats, "threads": torch.get_num_threads(),
                "other_cpu": None if cmp.other_cpu is None else round(cmp.other_cpu, 2),
                "params": f"prompt={args.prompt} new={args.new} {CASES[case]}",
                "note": f"transformers median {statistics.median(t_hf) * 1e3:.1f} ms, ids identical: {same}",
                "tok_s_hf": tokens / statistics.median(t_hf), "tok_s_pd": tokens / statistics.median(t_pd),
                "tokens_per_s": tokens / statistics.median(t_pd), "ids_identical": same,
                "hf_ms": statistics.median(t_hf) * 1e3, "pd_ms": statistics.median(t_pd) * 1e3,
            }
            rows.append(row)
            print(f"vocab {vocab} {case}: transformers {row['hf_ms']:.1f} ms ({row['tok_s_hf']:.0f} tok/s), "
                  f"pydecode {row['pd_ms']:.1f} ms ({row['tok_s_pd']:.0f} tok/s), "
                  f"speedup x{row['speedup_vs_transformers']:.2f} (other load {row['other_cpu']})", flush=True)
    env = environment()
    print(f"# {env['device']}, torch {env['torch']}, transformers {env['transformers']}, git {env['git_sha']}, "
          f"{torch.get_num_threads()} threads")
    print_table(rows, ["vocab", "case", "hf_ms", "pd_ms", "tok_s_hf", "tok_s_pd", "speedup_vs_transformers",
                       "other_cpu"])
    if args.csv:
        append_csv(args.csv, rows)


if __name__ == "__main__":
    main()
