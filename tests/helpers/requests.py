"""Real lm-eval requests built from the shared benchmark data."""

from __future__ import annotations

import json

from lm_eval.api.instance import Instance

from llmtrunc.data import data_file


def arc_requests(n_docs: int = 4) -> list[Instance]:
    """Loglikelihood requests built from real ARC-Easy questions, one per answer choice."""
    lines = data_file("arc_easy/test.jsonl").read_text().splitlines()[:n_docs]
    requests = []
    for i, line in enumerate(map(json.loads, lines)):
        context = f"Question: {line['question']}\nAnswer:"
        for choice in line["choices"]["text"]:
            requests.append(Instance("loglikelihood", doc={}, arguments=(context, f" {choice}"), idx=i))
    return requests
