import numpy as np
import pytest

from llmtrunc.encoder.mteb_wrapper import TruncatedEncoder, _texts
from llmtrunc.encoder.tasks import Limits, resolve_task


def test_texts_from_lists_and_mteb_batches():
    assert _texts(["a", "b"]) == ["a", "b"]
    assert _texts([{"text": ["a", "b"]}, {"text": ["c"]}]) == ["a", "b", "c"]


def test_wrapper_encodes_truncated(minilm):
    model = TruncatedEncoder("minilm", "last:50%")
    model.encoder = minilm
    out = model.encode(["a cat", "a dog", "stock prices"])
    np.testing.assert_allclose(out, minilm.embed(["a cat", "a dog", "stock prices"])[:, :192], rtol=1e-5, atol=1e-6)
    sims = np.asarray(model.similarity(out, out))
    assert sims.shape == (3, 3) and sims[0, 0] == pytest.approx(1.0, abs=1e-5)
    pca = TruncatedEncoder("minilm", "pca:50%", pca_fit_texts=[f"sentence number {i}" for i in range(20)])
    pca.encoder = minilm
    assert pca.encode(["x", "y"]).shape == (2, 192)


def test_mteb_evaluate_matches_own_sts_score(minilm, data_dir, tmp_path):
    mteb = pytest.importorskip("mteb")
    datasets = pytest.importorskip("datasets")
    task = resolve_task("stsb", data_dir, Limits(limit=30))
    mteb_task = mteb.get_task("STSBenchmark")  # metadata only; the data is given locally (no hub)
    rows = {"sentence1": [task.sentences[i] for i in task.left], "sentence2": [task.sentences[i] for i in task.right],
            "score": list(task.gold)}
    mteb_task.dataset = {"default": datasets.DatasetDict({"test": datasets.Dataset.from_dict(rows)})}
    mteb_task.data_loaded = True
    model = TruncatedEncoder("minilm", "last:50%")
    model.encoder = minilm
    result = mteb.evaluate(model, mteb_task, cache=mteb.ResultCache(tmp_path), show_progress_bar=False)
    theirs = result.task_results[0].scores["test"][0]["cosine_spearman"]
    emb = minilm.embed(task.sentences)[:, :192]
    ours = task.score({"sentences": emb}, "cosine", {})["cosine_spearman"]
    assert theirs == pytest.approx(ours, abs=1e-6)
