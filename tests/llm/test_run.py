"""llmtrunc.llm.run: the one way into an LLM run, what building it does once, and that the commands use it."""

import ast
import os
from pathlib import Path

import pytest

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.evaluate import RunSettings, llm_cells
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.run import LLMRun
from llmtrunc.spec import parse_drop

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"


def test_building_a_run_exports_the_data_directory_and_resolves_and_checks_the_tasks(monkeypatch, tmp_path):
    from lm_eval.api.registry import model_registry

    monkeypatch.delenv("LLMTRUNC_DATA_DIR", raising=False)
    settings = RunSettings(model=resolve_model("smollm2-135m"))
    run = LLMRun.build([settings], ["arc_easy"], str(DATA))
    assert os.environ["LLMTRUNC_DATA_DIR"] == str(DATA.resolve()) and "hf-trunc" in model_registry
    assert [t.lm_eval_name for t in run.tasks] == ["local_arc_easy"] and run.store is None
    specs, at = [parse_drop("none"), parse_drop("last-half")], ["post-norm", "pre-norm"]
    assert [c.run_id for c in run.drop_cells(specs, at)] == [c.run_id for c in llm_cells([settings], run.tasks, specs, at)]
    with pytest.raises(LLMTruncError, match="--num-fewshot 5 needs the train split"):
        LLMRun.build([RunSettings(model=resolve_model("smollm2-135m"), num_fewshot=5)], ["arc_easy"], str(DATA))
    with pytest.raises(LLMTruncError, match="data directory not found"):
        LLMRun.build([settings], ["arc_easy"], str(tmp_path / "absent"))


def test_vllm_runs_in_one_process_only(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    settings = RunSettings(model=resolve_model("smollm2-135m"), backend="vllm")
    with pytest.raises(LLMTruncError, match="start it as one process"):
        LLMRun.build([settings], ["arc_easy"])


def test_the_llm_commands_reach_tasks_data_and_library_adaptations_only_through_the_run():
    """eval, sweep and attribute: arguments -> LLMRun -> execute -> print; none repeats the run's preamble."""
    preamble = {"install", "use_data_dir", "resolve_tasks", "check_num_fewshot", "llm_cells", "attribution_cells"}
    for command in ("eval", "sweep", "attribute"):
        tree = ast.parse((ROOT / "llmtrunc" / "commands" / f"{command}.py").read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
        assert not imported & preamble, command
        assert not [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", None) == "setattr"], command  # no config written back into args
