"""Report tables from a small hand-made store: retention, mean +- std over seeds, floors, determinism."""

import math

import pytest

from llmtrunc.cli import main
from llmtrunc.llm.report import Baselines, paper_side_by_side
from llmtrunc.llm.tasks import metadata
from llmtrunc.record import Record, settings_id
from llmtrunc.retention import retention
from llmtrunc.spec import parse_drop
from llmtrunc.store import ResultsStore
from llmtrunc.tables import condition_table


def record(task, drop, value, metric="acc", at="post-norm", limit=100):
    spec = parse_drop(drop)
    info = metadata(task)
    return Record(run_id=f"{task}-{drop}-{limit}", track="llm", model="m", model_id="p", task=task, metric=metric,
                  value=value, settings_id=settings_id({"task": task, "limit": limit}), limit=limit,
                  main=info.is_main(task, metric, "none"), floor=info.floor(metric, limit),
                  higher_is_better=metric != "word_perplexity", drop=spec.name, drop_family=spec.family,
                  drop_kind=spec.kind, drop_ratio=None if spec.ratio is None else float(spec.ratio), seed=spec.seed,
                  at="-" if spec.kind == "none" else at, command="llmtrunc eval ...", versions={"torch": "x"},
                  git_hash="abc")


@pytest.fixture
def store(tmp_path):
    store = ResultsStore(tmp_path / "store")
    rows = [record("arc_easy", "none", 0.60), record("arc_easy", "last:50%", 0.45),
            record("arc_easy", "random:50%@0", 0.50), record("arc_easy", "random:50%@1", 0.40),
            record("arc_easy", "last:25%", 0.25),
            record("wikitext", "none", 20.0, metric="word_perplexity"),
            record("wikitext", "last:50%", 40.0, metric="word_perplexity"),
            record("mmlu", "none", 0.40), record("mmlu", "first:50%", 0.30),
            record("arc_easy", "none", 0.70, limit=20), record("arc_easy", "last:50%", 0.35, limit=20)]
    for row in rows:
        store.write_run(row.run_id, [row])
    return store


def test_retention_direction():
    assert retention(0.3, 0.6, True) == 0.5
    assert retention(40.0, 20.0, False) == 0.5
    assert math.isnan(retention(0.3, 0.0, True))


def test_condition_table_numbers(store):
    table = condition_table(store.records()).set_index(["task", "limit", "drop_family"])
    assert table.loc[("arc_easy", 20, "last:50%")]["retention"] == pytest.approx(0.5)  # own baseline per limit
    table = table.xs(100, level="limit")
    arc = table.loc[("arc_easy", "random:50%")]
    assert arc["seeds"] == 2 and arc["score"] == pytest.approx(0.45)
    assert arc["score_std"] == pytest.approx(0.0707106781)
    assert arc["retention"] == pytest.approx(0.75) and arc["floor"] == 0.25
    assert arc["retention_above_floor"] == pytest.approx(((0.5 - .25) / .35 + (0.4 - .25) / .35) / 2)
    assert table.loc[("arc_easy", "last:25%")]["at_floor"]
    assert not table.loc[("arc_easy", "last:50%")]["at_floor"]
    assert table.loc[("wikitext", "last:50%")]["retention"] == pytest.approx(0.5)


def test_paper_side_by_side(store):
    records = store.records()
    beside = paper_side_by_side(condition_table(records), Baselines.of(records))
    assert list(beside["task"]) == ["mmlu"] and list(beside["condition"]) == ["first half removed"]
    assert beside["this model: score (retention)"][0] == "0.3000 (0.750)"
    assert beside["Llama 3.1 8B (paper)"][0] == f"0.58 ({0.580 / 0.681:.3f})"
    assert beside["Qwen 2.5 7B (paper)"][0] == f"0.709 ({0.709 / 0.718:.3f})"
    assert beside["note"][0] == ""  # 0.40 over 100 items: clearly above chance (0.25)
    mmlu = records["task"] == "mmlu"
    near = records.assign(value=records["value"].where(~mmlu, 0.26), stderr=records["stderr"].where(~mmlu, 0.04))
    assert paper_side_by_side(condition_table(near), Baselines.of(near))["note"][0] == \
        "at chance (baseline 0.26, floor 0.25)"


def test_retention_above_chance_has_its_paired_interval():
    """arc_easy as the issue read it: 0.500 -> 0.369 keeps 0.738 of the raw score but 0.48 of the margin above chance."""
    import pandas as pd

    base, cut = record("arc_easy", "none", 0.5), record("arc_easy", "last:50%", 0.37)
    base.extra["items"] = [1] * 50 + [0] * 50
    cut.extra["items"] = [1] * 37 + [0] * 63
    row = condition_table(pd.DataFrame([base.to_json(), cut.to_json()])).iloc[0]
    assert row["retention"] == pytest.approx(0.74) and row["retention_above_floor"] == pytest.approx(0.12 / 0.25)
    assert row["retention_above_floor_low"] < 0.48 < row["retention_above_floor_high"] < row["retention"]


def test_an_underflowed_p_prints_as_below_1e_300():
    from llmtrunc.tables import format_p

    assert format_p(0.0) == "< 1e-300" and format_p(1.7e-41) == "1.7e-41" and format_p(float("nan")) == "-"


def test_floors_come_from_the_task_metadata():
    assert metadata("squadv2").floor("best_exact", None) == pytest.approx(100 * 5945 / 11873)
    assert metadata("squadv2").floor("best_exact", 20) == pytest.approx(50.0)  # the first 20: 10 unanswerable
    assert metadata("gsm8k").floor("exact_match", None) == 0.0
    assert metadata("wikitext").floor("word_perplexity", None) is None
    assert metadata("mmlu_anatomy").chance == 0.25


