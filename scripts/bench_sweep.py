"""Benchmark: a 10-condition sweep with the shared body vs each condition run on its own.

    python scripts/bench_sweep.py --limit 200        # the issue's setting (CPU: long)

Both paths run in this one process on one loaded SmolLM2-135M, through lm-eval's arc_easy
(local data), timed side by side. Prints seconds per path, the ratio of the 10-condition shared
sweep to one separate condition (target <= 1.5x), and the separate total (about 10x).
"""

from __future__ import annotations

import argparse
import time

import lm_eval

from llmtrunc.evaluate import use_data_dir
from llmtrunc.shared_body import SharedBodyLM
from llmtrunc.spec import parse_drop
from llmtrunc.tasks import resolve_tasks, task_manager

CONDITIONS = ["none", "first-half", "last-half", "first:25%", "last:25%",
              *(f"random:50%@{seed}" for seed in range(5))]


def evaluate(lm, task: str, limit: int) -> float:
    result = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=task_manager())
    return result["results"][task]["acc,none"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    use_data_dir(None)
    task = resolve_tasks(["arc_easy"])[0].lm_eval_name
    lm = SharedBodyLM(pretrained="smollm2-135m", device="cpu", batch_size=args.batch_size)
    task_manager()  # build lm-eval's task index before timing

    timings, scores = {}, {}
    for path in ("separate", "shared"):
        lm.shared, start = path == "shared", time.perf_counter()
        lm.clear_cache()
        scores[path] = []
        per_condition = []
        for drop in CONDITIONS:
            t0 = time.perf_counter()
            lm.set_drop(parse_drop(drop))
            scores[path].append(evaluate(lm, task, args.limit))
            per_condition.append(time.perf_counter() - t0)
        timings[path] = (time.perf_counter() - start, per_condition)

    one = timings["separate"][1][0]
    print(f"arc_easy limit {args.limit}, {len(CONDITIONS)} conditions, smollm2-135m on CPU, batch {args.batch_size}")
    print(f"separate: one condition {one:.1f}s, all {len(CONDITIONS)} {timings['separate'][0]:.1f}s "
          f"({timings['separate'][0] / one:.2f}x one condition)")
    print(f"shared body: all {len(CONDITIONS)} {timings['shared'][0]:.1f}s")
    print(f"ratio shared sweep / one separate condition: {timings['shared'][0] / one:.2f}x (target <= 1.5x)")
    print(f"accuracies equal on every condition: {scores['shared'] == scores['separate']}")
    for drop, a, b in zip(CONDITIONS, scores["separate"], scores["shared"]):
        print(f"  {drop:16s} separate {a:.4f} shared {b:.4f}")


if __name__ == "__main__":
    main()
