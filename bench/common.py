"""Timing and CSV helpers of the bench/ scripts: re-exported from :mod:`pydecode.benchmarks.common`
(installed with the package, so the ``pydecode bench*`` commands use the same code)."""

from pydecode.benchmarks.common import (
    CSV_FIELDS,
    OtherLoad,
    append_csv,
    append_rows,
    environment,
    print_table,
    time_budgeted,
    time_call,
    wait_for_idle,
)

__all__ = [
    "CSV_FIELDS", "OtherLoad", "append_csv", "append_rows", "environment", "print_table", "time_budgeted", "time_call",
    "wait_for_idle",
]
