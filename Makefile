# Convenience targets; the README's two quick-start commands do not need make.
PY ?= python
ASAN_LIBS = $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libubsan.so)

.PHONY: install test lint asan rebuild bench-ops

install:
	pip install -c constraints-cpu.txt -e ".[test]"

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .

# CPU kernels built with AddressSanitizer + UBSan, then the op tests under them. Python itself
# is not instrumented, so the sanitizer runtimes are preloaded; leak checking is off (CPython
# and torch keep allocations alive at exit by design). Ends with a normal rebuild.
asan:
	PYDECODE_SANITIZE=1 PYDECODE_BUILD_CUDA=0 pip install --no-deps --no-build-isolation -e .
	LD_PRELOAD="$(ASAN_LIBS)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(PY) -m pytest -q -x tests/ops; \
	  status=$$?; $(MAKE) rebuild; exit $$status

rebuild:
	pip install --no-deps --no-build-isolation -e .

bench-ops:
	$(PY) -m bench.bench_ops --quick --csv bench/results/ops_cpu.csv
