"""The one record schema and the cell key: same keys in every track, old stores read, no stale cells."""

import json

import pytest

from llmtrunc.llm.evaluate import RunSettings, llm_cells
from llmtrunc.llm.models import ModelRef
from llmtrunc.llm.tasks import TaskRef
from llmtrunc.record import LEGACY_KEYS, Record, RecordBuilder, cell_key, drop_fields, run_id, settings_id
from llmtrunc.spec import parse_drop
from llmtrunc.store import ResultsStore


def test_edited_indices_file_makes_a_new_cell(tmp_path):
    dims = tmp_path / "dims.txt"
    dims.write_text("1 2 3")
    spec = parse_drop(f"indices:{dims}")
    settings = [RunSettings(model=ModelRef("m", "org/m"))]
    tasks = [TaskRef("arc_easy", "local_arc_easy")]
    before = llm_cells(settings, tasks, [spec], ["post-norm"])[0].run_id
    assert llm_cells(settings, tasks, [spec], ["post-norm"])[0].run_id == before  # stable
    dims.write_text("1 2 4")
    after = llm_cells(settings, tasks, [spec], ["post-norm"])[0].run_id
    assert after != before
    moved = tmp_path / "other.txt"
    moved.write_text("1 2 4")  # the same content under another name: the same cell
    assert cell_key({}, parse_drop(f"indices:{moved}")) == cell_key({}, spec)


def test_edited_calibration_text_makes_new_profile_cells_only(tmp_path):
    from llmtrunc.llm.calibration import Calibration

    text = tmp_path / "calibration.txt"
    text.write_text("w1 w2 w3")
    settings = [RunSettings(model=ModelRef("m", "org/m"), calibration=Calibration(str(text), tokens=64))]
    tasks = [TaskRef("arc_easy", "local_arc_easy")]
    specs = [parse_drop(t) for t in ("none", "last-half", "outliers", "top:10%", "random:outliers@0")]
    before = llm_cells(settings, tasks, specs, ["post-norm"])
    assert [c.key.get("calibration") for c in before[:2]] == [None, None]
    assert before[2].key["calibration"]["tokens"] == 64 and before[2].key["calibration"]["chunk"] == 1024
    text.write_text("w1 w2 w4")
    after = llm_cells(settings, tasks, specs, ["post-norm"])
    assert [a.run_id == b.run_id for a, b in zip(after, before)] == [True, True, False, False, False]
    fewer = [RunSettings(model=ModelRef("m", "org/m"), calibration=Calibration(str(text), tokens=32))]
    assert llm_cells(fewer, tasks, specs, ["post-norm"])[2].run_id != after[2].run_id
    # the text's content, not its location, is in the key; the baseline join (settings_id) ignores it
    moved = tmp_path / "moved.txt"
    moved.write_text("w1 w2 w4")
    elsewhere = [RunSettings(model=ModelRef("m", "org/m"), calibration=Calibration(str(moved), tokens=64))]
    assert llm_cells(elsewhere, tasks, specs, ["post-norm"])[2].run_id == after[2].run_id
    assert len({settings_id(c.payload.task_settings) for c in before + after}) == 1


def test_missing_calibration_file_fails_when_building_profile_cells(tmp_path):
    from llmtrunc.errors import LLMTruncError
    from llmtrunc.llm.calibration import Calibration

    settings = [RunSettings(model=ModelRef("m", "org/m"), calibration=Calibration(str(tmp_path / "gone.txt")))]
    tasks = [TaskRef("arc_easy", "local_arc_easy")]
    assert len(llm_cells(settings, tasks, [parse_drop("last-half")], ["post-norm"])) == 1  # not read unless needed
    with pytest.raises(LLMTruncError, match="calibration file not found"):
        llm_cells(settings, tasks, [parse_drop("outliers")], ["post-norm"])


def test_key_covers_settings_drop_and_position():
    base = {"model": "m", "task": "t", "limit": 10}
    keys = {run_id(cell_key(base, parse_drop("last-half"), "post-norm")),
            run_id(cell_key(base, parse_drop("last-half"), "pre-norm")),
            run_id(cell_key(base, parse_drop("first-half"), "post-norm")),
            run_id(cell_key({**base, "limit": 20}, parse_drop("last-half"), "post-norm")),
            run_id(cell_key(base, parse_drop("random:50%@1"), "post-norm"))}
    assert len(keys) == 5
    # nothing dropped: the position is moot, one baseline serves both
    assert cell_key(base, parse_drop("none"), "post-norm") == cell_key(base, parse_drop("none"), "pre-norm")
    assert cell_key(base) == cell_key(base, parse_drop("none")) == {**base, "drop": "none", "at": "-"}


