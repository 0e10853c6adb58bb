"""Retention: a truncated score relative to the untouched baseline of the same settings.

retention = truncated / baseline for higher-is-better metrics and baseline / truncated for
lower-is-better ones (perplexities), so 1.0 always means "nothing lost".
"""

from __future__ import annotations

import math

import pandas as pd

# Columns that must agree between a truncated record and the baseline it is compared with.
MATCH_COLUMNS = ("model", "pretrained", "revision", "dtype", "quantization", "task", "subtask", "metric", "filter",
                 "num_fewshot", "limit", "apply_chat_template", "gen_kwargs")


def retention(value: float, baseline: float, higher_is_better: bool | None = True) -> float:
    if higher_is_better is False:
        return baseline / value if value else math.nan
    return value / baseline if baseline else math.nan


def with_baseline(records: pd.DataFrame) -> pd.DataFrame:
    """Each truncated record joined with its baseline value and its retention."""
    if records.empty:
        return records
    keys = [c for c in MATCH_COLUMNS if c in records.columns]
    frame = records.copy()
    for col in keys:  # NaN never equals NaN in a merge key: use a sentinel
        frame[col] = frame[col].astype(object).where(frame[col].notna(), "<none>").astype(str)
    base = frame[frame["drop"] == "none"].drop_duplicates(keys, keep="last")[keys + ["value"]]
    base = base.rename(columns={"value": "baseline"})
    merged = frame[frame["drop"] != "none"].merge(base, on=keys, how="left")
    merged["retention"] = [
        retention(v, b, h) if pd.notna(b) else math.nan
        for v, b, h in zip(merged["value"], merged["baseline"], merged.get("higher_is_better", [True] * len(merged)))
    ]
    return merged
