"""The one runner: pending cells only, groups computed together, every cell written as it finishes."""

import pytest
from rich.console import Console

from llmtrunc.record import Record
from llmtrunc.retention import with_baseline
from llmtrunc.runner import Cell, Runner, describe
from llmtrunc.store import ResultsStore, write_compact


def cell(task, drop):
    return Cell({"task": task, "drop": drop}, ("m", task, drop), ("m", task), (task, drop))


def make_compute(calls, fail_after=None):
    def compute(cells):
        calls.append([c.payload for c in cells])
        for n, c in enumerate(cells):
            if fail_after is not None and n == fail_after:
                raise KeyboardInterrupt
            value = 1.0 if c.payload[1] == "none" else 0.5
            yield c, [Record(run_id=c.run_id, track="encoder", model="m", task=c.payload[0], metric="acc", value=value,
                             settings_id=c.payload[0], drop=c.payload[1], drop_kind=c.payload[1].split(":")[0])], {}
    return compute


def test_only_pending_cells_are_computed_group_by_group(tmp_path):
    store = ResultsStore(tmp_path)
    cells = [cell("a", "none"), cell("a", "last:50%"), cell("b", "none"), cell("b", "last:50%")]
    calls = []
    runner = Runner(store, Console(quiet=True))
    assert runner.run(cells, make_compute(calls)) == [c.run_id for c in cells]
    assert calls == [[("a", "none"), ("a", "last:50%")], [("b", "none"), ("b", "last:50%")]]  # one call per group
    assert describe(cells, store) == [f"done    {c.label}" for c in cells]
    calls.clear()
    more = cells + [cell("b", "first:50%")]
    runner.run(more, make_compute(calls))
    assert calls == [[("b", "first:50%")]] and runner.reused == 4


def test_interrupted_group_keeps_its_finished_cells(tmp_path):
    store = ResultsStore(tmp_path)
    cells = [cell("a", "none"), cell("a", "last:50%"), cell("a", "first:50%")]
    with pytest.raises(KeyboardInterrupt):
        Runner(store, Console(quiet=True)).run(cells, make_compute([], fail_after=2))
    assert [store.has_run(c.run_id) for c in cells] == [True, True, False]
    calls = []
    Runner(store, Console(quiet=True)).run(cells, make_compute(calls))
    assert calls == [[("a", "first:50%")]]


def test_check_refuses_before_anything_is_computed(tmp_path):
    def refuse(cells):
        raise RuntimeError(f"{len(cells)} pending")

    with pytest.raises(RuntimeError, match="2 pending"):
        Runner(ResultsStore(tmp_path), Console(quiet=True)).run([cell("a", "none"), cell("a", "x")], make_compute([]), refuse)
    assert not list(tmp_path.iterdir())


def test_compact_store_is_a_store(tmp_path):
    store = ResultsStore(tmp_path / "s")
    cells = [cell("a", "none"), cell("a", "last:50%")]
    Runner(store, Console(quiet=True)).run(cells, make_compute([]))
    write_compact(store.all_records(), tmp_path / "report")
    shipped = ResultsStore(tmp_path / "report")
    assert all(shipped.has_run(c.run_id) for c in cells)
    assert [r.to_json() for r in shipped.all_records()] == [r.to_json() for r in store.all_records()]
    merged = with_baseline(shipped.records())
    assert merged["retention"].tolist() == [0.5]
