"""Compile the sampling / beam Triton kernels for an NVIDIA target without a GPU.

The interpreter (TRITON_INTERPRET=1, the CPU test run) executes the kernels' Python and so does
not catch what only the compiler rejects (a loop-carried variable changing type, a constexpr
reassigned, a zero-size tile on a dead branch). This script lowers every launcher variant to
PTX and cubin for sm_90 (triton's bundled ptxas) so those errors show up on a CPU-only machine:

    python -m bench.triton_compile_check            # ~1-2 minutes on a quiet 2-core machine
"""

from __future__ import annotations

import sys
import time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from pydecode.triton_kernels import beam, sampling

TARGET = GPUTarget("cuda", 90, 32)
CHAIN_SIG = {
    "x_ptr": "*bf16", "stride": "i64", "vocab": "i32", "temp_ptr": "*fp64", "top_k_ptr": "*i64",
    "top_p_ptr": "*fp64", "min_p_ptr": "*fp64", "min_keep": "i32", "seed_ptr": "*i64", "offset_ptr": "*i64",
    "tokens_ptr": "*i64", "logprobs_ptr": "*fp32", "rows_ptr": "*fp32", "filter_value": "fp32",
    "use_top_k": "i32", "use_top_p": "i32", "use_min_p": "i32", "cand_x_ptr": "*fp32", "cand_i_ptr": "*i32",
}
# (TRANSFORM, MIN_KEEP_GT1, WANT_TOKENS, WANT_LOGPROBS, WRITE_FILTERED, WRITE_KEPT_INPUT): the
# launchers' variants (filter_and_sample with outputs / decode-loop call; masks; renorm; probs sampling)
CHAIN_VARIANTS = [
    (2, False, True, True, True, False),
    (2, True, True, False, False, False),
    (0, False, False, False, True, False),
    (3, False, False, False, False, True),
    (3, False, True, False, False, False),
]


def compile_one(fn, signature: dict, constexprs: dict, name: str) -> bool:  # noqa: ANN001
    sig = dict(signature)
    sig.update({k: "constexpr" for k in constexprs})
    start = time.perf_counter()
    try:
        triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs), target=TARGET)
    except Exception as exc:  # report every failing variant, not just the first
        print(f"FAIL {name}: {str(exc)[-1500:]}", flush=True)
        return False
    print(f"ok   {name} ({time.perf_counter() - start:.1f} s)", flush=True)
    return True


def main() -> int:
    ok = True
    for transform, keep, tokens, logprobs, filtered, kept in CHAIN_VARIANTS:
        tile = tokens and not (filtered or kept)
        consts = dict(TRANSFORM=transform, MIN_KEEP_GT1=keep, WANT_TOKENS=tokens, WANT_LOGPROBS=logprobs,
                      WRITE_FILTERED=filtered, WRITE_KEPT_INPUT=kept, PRECISE=True, BLOCK=2048, BLOCK_P=512,
                      NP=16, TILE=tile, CAP=512)
        ok &= compile_one(sampling._filter_chain_kernel, CHAIN_SIG, consts, f"filter chain {consts}")
    ok &= compile_one(sampling._temperature_kernel,
                      {"x_ptr": "*fp16", "stride": "i64", "vocab": "i32", "temp_ptr": "*fp64", "out_ptr": "*fp32"},
                      dict(TRANSFORM=2, BLOCK=1024), "temperature")
    ok &= compile_one(sampling._greedy_kernel, {"x_ptr": "*fp32", "stride": "i64", "vocab": "i32", "out_ptr": "*i64"},
                      dict(BLOCK=4096), "greedy")
    for lsm in (True, False):
        ok &= compile_one(beam._beam_row_topk_kernel,
                          {"x_ptr": "*bf16", "stride": "i64", "vocab": "i32", "beam_scores_ptr": "*fp32",
                           "k_row": "i32", "out_scores_ptr": "*fp32", "out_tokens_ptr": "*i64"},
                          dict(LOG_SOFTMAX=lsm, PRECISE=True, BLOCK=2048), f"beam log_softmax={lsm}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
