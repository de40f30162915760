"""``pydecode demo``: decode with ``pydecode.ops`` on a tiny random Llama, checked against transformers.

Until ``pydecode.generate`` lands, this is the honest end-to-end check of the foundation:
a plain KV-cache decode loop whose logits processing is done by pydecode's ops, compared
token for token with ``transformers``' ``generate`` on the same model, plus a demonstration
of the randomness contract (same seed, same tokens, whatever the batch row). The model is
built from a config with seeded random weights: nothing is downloaded.
"""

from __future__ import annotations

import inspect
import time
from typing import Callable

import torch

from . import ops, sysinfo

REPETITION_PENALTY = 1.3
NO_REPEAT_NGRAM = 3
SAMPLING = {"temperature": 0.8, "top_k": 50, "top_p": 0.9}


def tiny_llama(seed: int):
    """A 2-layer Llama with seeded random weights (vocab 1024, about 0.2M parameters)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


@torch.inference_mode()
def decode(model, prompt: torch.Tensor, steps: int, pick: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]):
    """KV-cache decode loop: ``pick(logits_fp32, ids_so_far, step) -> next ids``; returns (ids, op seconds)."""
    from transformers import DynamicCache

    ids = prompt
    cache = DynamicCache()
    # transformers >= 5.2x renamed the forward argument `past_key_values` to `cache`.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=prompt, use_cache=True, **{cache_arg: cache})
    op_seconds = 0.0
    for step in range(steps):
        logits = out.logits[:, -1, :].float()
        start = time.perf_counter()
        next_ids = pick(logits, ids, step)
        op_seconds += time.perf_counter() - start
        ids = torch.cat([ids, next_ids[:, None]], dim=1)
        out = model(input_ids=next_ids[:, None], use_cache=True, **{cache_arg: cache})
    return ids, op_seconds


def greedy_with_penalties(logits: torch.Tensor, ids: torch.Tensor, step: int) -> torch.Tensor:
    logits = ops.repetition_penalty(logits, ids, REPETITION_PENALTY)
    logits = ops.no_repeat_ngram_mask(logits, ids, NO_REPEAT_NGRAM)
    return ops.greedy(logits)


def sampler(seed: torch.Tensor, prompt_len: int) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]:
    def pick(logits: torch.Tensor, ids: torch.Tensor, step: int) -> torch.Tensor:
        # offset = the request's position: its tokens then depend on nothing but its own seed.
        return ops.filter_and_sample(logits, **SAMPLING, seed=seed, offset=prompt_len + step).tokens

    return pick


def run_demo(steps: int = 24, batch: int = 2, seed: int = 0) -> int:
    """Run the demo; 0 when every check passed, 1 otherwise."""
    from transformers import GenerationConfig as HFGenerationConfig

    info = sysinfo.collect()
    print(f"pydecode {info['pydecode']} | torch {info['versions']['torch']} | "
          f"transformers {info['versions']['transformers']} | {sysinfo.hardware_line()}")
    ready = [b for b, state in info["backends"].items() if state.startswith("available")]
    print(f"backends available: {', '.join(ready)}")
    model = tiny_llama(seed)
    prompt = torch.randint(3, model.config.vocab_size, (batch, 12), generator=torch.Generator().manual_seed(seed))
    checks: list[tuple[str, bool]] = []

    # 1. Greedy + repetition penalty + no-repeat-ngram: identical ids to transformers.
    hf_config = HFGenerationConfig(
        do_sample=False, max_new_tokens=steps, min_new_tokens=steps, repetition_penalty=REPETITION_PENALTY,
        no_repeat_ngram_size=NO_REPEAT_NGRAM, pad_token_id=0, eos_token_id=2,
    )

    def hf_generate() -> torch.Tensor:
        with torch.inference_mode():
            return model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=hf_config)

    # min_new_tokens=steps keeps transformers from stopping at EOS; mirror its EOS mask.
    def greedy_no_eos(logits: torch.Tensor, ids: torch.Tensor, step: int) -> torch.Tensor:
        logits = logits.clone()
        logits[:, 2] = float("-inf")
        return greedy_with_penalties(logits, ids, step)

    hf_generate(), decode(model, prompt, 2, greedy_no_eos)  # warm-up: first calls pay one-time costs
    start = time.perf_counter()
    expected = hf_generate()
    hf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    ours, op_seconds = decode(model, prompt, steps, greedy_no_eos)
    ours_seconds = time.perf_counter() - start
    same = torch.equal(ours, expected)
    checks.append(("greedy + repetition_penalty + no_repeat_ngram == transformers.generate", same))
    print(f"\n[greedy] repetition_penalty={REPETITION_PENALTY}, no_repeat_ngram_size={NO_REPEAT_NGRAM}, "
          f"{batch} x {steps} new tokens")
    print(f"  transformers.generate : {hf_seconds * 1e3:8.1f} ms (one run after a warm-up)")
    print(f"  pydecode.ops loop     : {ours_seconds * 1e3:8.1f} ms ({op_seconds / steps * 1e6:.0f} us/step in ops, "
          f"backends: {_backends('repetition_penalty', 'no_repeat_ngram_mask', 'greedy')})")
    print(f"  first row new ids     : {ours[0, prompt.shape[1]:].tolist()}")
    print(f"  identical token ids   : {'yes' if same else 'NO'}")

    # 2. Sampling under the randomness contract.
    seeds = torch.arange(batch, dtype=torch.int64) + 1000 * seed + 7
    first, _ = decode(model, prompt, steps, sampler(seeds, prompt.shape[1]))
    again, _ = decode(model, prompt, steps, sampler(seeds, prompt.shape[1]))
    flipped, _ = decode(model, prompt.flip(0), steps, sampler(seeds.flip(0), prompt.shape[1]))
    checks.append(("same seed -> same sampled tokens", torch.equal(first, again)))
    checks.append(("a request's tokens do not depend on its batch row", torch.equal(first, flipped.flip(0))))
    print(f"\n[sample] {SAMPLING}, Philox seeds {seeds.tolist()}")
    print(f"  first row new ids     : {first[0, prompt.shape[1]:].tolist()}")
    print(f"  rerun identical       : {'yes' if checks[-2][1] else 'NO'}")
    print(f"  batch order invariant : {'yes' if checks[-1][1] else 'NO'}")

    failed = [name for name, ok in checks if not ok]
    print("\nall checks passed" if not failed else f"\nFAILED: {'; '.join(failed)}")
    return 0 if not failed else 1


def _backends(*names: str) -> str:
    return ", ".join(f"{n}={ops.resolve_name(n, torch.device('cpu'))}" for n in names)
