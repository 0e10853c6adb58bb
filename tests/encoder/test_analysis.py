"""Encoder analyses: metrics against hand-computed / known values, vectorised attribution = naive loop, and
their records in the one vocabulary of removals (drop columns, the LLM attribution's selection columns) that the
report reads through the one baseline join and the one outlier table."""

import zlib

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from llmtrunc.encoder.analysis import attribution as attr
from llmtrunc.encoder.analysis import metrics as M
from llmtrunc.encoder.models import EncoderSpec
from llmtrunc.encoder.tasks.retrieval import RetrievalTask
from llmtrunc.encoder.tasks.sts import STSTask
from llmtrunc.profile import Profile
from llmtrunc.selection import ranked_selection, split_sets
from llmtrunc.spec import Mask


def test_uniformity_and_alignment_by_hand():
    # two orthogonal unit vectors: ||zi - zj||^2 = 2, so log exp(-2 * 2) = -4
    assert M.uniformity(np.array([[3.0, 0.0], [0.0, 5.0]])) == pytest.approx(-4.0)
    # three points: e1, -e1, e2: squared distances 4, 2, 2 -> log mean(exp(-8), exp(-4), exp(-4))
    x = np.array([[1.0, 0], [-1.0, 0], [0, 2.0]])
    assert M.uniformity(x) == pytest.approx(np.log((np.exp(-8) + 2 * np.exp(-4)) / 3))
    assert M.alignment(np.array([[1.0, 0], [2.0, 0]]), np.array([[0, 1.0], [3.0, 0]])) == pytest.approx(1.0)  # (2 + 0) / 2


def test_isoscore_known_values_and_package():
    rng = np.random.default_rng(0)
    gauss = rng.standard_normal((4000, 20))
    line = np.outer(rng.standard_normal(4000), rng.standard_normal(20))
    assert M.isoscore(gauss) > 0.97
    assert M.isoscore(line) < 1e-6
    for points in (gauss, line, rng.standard_normal((300, 16)) * np.linspace(0.1, 3, 16)):
        assert M.isoscore(points) == pytest.approx(M.isoscore_package(points), abs=1e-6)
    assert M.isoscore_package(gauss) > 0.97 and M.isoscore_package(line) < 1e-6


def test_corr_mean_and_outliers_by_hand():
    x = np.array([[1.0, 1], [1, -1], [-1, 1], [-1, -1]])  # uncorrelated columns
    assert M.corr_mean(x) == pytest.approx(0.0)
    y = np.column_stack([x[:, 0], 2 * x[:, 0], -x[:, 0] + 3])  # all |r| = 1
    assert M.corr_mean(y) == pytest.approx(1.0)
    z = np.column_stack([x, x[:, 0]])  # |r| pairs: (0,1)=0, (0,2)=1, (1,2)=0 -> 1/3
    assert M.corr_mean(z) == pytest.approx(1 / 3)
    rows = np.zeros((5, 50))
    rows[:, 7] = 10.0
    rows[:, 3] = -0.01
    assert Profile.of(rows, {}).outliers == (7,)


def _synthetic_retrieval(seed=0, n_q=30, n_d=250, d=24):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n_q, d)).astype(np.float32)
    x = rng.standard_normal((n_d, d)).astype(np.float32)
    x[:, 3] *= 4  # a dominant dimension
    task = RetrievalTask.__new__(RetrievalTask)
    task.query_ids = [f"q{i}" for i in range(n_q)]
    task.doc_ids = [f"d{i:03d}" for i in range(n_d)]
    task.qrels = {}
    for i, qid in enumerate(task.query_ids):
        near = np.argsort(-(q[i] @ x.T))[rng.integers(0, 30, 3)]
        task.qrels[qid] = {task.doc_ids[m]: int(rng.integers(1, 3)) for m in near}  # graded gains 1, 2
    task.qrels["q_missing"] = {"d999": 1}  # a judged doc outside the corpus still counts in the ideal DCG
    return task, q, x


