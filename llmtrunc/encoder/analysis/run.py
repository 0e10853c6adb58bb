"""`llmtrunc encoder analyze`: outlier dimensions, anisotropy/collapse metrics, dimension attribution and
PCA vs random, computed from the encoder track's cached embeddings into the results store.

One results-store run per (model, revision, task data, analysis, settings), track "encoder-analysis";
a finished run is reused unless --recompute. Every record carries model, revision, task, analysis,
condition, metric, value, the dropped dims, versions and git hash. Scores are the encoder track's own
`task.score` main metric (nDCG@10, accuracy, cosine Spearman) on the same embeddings.

analyses
  outliers     dims whose corpus-mean value lies beyond +-3 std (over dims), on the fit side (corpus /
               train / STS train); score removing them vs removing as many random dims (--seeds).
  anisotropy   uniformity, alignment (positive pairs: query-relevant doc; same-label test pairs; STS pairs
               with gold >= 4), IsoScore (own numpy + the IsoScore package), Corr Mean, on the evaluated
               side (corpus / test texts / STS sentences), for the full embeddings and for random 50%
               truncations (with the score retention there).
  attribution  score change from removing each dim alone (see attribution.py for the method per task);
               then removing only the most degrading vs only the most improving dims at each K of --k,
               against random dims (--seeds). The selection is made on the evaluated split (as in the paper).
  pca          PCA (fitted on corpus / train side only) vs random at each K of --k.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from llmtrunc import provenance
from llmtrunc.encoder.analysis import attribution as attr
from llmtrunc.encoder.analysis import metrics as M
from llmtrunc.encoder.cache import EmbeddingCache
from llmtrunc.encoder.evaluate import EncoderRunConfig, encode_sets, score_specs, task_settings
from llmtrunc.encoder.models import Encoder
from llmtrunc.encoder.tasks import Limits, Task
from llmtrunc.record import Record, cell_key, settings_id
from llmtrunc.retention import retention
from llmtrunc.runner import Cell, Computed
from llmtrunc.selection import n_drop, ranked_selection, split_sets
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


def random_dims(dim: int, n: int, seed: int) -> tuple[int, ...]:
    """n random dims, the same draw as random:K@seed (llmtrunc.spec.Mask.random)."""
    return Mask.random(dim, n, seed).dropped


class Context:
    """One (encoder, task) with its embeddings and a scorer of any dropped set."""

    def __init__(self, encoder: Encoder, task: Task, embeddings: dict[str, np.ndarray], limits: Limits):
        self.encoder, self.task, self.embeddings, self.limits = encoder, task, embeddings, limits
        self.evaluated = {k: v for k, v in embeddings.items() if k not in task.fit_only_sets}
        self.dim = next(iter(embeddings.values())).shape[1]
        self.similarity = encoder.spec.similarity
        self.settings = task_settings(encoder, task, TRACK)

    def score(self, dropped: Sequence[int] = (), task: Task | None = None) -> float:
        task = task or self.task
        mask = Mask.of(self.dim, dropped)
        sets = {k: mask.remove(m) for k, m in self.evaluated.items()}
        return float(task.score(sets, self.similarity, self.evaluated)[task.main_metric])

    def base_record(self, analysis: str, cell: Cell) -> dict:
        e, t = self.encoder, self.task
        common = {"track": TRACK, "run_id": cell.run_id, "model": e.spec.alias, "model_id": e.model_id,
                  "revision": e.revision, "task": t.name, "settings_id": settings_id(self.settings), "dim": self.dim,
                  "limit": self.limits.limit, **provenance.stamp()}
        extra = {"analysis": analysis, "similarity": self.similarity, "task_kind": t.kind, "split": t.split,
                 "n_eval": t.n_eval(), "data": self.settings["data"], "limits": self.limits.as_dict()}
        return {"common": common, "extra": extra}


_COMMON = {"dims": "dropped_indices", "seed": "seed", "n_dropped": "n_dropped", "main": "main", "seconds": "seconds"}


def _rec(base: dict, metric: str, value: float, condition: str, **fields) -> Record:
    """One analysis record; `dims`, `seed`, `n_dropped`, `main`, `seconds` and `drop` (a spec, expanded
    into the drop columns) are common fields, the rest extra."""
    common, extra = dict(base["common"]), dict(base["extra"], condition=condition)
    for key, item in fields.items():
        if key == "drop":
            spec = parse_drop(item)
            common.update(drop=spec.name, drop_family=spec.family, drop_kind=spec.kind,
                          drop_ratio=None if spec.ratio is None else float(spec.ratio))
        elif key in _COMMON:
            common[_COMMON[key]] = list(item) if key == "dims" else item
        else:
            extra[key] = item
    return Record(**common, metric=metric, value=float(value), extra=extra)


def analyse_outliers(ctx: Context, config: AnalyzeConfig, base: dict) -> list[Record]:
    fit = ctx.embeddings[ctx.task.fit_set]
    outliers = M.outlier_dimensions(fit)
    mean = fit.astype(np.float64).mean(axis=0)
    metric = ctx.task.main_metric
    full = ctx.score()
    records = [_rec(base, "n_outliers", len(outliers), "outliers", dims=[int(j) for j in outliers], n_dropped=len(outliers),
                    mean_values=[round(float(mean[j]), 6) for j in outliers], mean_of_means=float(mean.mean()), std_of_means=float(mean.std())),
               _rec(base, metric, full, "full", n_dropped=0, dims=[])]
    if len(outliers):
        records.append(_rec(base, metric, ctx.score(outliers), "outliers", n_dropped=len(outliers), dims=[int(j) for j in outliers]))
        for seed in config.seeds:
            dims = random_dims(ctx.dim, len(outliers), seed)
            records.append(_rec(base, metric, ctx.score(dims), "random", n_dropped=len(dims), dims=list(dims), seed=seed))
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


def analyse_anisotropy(ctx: Context, config: AnalyzeConfig, base: dict) -> list[Record]:
    points = cloud(ctx)
    x, y, what = positive_pairs(ctx, config.max_rows)
    metric = ctx.task.main_metric
    records = []
    full_metrics = anisotropy_metrics(points, x, y, config.max_rows)
    full_metrics["isoscore_package"] = M.isoscore_package(M.sample_rows(points, config.max_rows))
    full_score = ctx.score()
    extra = {"pairs": what, "n_pairs": len(x), "n_points": min(len(points), config.max_rows)}
    for name, value in full_metrics.items():
        records.append(_rec(base, name, value, "full", k_percent=0, n_dropped=0, **extra))
    records.append(_rec(base, metric, full_score, "full", k_percent=0, n_dropped=0))
    n = n_drop(ctx.dim, 50)
    for seed in config.seeds:
        dims = random_dims(ctx.dim, n, seed)
        keep = Mask(ctx.dim, dims).remove
        for name, value in anisotropy_metrics(keep(points), keep(x), keep(y), config.max_rows).items():
            records.append(_rec(base, name, value, "random", k_percent=50, n_dropped=n, seed=seed, **extra))
        score = ctx.score(dims)
        records.append(_rec(base, metric, score, "random", k_percent=50, n_dropped=n, seed=seed, retention=retention(score, full_score, ctx.task.higher_is_better)))
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


def analyse_attribution(ctx: Context, config: AnalyzeConfig, base: dict, log: Callable[[str], None]) -> list[Record]:
    t0 = time.perf_counter()
    attr_base, scores, method = attribution_deltas(ctx, config, log)
    seconds = time.perf_counter() - t0
    delta = scores - attr_base
    sets = split_sets(delta)
    metric = ctx.task.main_metric
    b = {"common": base["common"], "extra": {**base["extra"], "method": method}}
    records = [_rec(b, f"delta_{metric}", delta[j], "single", dim_index=int(j), score=float(scores[j]), n_dropped=1) for j in range(ctx.dim)]
    records += [_rec(b, "attribution_base", attr_base, "full", seconds=round(seconds, 4)),
                _rec(b, "n_degrading", len(sets["degrading"]), "degrading", dims=sets["degrading"].tolist()),
                _rec(b, "n_improving", len(sets["improving"]), "improving", dims=sets["improving"].tolist()),
                _rec(b, "n_neutral", len(sets["neutral"]), "neutral", dims=sets["neutral"].tolist())]
    full = ctx.score()
    records.append(_rec(b, metric, full, "full", k_percent=0, n_dropped=0, analysis="attribution-selection"))
    for k in config.ks:
        n = n_drop(ctx.dim, k)
        for which in ("degrading", "improving"):
            dims = ranked_selection(delta, which, n)
            records.append(_rec(b, metric, ctx.score(dims), which, k_percent=k, n_dropped=n, dims=dims, analysis="attribution-selection",
                                n_in_set=len(sets[which])))
        for seed in config.seeds:
            dims = random_dims(ctx.dim, n, seed)
            records.append(_rec(b, metric, ctx.score(dims), "random", k_percent=k, n_dropped=n, seed=seed, analysis="attribution-selection"))
    return records


def analyse_pca(ctx: Context, config: AnalyzeConfig, base: dict) -> list[Record]:
    specs: list[DropSpec] = [parse_drop("none")]
    for k in config.ks:
        specs.append(parse_drop(f"pca:{k}%"))
        specs.extend(parse_drop(f"random:{k}%").with_seed(s) for s in config.seeds)
    from llmtrunc.encoder.truncate import PCAProjector

    pca = PCAProjector(ctx.embeddings[ctx.task.fit_set])
    explained = pca.explained_variance / pca.explained_variance.sum()
    records = []
    for spec, metrics in score_specs(ctx.task, ctx.embeddings, ctx.similarity, specs):
        condition = "full" if spec.kind == "none" else spec.kind
        n = spec.n_drop(ctx.dim)
        extra = {"k_percent": 0 if spec.ratio is None else float(spec.ratio) * 100, "n_dropped": n, "seed": spec.seed,
                 "drop": spec.name}
        if spec.kind == "pca":
            extra["explained_variance_kept"] = float(explained[: ctx.dim - n].sum())
        for name, value in metrics.items():
            records.append(_rec(base, name, value, condition, main=name == ctx.task.main_metric, **extra))
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
            key = cell_key({**settings, **analysis_settings(config, analysis)}, DropSpec("none"))
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
            base = ctx.base_record(analysis, cell)
            if analysis == "outliers":
                records = analyse_outliers(ctx, self.config, base)
            elif analysis == "anisotropy":
                records = analyse_anisotropy(ctx, self.config, base)
            elif analysis == "attribution":
                records = analyse_attribution(ctx, self.config, base, self.log)
            else:
                records = analyse_pca(ctx, self.config, base)
            yield cell, records, {"settings.json": cell.key}
