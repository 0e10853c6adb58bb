"""LLM attribution: the rank-1 fast path equals a naive per-dimension evaluation, and its baseline is lm-eval's.

The naive evaluation is lm-eval's own HF scoring (a full forward pass) with the dimension zeroed by the
truncation hooks: per-request log-likelihoods to 1e-10 in float64 and the per-dimension acc equal exactly,
on tiny random models (untied and tied, RMSNorm and LayerNorm) run through a real multiple-choice task.
"""

from __future__ import annotations

import json
import random

import lm_eval
import numpy as np
import pytest
import torch
from rich.console import Console

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import hooks
from llmtrunc.llm.architectures import for_model
from llmtrunc.llm.attribution import (AttributionCompute, AttributionJob, Choices, KeptRows, attribution_cells,
                                      check_supported, kept_rows, task_of)
from llmtrunc.llm.evaluate import RunSettings, built_tasks
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.report import attribution_frames
from llmtrunc.llm.shared_body import SharedBodyLM
from llmtrunc.llm.tasks import TaskRef, resolve_tasks, task_manager
from llmtrunc.runner import Runner
from llmtrunc.spec import Mask
from llmtrunc.store import ResultsStore
from tests.helpers.checkpoint import tiny_tokenizer
from tests.helpers.models import tiny_model

TASK = "tiny_choice"


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """A real lm-eval multiple-choice task over the tiny tokenizer's words (w1 ... w95), 12 questions."""
    folder = tmp_path_factory.mktemp("tasks")
    rng = random.Random(0)
    words = lambda n: " ".join(f"w{rng.randrange(1, 96)}" for _ in range(n))  # noqa: E731
    rows = [{"question": words(rng.randrange(3, 8)), "choices": [words(rng.randrange(1, 4)) for _ in range(4)],
             "gold": rng.randrange(4)} for _ in range(12)]
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{TASK}.yaml").write_text(f"""task: {TASK}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {folder / 'docs.jsonl'}}}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{gold}}}}"
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
""")
    return folder


def save(folder, family: str, tied: bool, loud_column: int | None = None):
    """tiny_model(family) as a checkpoint; `loud_column` scales one LM-head column so the remainder bound fails
    there and the direct logsumexp path runs (an outlier dimension, as real models have)."""
    model = tiny_model(family, tied)
    with torch.no_grad():  # peaked next-token distributions, so that single dimensions can flip answers
        model.get_output_embeddings().weight.mul_(30)
    if loud_column is not None:
        with torch.no_grad():
            model.get_output_embeddings().weight[:, loud_column] *= 300
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def job_for(folder, task_dir, dtype: str, ks=(25, 75), seeds=(0, 1)) -> AttributionJob:
    include = (str(task_dir),)
    settings = RunSettings(model=resolve_model(str(folder)), dtype=dtype, include_paths=include, batch_size="4")
    return AttributionJob(settings, TaskRef(TASK, TASK), ks, seeds)


def load(job: AttributionJob) -> SharedBodyLM:
    """The checkpoint loaded as `llmtrunc attribute` loads it; the word-level tokenizer passed as an object
    (transformers would reload it as the model family's own tokenizer class)."""
    return SharedBodyLM(pretrained=job.settings.model.pretrained, dtype=job.settings.dtype, device="cpu", batch_size=4,
                        tokenizer=tiny_tokenizer())


def run_cell(lm, job, store) -> list:
    cell = attribution_cells([job.settings], [job.task], list(job.ks), list(job.seeds))[0]
    Runner(store, Console(quiet=True)).run([cell], AttributionCompute(loaded=lm))
    return store.run_records(cell.run_id)


def lm_eval_acc(lm, tasks, mask: Mask) -> dict:
    """lm-eval's own scores, a full forward pass per request with `mask` zeroed by the hooks (the naive way)."""
    lm.shared = False
    try:
        with hooks.truncated(lm.model, mask):
            results = lm_eval.simple_evaluate(model=lm, tasks=tasks)
    finally:
        lm.shared = True
    return {m: results["results"][TASK][f"{m},none"] for m in ("acc", "acc_norm")}


def naive_lls(lm, instances, mask: Mask) -> np.ndarray:
    lm.shared = False
    try:
        with hooks.truncated(lm.model, mask):
            return np.array([ll for ll, _ in lm.loglikelihood(instances, disable_tqdm=True)])
    finally:
        lm.shared = True


def kept_requests(lm, job):
    """The task's requests as lm-eval builds them (its baseline run), their states kept by the shared body."""
    task = task_of(job)
    lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=task_manager(job.settings.include_paths))
    return task, task.instances, lm.keep(task.instances)


def process_results_acc(task, instances, lls) -> dict:
    """lm-eval's own per-document metric code (`process_results`) on the given request log-likelihoods."""
    docs: dict[int, list] = {}
    for instance, ll in zip(instances, lls):
        docs.setdefault(instance.doc_id, []).append((instance.idx, instance.doc, float(ll)))
    scores = [task.process_results(rows[0][1], [(ll, False) for _, _, ll in sorted(rows)]) for rows in docs.values()]
    return {m: float(np.mean([s[m] for s in scores])) for m in ("acc", "acc_norm")}


