import json
import math

import numpy as np
import pytest

from llmtrunc.encoder.models import similarity_matrix
from llmtrunc.encoder.tasks.classification import ClassificationTask, undersample_experiments
from llmtrunc.encoder.tasks.retrieval import RetrievalTask, ir_metrics
from llmtrunc.encoder.tasks.sts import STSTask


def test_ir_metrics_match_hand_computed_values():
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d2": 1}}
    run = {"q1": {"d1": 0.9, "d2": 0.8, "d3": 0.7}, "q2": {"d1": 0.5, "d2": 0.1}}
    m = ir_metrics(qrels, run)
    ndcg_q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_q2 = 1 / math.log2(3)
    assert m["ndcg_at_10"] == pytest.approx((ndcg_q1 + ndcg_q2) / 2, abs=1e-4)
    assert m["recall_at_100"] == pytest.approx(1.0)
    assert m["map_at_10"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2, abs=1e-4)


def _beir(tmp_path):
    folder = tmp_path / "toy"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"doc {i}"}) + "\n" for i in range(4)))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(2)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td3\t1\n")
    return folder


def test_retrieval_scores_and_rank_spearman(tmp_path):
    task = RetrievalTask("toy", _beir(tmp_path))
    corpus = np.eye(4, dtype=np.float32)
    queries = np.array([[1, 0.5, 0.2, 0], [0, 0, 0.3, 1]], dtype=np.float32)  # both rank their relevant doc first
    full = {"queries": queries, "corpus": corpus}
    m = task.score(full, "dot", full)
    assert m["ndcg_at_10"] == pytest.approx(1.0) and m["map_at_10"] == pytest.approx(1.0)
    assert m["rank_spearman"] == pytest.approx(1.0)
    reversed_scores = {"queries": -queries, "corpus": corpus}
    m2 = task.score(reversed_scores, "dot", full)
    assert m2["rank_spearman"] == pytest.approx(-1.0)
    # relevant doc of q0 last among 4 -> ndcg 1/log2(5); q1 likewise
    assert m2["ndcg_at_10"] == pytest.approx(1 / math.log2(5), abs=1e-4)


def test_cosine_renormalises_dot_does_not():
    a = np.array([[3.0, 4.0]])
    b = np.array([[6.0, 8.0]])
    assert similarity_matrix(a, b, "cosine")[0, 0] == pytest.approx(1.0)
    assert similarity_matrix(a, b, "dot")[0, 0] == pytest.approx(50.0)


def test_undersampling_is_mtebs():
    labels = [i % 3 for i in range(40)]
    experiments = undersample_experiments(labels, 4, 3, seed=42)
    idxs = list(range(40))
    for experiment in experiments:  # MTEB: RandomState(seed) reshuffles the same list every experiment
        np.random.RandomState(42).shuffle(idxs)
        counts, expected = {}, []
        for i in idxs:
            if counts.get(labels[i], 0) < 4:
                expected.append(i)
                counts[labels[i]] = counts.get(labels[i], 0) + 1
        assert experiment == expected
    assert experiments[0] != experiments[1]


def test_undersampling_matches_installed_mteb():
    mteb = pytest.importorskip("mteb")
    datasets = pytest.importorskip("datasets")
    labels = [i % 5 for i in range(60)]
    task = mteb.get_task("Banking77Classification")
    ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(60)], "label": labels})
    idxs, theirs = None, []
    for n in range(3):
        _, idxs, sampled = task._undersample_data(ds, n, idxs)
        theirs.append(list(sampled))
    assert undersample_experiments(labels, task.samples_per_label, 3, seed=task.seed) == theirs


def test_classification_accuracy_hand_computed(tmp_path):
    folder = tmp_path / "cls"
    folder.mkdir()
    train = [{"text": f"t{i}", "label": "pos" if i % 2 else "neg"} for i in range(20)]
    test = [{"text": f"s{i}", "label": lab} for i, lab in enumerate(["pos", "neg", "pos", "neg"])]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    task = ClassificationTask("cls", folder, samples_per_label=4, n_experiments=3)
    assert len(task.train_texts) <= 20 and all(len(p) == 8 for p in task.experiment_positions)
    # class "pos" (index 1) at +x, "neg" at -x; the last test row is placed on the wrong side
    train_emb = np.array([[1.0, 0.1] if y == 1 else [-1.0, 0.1] for y in task.train_y], dtype=np.float32)
    test_emb = np.array([[1.0, 0], [-1.0, 0], [1.0, 0], [1.0, 0]], dtype=np.float32)
    m = task.score({"train": train_emb, "test": test_emb}, "cosine", {})
    assert m["accuracy"] == pytest.approx(0.75)


def test_sts_spearman_hand_computed():
    pairs = [("a", "b", 5.0), ("a", "c", 1.0), ("a", "d", 3.0)]
    task = STSTask("toy", pairs, [])
    vectors = {"a": [1, 0], "b": [2, 0], "c": [0, 1], "d": [1, 1]}  # cosines 1, 0, 0.707
    emb = np.array([vectors[s] for s in task.sentences], dtype=np.float32)
    assert task.score({"sentences": emb}, "dot", {})["cosine_spearman"] == pytest.approx(1.0)
    task_rev = STSTask("toy", [(a, b, -g) for a, b, g in pairs], [])
    assert task_rev.score({"sentences": emb}, "dot", {})["cosine_spearman"] == pytest.approx(-1.0)
