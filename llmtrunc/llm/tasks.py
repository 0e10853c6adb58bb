"""LLM tasks: what llmtrunc knows about each standard task, the name mapping, and task fingerprints.

The repository's `tasks/` folder (or $LLMTRUNC_TASKS_DIR) holds offline variants of standard
lm-eval tasks, named `local_<standard name>` (local_gsm8k, local_mmlu, local_mmlu_stem,
local_mmlu_abstract_algebra, local_squadv2, local_arc_easy, local_arc_challenge, local_boolq,
local_wikitext, local_lambada_openai). They read the shared benchmark data and reproduce the standard tasks' prompts,
targets, splits, filters and metrics (tasks/README.md lists the known differences).

`resolve_tasks` turns the names a user typed into `TaskRef`s:

* a standard name with a local variant runs as `local_<name>` when a data directory is available
  (`llmtrunc.data.find_data_dir`) and `use_hub` is False; otherwise as the standard task (Hub);
* any other name lm-eval knows (task, group or tag, from its own tasks, `tasks/` or an
  `--include-path`), and any task YAML file, passes through;
* an unknown name raises `LLMTruncError` in one line - call this before loading any model.

`fingerprint` hashes a task's resolved configuration (includes merged, group members and tags
followed, `!function` modules by their code) and the content of every data file it reads, so a cell
key covers an edited prompt or data file.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from llmtrunc.data import ENV_VAR as DATA_ENV_VAR
from llmtrunc.data import data_dir as require_data_dir
from llmtrunc.data import find_data_dir, read_jsonl, shipped_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import code_digest, digest, file_digest
from llmtrunc.llm.compat import entry_config, load_task_yaml, task_index
from llmtrunc.registry import Registry

if TYPE_CHECKING:
    from lm_eval.tasks import TaskManager

TASKS_ENV_VAR = "LLMTRUNC_TASKS_DIR"
LOCAL_PREFIX = "local_"


def tasks_dir() -> Path:
    return Path(os.environ.get(TASKS_ENV_VAR) or shipped_dir("tasks")).expanduser().resolve()


def squad_floor(limit: float | None) -> float:
    """best_exact of always answering "unanswerable": the share of unanswerable questions (x100)."""
    data = find_data_dir()
    path = data / "squad_v2" / "validation.jsonl" if data else None
    if path is None or not path.is_file():
        return 100 * 5945 / 11873  # the full validation split
    rows = read_jsonl(path)
    if limit is not None:
        rows = rows[: int(limit) if float(limit) >= 1 else int(len(rows) * float(limit))]
    return 100 * sum(not r["answers"]["text"] for r in rows) / len(rows)


@dataclass(frozen=True)
class TaskMetadata:
    """All llmtrunc knows about one standard lm-eval task (after mteb's TaskMetadata)."""

    name: str
    main_metric: str
    main_filter: str = "none"
    chance: float | None = None  # the floor of its accuracy-type metrics
    floor_of_limit: Callable[[float | None], float] | None = None  # a floor that depends on the items
    floor_metrics: tuple[str, ...] = ("acc", "acc_norm", "exact_match")
    absent_fewshot_split: str | None = None  # the few-shot source split the shared data lacks

    def floor(self, metric: str, limit: float | None) -> float | None:
        if metric not in self.floor_metrics:
            return None
        return self.floor_of_limit(limit) if self.floor_of_limit else self.chance

    def is_main(self, subtask: str, metric: str, filt: str) -> bool:
        """The headline number: the main metric of the task itself (a group's own row, not a member's)."""
        return (metric, filt) == (self.main_metric, self.main_filter) and subtask == self.name


TASKS: Registry[TaskMetadata] = Registry("task")
for _meta in (
    TaskMetadata("arc_easy", "acc", chance=0.25, absent_fewshot_split="train"),
    TaskMetadata("arc_challenge", "acc", chance=0.25, absent_fewshot_split="train"),
    TaskMetadata("boolq", "acc", chance=0.5, absent_fewshot_split="train"),
    TaskMetadata("mmlu", "acc", chance=0.25),
    TaskMetadata("gsm8k", "exact_match", "strict-match", chance=0.0),
    TaskMetadata("squadv2", "best_exact", floor_of_limit=squad_floor,
                 floor_metrics=("best_exact", "exact", "best_f1", "f1"), absent_fewshot_split="train"),
    TaskMetadata("wikitext", "word_perplexity", absent_fewshot_split="train"),
    TaskMetadata("lambada_openai", "acc", chance=0.0),
):
    TASKS.register(_meta.name, _meta)
MMLU_GROUPS = ("mmlu_stem", "mmlu_humanities", "mmlu_social_sciences", "mmlu_other")


def standard_name(lm_eval_name: str) -> str:
    return lm_eval_name[len(LOCAL_PREFIX):] if lm_eval_name.startswith(LOCAL_PREFIX) else lm_eval_name


def metadata(name: str) -> TaskMetadata | None:
    """The metadata of a standard task (mmlu's subjects and groups share mmlu's)."""
    name = standard_name(name)
    return TASKS.find(name) or (TASKS.find("mmlu") if name.startswith("mmlu_") else None)


@dataclass(frozen=True)
class TaskRef:
    """One requested task: `name` as the user typed it, `lm_eval_name` the task that runs."""

    name: str
    lm_eval_name: str

    @property
    def is_local(self) -> bool:
        return self.lm_eval_name.startswith(LOCAL_PREFIX)

    @property
    def info(self) -> TaskMetadata | None:
        return metadata(self.name)


@functools.lru_cache(maxsize=None)
def task_manager(include_paths: tuple[str, ...] = ()) -> TaskManager:
    """lm-eval's TaskManager over its own tasks, tasks/ and any --include-path (built once; it is slow)."""
    from lm_eval.tasks import TaskManager

    folder = tasks_dir()
    if not folder.is_dir():
        raise LLMTruncError(f"tasks directory not found: {folder} (set {TASKS_ENV_VAR})")
    for path in include_paths:
        if not Path(path).is_dir():
            raise LLMTruncError(f"--include-path {path}: not a directory")
    return TaskManager(include_path=[str(folder), *include_paths])


def load_tasks(ref: TaskRef, include_paths: tuple[str, ...] = ()) -> dict:
    """lm-eval's loaded task dict for one task. A dataset that cannot be read (offline with no data directory,
    a missing file) is one line; a task with an offline variant says how to select it."""
    try:
        return task_manager(include_paths).load([ref.lm_eval_name])
    except OSError as exc:  # datasets' ConnectionError and DatasetNotFoundError are OSErrors
        hint = ""
        if not ref.is_local and local_variant(ref.name):
            found = find_data_dir()
            hint = ("; for the offline copy drop --hub-tasks" if found and found.is_dir() else
                    f"; for the offline copy pass --data-dir or set {DATA_ENV_VAR} (no ../shared/data found)")
        raise LLMTruncError(f"{ref.name}: cannot load its dataset: {exc}{hint}") from None


@functools.lru_cache(maxsize=None)
def _scan_local(folder: Path) -> tuple[str, ...]:
    found = set()
    for path in sorted(folder.glob("**/*.yaml")):
        try:
            config = load_task_yaml(path, resolve_func=False, recursive=False)
        except Exception as exc:  # a broken YAML is a setup error worth one clear line
            raise LLMTruncError(f"cannot read task file {path}: {exc}") from None
        found.update(config[k] for k in ("task", "group") if isinstance(config.get(k), str)
                     and config[k].startswith(LOCAL_PREFIX))
    return tuple(sorted(found))


def list_local_tasks() -> list[str]:
    """Every local task and group name defined under tasks/ (cheap: no TaskManager)."""
    folder = tasks_dir()
    return list(_scan_local(folder)) if folder.is_dir() else []


def local_variant(name: str) -> str | None:
    """`local_<name>` when tasks/ defines it, else None."""
    candidate = LOCAL_PREFIX + name
    return candidate if candidate in set(list_local_tasks()) else None


def _standard_names() -> list[str]:
    names = [standard_name(n) for n in list_local_tasks()]
    return [n for n in names if not n.startswith("mmlu_") or n in MMLU_GROUPS] + ["mmlu_<subject>"]


def resolve_tasks(names: list[str], data_dir: str | os.PathLike | None = None, use_hub: bool = False,
                  include_paths: tuple[str, ...] = ()) -> list[TaskRef]:
    """Map requested task names to the lm-eval tasks to run (see the module docstring).

    An explicit `data_dir` must exist. The task loaders read the data directory from $LLMTRUNC_DATA_DIR: an LLM
    run exports it (llmtrunc.llm.run.use_data_dir).
    """
    requested = [n.strip() for item in names for n in str(item).split(",") if n.strip()]
    if not requested:
        raise LLMTruncError("no task given")
    found = require_data_dir(data_dir) if data_dir is not None else find_data_dir()
    local_ok = not use_hub and found is not None and found.is_dir()

    known = set(task_manager(include_paths).all_tasks)
    refs = []
    for name in requested:
        variant = local_variant(name) if local_ok else None
        target = variant or name
        if name.endswith(".yaml"):
            if not Path(name).is_file():
                raise LLMTruncError(f"task file not found: {name}")
            target = str(Path(name).resolve())
        elif target not in known:
            raise LLMTruncError(
                f"unknown task {name!r} (see `lm-eval ls tasks` for lm-eval's names, --include-path for your own "
                f"folders; offline variants exist for {', '.join(_standard_names())})"
            )
        refs.append(TaskRef(name=name, lm_eval_name=target))
    return list(dict.fromkeys(refs))


def check_num_fewshot(refs: list[TaskRef], num_fewshot: int | None) -> None:
    """Raise when few-shot examples are asked of a local task whose few-shot split is not in the
    shared data (lm-eval itself would stop later with an AssertionError)."""
    if not num_fewshot:
        return
    for ref in refs:
        split = ref.info.absent_fewshot_split if ref.info and ref.is_local else None
        if split:
            raise LLMTruncError(
                f"{ref.name}: --num-fewshot {num_fewshot} needs the {split} split, which the shared data lacks "
                f"(run it zero-shot, or with --hub-tasks where the Hub is reachable)"
            )


# --------------------------------------------------------------------------- fingerprints


@functools.lru_cache(maxsize=None)
def _data_digest(path: Path, size: int, mtime_ns: int) -> str:
    return file_digest(path)


def _data_files(cfg: dict[str, Any]) -> dict[str, str]:
    """split -> content hash of each file in dataset_kwargs.data_files (relative to the data directory)."""
    files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) or {}
    if not isinstance(files, dict):
        return {}
    root = find_data_dir()
    out = {}
    for split, relative in sorted(files.items()):
        path = (root / relative) if root else Path(relative)
        stat = path.stat() if path.is_file() else None
        out[split] = _data_digest(path, stat.st_size, stat.st_mtime_ns) if stat else "missing"
    return out