@pytest.mark.parametrize("family,tied,loud", [("llama", False, 5), ("qwen2", True, None), ("gpt2", True, None)])
def test_fast_path_equals_naive_evaluation_float64(tmp_path, task_dir, family, tied, loud):
    job = job_for(save(tmp_path / "model", family, tied, loud), task_dir, "float64")
    lm = load(job)
    dim = lm.hidden_size
    task, instances, keys = kept_requests(lm, job)
    rows = kept_rows(lm, keys)  # before the cell runs: it clears the shared body's cache when done
    single = rows.single_removals()
    assert 0 < single.direct < single.pairs  # both paths ran: moments where the bound holds, direct elsewhere
    np.testing.assert_allclose(single.base, naive_lls(lm, instances, Mask(dim, ())), rtol=0, atol=1e-10)
    naive = {}
    for j in range(dim):
        lls = naive_lls(lm, instances, Mask.of(dim, [j]))
        np.testing.assert_allclose(single.removed[:, j], lls, rtol=0, atol=1e-10)
        naive[j] = process_results_acc(task, instances, lls)

    records = run_cell(lm, job, ResultsStore(tmp_path / "results"))
    full = {r.metric: r for r in records if r.extra["condition"] == "full"}
    baseline = lm_eval_acc(lm, built_tasks(job.baseline), Mask(dim, ()))
    assert full["acc"].value == full["acc"].extra["lm_eval_value"] == baseline["acc"]
    assert full["acc_norm"].value == full["acc_norm"].extra["lm_eval_value"] == baseline["acc_norm"]
    per_dim = {r.extra["dim_index"]: r for r in records if r.metric == "delta_acc"}
    assert sorted(per_dim) == list(range(dim))
    for j, r in per_dim.items():
        assert r.extra["acc"] == naive[j]["acc"] and r.extra["acc_norm"] == naive[j]["acc_norm"]
        assert r.value == naive[j]["acc"] - baseline["acc"] and r.dropped_indices == [j]
    assert any(r.value != 0 for r in per_dim.values())  # removals move the accuracy: equality is no accident
    for r in (r for r in records if r.metric == "acc" and r.extra["condition"] in ("degrading", "improving", "random")):
        lls = naive_lls(lm, instances, Mask.of(dim, r.dropped_indices))
        np.testing.assert_allclose(rows.removed_sets([r.dropped_indices])[0], lls, rtol=0, atol=1e-10)
        assert r.value == process_results_acc(task, instances, lls)["acc"]
        assert r.n_dropped == len(r.dropped_indices) == r.extra["k_percent"] * dim // 100


def test_fast_path_float32_within_rounding(tmp_path, task_dir):
    """float32: the rank-1 update and a zeroed-column GEMM round differently. They agree to 4 float32 epsilons of
    the largest logit (both round at that scale; measured: 1.3 of them, 1.6e-4 nats with logits up to ~1070
    from the outlier column) and pick the same answers."""
    job = job_for(save(tmp_path / "model", "llama", False, 5), task_dir, "float32")
    lm = load(job)
    task, instances, keys = kept_requests(lm, job)
    single = kept_rows(lm, keys).single_removals()
    assert 0 < single.direct < single.pairs
    choices = Choices.of(task, instances)
    with torch.no_grad():
        largest = max(lm.arch.logits(lm.model, lm.kept(k)).abs().max().item() for k in keys)
    for j in range(lm.hidden_size):
        lls = naive_lls(lm, instances, Mask.of(lm.hidden_size, [j]))
        np.testing.assert_allclose(single.removed[:, j], lls, rtol=0, atol=4 * torch.finfo(torch.float32).eps * largest)
        assert choices.scores(single.removed[:, j])["acc"] == process_results_acc(task, instances, lls)["acc"]


