"""The offline SQuAD 2.0 metric against hand-computed cases (official evaluate-v2.0.py rules)."""

import math

import pytest

from llmtrunc.llm.squad_v2 import METRICS, compute_exact, compute_f1, normalize_answer, squad_v2_aggregate, squad_v2_scores


def pred(qid, text, p):
    return {"id": qid, "prediction_text": text, "no_answer_probability": p}


def ref(qid, *answers):
    return {"id": qid, "answers": {"text": list(answers), "answer_start": [0] * len(answers)}}


def test_normalize_answer():
    assert normalize_answer("The  Quick, brown-fox!") == "quick brownfox"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words
    assert normalize_answer(" ...the ") == ""


def test_exact_and_f1():
    assert compute_exact("Denver Broncos", "the denver broncos.") == 1
    assert compute_exact("Denver Broncos", "Broncos") == 0
    # gold [cat, sat], prediction [cat, sat, on, mat]: P = 1/2, R = 1 -> F1 = 2/3
    assert compute_f1("the cat sat", "cat sat on a mat") == pytest.approx(2 / 3)
    assert compute_f1("cat", "dog") == 0
    # either side empty: 1 when both are, else 0
    assert compute_f1("", "") == 1
    assert compute_f1("", "something") == 0
    assert compute_f1("the", "") == 1  # "the" normalises to nothing


# q1 answerable, right (p=0.1); q2 answerable, half right (p=0.8);
# q3 unanswerable but answered (p=0.9); q4 unanswerable, abstained (p=0.2)
PREDS = [
    pred("q1", "Denver Broncos", 0.1),
    pred("q2", "Broncos team", 0.8),
    pred("q3", "something", 0.9),
    pred("q4", "", 0.2),
]
REFS = [ref("q1", "Denver Broncos", "The Denver Broncos"), ref("q2", "Denver Broncos"), ref("q3"), ref("q4")]


def test_scores_hand_case():
    out = squad_v2_scores(PREDS, REFS)
    assert out["total"] == 4 and out["HasAns_total"] == 2 and out["NoAns_total"] == 2
    assert out["exact"] == pytest.approx(50.0)  # q1, q4
    assert out["f1"] == pytest.approx(62.5)  # (1 + 0.5 + 0 + 1) / 4
    assert out["HasAns_exact"] == pytest.approx(50.0)
    assert out["HasAns_f1"] == pytest.approx(75.0)
    assert out["NoAns_exact"] == pytest.approx(50.0)
    assert out["NoAns_f1"] == pytest.approx(50.0)


def test_best_threshold_search():
    # Start at 2 (both NoAns right when everything is withheld), admit by increasing p:
    # exact: q1 +1 -> 3 (best, t=0.1), q4 +0, q2 +0, q3 -1 -> best 3/4
    # f1:    q1 +1 -> 3 (t=0.1), q4 +0, q2 +0.5 -> 3.5 (best, t=0.8), q3 -1 -> best 3.5/4
    out = squad_v2_scores(PREDS, REFS)
    assert out["best_exact"] == pytest.approx(75.0)
    assert out["best_exact_thresh"] == pytest.approx(0.1, rel=1e-6)
    assert out["best_f1"] == pytest.approx(87.5)
    assert out["best_f1_thresh"] == pytest.approx(0.8, rel=1e-6)


def test_no_threshold_improvement_keeps_zero_threshold():
    out = squad_v2_scores([pred("a", "x", 0.3), pred("b", "", 0.6)], [ref("a", "y"), ref("b")])
    assert out["best_exact"] == pytest.approx(50.0)  # withholding everything: b right, a wrong
    assert out["best_exact_thresh"] == 0.0


def test_explicit_no_answer_threshold():
    # p > 0.5 counts as "no answer": q2 (answerable) -> 0, q3 (unanswerable) -> 1
    out = squad_v2_scores(PREDS, REFS, no_answer_threshold=0.5)
    assert out["exact"] == pytest.approx(75.0)
    assert out["f1"] == pytest.approx(75.0)


def test_empty_gold_list_means_empty_answer():
    out = squad_v2_scores([pred("a", "", 0.0), pred("b", "anything", 0.0)], [ref("a"), ref("b")])
    assert out["exact"] == 50.0 and out["f1"] == 50.0
    assert "HasAns_exact" not in out and out["NoAns_total"] == 2


def test_probabilities_are_float32_like_the_evaluate_metric():
    # In float64, b (0.5) sorts before a (0.5 + 1e-12): -1 then +1 never beats the start (1/2).
    # evaluate stores probabilities as float32, where both are 0.5: the stable sort keeps the
    # prediction order, a comes first, and the best score is 2/2.
    preds = [pred("a", "Paris", 0.5 + 1e-12), pred("b", "Lyon", 0.5)]
    out = squad_v2_scores(preds, [ref("a", "Paris"), ref("b")])
    assert out["best_exact"] == pytest.approx(100.0)


def test_aggregate_matches_lm_eval_contract():
    items = [(p, {"id": r["id"], "answers": r["answers"]}) for p, r in zip(PREDS, REFS)]
    assert squad_v2_aggregate("best_f1", items) == pytest.approx(87.5)
    answerable = items[:2]
    assert squad_v2_aggregate("NoAns_exact", answerable) == 0  # absent key -> 0, like lm-eval
    assert set(METRICS) == {"exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1"}
    assert all(math.isfinite(squad_v2_aggregate(k, items)) for k in METRICS)
