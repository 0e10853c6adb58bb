"""Dimension attribution: the change of a task's score when one embedding dimension alone is removed.

delta_j = score(embeddings without dimension j) - score(full embeddings). delta_j > 0: removing j improves
the score (a *degrading* dimension); delta_j < 0: an *improving* dimension.

Cosine retrieval (nDCG@10), vectorised and exact. For query q and document x, removing dimension j gives

    s_j(q, x) = (q.x - q_j x_j) / (sqrt(|q|^2 - q_j^2) sqrt(|x|^2 - x_j^2))

so all d removals follow from the full scores and the coordinates. Only documents that can enter some
top-10 are scored: with unit vectors a = q_j/|q|, b = x_j/|x| and s = cos(q, x), |s_j - s| <=
(|a| B_j + 1 - r) / r with r = sqrt((1 - a^2)(1 - B_j^2)), B_j = max_x |b| over the corpus (the bound grows
with |b|, and |s| <= 1). With T the full 10th-best score and D = max_j of that bound, any document with
s < T - 2D scores below the 10th-best under every removal, so it cannot reach any top-10: the candidates
give exactly the rankings of the whole corpus (a tighter per-document version of this bound is used,
see `candidates`). Top-10 per (query, removed dim) is taken in
dimension batches; nDCG@10 uses trec_eval's definition (linear gains, log2(rank + 1) discounts, ideal
DCG from the qrels' positive judgements, ties broken by descending doc id) averaged over all qrels
queries, which equals pytrec_eval's number as the encoder track computes it (tested).

STS (cosine Spearman): the same closed form on the pairs, one Spearman per removed dimension.

Any other task (classification, dot-product retrieval): `naive_attribution`, one full task.score per
removed dimension. For banking77 the analyze command runs this loop with fewer of MTEB's 10 undersampling
experiments (`--attr-experiments`, default 2: the first 2 of the 10 experiments, all test rows), a cheaper
proxy of the full protocol; the degrading/improving selection is then re-scored with all 10 experiments.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

from llmtrunc.encoder.models import similarity_matrix
from llmtrunc.encoder.tasks.retrieval import ir_metrics
from llmtrunc.spec import Mask


class RetrievalAttribution:
    """All single-dimension removals of cosine retrieval, scored by nDCG@k (default 10)."""

    def __init__(self, queries: np.ndarray, corpus: np.ndarray, query_ids: list[str], doc_ids: list[str],
                 qrels: dict[str, dict[str, int]], k: int = 10):
        self.k = k
        self.q = np.asarray(queries, dtype=np.float64)
        self.x = np.asarray(corpus, dtype=np.float64)
        self.qu = self.q / np.maximum(np.linalg.norm(self.q, axis=1, keepdims=True), 1e-12)
        self.xu = self.x / np.maximum(np.linalg.norm(self.x, axis=1, keepdims=True), 1e-12)
        self.dim = self.q.shape[1]
        self.n_queries = len(query_ids)
        doc_index = {d: i for i, d in enumerate(doc_ids)}
        # relevance of every corpus doc per query, ideal DCG from the qrels (trec_eval: all positive judgements)
        self.ideal = np.zeros(len(query_ids))
        rel_rows, rel_cols, rel_vals = [], [], []
        discounts = 1.0 / np.log2(np.arange(2, k + 2))
        self.discounts = discounts
        for i, qid in enumerate(query_ids):
            gains = sorted((g for g in qrels.get(qid, {}).values() if g > 0), reverse=True)[:k]
            self.ideal[i] = float(np.sum(np.array(gains, dtype=np.float64) * discounts[: len(gains)]))
            for did, g in qrels.get(qid, {}).items():
                if g > 0 and did in doc_index:
                    rel_rows.append(i)
                    rel_cols.append(doc_index[did])
                    rel_vals.append(g)
        self.rel_rows, self.rel_cols, self.rel_vals = np.array(rel_rows, int), np.array(rel_cols, int), np.array(rel_vals, float)
        self.n_qrels_queries = len(qrels)
        # doc-id order for trec_eval tie-breaking (descending doc id string wins among equal scores)
        order = sorted(range(len(doc_ids)), key=lambda m: doc_ids[m])
        self.docid_rank = np.empty(len(doc_ids), dtype=np.int64)
        self.docid_rank[order] = np.arange(len(doc_ids))
        self.full = self.qu @ self.xu.T

    def candidates(self) -> np.ndarray:
        """(n_queries, C) doc indices that can reach a top-k under some single removal (padded with -1).

        Lower bound L_i: every removal j leaves the full top-k docs with exact scores s_j, so the k-th best
        score under removal j is at least min over those k docs and all j. Upper bound for doc m: with
        alpha_i = max_j |a_ij|, beta_m = max_j |b_mj|, r = sqrt((1 - alpha_i^2)(1 - beta_m^2)),
        s_j(m) <= s + (alpha_i beta_m + |s| (1 - r)) / r (the bound grows with |a| and |b|). Docs with
        upper bound < L_i are below k other docs under every removal and are left out: exact."""
        n_docs = self.full.shape[1]
        k = min(self.k, n_docs)
        rows = np.arange(self.n_queries)[:, None]
        top = np.argpartition(-self.full, k - 1, axis=1)[:, :k] if k < n_docs else np.tile(np.arange(n_docs), (self.n_queries, 1))
        s_top = self.full[rows, top][:, :, None]  # (nq, k, 1)
        a = self.qu[:, None, :]
        b = self.xu[top]  # (nq, k, d)
        s_j = (s_top - a * b) / np.sqrt((1 - a**2) * (1 - b**2))
        lower = np.minimum(s_j.min(axis=(1, 2)), s_top[:, :, 0].min(axis=1))  # (nq,)
        alpha = np.abs(self.qu).max(axis=1)[:, None]
        beta = np.abs(self.xu).max(axis=1)[None, :]
        r = np.sqrt((1 - alpha**2) * (1 - beta**2))
        upper = self.full + (alpha * beta + np.abs(self.full) * (1 - r)) / np.maximum(r, 1e-12)
        mask = upper >= (lower - 1e-9)[:, None]
        mask[rows, top] = True
        counts = mask.sum(axis=1)
        out = -np.ones((self.n_queries, counts.max()), dtype=np.int64)
        for i in range(self.n_queries):
            idx = np.flatnonzero(mask[i])
            out[i, : len(idx)] = idx
        self.n_candidates = counts
        return out

    def _dcg(self, scores: np.ndarray, cand: np.ndarray, rel: np.ndarray) -> np.ndarray:
        """scores (nq, C, b) over candidates (padding -inf); returns DCG@k per (query, column) (nq, b)."""
        nq, c, b = scores.shape
        k = min(self.k, c)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k, :] if k < c else np.broadcast_to(np.arange(c)[None, :, None], (nq, c, b))
        top_scores = np.take_along_axis(scores, top, axis=1)
        top_docs = cand[np.arange(nq)[:, None, None], top]
        tie = self.docid_rank[np.maximum(top_docs, 0)]
        # each (query, column) top-k in trec_eval order: score descending, then doc id descending
        order = np.lexsort((-tie, -top_scores), axis=1)
        top = np.take_along_axis(top, order, axis=1)
        gains = rel[np.arange(nq)[:, None, None], top]
        return np.einsum("ikb,k->ib", gains, self.discounts[:k])

    def run(self, dims: Sequence[int] | None = None, batch: int = 32, query_chunk: int = 16) -> tuple[float, np.ndarray]:
        """(full nDCG@k, nDCG@k with each of `dims` removed alone).

        Queries are processed in chunks of similar candidate counts (little padding), dims in batches."""
        dims = np.arange(self.dim) if dims is None else np.asarray(dims, dtype=np.int64)
        cand_all = self.candidates()
        rel_of = {}
        for i, m, g in zip(self.rel_rows, self.rel_cols, self.rel_vals):
            rel_of[(int(i), int(m))] = g
        dcg_full = np.zeros(self.n_queries)
        dcg = np.zeros((self.n_queries, len(dims)))
        by_count = np.argsort(self.n_candidates, kind="stable")
        for start in range(0, self.n_queries, query_chunk):
            qs = by_count[start:start + query_chunk]
            width = int(self.n_candidates[qs].max())
            cand = cand_all[qs, :width]
            valid = cand >= 0
            safe = np.maximum(cand, 0)
            s = np.where(valid, self.full[qs[:, None], safe], -np.inf)
            rel = np.zeros(cand.shape)
            for r, i in enumerate(qs):
                for col, m in enumerate(cand[r]):
                    if m >= 0 and (int(i), int(m)) in rel_of:
                        rel[r, col] = rel_of[(int(i), int(m))]
            dcg_full[qs] = self._dcg(s[:, :, None], cand, rel)[:, 0]
            xu_c = self.xu[safe]  # (chunk, width, d)
            s3 = s[:, :, None]
            for j0 in range(0, len(dims), batch):
                js = dims[j0:j0 + batch]
                a = self.qu[qs][:, js][:, None, :]
                bx = xu_c[:, :, js]
                sj = (s3 - a * bx) / np.sqrt((1 - a**2) * (1 - bx**2))  # -inf padding stays -inf
                dcg[qs, j0:j0 + batch] = self._dcg(sj, cand, rel)
        with np.errstate(invalid="ignore", divide="ignore"):
            ideal = np.where(self.ideal > 0, self.ideal, 1.0)
        base = float((dcg_full / ideal).sum() / self.n_qrels_queries)
        return base, (dcg / ideal[:, None]).sum(axis=0) / self.n_qrels_queries


def naive_retrieval_ndcg(task, queries: np.ndarray, corpus: np.ndarray, dropped: Sequence[int] = ()) -> float:
    """nDCG@10 exactly as the encoder track scores it (cosine, top-100 run, pytrec_eval), with `dropped` removed."""
    mask = Mask.of(queries.shape[1], dropped)
    scores = similarity_matrix(mask.remove(queries), mask.remove(corpus), "cosine")
    return ir_metrics(task.qrels, task.run_from_scores(scores))["ndcg_at_10"]


def sts_attribution(sentences: np.ndarray, left: np.ndarray, right: np.ndarray, gold: np.ndarray,
                    dims: Sequence[int] | None = None) -> tuple[float, np.ndarray]:
    """(full cosine Spearman, Spearman with each dimension removed alone), closed form over the pairs."""
    from scipy.stats import spearmanr

    e = np.asarray(sentences, dtype=np.float64)
    l, r = e[left], e[right]
    dims = np.arange(e.shape[1]) if dims is None else np.asarray(dims)
    dot = np.einsum("ij,ij->i", l, r)
    ln2, rn2 = np.einsum("ij,ij->i", l, l), np.einsum("ij,ij->i", r, r)
    cos = (dot[:, None] - l[:, dims] * r[:, dims]) / np.sqrt((ln2[:, None] - l[:, dims] ** 2) * (rn2[:, None] - r[:, dims] ** 2))
    ranks = rankdata(cos, axis=0)
    g = rankdata(gold)
    g = (g - g.mean()) / np.linalg.norm(g - g.mean())
    ranks = (ranks - ranks.mean(axis=0)) / np.linalg.norm(ranks - ranks.mean(axis=0), axis=0)
    full = float(spearmanr(dot / np.sqrt(ln2 * rn2), gold).statistic)
    return full, g @ ranks


def naive_attribution(score: Callable[[Sequence[int]], float], dim: int, dims: Sequence[int] | None = None,
                      log: Callable[[str], None] | None = None) -> tuple[float, np.ndarray]:
    """(full score, score with each of `dims` removed alone) by one full `score(dropped)` call per dimension."""
    dims = range(dim) if dims is None else dims
    base = score(())
    out = []
    for n, j in enumerate(dims):
        out.append(score((int(j),)))
        if log and (n + 1) % 32 == 0:
            log(f"  attribution: {n + 1}/{len(dims)} dimensions")
    return base, np.array(out)
