"""The condition table of both tracks, and the terminal table every grid command prints from it.

`condition_table`: one row per condition of the headline metrics, from the records and their baselines
(llmtrunc.retention.with_baseline): random drops are summarised over their seeds as mean ± std, the 95%
intervals of retention and of retention above the floor (chance: what multiple choice keeps above guessing)
come from a paired bootstrap over the items (across seeds: the interval over the seeds), p from a paired
test (llmtrunc.stats; `format_p` prints an underflowed p as < 1e-300), and `≈` marks a condition
indistinguishable from its baseline. `print_scores` prints it; the LLM report and the outlier table
(llmtrunc.outliers) build on it.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from llmtrunc import stats
from llmtrunc.retention import above_floor, lower_is_better, retention, with_baseline


CONDITION = ["model", "task", "subtask", "metric", "filter", "limit", "settings_id", "drop_family", "at"]


def _stats(group: pd.DataFrame, higher: bool, floor: float | None) -> dict:
    """Paired statistics of one condition (its seeds) against the baseline, on the records' per-item values;
    with a floor, the interval of the retention above it too."""
    items = [np.asarray(i, dtype=float) for i in group.get("items", pd.Series([None] * len(group)))
             if isinstance(i, list)]
    base = group["baseline_items"].iloc[0] if "baseline_items" in group else None
    if len(items) != len(group) or not isinstance(base, list) or any(len(i) != len(base) for i in items):
        return {}
    base = np.asarray(base, dtype=float)
    pooled = np.mean(items, axis=0)  # seeds: each item's mean over the masks
    floor = None if floor is None or pd.isna(floor) else float(floor)
    boot = stats.paired_bootstrap(base, pooled, higher_is_better=higher, floor=floor)
    test = stats.paired_test(base, pooled)
    out = {"retention_low": boot.retention_ci[0], "retention_high": boot.retention_ci[1],
           "retention_above_floor_low": boot.above_floor_ci[0], "retention_above_floor_high": boot.above_floor_ci[1],
           "difference": boot.difference, "difference_low": boot.difference_ci[0],
           "difference_high": boot.difference_ci[1], "p_value": test.p_value, "test": test.method,
           "indistinguishable": stats.indistinguishable(test, boot)}
    if len(items) > 1:
        seeds = stats.seed_summary(items, base, higher_is_better=higher)
        low, high = (retention(v, float(base.mean()), higher) for v in seeds.interval)
        out.update(seed_retention_low=min(low, high), seed_retention_high=max(low, high),
                   within_seed_half_width=seeds.within_seed_half_width)
        if floor is not None and higher:
            low, high = (above_floor(v, float(base.mean()), floor) for v in seeds.interval)
            out.update(seed_retention_above_floor_low=low, seed_retention_above_floor_high=high)
    return out


def condition_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per condition (random seeds together) of the headline metrics: baseline, score and retention
    (mean and std over seeds), retention above the floor, and paired statistics against the baseline where
    the records hold per-item values: bootstrap 95% intervals of retention, of retention above the floor and of
    the difference, a paired test
    (McNemar for accuracy-type metrics, sign-flip permutation otherwise) and whether the condition is
    indistinguishable from its baseline; across seeds also the interval over seeds and the within-seed noise."""
    main = records[records["main"].astype(bool)] if "main" in records else records
    merged = with_baseline(main)
    if merged.empty:
        return merged
    rows = []
    for keys, group in merged.groupby([c for c in CONDITION if c in merged], sort=False, dropna=False):
        higher = not lower_is_better(group["higher_is_better"].iloc[0]) if "higher_is_better" in group else True
        floor = group["floor"].iloc[0] if "floor" in group else None
        score = group["value"].mean()
        rows.append({**dict(zip([c for c in CONDITION if c in merged], keys)), "seeds": len(group),
                     "baseline": group["baseline"].iloc[0], "score": score, "score_std": group["value"].std(),
                     "retention": group["retention"].mean(), "retention_std": group["retention"].std(),
                     "floor": floor, "retention_above_floor": group["retention_above_floor"].mean(),
                     "at_floor": floor is not None and pd.notna(floor) and score <= floor + 1e-9,
                     **_stats(group, higher, floor)})
    return pd.DataFrame(rows)


def mean_std(mean, std) -> str:
    if mean is None or pd.isna(mean):
        return "-"
    return f"{mean:.4f}" if std is None or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def format_p(p, digits: int = 3) -> str:
    """A p-value as printed: '-' when absent, '< 1e-300' where it underflowed a float (printed as 0 it would claim
    certainty)."""
    if p is None or pd.isna(p):
        return "-"
    return "< 1e-300" if p < 1e-300 else f"{p:.{digits}g}"


def above_floor_cell(row) -> str:
    """Retention above the floor with its 95% interval; '-' where the task has no floor or sits at it."""
    value = row.get("retention_above_floor")
    if value is None or pd.isna(value):
        return "-"
    ci = interval(row, "retention_above_floor")
    return f"{value:.3f}" + ("" if ci == "-" else f" {ci}")


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
    view = Table(title="retention = truncated / baseline (perplexities: baseline / truncated); 95% CI; above floor = "
                       "(truncated - floor) / (baseline - floor), the floor being chance (multiple choice) or SQuAD v2's "
                       "unanswerable share; ≈: indistinguishable from the baseline (paired test p ≥ 0.05 and the CI of "
                       "the difference holds 0)")
    for col in ("task", "metric", "filter", "drop", "at", "seeds", "baseline", "score", "retention", "95% CI", "floor",
                "above floor (95% CI)", "p", "≈"):
        view.add_column(col, justify="right" if col in ("seeds", "baseline", "score", "retention", "floor", "p") else "left")
    for _, row in main[main["drop_kind"] == "none"].iterrows():
        view.add_row(_task(row), row["metric"], row["filter"], "none", "-", "1", f"{row['value']:.4f}", "-", "-", "-",
                     _floor(row.get("floor")), "-", "-", "")
    for _, row in table.iterrows():
        view.add_row(_task(row), row["metric"], row["filter"], row["drop_family"], row["at"], str(row["seeds"]),
                     f"{row['baseline']:.4f}" if pd.notna(row["baseline"]) else "-",
                     mean_std(row["score"], row["score_std"]), mean_std(row["retention"], row["retention_std"]),
                     interval(row), _floor(row.get("floor")), above_floor_cell(row), format_p(row.get("p_value")),
                     "≈" if row.get("indistinguishable") is True else "")
    console.print(view)
    return table


def _floor(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:g}"


def _task(row) -> str:
    sub = row.get("subtask")
    return row["task"] if sub is None or pd.isna(sub) or sub == row["task"] else str(sub)
