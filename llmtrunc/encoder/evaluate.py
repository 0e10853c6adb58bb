"""The encoder grid runner: encode each task's texts once (cached), then score every drop variant.

One results-store run per (model, revision, task data, drop spec): the run id hashes those settings,
so a finished cell is never recomputed and a data or model change gives new cells. Each run's
records.jsonl holds one record per metric with the model, revision, drop name, family, seed, K,
the exact dropped indices, the task, metric, value and provenance (versions, git hash).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from llmtrunc import provenance
from llmtrunc.data import PROJECT_ROOT
from llmtrunc.encoder import truncate as trunc
from llmtrunc.encoder.cache import CacheKey, EmbeddingCache, texts_hash
from llmtrunc.encoder.models import Encoder, resolve_model
from llmtrunc.encoder.tasks import Limits, Task, resolve_task
from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import DropSpec, parse_drops
from llmtrunc.store import ResultsStore, run_id

RESULTS_ENV = "LLMTRUNC_RESULTS_DIR"
FAMILIES = ("first", "last", "random", "pca")
DEFAULT_K = tuple(range(0, 100, 10))
DEFAULT_SEEDS = tuple(range(10))


def default_results_dir() -> Path:
    return Path(os.environ[RESULTS_ENV]).expanduser() if os.environ.get(RESULTS_ENV) else PROJECT_ROOT / "results"


def grid_specs(drops: list[str], ks: list[int] | None, seeds: list[int]) -> list[DropSpec]:
    """Drop specs from --drop items: full specs (last:50%, random:25%@3, indices:F, none) as they are,
    bare families (first, last, random, pca) crossed with the --k grid (dropped percent); random specs
    without @SEED are expanded over --seeds."""
    ks = list(DEFAULT_K) if ks is None else ks
    for k in ks:
        if not 0 <= k <= 100:
            raise LLMTruncError(f"K must be a dropped percent in 0..100, got {k}")
    texts = []
    for part in (p.strip() for item in drops for p in item.split(",") if p.strip()):
        texts += [f"{part}:{k}%" for k in ks] if part in FAMILIES else [part]
    return parse_drops(texts, seeds=seeds)


@dataclass
class EncoderRunConfig:
    """What every encoder-track command needs: model, tasks, data, embedding cache, results store."""
    model: str = "minilm"
    tasks: list[str] = field(default_factory=lambda: ["scifact"])
    data_dir: str | None = None
    cache_dir: str | None = None
    results_dir: str | None = None
    batch_size: int = 32
    device: str | None = None
    revision: str | None = None
    limits: Limits = field(default_factory=Limits)
    use_cache: bool = True
    recompute: bool = False
    encoder: Encoder | None = None  # an already constructed encoder (reused across runs in tests/scripts)


@dataclass
class EvalConfig(EncoderRunConfig):
    specs: list[DropSpec] = field(default_factory=list)


@dataclass
class EvalOutcome:
    records: list[dict]
    written_runs: int
    reused_runs: int
    encoded_texts: int
    cache_hits: int
    cache_misses: int
    seconds: dict[str, float]


def _file_sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16] if Path(path).is_file() else "missing"


def run_settings(encoder: Encoder, task: Task, fingerprint: str, spec: DropSpec) -> dict:
    settings = {"track": "encoder", "model": encoder.model_id, "revision": encoder.revision, "task": task.name,
                "task_kind": task.kind, "split": task.split, "data": fingerprint, "drop": spec.name}
    if spec.kind == "indices":
        settings["indices_sha256"] = _file_sha(spec.path)
    return settings


def encode_sets(encoder: Encoder, task: Task, cache: EmbeddingCache, with_fit: bool, dataset: str) -> dict[str, np.ndarray]:
    out = {}
    for set_name, text_set in task.text_sets(with_fit).items():
        prompt = encoder.spec.prompt(text_set.role, task.name, task.kind)
        key = CacheKey(encoder.model_id, encoder.resolved_revision(), dataset, text_set.split, text_set.role, prompt,
                       texts_hash(text_set.texts), len(text_set.texts))
        out[set_name] = cache.get_or_compute(key, lambda ts=text_set, p=prompt: encoder.embed(ts.texts, p))
    return out


def score_variants(task: Task, embeddings: dict[str, np.ndarray], similarity: str, variants: list[trunc.Variant],
                   on_result: Callable[[trunc.Variant, dict[str, float]], None] | None = None) -> list[tuple[trunc.Variant, dict[str, float]]]:
    """Score each variant from the same embeddings. Index variants with the same kept set share one
    computation (all K=0 variants, seeds of random:0%); PCA is fitted once on `task.fit_set`."""
    evaluated = {k: v for k, v in embeddings.items() if k not in task.fit_only_sets}
    pca = None
    memo: dict[tuple[int, ...], dict[str, float]] = {}
    results = []
    for variant in variants:
        if variant.kind == "pca":
            if pca is None:
                pca = trunc.PCAProjector(embeddings[task.fit_set])
            metrics = task.score({k: trunc.apply(variant, m, pca) for k, m in evaluated.items()}, similarity, evaluated)
        else:
            if variant.dropped not in memo:
                memo[variant.dropped] = task.score({k: trunc.apply(variant, m) for k, m in evaluated.items()}, similarity, evaluated)
            metrics = memo[variant.dropped]
        results.append((variant, metrics))
        if on_result:
            on_result(variant, metrics)
    return results


def make_records(encoder: Encoder, task: Task, variant: trunc.Variant, metrics: dict[str, float], rid: str, fingerprint: str,
                 limits: Limits, seconds: float) -> list[dict]:
    base = {
        "track": "encoder", "run_id": rid, "model": encoder.spec.alias, "model_id": encoder.model_id, "revision": encoder.revision,
        "similarity": encoder.spec.similarity, "task": task.name, "task_kind": task.kind, "split": task.split,
        "n_eval": task.n_eval(), "data": fingerprint, "protocol": task.protocol(), "limits": limits.as_dict(),
        "drop": variant.name, "family": variant.spec.family, "kind": variant.kind, "seed": variant.spec.seed,
        "k": variant.ratio, "k_percent": round(variant.ratio * 100, 6), "dim": variant.dim, "keep_dims": variant.n_keep,
        "dropped": list(variant.dropped) if variant.dropped is not None else None,
        "versions": provenance.versions(), "git": provenance.git_hash(), "command": provenance.command(), "created": provenance.now(), "seconds": round(seconds, 4),
    }
    return [dict(base, metric=name, value=value, main=name == task.main_metric) for name, value in metrics.items()]


def run_eval(config: EvalConfig, log: Callable[[str], None] = print) -> EvalOutcome:
    if not config.specs:
        raise LLMTruncError("no drop spec given")
    if config.encoder is not None:
        encoder, spec = config.encoder, config.encoder.spec
    else:
        spec = resolve_model(config.model)
        encoder = Encoder(spec, device=config.device, revision=config.revision, batch_size=config.batch_size)
    encoded_before = encoder.n_encoded
    cache = EmbeddingCache(config.cache_dir, enabled=config.use_cache)
    store = ResultsStore(config.results_dir or default_results_dir())
    tasks = [resolve_task(name, config.data_dir, config.limits) for name in config.tasks]  # fail fast on bad names/data
    records: list[dict] = []
    written = reused = 0
    seconds = {"encode": 0.0, "score": 0.0}
    for task in tasks:
        fingerprint = task.fingerprint()
        rids = {s: run_id(run_settings(encoder, task, fingerprint, s), spec.alias, task.name, s.name) for s in config.specs}
        pending = [s for s in config.specs if config.recompute or not store.has_run(rids[s])]
        for s in config.specs:
            if s not in pending:
                records.extend(store.run_records(rids[s]))
        reused += len(config.specs) - len(pending)
        if not pending:
            log(f"{spec.alias} {task.name}: all {len(config.specs)} drop specs already in {store.root}")
            continue
        t0 = time.perf_counter()
        embeddings = encode_sets(encoder, task, cache, any(s.kind == "pca" for s in pending), task.name)
        seconds["encode"] += time.perf_counter() - t0
        dim = next(iter(embeddings.values())).shape[1]
        variants = [trunc.resolve(s, dim) for s in pending]
        # settings may have changed if the revision was only resolved by loading the model
        rids = {s: run_id(run_settings(encoder, task, fingerprint, s), spec.alias, task.name, s.name) for s in pending}
        t1 = time.perf_counter()
        last = [time.perf_counter()]

        def write(variant: trunc.Variant, metrics: dict[str, float]) -> None:
            now = time.perf_counter()
            rid = rids[variant.spec]
            recs = make_records(encoder, task, variant, metrics, rid, fingerprint, config.limits, now - last[0])
            store.write_run(rid, recs, {"settings.json": run_settings(encoder, task, fingerprint, variant.spec)})
            records.extend(recs)
            last[0] = time.perf_counter()

        score_variants(task, embeddings, spec.similarity, variants, write)
        seconds["score"] += time.perf_counter() - t1
        written += len(pending)
        main = [r for r in records if r["task"] == task.name and r["main"] and r["k"] == 0 and r["kind"] != "pca"]
        shown = f"{task.main_metric}={main[0]['value']:.4f} at K=0, " if main else ""
        log(f"{spec.alias} {task.name}: {shown}{len(pending)} drop specs scored in {time.perf_counter() - t1:.1f}s "
            f"(encode {seconds['encode']:.1f}s so far, cache hits {cache.hits}, misses {cache.misses})")
    return EvalOutcome(records, written, reused, encoder.n_encoded - encoded_before, cache.hits, cache.misses, seconds)
