"""Activation profiles: per-dimension statistics of a representation over calibration data.

Drops such as `outliers`, `top:K`, `bottom:K`, `random:K!outliers` and `random:outliers`
(llmtrunc.spec) name dimensions by how a model uses them, so they resolve against a `Profile`: the
per-dimension mean and mean |activation| of the final hidden state (LLM track, over calibration
tokens, llmtrunc.llm.calibration) or of the sentence embeddings (encoder track, over the task's
fit side). Outliers follow the encoder analyses' rule (`outlier_dims`, the one implementation):
dimensions whose mean lies beyond +-3 standard deviations of the per-dimension means.

`ProfileCache` keeps profiles on disk as JSON (atomic writes, the key stored and checked on load),
so a second command on the same model, position and calibration computes nothing.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from llmtrunc.data import cache_dir
from llmtrunc.files import atomic_write, digest, slug

FORMAT_VERSION = 1


def outlier_dims(mean: np.ndarray, n_std: float = 3.0) -> np.ndarray:
    """Indices whose value lies beyond `n_std` standard deviations of the vector's mean (taken over dimensions)."""
    mean = np.asarray(mean, dtype=np.float64)
    return np.flatnonzero(np.abs(mean - mean.mean()) > n_std * mean.std())


class Profile:
    """Per-dimension mean and mean |activation| of one representation, and the calibration they come from."""

    def __init__(self, mean, mean_abs, calibration: Mapping[str, Any]):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.mean_abs = np.asarray(mean_abs, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.shape != self.mean_abs.shape:
            raise ValueError("a profile needs two vectors of the same length")
        self.calibration = dict(calibration)

    @classmethod
    def of(cls, rows: np.ndarray, calibration: Mapping[str, Any]) -> Profile:
        """The profile of a rows x dim matrix (encoder embeddings), in float64 as the analyses compute it."""
        rows = np.asarray(rows, dtype=np.float64)
        return cls(rows.mean(axis=0), np.abs(rows).mean(axis=0), calibration)

    @property
    def dim(self) -> int:
        return len(self.mean)

    @functools.cached_property
    def outliers(self) -> tuple[int, ...]:
        return tuple(int(i) for i in outlier_dims(self.mean))

    def by_magnitude(self, largest: bool) -> np.ndarray:
        """Every dimension ordered by mean |activation| (largest or smallest first), ties by lower index."""
        return np.lexsort((np.arange(self.dim), -self.mean_abs if largest else self.mean_abs))

    def describe(self) -> dict[str, Any]:
        """What a record stores about the profile its mask came from."""
        return {**self.calibration, "n_outliers": len(self.outliers), "outliers": list(self.outliers)}

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "mean_abs": self.mean_abs.tolist(), "calibration": self.calibration}


class ProfileCache:
    """Profiles on disk, one JSON file per key: <root>/<label>__<digest>.json (default $LLMTRUNC_CACHE_DIR/profiles)."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else cache_dir("profiles")
        self.hits = 0
        self.misses = 0

    def path(self, key: Mapping[str, Any], label: str) -> Path:
        return self.root / f"{slug(label, 80, keep_end=True)}__{digest({**key, 'format': FORMAT_VERSION}, 24)}.json"

    def load(self, key: Mapping[str, Any], label: str) -> Profile | None:
        """The cached profile, or None when absent, partial or written for another key."""
        path = self.path(key, label)
        try:
            data = json.loads(path.read_text())
            if data.get("key") != json.loads(json.dumps(dict(key), default=str)):
                return None
            return Profile(data["mean"], data["mean_abs"], data["calibration"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def get_or_compute(self, key: Mapping[str, Any], label: str, compute: Callable[[], Profile]) -> Profile:
        found = self.load(key, label)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        profile = compute()
        atomic_write(self.path(key, label), json.dumps({"key": dict(key), **profile.to_json()}, default=str))
        return profile
