"""What the condition benchmarks share: one loaded model, the real runner, timing side by side.

Both paths go through llmtrunc's runner and LLMCompute exactly as `llmtrunc sweep` runs them, on
one SharedBodyLM loaded once: "shared" runs every condition as one group (compute once), "separate"
runs each condition as its own group with the shared body off (lm-eval's HF model with hooks).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from llmtrunc.llm.evaluate import LLMCompute, RunSettings, llm_cells  # noqa: E402
from llmtrunc.llm.models import resolve_model  # noqa: E402
from llmtrunc.llm.run import LLMRun  # noqa: E402
from llmtrunc.llm.shared_body import SharedBodyLM  # noqa: E402
from llmtrunc.llm.tasks import task_manager  # noqa: E402
from llmtrunc.runner import Runner  # noqa: E402
from llmtrunc.spec import parse_drop  # noqa: E402
from llmtrunc.store import ResultsStore  # noqa: E402

CONDITIONS = ["none", "first-half", "last-half", "first:25%", "last:25%", *(f"random:50%@{seed}" for seed in range(5))]


class Bench:
    def __init__(self, task: str, limit: int, device: str = "cpu", num_fewshot: int | None = None,
                 model: str = "smollm2-135m", gen_kwargs: str | None = None):
        ref = resolve_model(model)
        self.settings = RunSettings(model=ref, limit=limit, num_fewshot=num_fewshot, device=device, gen_kwargs=gen_kwargs)
        self.task = LLMRun.build([self.settings], [task]).tasks[0]  # as `llmtrunc sweep` starts, on both paths
        self.lm = SharedBodyLM(**ref.model_args(), device=device, batch_size=1)
        task_manager()  # build lm-eval's task index before timing

    def run(self, drops: list[str], shared: bool, batch_size: int, limit: int | None = None) -> tuple[float, dict]:
        """Seconds, and per condition (metrics, generations), for `drops` as one group (shared) or one by one."""
        settings = self.settings if limit is None else dataclasses.replace(self.settings, limit=limit)
        cells = llm_cells([settings], [self.task], [parse_drop(d) for d in drops], ["post-norm"])
        names = {c.run_id: d for c, d in zip(cells, drops)}  # one cell per drop, in order
        groups = [cells] if shared else [[c] for c in cells]
        self.lm.shared, self.lm.batch_size_per_gpu = shared, batch_size
        self.lm.prompt_tokens, self.lm.generated_tokens = 0, {}
        out, start = {}, time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            for n, group in enumerate(groups):  # separate: a fresh store each, so the baseline is computed again
                store = ResultsStore(Path(tmp) / str(n))
                Runner(store, Console(quiet=True)).run(group, LLMCompute(log_samples=True, loaded=self.lm))
                out.update({names[rid]: found for rid, found in _outputs(store, group).items()})
            seconds = time.perf_counter() - start
        self.lm.shared = True
        return seconds, out


def _outputs(store, cells) -> dict:
    out = {}
    for cell in cells:
        rows = [json.loads(line) for path in sorted(store.run_dir(cell.run_id).glob("samples_*.jsonl"))
                for line in path.read_text().splitlines()]
        metrics = {(r.metric, r.filter): r.value for r in store.run_records(cell.run_id)}
        out[cell.run_id] = (metrics, [(r["doc_id"], r["resps"]) for r in rows])
    return out