def test_records_cell_and_resume(tmp_path, task_dir):
    job = job_for(save(tmp_path / "model", "qwen2", True), task_dir, "float64", ks=(50,), seeds=(3,))
    lm = load(job)
    store = ResultsStore(tmp_path / "results")
    records = run_cell(lm, job, store)
    dim = lm.hidden_size
    assert {r.track for r in records} == {"llm-analysis"} and {r.extra["analysis"] for r in records} == {"attribution"}
    assert all(r.model and r.task == TASK and r.versions and r.command and r.at == "post-norm" for r in records)
    counts = {r.metric: r for r in records if r.metric.startswith("n_")}
    assert sum(c.value for c in counts.values()) == dim
    assert sorted(i for c in counts.values() for i in c.dropped_indices) == list(range(dim))
    rand = next(r for r in records if r.extra["condition"] == "random" and r.metric == "acc")
    assert rand.drop == "random:50%@3" and rand.dropped_indices == list(Mask.random(dim, dim // 2, 3).dropped)
    counts_row, selection = attribution_frames(store.records())  # the report's view of the same records
    assert [counts_row.iloc[0][w] for w in ("degrading", "improving", "neutral")] == \
        [int(counts[f"n_{w}"].value) for w in ("degrading", "improving", "neutral")]
    assert selection[["K%", "random"]].values.tolist() == [[50, rand.value]]
    runner = Runner(store, Console(quiet=True))
    cells = attribution_cells([job.settings], [job.task], [50], [3])
    runner.run(cells, AttributionCompute(loaded=lm))
    assert (runner.computed, runner.reused) == (0, 1)  # a stored cell is never recomputed
    other = attribution_cells([job.settings], [job.task], [50], [4])  # another seed is another cell
    assert other[0].run_id != cells[0].run_id


@pytest.mark.slow
def test_baseline_is_lm_eval_on_smollm2(tmp_path):
    """Real SmolLM2 on the local arc_easy: the baseline computed from the kept states is lm-eval's own acc."""
    task = resolve_tasks(["arc_easy"])[0]
    settings = RunSettings(model=resolve_model("smollm2-135m"), limit=20, batch_size="4")
    lm = SharedBodyLM(pretrained="smollm2-135m", device="cpu", batch_size=4)
    cell = attribution_cells([settings], [task], [50], [0])[0]
    store = ResultsStore(tmp_path)
    Runner(store, Console(quiet=True)).run([cell], AttributionCompute(loaded=lm))
    full = {r.metric: r for r in store.run_records(cell.run_id) if r.extra["condition"] == "full"}
    assert full["acc"].value == full["acc"].extra["lm_eval_value"]
    assert full["acc_norm"].value == full["acc_norm"].extra["lm_eval_value"]
    assert full["acc"].extra["items"] and len(full["acc"].extra["items"]) == 20


def test_choices_follow_lm_eval_gold(task_dir):
    job = job_for("smollm2-135m", task_dir, "float64")  # the model plays no part in the choices
    task = task_of(job)
    task.build_all_requests(limit=None)
    choices = Choices.of(task, task.instances)
    docs = list(task.test_docs())
    assert choices.gold.sum(axis=1).tolist() == [1] * len(docs)
    assert [int(g.argmax()) for g in choices.gold] == [d["gold"] for d in docs]
    lls = np.zeros(len(task.instances))
    lls[choices.rows[:, 2]] = 1.0  # every document picks its third choice
    assert choices.scores(lls)["acc"] == np.mean([d["gold"] == 2 for d in docs])


def test_softcapped_and_non_multiple_choice_are_refused():
    model = tiny_model("gemma2")
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(LLMTruncError, match="softcaps"):
        check_supported(model, for_model(model))
    job = AttributionJob(RunSettings(model=resolve_model("smollm2-135m")), resolve_tasks(["gsm8k"])[0], (50,), (0,))
    with pytest.raises(LLMTruncError, match="multiple-choice"):
        task_of(job)


def test_row_chunks_and_a_head_bias_give_the_naive_numbers(monkeypatch):
    """Moment passes and selections over a few unique positions at a time (ROWS), on an LM head with a bias:
    equal to the real final norm and LM head with the hooks zeroing the dimensions (Architecture.logits)."""
    from llmtrunc.llm import attribution

    model = tiny_model("gpt_neox").double()
    arch, dim = for_model(model), hooks.hidden_size(model)
    head = arch.find(model, "lm_head")
    generator = torch.Generator().manual_seed(1)
    head.bias = torch.nn.Parameter(torch.randn(head.out_features, generator=generator, dtype=torch.float64))
    states = [3 * torch.randn(n, dim, generator=generator, dtype=torch.float64) for n in (3, 1, 4, 2)]
    targets = [torch.randint(0, 97, (len(s),), generator=generator).tolist() for s in states]
    whole = KeptRows(model, arch, states, targets).single_removals()
    monkeypatch.setattr(attribution, "ROWS", 3)
    rows = KeptRows(model, arch, states, targets)
    chunked = rows.single_removals()
    np.testing.assert_allclose(chunked.removed, whole.removed, rtol=0, atol=1e-12)

    def naive(dims):
        with hooks.truncated(model, Mask.of(dim, dims)), torch.no_grad():
            return [float(torch.log_softmax(arch.logits(model, s), -1)[torch.arange(len(t)), t].sum())
                    for s, t in zip(states, targets)]

    for j in range(dim):
        np.testing.assert_allclose(chunked.removed[:, j], naive([j]), rtol=0, atol=1e-10)
    # from the full logits, from the previous set's, from the kept columns, from the previous set's again
    sets = [[1, 7], [1, 7, 9, 11], list(range(3, 23)), list(range(2, 23))]
    for dims, lls in zip(sets, rows.removed_sets(sets)):
        np.testing.assert_allclose(lls, naive(dims), rtol=0, atol=1e-10)
