"""Benchmark: all-dimension attribution on SciFact costs at most 3x one full evaluation.

    python scripts/bench_attribution.py [--model minilm] [--task scifact] [--naive-dims 24] [--max-ratio 3]

Embeddings come from the encoder track's cache (encoded once, as every analysis uses them); encoding is
not part of either cost. One full evaluation = the encoder track's `task.score` on the full embeddings
(cosine scores, top-100 run, pytrec_eval nDCG@10/recall/MAP, rank Spearman); an nDCG-only evaluation
(similarity + top-100 + pytrec_eval) is timed too. The vectorised attribution computes nDCG@10 for all
d single-dimension removals. The naive loop (one nDCG-only evaluation per removed dim) is timed on
--naive-dims dims spread over d and extrapolated to d; its values are checked against the vectorised
ones. Exit status 1 when the attribution takes more than --max-ratio full evaluations.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtrunc.encoder.analysis.attribution import RetrievalAttribution, naive_retrieval_ndcg  # noqa: E402
from llmtrunc.encoder.cache import EmbeddingCache  # noqa: E402
from llmtrunc.encoder.evaluate import encode_sets  # noqa: E402
from llmtrunc.encoder.models import DEFAULT_MODEL, Encoder, resolve_model  # noqa: E402
from llmtrunc.encoder.tasks import Limits, resolve_task  # noqa: E402


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-corpus", type=int, default=None)
    parser.add_argument("--naive-dims", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings for the full evaluation and the attribution")
    parser.add_argument("--max-ratio", type=float, default=3.0)
    args = parser.parse_args(argv)

    encoder = Encoder(resolve_model(args.model), device="cpu")
    task = resolve_task(args.task, args.data_dir, Limits(limit=args.limit, max_corpus=args.max_corpus))
    e = encode_sets(encoder, task, EmbeddingCache(args.cache_dir), False)
    q, x = e["queries"], e["corpus"]
    d = q.shape[1]
    print(f"task {task.name}: {len(task.query_ids)} queries, {len(task.doc_ids)} docs; model {encoder.model_id} ({encoder.revision}), dim {d}")
    t_full, metrics = best_of(lambda: task.score(e, "cosine", e), args.repeat)
    t_ndcg, _ = best_of(lambda: naive_retrieval_ndcg(task, q, x), args.repeat)
    print(f"one full evaluation (task.score): {t_full:.3f}s (ndcg@10 {metrics['ndcg_at_10']:.4f}); nDCG-only evaluation: {t_ndcg:.3f}s")

    def vectorised():
        a = RetrievalAttribution(q, x, task.query_ids, task.doc_ids, task.qrels)
        return a, a.run()

    t_vec, (a, (base, scores)) = best_of(vectorised, args.repeat)
    print(f"vectorised attribution, all {d} dims: {t_vec:.3f}s (candidates per query: median {int(np.median(a.n_candidates))}, "
          f"max {a.n_candidates.max()} of {len(task.doc_ids)}); base nDCG@10 {base:.4f}; "
          f"{int((scores > base).sum())} degrading / {int((scores < base).sum())} improving dims")
    dims = np.linspace(0, d - 1, min(args.naive_dims, d)).round().astype(int)
    t0 = time.perf_counter()
    naive = np.array([naive_retrieval_ndcg(task, q, x, [int(j)]) for j in dims])
    t_naive_each = (time.perf_counter() - t0) / len(dims)
    diff = float(np.abs(naive - scores[dims]).max())
    print(f"naive loop: {t_naive_each:.3f}s per removed dim (measured on {len(dims)} dims) -> d x = {d * t_naive_each:.1f}s "
          f"(with task.score per dim: d x {t_full:.3f}s = {d * t_full:.1f}s); max |vectorised - naive| = {diff:.2e}")
    ratio = t_vec / t_full
    print(f"ratio attribution / one full evaluation = {ratio:.2f} (limit {args.max_ratio}); "
          f"attribution / one nDCG-only evaluation = {t_vec / t_ndcg:.1f}; speed-up over the naive nDCG-only loop = {d * t_naive_each / t_vec:.1f}x")
    return 0 if ratio <= args.max_ratio and diff < 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
