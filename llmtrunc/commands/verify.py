"""`llmtrunc verify`: re-run stored cells on their first N items and compare them with their records, exactly.

    llmtrunc verify reports/llm/smollm2/records.jsonl.gz --task arc_easy --drop last-half --limit 30

One line per cell (match / DIFFERS / UNVERIFIED, llmtrunc.verify); exit 1 unless every cell matches. What runs
is the code, model and data at hand, so a match says the committed numbers come out of a fresh clone.
"""

from __future__ import annotations

from pathlib import Path

from llmtrunc.errors import LLMTruncError

DEFAULT_LIMIT = 30


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "verify", help="re-run stored cells and compare them with their records",
        description="Re-run the selected cells of a records file (or results store) on their first N items and "
                    "compare each per-item outcome (acc, exact match ...) with the stored one, exactly; cells "
                    "without per-item values (perplexities, the encoder track) are re-run whole and compared "
                    "value for value. One line per cell; exit 1 on any difference.")
    parser.add_argument("records", help="a records.jsonl(.gz) file, or a results store / report folder")
    parser.add_argument("--task", default=None, help="only this task's cells")
    parser.add_argument("--drop", default=None,
                        help="only this drop's cells (a random spec without @SEED: every seed); none: the baselines")
    parser.add_argument("--at", default=None, help="only this position (post-norm or pre-norm)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help=f"re-run the first N items of each LLM cell (default {DEFAULT_LIMIT}); a cell stored on "
                             "fewer runs them all")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--data-dir", default=None,
                        help="offline benchmark data (default $LLMTRUNC_DATA_DIR, else ../shared/data)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from llmtrunc.spec import parse_drop
    from llmtrunc.store import read_records
    from llmtrunc.verify import compare, select

    if args.limit <= 0:
        raise LLMTruncError("--limit must be positive")
    path = Path(args.records)
    if not path.exists():
        raise LLMTruncError(f"records not found: {path}")
    spec = parse_drop(args.drop) if args.drop else None
    cells = select(read_records(path), args.task, spec, args.at, every_seed=bool(args.drop) and "@" not in args.drop)
    if not cells:
        asked = (("task", args.task), ("drop", args.drop), ("at", args.at))
        raise LLMTruncError(f"no LLM or encoder cell in {path} matches"
                            + "".join(f" --{flag} {value}" for flag, value in asked if value))
    verdicts = []
    for stored, rerun, notes, truncated in _replayed(cells, args):
        verdict = compare(stored, rerun, truncated, notes)
        print(verdict.line(), flush=True)
        verdicts.append(verdict)
    return 0 if all(v.same for v in verdicts) else 1


def _replayed(cells, args):
    """(stored, re-run, notes, truncated) of every cell, LLM cells grouped by the limit they re-run at."""
    from llmtrunc.verify import replay_limit

    llm = [c for c in cells if c[0].track == "llm"]
    encoder = [c for c in cells if c[0].track == "encoder"]
    if llm:
        from llmtrunc.commands.eval import resolve_device
        from llmtrunc.llm.replay import replay

        limits: dict = {}
        for stored in llm:
            limits.setdefault(replay_limit(stored[0].limit, args.limit), []).append(stored)
        for (limit, truncated), members in limits.items():
            for stored, rerun, notes in replay(members, limit, resolve_device(args.device), args.data_dir):
                yield stored, rerun, notes, truncated
    if encoder:
        from llmtrunc.encoder.replay import replay

        device = None if args.device == "auto" else args.device
        for stored, rerun, notes in replay(encoder, device, args.data_dir):
            yield stored, rerun, notes + ["the whole cell: encoder records keep no per-item values"], False
