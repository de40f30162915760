"""``python -m bench.bench_ops``: the kernel benchmarks, kept for the scripts that call it.

The code lives in :mod:`pydecode.benchmarks.ops` (installed, so ``pydecode bench-ops`` runs it
too); see its docstring for the cases, providers, floors and options.
"""

from pydecode.benchmarks.ops import main

if __name__ == "__main__":
    main()
