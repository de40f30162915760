# Convenience targets; the README's two quick-start commands do not need make.
PY ?= python
BUILD_CUDA ?= auto
ASAN_LIBS = $(shell gcc -print-file-name=libasan.so) $(shell gcc -print-file-name=libubsan.so)

.PHONY: install test lint asan rebuild bench-ops

install:
	pip install -c constraints-cpu.txt -e ".[test]"

test:
	$(PY) -m pytest -q

lint:
	$(PY) -m ruff check .

# CPU kernels built with AddressSanitizer + UBSan (in build/asan-*, copied in place), then the op
# tests under them. Python itself is not instrumented, so the sanitizer runtimes are preloaded;
# leak checking is off (CPython and torch keep allocations alive at exit by design). Ends with the
# normal in-place build again (its objects are kept in build/, so that is a copy, not a rebuild).
# In-place builds only: `pip install -e` here would repoint a shared editable install.
asan:
	PYDECODE_SANITIZE=1 PYDECODE_BUILD_CUDA=0 $(PY) setup.py -q build_ext --inplace \
	  --build-temp build/asan-temp --build-lib build/asan-lib
	LD_PRELOAD="$(ASAN_LIBS)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(PY) -m pytest -q -x -p no:cacheprovider tests/ops; \
	  status=$$?; $(MAKE) rebuild; exit $$status

rebuild:
	PYDECODE_BUILD_CUDA=$(BUILD_CUDA) $(PY) setup.py -q build_ext --inplace

bench-ops:
	$(PY) -m bench.bench_ops --quick --csv bench/results/ops_cpu.csv