def test_vectorised_attribution_equals_naive_loop_synthetic():
    task, q, x = _synthetic_retrieval()
    a = attr.RetrievalAttribution(q, x, task.query_ids, task.doc_ids, task.qrels)
    base, scores = a.run(batch=5, query_chunk=7)
    assert base == pytest.approx(attr.naive_retrieval_ndcg(task, q, x), abs=1e-12)
    naive = [attr.naive_retrieval_ndcg(task, q, x, [j]) for j in range(q.shape[1])]
    np.testing.assert_allclose(scores, naive, atol=1e-12)
    assert a.n_candidates.mean() < x.shape[0]  # the bound prunes (exactness is checked above)


def test_vectorised_attribution_equals_naive_loop_minilm(minilm, data_dir, tmp_path):
    from llmtrunc.encoder.cache import EmbeddingCache
    from llmtrunc.encoder.evaluate import encode_sets
    from llmtrunc.encoder.tasks import Limits, resolve_task

    task = resolve_task("scifact", data_dir, Limits(limit=12, max_corpus=80))
    e = encode_sets(minilm, task, EmbeddingCache(tmp_path / "cache"), False)
    base, scores = attr.RetrievalAttribution(e["queries"], e["corpus"], task.query_ids, task.doc_ids, task.qrels).run()
    assert base == pytest.approx(task.score(e, "cosine", e)["ndcg_at_10"], abs=1e-12)
    dims = list(range(0, 384, 7))  # the naive loop on a subset of the dims
    np.testing.assert_allclose(scores[dims], [attr.naive_retrieval_ndcg(task, e["queries"], e["corpus"], [j]) for j in dims], atol=1e-9)


def test_sts_attribution_equals_naive():
    rng = np.random.default_rng(1)
    pairs = [(f"s{i}", f"t{i}", float(rng.uniform(0, 5))) for i in range(60)]
    task = STSTask("toy", pairs, [])
    emb = rng.standard_normal((len(task.sentences), 12))
    base, scores = attr.sts_attribution(emb, task.left, task.right, task.gold)
    assert base == pytest.approx(task.score({"sentences": emb}, "cosine", None)["cosine_spearman"])
    for j in range(12):
        dropped = Mask(12, (j,)).remove(emb)
        assert scores[j] == pytest.approx(task.score({"sentences": dropped}, "cosine", None)["cosine_spearman"], abs=1e-10)


def test_selection_helpers():
    delta = np.array([0.3, -0.1, 0.0, 0.2, -0.5])
    sets = split_sets(delta)
    assert sets["degrading"].tolist() == [0, 3] and sets["improving"].tolist() == [1, 4] and sets["neutral"].tolist() == [2]
    assert ranked_selection(delta, "degrading", 2) == [0, 3]
    assert ranked_selection(delta, "improving", 3) == [1, 2, 4]
    tied = np.array([0.0, 0.1, 0.0, 0.0, -0.1])  # equal deltas ordered by the tie-break, the same way
    assert ranked_selection(tied, "degrading", 2, tiebreak=np.array([1.0, 0.0, 3.0, 2.0, 0.0])) == [1, 2]
    assert ranked_selection(tied, "improving", 2, tiebreak=np.array([1.0, 0.0, 3.0, 2.0, 0.0])) == [0, 4]
    base, scores = attr.naive_attribution(lambda d: float(sum(d)), 4)
    assert base == 0 and scores.tolist() == [0, 1, 2, 3]


DIM = 24


