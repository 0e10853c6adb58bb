"""`llmtrunc encoder analyze`: outlier dimensions, anisotropy/collapse metrics, dimension attribution and
PCA vs random, computed from the encoder track's cached embeddings into the results store.

One results-store run per (model, revision, task data, analysis, settings), track "encoder-analysis";
a finished run is reused unless --recompute. Every record carries model, revision, task, analysis, metric,
value, versions and git hash, and names what it removed with the drop columns a grid run writes
(llmtrunc.record.drop_fields): the baseline `none`, `outliers` and its control `random:outliers@SEED`,
`random:50%@SEED`, `pca:K%`; the attribution's records are the LLM attribution's (llmtrunc.selection: `single:J`,
`degrading:K%`, `improving:K%`, `random:K%@SEED`, with their `condition`). Reports take retention from the one
baseline join (llmtrunc.retention.with_baseline), so only the task's main score of a removal is `main`: counts,
deltas and geometry metrics are not. Scores are the encoder track's own `task.score` main metric (nDCG@10,
accuracy, cosine Spearman) on the same embeddings.

analyses
  outliers     dims whose corpus-mean value lies beyond +-3 std (over dims), on the fit side (corpus /
               train / STS train): the `outliers` drop of that side's profile; score removing them vs removing
               as many random dims (random:outliers, --seeds), also when there are none (nothing removed).
  anisotropy   uniformity, alignment (positive pairs: query-relevant doc; same-label test pairs; STS pairs
               with gold >= 4), IsoScore (own numpy + the IsoScore package), Corr Mean, on the evaluated
               side (corpus / test texts / STS sentences), for the full embeddings and for random 50%
               truncations (random:50%@SEED, with the score there).
  attribution  score change from removing each dim alone (see attribution.py for the method per task);
               then removing only the most degrading vs only the most improving dims at each K of --k,
               against random dims (--seeds). The selection is made on the evaluated split (as in the paper).
  pca          PCA (fitted on corpus / train side only) vs random at each K of --k.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from llmtrunc.encoder.analysis import attribution as attr
from llmtrunc.encoder.analysis import metrics as M
from llmtrunc.encoder.cache import EmbeddingCache
from llmtrunc.encoder.evaluate import EncoderRunConfig, encode_sets, fit_calibration, score_specs, task_settings
from llmtrunc.encoder.models import Encoder
from llmtrunc.encoder.tasks import Limits, Task
from llmtrunc.profile import Profile
from llmtrunc.record import NOTHING, Record, RecordBuilder, cell_key, drop_fields
from llmtrunc.runner import Cell, Computed
from llmtrunc.selection import n_drop, ranked_selection, selection_drop, set_fields, single_drop, split_sets
from llmtrunc.spec import DropSpec, Mask, parse_drop

TRACK = "encoder-analysis"
ANALYSES = ("outliers", "anisotropy", "attribution", "pca")


@dataclass
class AnalyzeConfig(EncoderRunConfig):
    analyses: list[str] = field(default_factory=lambda: list(ANALYSES))
    ks: list[int | float] = field(default_factory=lambda: list(range(10, 100, 10)))  # percents
    seeds: list[int] = field(default_factory=lambda: list(range(5)))
    attr_experiments: int = 2
    max_rows: int = 5000


DESCRIPTIVE = {"main": False, "higher_is_better": None}  # a count or a geometry metric: no score of the task


class Context:
    """One (encoder, task) with its embeddings and a scorer of any dropped set."""

    def __init__(self, encoder: Encoder, task: Task, embeddings: dict[str, np.ndarray], limits: Limits):
        self.encoder, self.task, self.embeddings, self.limits = encoder, task, embeddings, limits
        self.evaluated = {k: v for k, v in embeddings.items() if k not in task.fit_only_sets}
        self.dim = next(iter(embeddings.values())).shape[1]
        self.similarity = encoder.spec.similarity
        self.settings = task_settings(encoder, task, TRACK)
        self.baseline = drop_fields(NOTHING, Mask(self.dim, ()), self.dim)  # a baseline record's drop columns
        self._scores: dict[tuple[int, ...], float] = {}

    def score(self, dropped: Sequence[int] = (), task: Task | None = None) -> float:
        """The main metric without `dropped` (of `task`, a lighter copy, where given). The same dims are scored once
        per task, as the encoder track's `score_specs` does: every analysis's baseline, a removal of nothing."""
        mask = Mask.of(self.dim, dropped)
        if task is not None:
            return self._score(mask, task)
        if mask.dropped not in self._scores:
            self._scores[mask.dropped] = self._score(mask, self.task)
        return self._scores[mask.dropped]

    def _score(self, mask: Mask, task: Task) -> float:
        sets = {k: mask.remove(m) for k, m in self.evaluated.items()}
        return float(task.score(sets, self.similarity, self.evaluated)[task.main_metric])

    def records(self, analysis: str, cell: Cell) -> RecordBuilder:
        """The builder of one analysis cell's records: `record(metric, value, **drop_fields, **fields)`."""
        e, t = self.encoder, self.task
        return RecordBuilder(cell.run_id, TRACK, self.settings, model=e.spec.alias, model_id=e.model_id,
                             revision=e.revision, task=t.name, dim=self.dim, limit=self.limits.limit, analysis=analysis,
                             similarity=self.similarity, task_kind=t.kind, split=t.split, n_eval=t.n_eval(),
                             data=self.settings["data"], limits=self.limits.as_dict())


