"""vLLM backend without vLLM: refusals, the install hint, export caching, and the args handed to lm-eval's VLLM."""

import importlib.util
import sys
import types

import pytest

from llmtrunc.llm import export, vllm_backend
from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import parse_drop
from tests.helpers.checkpoint import save_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tiny") / "qwen2")


def test_pre_norm_refused_before_anything(tiny_dir, tmp_path):
    with pytest.raises(LLMTruncError, match="pre-norm drops cannot be expressed as weights"):
        vllm_backend.vllm_lm({"model": str(tiny_dir)}, parse_drop("last-half"), "pre-norm", export_root=tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_missing_vllm_says_how_to_install(tiny_dir, tmp_path):
    with pytest.raises(LLMTruncError) as err:
        vllm_backend.vllm_lm({"model": str(tiny_dir)}, parse_drop("last-half"), export_root=tmp_path)
    assert str(err.value) == "vLLM backend needs the optional extra: pip install 'llmtrunc[vllm]'"
    assert not any(tmp_path.iterdir())  # refused before exporting


def test_export_dirs_are_keyed_by_model_and_drop(tiny_dir, tmp_path):
    settings = {"model": str(tiny_dir), "dtype": "auto"}
    a = vllm_backend.export_dir(settings, parse_drop("last-half"), "post-norm", tmp_path)
    assert a == vllm_backend.export_dir(settings, parse_drop("last:50%"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir(settings, parse_drop("first-half"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir({**settings, "dtype": "bfloat16"}, parse_drop("last-half"), "post-norm", tmp_path)
    assert a != vllm_backend.export_dir(settings, parse_drop("random:50%@1"), "post-norm", tmp_path)
    assert a.name.startswith("qwen2__last_50_")


def test_cached_export_is_written_once(tiny_dir, tmp_path, monkeypatch):
    settings = {"model": str(tiny_dir)}
    first = vllm_backend.cached_export(settings, parse_drop("first:25%"), export_root=tmp_path)
    assert export.read_drop(first)["indices"] == [0, 1, 2, 3, 4, 5]
    monkeypatch.setattr(export, "export", lambda *a, **k: pytest.fail("exported twice"))
    assert vllm_backend.cached_export(settings, parse_drop("first:25%"), export_root=tmp_path) == first


def test_model_args():
    args = vllm_backend.vllm_model_args("/x", tensor_parallel_size=2, data_parallel_size=4, dtype="bfloat16")
    assert args == {"pretrained": "/x", "tensor_parallel_size": 2, "data_parallel_size": 4, "dtype": "bfloat16",
                    "batch_size": "auto"}
    assert vllm_backend.model_args_string(args).startswith("pretrained=/x,tensor_parallel_size=2,data_parallel_size=4")
    with pytest.raises(LLMTruncError, match=">= 1"):
        vllm_backend.vllm_model_args("/x", tensor_parallel_size=0)


@pytest.fixture
def fake_vllm(monkeypatch):
    """Stand-in for lm_eval.models.vllm_causallms (which imports vllm at module level)."""
    seen = {}

    class VLLM:
        def __init__(self, pretrained, **kwargs):
            seen.update(pretrained=pretrained, **kwargs)

    module = types.ModuleType("lm_eval.models.vllm_causallms")
    module.VLLM = VLLM
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", module)
    monkeypatch.setattr(vllm_backend, "require_vllm", lambda: None)
    return seen


def test_vllm_lm_runs_lm_eval_vllm_on_the_export(fake_vllm, tiny_dir, tmp_path):
    spec = parse_drop("last-half")
    lm = vllm_backend.vllm_lm({"model": str(tiny_dir), "dtype": "float32"}, spec, "post-norm",
                              tensor_parallel_size=2, data_parallel_size=4, export_root=tmp_path,
                              gpu_memory_utilization=0.8)
    assert export.read_drop(fake_vllm["pretrained"])["spec"] == "last:50%"
    assert fake_vllm["pretrained"].startswith(str(tmp_path))
    assert fake_vllm["tensor_parallel_size"] == 2 and fake_vllm["data_parallel_size"] == 4
    assert fake_vllm["dtype"] == "float32" and fake_vllm["gpu_memory_utilization"] == 0.8
    assert lm.hidden_size == 24 and lm.backend == "vllm"
    assert lm.set_drop(parse_drop("last:50%"), "post-norm").dropped == tuple(range(12, 24))
    with pytest.raises(LLMTruncError, match="one LM per drop"):
        lm.set_drop(parse_drop("first-half"), "post-norm")


def test_vllm_lm_baseline_uses_the_original_checkpoint(fake_vllm, tiny_dir, tmp_path):
    lm = vllm_backend.vllm_lm({"model": str(tiny_dir)}, parse_drop("none"), export_root=tmp_path)
    assert fake_vllm["pretrained"] == str(tiny_dir.resolve()) and not any(tmp_path.iterdir())
    assert lm.set_drop(parse_drop("none"), "post-norm").dropped == ()
