"""Retention: a truncated score relative to the untouched baseline of the same settings, in every track.

retention = truncated / baseline for higher-is-better metrics and baseline / truncated for
lower-is-better ones (perplexities), so 1.0 always means "nothing lost". Where a task has a floor
(chance for multiple choice, the unanswerable share for SQuAD v2 best_exact), retention above the
floor = (truncated - floor) / (baseline - floor), defined only when the baseline is above it.

A record finds its baseline through `settings_id` (llmtrunc.record): the hash of its cell key
without drop and position, so the join is the same for the LLM track, the encoder track and the
analyses. `retention` is the one ratio every table, report, statistic (llmtrunc.stats) and analysis uses;
`llmtrunc.tables.condition_table` summarises conditions from `with_baseline`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

JOIN = ("settings_id", "subtask", "metric", "filter")


def lower_is_better(higher_is_better) -> bool:
    """True only for an explicit False (numpy's included); None or NaN means the usual higher-is-better."""
    return higher_is_better is not None and not pd.isna(higher_is_better) and not bool(higher_is_better)


def retention(value, baseline, higher_is_better: bool | None = True):
    """truncated / baseline, or baseline / truncated where lower is better; NaN where the denominator is 0.
    Scalars give a scalar; arrays (the bootstrap's resamples, a figure's bands) give an array, elementwise."""
    num, den = (baseline, value) if lower_is_better(higher_is_better) else (value, baseline)
    if np.ndim(num) == 0 and np.ndim(den) == 0:
        return num / den if den else math.nan
    num, den = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


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
    carried = ["value", "items"] if "items" in base else ["value"]
    base = base[[*JOIN, *carried]].rename(columns={"value": "baseline", "items": "baseline_items"})
    merged = frame[frame["drop_kind"] != "none"].merge(base, on=list(JOIN), how="left")
    higher = merged["higher_is_better"] if "higher_is_better" in merged else pd.Series(True, index=merged.index)
    floors = merged["floor"] if "floor" in merged else pd.Series(None, index=merged.index, dtype=object)
    merged["retention"] = [retention(v, b, h) if pd.notna(b) else math.nan
                           for v, b, h in zip(merged["value"], merged["baseline"], higher)]
    merged["retention_above_floor"] = [above_floor(v, b, f) for v, b, f in zip(merged["value"], merged["baseline"], floors)]
    return merged
