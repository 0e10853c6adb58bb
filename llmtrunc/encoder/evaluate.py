"""Encoder cells: encode each task's texts once (cached), then score every drop condition from them.

`encoder_cells` expands tasks x drops into runner cells (llmtrunc.runner), one group per task;
`EncoderCompute` is the runner's compute function: it encodes a task's text sets once (through the
embedding cache) and scores each pending condition from the same embeddings, yielding each cell's
records as soon as it is scored. A cell key holds the model, its resolved revision, the task's
content fingerprint (texts, labels, protocol) and the drop, so a data or model change gives new cells.
Profile-based drops (outliers, top:K ...) resolve against the profile of the task's fit-side
embeddings (corpus / train texts, the side PCA is fitted on), named in their cell keys and records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from llmtrunc.encoder import truncate as trunc
from llmtrunc.encoder.cache import CacheKey, EmbeddingCache
from llmtrunc.encoder.models import DEFAULT_MODEL, Encoder, resolve_model
from llmtrunc.encoder.tasks import Limits, Task, resolve_task
from llmtrunc.files import texts_hash
from llmtrunc.profile import Profile
from llmtrunc.record import Record, RecordBuilder, cell_key, drop_fields
from llmtrunc.runner import Cell, Computed
from llmtrunc.spec import DropSpec


@dataclass
class EncoderRunConfig:
    """What every encoder-track command needs: model, tasks, data, embedding cache."""

    model: str = DEFAULT_MODEL
    tasks: list[str] = field(default_factory=lambda: ["scifact"])
    data_dir: str | None = None
    cache_dir: str | None = None
    batch_size: int = 32
    device: str | None = None
    revision: str | None = None
    limits: Limits = field(default_factory=Limits)
    use_cache: bool = True
    encoder: Encoder | None = None  # an already constructed encoder (reused across runs in tests/scripts)

    def load(self) -> tuple[Encoder, list[Task], EmbeddingCache]:
        tasks = [resolve_task(name, self.data_dir, self.limits) for name in self.tasks]  # fail fast on bad names/data
        encoder = self.encoder or Encoder(resolve_model(self.model), device=self.device, revision=self.revision,
                                          batch_size=self.batch_size)
        return encoder, tasks, EmbeddingCache(self.cache_dir, enabled=self.use_cache)


def task_settings(encoder: Encoder, task: Task, track: str = "encoder") -> dict:
    """What decides an encoder cell's numbers besides the drop."""
    return {"track": track, "model": encoder.model_id, "revision": encoder.resolved_revision(), "task": task.name,
            "task_kind": task.kind, "split": task.split, "data": task.fingerprint()}


def fit_calibration(task: Task) -> dict:
    """The calibration of the encoder track's profiles: the task's fit side, by content."""
    fit = task.sets()[task.fit_set]
    return {"source": f"{task.name}:{task.fit_set}", "split": fit.split, "sha256": texts_hash(fit.texts),
            "rows": len(fit.texts)}


def encoder_cells(encoder: Encoder, tasks: list[Task], specs: list[DropSpec]) -> list[Cell]:
    cells = []
    for task in tasks:
        settings = task_settings(encoder, task)
        calibration = fit_calibration(task) if any(s.needs_profile for s in specs) else None
        for spec in specs:
            cells.append(Cell(cell_key(settings, spec, calibration=calibration), (encoder.spec.alias, task.name, spec.name),
                              (encoder.spec.alias, task.name), (task, spec)))
    return cells


def encode_sets(encoder: Encoder, task: Task, cache: EmbeddingCache, with_fit: bool) -> dict[str, np.ndarray]:
    out = {}
    for set_name, text_set in task.text_sets(with_fit).items():
        prompt = encoder.spec.prompt(text_set.role, task.name, task.kind)
        key = CacheKey(encoder.model_id, encoder.resolved_revision(), task.name, text_set.split, text_set.role, prompt,
                       texts_hash(text_set.texts), len(text_set.texts))
        out[set_name] = cache.get_or_compute(key, lambda ts=text_set, p=prompt: encoder.embed(ts.texts, p))
    return out