def test_settings_that_matter_only_when_dropping_stay_out_of_the_baselines_key():
    base, via = {"model": "m"}, {"export_via": "head"}
    assert cell_key(base, parse_drop("none"), "post-norm", when_dropped=via) == cell_key(base)
    assert cell_key(base, parse_drop("last-half"), "post-norm", when_dropped=via) == {
        **base, "drop": "last:50%", "at": "post-norm", "export_via": "head"}


def test_the_record_builder_splits_fields_by_the_schema():
    spec = parse_drop("random:25%@3")
    record = RecordBuilder("r", "encoder", {"x": 1}, model="minilm", task="stsb", similarity="cosine",
                           **drop_fields(spec, spec.mask(8), 8))
    one = record("cosine_spearman", 1, main=False, similarity="dot", k_percent=25)
    assert (one.value, one.main, one.settings_id, one.seed, one.dim) == (1.0, False, settings_id({"x": 1}), 3, 8)
    assert one.extra == {"similarity": "dot", "k_percent": 25}  # a call's fields win over the shared ones
    assert one.git_hash and one.time and one.versions  # the provenance stamp, once per builder
    assert Record.from_json(one.to_json()) == one


def test_round_trip_and_extra_fields():
    spec = parse_drop("random:25%@3")
    record = Record(run_id="r", track="encoder", model="minilm", task="stsb", metric="cosine_spearman", value=0.8,
                    settings_id=settings_id({"x": 1}), **drop_fields(spec, spec.mask(8), 8), extra={"similarity": "cosine"})
    row = json.loads(json.dumps(record.to_json()))
    assert row["similarity"] == "cosine" and row["dropped_indices"] == list(spec.mask(8).dropped) and row["dim"] == 8
    assert Record.from_json(row) == record
    with pytest.raises(ValueError, match="shadow"):
        Record(run_id="r", track="llm", model="m", task="t", metric="acc", value=1.0, extra={"value": 2}).to_json()


def test_old_stores_are_read_with_the_common_names(tmp_path):
    old_encoder = {"track": "encoder", "run_id": "a", "model": "minilm", "model_id": "st/minilm", "revision": "local-1",
                   "task": "stsb", "data": "abc", "drop": "last:50%", "family": "last:50%", "kind": "last", "k": 0.5,
                   "dropped": [2, 3], "dim": 4, "metric": "cosine_spearman", "value": 0.7, "main": True,
                   "git": "deadbeef", "created": "2026-01-01T00:00:00+00:00", "similarity": "cosine"}
    old_base = {**old_encoder, "run_id": "b", "drop": "none", "family": "none", "kind": "none", "k": 0.0, "dropped": [],
                "value": 0.8}
    old_llm = {"track": "llm", "run_id": "c", "model": "m", "pretrained": "org/m", "task": "arc_easy", "subtask": "arc_easy",
               "metric": "acc", "filter": "none", "value": 0.5, "drop": "none", "drop_family": "none", "drop_kind": "none",
               "hidden_size": 576, "git_hash": "cafe", "time": "2026-01-01T00:00:00+00:00"}
    store = ResultsStore(tmp_path)
    for row in (old_encoder, old_base, old_llm):
        path = store.run_dir(row["run_id"]) / "records.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(row) + "\n")
    frame = store.records().set_index("run_id")
    assert frame.loc["a", "git_hash"] == "deadbeef" and frame.loc["a", "time"].startswith("2026")
    assert frame.loc["a", "drop_kind"] == "last" and frame.loc["a", "dropped_indices"] == [2, 3]
    assert frame.loc["a", "drop_ratio"] == 0.5 and frame.loc["a", "similarity"] == "cosine"
    assert frame.loc["c", "dim"] == 576 and frame.loc["c", "model_id"] == "org/m"
    assert frame.loc["a", "settings_id"] == frame.loc["b", "settings_id"] != frame.loc["c", "settings_id"]
    assert not set(LEGACY_KEYS) & set(frame.columns)  # no old spelling survives the reader
