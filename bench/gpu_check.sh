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

step() {  # step NAME COMMAND...: run, log to $out/NAME.log, record pass/fail and seconds
  local name="$1"; shift
  local start=$SECONDS
  echo "== $name: $*"
  if "$@" > >(tee "$out/$name.log") 2>&1; then
    summary+=("PASS  $name ($((SECONDS - start)) s)")
  else
    summary+=("FAIL  $name ($((SECONDS - start)) s, see $name.log)")
    status=1
  fi
}

step env bash -c 'nvidia-smi; python --version; python -c "import torch, triton; print(torch.__version__, torch.version.cuda, triton.__version__)"; nvcc --version'
# `python -m pip`: on the GPU host a bare `pip` is the system one, outside the venv that has torch.
step build env PYDECODE_BUILD_CUDA=1 python -m pip install --no-deps --no-build-isolation -e .
step show-config python -m pydecode show-config
step gpu-tests python -m pytest -m gpu -x -q -rs
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in memcheck racecheck; do
    step "sanitizer-$tool" compute-sanitizer --tool "$tool" --error-exitcode 1 \
      python -m pytest -m gpu -q -x -k cuda tests/ops
  done
else
  summary+=("SKIP  compute-sanitizer (not installed)")
fi
step bench-dispatch python -m bench.bench_dispatch --csv "$out/dispatch.csv"
step bench-philox python -m bench.bench_philox --device cuda --batch 1 8 64 256 --vocab 32000 128256 152064 \
  --csv "$out/philox.csv"

echo
echo "== summary ($(python -c 'import torch; print(torch.cuda.get_device_name(0))' 2>/dev/null || echo 'no GPU'))"
printf '%s\n' "${summary[@]}" | tee "$out/summary.txt"
exit $status