def score_specs(task: Task, embeddings: dict[str, np.ndarray], similarity: str, specs: list[DropSpec],
                profile: Profile | None = None) -> Iterator[tuple[DropSpec, dict[str, float]]]:
    """Each spec's metrics from the same embeddings. Specs that drop the same dimensions share one
    computation (all K=0 variants, seeds of random:0%); PCA is fitted once on `task.fit_set`;
    profile-based specs resolve against `profile`."""
    evaluated = {k: v for k, v in embeddings.items() if k not in task.fit_only_sets}
    dim = next(iter(evaluated.values())).shape[1]
    pca = None
    memo: dict[tuple[int, ...], dict[str, float]] = {}
    for spec in specs:
        if spec.kind == "pca":
            pca = pca or trunc.PCAProjector(embeddings[task.fit_set])
            metrics = task.score({k: trunc.apply(spec, m, pca) for k, m in evaluated.items()}, similarity, evaluated)
        else:
            mask = spec.mask(dim, profile)
            if mask.dropped not in memo:
                memo[mask.dropped] = task.score({k: mask.remove(m) for k, m in evaluated.items()}, similarity, evaluated)
            metrics = memo[mask.dropped]
        yield spec, metrics


def make_records(encoder: Encoder, task: Task, settings: dict, cell: Cell, metrics: dict[str, float], dim: int,
                 limits: Limits, seconds: float, profile: Profile | None = None) -> list[Record]:
    spec: DropSpec = cell.payload[1]
    mask = None if spec.kind == "pca" else spec.mask(dim, profile)
    drop = drop_fields(spec, mask, dim)
    record = RecordBuilder(
        cell.run_id, "encoder", settings, model=encoder.spec.alias, model_id=encoder.model_id,
        revision=encoder.revision, task=task.name, **drop, limit=limits.limit, seconds=round(seconds, 4),
        similarity=encoder.spec.similarity, task_kind=task.kind, split=task.split, n_eval=task.n_eval(),
        data=settings["data"], protocol=task.protocol(), limits=limits.as_dict(),
        k_percent=round(100 * drop["n_dropped"] / dim if spec.ratio is None else float(spec.ratio) * 100, 6),
        keep_dims=dim - drop["n_dropped"], **({"calibration": profile.describe()} if spec.needs_profile else {}))
    return [record(name, value, main=name == task.main_metric) for name, value in metrics.items()]


class EncoderCompute:
    """The runner's compute function for encoder cells (one group = one task)."""

    def __init__(self, encoder: Encoder, cache: EmbeddingCache, limits: Limits, log=print):
        self.encoder, self.cache, self.limits, self.log = encoder, cache, limits, log
        self.seconds = {"encode": 0.0, "score": 0.0}

    def __call__(self, cells: list[Cell]) -> Iterator[Computed]:
        task: Task = cells[0].payload[0]
        specs = [c.payload[1] for c in cells]
        needs_profile = any(s.needs_profile for s in specs)
        start = time.perf_counter()
        embeddings = encode_sets(self.encoder, task, self.cache, needs_profile or any(s.kind == "pca" for s in specs))
        self.seconds["encode"] += time.perf_counter() - start
        dim = next(iter(embeddings.values())).shape[1]
        settings = task_settings(self.encoder, task)
        profile = Profile.of(embeddings[task.fit_set], fit_calibration(task)) if needs_profile else None
        last = time.perf_counter()
        for cell, (spec, metrics) in zip(cells, score_specs(task, embeddings, self.encoder.spec.similarity, specs,
                                                            profile)):
            now = time.perf_counter()
            self.seconds["score"] += now - last
            records = make_records(self.encoder, task, settings, cell, metrics, dim, self.limits, now - last, profile)
            yield cell, records, {"settings.json": cell.key}
            last = time.perf_counter()
        self.log(f"{self.encoder.spec.alias} {task.name}: {len(cells)} conditions scored (encode "
                 f"{self.seconds['encode']:.1f}s so far, cache hits {self.cache.hits}, misses {self.cache.misses})")