def analyse_outliers(ctx: Context, config: AnalyzeConfig, record: RecordBuilder) -> list[Record]:
    """The fit side's outlier dims (the `outliers` drop of its profile, as the encoder track resolves it) and the
    score removing them vs removing as many random dims (random:outliers, one per seed)."""
    profile = Profile.of(ctx.embeddings[ctx.task.fit_set], fit_calibration(ctx.task))
    outliers = parse_drop("outliers")
    mask = outliers.mask(ctx.dim, profile)
    metric = ctx.task.main_metric
    records = [record("n_outliers", mask.n_dropped, **drop_fields(outliers, mask, ctx.dim), **DESCRIPTIVE,
                      mean_values=[round(float(profile.mean[j]), 6) for j in mask.dropped],
                      mean_of_means=float(profile.mean.mean()), std_of_means=float(profile.mean.std())),
               record(metric, ctx.score(), **ctx.baseline)]
    for spec in [outliers, *(parse_drop("random:outliers").with_seed(seed) for seed in config.seeds)]:
        mask = spec.mask(ctx.dim, profile)
        records.append(record(metric, ctx.score(mask.dropped), **drop_fields(spec, mask, ctx.dim)))
    return records


def positive_pairs(ctx: Context, max_pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    task, e = ctx.task, ctx.evaluated
    if task.kind == "retrieval":
        qi = {q: i for i, q in enumerate(task.query_ids)}
        di = {d: i for i, d in enumerate(task.doc_ids)}
        pairs = [(qi[q], di[d]) for q, rel in task.qrels.items() for d, g in rel.items() if g > 0 and d in di]
        a, b = np.array(pairs).T
        x, y, what = e["queries"][a], e["corpus"][b], "query-relevant doc"
    elif task.kind == "sts":
        keep = task.gold >= 0.8 * task.gold.max()
        x, y, what = e["sentences"][task.left[keep]], e["sentences"][task.right[keep]], "STS pairs with gold >= 80% of max"
    else:
        labels = task.test_y
        rng = np.random.default_rng(seed)
        left, right = [], []
        for label in np.unique(labels):
            rows = np.flatnonzero(labels == label)
            if len(rows) > 1:
                shuffled = rng.permutation(rows)
                left.extend(shuffled[:-1])
                right.extend(shuffled[1:])
        x, y, what = e["test"][left], e["test"][right], "same-label test pairs"
    if len(x) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_pairs, replace=False))
        x, y = x[keep], y[keep]
    return x, y, what


def cloud(ctx: Context) -> np.ndarray:
    key = {"retrieval": "corpus", "sts": "sentences"}.get(ctx.task.kind, "test")
    return ctx.evaluated[key]


