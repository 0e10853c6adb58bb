"""scripts/bench_gpu.py is for GPU machines: without CUDA it stops with a clear message (CI never needs a GPU),
and its --smoke mode runs every measurement on a tiny CPU model, so the script works when a GPU is lent."""

import importlib.util
import re
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the benchmark would run")
def test_without_cuda_it_says_so(capsys):
    assert load_script().main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_smoke_runs_every_measurement_exactly(capsys):
    assert load_script().main(["--smoke"]) == 0
    out = capsys.readouterr().out
    assert "loglikelihood 2x32" in out and "greedy decode 2x4" in out
    assert float(re.search(r"zeroed-column head: max \|diff\| = (\S+)", out)[1]) == 0  # zero times w is zero
    assert "compute once: 10 conditions x 16 requests" in out
    assert float(re.search(r"loglikelihoods max \|diff\| (\S+),", out)[1]) < 1e-4
    assert "greedy flags equal: True" in out
