"""The `llmtrunc` console script: one subcommand per module under llmtrunc.commands.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func`.
Errors the user can fix (LLMTruncError) print one line and exit 2, never a traceback.
`run` is the console script: `main`, then the exit (see `exit_with`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from llmtrunc.errors import LLMTruncError
from llmtrunc.parallel import launched_size

COMMANDS = ("models", "eval", "sweep", "attribute", "report", "verify", "export", "encoder")


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports bad flags in one line (usage stays available through --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="llmtrunc",
        description="Remove dimensions of a model's final representation and measure what survives.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=OneLineErrorParser)
    for name in COMMANDS:
        importlib.import_module(f"llmtrunc.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to re-run the command elsewhere (--backend vllm)
    try:
        return args.func(args) or 0
    except LLMTruncError as exc:
        print(f"llmtrunc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llmtrunc: interrupted; completed runs are in the results store and will be reused", file=sys.stderr)
        return 130


def exit_with(code: int) -> None:
    """Exit with `code`. Two kinds of process leave without the interpreter's teardown, where native threads abort
    it ("terminate called without an active exception") after the run's last line: one that ran vLLM engines (shut
    down first; the abort turned a finished run into a failed exit status), and one of a data-parallel run that
    fails (its process group lost a peer: gloo's threads abort after the one-line error). Everything a run
    computes is already written."""
    vllm = sys.modules.get("llmtrunc.llm.vllm_backend")
    engines = vllm is not None and vllm.engines_started()
    if engines:
        vllm.close_engines()
    if engines or (code and launched_size() > 1):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def run() -> None:
    exit_with(main())


if __name__ == "__main__":  # python -m llmtrunc.cli
    run()
