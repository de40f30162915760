#!/usr/bin/env bash
# One-command check on the GPU host (../shared/GPU.md): environment, build, GPU tests,
# compute-sanitizer over the CUDA op tests, op benchmarks, and a summary.
#
#   bash bench/gpu_check.sh OUT_DIR        (e.g. bash bench/gpu_check.sh "$OUT")
#
# The host has no network: pydecode installs with --no-deps --no-build-isolation against the
# host's own torch/triton. Every step runs even if an earlier one fails; the exit status is
# non-zero when any step failed. Logs and CSVs land in OUT_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: bench/gpu_check.sh OUT_DIR}"
mkdir -p "$out"
declare -a summary=()
status=0
# The whole check runs inside GPU_CHECK_BUDGET seconds (default 480: the device tool's 10-minute
# command limit less the machine's start and a margin). Every step after the build gets the smaller
# of its own timeout and what is left of the budget; a step with under 15 s left is skipped, so the
# summary is always printed and the logs are always complete.
budget="${GPU_CHECK_BUDGET:-480}"

# GPU_CHECK_ONLY="build gpu-tests ..." runs just the named steps (a second, shorter pass on the same
# lease, say); the others are skipped. All the steps take longer than one 10-minute device command,
# and a session's device time is 15 minutes (the H200 run of b16b8d9: build 129 s, the GPU tests
# past 240 s), so presets split them over commands on one warm lease (the build stays installed):
# GPU_CHECK_ONLY=first (build, GPU tests: GPU_CHECK_BUDGET=480 GPU_TESTS_LIMIT=330), then
# GPU_CHECK_ONLY=second (what the speed targets need: the op benchmarks, the kernel-time profile
# with the switches that decide defaults, and Nsight Compute's why: about 395 s), and
# GPU_CHECK_ONLY=third (the sanitizers, generate and the switch-by-switch benchmarks) when time is left.
only="${GPU_CHECK_ONLY:-}"
case "$only" in
  first) only="env build show-config gpu-tests" ;;
  second) only="bench-ops-sampling profile-ops profile-cuda-topk-scan-off profile-cuda-warp-finish-off
                profile-cuda-beam-unsplit ncu-kernels" ;;
  third) only="sanitizer-memcheck bench-generate profile-triton-stages-off bench-triton-split bench-triton-early-off
               bench-ops-key-bins-off sanitizer-racecheck bench-ops-topk-scan-off bench-ops-chain-full-row bench-triton-16-pivots
               bench-triton-4-stages bench-ops-chain-unsplit bench-triton-persistent bench-triton-one-per-row
               bench-ops-processors bench-dispatch bench-philox" ;;
esac
only="$(echo $only)"  # one space between names: the match below pads them with single spaces

step() {  # step NAME TIMEOUT_S COMMAND...: run under a timeout, log to $out/NAME.log, record the outcome
  local name="$1" limit="$2"; shift 2
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then
    summary+=("SKIP  $name (not in GPU_CHECK_ONLY)")
    return
  fi
  local left=$((budget - SECONDS))
  if [ "$left" -lt 15 ]; then
    summary+=("SKIP  $name (budget of ${budget} s spent)")
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local start=$SECONDS
  echo "== $name (${limit} s at most): $*"
  timeout "$limit" "$@" > >(tee "$out/$name.log") 2>&1
  local rc=$?
  if [ $rc -eq 0 ]; then
    summary+=("PASS  $name ($((SECONDS - start)) s)")
  else
    [ $rc -eq 124 ] && echo "(timed out after ${limit} s)" >> "$out/$name.log"
    summary+=("FAIL  $name ($((SECONDS - start)) s, exit $rc, see $name.log)")
    status=1
  fi
}

