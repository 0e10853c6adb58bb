"""`llmtrunc sweep`: `eval` over several models, or over a grid read from a YAML config."""

from __future__ import annotations

from llmtrunc.commands.eval import add_llm_grid_parser, positions, run_grid
from llmtrunc.errors import LLMTruncError


def register(subparsers) -> None:
    parser = add_llm_grid_parser(
        subparsers, "sweep", "run a grid of drop conditions (resumable, shardable, compute-once)",
        "Run models x drops (x seeds, x K) x positions x tasks from the flags of `eval` or a YAML config "
        "(keys: models, tasks, drops, seeds, k, positions; flags override it). --model takes a comma-separated "
        "list. Finished cells are skipped.")
    parser.add_argument("--config", help="YAML file with models, tasks, drops, seeds, k, positions")
    parser.set_defaults(func=run)


def run(args) -> int:
    from llmtrunc.commands.options import grid_specs
    from llmtrunc.llm.models import DEFAULT_MODEL
    from llmtrunc.llm.sweep import SweepConfig

    config = SweepConfig.from_yaml(args.config) if args.config else SweepConfig(models=[DEFAULT_MODEL], tasks=[],
                                                                                 drops=["none"])
    models = [m.strip() for m in args.model.split(",") if m.strip()] if args.model else config.models
    tasks = [args.tasks] if args.tasks else config.tasks
    ats = positions(args.at or ",".join(config.positions))
    listed = lambda values: ",".join(map(str, values)) if values else None  # noqa: E731
    specs = grid_specs(args.drop or config.drops, args.k or listed(config.k), args.seeds or listed(config.seeds),
                       args.seed)  # flags override the config
    if not tasks:
        raise LLMTruncError("no tasks: pass --tasks or give `tasks:` in --config")
    return run_grid(args, models, tasks, specs, ats)
