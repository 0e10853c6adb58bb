"""LLM cells: spec -> mask -> hooks -> lm-eval -> records, one model load for every condition.

`llm_cells` expands models x tasks x drops x positions into runner cells (llmtrunc.runner); one
group per (model, task), so the shared body's cache (llmtrunc.llm.shared_body) serves every
condition of a task. `LLMCompute` is the runner's compute function: it loads each model once
(`HFTruncLM.set_drop` swaps the hooks between cells; the vLLM backend builds one engine per drop,
the drop being in its weights) and turns lm-eval's results into records.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from llmtrunc import provenance
from llmtrunc.data import ENV_VAR, find_data_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.models import ModelRef
from llmtrunc.llm.tasks import TaskRef, fingerprint, metadata, standard_name, task_manager
from llmtrunc.record import Record, cell_key, drop_fields, settings_id
from llmtrunc.runner import Cell, Computed
from llmtrunc.spec import DropSpec, Mask


@dataclass(frozen=True)
class RunSettings:
    """Everything besides drop, position and task that decides a run's numbers (and how it runs)."""

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
    include_paths: tuple[str, ...] = ()
    extra_model_args: dict[str, Any] = field(default_factory=dict)
    export_via: str = "auto"  # vllm: how drops are written as weights (llmtrunc.llm.export); keyed per cell

    def key(self) -> dict[str, Any]:
        return {"pretrained": self.model.pretrained, "gguf_file": self.model.gguf_file, "revision": self.revision,
                "dtype": self.dtype, "num_fewshot": self.num_fewshot, "limit": self.limit,
                "apply_chat_template": self.apply_chat_template, "gen_kwargs": self.gen_kwargs,
                "quantization": self.quantization, "backend": self.backend}


@dataclass(frozen=True)
class LLMCell:
    """What computing one cell needs (the runner cell's payload)."""

    settings: RunSettings
    task: TaskRef
    spec: DropSpec
    at: str

    @property
    def task_settings(self) -> dict[str, Any]:
        return {"track": "llm", **self.settings.key(), "task": self.task.lm_eval_name,
                "task_sha256": fingerprint(self.task, self.settings.include_paths)}


def llm_cells(settings: list[RunSettings], tasks: list[TaskRef], specs: list[DropSpec],
              positions: list[str]) -> list[Cell]:
    """The grid in its canonical order (model, task, drop, position); `none` once per model and task."""
    cells = []
    for run in settings:
        for task in tasks:
            for spec in specs:
                for at in positions[:1] if spec.kind == "none" else positions:
                    payload = LLMCell(run, task, spec, at)
                    key = cell_key(payload.task_settings, spec, at)
                    if run.backend == "vllm" and spec.kind != "none":  # the baseline has nothing to write
                        key["export_via"] = run.export_via
                    cells.append(Cell(key, (run.model.name, task.name, spec.name, at if spec.kind != "none" else ""),
                                      (run.model.name, task.lm_eval_name), payload))
    return cells


def load_lm(settings: RunSettings, lm_class=None):
    """Load the model once as hf-trunc (no hooks yet); loading failures become one-line errors."""
    from llmtrunc.llm.hf_trunc import HFTruncLM

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


def to_records(results: dict, cell: Cell, mask: Mask, seconds: float,
               engine: dict[str, Any] | None = None) -> list[Record]:
    """lm-eval's results dict -> one record per (task, metric, filter); `engine`: the LM's own record fields
    (vLLM: engine version, export method, engine check)."""
    job: LLMCell = cell.payload
    run, spec = job.settings, job.spec
    info = metadata(job.task.name)
    common = {
        "run_id": cell.run_id, "track": "llm", "model": run.model.name, "model_id": run.model.pretrained,
        "revision": run.revision, "task": job.task.name, "settings_id": settings_id(job.task_settings),
        **drop_fields(spec, mask, mask.dim), "at": job.at if spec.kind != "none" else "-",
        "num_fewshot": run.num_fewshot, "limit": run.limit, **provenance.stamp(), "seconds": round(seconds, 1),
    }
    extra = {"gguf_file": run.model.gguf_file, "dtype": run.dtype, "quantization": run.quantization,
             "backend": run.backend, "apply_chat_template": run.apply_chat_template, "gen_kwargs": run.gen_kwargs,
             **(engine or {})}
    records = []
    for lm_task, metrics in results["results"].items():
        higher = results.get("higher_is_better", {}).get(lm_task, {})
        subtask = standard_name(lm_task)
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            records.append(Record(
                **common, subtask=subtask, metric=metric, filter=filt, value=float(value),
                stderr=float(stderr) if isinstance(stderr, (int, float)) else None,
                higher_is_better=higher.get(metric),
                main=info.is_main(subtask, metric, filt) if info else True,
                floor=info.floor(metric, run.limit) if info else None,
                extra={**extra, "lm_eval_task": lm_task, "n_shot": results.get("n-shot", {}).get(lm_task),
                       "n_samples": results.get("n-samples", {}).get(lm_task, {}).get("effective")},
            ))
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


