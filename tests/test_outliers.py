"""The outlier experiment's table, from hand-made records: outliers removed vs as many random dims."""

import math

import pandas as pd
import pytest

from llmtrunc.outliers import COLUMNS, outlier_table
from llmtrunc.record import Record, drop_fields
from llmtrunc.spec import Mask, parse_drop


def record(drop: str, value: float, dims=(), at="post-norm", task="arc_easy", metric="acc", main=True) -> dict:
    spec = parse_drop(drop)
    mask = Mask(8, tuple(dims))
    return Record(run_id=f"{task}-{drop}-{at}", track="llm", model="m", task=task, metric=metric, value=value,
                  settings_id=f"s-{task}", main=main, **drop_fields(spec, mask, 8),
                  at=at if spec.kind != "none" else "-").to_json()


def test_outliers_against_the_random_control():
    rows = [record("none", 0.8), record("outliers", 0.4, (2, 5)),
            record("random:outliers@0", 0.7, (1, 6)), record("random:outliers@1", 0.76, (0, 3)),
            record("outliers", 0.6, (2, 5, 7), at="pre-norm"),  # no control at this position
            record("last-half", 0.5, (4, 5, 6, 7)),  # not part of the table
            record("none", 1.5, metric="acc_norm", main=False), record("outliers", 0.1, (2, 5), metric="acc_norm", main=False),
            record("none", 0.5, task="boolq")]  # a task without an outliers cell has no row
    table = outlier_table(pd.DataFrame(rows))
    assert list(table.columns) == COLUMNS and len(table) == 2
    post = table[table["at"] == "post-norm"].iloc[0]
    assert (post["n_outliers"], post["outlier_dims"], post["random_seeds"]) == (2, "2,5", 2)
    assert post["baseline"] == 0.8 and post["outliers_score"] == 0.4 and post["outliers_retention"] == pytest.approx(0.5)
    assert post["random_score"] == pytest.approx(0.73)
    assert post["random_score_std"] == pytest.approx(math.sqrt(2 * 0.03**2))  # sample std over the two seeds
    assert post["random_retention"] == pytest.approx(0.73 / 0.8)
    assert post["random_retention_std"] == pytest.approx(math.sqrt(2 * 0.03**2) / 0.8)
    pre = table[table["at"] == "pre-norm"].iloc[0]
    assert pre["n_outliers"] == 3 and pre["outliers_retention"] == pytest.approx(0.75) and pd.isna(pre["random_score"])


def test_no_outlier_cells_is_an_empty_table():
    assert outlier_table(pd.DataFrame([record("none", 0.8), record("last-half", 0.5, (4,))])).empty
    assert list(outlier_table(pd.DataFrame()).columns) == COLUMNS
