"""The `llmtrunc` console script: one subcommand per module under llmtrunc.commands.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func`.
Errors the user can fix (LLMTruncError) print one line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from llmtrunc.errors import LLMTruncError

COMMANDS = ("models", "eval", "sweep", "attribute", "report", "export", "encoder")


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


if __name__ == "__main__":  # python -m llmtrunc.cli
    sys.exit(main())