def use_data_dir(explicit: str | None) -> None:
    """Point the local tasks at --data-dir (they read $LLMTRUNC_DATA_DIR when lm-eval loads them)."""
    found = find_data_dir(explicit)
    if explicit and (found is None or not found.is_dir()):
        raise LLMTruncError(f"data directory not found: {explicit}")
    if found is not None:
        os.environ[ENV_VAR] = str(found)


class LLMCompute:
    """The runner's compute function for LLM cells: one model load (hf) or one engine per drop (vllm)."""

    def __init__(self, lm_class=None, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 log_samples: bool = False):
        self.lm_class, self.parallel, self.log_samples = lm_class, (tensor_parallel_size, data_parallel_size), log_samples
        self._lm, self._model, self._lm_spec = None, None, None

    def check(self, cells: list[Cell]) -> None:
        """Refuse what the backend cannot run before anything is computed; under vLLM, then write the
        exports the cells run on (each source model loaded once)."""
        jobs = [c.payload for c in cells]
        if any(job.settings.backend == "vllm" for job in jobs):
            from llmtrunc.llm.export import check_exportable
            from llmtrunc.llm.vllm_backend import prepare_exports, require_vllm

            for job in jobs:
                check_exportable(job.spec, job.at)
            require_vllm()
            prepare_exports([(job.settings, job.spec, job.at) for job in jobs])

    def lm_for(self, job: LLMCell):
        if job.settings.backend == "vllm":
            if self._lm_spec != (job.settings, job.spec, job.at):
                from llmtrunc.llm.vllm_backend import vllm_lm

                self._lm = vllm_lm(job.settings, job.spec, job.at, *self.parallel)
                self._lm_spec = (job.settings, job.spec, job.at)
        elif self._model != job.settings:
            self._lm, self._model = load_lm(job.settings, self.lm_class), job.settings
        return self._lm

    def __call__(self, cells: list[Cell]) -> Iterator[Computed]:
        import lm_eval
        from lm_eval.utils import handle_non_serializable

        probe_environment_once()
        first = self.lm_for(cells[0].payload)
        for cell in cells:  # every mask of the group checked against the model before anything runs
            cell.payload.spec.mask(first.hidden_size)
        for cell in cells:
            job: LLMCell = cell.payload
            lm = self.lm_for(job)
            mask = lm.set_drop(job.spec, job.at)
            start = time.perf_counter()
            results = lm_eval.simple_evaluate(
                model=lm, tasks=[job.task.lm_eval_name], num_fewshot=job.settings.num_fewshot,
                limit=job.settings.limit, log_samples=self.log_samples,
                apply_chat_template=job.settings.apply_chat_template, gen_kwargs=job.settings.gen_kwargs,
                task_manager=task_manager(job.settings.include_paths),
            )
            if results is None:  # non-zero rank under data parallel: rank 0 writes
                continue
            samples = results.pop("samples", None) or {}
            files: dict[str, Any] = {"results.json": json.dumps(results, indent=2, default=handle_non_serializable)}
            for name, rows in samples.items():
                files[f"samples_{name}.jsonl"] = "".join(json.dumps(r, default=handle_non_serializable) + "\n" for r in rows)
            records = to_records(results, cell, mask, time.perf_counter() - start, getattr(lm, "record_extra", None))
            yield cell, records, files
        if hasattr(self._lm, "clear_cache"):
            self._lm.clear_cache()  # a shared-body cache holds one task's states
