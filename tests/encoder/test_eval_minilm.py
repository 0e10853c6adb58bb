"""End to end with the real offline MiniLM on small subsets of the real data."""

import argparse
import json
import os
import shutil

import numpy as np
import pytest

from dataclasses import dataclass

from rich.console import Console

from llmtrunc.encoder.cache import CacheKey, EmbeddingCache
from llmtrunc.encoder.evaluate import EncoderCompute, EncoderRunConfig, encoder_cells
from llmtrunc.encoder.models import Encoder, EncoderSpec
from llmtrunc.encoder.tasks import Limits
from llmtrunc.errors import LLMTruncError
from llmtrunc.runner import Runner
from llmtrunc.spec import expand_grid, parse_drop, parse_k_list
from llmtrunc.store import ResultsStore

SMALL = Limits(limit=4, max_corpus=20, max_train=40)


@dataclass
class Outcome:
    records: list
    written_runs: int
    reused_runs: int
    encoded_texts: int
    cache_hits: int
    cache_misses: int


def _run(minilm, tmp_path, tasks, specs, results="results", cache="cache", limits=SMALL, data_dir=None):
    """What `llmtrunc encoder eval` does: cells -> the one runner -> the store; with its counters."""
    config = EncoderRunConfig(tasks=tasks, data_dir=data_dir, cache_dir=str(tmp_path / cache), limits=limits,
                              encoder=minilm)
    encoder, task_list, embedding_cache = config.load()
    before = encoder.n_encoded
    store = ResultsStore(tmp_path / results)
    runner = Runner(store, Console(quiet=True))
    run_ids = runner.run(encoder_cells(encoder, task_list, specs), EncoderCompute(encoder, embedding_cache, limits, log=lambda _: None))
    records = [r.to_json() for r in store.all_records(run_ids)]
    return Outcome(records, runner.computed, runner.reused, encoder.n_encoded - before, embedding_cache.hits,
                   embedding_cache.misses)


def _main(records):
    return {(r["task"], r["drop"]): r["value"] for r in records if r["main"]}


def test_grid_cache_hit_and_store_reuse(minilm, tmp_path, data_dir):
    specs = expand_grid(["last:50%", "random:50%", "pca:50%", "none"], None, [0, 1])
    tasks = ["scifact", "banking77", "stsb"]
    first = _run(minilm, tmp_path, tasks, specs, data_dir=data_dir)
    assert first.encoded_texts > 0 and first.cache_hits == 0 and first.written_runs == 3 * 5
    # a fresh results store with the same cache: nothing is encoded again, numbers are identical
    second = _run(minilm, tmp_path, tasks, specs, results="results2", data_dir=data_dir)
    assert second.encoded_texts == 0 and second.cache_misses == 0 and second.cache_hits == first.cache_misses
    assert _main(second.records) == pytest.approx(_main(first.records))
    # the same store: every cell is reused without loading any embedding
    third = _run(minilm, tmp_path, tasks, specs, data_dir=data_dir)
    assert third.reused_runs == 15 and third.written_runs == 0 and third.cache_hits == 0
    records = ResultsStore(tmp_path / "results").records()
    last = records[(records["drop"] == "last:50%") & (records["task"] == "scifact") & records["main"]].iloc[0]
    assert list(last["dropped_indices"]) == list(range(192, 384)) and last["keep_dims"] == 192 and last["dim"] == 384
    assert last["model_id"] == "sentence-transformers/all-MiniLM-L6-v2" and last["revision"].startswith("local-")
    assert "sentence-transformers" in last["versions"] and last["metric"] == "ndcg_at_10"
    seeds = records[(records["drop_family"] == "random:50%") & (records["task"] == "stsb") & records["main"]]
    assert sorted(seeds["seed"]) == [0, 1]
    full = _main(first.records)
    assert full[("scifact", "none")] > 0.5 and full[("stsb", "none")] > 0.5


def _write_beir(folder, data_dir, n_queries=3, n_docs=12):
    """A small BEIR folder cut from the real SciFact (relevant docs first)."""
    src = data_dir / "scifact"
    (folder / "qrels").mkdir(parents=True)
    qrels = [l.split("\t") for l in (src / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    qrels = [q for q in qrels if q[0] in dict.fromkeys(r[0] for r in qrels[:n_queries])][:n_queries]
    wanted = {q[1] for q in qrels}
    docs = [json.loads(l) for l in (src / "corpus.jsonl").read_text().splitlines()]
    chosen = [d for d in docs if d["_id"] in wanted] + [d for d in docs if d["_id"] not in wanted][: n_docs - len(wanted)]
    queries = [json.loads(l) for l in (src / "queries.jsonl").read_text().splitlines()]
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in chosen))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries if q["_id"] in {r[0] for r in qrels}))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(q) + "\n" for q in qrels))
    return chosen