step env 30 bash -c 'nvidia-smi; python --version; python -c "import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__)"; nvcc --version'
# `python -m pip`: on the GPU host a bare `pip` is the system one, outside the venv that has torch.
# PYDECODE_CUDA_ARCHS (say "90" on an H100/H200) builds only the card's architecture, to save time.
step build 240 env PYDECODE_BUILD_CUDA=1 python -m pip install --no-deps --no-build-isolation -e .
# The GPU check is what verifies the cuda/triton kernels: let automatic selection use them here
# (elsewhere it keeps CUDA tensors on the torch reference until this check has passed).
export PYDECODE_GPU_KERNELS=1
step show-config 30 python -m pydecode show-config
# GPU tests: in 8 processes when pytest-xdist is there (Triton compiles dominate), with a per-test
# limit when pytest-timeout is there (a hung kernel fails its test, not the whole step).
pytest_opts=(-m gpu -q -rs -p no:cacheprovider --maxfail=60 --durations=15)
python -c "import xdist" 2>/dev/null && pytest_opts+=(-n 12)
python -c "import pytest_timeout" 2>/dev/null && pytest_opts+=(--timeout 120)
# Failures (with tracebacks) and slow tests go to gpu-tests-report.log as they happen (tests/conftest.py).
step gpu-tests "${GPU_TESTS_LIMIT:-240}" env PYDECODE_TEST_REPORT="$out/gpu-tests-report.log" python -m pytest "${pytest_opts[@]}"
# Op benchmarks on the GPU: every backend vs the torch reference vs transformers vs FlashInfer (when
# importable), ratio to the one-pass floor measured in the same run. Sampling + beam cases on the
# issue's grid (batch 1/8/64/256 x vocab 32000/128256/152064, bfloat16 logits); the logits-processor
# cases at two shapes.
bench_ops=(python -m bench.bench_ops --device cuda --dtype bfloat16 --budget 0.1 --repeats 15 --wait-idle 0
           --retries 0 --no-llama --csv "$out/ops_cuda.csv")
step bench-ops-sampling 135 "${bench_ops[@]}" \
  --cases temp_topk_topp_sample temp_topp_sample temp_minp_sample beam_topk rep_temp_topk_topp_sample
# Where each call's time goes (bench/profile_ops.py): eager wall time, CUDA graph replay (issue 6's
# batch-1 target), kernel time and launches from torch.profiler, the longest kernels.
step profile-ops 75 python -m bench.profile_ops --device cuda --csv "$out/profile_ops.csv"
# The CUDA chain's lists from the key-bin / gap histograms (PYDECODE_CUDA_TOPK_SCAN=0) against the
# default one-read list (bfloat16 rows with k <= 64, and top-p or min-p rows without top-k, list
# their candidates as they read the row; so do beam top-k's rows and slices) in profile_ops.csv:
# the same outputs, the kernel times compared (T + top-k + top-p, T + top-p, T + min-p and beam
# top-k at batch 1 / 64 / 256).
step profile-cuda-topk-scan-off 55 env PYDECODE_CUDA_TOPK_SCAN=0 python -m bench.profile_ops --device cuda \
  --backends cuda --cases temp_topk_topp_sample temp_topp_sample temp_minp_sample beam_topk \
  --csv "$out/profile_ops_cuda_topk_scan_off.csv"
# The CUDA chain's stages on a short list run by the whole block (PYDECODE_CUDA_WARP_FINISH=0) against
# the default one-warp finish in profile_ops.csv (the decode call: tokens and log-probs; top-k rows'
# lists cut to top-k's set first): the same outputs, the kernel times compared.
step profile-cuda-warp-finish-off 25 env PYDECODE_CUDA_WARP_FINISH=0 python -m bench.profile_ops --device cuda \
  --backends cuda --cases temp_topk_topp_sample --csv "$out/profile_ops_cuda_warp_finish_off.csv"
# CUDA beam top-k's split rows (small batches: slices' lists, then one merge per batch item) against
# one block per row (PYDECODE_CUDA_BEAM_SPLITS=1); the default's rows are in profile_ops.csv.
step profile-cuda-beam-unsplit 25 env PYDECODE_CUDA_BEAM_SPLITS=1 python -m bench.profile_ops --device cuda \
  --backends cuda --cases beam_topk --csv "$out/profile_ops_cuda_beam_unsplit.csv"
# Triton's row loops unpipelined (PYDECODE_TRITON_STAGES=1: one 16-byte load a thread in flight, as
# before) against the default 3 stages in profile_ops.csv: the same outputs, the kernel times compared.
step profile-triton-stages-off 40 env PYDECODE_TRITON_STAGES=1 python -m bench.profile_ops --device cuda \
  --backends triton --csv "$out/profile_ops_triton_stages_off.csv"
