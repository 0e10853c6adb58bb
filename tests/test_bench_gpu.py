"""scripts/bench_gpu.py is for GPU machines: without CUDA it stops with a clear message (CI never needs a GPU)."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_gpu.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run")
def test_without_cuda_it_says_so(capsys):
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
