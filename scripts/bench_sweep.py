"""Benchmark: a 10-condition loglikelihood sweep computed once against each condition run on its own.

    python scripts/bench_sweep.py --limit 200 [--batch-size 8] [--separate N]

Both paths run in this one process on one loaded SmolLM2-135M through the real runner (scripts/benchlib.py),
on lm-eval's arc_easy (local data), after a warm-up. Shared: the 10 conditions as one group; the task and its
requests are built once, the body runs once per request (in the baseline's own lm-eval pass) and every other
condition is scored from the kept states with the final norm and LM head. Separate: each condition alone.
Prints seconds per path, `ratio N` (the shared sweep / one separate condition, their mean; target <= 1.25x) and
whether the accuracies are equal. `--separate N` times only the first N conditions on their own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import CONDITIONS, Bench  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--separate", type=int, default=len(CONDITIONS), choices=range(1, len(CONDITIONS) + 1),
                        metavar="N", help="conditions to run separately (default: all)")
    args = parser.parse_args(argv)
    bench = Bench("arc_easy", args.limit)
    bench.run(CONDITIONS[:2], True, args.batch_size, limit=5)  # warm-up
    shared_s, shared = bench.run(CONDITIONS, True, args.batch_size)
    separate_s, separate = bench.run(CONDITIONS[:args.separate], False, args.batch_size)
    one = separate_s / args.separate
    acc = {c: m[("acc", "none")] for c, (m, _) in shared.items()}
    equal = all(separate[c][0][("acc", "none")] == acc[c] for c in separate)
    print(f"arc_easy limit {args.limit}, {len(CONDITIONS)} conditions, smollm2-135m on CPU, batch {args.batch_size}")
    print(f"separate: {args.separate} of {len(CONDITIONS)} conditions {separate_s:.1f}s, one condition {one:.1f}s on average")
    print(f"shared body: all {len(CONDITIONS)} {shared_s:.1f}s")
    print(f"ratio {shared_s / one:.2f} (shared sweep / one separate condition; target <= 1.25x); separate runs of all "
          f"{len(CONDITIONS)} cost {len(CONDITIONS) * one / shared_s:.1f}x the shared sweep"
          + ("" if args.separate == len(CONDITIONS) else f" (extrapolated from {args.separate})"))
    print(f"accuracies equal on every condition run both ways: {equal}")
    for c in CONDITIONS:
        alone = f"{separate[c][0][('acc', 'none')]:.4f}" if c in separate else "-"
        print(f"  {c:16s} separate {alone:>6s} shared {acc[c]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