# Triton split path (rows over several programs at batch 1-8) vs one program per row, same tokens.
step bench-triton-split 45 python -m bench.bench_triton_split --csv "$out/triton_split.csv"
# The fused chain's split-vocabulary path (several blocks per row at small batch) against one block
# per row: the same cases at batch 1 and 8 with the split turned off (compare with ops_cuda.csv).
step bench-ops-chain-unsplit 40 env PYDECODE_CUDA_CHAIN_SPLITS=1 "${bench_ops[@]/ops_cuda.csv/ops_cuda_unsplit.csv}" \
  --batch 1 8 --backends cuda --no-transformers --no-flashinfer --cases temp_topk_topp_sample temp_topp_sample
# The chain's compact path (stages on a candidate list in shared memory) against every stage on the
# full row (PYDECODE_CUDA_CHAIN_COMPACT=0): same outputs; compare with ops_cuda.csv.
step bench-ops-chain-full-row 40 env PYDECODE_CUDA_CHAIN_COMPACT=0 "${bench_ops[@]/ops_cuda.csv/ops_cuda_full_row.csv}" \
  --batch 1 64 256 --vocab 128256 --backends cuda --no-transformers --no-flashinfer \
  --cases temp_topk_topp_sample temp_topp_sample
# The compact paths' key-bin lists (top-k chain without the one-read list, and beam top-k: the
# statistics pass histograms the keys' top bits, one read fewer) against PYDECODE_CUDA_KEY_BINS=0
# (the gap histogram's read back): same outputs; compare the chain with ops_cuda_topk_scan_off.csv,
# beam top-k with ops_cuda.csv.
step bench-ops-key-bins-off 40 env PYDECODE_CUDA_KEY_BINS=0 PYDECODE_CUDA_TOPK_SCAN=0 \
  "${bench_ops[@]/ops_cuda.csv/ops_cuda_key_bins_off.csv}" \
  --batch 64 256 --vocab 128256 --backends cuda --no-transformers --no-flashinfer \
  --cases temp_topk_topp_sample beam_topk
# The lists from the histograms (PYDECODE_CUDA_TOPK_SCAN=0) on the op benchmark's shapes (eager
# calls; compare with ops_cuda.csv, where the one-read list runs).
step bench-ops-topk-scan-off 50 env PYDECODE_CUDA_TOPK_SCAN=0 "${bench_ops[@]/ops_cuda.csv/ops_cuda_topk_scan_off.csv}" \
  --batch 1 64 256 --vocab 32000 128256 --backends cuda --no-transformers --no-flashinfer \
  --cases temp_topk_topp_sample rep_temp_topk_topp_sample temp_topp_sample temp_minp_sample beam_topk
# Triton's early tiles (the top-k select copies the candidates once they fit and finishes on them;
# top-p without top-k finishes on the entries above the 513th largest when the nucleus lies there)
# against PYDECODE_TRITON_EARLY_TILE=0: same tokens; compare with ops_cuda.csv.
step bench-triton-early-off 40 env PYDECODE_TRITON_EARLY_TILE=0 "${bench_ops[@]/ops_cuda.csv/ops_triton_early_off.csv}" \
  --batch 1 64 256 --vocab 128256 --backends triton --no-transformers --no-flashinfer \
  --cases temp_topk_topp_sample temp_topp_sample beam_topk
# Triton's top-p search at 16 pivots a pass (fewer reads, ~3.7x the instructions per pass; the
# default is 4: bench/triton_pass_cost.py) against ops_cuda.csv's triton rows.
step bench-triton-16-pivots 40 env PYDECODE_TRITON_PIVOTS=16 "${bench_ops[@]/ops_cuda.csv/ops_triton_16_pivots.csv}" \
  --batch 64 256 --vocab 128256 --backends triton --no-transformers --no-flashinfer --cases temp_topp_sample
# Triton's row loops with 4 pipeline stages (one more block in flight) against the default 3.
step bench-triton-4-stages 40 env PYDECODE_TRITON_STAGES=4 python -m bench.profile_ops --device cuda \
  --backends triton --csv "$out/profile_ops_triton_4_stages.csv"
