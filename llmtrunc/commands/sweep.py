"""`llmtrunc sweep`: run a grid of models x drops x positions x tasks, resumably and sharded."""

from __future__ import annotations

from llmtrunc.commands.eval import add_model_options, add_task_options, build_settings, parse_seeds
from llmtrunc.errors import LLMTruncError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of drop conditions (resumable, shardable, compute-once)",
        description="Run models x drops (x seeds, x K) x positions x tasks from flags or a YAML config "
                    "(keys: models, tasks, drops, seeds, k, positions). Finished cells are skipped; "
                    "loglikelihood tasks run the transformer body once for all conditions.",
    )
    add_model_options(parser)
    add_task_options(parser, required=False)
    parser.add_argument("--config", help="YAML file with models, tasks, drops, seeds, k, positions")
    parser.add_argument("--drop", action="append", default=None,
                        help="drop specs (repeatable/comma-separated); bare first/last/random expand over --k")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds for random drops")
    parser.add_argument("--k", default=None, help="comma-separated K grid for bare first/last/random, e.g. 25%%,50%%,75%%")
    parser.add_argument("--at", default="post-norm", help="comma-separated positions: post-norm, pre-norm")
    parser.add_argument("--shard", default=None, help="i/n: run only the i-th of n contiguous blocks of cells")
    parser.add_argument("--dry-run", action="store_true", help="list the cells (and which are done) without running")
    parser.add_argument("--separate", action="store_true",
                        help="run every condition through the full model (no shared body), e.g. to compare")
    parser.set_defaults(func=run)


def sweep_config(args):
    from llmtrunc.hooks import POSITIONS
    from llmtrunc.sweep import SweepConfig

    config = SweepConfig.from_yaml(args.config) if args.config else SweepConfig(models=[args.model], tasks=[])
    if args.tasks:
        config.tasks = [t for t in args.tasks.split(",") if t.strip()]
    if args.drop:
        config.drops = args.drop
    if args.seeds:
        config.seeds = parse_seeds(args.seeds)
    if args.k:
        config.k = [k for k in args.k.split(",") if k.strip()]
    if not args.config or args.at != "post-norm":
        config.positions = [p for p in args.at.split(",") if p.strip()]
    bad = [p for p in config.positions if p not in POSITIONS]
    if bad:
        raise LLMTruncError(f"unknown position {bad[0]!r}: choose post-norm or pre-norm")
    if not config.tasks:
        raise LLMTruncError("no tasks: pass --tasks or give `tasks:` in --config")
    return config


def run(args) -> int:
    from rich.console import Console

    from llmtrunc.evaluate import LMProvider, cell_id, run_cells, use_data_dir
    from llmtrunc.shared_body import SharedBodyLM
    from llmtrunc.store import ResultsStore
    from llmtrunc.sweep import grid, parse_shard, shard
    from llmtrunc.tasks import check_num_fewshot, resolve_tasks

    console = Console(stderr=True)
    config = sweep_config(args)
    index, total = parse_shard(args.shard)
    use_data_dir(args.data_dir)
    tasks = resolve_tasks(config.tasks, args.data_dir, args.hub_tasks)
    check_num_fewshot(tasks, args.num_fewshot)
    settings = {model: build_settings(args, model) for model in config.models}
    store = ResultsStore(args.output)
    mine = shard(grid(config, tasks), index, total)
    console.print(f"shard {index}/{total}: {len(mine)} cells")
    if args.dry_run:
        for model, cell in mine:
            done = store.has_run(cell_id(settings[model], cell.spec, cell.at, cell.task))
            print(f"{'done   ' if done else 'pending'} {model} {cell.task.name} {cell.spec.name} {cell.at}")
        return 0
    for model in config.models:
        cells = [cell for m, cell in mine if m == model]
        if not cells:
            continue
        provider = LMProvider(settings[model], None if args.separate else SharedBodyLM,
                              args.tensor_parallel_size, args.data_parallel_size)
        last_task = None
        for cell in cells:
            if cell.task != last_task:
                provider.clear_cache()
            last_task = cell.task
            run_cells([cell], settings[model], store, provider, args.log_samples, console)
    console.print(f"results store: {store.root}")
    return 0
