"""`llmtrunc models`: the LLM aliases and where they load from."""

from __future__ import annotations

from llmtrunc.llm.models import DEFAULT_MODEL, MODELS


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list model aliases", description="List the LLM model aliases.")
    parser.set_defaults(func=run)


def run(args) -> int:
    for name, alias in MODELS.items():
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:24s} {alias.source:40s} {alias.description}{default}")
    return 0