def anisotropy_metrics(points: np.ndarray, x: np.ndarray, y: np.ndarray, max_rows: int) -> dict[str, float]:
    sample = M.sample_rows(points, max_rows)
    return {"uniformity": M.uniformity(sample, max_rows=None), "alignment": M.alignment(x, y) if len(x) else float("nan"), "isoscore": M.isoscore(sample),
            "corr_mean": M.corr_mean(sample)}


def analyse_anisotropy(ctx: Context, config: AnalyzeConfig, record: RecordBuilder) -> list[Record]:
    points = cloud(ctx)
    x, y, what = positive_pairs(ctx, config.max_rows)
    metric = ctx.task.main_metric
    full_metrics = anisotropy_metrics(points, x, y, config.max_rows)
    full_metrics["isoscore_package"] = M.isoscore_package(M.sample_rows(points, config.max_rows))
    extra = {"pairs": what, "n_pairs": len(x), "n_points": min(len(points), config.max_rows), **DESCRIPTIVE}
    records = [record(name, value, **ctx.baseline, **extra) for name, value in full_metrics.items()]
    records.append(record(metric, ctx.score(), **ctx.baseline))
    for seed in config.seeds:
        spec = parse_drop("random:50%").with_seed(seed)
        mask = spec.mask(ctx.dim)
        drop = drop_fields(spec, mask, ctx.dim)
        metrics = anisotropy_metrics(mask.remove(points), mask.remove(x), mask.remove(y), config.max_rows)
        records += [record(name, value, **drop, **extra) for name, value in metrics.items()]
        records.append(record(metric, ctx.score(mask.dropped), **drop))
    return records


def attribution_deltas(ctx: Context, config: AnalyzeConfig, log: Callable[[str], None]) -> tuple[float, np.ndarray, str]:
    task = ctx.task
    if task.kind == "retrieval" and ctx.similarity == "cosine":
        a = attr.RetrievalAttribution(ctx.evaluated["queries"], ctx.evaluated["corpus"], task.query_ids, task.doc_ids, task.qrels)
        base, scores = a.run()
        return base, scores, "closed-form cosine retrieval nDCG@10 (vectorised, exact)"
    if task.kind == "sts":
        base, scores = attr.sts_attribution(ctx.evaluated["sentences"], task.left, task.right, task.gold)
        return base, np.asarray(scores), "closed-form cosine STS Spearman (vectorised, exact)"
    if task.kind == "classification":
        light = copy.copy(task)
        n = min(config.attr_experiments, len(task.experiment_positions))
        light.experiment_positions = task.experiment_positions[:n]
        base, scores = attr.naive_attribution(lambda d: ctx.score(d, light), ctx.dim, log=log)
        return base, scores, f"naive loop, MTEB protocol with the first {n} of {len(task.experiment_positions)} undersampling experiments"
    base, scores = attr.naive_attribution(lambda d: ctx.score(d), ctx.dim, log=log)
    return base, scores, "naive loop (full task.score per dimension)"


def analyse_attribution(ctx: Context, config: AnalyzeConfig, record: RecordBuilder, log: Callable[[str], None]) -> list[Record]:
    """Every dim removed alone, then the K% most degrading / most improving / random dims removed together; the
    records in the LLM attribution's vocabulary (llmtrunc.selection), the selection's as analysis
    "attribution-selection"."""
    t0 = time.perf_counter()
    attr_base, scores, method = attribution_deltas(ctx, config, log)
    seconds = time.perf_counter() - t0
    delta = scores - attr_base
    sets = split_sets(delta)
    metric = ctx.task.main_metric
    record = functools.partial(record, method=method)
    records = [record(f"delta_{metric}", delta[j], condition="single", dim_index=int(j), score=float(scores[j]),
                      **single_drop(int(j))) for j in range(ctx.dim)]
    records.append(record("attribution_base", attr_base, condition="full", seconds=round(seconds, 4), main=False,
                          **ctx.baseline))
    records += [record(f"n_{which}", len(dims), condition=which, **set_fields(dims)) for which, dims in sets.items()]
    selection = functools.partial(record, analysis="attribution-selection")
    records.append(selection(metric, ctx.score(), condition="full", **ctx.baseline))
    for k in config.ks:
        n = n_drop(ctx.dim, k)
        for which in ("degrading", "improving"):
            dims = ranked_selection(delta, which, n)
            records.append(selection(metric, ctx.score(dims), condition=which, k_percent=k, n_in_set=len(sets[which]),
                                     **selection_drop(which, k, None, dims, ctx.dim)))
        for seed in config.seeds:
            dims = Mask.random(ctx.dim, n, seed).dropped
            records.append(selection(metric, ctx.score(dims), condition="random", k_percent=k,
                                     **selection_drop("random", k, seed, dims, ctx.dim)))
    return records


