"""Sweep grid, shards, config, and resume after a killed sweep (a tiny checkpoint on the real tasks)."""

import signal
import subprocess
import sys

import pytest

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.evaluate import RunSettings, llm_cells
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.sweep import SweepConfig
from llmtrunc.llm.tasks import TaskRef
from llmtrunc.runner import parse_shard, shard
from llmtrunc.spec import expand_grid, parse_k_list
from llmtrunc.store import ResultsStore

TASKS = [TaskRef("arc_easy", "local_arc_easy"), TaskRef("boolq", "local_boolq")]


def cells():
    settings = [RunSettings(model=resolve_model(m)) for m in ("smollm2-135m", "qwen2.5-7b")]
    specs = expand_grid(["first-half", "last-half", "random"], parse_k_list("50%"), [0, 1, 2, 3, 4])
    return llm_cells(settings, TASKS, specs, ["post-norm", "pre-norm"])


def test_grid_expands_seeds_k_and_positions():
    grid = cells()
    # per model and task: none once + (first, last, 5 random) x 2 positions
    assert len(grid) == 2 * 2 * (1 + 7 * 2)
    names = {c.payload.spec.name for c in grid}
    assert names == {"none", "first:50%", "last:50%", *(f"random:50%@{s}" for s in range(5))}
    assert len({c.run_id for c in grid}) == len(grid)  # every cell its own key
    assert [c.group for c in grid[:15]] == [("smollm2-135m", "local_arc_easy")] * 15  # canonical order


@pytest.mark.parametrize("total", [1, 2, 3, 7, 64])
def test_shards_partition_the_grid(total):
    grid = cells()
    parts = [shard(grid, i, total) for i in range(1, total + 1)]
    assert [c for part in parts for c in part] == grid  # disjoint, complete, order kept
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_bad_shard_and_config(tmp_path):
    for text in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(LLMTruncError):
            parse_shard(text)
    path = tmp_path / "sweep.yaml"
    path.write_text("models: smollm2-135m\ntasks: [arc_easy]\ndrops: [last-half]\ncolour: red\n")
    with pytest.raises(LLMTruncError, match="unknown keys"):
        SweepConfig.from_yaml(str(path))
    with pytest.raises(LLMTruncError, match="K grid"):
        expand_grid(["random"])


# Runs the CLI in a child that SIGKILLs itself inside the third record write: after the temporary file is
# written, before it is renamed into place. A real kill at a fixed point (polling for files raced the shared
# body, which writes the later cells within milliseconds).
KILL_ON_THIRD_RECORD = """
import os, signal, sys
from llmtrunc.cli import main
replace, seen = os.replace, []
def replace_or_die(src, dst):
    if str(dst).endswith("records.jsonl"):
        seen.append(dst)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
os.replace = replace_or_die
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("task", [["arc_easy"], ["gsm8k", "--gen-kwargs", "max_gen_toks=16"]], ids=["loglikelihood",
                                                                                            "generation"])
def test_killed_sweep_resumes_without_recomputing_or_duplicating(tmp_path, task, tiny_checkpoint):
    """Shared scoring and shared generation alike: finished cells survive the kill and are not redone."""
    out = tmp_path / "store"
    args = ["sweep", "--model", str(tiny_checkpoint), "--tasks", *task,
            "--drop", "first-half,last-half,random:50%@1", "--limit", "2", "--results-dir", str(out)]
    killed = subprocess.run([sys.executable, "-c", KILL_ON_THIRD_RECORD, *args], capture_output=True, timeout=900)
    assert killed.returncode == -signal.SIGKILL
    first = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/records.jsonl")}
    assert len(first) == 2
    assert len(list(out.glob("runs/*/.records.jsonl.*.tmp"))) == 1  # the interrupted write never became a record
    done = subprocess.run([sys.executable, "-m", "llmtrunc.cli", *args], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("reusing") == 2
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # finished cells untouched
    records = ResultsStore(out).records()
    assert records["run_id"].nunique() == 4
    assert not records.duplicated(["run_id", "metric", "filter"]).any()
    assert set(records["drop"]) == {"none", "first:50%", "last:50%", "random:50%@1"}
