"""Test tiers and session fixtures.

`python -m pytest -q` runs the fast tier: everything except tests marked `slow`, the long real-model and
real-engine comparisons. `python -m pytest -q --full` runs every test (what CI runs).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--full", action="store_true",
                     help="the full tier: also the tests marked slow (long real-model and real-engine comparisons)")


def pytest_sessionstart(session):
    """What every entry point does at start-up (llmtrunc.llm.compat.install): tests build LMs and runs directly."""
    from llmtrunc.llm.compat import install

    install()


def pytest_collection_modifyitems(config, items):
    if config.getoption("--full"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def smollm2_dir():
    from llmtrunc.llm.models import resolve_model

    return resolve_model("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random Llama saved as a checkpoint directory with a word-level tokenizer (tests/helpers/checkpoint.py)."""
    from tests.helpers.checkpoint import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", "llama")