class HashEncoder:
    """A stand-in encoder: each text's vector drawn from its hash, dimension 5 far off on every text (an outlier)."""

    spec = EncoderSpec("hash", "test/hash-encoder")
    model_id, revision = "test/hash-encoder", "r1"

    def resolved_revision(self) -> str:
        return self.revision

    def embed(self, texts, prompt) -> np.ndarray:
        rows = np.array([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM) for t in texts])
        rows[:, 5] += 8.0
        return rows.astype(np.float32)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """Every analysis of a small STS task on the stand-in encoder, through the runner into a store: the records."""
    from llmtrunc.encoder.analysis.run import AnalysisCompute, AnalyzeConfig, analysis_cells
    from llmtrunc.encoder.cache import EmbeddingCache
    from llmtrunc.runner import Runner
    from llmtrunc.store import ResultsStore

    rng = np.random.default_rng(3)
    pairs = [(f"left {i}", f"right {i}", float(rng.uniform(0, 5))) for i in range(80)]
    task = STSTask("toy-sts", pairs, [(f"fit {i}", f"fit pair {i}", 1.0) for i in range(60)])
    encoder = HashEncoder()
    config = AnalyzeConfig(tasks=["toy-sts"], ks=[25, 50], seeds=[0, 1], max_rows=500)
    store = ResultsStore(tmp_path_factory.mktemp("analyses"))
    Runner(store, Console(quiet=True)).run(analysis_cells(encoder, [task], config),
                                           AnalysisCompute(encoder, EmbeddingCache(enabled=False), config, log=lambda _: None))
    return store.records()


