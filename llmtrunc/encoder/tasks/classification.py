"""Classification with MTEB's protocol (mteb.abstasks.classification.AbsTaskClassification, mteb 2.x).

MTEB: n_experiments=10; per experiment the train split is undersampled to `samples_per_label` rows
per label (8 by default, 32 for TweetSentimentExtractionClassification) by shuffling the index list
with np.random.RandomState(seed=42) - the same list reshuffled each experiment - and taking the
first rows of each label; a LogisticRegression(max_iter=100, random_state=42) is fitted on the
sampled train embeddings and scored on the full test split; the scores are averaged over the
experiments. Main score: accuracy. Also reported: macro F1.

Deviations, all without effect on the numbers: the undersampling is done once up front (it does not
depend on the embeddings), so only the union of the sampled train rows is encoded; n_jobs is left
at its default (lbfgs multinomial is single-process either way). `max_train` (tests, quick runs)
keeps that many evenly spaced train rows before undersampling and `limit` that many evenly spaced
test rows (evenly spaced so that label-sorted files keep every label); both are recorded.
"""

from __future__ import annotations

import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from llmtrunc.encoder.tasks.base import Limits, Task, TextSet
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import chunks_hash

MTEB_SEED = 42
N_EXPERIMENTS = 10
SAMPLES_PER_LABEL = 8
MAX_ITER = 100


def is_classification_folder(folder: Path) -> bool:
    return (folder / "train.jsonl").is_file() and (folder / "test.jsonl").is_file()


def _read_rows(path: Path) -> tuple[list[str], list]:
    texts, labels = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts.append(str(row["text"]))
                labels.append(row["label"])
            except (json.JSONDecodeError, KeyError) as exc:
                raise LLMTruncError(f"{path}:{number}: expected a JSON object with text and label ({exc})") from None
    return texts, labels


def undersample_experiments(labels: list, samples_per_label: int, n_experiments: int, seed: int = MTEB_SEED) -> list[list[int]]:
    """The train rows of each experiment, exactly as MTEB's `_undersample_data` draws them."""
    idxs = list(range(len(labels)))
    experiments = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(idxs)
        counter: dict = defaultdict(int)
        chosen = []
        for i in idxs:
            if counter[labels[i]] < samples_per_label:
                chosen.append(i)
                counter[labels[i]] += 1
        experiments.append(chosen)
    return experiments


def _spread(rows: list, n: int) -> list:
    """n rows evenly spaced over the split (label-sorted files such as banking77 keep every label)."""
    if n >= len(rows):
        return rows
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]


class ClassificationTask(Task):
    kind = "classification"
    main_metric = "accuracy"
    fit_set = "train"

    def __init__(self, name: str, folder: Path, split: str = "test", limits: Limits | None = None,
                 samples_per_label: int = SAMPLES_PER_LABEL, n_experiments: int = N_EXPERIMENTS):
        super().__init__(name, split)
        limits = limits or Limits()
        if not is_classification_folder(folder):
            raise LLMTruncError(f"{folder} is not a classification folder (needs train.jsonl and test.jsonl)")
        split_path = folder / f"{split}.jsonl"
        if not split_path.is_file():
            raise LLMTruncError(f"missing split file {split_path}")
        train_texts, train_labels = _read_rows(folder / "train.jsonl")
        test_texts, test_labels = _read_rows(split_path)
        if limits.max_train is not None:
            train_texts, train_labels = _spread(train_texts, limits.max_train), _spread(train_labels, limits.max_train)
        if limits.limit is not None:
            test_texts, test_labels = _spread(test_texts, limits.limit), _spread(test_labels, limits.limit)
        if not train_texts or not test_texts:
            raise LLMTruncError(f"{folder}: empty train or {split} split")
        if len(set(map(str, train_labels))) < 2:
            raise LLMTruncError(f"{folder}: the train rows used hold a single label; a classifier needs at least two")
        classes = sorted(set(map(str, train_labels)) | set(map(str, test_labels)))
        index = {c: i for i, c in enumerate(classes)}
        train_y = [index[str(v)] for v in train_labels]
        self.folder = folder
        self.samples_per_label = samples_per_label
        self.n_experiments = n_experiments
        self.experiments = undersample_experiments(train_y, samples_per_label, n_experiments)
        self.train_rows = sorted({i for e in self.experiments for i in e})
        position = {row: p for p, row in enumerate(self.train_rows)}
        self.experiment_positions = [np.array([position[i] for i in e]) for e in self.experiments]
        self.train_texts = tuple(train_texts[i] for i in self.train_rows)
        self.train_y = np.array([train_y[i] for i in self.train_rows])
        self.test_texts = tuple(test_texts)
        self.test_y = np.array([index[str(v)] for v in test_labels])
        self.train_pool = len(train_texts)

    def sets(self):
        return {"train": TextSet(self.train_texts, "symmetric", "train"), "test": TextSet(self.test_texts, "symmetric", self.split)}

    def labels_fingerprint(self) -> str:
        return chunks_hash([self.train_y.tobytes(), self.test_y.tobytes()])

    def protocol(self):
        return {"n_experiments": self.n_experiments, "samples_per_label": self.samples_per_label, "seed": MTEB_SEED,
                "max_iter": MAX_ITER, "train_pool": self.train_pool}

    def n_eval(self) -> int:
        return len(self.test_texts)

    def score(self, embeddings, similarity, full):
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score

        accuracies, f1s = [], []
        for positions in self.experiment_positions:
            classifier = LogisticRegression(max_iter=MAX_ITER, random_state=MTEB_SEED)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                warnings.filterwarnings("ignore", message="The number of unique classes")
                classifier.fit(embeddings["train"][positions], self.train_y[positions])
            predicted = classifier.predict(embeddings["test"])
            accuracies.append(accuracy_score(self.test_y, predicted))
            f1s.append(f1_score(self.test_y, predicted, average="macro"))
        return {"accuracy": float(np.mean(accuracies)), "f1": float(np.mean(f1s)), "accuracy_std": float(np.std(accuracies))}