if command -v compute-sanitizer >/dev/null 2>&1; then
  # The sanitizer is 50-100x slower: CUDA op tests only, big shapes and long sweeps deselected
  # ("big" / "thorough" in the test id). racecheck is slower again (on the H200 it got through 3
  # tests in 40 s): it runs one small test per kernel that shares memory between threads.
  step sanitizer-memcheck 70 compute-sanitizer --tool memcheck --error-exitcode 1 \
    python -m pytest -m gpu -q -p no:cacheprovider -k "cuda and not big and not thorough" tests/ops
  race_tests="split_chain_small or compact_path_small or greedy_split_rows or beam_topk_ties_and_bad_rows or penalties_degenerate_shapes"
  race_tests+=" or long_generation_uses_the_global_table or sequence_bias_sums_in_table_order or hash_extreme_thresholds"
  step sanitizer-racecheck 70 compute-sanitizer --tool racecheck --error-exitcode 1 \
    python -m pytest -m gpu -q -p no:cacheprovider -k "cuda and ($race_tests)" tests/ops
else
  summary+=("SKIP  compute-sanitizer (not installed)")
fi
# Triton's persistent programs (batch 1024: 528 programs looping over rows on a 132-SM card) against
# one program per row (PYDECODE_TRITON_PROGRAMS=1024).
persistent=(python -m bench.bench_ops --device cuda --dtype bfloat16 --budget 0.1 --repeats 15 --wait-idle 0
            --retries 0 --no-llama --batch 1024 --vocab 128256 --backends triton --no-transformers --no-flashinfer
            --cases temp_topk_topp_sample beam_topk)
step bench-triton-persistent 40 "${persistent[@]}" --csv "$out/triton_persistent.csv"
step bench-triton-one-per-row 40 env PYDECODE_TRITON_PROGRAMS=1024 "${persistent[@]}" --csv "$out/triton_one_per_row.csv"
# Why the row kernels take the time they take (Nsight Compute on the sampling chain and beam top-k,
# cuda and triton, batch 1 and 256 x 128256: bandwidth against the card's, occupancy, warp stall
# reasons); the kernel-name filter and launch count keep ncu's replays to the row kernels.
if command -v ncu >/dev/null 2>&1; then
  step ncu-kernels 120 ncu --kernel-name regex:'filter_chain|split_pass|beam_row|beam_split|beam_slice' --launch-count 48 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --csv \
    --log-file "$out/ncu_kernels.csv" python -m bench.ncu_calls --batch 1 256 --calls 1
else
  summary+=("SKIP  ncu-kernels (ncu not installed)")
fi
step bench-ops-processors 35 "${bench_ops[@]}" --batch 64 256 --vocab 128256 \
  --cases repetition_penalty watermark_hash watermark_hf no_repeat_ngram
# End to end on the GPU: the tiny Llama of issue 4's benchmark moved to CUDA (per-step overhead, not
# bandwidth, decides here).
step bench-generate 60 python -m bench.bench_generate --device cuda --vocab 32000 128256 --repeats 5 \
  --csv "$out/generate_cuda.csv"
step bench-dispatch 20 python -m bench.bench_dispatch --repeats 300 --csv "$out/dispatch.csv"
step bench-philox 20 python -m bench.bench_philox --device cuda --batch 1 8 64 256 --vocab 32000 128256 152064 \
  --csv "$out/philox.csv"
for csv_name in ops_cuda ops_cuda_unsplit ops_cuda_full_row ops_cuda_key_bins_off ops_cuda_topk_scan; do
if [ -f "$out/$csv_name.csv" ]; then
  echo
  echo "== $csv_name on $(python -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null): median us (x one-pass floor)"
  python - "$out/$csv_name.csv" <<'PY' | tee "$out/${csv_name/ops_cuda/ops_summary}.txt"
import csv, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1])))
table = defaultdict(dict)
names = []
for r in rows:
    if r["provider"] == "floor":
        continue
    name = r["provider"] if r["provider"] != "pydecode" else r["backend"]
    if name not in names:
        names.append(name)
    table[(r["case"], int(r["batch"]), int(r["vocab"]))][name] = (float(r["median_us"]), float(r["ratio_to_floor"]))
print("case batch vocab " + " ".join(names))
for (case, batch, vocab), cells in table.items():
    print(case, batch, vocab, " ".join(f"{cells[n][0]:.0f}({cells[n][1]:.1f}x)" if n in cells else "-" for n in names))
PY
fi
done

echo
echo "== summary ($(python -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || echo 'no GPU'))"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
exit $status