def test_analysis_records_name_their_removals_with_drop_columns(analysed):
    df = analysed
    by = lambda analysis, drop: df[(df["analysis"] == analysis) & (df["drop"] == drop)]  # noqa: E731
    count, removed = by("outliers", "outliers").sort_values("metric", ascending=False).to_dict("records")
    assert count["metric"] == "n_outliers" and count["value"] == 1 and not count["main"]
    assert removed["metric"] == "cosine_spearman" and removed["main"] and removed["drop_kind"] == "outliers"
    assert count["dropped_indices"] == removed["dropped_indices"] == [5] and removed["n_dropped"] == 1
    for seed in (0, 1):  # the control: as many random dims, the draw of random:outliers@SEED
        (control,) = by("outliers", f"random:outliers@{seed}").to_dict("records")
        assert control["drop_kind"] == control["drop_family"] == "random:outliers" and control["seed"] == seed
        assert control["dropped_indices"] == list(Mask.random(DIM, 1, seed).dropped)
    randoms = by("anisotropy", "random:50%@1")
    assert {tuple(d) for d in randoms["dropped_indices"]} == {Mask.random(DIM, DIM // 2, 1).dropped}
    assert randoms[randoms["main"].astype(bool)]["metric"].tolist() == ["cosine_spearman"]  # geometry is not main
    (degrading,) = by("attribution-selection", "degrading:25%").to_dict("records")
    assert degrading["drop_kind"] == "degrading" and degrading["drop_ratio"] == 0.25 and degrading["n_dropped"] == 6
    assert degrading["condition"] == "degrading" and degrading["k_percent"] == 25  # the LLM attribution's columns
    (random,) = by("attribution-selection", "random:50%@0").to_dict("records")
    assert random["dropped_indices"] == list(Mask.random(DIM, DIM // 2, 0).dropped) and random["condition"] == "random"
    single = by("attribution", "single:3")
    assert single["metric"].tolist() == ["delta_cosine_spearman"] and not single["main"].any()
    assert by("pca", "random:25%@1")["dropped_indices"].iloc[0] == list(Mask.random(DIM, 6, 1).dropped)
    baselines = df[(df["drop_kind"] == "none") & df["main"].astype(bool)]
    assert set(baselines["dropped_indices"].map(tuple)) == {()} and set(baselines["analysis"]) == {
        "outliers", "anisotropy", "attribution-selection", "pca"}  # each analysis cell holds its own baseline
    # one vocabulary: the analyses' own condition / K only where the LLM attribution keeps them
    assert set(df[df["condition"].notna()]["analysis"]) == {"attribution", "attribution-selection"}
    assert set(df[df["k_percent"].notna()]["drop_kind"]) == {"degrading", "improving", "random"}
    assert "retention" not in df
    assert set(df[df["main"].astype(bool)]["metric"]) == {"cosine_spearman"}


def test_report_reads_the_one_outlier_table_and_baseline_join(analysed, tmp_path):
    from llmtrunc.encoder.analysis_report import anisotropy_table, build_report, curves
    from llmtrunc.outliers import COLUMNS, outlier_table
    from llmtrunc.retention import with_baseline

    build_report(analysed, tmp_path)
    outliers = analysed[analysed["analysis"] == "outliers"]
    written = pd.read_csv(tmp_path / "outliers.csv")
    assert list(written.columns) == COLUMNS and len(written) == 1
    expected = outlier_table(outliers)
    for column in ("n_outliers", "baseline", "outliers_retention", "random_retention", "random_retention_std"):
        assert written[column].iloc[0] == pytest.approx(expected[column].iloc[0], rel=1e-12)
    pca = analysed[analysed["analysis"] == "pca"]
    joined = with_baseline(pca[pca["main"].astype(bool)])
    curve = curves(analysed, "pca").set_index(["condition", "k_percent"])
    for (kind, k), row in curve.iterrows():
        rows = joined[(joined["drop_kind"] == kind) & (joined["drop_ratio"] == k / 100)]
        assert row["retention"] == pytest.approx(rows["retention"].mean(), rel=1e-12) and row["seeds"] == len(rows)
        assert row["baseline"] == rows["baseline"].iloc[0]
    aniso = analysed[analysed["analysis"] == "anisotropy"]
    random_half = with_baseline(aniso[aniso["main"].astype(bool)])
    assert anisotropy_table(analysed)["retention"].iloc[1] == round(random_half["retention"].mean(), 4)


@pytest.mark.slow
def test_analyze_end_to_end_and_report(minilm, data_dir, tmp_path):
    from rich.console import Console

    from llmtrunc.encoder.analysis.run import AnalysisCompute, AnalyzeConfig, analysis_cells
    from llmtrunc.encoder.analysis_report import build_report
    from llmtrunc.encoder.tasks import Limits
    from llmtrunc.runner import Runner
    from llmtrunc.store import ResultsStore

    config = AnalyzeConfig(tasks=["scifact", "banking77"], ks=[50], seeds=[0, 1], data_dir=str(data_dir), cache_dir=str(tmp_path / "c"),
                           limits=Limits(limit=40, max_corpus=60, max_train=160), attr_experiments=1, encoder=minilm)
    encoder, tasks, cache = config.load()
    store = ResultsStore(tmp_path / "r")
    runner = Runner(store, Console(quiet=True))
    cells = analysis_cells(encoder, tasks, config)
    runner.run(cells, AnalysisCompute(encoder, cache, config, log=lambda _: None))
    assert runner.computed == 8 and runner.reused == 0
    df = store.records()
    assert set(df["analysis"]) == {"outliers", "anisotropy", "attribution", "attribution-selection", "pca"}
    iso = df[(df["metric"].isin(["isoscore", "isoscore_package"])) & (df["drop_kind"] == "none")]
    assert iso.groupby("task")["value"].agg(lambda v: v.max() - v.min()).max() < 1e-6
    deltas = df[(df["task"] == "scifact") & df["metric"].str.startswith("delta_")]
    assert len(deltas) == 384 and deltas["revision"].iloc[0].startswith("local-") and deltas["git_hash"].iloc[0]
    randoms = df[(df["analysis"] == "pca") & (df["drop_kind"] == "random")]
    assert set(randoms["drop_kind"]) == {"random"} and set(randoms["seed"]) == {0, 1}  # common drop columns
    runner.run(cells, AnalysisCompute(encoder, cache, config, log=lambda _: None))  # every cell reused
    assert runner.computed == 8 and runner.reused == 8
    written = build_report(df, tmp_path / "rep")
    names = {p.name for p in written}
    assert {"README.md", "attribution.png", "pca_vs_random.csv", "anisotropy.csv", "outliers.png"} <= names
