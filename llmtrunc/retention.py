"""Retention: a truncated score relative to the untouched baseline of the same settings, in every track.

retention = truncated / baseline for higher-is-better metrics and baseline / truncated for
lower-is-better ones (perplexities), so 1.0 always means "nothing lost". Where a task has a floor
(chance for multiple choice, the unanswerable share for SQuAD v2 best_exact), retention above the
floor = (truncated - floor) / (baseline - floor), defined only when the baseline is above it.

A record finds its baseline through `settings_id` (llmtrunc.record): the hash of its cell key
without drop and position, so the join is the same for the LLM track, the encoder track and the
analyses.
"""

from __future__ import annotations

import math

import pandas as pd

JOIN = ("settings_id", "subtask", "metric", "filter")


def retention(value: float, baseline: float, higher_is_better: bool | None = True) -> float:
    if higher_is_better is False:
        return baseline / value if value else math.nan
    return value / baseline if baseline else math.nan


def above_floor(value: float, baseline: float, floor: float | None) -> float:
    """(value - floor) / (baseline - floor); NaN without a floor or with the baseline at or below it."""
    if floor is None or pd.isna(floor) or not baseline > floor:
        return math.nan
    return (value - floor) / (baseline - floor)


def with_baseline(records: pd.DataFrame) -> pd.DataFrame:
    """Each truncated record with its baseline value, retention and retention above floor."""
    if records.empty:
        return records.assign(baseline=[], retention=[], retention_above_floor=[])
    frame = records.copy()
    base = frame[frame["drop_kind"] == "none"].drop_duplicates(list(JOIN), keep="last")
    base = base[[*JOIN, "value"]].rename(columns={"value": "baseline"})
    merged = frame[frame["drop_kind"] != "none"].merge(base, on=list(JOIN), how="left")
    higher = merged["higher_is_better"] if "higher_is_better" in merged else pd.Series(True, index=merged.index)
    floors = merged["floor"] if "floor" in merged else pd.Series(None, index=merged.index, dtype=object)
    merged["retention"] = [retention(v, b, h) if pd.notna(b) else math.nan
                           for v, b, h in zip(merged["value"], merged["baseline"], higher)]
    merged["retention_above_floor"] = [above_floor(v, b, f) for v, b, f in zip(merged["value"], merged["baseline"], floors)]
    return merged
