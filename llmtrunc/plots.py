"""Figures and tables for reports: one pyplot setup, one deterministic save, one Markdown table.

Reports are rebuilt byte-identical from their records (tests/test_reports.py), so figures carry no
timestamps or software tags and tables format numbers one way.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path | None = None, dpi: int = 130) -> bytes:
    """Lay out, render as PNG (to `path` when given) and close a figure; returns the PNG bytes."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    pyplot().close(fig)
    data = buffer.getvalue()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table: floats to 4 decimals, NaN as empty."""
    if df.empty:
        return "(no rows)\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append("" if isinstance(v, float) and np.isnan(v) else f"{v:.4f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
