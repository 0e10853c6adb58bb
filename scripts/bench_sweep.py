"""Benchmark: a 10-condition sweep with the shared body vs each condition run on its own.

    python scripts/bench_sweep.py --limit 200                 # the issue's setting (CPU: long)
    python scripts/bench_sweep.py --limit 200 --separate 2    # time only 2 conditions separately

Both paths run in this one process on one loaded SmolLM2-135M, through lm-eval's arc_easy
(local data), timed side by side. Prints seconds per path, the ratio of the 10-condition shared
sweep to one separate condition (their mean; target <= 1.5x), and the separate total (about 10x). `--separate N`
runs only the first N conditions on their own (each costs a full evaluation) and says so.
"""

from __future__ import annotations

import argparse
import time

import lm_eval

from llmtrunc.llm.evaluate import probe_environment_once, use_data_dir
from llmtrunc.llm.shared_body import SharedBodyLM
from llmtrunc.spec import parse_drop
from llmtrunc.llm.tasks import resolve_tasks, task_manager

CONDITIONS = ["none", "first-half", "last-half", "first:25%", "last:25%",
              *(f"random:50%@{seed}" for seed in range(5))]


def evaluate(lm, task: str, limit: int) -> float:
    result = lm_eval.simple_evaluate(model=lm, tasks=[task], limit=limit, task_manager=task_manager())
    return result["results"][task]["acc,none"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--separate", type=int, default=len(CONDITIONS), choices=range(1, len(CONDITIONS) + 1),
                        metavar="N", help="conditions to run separately (default: all)")
    args = parser.parse_args()
    use_data_dir(None)
    task = resolve_tasks(["arc_easy"])[0].lm_eval_name
    lm = SharedBodyLM(pretrained="smollm2-135m", device="cpu", batch_size=args.batch_size)
    task_manager()  # build lm-eval's task index before timing
    probe_environment_once()  # as `llmtrunc sweep` does for every cell, on both paths
    evaluate(lm, task, 5)  # warm up (first-call costs would otherwise land on whichever path runs first)

    timings, scores = {}, {}
    for path in ("separate", "shared"):
        lm.shared, start = path == "shared", time.perf_counter()
        lm.clear_cache()
        scores[path] = []
        per_condition = []
        for drop in CONDITIONS if path == "shared" else CONDITIONS[:args.separate]:
            t0 = time.perf_counter()
            lm.set_drop(parse_drop(drop))
            scores[path].append(evaluate(lm, task, args.limit))
            per_condition.append(time.perf_counter() - t0)
        timings[path] = (time.perf_counter() - start, per_condition)

    separate = len(scores["separate"])
    one = timings["separate"][0] / separate  # mean cost of one condition run on its own
    print(f"arc_easy limit {args.limit}, {len(CONDITIONS)} conditions, smollm2-135m on CPU, batch {args.batch_size}")
    print(f"separate: {separate} of {len(CONDITIONS)} conditions {timings['separate'][0]:.1f}s, "
          f"one condition {one:.1f}s on average ({', '.join(f'{t:.1f}' for t in timings['separate'][1])})")
    print(f"shared body: all {len(CONDITIONS)} {timings['shared'][0]:.1f}s")
    print(f"ratio shared sweep / one separate condition: {timings['shared'][0] / one:.2f}x (target <= 1.5x); "
          f"separate runs of all {len(CONDITIONS)} cost {len(CONDITIONS) * one / timings['shared'][0]:.1f}x the shared sweep"
          + ("" if separate == len(CONDITIONS) else f" (extrapolated from {separate})"))
    print(f"accuracies equal on every condition run both ways: {scores['shared'][:separate] == scores['separate']}")
    for i, drop in enumerate(CONDITIONS):
        alone = f"{scores['separate'][i]:.4f}" if i < separate else "-"
        print(f"  {drop:16s} separate {alone:>6s} shared {scores['shared'][i]:.4f}")


if __name__ == "__main__":
    main()
