"""Terminal tables of results: scores and retention for the runs a command just made or reused."""

from __future__ import annotations

import sys

import pandas as pd
from rich.console import Console
from rich.table import Table

from llmtrunc.retention import with_baseline
from llmtrunc.store import ResultsStore


def _fmt(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.4f}"


def print_retention(store: ResultsStore, run_ids: list[str], console: Console | None = None) -> pd.DataFrame:
    """Print task x metric rows with baseline, truncated score and retention; return the table."""
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    frame = store.records()
    frame = frame[frame["run_id"].isin(run_ids)] if not frame.empty else frame
    if frame.empty:
        console.print("no results")
        return frame
    table = with_baseline(frame)
    view = Table(title="retention = truncated / baseline (perplexities: baseline / truncated)")
    for col in ("task", "metric", "filter", "drop", "at", "baseline", "score", "retention"):
        view.add_column(col, justify="right" if col in ("baseline", "score", "retention") else "left")
    if table.empty:  # only the baseline was asked for
        for _, row in frame.iterrows():
            view.add_row(row["subtask"], row["metric"], row["filter"], row["drop"], row["at"], _fmt(row["value"]), "-", "-")
    for _, row in table.iterrows():
        view.add_row(row["subtask"], row["metric"], row["filter"], row["drop"], row["at"],
                     _fmt(row["baseline"]), _fmt(row["value"]), _fmt(row["retention"]))
    console.print(view)
    return table
