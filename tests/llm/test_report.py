"""Report tables from a small hand-made store: retention, mean +- std over seeds, floors, determinism."""

import math

import pytest

from llmtrunc.cli import main
from llmtrunc.llm.report import paper_side_by_side
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
    beside = paper_side_by_side(condition_table(store.records()))
    assert list(beside["task"]) == ["mmlu"] and list(beside["condition"]) == ["first half removed"]
    assert beside["this model: score (retention)"][0] == "0.3000 (0.750)"
    assert beside["Llama 3.1 8B (paper)"][0] == f"0.58 ({0.580 / 0.681:.3f})"
    assert beside["Qwen 2.5 7B (paper)"][0] == f"0.709 ({0.709 / 0.718:.3f})"


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
