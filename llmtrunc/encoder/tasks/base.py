"""What every encoder task provides to the grid runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from llmtrunc.files import chunks_hash


@dataclass(frozen=True)
class TextSet:
    """Texts encoded together with one prompt role ("query", "document" or "symmetric")."""

    texts: tuple[str, ...]
    role: str
    split: str


@dataclass
class Limits:
    """Subsets for tests and quick runs; None = the whole split."""

    limit: int | None = None  # evaluation items: queries, test rows, STS pairs
    max_corpus: int | None = None  # retrieval corpus size (relevant docs of the kept queries always stay)
    max_train: int | None = None  # classification train pool before MTEB's undersampling; PCA fit texts for STS

    def as_dict(self) -> dict[str, int | None]:
        return {"limit": self.limit, "max_corpus": self.max_corpus, "max_train": self.max_train}


class Task:
    """Base class. Subclasses implement `sets`, `score` and `n_eval`.

    kind: retrieval / classification / sts; main_metric: the headline metric;
    fit_set: the set PCA is fitted on (corpus or train), never an evaluation query or test set;
    fit_only_sets: sets that serve only to fit PCA (encoded only when pca is asked for);
    higher_is_better: the direction of every metric the task scores (nDCG, MAP, accuracy, F1, Spearman ...
    all rise with quality), as records and retention (llmtrunc.retention) read it.
    """

    kind = ""
    main_metric = ""
    higher_is_better = True
    fit_set = ""
    fit_only_sets: tuple[str, ...] = ()

    def __init__(self, name: str, split: str = "test"):
        self.name = name
        self.split = split

    def text_sets(self, with_fit: bool) -> dict[str, TextSet]:
        sets = self.sets()
        return {k: v for k, v in sets.items() if with_fit or k not in self.fit_only_sets}

    def sets(self) -> dict[str, TextSet]:  # pragma: no cover - abstract
        raise NotImplementedError

    def protocol(self) -> dict[str, Any]:
        """Settings that change the numbers besides the texts (recorded and part of run ids)."""
        return {}

    def labels_fingerprint(self) -> str:
        return ""

    def fingerprint(self) -> str:
        """Hash of every text, label and protocol setting the scores depend on."""

        def chunks() -> Iterator[bytes]:
            for name, text_set in sorted(self.sets().items()):
                yield f"{name}|{text_set.role}|{text_set.split}|{len(text_set.texts)}".encode()
                for text in text_set.texts:
                    yield text.encode("utf-8") + b"\x00"
            yield self.labels_fingerprint().encode()
            yield json.dumps(self.protocol(), sort_keys=True, default=str).encode()

        return chunks_hash(chunks())[:16]

    def score(self, embeddings: dict[str, np.ndarray], similarity: str, full: dict[str, np.ndarray]) -> dict[str, float]:
        """Metrics for (truncated) embeddings; `full` are the untruncated ones (for rank correlations)."""
        raise NotImplementedError  # pragma: no cover

    def n_eval(self) -> int:
        raise NotImplementedError  # pragma: no cover
