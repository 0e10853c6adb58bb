"""Retrieval in BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

Documents are encoded as "title text" (MTEB's convention for sentence-transformers models), queries
with the model's query prompt and documents with its document prompt. Metrics by pytrec_eval over
the top 100 documents of each query (exact for every reported cut-off): nDCG@10 (main), recall@100,
MAP@10; plus `rank_spearman`, the Spearman correlation between the full-embedding and the
truncated-embedding scores of every corpus document, averaged over queries (the paper's ranking
stability measure; 1.0 for the untruncated embeddings).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from llmtrunc.data import read_jsonl
from llmtrunc.encoder.models import similarity_matrix
from llmtrunc.encoder.tasks.base import Limits, Task, TextSet
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import chunks_hash

TOP_K = 100
MEASURES = {"ndcg_cut_10": "ndcg_at_10", "recall_100": "recall_at_100", "map_cut_10": "map_at_10"}


def is_beir_folder(folder: Path) -> bool:
    return (folder / "corpus.jsonl").is_file() and (folder / "queries.jsonl").is_file() and (folder / "qrels").is_dir()


class RetrievalTask(Task):
    kind = "retrieval"
    main_metric = "ndcg_at_10"
    fit_set = "corpus"

    def __init__(self, name: str, folder: Path, split: str = "test", limits: Limits | None = None):
        super().__init__(name, split)
        limits = limits or Limits()
        if not is_beir_folder(folder):
            raise LLMTruncError(f"{folder} is not a BEIR folder (needs corpus.jsonl, queries.jsonl, qrels/)")
        qrels_path = folder / "qrels" / f"{split}.tsv"
        if not qrels_path.is_file():
            raise LLMTruncError(f"missing qrels file {qrels_path}")
        qrels: dict[str, dict[str, int]] = {}
        with qrels_path.open(encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter="\t")
            for row in reader:
                if not row or row[0] == "query-id":
                    continue
                qid, did, score = row[0], row[1], int(float(row[2]))
                qrels.setdefault(qid, {})[did] = score
        queries = {str(r["_id"]): r["text"] for r in read_jsonl(folder / "queries.jsonl")}
        query_ids = [q for q in qrels if q in queries and any(s > 0 for s in qrels[q].values())]
        if limits.limit is not None:
            query_ids = query_ids[: limits.limit]
        if not query_ids:
            raise LLMTruncError(f"{folder}: no query of qrels/{split}.tsv has a relevant document")
        corpus_rows = read_jsonl(folder / "corpus.jsonl")
        doc_ids = [str(r["_id"]) for r in corpus_rows]
        doc_text = {str(r["_id"]): (str(r.get("title") or "") + " " + str(r.get("text") or "")).strip() for r in corpus_rows}
        if limits.max_corpus is not None:
            relevant = {d for q in query_ids for d in qrels[q] if d in doc_text}
            kept = [d for d in doc_ids if d in relevant]
            for d in doc_ids:
                if len(kept) >= max(limits.max_corpus, len(relevant)):
                    break
                if d not in relevant:
                    kept.append(d)
            keep_set = set(kept)
            doc_ids = [d for d in doc_ids if d in keep_set]
        self.folder = folder
        self.query_ids = query_ids
        self.query_texts = tuple(queries[q] for q in query_ids)
        self.doc_ids = doc_ids
        self.doc_texts = tuple(doc_text[d] for d in doc_ids)
        self.qrels = {q: {d: s for d, s in qrels[q].items()} for q in query_ids}
        self._full_ranks: tuple[int, np.ndarray] | None = None

    def sets(self) -> dict[str, TextSet]:
        return {
            "queries": TextSet(self.query_texts, "query", self.split),
            "corpus": TextSet(self.doc_texts, "document", "corpus"),
        }

    def labels_fingerprint(self) -> str:
        text = json.dumps([self.query_ids, self.doc_ids, self.qrels], sort_keys=True)
        return chunks_hash([text.encode()])

    def protocol(self) -> dict:
        return {"top_k": TOP_K, "measures": sorted(MEASURES)}

    def n_eval(self) -> int:
        return len(self.query_ids)

    def run_from_scores(self, scores: np.ndarray) -> dict[str, dict[str, float]]:
        k = min(TOP_K, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(np.arange(k), (scores.shape[0], 1))
        return {
            qid: {self.doc_ids[j]: float(scores[i, j]) for j in top[i]}
            for i, qid in enumerate(self.query_ids)
        }

    def score(self, embeddings, similarity, full):
        scores = similarity_matrix(embeddings["queries"], embeddings["corpus"], similarity)
        metrics = ir_metrics(self.qrels, self.run_from_scores(scores))
        metrics["rank_spearman"] = self._rank_spearman(scores, full, similarity)
        return metrics

    def _rank_spearman(self, scores: np.ndarray, full: dict[str, np.ndarray], similarity: str) -> float:
        key = id(full["corpus"])
        if self._full_ranks is None or self._full_ranks[0] != key:
            full_scores = similarity_matrix(full["queries"], full["corpus"], similarity)
            self._full_ranks = (key, _centred_unit_rows(rankdata(full_scores, axis=1)))
        return float(np.mean(np.sum(self._full_ranks[1] * _centred_unit_rows(rankdata(scores, axis=1)), axis=1)))


def _centred_unit_rows(ranks: np.ndarray) -> np.ndarray:
    centred = ranks - ranks.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.where(norms == 0, 1.0, norms)


def ir_metrics(qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]]) -> dict[str, float]:
    """nDCG@10, recall@100 and MAP@10 averaged over the qrels' queries (pytrec_eval, trec_eval semantics)."""
    import pytrec_eval

    evaluator = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "map_cut.10"})
    per_query = evaluator.evaluate(run)
    out = {}
    for measure, name in MEASURES.items():
        # queries missing from the run score 0, as in BEIR/MTEB's averaging over all qrels queries
        out[name] = float(sum(per_query.get(q, {}).get(measure, 0.0) for q in qrels) / len(qrels))
    return out
