"""Benchmark: attributing all d dimensions of SmolLM2-135M on arc_easy costs at most 3x one plain evaluation.

    python scripts/bench_llm_attribution.py [--limit 100] [--batch-size 8] [--seeds 0-4] [--k 10,20,...,90]

One process, one loaded SmolLM2 (scripts/benchlib.py), both through the real runner after a warm-up. Plain: the
`llmtrunc eval` path for the baseline alone (lm-eval's HF scoring). Attribution: the `llmtrunc attribute` cell
-- lm-eval's baseline (which keeps the body's states), all d single-dimension removals from them, and the
selection comparison (K% most degrading / improving / random, each scored by the LM head). Prints the parts'
seconds, `ratio N` (the whole attribution cell / one plain evaluation; target <= 3), the same ratio without the
selection, whether the baselines agree, and the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Bench  # noqa: E402
from rich.console import Console  # noqa: E402

from llmtrunc.llm.attribution import AttributionCompute, attribution_cells  # noqa: E402
from llmtrunc.runner import Runner  # noqa: E402
from llmtrunc.spec import parse_int_list  # noqa: E402
from llmtrunc.store import ResultsStore  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--k", default="10,20,...,90")
    parser.add_argument("--seeds", default="0-4")
    args = parser.parse_args(argv)
    ks, seeds = parse_int_list(args.k, "--k"), parse_int_list(args.seeds, "--seeds")
    load_start = os.getloadavg()
    bench = Bench("arc_easy", args.limit)
    bench.run(["none"], True, args.batch_size, limit=5)  # warm-up
    plain_s, plain = bench.run(["none"], True, args.batch_size)
    cell = attribution_cells([bench.settings], [bench.task], ks, seeds)[0]
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultsStore(tmp)
        start = time.perf_counter()
        Runner(store, Console(quiet=True)).run([cell], AttributionCompute(loaded=bench.lm))
        attribution_s = time.perf_counter() - start
        records = store.run_records(cell.run_id)
    load_end = os.getloadavg()
    full = {r.metric: r for r in records if r.extra["condition"] == "full"}
    counts = next(r for r in records if r.metric == "n_degrading").extra
    parts = counts["seconds_by_part"]
    dim = records[0].dim
    plain_acc = plain["none"][0][("acc", "none")]
    print(f"arc_easy limit {args.limit}, smollm2-135m on CPU, batch {args.batch_size}, {dim} dimensions, "
          f"K {','.join(map(str, ks))}, seeds {','.join(map(str, seeds))}")
    print(f"plain evaluation: {plain_s:.1f}s")
    print(f"attribution cell: {attribution_s:.1f}s = lm-eval baseline {parts['baseline']:.1f}s + all {dim} single "
          f"removals {parts['attribution']:.1f}s + selection ({len(ks) * (2 + len(seeds))} conditions) "
          f"{parts['selection']:.1f}s + records")
    print(f"(position, dimension) pairs computed directly: {counts['direct_pairs']} of {counts['pairs']}")
    print(f"ratio {attribution_s / plain_s:.2f} (attribution cell / one plain evaluation; target <= 3)")
    print(f"without the selection: {(parts['baseline'] + parts['attribution']) / plain_s:.2f}x")
    print(f"acc: plain {plain_acc:.4f}, attribution baseline {full['acc'].value:.4f}, its lm-eval pass "
          f"{full['acc'].extra['lm_eval_value']:.4f}; equal: "
          f"{plain_acc == full['acc'].value == full['acc'].extra['lm_eval_value']}")
    print(f"load average (1, 5, 15 min) at start {', '.join(f'{x:.1f}' for x in load_start)}, at end "
          f"{', '.join(f'{x:.1f}' for x in load_end)}; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
