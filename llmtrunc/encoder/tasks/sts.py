"""Semantic textual similarity: Spearman correlation of the cosine of each pair with the gold score.

Main score `cosine_spearman` (MTEB's), also `cosine_pearson`. STS always uses cosine, whatever the
model's retrieval similarity. Sentences are encoded once (unique texts, symmetric prompt).
PCA is fitted on the train split's sentences, never on the evaluated pairs: STS-B train for stsb
and STS12-16 (which have no train split of their own), SICK train for sickr.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from llmtrunc.encoder.models import similarity_pairwise
from llmtrunc.encoder.tasks.base import Limits, Task, TextSet
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import chunks_hash

Pair = tuple[str, str, float]


def read_stsb(path: Path) -> list[Pair]:
    """STS-B release CSV: tab separated genre, file, year, id, score, s1, s2 (extra columns ignored)."""
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 7:
                pairs.append((fields[5], fields[6], float(fields[4])))
    return pairs


def read_sick(path: Path) -> list[Pair]:
    pairs = []
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\n").split("\t")
        a, b, s = header.index("sentence_A"), header.index("sentence_B"), header.index("relatedness_score")
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) > max(a, b, s):
                pairs.append((fields[a], fields[b], float(fields[s])))
    return pairs


def read_senteval_year(folder: Path) -> list[Pair]:
    """STS12-16 in SentEval layout: STS.input.<set>.txt (s1 TAB s2) with STS.gs.<set>.txt; unscored pairs skipped."""
    pairs = []
    for gold_path in sorted(folder.glob("STS.gs.*.txt")):
        subset = gold_path.name[len("STS.gs."):-len(".txt")]
        input_path = folder / f"STS.input.{subset}.txt"
        if subset == "ALL" or not input_path.is_file():
            continue
        golds = gold_path.read_text(encoding="utf-8", errors="replace").splitlines()
        inputs = input_path.read_text(encoding="utf-8", errors="replace").splitlines()
        for gold, text in zip(golds, inputs):
            fields = text.split("\t")
            if gold.strip() and len(fields) >= 2:
                pairs.append((fields[0], fields[1], float(gold.split()[0])))
    return pairs


def read_jsonl_pairs(path: Path) -> list[Pair]:
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                pairs.append((str(row["sentence1"]), str(row["sentence2"]), float(row["score"])))
    return pairs


class STSTask(Task):
    kind = "sts"
    main_metric = "cosine_spearman"
    fit_set = "fit"
    fit_only_sets = ("fit",)

    def __init__(self, name: str, pairs: list[Pair], fit_pairs: list[Pair], split: str = "test", limits: Limits | None = None):
        super().__init__(name, split)
        limits = limits or Limits()
        if limits.limit is not None:
            pairs = pairs[: limits.limit]
        if limits.max_train is not None:
            fit_pairs = fit_pairs[: limits.max_train]
        if not pairs:
            raise LLMTruncError(f"STS task {name}: no scored pairs found")
        sentences = list(dict.fromkeys(s for a, b, _ in pairs for s in (a, b)))
        position = {s: i for i, s in enumerate(sentences)}
        self.sentences = tuple(sentences)
        self.left = np.array([position[a] for a, _, _ in pairs])
        self.right = np.array([position[b] for _, b, _ in pairs])
        self.gold = np.array([g for _, _, g in pairs], dtype=np.float64)
        self.fit_sentences = tuple(dict.fromkeys(s for a, b, _ in fit_pairs for s in (a, b)))

    def sets(self):
        return {"sentences": TextSet(self.sentences, "symmetric", self.split), "fit": TextSet(self.fit_sentences, "symmetric", "train")}

    def labels_fingerprint(self) -> str:
        return chunks_hash([self.left.tobytes(), self.right.tobytes(), self.gold.tobytes()])

    def n_eval(self) -> int:
        return len(self.gold)

    def score(self, embeddings, similarity, full):
        emb = embeddings["sentences"]
        cosine = similarity_pairwise(emb[self.left], emb[self.right], "cosine")
        return {"cosine_spearman": float(spearmanr(cosine, self.gold).statistic),
                "cosine_pearson": float(pearsonr(cosine, self.gold).statistic)}
