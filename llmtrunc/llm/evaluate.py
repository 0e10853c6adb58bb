"""LLM cells: spec -> mask -> hooks -> lm-eval -> records, one model load for every condition.

`llm_cells` expands models x tasks x drops x positions into runner cells (llmtrunc.runner); one
group per (model, task), so the shared body's cache (llmtrunc.llm.shared_body) serves every
condition of a task. `LLMCompute` is the runner's compute function: it loads each model once
(`HFTruncLM.set_drop` swaps the hooks between cells; the vLLM backend builds one engine per drop,
the drop being in its weights) and turns lm-eval's results into records. Before an engine scores a
cell, its parity with the hook path is checked (llmtrunc.llm.parity).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import parity
from llmtrunc.llm.calibration import Calibration
from llmtrunc.llm.compat import reuse_requests
from llmtrunc.llm.models import ModelRef
from llmtrunc.llm.protocol import TruncLM
from llmtrunc.llm.tasks import TaskRef, fingerprint, load_tasks, metadata, standard_name, task_manager
from llmtrunc.parallel import processes
from llmtrunc.record import Record, RecordBuilder, cell_key, drop_fields
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
    calibration: Calibration = Calibration()  # only profile-based drops' cells depend on it (llmtrunc.record.cell_key)
    export_via: str = "auto"  # vllm: how drops are written as weights (llmtrunc.llm.export); keyed per cell

    def key(self) -> dict[str, Any]:
        """The settings as the cell key names them: the model by what it is (ModelRef.key), never where it is."""
        return {**self.model.key(), "revision": self.revision,
                "dtype": self.dtype, "num_fewshot": self.num_fewshot, "limit": self.limit,
                "apply_chat_template": self.apply_chat_template, "gen_kwargs": self.gen_kwargs,
                "quantization": self.quantization, "backend": self.backend}

    def when_dropped(self) -> dict[str, Any]:
        """What changes a cell's numbers only when it drops something: vLLM's export method (a baseline writes nothing)."""
        return {"export_via": self.export_via} if self.backend == "vllm" else {}


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

    def cell(self, calibration: dict[str, Any] | None = None) -> Cell:
        """The runner cell of this job; `calibration`: the key of the profiles a profile-based drop resolves against."""
        key = cell_key(self.task_settings, self.spec, self.at, calibration, self.settings.when_dropped())
        dropped = self.spec.kind != "none"
        return Cell(key, (self.settings.model.name, self.task.name, self.spec.name, self.at if dropped else ""),
                    (self.settings.model.name, self.task.lm_eval_name), self)


def llm_cells(settings: list[RunSettings], tasks: list[TaskRef], specs: list[DropSpec],
              positions: list[str]) -> list[Cell]:
    """The grid in its canonical order (model, task, drop, position); `none` once per model and task.
    Profile-based drops read their calibration file here, so a missing one fails before any model loads."""
    cells = []
    for run in settings:
        calibration = run.calibration.key() if any(s.needs_profile for s in specs) else None
        for task in tasks:
            for spec in specs:
                cells += [LLMCell(run, task, spec, at).cell(calibration)
                          for at in (positions[:1] if spec.kind == "none" else positions)]
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
        "calibration": settings.calibration,
        **settings.extra_model_args,
    }
    try:
        return lm_class(**args)
    except LLMTruncError:
        raise
    except Exception as exc:  # transformers/hub raise many types; the user needs the first line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LLMTruncError(f"cannot load model {settings.model.name!r}: {first}") from None


def item_values(results: dict, samples: dict, lm_task: str, metric: str, filt: str, value: float) -> list[float] | None:
    """The per-item values behind a mean-aggregated metric (a group: its leaf tasks' items in name order).

    Kept in the record so that paired statistics against the baseline need no second run. None where
    the metric is not the mean of per-item numbers (perplexities, SQuAD's best_exact)."""
    leaves, todo = [], [lm_task]
    while todo:
        name = todo.pop(0)
        children = results.get("group_subtasks", {}).get(name)
        if children:
            todo = sorted(children) + todo
        else:
            leaves.append(name)
    items = []
    for leaf in leaves:
        rows = sorted((r for r in samples.get(leaf, []) if r.get("filter") == filt), key=lambda r: r["doc_id"])
        if not rows or not all(isinstance(r.get(metric), (int, float)) and not isinstance(r.get(metric), bool)
                               for r in rows):
            return None
        items += [float(r[metric]) for r in rows]
    if not items or abs(sum(items) / len(items) - value) > 1e-9:
        return None
    return [int(v) if v.is_integer() else v for v in items]


def to_records(results: dict, samples: dict, cell: Cell, mask: Mask, seconds: float,
               lm_fields: dict[str, Any]) -> list[Record]:
    """lm-eval's results dict -> one record per (task, metric, filter), with its per-item values;
    `lm_fields`: what the LM adds to every record (llmtrunc.llm.evaluate.lm_fields)."""
    job: LLMCell = cell.payload
    run, spec = job.settings, job.spec
    info = metadata(job.task.name)
    settings = job.task_settings
    record = RecordBuilder(
        cell.run_id, "llm", settings, **run.model.record_fields(), revision=run.revision, task=job.task.name,
        data=settings["task_sha256"], **drop_fields(spec, mask, mask.dim),
        at=job.at if spec.kind != "none" else "-", num_fewshot=run.num_fewshot, limit=run.limit,
        seconds=round(seconds, 1), dtype=run.dtype, quantization=run.quantization,
        backend=run.backend, apply_chat_template=run.apply_chat_template, gen_kwargs=run.gen_kwargs,
        batch_size=run.batch_size, device=run.device, **lm_fields)
    records = []
    for lm_task, metrics in results["results"].items():
        higher = results.get("higher_is_better", {}).get(lm_task, {})
        subtask = standard_name(lm_task)
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key or not isinstance(value, (int, float)):
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            records.append(record(
                metric, value, subtask=subtask, filter=filt,
                stderr=float(stderr) if isinstance(stderr, (int, float)) else None,
                higher_is_better=higher.get(metric),
                main=info.is_main(subtask, metric, filt) if info else True,
                floor=info.floor(metric, run.limit) if info else None,
                lm_eval_task=lm_task, n_shot=results.get("n-shot", {}).get(lm_task),
                n_samples=results.get("n-samples", {}).get(lm_task, {}).get("effective"),
                items=item_values(results, samples, lm_task, metric, filt, float(value))))
    return records


class LLMCompute:
    """The runner's compute function for LLM cells: one model load (hf) or one engine per drop (vllm). Under
    data parallel every process evaluates its share of each cell's requests (lm-eval splits them) and rank 0
    gets the gathered results (llmtrunc.parallel)."""

    data_parallel = True

    def __init__(self, lm_class=None, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                 log_samples: bool = False, loaded=None, parity_check: bool = True):
        """`loaded`: an hf-trunc LM already loaded for the cells' settings (tests and benchmarks share one);
        `parity_check`: compare every engine with the hook path before it scores (llmtrunc.llm.parity)."""
        self.lm_class, self.parallel, self.log_samples = lm_class, (tensor_parallel_size, data_parallel_size), log_samples
        self.loaded, self.parity_check = loaded, parity_check
        self._lm, self._model, self._lm_spec = None, None, None
        self._hook_responses: dict[str, list[parity.Response]] = {}  # run id -> the hook path's parity responses

    def check(self, cells: list[Cell]) -> None:
        """Refuse what the backend cannot run before anything is computed; under vLLM, then write the
        exports the cells run on (each source model loaded once) and score the parity documents on the hook path."""
        jobs = [c.payload for c in cells]
        if any(job.settings.backend == "vllm" for job in jobs):
            from llmtrunc.llm.export import check_exportable
            from llmtrunc.llm.vllm_backend import prepare_exports, require_vllm

            for job in jobs:
                check_exportable(job.spec, job.at)
            require_vllm()
            prepare_exports([(job.settings, job.spec, job.at) for job in jobs])
            if self.parity_check:
                self._hook_responses = hook_responses(cells)

    def lm_for(self, job: LLMCell) -> TruncLM:
        if job.settings.backend == "vllm":
            if self._lm_spec != (job.settings, job.spec, job.at):
                from llmtrunc.llm.vllm_backend import vllm_lm

                self._lm = vllm_lm(job.settings, job.spec, job.at, *self.parallel)
                self._lm_spec = (job.settings, job.spec, job.at)
        elif self.loaded is not None:
            self._lm = self.loaded
        elif self._model != job.settings:
            self._lm, self._model = load_lm(job.settings, self.lm_class), job.settings
        return self._lm

    def __call__(self, cells: list[Cell]) -> Iterator[Computed]:
        if cells[0].payload.settings.backend != "vllm":
            yield from self._compute(cells)
            return
        from llmtrunc.llm.vllm_backend import engine_errors

        with engine_errors():
            yield from self._compute(cells)

    def _compute(self, cells: list[Cell]) -> Iterator[Computed]:
        from lm_eval.utils import handle_non_serializable

        first = self.lm_for(cells[0].payload)
        for cell in cells:  # every mask of the group resolved against the model (and its profiles) before anything runs
            first.mask_for(cell.payload.spec, cell.payload.at)
        tasks = built_tasks(cells[0].payload)  # one task build for every condition of the group
        first.share([(c.payload.spec, c.payload.at) for c in cells])
        try:
            for cell in cells:
                job: LLMCell = cell.payload
                lm = self.lm_for(job)
                mask = lm.set_drop(job.spec, job.at)
                if job.settings.backend == "vllm":
                    lm.record_extra["parity"] = self.check_parity(lm, cell, tasks)
                lm.requests_scored.clear()
                start = time.perf_counter()
                results = evaluate(lm, job, tasks)  # samples always: the records keep per-item values
                split = processes().gather(sum(lm.requests_scored.values()))  # how lm-eval split the requests
                if results is None:  # a process other than rank 0 under data parallel: rank 0 has the results
                    continue
                samples = results.pop("samples", None) or {}
                files: dict[str, Any] = {"results.json": json.dumps(results, indent=2, default=handle_non_serializable)}
                for name, rows in samples.items() if self.log_samples else ():
                    files[f"samples_{name}.jsonl"] = "".join(json.dumps(r, default=handle_non_serializable) + "\n"
                                                             for r in rows)
                yield cell, to_records(results, samples, cell, mask, time.perf_counter() - start,
                                       {**lm_fields(lm, job), **split_fields(split)}), files
        finally:
            self._lm.clear_cache()  # the shared body's states and continuations belong to one task

    def check_parity(self, lm: TruncLM, cell: Cell, tasks: list) -> dict[str, Any]:
        """The engine's parity figure on the cell's first documents (llmtrunc.llm.parity); stops the run on a mismatch."""
        if not self.parity_check:
            return {"checked": False}
        engine = evaluate(lm, cell.payload, tasks, parity.limit(cell.payload.settings.limit))
        if engine is None:  # non-zero rank under data parallel
            return {"checked": False}
        return parity.compare(parity.responses(engine), self._hook_responses[cell.run_id], lm.record_extra["engine_dtype"])


def evaluate(lm: TruncLM, job: LLMCell, tasks: list, limit: float | None = None) -> dict | None:
    """lm-eval's simple_evaluate of `job`'s task on `lm`, samples included; `limit`: documents instead of the job's."""
    import lm_eval

    return lm_eval.simple_evaluate(
        model=lm, tasks=tasks, num_fewshot=job.settings.num_fewshot, limit=job.settings.limit if limit is None else limit,
        log_samples=True, apply_chat_template=job.settings.apply_chat_template, gen_kwargs=job.settings.gen_kwargs,
        task_manager=task_manager(job.settings.include_paths))


def hook_responses(cells: list[Cell]) -> dict[str, list[parity.Response]]:
    """The hook path's responses to the first documents of every engine cell's task (run id -> responses): hf-trunc
    on each source model with each cell's drop, every model loaded once and freed before any engine starts."""
    import gc

    import torch

    found, lm, loaded = {}, None, None
    groups: dict[Any, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)  # one model and task
    for members in groups.values():
        settings = members[0].payload.settings
        hooked = replace(settings, backend="hf")
        if loaded != hooked:
            lm = None
            gc.collect()
            lm, loaded = load_lm(hooked), hooked
        tasks = built_tasks(members[0].payload)
        for cell in members:
            lm.set_drop(cell.payload.spec, cell.payload.at)
            results = evaluate(lm, replace(cell.payload, settings=hooked), tasks, parity.limit(settings.limit))
            found[cell.run_id] = parity.responses(results or {})
    del lm
    gc.collect()
    if torch.cuda.is_available():  # the engines' memory
        torch.cuda.empty_cache()
    return found


def lm_fields(lm: TruncLM, job: LLMCell) -> dict[str, Any]:
    """The record fields an LM adds: shared or separate compute, the calibration profile a profile-based
    mask was resolved against, and a backend's own fields (vLLM: engine version, export method, engine check)."""
    calibration = lm.profile(job.at).describe() if job.spec.needs_profile else None
    return {"compute": lm.compute, **({"calibration": calibration} if calibration else {}), **lm.record_extra}


def split_fields(split: list[int]) -> dict[str, Any]:
    """The record fields of a data-parallel split: the processes, and the requests each scored (rank order)."""
    return {"world_size": len(split), "requests_per_process": split}


def built_tasks(job: LLMCell) -> list:
    """The task's lm-eval objects, built once for all conditions of a group, their requests reused.

    simple_evaluate takes built Task/Group objects as well as names; every condition then skips the
    dataset load and, through `reuse_requests`, the request building, and keeps lm-eval's own filters,
    metrics and aggregation."""
    loaded = load_tasks(job.task, job.settings.include_paths)
    members = {name for children in loaded["group_map"].values() for name in children}
    for task in loaded["tasks"].values():
        reuse_requests(task)
    return [obj for name, obj in (*loaded["groups"].items(), *loaded["tasks"].items()) if name not in members]
