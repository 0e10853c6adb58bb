"""Report tables from a small hand-made store: retention, mean +- std over seeds, floors, determinism."""

import math

import pandas as pd
import pytest

from llmtrunc.cli import main
from llmtrunc.report import condition_table, floor_for, paper_side_by_side
from llmtrunc.retention import retention
from llmtrunc.store import ResultsStore


def record(task, drop, value, seed=None, metric="acc", filt="none", kind=None, ratio=None, at="post-norm", limit=100):
    kind = kind or drop.split(":")[0]
    return {"track": "llm", "model": "m", "pretrained": "p", "revision": "main", "dtype": "auto", "quantization": None,
            "task": task, "subtask": task, "metric": metric, "filter": filt, "value": value, "num_fewshot": None,
            "limit": limit, "apply_chat_template": False, "gen_kwargs": None, "drop": drop,
            "drop_family": drop.split("@")[0], "drop_kind": kind, "drop_ratio": ratio, "seed": seed,
            "at": "-" if drop == "none" else at, "higher_is_better": metric != "word_perplexity",
            "command": "llmtrunc eval ...", "versions": {"torch": "x"}, "git_hash": "abc", "run_id": f"{task}-{drop}-{limit}"}


@pytest.fixture
def store(tmp_path):
    store = ResultsStore(tmp_path / "store")
    rows = [record("arc_easy", "none", 0.60), record("arc_easy", "last:50%", 0.45, kind="last", ratio=0.5),
            record("arc_easy", "random:50%@0", 0.50, 0, ratio=0.5), record("arc_easy", "random:50%@1", 0.40, 1, ratio=0.5),
            record("arc_easy", "last:25%", 0.25, kind="last", ratio=0.25),
            record("wikitext", "none", 20.0, metric="word_perplexity"),
            record("wikitext", "last:50%", 40.0, metric="word_perplexity", kind="last", ratio=0.5),
            record("mmlu", "none", 0.40), record("mmlu", "first:50%", 0.30, kind="first", ratio=0.5),
            record("arc_easy", "none", 0.70, limit=20), record("arc_easy", "last:50%", 0.35, kind="last", ratio=0.5, limit=20)]
    for row in rows:
        store.write_run(row["run_id"], [row])
    return store


def test_retention_direction():
    assert retention(0.3, 0.6, True) == 0.5
    assert retention(40.0, 20.0, False) == 0.5
    assert math.isnan(retention(0.3, 0.0, True))


def test_condition_table_numbers(store):
    table = condition_table(store.records()).set_index(["task", "limit", "drop_family"])
    assert table.loc[("arc_easy", "20", "last:50%")]["retention"] == pytest.approx(0.5)  # own baseline per limit
    table = table.xs("100", level="limit")  # merge keys are compared as text
    arc = table.loc[("arc_easy", "random:50%")]
    assert arc["seeds"] == 2 and arc["score"] == pytest.approx(0.45)
    assert arc["score_std"] == pytest.approx(pd.Series([0.5, 0.4]).std())
    assert arc["retention"] == pytest.approx(0.75) and arc["floor"] == 0.25
    assert arc["retention_above_floor"] == pytest.approx(((0.5 - .25) / .35 + (0.4 - .25) / .35) / 2)
    assert table.loc[("arc_easy", "last:25%")]["at_floor"]
    assert not table.loc[("arc_easy", "last:50%")]["at_floor"]
    assert table.loc[("wikitext", "last:50%")]["retention"] == pytest.approx(0.5)


def test_paper_side_by_side(store):
    beside = paper_side_by_side(condition_table(store.records()))
    assert list(beside["task"]) == ["mmlu"] and list(beside["condition"]) == ["first half removed"]
    assert beside["this model: score (retention)"][0] == "0.3000 (0.750)"
    assert beside["Llama 3.1 8B (paper)"][0] == f"0.58 ({0.580 / 0.681:.3f})"
    assert beside["Qwen 2.5 7B (paper)"][0] == f"0.709 ({0.709 / 0.718:.3f})"


def test_squad_floor_is_the_unanswerable_share():
    assert floor_for("squadv2", "best_exact", None) == pytest.approx(100 * 5945 / 11873)
    assert floor_for("gsm8k", "exact_match", None) == 0.0
    assert floor_for("wikitext", "word_perplexity", None) is None


def test_report_files_are_reproducible(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", str(store.root), "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["report", str(store.root), "--out", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    text = (out / "report.md").read_text()
    assert "0.4500 ± 0.0707" in text and "Table 3" in text and "llmtrunc eval ..." in text
    assert "Side by side with the paper" in text
    assert "data:image/png;base64," in (out / "report.html").read_text()
