"""One way into an LLM run: its settings, tasks, cells, compute and results store, built and loaded once.

`eval`, `sweep` and `attribute` reduce to arguments -> `LLMRun.build` -> `execute` -> print, and `verify`'s
replay (llmtrunc.llm.replay) builds its runs here too. Building a run does, once per process and in this order,
what every LLM run needs before a model loads: the library adaptations (llmtrunc.llm.compat.install), the data
directory (exported once, for the local tasks lm-eval loads in this process and the ones it starts), the tasks
resolved and their few-shot splits checked. The rank-0 rule of data parallel: every process computes its share
of every cell (llmtrunc.runner), and only rank 0 holds the run ids and reports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from llmtrunc.data import ENV_VAR, find_data_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.evaluate import RunSettings, llm_cells
from llmtrunc.llm.tasks import TaskRef, check_num_fewshot, resolve_tasks
from llmtrunc.runner import Cell, execute
from llmtrunc.spec import DropSpec
from llmtrunc.store import ResultsStore


def use_data_dir(explicit: str | None) -> None:
    """Point the local tasks at `explicit` or the data directory found by default: they read $LLMTRUNC_DATA_DIR
    when lm-eval loads them."""
    found = find_data_dir(explicit)
    if explicit and (found is None or not found.is_dir()):
        raise LLMTruncError(f"data directory not found: {explicit}")
    if found is not None:
        os.environ[ENV_VAR] = str(found)


@dataclass
class LLMRun:
    settings: list[RunSettings]  # one per model
    tasks: list[TaskRef]
    store: ResultsStore | None = None  # None: cells computed and handed back, never stored (verify's replay)

    @classmethod
    def build(cls, settings: list[RunSettings], task_names: list[str], data_dir: str | None = None,
              hub_tasks: bool = False, store: ResultsStore | None = None) -> LLMRun:
        """The run of `settings` on `task_names`, everything it needs before a model loads done (see the module)."""
        from llmtrunc.llm.compat import install
        from llmtrunc.parallel import launched_size

        if any(s.backend == "vllm" for s in settings) and launched_size() > 1:
            raise LLMTruncError("--backend vllm parallelises inside its engine (--tensor-parallel-size, "
                                "--data-parallel-size): start it as one process, not under torchrun or accelerate launch")
        install()
        use_data_dir(data_dir)
        tasks = resolve_tasks(task_names, data_dir, hub_tasks, settings[0].include_paths)
        check_num_fewshot(tasks, settings[0].num_fewshot)
        return cls(settings, tasks, store)

    def drop_cells(self, specs: list[DropSpec], positions: list[str]) -> list[Cell]:
        """Every model x task x drop x position (llmtrunc.llm.evaluate.llm_cells)."""
        return llm_cells(self.settings, self.tasks, specs, positions)

    def attribution_cells(self, ks: list[int | float], seeds: list[int]) -> list[Cell]:
        """Every model x task's attribution cells (llmtrunc.llm.attribution)."""
        from llmtrunc.llm.attribution import attribution_cells

        return attribution_cells(self.settings, self.tasks, ks, seeds)

    def execute(self, cells: list[Cell], compute, shard: str | None = None, dry_run: bool = False,
                recompute: bool = False, report: Callable[[list[str]], None] | None = None) -> list[str] | None:
        """Run the cells the store lacks (`compute.check` refuses what cannot run first) and `report` their run ids:
        on rank 0 only, which reports for every process (the rank-0 rule); nothing on a dry run."""
        run_ids = execute(cells, compute, self.store, compute.check, shard, dry_run, recompute)
        if run_ids and report is not None:
            report(run_ids)
        return run_ids