def _canonical(value: Any) -> Any:
    """A config value with `!function` references made machine-independent: a module next to the
    YAML by its code (`code_digest`: a docstring edit keeps every key), an importable one by its dotted name."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and "." in Path(value).name:
        folder, name = Path(value).parent, Path(value).name
        module, _, function = name.rpartition(".")
        source = folder / f"{module.replace('.', '/')}.py"
        return {"function": function, "module_code_sha256": code_digest(source)} if source.is_file() else name
    return value


def _describe(name: str, manager: TaskManager, seen: frozenset[str] = frozenset()) -> Any:
    Kind, TaskIndex = task_index()
    if name in seen:
        return name
    entry = manager.task_index.get(name) or (TaskIndex.entry_from_path(Path(name)) if name.endswith(".yaml") else None)
    if entry is None:
        return {"name": name}
    seen = seen | {name}
    if entry.kind == Kind.TAG:
        members = sorted(n for n, e in manager.task_index.items() if name in e.tags and e.kind != Kind.TAG)
        return {"tag": name, "members": [_describe(m, manager, seen) for m in members]}
    cfg = entry_config(entry)
    described: dict[str, Any] = {"config": _canonical(cfg), "data": _data_files(cfg)}
    if entry.kind == Kind.GROUP:
        members = cfg.get("task") or []
        described["members"] = [_describe(m, manager, seen) if isinstance(m, str) else _canonical(m)
                                for m in (members if isinstance(members, list) else [members])]
    return described


def fingerprint(ref: TaskRef, include_paths: tuple[str, ...] = ()) -> str:
    """Hash of everything of the task that changes its numbers: resolved config and data files."""
    return digest(_describe(ref.lm_eval_name, task_manager(include_paths)))