def test_report_files_are_reproducible(store, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["report", "--results-dir", str(store.root), "--out", str(out)]) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"report.md", "report.html", "records.jsonl.gz"} <= set(first)
    assert main(["report", "--results-dir", str(out), "--out", str(out)]) == 0  # rebuilt from what it ships
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    text = (out / "report.md").read_text()
    assert "0.4500 ± 0.0707" in text and "Table 3" in text and "llmtrunc eval ..." in text
    assert "Side by side with the paper" in text
    assert "data:image/png;base64," in (out / "report.html").read_text()


def test_report_page_in_a_real_browser(store, tmp_path, capsys):
    """The self-contained page renders offline, and its full table sorts in the browser."""
    import re

    from tests.helpers import browser

    out = tmp_path / "report"
    assert main(["report", "--results-dir", str(store.root), "--out", str(out)]) == 0
    page = out / "report.html"
    assert "http" not in page.read_text().split("<style>")[1]  # nothing fetched from a network
    sorted_dom = browser.dom(page, tmp_path, "#sort=retention")
    table = sorted_dom[sorted_dom.index("class=\"sortable\""):]
    header = re.findall(r"<th>(.*?)</th>", table[:table.index("</thead>")])
    column = header.index("retention")
    rows = re.findall(r"<tr>(.*?)</tr>", table[table.index("<tbody>"):table.index("</tbody>")])
    values = [float(re.findall(r"<td>(.*?)</td>", row)[column].split(" ")[0]) for row in rows]
    assert len(values) >= 5 and values == sorted(values)  # the script sorted the rows by retention
    assert browser.dom(page, tmp_path).count("<img") >= 2  # the heatmap and the curves are in the page
    shot = browser.screenshot(page, tmp_path, tmp_path / "page.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_report_leads_with_the_answer_and_keeps_chance_tasks_out_of_the_figures(store, tmp_path, monkeypatch):
    from llmtrunc.llm import report

    rows = [record("boolq", "none", 0.45), record("boolq", "last:50%", 0.50)]  # below boolq's floor, 0.5
    # arc_challenge: 0.32 over 50 items, no stderr from lm-eval: the items' own standard error (0.067) puts
    # it within 1.96 of chance (0.25); over 2000 items the same score is clearly above it
    for n in (50, 2000):
        base = record("arc_challenge", "none", 0.32, limit=n)
        base.extra["items"] = [1] * round(0.32 * n) + [0] * (n - round(0.32 * n))
        rows += [base, record("arc_challenge", "last:50%", 0.30, limit=n)]
    for row in rows:
        store.write_run(row.run_id, [row])
    baselines = report.Baselines.of(store.records())
    assert baselines.chance == {("boolq", "acc", 100.0), ("arc_challenge", "acc", 50.0)}
    assert baselines.n_items[("arc_challenge", "acc", 2000.0)] == 2000
    drawn = []
    heatmap = report.heatmap
    monkeypatch.setattr(report, "heatmap", lambda table, model: drawn.append(set(table["task"])) or heatmap(table, model))
    out = tmp_path / "report"
    out.mkdir()
    (out / "heatmap_gone.png").write_bytes(b"an earlier build's figure, of a model no longer here")
    (out / "notes.png").write_bytes(b"not the report's")
    assert main(["report", "--results-dir", str(store.root), "--out", str(out)]) == 0
    assert drawn == [{"arc_easy", "arc_challenge", "mmlu", "wikitext"}]  # boolq: in the tables only
    assert not (out / "heatmap_gone.png").exists() and (out / "notes.png").exists()
    text = (out / "report.md").read_text()
    lead = text.split("## m\n\n", 1)[1].split("\n")[0]
    # the best-kept task first (arc_challenge over 2000 items: 0.30 against 0.32, chance 0.25), then the worst
    # (arc_easy at limit 20); multiple choice by its margin above chance, its raw retention stated too
    assert lead.startswith("With half of its final hidden state zeroed, m keeps 0.714 (last half) of its "
                           "arc_challenge acc above chance (0.25; baseline 0.32, 2000 items); of the raw score it "
                           "keeps 0.938.")
    assert ("keeps only 0.222 (last half) of its arc_easy acc above chance (0.25; baseline 0.7, 20 items); of the raw "
            "score it keeps 0.500.") in lead
    assert "boolq" not in lead
    assert text.index(lead) < text.index("### Retention by task and condition") < text.index("### Summary")
    summary = text.split("### Summary", 1)[1].split("### ", 1)[0]
    boolq = next(line for line in summary.splitlines() if line.startswith("| boolq"))
    assert "at chance: not in the figures" in boolq and "0.45" in boolq
    assert "| baseline at chance" in text.split("### All conditions", 1)[1].split("\n")[2]


def test_a_full_set_task_is_drawn_in_the_curves():
    """A run without --limit stores limit None: its task is still a panel of the retention curves."""
    import pandas as pd

    from llmtrunc.llm import report

    rows = [record("arc_easy", "none", 0.5, limit=None), record("arc_easy", "last:25%", 0.45, limit=None),
            record("arc_easy", "last:50%", 0.35, limit=None)]
    table = condition_table(pd.DataFrame([r.to_json() for r in rows]))
    assert table["limit"].isna().all()
    assert report.curves(table, "m") is not None
