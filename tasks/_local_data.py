"""Offline data loaders for the `local_*` lm-eval tasks in this folder.

Each task YAML names one of these functions with `custom_dataset: !function _local_data.<fn>` and
lists its files in `dataset_kwargs: {data_files: {split: path}}`; lm-eval calls the function (with
the task's metadata and `dataset_kwargs` as keyword arguments) instead of `datasets.load_dataset`. Every loader reads the shared benchmark data in place, through
`llmtrunc.data.data_file` (honours $LLMTRUNC_DATA_DIR, defaults to ../shared/data beside the
repository), and returns a `datasets.DatasetDict` with the split names the standard task uses.

Splits the shared data does not hold (ARC/BoolQ/SQuAD train, WikiText train/validation) are
returned empty, with the same columns, so the task configs stay identical to the standard ones;
zero-shot evaluation (the default of those tasks) is unaffected, few-shot needs the missing split
and fails (see tasks/README.md and `llmtrunc.llm.tasks.check_num_fewshot`).

A missing data directory or file raises `llmtrunc.errors.LLMTruncError` with a one-line message.
"""

from __future__ import annotations

from functools import partial

import datasets
from lm_eval.tasks.squadv2.task import SQuAD2

from llmtrunc.data import data_file, read_jsonl
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.squad_v2 import METRICS as SQUAD_V2_METRICS
from llmtrunc.llm.squad_v2 import squad_v2_aggregate

def _read_jsonl(relative: str) -> list[dict]:
    path = data_file(relative)
    rows = read_jsonl(path)
    if not rows:
        raise LLMTruncError(f"data file {path} is empty")
    return rows


def _splits(present: dict[str, list[dict]], absent: tuple[str, ...] = ()) -> datasets.DatasetDict:
    """A DatasetDict of the given rows, plus empty splits (same columns) for `absent` names."""
    out = {name: datasets.Dataset.from_list(rows) for name, rows in present.items()}
    features = next(iter(out.values())).features
    for name in absent:
        out[name] = datasets.Dataset.from_dict({key: [] for key in features}, features=features)
    return datasets.DatasetDict(out)


# --------------------------------------------------------------------------- JSON Lines splits


def load_local(data_files: dict[str, str], empty_splits: list[str] = (), **_) -> datasets.DatasetDict:
    """The splits named in the task's `dataset_kwargs.data_files` (paths relative to the data
    directory, JSON Lines in the Hub dataset's schema), plus `empty_splits` the shared data lacks.

    The same `data_files` are what llmtrunc fingerprints into the cell key (llmtrunc.llm.tasks),
    so an edited data file can never be served from an old result."""
    return _splits({split: _read_jsonl(path) for split, path in data_files.items()}, absent=tuple(empty_splits))


# --------------------------------------------------------------------------- wikitext


def _is_heading(line: str) -> bool:
    text = line.strip()
    return len(text) > 1 and text.startswith("=") and text.endswith("=")


def restore_blank_lines(rows: list[str]) -> list[str]:
    """The raw file's lines from its non-empty rows.

    WikiText raw files separate blocks with blank lines that hold one space (" "): one before
    and one after every heading (" = Title = ", " = = Section = = ", ...), and none between the
    paragraphs of a section. The shared file dropped them; they are put back by that rule.
    """
    lines: list[str] = []
    for row in rows:
        if _is_heading(row):
            lines += [" ", row, " "]
        else:
            lines.append(row)
    return lines


def wikitext_pages(lines: list[str]) -> list[str]:
    """Split raw lines into whole articles exactly as the EleutherAI/wikitext_document_level
    builder does: a new page starts at every top-level " = Title = " line, pages that are only
    whitespace are skipped, the text after the last title is always a page."""
    pages: list[str] = []
    current: list[str] = []
    for line in lines:
        flattened = line.replace("= = =", "===").replace("= =", "==").strip()
        if flattened.startswith("= ") and flattened.strip().endswith(" ="):
            page = "\n".join(current)
            if page.strip():
                pages.append(page)
            current = []
        current.append(line)
    pages.append("\n".join(current))
    return pages


def load_wikitext(data_files: dict[str, str], empty_splits: list[str] = (), **_) -> datasets.DatasetDict:
    """EleutherAI/wikitext_document_level `wikitext-2-raw-v1`: test pages rebuilt from the shared
    wiki.test.raw (one row per line, empty rows dropped); train/validation are empty."""
    path = data_file(data_files["test"])
    text = path.read_text(encoding="utf-8")
    rows = [line for line in text.split("\n") if line.strip()]
    if not rows:
        raise LLMTruncError(f"data file {path} is empty")
    # The builder reads f.read().split("\n"): a file ending in "\n" gives a final "" line.
    lines = restore_blank_lines(rows) + ([""] if text.endswith("\n") else [])
    pages = [{"page": page} for page in wikitext_pages(lines)]
    return _splits({"test": pages}, absent=tuple(empty_splits))


# --------------------------------------------------------------------------- squad v2 task class


class LocalSQuAD2(SQuAD2):
    """lm-eval's SQuAD2 task on the shared validation split, aggregated offline.

    Prompts, requests, per-document results and metric names are inherited unchanged; only the
    data source (`download`), the aggregation (pure-Python official SQuAD 2.0 scoring in
    `llmtrunc.llm.squad_v2` instead of `evaluate.load("squad_v2")` from the Hub) and the answer's
    generation kwargs are replaced: SQuAD2 hard-codes `until=["\\n"]` in its request, so lm-eval's
    `gen_kwargs` (`--gen-kwargs max_gen_toks=16`) never reached the model; here the config holds
    that same `until` and `gen_kwargs` update it, as for a YAML task.
    """

    def __init__(self, config: dict | None = None):
        # SQuAD2 replaces the YAML's config by its own: keep the YAML's data files before it does
        self.local_kwargs = dict((config or {}).get("dataset_kwargs") or {})
        super().__init__(config)
        self.config.generation_kwargs = {"until": ["\n"]}

    def construct_requests(self, doc, ctx, **kwargs):
        generation, loglikelihood = super().construct_requests(doc, ctx, **kwargs)
        generation.arguments = (ctx, dict(self.config.generation_kwargs))
        return [generation, loglikelihood]

    def download(self, *args, **kwargs) -> None:
        self.dataset = load_local(**self.local_kwargs)

    def aggregation(self):
        return {key: partial(squad_v2_aggregate, key) for key in SQUAD_V2_METRICS}
