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

import numpy as np
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
    carried = ["value", "items"] if "items" in base else ["value"]
    base = base[[*JOIN, *carried]].rename(columns={"value": "baseline", "items": "baseline_items"})
    merged = frame[frame["drop_kind"] != "none"].merge(base, on=list(JOIN), how="left")
    higher = merged["higher_is_better"] if "higher_is_better" in merged else pd.Series(True, index=merged.index)
    floors = merged["floor"] if "floor" in merged else pd.Series(None, index=merged.index, dtype=object)
    merged["retention"] = [retention(v, b, h) if pd.notna(b) else math.nan
                           for v, b, h in zip(merged["value"], merged["baseline"], higher)]
    merged["retention_above_floor"] = [above_floor(v, b, f) for v, b, f in zip(merged["value"], merged["baseline"], floors)]
    return merged


CONDITION = ["model", "task", "subtask", "metric", "filter", "limit", "settings_id", "drop_family", "at"]


def _stats(group: pd.DataFrame, higher: bool) -> dict:
    """Paired statistics of one condition (its seeds) against the baseline, on the records' per-item values."""
    from llmtrunc import stats

    items = [np.asarray(i, dtype=float) for i in group.get("items", pd.Series([None] * len(group)))
             if isinstance(i, list)]
    base = group["baseline_items"].iloc[0] if "baseline_items" in group else None
    if len(items) != len(group) or not isinstance(base, list) or any(len(i) != len(base) for i in items):
        return {}
    base = np.asarray(base, dtype=float)
    pooled = np.mean(items, axis=0)  # seeds: each item's mean over the masks
    boot = stats.paired_bootstrap(base, pooled, higher_is_better=higher)
    test = stats.paired_test(base, pooled)
    out = {"retention_low": boot.retention_ci[0], "retention_high": boot.retention_ci[1],
           "difference": boot.difference, "difference_low": boot.difference_ci[0],
           "difference_high": boot.difference_ci[1], "p_value": test.p_value, "test": test.method,
           "indistinguishable": stats.indistinguishable(test, boot)}
    if len(items) > 1:
        seeds = stats.seed_summary(items, base, higher_is_better=higher)
        low, high = (retention(v, float(base.mean()), higher) for v in seeds.interval)
        out.update(seed_retention_low=min(low, high), seed_retention_high=max(low, high),
                   within_seed_half_width=seeds.within_seed_half_width)
    return out


def condition_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per condition (random seeds together) of the headline metrics: baseline, score and retention
    (mean and std over seeds), retention above the floor, and paired statistics against the baseline where
    the records hold per-item values: bootstrap 95% intervals of retention and difference, a paired test
    (McNemar for accuracy-type metrics, sign-flip permutation otherwise) and whether the condition is
    indistinguishable from its baseline; across seeds also the interval over seeds and the within-seed noise."""
    main = records[records["main"].astype(bool)] if "main" in records else records
    merged = with_baseline(main)
    if merged.empty:
        return merged
    rows = []
    for keys, group in merged.groupby([c for c in CONDITION if c in merged], sort=False, dropna=False):
        higher = group["higher_is_better"].iloc[0] is not False if "higher_is_better" in group else True
        floor = group["floor"].iloc[0] if "floor" in group else None
        score = group["value"].mean()
        rows.append({**dict(zip([c for c in CONDITION if c in merged], keys)), "seeds": len(group),
                     "baseline": group["baseline"].iloc[0], "score": score, "score_std": group["value"].std(),
                     "retention": group["retention"].mean(), "retention_std": group["retention"].std(),
                     "floor": floor, "retention_above_floor": group["retention_above_floor"].mean(),
                     "at_floor": floor is not None and pd.notna(floor) and score <= floor + 1e-9,
                     **_stats(group, higher)})
    return pd.DataFrame(rows)
