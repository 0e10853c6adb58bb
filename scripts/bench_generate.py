r"""Benchmark: N conditions (default 10) of local_gsm8k (5-shot) generated together against one condition run alone.

    python scripts/bench_generate.py --limit 10 --batch-size 8 [--separate N] [--device cuda] [--out FILE]
    python scripts/bench_generate.py --model gemma-3-270m-q4_k_m.gguf --conditions 5 --batch-size 1 --limit 4 \
        --gen-kwargs max_gen_toks=64          # a sliding-window family: 5 conditions against 5 separate runs
    python scripts/bench_generate.py ... --drops first-half,last-half,first:25%,last:25%,random:50%@0
                                          # 5 truncations, the baseline already stored (as in a resumed sweep)

Both paths run in this one process on one loaded model (default SmolLM2-135M) through the real runner (scripts/benchlib.py),
after a warm-up (`--repeats R`: both paths R times, alternating, medians printed). Separate: each condition
on its own, --batch-size prompts per generate call. Shared: all 10
conditions as one group, each prompt prefilled once and --batch-size x 10 rows (prompt x condition) decoded
at once, so the prompts are batched as in the separate runs. Prints seconds, `ratio N` (shared / the mean
separate condition; target <= 3.0 on CPU, <= 1.5 on a GPU), the token-count ratio that sharing the prefill
alone would give, (prompt + generated tokens over all conditions) / (prompt + generated tokens of the mean
condition, over the conditions timed separately), counted from the tokens the shared run saw (target: ratio <= 1.2 x that), and how many
generations differ between the two paths (batch composition can flip a greedy token).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import CONDITIONS, Bench  # noqa: E402

from llmtrunc.llm import generation  # noqa: E402
from llmtrunc.spec import parse_drop  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per batch (shared: x 10 rows)")
    parser.add_argument("--conditions", type=int, default=len(CONDITIONS), choices=range(2, len(CONDITIONS) + 1),
                        metavar="C", help=f"the first C of the {len(CONDITIONS)} conditions (default: all)")
    parser.add_argument("--drops", default=None, metavar="SPECS",
                        help="comma-separated drop specs to time instead (e.g. five without `none`: a sweep whose "
                             "baseline is already stored)")
    parser.add_argument("--separate", type=int, default=None, metavar="N",
                        help="conditions to time separately (default: all C)")
    parser.add_argument("--model", default="smollm2-135m", help="alias, model directory or .gguf file")
    parser.add_argument("--gen-kwargs", default=None, help="as llmtrunc's --gen-kwargs, e.g. max_gen_toks=64")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, metavar="R",
                        help="time both paths R times, alternating, and take the medians (a shared machine's noise)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as Markdown")
    args = parser.parse_args(argv)
    conditions = args.drops.split(",") if args.drops else CONDITIONS[:args.conditions]
    args.separate = min(args.separate or len(conditions), len(conditions))

    bench = Bench("gsm8k", args.limit, args.device, model=args.model, gen_kwargs=args.gen_kwargs)
    bench.run(conditions[:2], True, 2 * args.batch_size, limit=1)  # warm-up (first-call costs land on neither path)
    shared_times, separate_times = [], []
    for _ in range(args.repeats):  # alternating, so a slow spell of the machine falls on both paths
        shared_s, shared = bench.run(conditions, True, len(conditions) * args.batch_size)
        prompt, generated = bench.lm.prompt_tokens, bench.lm.generated_tokens
        separate_s, separate = bench.run(conditions[:args.separate], False, args.batch_size)
        shared_times.append(shared_s)
        separate_times.append(separate_s)
    shared_s, separate_s = statistics.median(shared_times), statistics.median(separate_times)
    one = separate_s / args.separate
    ratio = shared_s / one
    timed = [generation.Condition(bench.lm.mask_for(parse_drop(c), "post-norm"), "post-norm").name
             for c in conditions[:args.separate]]
    mean_generated = sum(generated[name] for name in timed) / len(timed)  # the conditions `one` is the mean of
    token_ratio = (prompt + sum(generated.values())) / (prompt + mean_generated)
    # dict(): doc id -> responses, once per doc (lm-eval logs a row per doc and filter)
    differ = {c: sum(dict(shared[c][1])[d] != r for d, r in dict(separate[c][1]).items()) for c in separate}
    rows = len(dict(next(iter(shared.values()))[1]))
    lines = [
        f"local_gsm8k 5-shot, limit {args.limit}, {len(conditions)} conditions, {Path(args.model).name} on {args.device} "
        f"({platform.processor() or platform.machine()}), {date.today()}",
        f"shared: all {len(conditions)} conditions {shared_s:.1f} s{spread(shared_times)} ({len(conditions) * args.batch_size} "
        f"rows decoded at once, {args.batch_size} prompts per prefill)",
        f"separate: {args.separate} conditions {separate_s:.1f} s{spread(separate_times)}, one condition {one:.1f} s on "
        f"average ({args.batch_size} prompts per generate call)",
        f"ratio {ratio:.2f} (shared sweep / one separate condition; for 10 conditions target <= 3.0 on CPU); separate "
        f"runs of all {len(conditions)} conditions cost {len(conditions) / ratio:.2f}x the shared sweep (for 5: >= 3x)"
        + ("" if args.separate == len(conditions) else f" (extrapolated from {args.separate})"),
        f"token-count ratio {token_ratio:.2f}: {prompt} prompt tokens + {sum(generated.values())} generated over all "
        f"conditions vs {prompt} + {mean_generated:.0f} for the mean of the {args.separate} conditions timed separately; "
        f"ratio / token ratio = "
        f"{ratio / token_ratio:.2f} (target <= 1.2)",
        f"generations differing between the paths: {sum(differ.values())} of {rows * len(differ)} "
        f"({', '.join(f'{c}: {n}' for c, n in differ.items() if n) or 'none'}); metrics equal on "
        f"{sum(shared[c][0] == separate[c][0] for c in separate)} of {len(separate)} conditions",
    ]
    print("\n".join(lines))
    if args.out:
        args.out.write_text("\n".join(["# Shared generation benchmark", "", "    python scripts/bench_generate.py "
                                        + " ".join(argv if argv is not None else sys.argv[1:]), "",
                                        *[f"- {line}" for line in lines], ""]))
    return 0


def spread(times: list[float]) -> str:
    """How the repeats spread around the median that is printed ("" for one run)."""
    return f" (median of {len(times)}: {', '.join(f'{t:.1f}' for t in times)})" if len(times) > 1 else ""


if __name__ == "__main__":
    sys.exit(main())
