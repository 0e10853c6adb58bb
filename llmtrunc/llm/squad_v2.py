"""The SQuAD 2.0 metric, computed offline.

lm-eval's `squadv2` task aggregates with `evaluate.load("squad_v2")`, which fetches the metric
script from the Hugging Face Hub at run time; this machine cannot reach the Hub. This module
computes the same numbers in pure Python, following the official SQuAD 2.0 evaluation script
(evaluate-v2.0.py) as wrapped by the `evaluate` squad_v2 metric:

* answers are normalised (lower-cased, punctuation removed, articles a/an/the removed,
  whitespace collapsed) before comparison;
* `exact` is 1 when a normalised gold answer equals the normalised prediction, `f1` the best
  token-overlap F1 over the gold answers;
* a question whose gold answer list is empty (or holds only answers that normalise to "") is
  unanswerable: its only gold answer is "", so the empty prediction scores 1 and any other 0;
* a prediction whose no-answer probability exceeds `no_answer_threshold` (1.0 by default, so
  never for probabilities) counts as "no answer" in exact/f1/HasAns_*/NoAns_*;
* `best_exact` / `best_f1` sweep the no-answer threshold over the sorted no-answer
  probabilities and report the best score reachable (the official `find_best_thresh`);
* every score is a percentage (0-100). `HasAns_*` / `NoAns_*` are absent when the predictions
  hold no answerable / unanswerable question, as in the official script.

Like the `evaluate` metric, which stores `no_answer_probability` as float32, probabilities are
rounded to float32 before the threshold search, so ties (and hence `best_*`) come out the same.
"""

from __future__ import annotations

import re
import string
import struct
from collections import Counter
from typing import Iterable, Mapping

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)

#: the keys lm-eval's squadv2 task reports, in its order
METRICS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, replace articles by a space, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def compute_exact(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def compute_f1(gold: str, prediction: str) -> float:
    """Token-overlap F1; when either side is empty, 1 if both are, else 0."""
    gold_tokens, pred_tokens = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    same = sum((Counter(gold_tokens) & Counter(pred_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", float(value)))[0]


def _gold_texts(answers) -> list[str]:
    """The answer texts of a reference: {'text': [...], ...} (HF layout) or a plain list."""
    if isinstance(answers, Mapping):
        return list(answers.get("text", []))
    return [a["text"] if isinstance(a, Mapping) else a for a in answers]


def _best_threshold(predictions: Mapping[str, str], scores: Mapping[str, float],
                    na_probs: Mapping[str, float], has_answer: Mapping[str, bool]) -> tuple[float, float]:
    """Official find_best_thresh: start from "answer nothing" (all NoAns correct), then admit
    predictions in increasing no-answer probability and keep the best running score."""
    current = best = sum(1 for v in has_answer.values() if not v)
    best_threshold = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_threshold = current, na_probs[qid]
    return 100.0 * best / len(scores), best_threshold


def squad_v2_scores(predictions: Iterable[Mapping], references: Iterable[Mapping],
                    no_answer_threshold: float = 1.0) -> dict[str, float]:
    """The `evaluate` squad_v2 metric's `compute(predictions=..., references=...)`.

    predictions: [{"id", "prediction_text", "no_answer_probability"}]
    references:  [{"id", "answers": {"text": [...], "answer_start": [...]}}]
    Returns exact, f1, total, HasAns_*, NoAns_*, best_exact(_thresh), best_f1(_thresh).
    """
    predictions, references = list(predictions), list(references)
    na_probs = {p["id"]: _float32(p["no_answer_probability"]) for p in predictions}
    texts = {p["id"]: p["prediction_text"] for p in predictions}
    has_answer: dict[str, bool] = {}
    exact_raw: dict[str, float] = {}
    f1_raw: dict[str, float] = {}
    for ref in references:
        qid, answers = ref["id"], _gold_texts(ref["answers"])
        has_answer[qid] = bool(answers)
        gold = [a for a in answers if normalize_answer(a)] or [""]
        if qid not in texts:
            continue
        exact_raw[qid] = max(compute_exact(a, texts[qid]) for a in gold)
        f1_raw[qid] = max(compute_f1(a, texts[qid]) for a in gold)

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        return {q: float(not has_answer[q]) if na_probs[q] > no_answer_threshold else s for q, s in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)

    def summary(qids: list[str] | None) -> dict[str, float]:
        keys = qids if qids else list(exact)
        total = len(keys)
        return {"exact": 100.0 * sum(exact[k] for k in keys) / total,
                "f1": 100.0 * sum(f1[k] for k in keys) / total, "total": total}

    out = summary(None)
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [q for q, v in has_answer.items() if v is wanted]
        if qids:
            out.update({f"{prefix}_{k}": v for k, v in summary(qids).items()})
    out["best_exact"], out["best_exact_thresh"] = _best_threshold(texts, exact_raw, na_probs, has_answer)
    out["best_f1"], out["best_f1_thresh"] = _best_threshold(texts, f1_raw, na_probs, has_answer)
    return out


def squad_v2_aggregate(key: str, items: Iterable[tuple[Mapping, Mapping]]) -> float:
    """lm-eval aggregation: items are (prediction, reference) pairs; a missing key gives 0
    (as lm-eval's `_squad_agg` does with `.get(key, 0)`)."""
    predictions, references = zip(*items)
    return squad_v2_scores(predictions, references).get(key, 0)
