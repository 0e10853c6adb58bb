"""LLM track runner: spec -> hooks -> lm-eval -> flat records in the results store.

One model load serves every drop condition: `HFTruncLM.set_drop` swaps the hooks between runs.
A run is one (model, drop, position, task) cell, keyed by every setting that changes its
numbers, so a cell already in the store (a baseline from an earlier command, or a cell an
interrupted sweep finished) is reused instead of recomputed.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from llmtrunc import provenance
from llmtrunc.data import ENV_VAR, find_data_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.models import ModelRef
from llmtrunc.spec import DropSpec
from llmtrunc.store import ResultsStore, run_id
from llmtrunc.tasks import TaskRef, task_manager

LOCAL_PREFIX = "local_"


@dataclass(frozen=True)
class RunSettings:
    """Everything besides drop, position and task that decides a run's numbers."""

    model: ModelRef
    revision: str = "main"
    dtype: str = "auto"
    num_fewshot: int | None = None
    limit: float | None = None
    apply_chat_template: bool = False
    gen_kwargs: str | None = None
    quantization: str | None = None
    backend: str = "hf"
    batch_size: str = "1"
    device: str = "cpu"
    extra_model_args: dict[str, Any] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        return {
            "pretrained": self.model.pretrained,
            "gguf_file": self.model.gguf_file,
            "revision": self.revision,
            "dtype": self.dtype,
            "num_fewshot": self.num_fewshot,
            "limit": self.limit,
            "apply_chat_template": self.apply_chat_template,
            "gen_kwargs": self.gen_kwargs,
            "quantization": self.quantization,
            "backend": self.backend,
        }


def cell_key(settings: RunSettings, spec: DropSpec, at: str, task: TaskRef) -> dict[str, Any]:
    # With nothing dropped the position is irrelevant: one baseline serves both positions.
    return {**settings.key(), "drop": spec.name, "at": at if spec.kind != "none" else "-", "task": task.lm_eval_name}


def cell_id(settings: RunSettings, spec: DropSpec, at: str, task: TaskRef) -> str:
    at_label = at if spec.kind != "none" else ""
    return run_id(cell_key(settings, spec, at, task), settings.model.name, task.name, spec.name, at_label)


def load_lm(settings: RunSettings, lm_class=None):
    """Load the model once as hf-trunc (no hooks yet); loading failures become one-line errors."""
    from llmtrunc.hf_trunc import HFTruncLM

    lm_class = lm_class or HFTruncLM
    args = {
        **settings.model.model_args(),
        "revision": settings.revision,
        "dtype": settings.dtype,
        "batch_size": settings.batch_size,
        "device": settings.device,
        **({"quantization": settings.quantization} if settings.quantization else {}),
        **settings.extra_model_args,
    }
    try:
        return lm_class(**args)
    except LLMTruncError:
        raise
    except Exception as exc:  # transformers/hub raise many types; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LLMTruncError(f"cannot load model {settings.model.name!r}: {first}") from None


def standard_name(lm_eval_name: str) -> str:
    return lm_eval_name[len(LOCAL_PREFIX):] if lm_eval_name.startswith(LOCAL_PREFIX) else lm_eval_name


def to_records(results: dict, base: dict[str, Any]) -> list[dict[str, Any]]:
    """lm-eval's results dict -> one flat record per (task, metric, filter)."""
    records = []
    for lm_task, metrics in results["results"].items():
        higher = results.get("higher_is_better", {}).get(lm_task, {})
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            records.append({
                **base,
                "subtask": standard_name(lm_task),
                "lm_eval_task": lm_task,
                "metric": metric,
                "filter": filt,
                "value": float(value),
                "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                "higher_is_better": higher.get(metric),
                "n_shot": results.get("n-shot", {}).get(lm_task),
                "n_samples": results.get("n-samples", {}).get(lm_task, {}).get("effective"),
            })
    return records


def probe_environment_once() -> None:
    """Keep the first answer of torch's environment probe for the rest of the process.

    lm-eval's simple_evaluate puts `torch.utils.collect_env.get_pretty_env_info()` in every result,
    which runs a dozen subprocesses (about a second); a sweep calls it per cell, and the answer
    (versions, devices) does not change within a process.
    """
    from torch.utils import collect_env

    if not hasattr(collect_env.get_pretty_env_info, "cache_info"):
        collect_env.get_pretty_env_info = functools.cache(collect_env.get_pretty_env_info)


