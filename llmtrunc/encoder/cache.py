"""Embedding cache: every text set is encoded once per (model, revision, texts, prompt) and reused.

Layout: <root>/<model-slug>/<dataset>__<split>__<role>__<key>.npy with a JSON sidecar
<same>.json. The key is a SHA-256 over the model id, the resolved revision (a hub commit or a
content hash of a local model folder), the prompt, and a content hash of the exact texts encoded
(in order), plus dataset and split names. Any change of model, revision, prompt or data therefore
gives a new key: a stale hit is impossible by construction.

Writes are atomic (temporary file, fsync, rename): first the .npy, then the sidecar, which records
shape, dtype and the SHA-256 of the .npy bytes. A load verifies all three; a missing, partial or
corrupt entry is reported as a miss and rebuilt.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from llmtrunc.data import cache_dir
from llmtrunc.files import atomic_write, chunks_hash, slug

FORMAT_VERSION = 1


@dataclass(frozen=True)
class CacheKey:
    model_id: str
    revision: str
    dataset: str
    split: str
    role: str
    prompt: str
    texts_sha256: str
    n_texts: int

    @property
    def digest(self) -> str:
        fields = dict(asdict(self), format=FORMAT_VERSION)
        return chunks_hash([json.dumps(fields, sort_keys=True).encode()])[:24]


class EmbeddingCache:
    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.root = Path(root) if root else cache_dir("embeddings")
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def paths(self, key: CacheKey) -> tuple[Path, Path]:
        stem = f"{slug(key.dataset, 80)}__{slug(key.split, 80)}__{key.role}__{key.digest}"
        folder = self.root / slug(key.model_id, 80)
        return folder / f"{stem}.npy", folder / f"{stem}.json"

    def load(self, key: CacheKey) -> np.ndarray | None:
        """The cached matrix, or None when absent, partial or corrupt (never a wrong matrix)."""
        npy, meta = self.paths(key)
        if not (npy.is_file() and meta.is_file()):
            return None
        try:
            info = json.loads(meta.read_text())
            raw = npy.read_bytes()
            if chunks_hash([raw]) != info["npy_sha256"] or info["key"] != key.digest:
                return None
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            return None
        if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"] or array.shape[0] != key.n_texts:
            return None
        return array

    def save(self, key: CacheKey, array: np.ndarray) -> None:
        npy, meta = self.paths(key)
        npy.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        raw = buffer.getvalue()
        atomic_write(npy, raw)
        info = {"key": key.digest, "fields": asdict(key), "shape": list(array.shape), "dtype": str(array.dtype),
                "npy_sha256": chunks_hash([raw]), "format": FORMAT_VERSION}
        atomic_write(meta, json.dumps(info, indent=2))

    def get_or_compute(self, key: CacheKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if self.enabled:
            found = self.load(key)
            if found is not None:
                self.hits += 1
                return found
        self.misses += 1
        array = np.asarray(compute(), dtype=np.float32)
        if array.shape[0] != key.n_texts:
            raise RuntimeError(f"encoder returned {array.shape[0]} rows for {key.n_texts} texts")
        # An unresolved hub revision could change under the same name: never cache it.
        if self.enabled and not key.revision.startswith("unresolved"):
            self.save(key, array)
        return array