def test_data_change_invalidates_cache_and_cells(minilm, tmp_path, data_dir):
    folder = tmp_path / "mybeir"
    docs = _write_beir(folder, data_dir)
    specs = [parse_drop("none"), parse_drop("last:50%")]
    first = _run(minilm, tmp_path, [str(folder)], specs, limits=Limits())
    assert first.encoded_texts == len(docs) + 3 and first.records[0]["task_kind"] == "retrieval"
    docs[-1]["text"] += " (edited)"
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    second = _run(minilm, tmp_path, [str(folder)], specs, limits=Limits())
    assert second.written_runs == 2 and second.reused_runs == 0  # new data, new cells
    assert second.encoded_texts == len(docs)  # corpus re-encoded, queries from the cache
    assert second.cache_hits == 1 and second.cache_misses == 1


def test_corrupt_or_partial_cache_is_rebuilt(minilm, tmp_path, data_dir):
    specs = [parse_drop("first:50%")]
    first = _run(minilm, tmp_path, ["stsb"], specs, data_dir=data_dir)
    npy = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(npy) == 1
    raw = npy[0].read_bytes()
    npy[0].write_bytes(raw[: len(raw) // 2])  # partial write
    second = _run(minilm, tmp_path, ["stsb"], specs, results="r2", data_dir=data_dir)
    assert second.cache_misses == 1 and second.encoded_texts == first.encoded_texts
    npy[0].write_bytes(npy[0].read_bytes()[:-4] + b"\x00\x00\x80\x7f")  # same size, flipped bytes
    assert second.records[0]["value"] == pytest.approx(first.records[0]["value"])
    third = _run(minilm, tmp_path, ["stsb"], specs, results="r3", data_dir=data_dir)
    assert third.cache_misses == 1
    npy[0].with_suffix(".json").unlink()  # sidecar missing: a partial entry
    fourth = _run(minilm, tmp_path, ["stsb"], specs, results="r4", data_dir=data_dir)
    assert fourth.cache_misses == 1 and fourth.encoded_texts == first.encoded_texts


def test_model_change_invalidates_cache(minilm, tmp_path):
    src = minilm.source
    copy = tmp_path / "model"
    for path in [p for p in __import__("pathlib").Path(src).rglob("*") if p.is_file()]:
        target = copy / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name == "config_sentence_transformers.json":
            shutil.copy(path, target)
        else:
            os.symlink(path, target)
    spec = EncoderSpec("copy", "sentence-transformers/all-MiniLM-L6-v2", local_path=lambda: str(copy))
    before = Encoder(spec).revision
    config = copy / "config_sentence_transformers.json"
    config.write_text(config.read_text() + "\n")
    after = Encoder(spec).revision
    assert before != after
    cache = EmbeddingCache(tmp_path / "c")
    key = CacheKey(spec.hub_id, before, "d", "test", "query", "", "abc", 1)
    cache.save(key, np.ones((1, 4), dtype=np.float32))
    assert cache.load(key) is not None
    for changed in (dict(revision=after), dict(model_id="other/model"), dict(prompt="query: "), dict(texts_sha256="abd")):
        assert cache.load(CacheKey(**{**key.__dict__, **changed})) is None


def test_cli_folder_classification_and_errors(tmp_path, data_dir, capsys):
    from llmtrunc.commands import encoder as command

    folder = tmp_path / "mycls"
    folder.mkdir()
    rows = [json.loads(l) for l in (data_dir / "banking77" / "test.jsonl").read_text().splitlines()]
    zeros, ones = [r for r in rows if r["label"] == 0], [r for r in rows if r["label"] == 1]
    rows = [r for pair in zip(zeros, ones) for r in pair]
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": r["text"], "label": r["label_text"]}) + "\n" for r in rows[:30]))
    (folder / "test.jsonl").write_text("".join(json.dumps({"text": r["text"], "label": r["label_text"]}) + "\n" for r in rows[30:40]))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    base = ["encoder", "eval", "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")]
    args = parser.parse_args(base + ["--tasks", str(folder), "--drop", "last,random", "--k", "0,50", "--seeds", "0,1", "--json"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    assert {l["drop"] for l in lines} == {"none", "last:0%", "last:50%", "random:0%@0", "random:0%@1", "random:50%@0",
                                          "random:50%@1"}
    assert "retention" in out and "random:50%" in out  # the score + retention table, as in the LLM track
    assert all(l["metric"] == "accuracy" and 0 <= l["value"] <= 1 for l in lines)
    for bad in (["--model", "no-such-model"], ["--tasks", "nfcorpus"], ["--drop", "middle:50%"], ["--k", "0,10,...,95"],
                ["--tasks", "scifact", "--data-dir", str(tmp_path / "nowhere")]):
        args = parser.parse_args(base + bad)
        with pytest.raises(LLMTruncError):
            args.func(args)


def test_report_from_store(minilm, tmp_path, data_dir):
    from llmtrunc.encoder.report import build_report

    specs = expand_grid(["first", "last", "random", "pca"], parse_k_list("0,50"), [0, 1])
    _run(minilm, tmp_path, ["stsb"], specs, data_dir=data_dir)
    written = build_report(ResultsStore(tmp_path / "results").records(), tmp_path / "rep")
    names = {p.name for p in written}
    assert {"README.md", "summary.csv", "table_k50.csv", "retention_minilm.png"} <= names
    text = (tmp_path / "rep" / "README.md").read_text()
    assert "stsb" in text and "±" in text
    recorded = set(ResultsStore(tmp_path / "results").records()["command"])
    assert len(recorded) == 1 and recorded.pop() in text  # the command behind the records, with no flag needed


def test_outlier_and_magnitude_drops_resolve_on_the_fit_side(minilm, tmp_path, data_dir):
    from llmtrunc.encoder.evaluate import encode_sets
    from llmtrunc.encoder.tasks import resolve_task
    from llmtrunc.profile import outlier_dims

    specs = expand_grid(["outliers", "top:10%", "random:outliers", "random:10%!outliers"], None, [0, 1])
    outcome = _run(minilm, tmp_path, ["scifact", "stsb"], specs, data_dir=data_dir)
    by_cell = {(r["task"], r["drop"]): r for r in outcome.records if r["main"]}
    cache = EmbeddingCache(tmp_path / "cache")
    for name, fit_set in (("scifact", "corpus"), ("stsb", "fit")):  # stsb's fit side is encoded only for a fit
        task = resolve_task(name, data_dir, SMALL)
        fit = encode_sets(minilm, task, cache, with_fit=True)[fit_set].astype(np.float64)
        outliers = outlier_dims(fit.mean(axis=0)).tolist()
        top = np.argsort(-np.abs(fit).mean(axis=0), kind="stable")[:38]  # floor(0.1 * 384)
        removed = by_cell[(name, "outliers")]
        assert removed["dropped_indices"] == outliers and removed["calibration"]["outliers"] == outliers
        assert removed["calibration"]["source"] == f"{name}:{fit_set}"
        assert removed["calibration"]["rows"] == len(fit) and removed["calibration"]["n_outliers"] == len(outliers)
        assert by_cell[(name, "top:10%")]["dropped_indices"] == sorted(top.tolist())
        assert by_cell[(name, "random:outliers@1")]["n_dropped"] == len(outliers)
        assert not set(by_cell[(name, "random:10%!outliers@0")]["dropped_indices"]) & set(outliers)
        assert "calibration" not in by_cell[(name, "none")]
    assert by_cell[("scifact", "outliers")]["drop_kind"] == "outliers"
    assert by_cell[("scifact", "random:10%!outliers@0")]["drop_kind"] == "random!outliers"


def test_cli_outliers_and_top_k(tmp_path, data_dir, capsys):
    from llmtrunc.commands import encoder as command

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["encoder", "eval", "--results-dir", str(tmp_path / "res"), "--cache-dir",
                              str(tmp_path / "cache"), "--tasks", "stsb", "--limit", "20", "--max-train", "40",
                              "--drop", "outliers,top:10%", "--json"])
    assert args.func(args) == 0
    lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith("{")]
    assert [l["drop"] for l in lines] == ["none", "outliers", "top:10%"]