def run_cell(lm, settings: RunSettings, spec: DropSpec, at: str, task: TaskRef, store: ResultsStore,
             log_samples: bool = False) -> tuple[str, list[dict], bool]:
    """Evaluate one cell unless the store has it; returns (run id, records, reused?)."""
    import lm_eval
    from lm_eval.utils import handle_non_serializable

    rid = cell_id(settings, spec, at, task)
    if store.has_run(rid):
        return rid, store.run_records(rid), True
    indices = lm.set_drop(spec, at)
    probe_environment_once()
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[task.lm_eval_name],
        num_fewshot=settings.num_fewshot,
        limit=settings.limit,
        log_samples=log_samples,
        apply_chat_template=settings.apply_chat_template,
        gen_kwargs=settings.gen_kwargs,
        task_manager=task_manager(),
    )
    if results is None:  # non-zero rank under data parallel: rank 0 writes
        return rid, [], False
    base = {
        "run_id": rid,
        "track": "llm",
        "model": settings.model.name,
        "pretrained": settings.model.pretrained,
        "gguf_file": settings.model.gguf_file,
        "revision": settings.revision,
        "dtype": settings.dtype,
        "quantization": settings.quantization,
        "backend": settings.backend,
        "drop": spec.name,
        "drop_family": spec.family,
        "drop_kind": spec.kind,
        "drop_ratio": None if spec.ratio is None else float(spec.ratio),
        "seed": spec.seed,
        "dropped_indices": list(indices),
        "n_dropped": len(indices),
        "hidden_size": lm.hidden_size,
        "at": at if spec.kind != "none" else "-",
        "task": task.name,
        "num_fewshot": settings.num_fewshot,
        "limit": settings.limit,
        "apply_chat_template": settings.apply_chat_template,
        "gen_kwargs": settings.gen_kwargs,
        "versions": provenance.versions(),
        "git_hash": provenance.git_hash(),
        "command": provenance.command(),
        "time": provenance.now(),
        "seconds": round(time.perf_counter() - start, 1),  # wall time of this cell (a shared body lands on the first)
    }
    samples = results.pop("samples", None) or {}
    files: dict[str, Any] = {"results.json": json.dumps(results, indent=2, default=handle_non_serializable)}
    for name, rows in samples.items():
        files[f"samples_{name}.jsonl"] = "".join(json.dumps(r, default=handle_non_serializable) + "\n" for r in rows)
    records = to_records(results, base)
    store.write_run(rid, records, files)
    return rid, records, False


def use_data_dir(explicit: str | None) -> None:
    """Point the local tasks at --data-dir (they read $LLMTRUNC_DATA_DIR when lm-eval loads them)."""
    found = find_data_dir(explicit)
    if explicit and (found is None or not found.is_dir()):
        raise LLMTruncError(f"data directory not found: {explicit}")
    if found is not None:
        os.environ[ENV_VAR] = str(found)



@dataclass(frozen=True)
class Cell:
    """One unit of work and of storage: a task under one drop at one position."""

    task: TaskRef
    spec: DropSpec
    at: str


class LMProvider:
    """The LM for a cell: hf loads the model once for every drop, vllm builds one engine per drop."""

    def __init__(self, settings: RunSettings, lm_class=None, tensor_parallel_size: int = 1, data_parallel_size: int = 1):
        self.settings, self.lm_class = settings, lm_class
        self.parallel = (tensor_parallel_size, data_parallel_size)
        self._lm, self._lm_spec = None, None

    def check(self, cells: list[Cell]) -> None:
        """Refuse what the backend cannot run before anything is computed."""
        if self.settings.backend == "vllm":
            from llmtrunc.export import check_exportable
            from llmtrunc.vllm_backend import require_vllm

            for cell in cells:
                check_exportable(cell.spec, cell.at)
            require_vllm()

    def clear_cache(self) -> None:
        """Free a shared-body cache (its states belong to one task)."""
        if hasattr(self._lm, "clear_cache"):
            self._lm.clear_cache()

    def get(self, spec: DropSpec, at: str):
        if self.settings.backend == "vllm":
            if self._lm_spec != (spec, at):
                from llmtrunc.vllm_backend import vllm_lm

                self._lm = vllm_lm(self.settings, spec, at, *self.parallel)
                self._lm_spec = (spec, at)
        elif self._lm is None:
            self._lm = load_lm(self.settings, self.lm_class)
        return self._lm


def run_cells(cells: list[Cell], settings: RunSettings, store: ResultsStore, provider: LMProvider,
              log_samples: bool = False, console=None) -> list[str]:
    """Compute every cell the store lacks, in order; returns the run ids of all cells."""
    from rich.console import Console

    console = console or Console(stderr=True)
    provider.check([c for c in cells if not store.has_run(cell_id(settings, c.spec, c.at, c.task))])
    run_ids = []
    for cell in cells:
        rid = cell_id(settings, cell.spec, cell.at, cell.task)
        where = f" at {cell.at}" if cell.spec.kind != "none" else ""
        if store.has_run(rid):
            console.print(f"[dim]reusing {settings.model.name} / {cell.task.name} / {cell.spec.name}{where}[/dim]")
        else:
            lm = provider.get(cell.spec, cell.at)
            console.print(f"evaluating {settings.model.name} / {cell.task.name} / {cell.spec.name}{where}")
            run_cell(lm, settings, cell.spec, cell.at, cell.task, store, log_samples)
        run_ids.append(rid)
    return run_ids
