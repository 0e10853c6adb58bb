"""The outlier experiment's table: outlier dimensions removed vs the same number of random dimensions.

The paper's test of the outlier explanation, for any track's records: per model, task and position,
the score and retention with the `outliers` drop (its bootstrap interval and paired test against the
baseline where the records hold per-item values) next to its control `random:outliers` (as many
random dimensions, mean ± std over the seeds). If the outliers carried the model, removing them would
cost more than removing as many random dimensions.
"""

from __future__ import annotations

import pandas as pd

from llmtrunc.tables import CONDITION, condition_table

COLUMNS = ["model", "task", "subtask", "metric", "filter", "limit", "settings_id", "at", "n_outliers", "outlier_dims",
           "baseline", "outliers_score", "outliers_retention", "outliers_low", "outliers_high", "outliers_p",
           "outliers_test", "random_seeds", "random_score", "random_score_std", "random_retention", "random_retention_std"]


def outlier_table(records: pd.DataFrame, control: str = "random:outliers") -> pd.DataFrame:
    """One row per (settings, position) with an `outliers` cell, headline metrics only; the `control`
    family's columns are NaN where it was not run. Columns: `COLUMNS`."""
    table = condition_table(records) if not records.empty else pd.DataFrame()
    if table.empty or "outliers" not in set(table["drop_family"]):
        return pd.DataFrame(columns=COLUMNS)
    keys = [c for c in CONDITION if c != "drop_family"]
    removed = table[table["drop_family"] == "outliers"].reindex(
        columns=list(dict.fromkeys([*table.columns, "retention_low", "retention_high", "p_value", "test"]))).rename(
        columns={"score": "outliers_score", "retention": "outliers_retention", "retention_low": "outliers_low",
                 "retention_high": "outliers_high", "p_value": "outliers_p", "test": "outliers_test"})
    random = table[table["drop_family"] == control].rename(
        columns={"seeds": "random_seeds", "score": "random_score", "score_std": "random_score_std",
                 "retention": "random_retention", "retention_std": "random_retention_std"})
    merged = removed.merge(random[keys + [c for c in COLUMNS if c.startswith("random_")]], on=keys, how="left")
    dims = records[records["drop_family"] == "outliers"].drop_duplicates(["settings_id", "at"], keep="last")
    dims = dims.assign(n_outliers=dims["n_dropped"].astype(int),
                       outlier_dims=[",".join(map(str, d)) or "-" for d in dims["dropped_indices"]])
    merged = merged.merge(dims[["settings_id", "at", "n_outliers", "outlier_dims"]], on=["settings_id", "at"], how="left")
    return merged[COLUMNS].reset_index(drop=True)
