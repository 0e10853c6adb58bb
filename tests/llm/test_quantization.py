"""bitsandbytes loading: labels, one-line errors, and the model args -> BitsAndBytesConfig hand-off to HFLM."""

import importlib.util

import pytest
import torch
from transformers import BitsAndBytesConfig

from llmtrunc.llm import compat, quantization
from llmtrunc.errors import LLMTruncError
from tests.helpers.checkpoint import save_tiny


def test_labels():
    assert quantization.quantization_label() is None
    assert quantization.quantization_label(load_in_8bit=True) == "bnb-8bit"
    assert quantization.quantization_label(load_in_4bit=True) == "bnb-4bit"
    with pytest.raises(LLMTruncError, match="not both"):
        quantization.quantization_label(True, True)


def test_no_quantization_needs_nothing():
    assert quantization.hf_model_kwargs() == ({}, None)


def test_missing_bitsandbytes_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(LLMTruncError, match=r"needs bitsandbytes.*pip install 'llmtrunc\[quant\]'") as err:
        quantization.hf_model_kwargs(load_in_8bit=True)
    assert "\n" not in str(err.value)


def test_no_cuda_is_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LLMTruncError, match="bnb-4bit loading needs a CUDA GPU"):
        quantization.hf_model_kwargs(load_in_4bit=True)


def test_unknown_label():
    with pytest.raises(LLMTruncError, match="unknown quantization 'gptq'"):
        quantization.check_available("gptq")


@pytest.fixture
def bnb_ok(monkeypatch):
    monkeypatch.setattr(quantization, "check_available", lambda label: None)


def test_kwargs_and_configs_when_available(bnb_ok):
    assert quantization.hf_model_kwargs(load_in_8bit=True) == ({"quantization": "bnb-8bit"}, "bnb-8bit")
    eight = quantization.bnb_config("bnb-8bit")
    assert isinstance(eight, BitsAndBytesConfig) and eight.load_in_8bit and not eight.load_in_4bit
    four = quantization.bnb_config("bnb-4bit", "float16")
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_compute_dtype == torch.float16
    with pytest.raises(LLMTruncError, match="compute dtype"):
        quantization.bnb_config("bnb-4bit", "float8")


class Recorder:
    def _create_model(self, *args, **kwargs):
        self.seen = kwargs


class Quantised(compat.QuantizedLoadMixin, Recorder):
    pass


def test_mixin_turns_the_model_arg_into_quantization_config(bnb_ok):
    lm = Quantised()
    lm._create_model("dir", quantization_config=None, quantization="bnb-4bit", revision="main", dtype="auto")
    assert isinstance(lm.seen["quantization_config"], BitsAndBytesConfig) and lm.seen["quantization_config"].load_in_4bit
    assert "quantization" not in lm.seen and lm.seen["revision"] == "main"
    assert lm.quantization == "bnb-4bit"


def test_mixin_leaves_unquantised_loading_alone():
    lm = Quantised()
    lm._create_model("dir", quantization_config=None, revision="main")
    assert lm.seen == {"quantization_config": None, "revision": "main"}


def test_mixin_refuses_double_quantisation(bnb_ok):
    with pytest.raises(LLMTruncError, match="already quantised"):
        Quantised()._create_model("dir", quantization_config=object(), quantization="bnb-8bit")


def test_mixin_with_lm_eval_hflm_on_cpu(tmp_path, monkeypatch):
    """HFLM forwards the arg to _create_model: unquantised loads as before; bnb on CPU fails in one line."""
    from lm_eval.models.huggingface import HFLM

    class QHFLM(compat.QuantizedLoadMixin, HFLM):
        pass

    folder = save_tiny(tmp_path / "tiny")
    lm = QHFLM(pretrained=str(folder), device="cpu", batch_size=1)
    assert lm.model.config.hidden_size == 24 and getattr(lm, "quantization", None) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LLMTruncError, match="bnb-8bit loading needs"):
        QHFLM(pretrained=str(folder), device="cpu", batch_size=1, quantization="bnb-8bit")
