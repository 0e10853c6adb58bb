"""The one place that maps task names to the lm-eval tasks actually run.

The repository's `tasks/` folder (`TASKS_DIR`, or $LLMTRUNC_TASKS_DIR) holds offline variants of
standard lm-eval tasks, named `local_<standard name>` (local_gsm8k, local_mmlu, local_mmlu_stem,
local_mmlu_abstract_algebra, local_squadv2, local_arc_easy, local_arc_challenge, local_boolq,
local_wikitext). They read the shared benchmark data and reproduce the standard tasks' prompts,
targets, splits, filters and metrics (tasks/README.md lists the known differences).

`resolve_tasks` turns the names a user typed into `TaskRef`s:

* a standard name with a local variant runs as `local_<name>` when a data directory is available
  (`llmtrunc.data.find_data_dir`) and `use_hub` is False; otherwise as the standard task (Hub);
* any other name lm-eval knows (task, group or tag, including `local_*` names) passes through;
* an unknown name raises `LLMTruncError` in one line - call this before loading any model.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmtrunc.data import ENV_VAR as DATA_ENV_VAR
from llmtrunc.data import PROJECT_ROOT, find_data_dir
from llmtrunc.data import data_dir as require_data_dir
from llmtrunc.errors import LLMTruncError

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

TASKS_ENV_VAR = "LLMTRUNC_TASKS_DIR"
TASKS_DIR = Path(os.environ.get(TASKS_ENV_VAR) or PROJECT_ROOT / "tasks").expanduser().resolve()
LOCAL_PREFIX = "local_"

#: local tasks whose few-shot source split is absent from the shared data (it loads empty)
NO_FEWSHOT_SPLIT = {
    "local_arc_easy": "train",
    "local_arc_challenge": "train",
    "local_boolq": "train",
    "local_squadv2": "train",
    "local_wikitext": "train",
}


MMLU_GROUPS = ("mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other")


@dataclass(frozen=True)
class TaskRef:
    """One requested task: `name` as the user typed it, `lm_eval_name` the task that runs."""

    name: str
    lm_eval_name: str

    @property
    def is_local(self) -> bool:
        return self.lm_eval_name.startswith(LOCAL_PREFIX)


@functools.lru_cache(maxsize=None)
def task_manager() -> TaskManager:
    """lm-eval's TaskManager over its own tasks plus TASKS_DIR (built once; it is slow)."""
    from lm_eval.tasks import TaskManager

    if not TASKS_DIR.is_dir():
        raise LLMTruncError(f"tasks directory not found: {TASKS_DIR} (set {TASKS_ENV_VAR})")
    return TaskManager(include_path=str(TASKS_DIR))


def _names_in(config: dict) -> list[str]:
    names = []
    for key in ("task", "group"):
        value = config.get(key)
        if isinstance(value, str):
            names.append(value)
    return names


@functools.lru_cache(maxsize=None)
def _scan_local(tasks_dir: Path) -> tuple[str, ...]:
    from lm_eval.tasks._yaml_loader import load_yaml

    found = set()
    for path in sorted(tasks_dir.glob("**/*.yaml")):
        try:
            config = load_yaml(path, resolve_func=False, recursive=False)
        except Exception as exc:  # a broken YAML is a setup error worth one clear line
            raise LLMTruncError(f"cannot read task file {path}: {exc}") from None
        found.update(n for n in _names_in(config) if n.startswith(LOCAL_PREFIX))
    return tuple(sorted(found))


def list_local_tasks() -> list[str]:
    """Every local task and group name defined under TASKS_DIR (cheap: no TaskManager)."""
    return list(_scan_local(TASKS_DIR)) if TASKS_DIR.is_dir() else []


def local_variant(name: str) -> str | None:
    """`local_<name>` when TASKS_DIR defines it, else None."""
    candidate = LOCAL_PREFIX + name
    return candidate if candidate in set(list_local_tasks()) else None


def _standard_names() -> list[str]:
    names = [n[len(LOCAL_PREFIX):] for n in list_local_tasks()]
    return [n for n in names if not n.startswith("mmlu_") or n in MMLU_GROUPS] + ["mmlu_<subject>"]


def resolve_tasks(names: list[str], data_dir: str | os.PathLike | None = None, use_hub: bool = False) -> list[TaskRef]:
    """Map requested task names to the lm-eval tasks to run (see the module docstring).

    An explicit `data_dir` must exist; when local tasks are chosen it is exported as
    $LLMTRUNC_DATA_DIR so that the task loaders read that same directory.
    """
    requested = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if not requested:
        raise LLMTruncError("no task given")
    found = require_data_dir(data_dir) if data_dir is not None else find_data_dir()
    local_ok = not use_hub and found is not None and found.is_dir()

    known = set(task_manager().all_tasks)
    refs = []
    for name in requested:
        variant = local_variant(name) if local_ok else None
        target = variant or name
        if target not in known and not (name.endswith(".yaml") and Path(name).is_file()):
            raise LLMTruncError(
                f"unknown task {name!r} (see `lm-eval ls tasks` for lm-eval's names; offline variants exist for "
                f"{', '.join(_standard_names())})"
            )
        refs.append(TaskRef(name=name, lm_eval_name=target))
    if found is not None and any(r.is_local for r in refs):
        os.environ[DATA_ENV_VAR] = str(found)
    return list(dict.fromkeys(refs))


def check_num_fewshot(refs: list[TaskRef], num_fewshot: int | None) -> None:
    """Raise when few-shot examples are asked of a local task whose few-shot split is not in the
    shared data (lm-eval itself would stop later with an AssertionError)."""
    if not num_fewshot:
        return
    for ref in refs:
        split = NO_FEWSHOT_SPLIT.get(ref.lm_eval_name)
        if split:
            raise LLMTruncError(
                f"{ref.name}: --num-fewshot {num_fewshot} needs the {split} split, which the shared data lacks "
                f"(run it zero-shot, or with --use-hub where the Hub is reachable)"
            )
