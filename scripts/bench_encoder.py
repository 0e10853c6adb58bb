"""Benchmark: the full encoder grid on SciFact costs at most 1.3x one encode-and-score pass.

    python scripts/bench_encoder.py [--model minilm] [--task scifact] [--max-corpus N] [--limit N]

One pass = encode queries + corpus (cold cache) and score the untruncated embeddings once.
The grid = first/last/random x K in 0..90 step 10 x 10 seeds, plus pca x K and the baseline (131 drop specs), run by
the real runner (llmtrunc.runner, as `llmtrunc encoder eval` runs it) into a fresh results store. The grid encodes exactly once - the same
cold encode as the single pass - and computes every variant from the cache, so its cost is
T_encode + T_grid_run, where T_grid_run is the whole runner call on the warm cache (cache load,
PCA fit, all scoring, all store writes). Ratio = (T_encode + T_grid_run) / (T_encode + T_score_one).
--cold-twice runs the grid from its own cold cache instead (encoding twice, slower, same answer).
Exit status 1 when the ratio exceeds --max-ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from llmtrunc.encoder.cache import EmbeddingCache  # noqa: E402
from llmtrunc.encoder.evaluate import EncoderCompute, encode_sets, encoder_cells  # noqa: E402
from llmtrunc.encoder.models import DEFAULT_MODEL, Encoder, resolve_model  # noqa: E402
from llmtrunc.encoder.tasks import Limits, resolve_task  # noqa: E402
from llmtrunc.runner import Runner  # noqa: E402
from llmtrunc.spec import expand_grid, parse_k_list  # noqa: E402
from llmtrunc.store import ResultsStore  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--task", default="scifact")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-corpus", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-ratio", type=float, default=1.3)
    parser.add_argument("--cold-twice", action="store_true")
    args = parser.parse_args(argv)

    limits = Limits(limit=args.limit, max_corpus=args.max_corpus)
    encoder = Encoder(resolve_model(args.model), device=args.device, batch_size=args.batch_size)
    _ = encoder.dim  # model load is not part of either cost
    task = resolve_task(args.task, args.data_dir, limits)
    specs = expand_grid(["first,last,random,pca"], parse_k_list("0,10,...,90"), list(range(10)))
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "cache")
        t0 = time.perf_counter()
        embeddings = encode_sets(encoder, task, cache, with_fit=False)
        t_encode = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = task.score(embeddings, encoder.spec.similarity, embeddings)
        t_score = time.perf_counter() - t0
        one_pass = t_encode + t_score

        grid_cache = Path(tmp) / ("cache-cold" if args.cold_twice else "cache")
        before = encoder.n_encoded
        t0 = time.perf_counter()
        runner = Runner(ResultsStore(Path(tmp) / "results"), Console(quiet=True))
        runner.run(encoder_cells(encoder, [task], specs), EncoderCompute(encoder, EmbeddingCache(grid_cache), limits, log=lambda _: None))
        t_grid_run = time.perf_counter() - t0
        re_encoded = encoder.n_encoded - before
    grid = t_grid_run if args.cold_twice else t_encode + t_grid_run
    ratio = grid / one_pass
    print(f"task {task.name}: {task.n_eval()} queries, {len(task.doc_texts) if hasattr(task, 'doc_texts') else '-'} docs; "
          f"model {encoder.model_id} ({encoder.revision}), dim {encoder.dim}")
    print(f"one encode-and-score pass: encode {t_encode:.1f}s + score {t_score:.2f}s = {one_pass:.1f}s "
          f"(ndcg@10 {metrics.get('ndcg_at_10', float('nan')):.4f})")
    print(f"full grid ({len(specs)} drop specs, {runner.computed} runs written, {re_encoded} texts re-encoded): "
          f"{'' if args.cold_twice else f'encode {t_encode:.1f}s + '}runner {t_grid_run:.1f}s = {grid:.1f}s")
    print(f"ratio grid / one pass = {ratio:.3f} (limit {args.max_ratio})")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