def analyse_pca(ctx: Context, config: AnalyzeConfig, record: RecordBuilder) -> list[Record]:
    specs: list[DropSpec] = [parse_drop("none")]
    for k in config.ks:
        specs.append(parse_drop(f"pca:{k}%"))
        specs.extend(parse_drop(f"random:{k}%").with_seed(s) for s in config.seeds)
    from llmtrunc.encoder.truncate import PCAProjector

    pca = PCAProjector(ctx.embeddings[ctx.task.fit_set])
    explained = pca.explained_variance / pca.explained_variance.sum()
    records = []
    for spec, metrics in score_specs(ctx.task, ctx.embeddings, ctx.similarity, specs):
        extra = drop_fields(spec, None if spec.kind == "pca" else spec.mask(ctx.dim), ctx.dim)
        if spec.kind == "pca":
            extra["explained_variance_kept"] = float(explained[: ctx.dim - extra["n_dropped"]].sum())
        for name, value in metrics.items():
            records.append(record(name, value, main=name == ctx.task.main_metric, **extra))
    return records


def analysis_settings(config: AnalyzeConfig, analysis: str) -> dict:
    """The settings of one analysis that change its numbers."""
    return {"analysis": analysis, "ks": config.ks if analysis in ("attribution", "pca") else None, "seeds": config.seeds,
            "attr_experiments": config.attr_experiments if analysis == "attribution" else None,
            "max_rows": config.max_rows}


def analysis_cells(encoder: Encoder, tasks: list[Task], config: AnalyzeConfig) -> list[Cell]:
    """One cell per (task, analysis); the cells of a task share its embeddings."""
    cells = []
    for task in tasks:
        settings = task_settings(encoder, task, TRACK)
        for analysis in config.analyses:
            key = cell_key({**settings, **analysis_settings(config, analysis)})
            cells.append(Cell(key, (encoder.spec.alias, task.name, analysis), (encoder.spec.alias, task.name), (task, analysis)))
    return cells


class AnalysisCompute:
    """The runner's compute function for analysis cells: embeddings once per task, then each analysis."""

    def __init__(self, encoder: Encoder, cache: EmbeddingCache, config: AnalyzeConfig, log: Callable[[str], None] = print):
        self.encoder, self.cache, self.config, self.log = encoder, cache, config, log

    def __call__(self, cells: list[Cell]) -> Iterator[Computed]:
        task: Task = cells[0].payload[0]
        analyses = [c.payload[1] for c in cells]
        needs_fit = "pca" in analyses or ("outliers" in analyses and task.fit_set in task.fit_only_sets)
        start = time.perf_counter()
        ctx = Context(self.encoder, task, encode_sets(self.encoder, task, self.cache, needs_fit), self.config.limits)
        self.log(f"{self.encoder.spec.alias} {task.name}: embeddings ready in {time.perf_counter() - start:.1f}s (dim {ctx.dim})")
        for cell, analysis in zip(cells, analyses):
            record = ctx.records(analysis, cell)
            if analysis == "outliers":
                records = analyse_outliers(ctx, self.config, record)
            elif analysis == "anisotropy":
                records = analyse_anisotropy(ctx, self.config, record)
            elif analysis == "attribution":
                records = analyse_attribution(ctx, self.config, record, self.log)
            else:
                records = analyse_pca(ctx, self.config, record)
            yield cell, records, {"settings.json": cell.key}
