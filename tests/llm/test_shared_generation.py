"""Shared generation on the real SmolLM2 and lm-eval's gsm8k (5-shot) and squadv2: equal to separate runs.

At batch size 1 every row decodes alone, as a separate run at batch size 1 does, so every generated
string and every metric must be equal. Generation is capped (max_gen_toks) to keep CI's CPU time
sane: truncated SmolLM2 rarely emits a stop sequence, so uncapped rows run to 256 tokens each. Larger batches mix conditions in one decode batch, whose
matrix products round differently; how often that flips a token is measured by
scripts/bench_generate.py and reported in reports/llm/bench_generate.md.
"""

import json

import pytest
from rich.console import Console

from llmtrunc.llm.evaluate import LLMCompute, RunSettings, llm_cells
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.shared_body import SharedBodyLM
from llmtrunc.llm.tasks import resolve_tasks
from llmtrunc.runner import Runner
from llmtrunc.spec import parse_drops
from llmtrunc.store import ResultsStore

pytestmark = pytest.mark.slow  # the full tier: real 5-shot prompts, 5 conditions both ways

POST_NORM = parse_drops(["none,first-half,last-half,random:50%@0"])
PRE_NORM = parse_drops(["first-half"])


@pytest.fixture(scope="module")
def lm():
    return SharedBodyLM(pretrained="smollm2-135m", device="cpu", batch_size=1)


def run(lm, task: str, limit: int, max_gen_toks: int, shared: bool, folder):
    """Every cell's records and generations, through the runner as `llmtrunc eval` runs them."""
    settings = RunSettings(model=resolve_model("smollm2-135m"), limit=limit, gen_kwargs=f"max_gen_toks={max_gen_toks}")
    tasks = resolve_tasks([task])
    cells = llm_cells([settings], tasks, POST_NORM, ["post-norm"]) + llm_cells([settings], tasks, PRE_NORM, ["pre-norm"])
    lm.shared, lm.prefills = shared, 0
    store = ResultsStore(folder)
    Runner(store, Console(quiet=True)).run(cells, LLMCompute(log_samples=True, loaded=lm))
    out = {}
    for cell in cells:
        samples = sorted(store.run_dir(cell.run_id).glob("samples_*.jsonl"))
        rows = [json.loads(line) for path in samples for line in path.read_text().splitlines()]
        out[cell.label] = ({(r.metric, r.filter): r.value for r in store.run_records(cell.run_id)},
                           [(r["doc_id"], r["resps"], r["filtered_resps"]) for r in rows])
    lm.shared = True
    return out, lm.prefills


@pytest.mark.parametrize("task,limit,max_gen_toks", [("gsm8k", 4, 32), ("squadv2", 12, 16)])
def test_shared_generation_equals_separate_runs(lm, task, limit, max_gen_toks, tmp_path):
    shared, prefills = run(lm, task, limit, max_gen_toks, True, tmp_path / "shared")
    separate, _ = run(lm, task, limit, max_gen_toks, False, tmp_path / "separate")
    assert prefills == limit  # batch size 1: one prefill per prompt served all five conditions
    assert sorted(shared) == sorted(separate) and len(shared) == 5
    for label in shared:
        metrics, generations = shared[label]
        assert generations == separate[label][1], f"{label}: generations differ"
        assert metrics == separate[label][0], f"{label}: metrics differ"
    texts = {label: [g[1] for g in generations] for label, (_, generations) in shared.items()}
    assert len({json.dumps(t) for t in texts.values()}) > 1  # the conditions really generate differently
