"""The terminal table every grid command prints: score and retention per condition, in both tracks.

One row per condition of the headline metrics (llmtrunc.retention.condition_table): random drops are
summarised over their seeds as mean ± std, the 95% interval of retention comes from a paired bootstrap
over the items (across seeds: the interval over the seeds), p from a paired test, and `≈` marks a
condition indistinguishable from its baseline.
"""

from __future__ import annotations

import sys

import pandas as pd
from rich.console import Console
from rich.table import Table

from llmtrunc.retention import condition_table


def mean_std(mean, std) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    return f"{mean:.4f}" if std is None or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def interval(row, prefix: str = "retention") -> str:
    """The condition's interval: over the seeds when there are several, else the paired bootstrap's."""
    for low, high in ((f"seed_{prefix}_low", f"seed_{prefix}_high"), (f"{prefix}_low", f"{prefix}_high")):
        if low in row and pd.notna(row.get(low)):
            return f"[{row[low]:.3f}, {row[high]:.3f}]"
    return "-"


def print_scores(records: pd.DataFrame, console: Console | None = None) -> pd.DataFrame:
    console = console or Console(width=None if sys.stdout.isatty() else 180)
    if records.empty:
        console.print("no results")
        return records
    table = condition_table(records)
    main = records[records["main"].astype(bool)] if "main" in records else records
    view = Table(title="retention = truncated / baseline (perplexities: baseline / truncated); 95% CI; "
                       "≈: indistinguishable from the baseline (paired test p ≥ 0.05 and the CI of the difference holds 0)")
    for col in ("task", "metric", "filter", "drop", "at", "seeds", "baseline", "score", "retention", "95% CI", "p", "≈"):
        view.add_column(col, justify="right" if col in ("seeds", "baseline", "score", "retention", "p") else "left")
    for _, row in main[main["drop_kind"] == "none"].iterrows():
        view.add_row(_task(row), row["metric"], row["filter"], "none", "-", "1", f"{row['value']:.4f}", "-", "-", "-",
                     "-", "")
    for _, row in table.iterrows():
        p = row.get("p_value")
        view.add_row(_task(row), row["metric"], row["filter"], row["drop_family"], row["at"], str(row["seeds"]),
                     f"{row['baseline']:.4f}" if pd.notna(row["baseline"]) else "-",
                     mean_std(row["score"], row["score_std"]), mean_std(row["retention"], row["retention_std"]),
                     interval(row), "-" if p is None or pd.isna(p) else f"{p:.3g}",
                     "≈" if row.get("indistinguishable") is True else "")
    console.print(view)
    return table


def _task(row) -> str:
    sub = row.get("subtask")
    return row["task"] if sub is None or pd.isna(sub) or sub == row["task"] else str(sub)
