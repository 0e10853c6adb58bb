"""Per-dimension attribution for LLMs: every single post-norm dimension removed, on a multiple-choice task.

With n = final_norm(h) and logits L = W n (+ bias), zeroing n_j gives L - n_j W[:, j], a rank-1 update. The
log-likelihood of a target t is then L_t - n_j W_tj - LSE_j with

    LSE_j = log sum_v exp(L_v - n_j W_vj) = LSE + log S_j,   S_j = E_{v ~ softmax(L)} exp(-n_j W_vj).

S_j directly costs one vocabulary-sized exp per (position, dimension): on a CPU far more than the body. With
W~ = W / m (m_j = max_v |W_vj|), a_j = n_j m_j and the Taylor series of exp,

    S_j = sum_{k <= K} (-a_j)^k / k! M_k[j] + R,   M_k = softmax(L) @ W~^k   (elementwise powers),

so all d removals of all positions cost K + 1 matrix products of the LM head's size. M_{K+1} (K + 1 even, so
M_{K+1} = E |W~|^{K+1}) bounds the remainder: |R| <= |a_j|^{K+1} M_{K+1}[j] e^{|a_j|} / (K+1)! (Lagrange).
Wherever that bound exceeds the compute dtype's epsilon times S_j, LSE_j is computed directly as the
logsumexp of L - n_j W[:, j]: every number is the rank-1 logsumexp to within the dtype's rounding. Positions
whose states are bitwise equal (the first answer token of every choice of a question) are computed once.

Softcapped logits (Gemma 2/3: c tanh(L / c)) are no rank-1 update and are refused. The metric is lm-eval's
multiple-choice acc / acc_norm (argmax over the choices of the summed log-likelihood, unnormalised or divided
by the choice's length in characters), the gold choices as lm-eval's own `process_results` decides them. The
selection (the K% most degrading / improving / random dimensions removed together) is scored exactly too, from
the same kept rows: a set's logits follow from the previous set's (the K grid's sets are nested), from the full
logits or from the kept columns, by whichever columns are fewest (a full LM-head pass per selection would cost
several times the attribution).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.compat import metric_names
from llmtrunc.llm.evaluate import LLMCell, RunSettings, built_tasks, load_lm, split_fields
from llmtrunc.llm.tasks import TaskRef, task_manager
from llmtrunc.parallel import Processes, processes
from llmtrunc.record import Record, RecordBuilder, cell_key
from llmtrunc.runner import Cell, Computed
from llmtrunc.selection import n_drop, ranked_selection, selection_drop, set_fields, single_drop, split_sets
from llmtrunc.spec import DropSpec, Mask

TRACK = "llm-analysis"
ORDER = 11  # Taylor terms K (K + 1 even): the (K+1)-th moment bounds the remainder
METHOD = f"rank-1 post-norm removal, exp moments to order {ORDER} with remainder bound, direct logsumexp beyond"
ROWS = 1024  # unique positions per moment pass: bounds the vocabulary-sized probabilities in memory


@dataclass
class SingleRemovals:
    """Per request: its log-likelihood with nothing removed, and with each dimension removed alone."""

    base: np.ndarray  # (requests,)
    removed: np.ndarray  # (requests, d)
    direct: int  # (position, dimension) pairs computed directly (bound above tolerance)
    pairs: int  # (unique position, dimension) pairs in all


def check_supported(model, arch) -> None:
    """Refuse, in one line, what the rank-1 update does not describe."""
    if arch.softcap(model):
        raise LLMTruncError(f"{arch.family} softcaps its logits (c tanh(L / c)): removing one dimension is no "
                            "rank-1 update of them, so attribution does not support it")


class KeptRows:
    """One task's kept requests as the LM head sees them: the unique post-norm states, their full logits, and
    per scored position its row and target. Every removal is computed from these, never from the body."""

    def __init__(self, model, arch, states: list[torch.Tensor], targets: list[list[int]]):
        check_supported(model, arch)
        unique, self.where = torch.unique(torch.cat(states), dim=0, return_inverse=True)
        head = arch.find(model, "lm_head")
        with torch.no_grad():
            normed = arch.find(model, "final_norm")(unique)
            logits = head(normed)
        self.dtype, device = torch.promote_types(logits.dtype, torch.float32), logits.device
        self.logits, self.normed = logits.to(self.dtype), normed.to(self.dtype)
        self.weight = head.weight.detach().to(self.dtype)
        self.columns = self.weight.T.contiguous()  # (d, vocab): a dimension's column as one contiguous row
        self.bias = None if getattr(head, "bias", None) is None else head.bias.detach().to(self.dtype)
        self.lse = logsumexp_(self.logits.clone())
        self.target = torch.tensor([t for ts in targets for t in ts], dtype=torch.long, device=device)
        self.request = torch.repeat_interleave(torch.arange(len(states), device=device),
                                               torch.tensor([len(ts) for ts in targets], device=device))
        self.n_requests = len(states)

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def _sums(self, per_position: torch.Tensor) -> np.ndarray:
        """Per-position log-probabilities (P, ...) summed per request (requests, ...), in float64."""
        out = torch.zeros((self.n_requests, *per_position.shape[1:]), dtype=torch.float64, device=per_position.device)
        return out.index_add_(0, self.request, per_position.double()).cpu().numpy()

    def removed_sets(self, sets: list, bar: tqdm | None = None) -> list[np.ndarray]:
        """Per request, for each of `sets` of dimensions: its log-likelihood with them zeroed at the LM head's
        input, exactly. A set's logits follow from the previous set's by the columns that differ, from the full
        logits by its own columns, or from its kept columns alone, whichever are fewest: nested sets (the top K%
        of a ranking, the first K% of a seed's permutation) cost one K step each. `bar` counts sets x row chunks."""
        sets = [sorted(set(dims)) for dims in sets]
        bar = bar if bar is not None else tqdm(disable=True)
        bar.total = -(-len(self.logits) // ROWS) * len(sets)
        out = torch.empty(len(sets), len(self.target), dtype=self.dtype, device=self.lse.device)
        for i in range(0, len(self.logits), ROWS):
            normed, mine = self.normed[i: i + ROWS], (self.where >= i) & (self.where < i + ROWS)
            current, previous = None, None
            for n, dims in enumerate(sets):
                kept = sorted(set(range(self.dim)) - set(dims))
                dropped, restored = (sorted(set(dims) - previous), sorted(previous - set(dims))) if previous else ([], [])
                if previous is not None and len(dropped) + len(restored) <= min(len(dims), len(kept)):
                    current.addmm_(normed[:, dropped], self.columns[dropped], alpha=-1)
                    current.addmm_(normed[:, restored], self.columns[restored])
                elif len(dims) <= len(kept):
                    current = torch.addmm(self.logits[i: i + ROWS], normed[:, dims], self.columns[dims], alpha=-1)
                else:
                    current = normed[:, kept] @ self.columns[kept]
                    current = current if self.bias is None else current + self.bias
                previous = set(dims)
                lse = logsumexp_(current.clone())
                out[n, mine] = current[self.where[mine] - i, self.target[mine]] - lse[self.where[mine] - i]
                bar.update()
        return [self._sums(per_position) for per_position in out]

    def single_removals(self, bar: tqdm | None = None) -> SingleRemovals:
        """The log-likelihood of each request with nothing removed, and with every post-norm dimension removed
        alone; `bar` counts the moment passes (ORDER + 1 per ROWS unique positions), then the direct pairs."""
        logits, normed, weight, lse = self.logits, self.normed, self.weight, self.lse
        scale = weight.abs().amax(dim=0)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero column changes nothing
        unit = weight / scale
        a = normed * scale  # (U, d): the removal's coefficient in units of the column's largest entry
        bar = bar if bar is not None else tqdm(disable=True)
        bar.total = -(-len(logits) // ROWS) * (ORDER + 1)
        parts = [_moments(logits[i: i + ROWS], lse[i: i + ROWS], unit, a[i: i + ROWS], bar)
                 for i in range(0, len(logits), ROWS)]
        lse_removed = lse[:, None] + torch.cat([log_s for log_s, _ in parts])
        bad = torch.cat([b for _, b in parts])
        pairs = bad.nonzero()
        bar.total += len(pairs)
        bar.refresh()
        for start in range(0, len(pairs), 64):
            u, j = pairs[start: start + 64].T
            lse_removed[u, j] = logsumexp_(logits[u] - normed[u, j, None] * self.columns[j])
            bar.update(len(u))
        picked = logits[self.where, self.target]  # (P,)
        removed = picked[:, None] - normed[self.where] * weight[self.target] - lse_removed[self.where]
        return SingleRemovals(self._sums(picked - lse[self.where]), self._sums(removed), len(pairs), bad.numel())


def logsumexp_(x: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last axis, overwriting `x`: in place it runs about 3x faster than torch.logsumexp on a
    CPU, and the vocabulary-sized passes of the selection and the direct pairs are most of their cost."""
    top = x.amax(dim=-1, keepdim=True)
    return (top + x.sub_(top).exp_().sum(dim=-1, keepdim=True).log())[..., 0]


def _moments(logits, lse, unit, a, bar: tqdm) -> tuple[torch.Tensor, torch.Tensor]:
    """For some unique positions: log S (rows, d) from the Taylor moments, and where the remainder bound exceeds
    the dtype's epsilon (those pairs are computed directly)."""
    tiny, eps = torch.finfo(unit.dtype).tiny, torch.finfo(unit.dtype).eps
    probs = torch.exp(logits - lse[:, None])
    probs.masked_fill_(probs < tiny, 0)  # no subnormals: they slow matrix products by orders of magnitude
    s, term, power = torch.ones_like(a), torch.ones_like(a), torch.ones_like(unit)
    for k in range(1, ORDER + 1):
        power.mul_(unit).masked_fill_(power.abs() < tiny, 0)  # the mass dropped is below tiny, far below eps
        term = term * (-a) / k
        s += term * (probs @ power)
        bar.update()
    power.mul_(unit).masked_fill_(power.abs() < tiny, 0)
    bound = a.abs() ** (ORDER + 1) * (probs @ power) * torch.exp(a.abs()) / math.factorial(ORDER + 1)
    bar.update()
    bad = ~(bound <= eps * s) | ~torch.isfinite(s)
    return torch.log(torch.where(bad, torch.ones_like(s), s)), bad


@dataclass
class Choices:
    """lm-eval's multiple-choice structure of one task's requests: which requests answer which document."""

    rows: np.ndarray  # (docs, choices) request index, -1 where a document has fewer choices
    gold: np.ndarray  # (docs, choices) bool: lm-eval counts this choice as correct
    lengths: np.ndarray  # (docs, choices) the choice's length in characters (acc_norm's divisor)
    doc_ids: list[int]

    @classmethod
    def of(cls, task, instances) -> Choices:
        by_doc: dict[int, list] = {}
        for row, instance in enumerate(instances):
            by_doc.setdefault(instance.doc_id, []).append((instance.idx, row, instance.doc))
        width = max(len(v) for v in by_doc.values())
        shape = (len(by_doc), width)
        rows, gold, lengths = -np.ones(shape, dtype=np.int64), np.zeros(shape, dtype=bool), np.ones(shape)
        for d, doc_id in enumerate(sorted(by_doc)):
            members = sorted(by_doc[doc_id])
            doc = members[0][2]
            texts = task.doc_to_choice(doc)
            if len(texts) != len(members):
                raise LLMTruncError(f"{task.config.task}: {len(members)} requests for {len(texts)} choices "
                                    "(acc_mutual_info?): attribution scores plain multiple choice only")
            for i, (_, row, _) in enumerate(members):
                rows[d, i], lengths[d, i] = row, float(len(texts[i]))
                # lm-eval decides what is gold (index, text, several targets): ask it with this choice on top
                probe = [(0.0 if c == i else -1.0, False) for c in range(len(members))]
                gold[d, i] = task.process_results(doc, probe)["acc"] == 1.0
        return cls(rows, gold, lengths, sorted(by_doc))

    def items(self, lls: np.ndarray) -> dict[str, np.ndarray]:
        """Per document (last axis) for request log-likelihoods `lls` (..., requests): acc and acc_norm as
        lm-eval computes them (the first argmax wins) and the log-likelihood of the (first) gold choice."""
        lls = np.asarray(lls, dtype=np.float64)
        choice = np.where(self.rows >= 0, lls[..., np.maximum(self.rows, 0)], -np.inf)  # (..., docs, choices)
        gold_column = np.broadcast_to(self.gold.argmax(axis=1)[:, None], choice.shape[:-1] + (1,))
        return {"acc": _picked(self.gold, choice.argmax(axis=-1)),
                "acc_norm": _picked(self.gold, (choice / self.lengths).argmax(axis=-1)),
                "gold_loglikelihood": np.take_along_axis(choice, gold_column, axis=-1)[..., 0]}

    def scores(self, lls: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values.mean(axis=-1) for name, values in self.items(lls).items()}


def _picked(gold: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """1.0 where the picked choice (..., docs) is gold, else 0.0."""
    return np.take_along_axis(np.broadcast_to(gold, picks.shape + gold.shape[-1:]), picks[..., None], axis=-1)[..., 0] * 1.0


@dataclass(frozen=True)
class AttributionJob:
    """One (model, task) attribution: the runner cell's payload."""

    settings: RunSettings
    task: TaskRef
    ks: tuple[int | float, ...]
    seeds: tuple[int, ...]

    @property
    def baseline(self) -> LLMCell:
        return LLMCell(self.settings, self.task, DropSpec("none"), "post-norm")

    @property
    def key_settings(self) -> dict:
        """Everything that changes the numbers: the model settings, the task's fingerprint, limit, K grid, seeds."""
        return {**self.baseline.task_settings, "track": TRACK, "analysis": "attribution", "position": "post-norm",
                "ks": list(self.ks), "seeds": list(self.seeds), "method": METHOD}


def attribution_cells(settings: list[RunSettings], tasks: list[TaskRef], ks: list[int | float],
                      seeds: list[int]) -> list[Cell]:
    """One cell per (model, task): the per-dimension records and the selection comparison of that task."""
    cells = []
    for run in settings:
        for task in tasks:
            job = AttributionJob(run, task, tuple(ks), tuple(seeds))
            cells.append(Cell(cell_key(job.key_settings), (run.model.name, task.name, "attribution"),
                              (run.model.name, task.lm_eval_name), job))
    return cells


class AttributionCompute:
    """The runner's compute function: lm-eval's own baseline (which keeps the body's states), every single
    removal from them, then the selection comparison; one model load for every cell of the same settings. Under
    data parallel the baseline's requests (the body) are split over the processes and rank 0 computes the
    removals from everyone's kept states."""

    data_parallel = True

    def __init__(self, loaded=None):
        """`loaded`: a SharedBodyLM already loaded for the cells' settings (tests and benchmarks share one)."""
        self.loaded, self._lm, self._settings = loaded, None, None

    def check(self, cells: list[Cell]) -> None:
        for cell in cells:
            if cell.payload.settings.backend != "hf":
                raise LLMTruncError("attribute needs the hf backend (hooks on the loaded model), not vllm")

    def lm_for(self, settings: RunSettings):
        from llmtrunc.llm.shared_body import SharedBodyLM

        if self.loaded is not None:
            return self.loaded
        if self._settings != settings:
            self._lm, self._settings = load_lm(settings, SharedBodyLM), settings
        return self._lm

    def __call__(self, cells: list[Cell]) -> Iterator[Computed]:
        for cell in cells:
            job: AttributionJob = cell.payload
            lm = self.lm_for(job.settings)
            if not lm.shared:
                raise LLMTruncError(f"{type(lm.model).__name__}: no hooks/ file declares its logits as "
                                    "lm_head(final_norm(h)), which attribution needs (shared_body: true)")
            check_supported(lm.model, lm.arch)
            try:
                records = attribute(lm, job, cell)
            finally:
                lm.clear_cache()
            if records is not None:  # None: a process other than rank 0, which has the records
                yield cell, records, {"settings.json": cell.key}


def task_of(job: AttributionJob):
    """The one multiple-choice lm-eval task object the job runs (groups and other output types are refused)."""
    tasks = built_tasks(job.baseline)
    if len(tasks) != 1 or not hasattr(tasks[0], "OUTPUT_TYPE"):
        raise LLMTruncError(f"{job.task.name} is a group: attribute one multiple-choice task at a time")
    task = tasks[0]
    if task.OUTPUT_TYPE != "multiple_choice" or "acc" not in metric_names(task):
        raise LLMTruncError(f"{job.task.name} is a {task.OUTPUT_TYPE} task: attribution needs a multiple-choice "
                            "task scored by acc")
    return task


def attribute(lm, job: AttributionJob, cell: Cell) -> list[Record] | None:
    """The cell's records (None on a data-parallel process other than rank 0)."""
    import lm_eval

    task = task_of(job)
    run = job.settings
    lm.set_drop(DropSpec("none"))
    lm.requests_scored.clear()
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(model=lm, tasks=[task], num_fewshot=run.num_fewshot, limit=run.limit,
                                      apply_chat_template=run.apply_chat_template,
                                      task_manager=task_manager(run.include_paths))
    team = processes()
    split = team.gather(sum(lm.requests_scored.values()))
    kept = gathered_requests(lm, task.instances, team)  # the requests lm-eval built and scored; their states are kept
    if kept is None:
        return None
    lm_eval_scores = next(iter(results["results"].values()))
    instances, keys, states = kept
    choices = Choices.of(task, instances)
    baseline_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rows = kept_rows(lm, keys, states)
    with tqdm(desc="Attribution (moment passes, then direct pairs)") as bar:
        single = rows.single_removals(bar)
    attribution_seconds = time.perf_counter() - start
    base = choices.scores(single.base)
    removed = choices.scores(single.removed.T)  # metric -> (d,)
    delta = {name: removed[name] - base[name] for name in base}
    start = time.perf_counter()
    selection = select(rows, choices, delta, job)
    selection_seconds = time.perf_counter() - start
    dim = lm.hidden_size
    seconds = {"baseline": round(baseline_seconds, 2), "attribution": round(attribution_seconds, 2),
               "selection": round(selection_seconds, 2)}
    settings = job.key_settings
    record = RecordBuilder(
        cell.run_id, TRACK, settings, **run.model.record_fields(), revision=run.revision, task=job.task.name,
        data=settings["task_sha256"], dim=dim, at="post-norm", num_fewshot=run.num_fewshot,
        limit=run.limit, seconds=round(sum(seconds.values()), 1), analysis="attribution", method=METHOD,
        lm_eval_task=job.task.lm_eval_name, dtype=run.dtype,
        n_docs=len(choices.doc_ids), n_requests=len(keys), ks=list(job.ks), seeds=list(job.seeds), **split_fields(split))
    records = []
    for j in range(dim):
        records.append(record("delta_acc", delta["acc"][j], condition="single", dim_index=j, acc=removed["acc"][j],
                              acc_norm=removed["acc_norm"][j], delta_acc_norm=delta["acc_norm"][j], **single_drop(j)))
        records.append(record("delta_gold_loglikelihood", delta["gold_loglikelihood"][j], condition="single",
                              dim_index=j, gold_loglikelihood=removed["gold_loglikelihood"][j], **single_drop(j)))
    items = choices.items(single.base)
    for name in ("acc", "acc_norm"):  # lm-eval's own numbers for the same requests, next to ours
        records.append(record(name, base[name], condition="full", lm_eval_value=lm_eval_scores.get(f"{name},none"),
                              items=items[name].tolist(), n_dropped=0, dropped_indices=[], main=name == "acc"))
    records.append(record("gold_loglikelihood", base["gold_loglikelihood"], condition="full", n_dropped=0,
                          dropped_indices=[], main=False))
    sets = split_sets(delta["acc"])
    for which, dims in sets.items():
        records.append(record(f"n_{which}", len(dims), condition=which, **set_fields(dims), seconds_by_part=seconds,
                              direct_pairs=single.direct, pairs=single.pairs))
    for condition, k, seed, dims, items in selection:
        for name in ("acc", "acc_norm", "gold_loglikelihood"):
            records.append(record(name, items[name].mean(), condition=condition, k_percent=k, main=name == "acc",
                                  items=items[name].tolist() if name != "gold_loglikelihood" else None,
                                  **selection_drop(condition, k, seed, dims, dim)))
    return records


def selections(delta: dict[str, np.ndarray], dim: int, ks, seeds) -> list[tuple[str, int, int | None, tuple[int, ...]]]:
    """(condition, K, seed, dims): the most degrading and most improving dimensions (by acc, ties by the gold
    log-likelihood) and random dimensions per seed (the draw of random:K%@seed), each over the K grid."""
    chains = [("degrading", None), ("improving", None), *(("random", seed) for seed in seeds)]
    out = []
    for condition, seed in chains:
        for k in ks:
            n = n_drop(dim, k)
            dims = (Mask.random(dim, n, seed).dropped if condition == "random" else
                    tuple(ranked_selection(delta["acc"], condition, n, delta["gold_loglikelihood"])))
            out.append((condition, k, seed, dims))
    return out


def select(rows: KeptRows, choices: Choices, delta: dict[str, np.ndarray], job: AttributionJob) -> list[tuple]:
    """Every selection removed together, scored exactly from the kept rows: (condition, K, seed, dims,
    per-document metrics) each."""
    chosen = selections(delta, rows.dim, job.ks, job.seeds)
    with tqdm(desc="Selection") as bar:
        lls = rows.removed_sets([dims for *_, dims in chosen], bar)
    return [(*selection, choices.items(ll)) for selection, ll in zip(chosen, lls)]


def gathered_requests(lm, instances, team: Processes) -> tuple[list, list, list[torch.Tensor]] | None:
    """Every process's scored requests, their keys and kept states, on rank 0 in one process's order (by document,
    then choice); None on the other processes. Each process kept the states of its own share of the requests."""
    keys = lm.keep(instances)
    mine = [(instance, key, lm.kept(key).cpu()) for instance, key in zip(instances, keys)]
    shares = team.gather(mine)
    if shares is None:
        return None
    every = sorted((row for share in shares for row in share), key=lambda row: (row[0].doc_id, row[0].idx))
    return [r[0] for r in every], [r[1] for r in every], [r[2].to(lm.device) for r in every]


def kept_rows(lm, keys, states: list[torch.Tensor] | None = None) -> KeptRows:
    """The kept states of `keys` (default: the shared body's) and their continuation tokens, as the LM head scores them."""
    states = [lm.kept(k) for k in keys] if states is None else states
    return KeptRows(lm.model, lm.arch, states, [list(full[len(full) - n:]) for full, n in keys])


def summary(records: list[Record]) -> str:
    """What `llmtrunc attribute` prints at the end: per cell the baseline, the counts, the top dimensions and
    the selection comparison (acc; random as mean ± std over the seeds)."""
    lines = []
    cells: dict[str, list[Record]] = {}
    for r in records:
        cells.setdefault(r.run_id, []).append(r)
    for rows in cells.values():
        by = lambda metric, condition: [r for r in rows if r.metric == metric and r.extra["condition"] == condition]  # noqa: E731
        first = rows[0]
        full = {r.metric: r for r in rows if r.extra["condition"] == "full"}
        lines.append(f"{first.model} {first.task} (limit {first.limit}, {first.dim} dims, post-norm): "
                     f"acc {full['acc'].value:.4f} (lm-eval {full['acc'].extra['lm_eval_value']:.4f}), acc_norm "
                     f"{full['acc_norm'].value:.4f}, gold log-likelihood {full['gold_loglikelihood'].value:.3f}")
        counts = {w: int(by(f"n_{w}", w)[0].value) for w in ("degrading", "improving", "neutral")}
        direct = by("n_degrading", "degrading")[0].extra
        lines.append(f"removing one dimension: {counts['degrading']} degrading (acc rises), {counts['improving']} "
                     f"improving (acc falls), {counts['neutral']} neutral; {direct['direct_pairs']} of "
                     f"{direct['pairs']} (position, dimension) pairs computed directly")
        single = sorted(by("delta_acc", "single"), key=lambda r: r.value)
        show = lambda rs: ", ".join(f"{r.extra['dim_index']} ({r.value:+.3f})" for r in rs)  # noqa: E731
        lines.append(f"most degrading: {show(single[::-1][:8])}")
        lines.append(f"most improving: {show(single[:8])}")
        lines.append(f"{'K%':>4} {'degrading':>10} {'improving':>10} {'random':>16}")
        for k in first.extra["ks"]:
            value = lambda c: [r.value for r in by("acc", c) if r.extra.get("k_percent") == k]  # noqa: E731
            rand = np.array(value("random"))
            spread = f"{rand.mean():.4f} ± {rand.std(ddof=1) if len(rand) > 1 else 0:.4f}"
            lines.append(f"{k:>4} {value('degrading')[0]:>10.4f} {value('improving')[0]:>10.4f} {spread:>16}")
    return "\n".join(lines)
