"""The terminal table every grid command prints: score and retention per condition, in both tracks.

One row per (task, metric, drop family, position) of the headline metrics; random drops are
summarised over their seeds as mean ± std.
"""

from __future__ import annotations

import sys

import pandas as pd
from rich.console import Console
from rich.table import Table

from llmtrunc.retention import with_baseline

ROW = ["task", "subtask", "metric", "filter", "drop_family", "at"]


def _fmt(values: pd.Series) -> str:
    values = values.dropna()
    if values.empty:
        return "-"
    return f"{values.mean():.4f}" if len(values) == 1 else f"{values.mean():.4f} ± {values.std():.4f}"


def score_table(records: pd.DataFrame) -> pd.DataFrame:
    """The rows of the table: baseline, score and retention per condition (the baseline's own row first)."""
    if records.empty:
        return pd.DataFrame(columns=[*ROW, "seeds", "baseline", "score", "retention"])
    main = records[records["main"].astype(bool)] if "main" in records else records
    main = main if not main.empty else records
    merged = with_baseline(main)
    base = main[main["drop_kind"] == "none"]
    rows = [{**{c: row[c] for c in ROW}, "seeds": 1, "baseline": _fmt(pd.Series([row["value"]])), "score": "-",
             "retention": "-"} for _, row in base.iterrows()]
    for keys, group in merged.groupby(ROW, sort=False, dropna=False):
        rows.append({**dict(zip(ROW, keys)), "seeds": len(group), "baseline": _fmt(group["baseline"]),
                     "score": _fmt(group["value"]), "retention": _fmt(group["retention"])})
    return pd.DataFrame(rows)


def print_scores(records: pd.DataFrame, console: Console | None = None) -> pd.DataFrame:
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    table = score_table(records)
    if table.empty:
        console.print("no results")
        return table
    view = Table(title="retention = truncated / baseline (perplexities: baseline / truncated)")
    columns = ["task", "metric", "filter", "drop", "at", "seeds", "baseline", "score", "retention"]
    for col in columns:
        view.add_column(col, justify="right" if col in ("seeds", "baseline", "score", "retention") else "left")
    for _, row in table.iterrows():
        task = row["task"] if row["subtask"] in (row["task"], None) or pd.isna(row["subtask"]) else row["subtask"]
        view.add_row(str(task), str(row["metric"]), str(row["filter"]), str(row["drop_family"]), str(row["at"]),
                     str(row["seeds"]), row["baseline"], row["score"], row["retention"])
    console.print(view)
    return table
