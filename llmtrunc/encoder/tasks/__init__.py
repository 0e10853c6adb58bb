"""Task registry: built-in offline tasks by name (MTEB names accepted too) and users' own folders.

`--tasks` items are either a registered name or a folder path, whose kind is detected from its
contents: corpus.jsonl + queries.jsonl + qrels/ -> retrieval (BEIR layout); train.jsonl + test.jsonl
of text,label -> classification; test.jsonl of sentence1,sentence2,score -> STS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from llmtrunc.data import data_dir as find_data_dir
from llmtrunc.encoder.tasks.base import Limits, Task, TextSet
from llmtrunc.encoder.tasks.classification import ClassificationTask, is_classification_folder
from llmtrunc.encoder.tasks.retrieval import RetrievalTask, is_beir_folder
from llmtrunc.encoder.tasks.sts import STSTask, read_jsonl_pairs, read_senteval_year, read_sick, read_stsb
from llmtrunc.errors import LLMTruncError
from llmtrunc.registry import Registry

__all__ = ["Limits", "Task", "TextSet", "TASKS", "TaskMetadata", "MTEB_NAMES", "resolve_task"]

STS_YEARS = {"sts12": "STS12-en-test", "sts13": "STS13-en-test", "sts14": "STS14-en-test", "sts15": "STS15-en-test", "sts16": "STS16-en-test"}


@dataclass(frozen=True)
class TaskMetadata:
    """All of a built-in encoder task's facts (after mteb's TaskMetadata)."""

    name: str
    kind: str  # retrieval | classification | sts
    mteb_name: str
    samples_per_label: int = 8  # classification: MTEB's undersampling per label


TASKS: Registry[TaskMetadata] = Registry("task")
for _meta in (
    TaskMetadata("scifact", "retrieval", "SciFact"),
    TaskMetadata("banking77", "classification", "Banking77Classification"),
    TaskMetadata("tweet_sentiment_extraction", "classification", "TweetSentimentExtractionClassification", 32),
    TaskMetadata("stsb", "sts", "STSBenchmark"),
    TaskMetadata("sickr", "sts", "SICK-R"),
    *(TaskMetadata(name, "sts", name.upper()) for name in STS_YEARS),
):
    TASKS.register(_meta.name, _meta)
MTEB_NAMES = {meta.mteb_name.lower(): name for name, meta in TASKS.items()}


def _need(path: Path) -> Path:
    if not path.exists():
        raise LLMTruncError(f"missing data {path} (layout as in the data directory's README.md)")
    return path


def resolve_task(name: str, data_dir: str | Path | None = None, limits: Limits | None = None) -> Task:
    raw = name.strip()
    key = MTEB_NAMES.get(raw.lower(), raw.lower())
    if key in TASKS:
        root = find_data_dir(data_dir)
        meta = TASKS.get(key)
        kind = meta.kind
        if kind == "retrieval":
            return RetrievalTask(key, _need(root / key), limits=limits)
        if kind == "classification":
            return ClassificationTask(key, _need(root / key), limits=limits, samples_per_label=meta.samples_per_label)
        sts = root / "sts"
        stsb_train = read_stsb(_need(sts / "stsbenchmark" / "sts-train.csv"))
        if key == "stsb":
            return STSTask(key, read_stsb(_need(sts / "stsbenchmark" / "sts-test.csv")), stsb_train, limits=limits)
        if key == "sickr":
            sick = sts / "senteval" / "SICK"
            return STSTask(key, read_sick(_need(sick / "SICK_test_annotated.txt")), read_sick(_need(sick / "SICK_train.txt")), limits=limits)
        return STSTask(key, read_senteval_year(_need(sts / "senteval" / "STS" / STS_YEARS[key])), stsb_train, limits=limits)
    folder = Path(raw).expanduser()
    if folder.is_dir():
        return task_from_folder(folder, limits)
    raise LLMTruncError(
        f"unknown task {name!r}: use one of {', '.join(TASKS)} (or their MTEB names), or a folder in BEIR "
        "layout (retrieval) or with train.jsonl/test.jsonl (classification)"
    )


def task_from_folder(folder: Path, limits: Limits | None = None) -> Task:
    folder = folder.resolve()
    name = folder.name
    if is_beir_folder(folder):
        return RetrievalTask(name, folder, limits=limits)
    test = folder / "test.jsonl"
    if test.is_file():
        first = next((line for line in test.read_text(encoding="utf-8").splitlines() if line.strip()), "")
        try:
            row = json.loads(first) if first else {}
        except json.JSONDecodeError:
            row = {}
        if {"sentence1", "sentence2", "score"} <= set(row):
            train = folder / "train.jsonl"
            return STSTask(name, read_jsonl_pairs(test), read_jsonl_pairs(train) if train.is_file() else [], limits=limits)
    if is_classification_folder(folder):
        return ClassificationTask(name, folder, limits=limits)
    raise LLMTruncError(
        f"cannot tell the task kind of folder {folder}: expected corpus.jsonl+queries.jsonl+qrels/ (retrieval), "
        "train.jsonl+test.jsonl with text,label (classification) or test.jsonl with sentence1,sentence2,score (STS)"
    )
