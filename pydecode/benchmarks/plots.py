"""Grouped bar charts (PNG) of benchmark rows, shared by ``pydecode bench --plot`` and
``bench/render_tables.py --plots``. Needs matplotlib (the ``bench`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional


def pyplot() -> Optional[Any]:
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def grouped_bars(
    plt: Any,
    groups: Sequence[tuple[Any, Any]],
    providers: Sequence[str],
    value: Callable[[str, tuple[Any, Any]], float],
    *,
    ylabel: str,
    title: str,
    path: Path,
    footer: str = "",
    dpi: int = 110,
) -> None:
    """One bar per provider in each (label, batch) group; ``value(provider, group)`` its height."""
    width = 0.8 / len(providers)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) + 2), 4.5))
    for k, provider in enumerate(providers):
        xs = [i + (k - (len(providers) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [value(provider, g) for g in groups], width, label=provider)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{label}\nbatch {batch}" for label, batch in groups])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if footer:
        fig.text(0.01, 0.01, footer, fontsize=7)
    ax.legend()
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
