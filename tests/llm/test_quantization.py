"""bitsandbytes loading: labels, the capability probe and its one-line refusals, the model args ->
BitsAndBytesConfig hand-off to HFLM, and real 8-bit and 4-bit runs on this CPU (tiny model here; SmolLM2 end to
end, slow)."""

import importlib.util
import logging

import pytest
import torch
from rich.console import Console
from transformers import BitsAndBytesConfig

from llmtrunc.cli import main
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import compat, quantization
from llmtrunc.llm.evaluate import LLMCompute, RunSettings, llm_cells
from llmtrunc.llm.hf_trunc import HFTruncLM
from llmtrunc.llm.models import resolve_model
from llmtrunc.llm.shared_body import SharedBodyLM
from llmtrunc.llm.tasks import resolve_tasks
from llmtrunc.retention import with_baseline
from llmtrunc.runner import Runner
from llmtrunc.spec import parse_drop, parse_drops
from llmtrunc.store import ResultsStore
from tests.helpers.checkpoint import save_tiny, tiny_tokenizer
from tests.helpers.models import SPECIAL_TOKENS, TINY
from tests.helpers.requests import arc_requests


def save_tiny_for_4bit(folder):
    """A tiny random Llama whose every quantised layer has a multiple of 32 outputs: bitsandbytes' CPU 4-bit kernel
    packs weights in blocks of 32 rows (AssertionError "N must be divisible by block_n" otherwise)."""
    import transformers

    torch.manual_seed(0)
    config = transformers.LlamaConfig(**{**TINY, "hidden_size": 64, "intermediate_size": 128}, **SPECIAL_TOKENS)
    transformers.LlamaForCausalLM(config).eval().save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


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


@pytest.mark.parametrize("label", quantization.LABELS)
def test_the_probe_runs_both_kinds_on_this_cpu(label):
    assert quantization.probe(label, "cpu") is None  # bitsandbytes >= 0.45 has CPU kernels for both
    assert quantization.hf_model_kwargs(**{f"load_in_{label[4:]}": True}) == ({"quantization": label}, label)


def test_a_device_bitsandbytes_cannot_use_is_refused_in_one_line_with_its_reason():
    assert not torch.cuda.is_available()  # this machine: torch without CUDA, so bitsandbytes cannot place a layer there
    with pytest.raises(LLMTruncError) as err:
        quantization.hf_model_kwargs(load_in_4bit=True, device="cuda")
    assert str(err.value) == ("bnb-4bit loading on cuda: the installed bitsandbytes cannot run it "
                              "(Torch not compiled with CUDA enabled)")


def test_int8_matmuls_log_no_cast_note_per_call(caplog):
    """bitsandbytes logs a float32 -> float16 cast note at every int8 matmul (hundreds per forward pass); not here."""
    bnb = quantization.import_bitsandbytes()
    layer = bnb.nn.Linear8bitLt(64, 32, has_fp16_weights=False).to("cpu")
    with caplog.at_level(logging.INFO):
        layer(torch.ones(2, 64))
    assert caplog.records == []


def test_unknown_label():
    with pytest.raises(LLMTruncError, match="unknown quantization 'gptq'"):
        quantization.check_available("gptq")


def test_kwargs_and_configs():
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


def test_mixin_turns_the_model_arg_into_quantization_config():
    lm = Quantised()
    lm.device = "cpu"
    lm._create_model("dir", quantization_config=None, quantization="bnb-4bit", revision="main", dtype="auto")
    assert isinstance(lm.seen["quantization_config"], BitsAndBytesConfig) and lm.seen["quantization_config"].load_in_4bit
    assert "quantization" not in lm.seen and lm.seen["revision"] == "main"
    assert lm.quantization == "bnb-4bit"


def test_mixin_leaves_unquantised_loading_alone():
    lm = Quantised()
    lm._create_model("dir", quantization_config=None, revision="main")
    assert lm.seen == {"quantization_config": None, "revision": "main"}


def test_mixin_refuses_double_quantisation():
    with pytest.raises(LLMTruncError, match="already quantised"):
        Quantised()._create_model("dir", quantization_config=object(), quantization="bnb-8bit")


@pytest.mark.parametrize("label, layer", [("bnb-8bit", "Linear8bitLt"), ("bnb-4bit", "Linear4bit")])
def test_quantised_hf_trunc_on_cpu_zeroes_exactly_the_head_input(tmp_path, label, layer):
    """Loaded through HFLM (the mixin's config), bitsandbytes layers in the body, the LM head left alone; the hooked
    head input (what the head's forward received, after every pre-hook) is the unhooked one with exactly the dropped
    dimensions zeroed."""
    lm = HFTruncLM(pretrained=str(save_tiny_for_4bit(tmp_path / "tiny")), device="cpu", batch_size=1, quantization=label)
    assert lm.model.config.quantization_config.quant_method == "bitsandbytes"
    check_head_input_zeroed_exactly(lm, label, layer, "random:50%@3")


def check_head_input_zeroed_exactly(lm, label: str, layer: str, drop: str) -> None:
    """bitsandbytes layers in the body, the LM head left alone, and the head input under `drop` (what the head's
    forward received, after every pre-hook) equal to the unhooked one with exactly the dropped dimensions zeroed."""
    assert lm.quantization == label and type(lm.model.model.layers[0].mlp.down_proj).__name__ == layer
    assert type(lm.model.lm_head) is torch.nn.Linear
    heads, shared = [], lm.shared
    spy = lm.model.lm_head.register_forward_hook(lambda module, args, out: heads.append(args[0].detach().clone()))
    lm.shared = False  # both conditions through the full forward pass (the shared body's head sees other shapes)
    try:
        lm.set_drop(parse_drop("none"))
        lm.loglikelihood(arc_requests(2))
        mask = lm.set_drop(parse_drop(drop))
        lm.loglikelihood(arc_requests(2))
    finally:
        spy.remove()
        lm.set_drop(parse_drop("none"))
        lm.shared = shared
    full, dropped = heads[: len(heads) // 2], heads[len(heads) // 2:]
    assert len(full) == len(dropped) > 0
    for kept, zeroed in zip(full, dropped):
        expected = kept.clone()
        expected[..., list(mask.dropped)] = 0
        assert torch.equal(zeroed, expected) and kept[..., list(mask.dropped)].abs().sum() > 0


def check_own_baselines(records) -> None:
    """Each quantisation is its own settings (so its own cell keys): retention pairs every drop with the baseline of
    its own kind, never another kind's."""
    kinds = records["quantization"].fillna("none")
    assert records.groupby(kinds)["settings_id"].nunique().eq(1).all() and records["settings_id"].nunique() == kinds.nunique()
    merged = with_baseline(records)
    assert len(merged) == 2 * (kinds.nunique() - 1) and merged["baseline"].notna().all()  # acc, acc_norm per quantised drop
    baselines = records[records["drop"] == "none"]
    for _, row in merged.iterrows():
        own = baselines[(baselines["settings_id"] == row["settings_id"]) & (baselines["metric"] == row["metric"])]
        assert own["quantization"].tolist() == [row["quantization"]] and own["value"].item() == row["baseline"]


def test_a_quantised_run_computes_its_own_baseline(tmp_path, capsys):
    """An unquantised baseline in the store first: the 4-bit run does not reuse it, and its records say bnb-4bit."""
    common = ["eval", "--model", str(save_tiny_for_4bit(tmp_path / "tiny")), "--tasks", "arc_easy", "--limit", "4",
              "--results-dir", str(tmp_path / "store")]
    assert main(common + ["--drop", "none"]) == 0
    capsys.readouterr()
    assert main(common + ["--drop", "last-half", "--load-in-4bit"]) == 0
    said = capsys.readouterr().err
    assert "reusing" not in said and "[2/2]" in said
    records = ResultsStore(tmp_path / "store").records()
    assert records["quantization"].fillna("none").value_counts().to_dict() == {"none": 2, "bnb-4bit": 4}
    check_own_baselines(records)


@pytest.mark.slow
def test_smollm2_in_8bit_and_4bit_on_cpu(tmp_path):
    """The real model (its dense GGUF copy) loaded in 8-bit and in 4-bit on this CPU: the hooked head input against
    the manually zeroed one, then the runner's records, which carry the quantisation and meet only their own
    baseline (an unquantised one is in the same store). About a minute: bitsandbytes' CPU matmuls are 2-3x
    slower than float32 ones, so the drop is scored from the shared body."""
    store = ResultsStore(tmp_path / "store")
    tasks = resolve_tasks(["arc_easy"])
    for label, layer in ((None, None), ("bnb-8bit", "Linear8bitLt"), ("bnb-4bit", "Linear4bit")):
        lm = SharedBodyLM(pretrained="smollm2-135m", device="cpu", batch_size=1, **({"quantization": label} if label else {}))
        if label:
            check_head_input_zeroed_exactly(lm, label, layer, "last-half")
        settings = RunSettings(model=resolve_model("smollm2-135m"), limit=2, quantization=label)
        cells = llm_cells([settings], tasks, parse_drops(["none,last-half"]), ["post-norm"])
        Runner(store, Console(quiet=True)).run(cells if label else cells[:1], LLMCompute(loaded=lm))
        del lm
    records = store.records()
    assert records["quantization"].fillna("none").value_counts().to_dict() == {"none": 2, "bnb-8bit": 4, "bnb-4bit": 4}
    assert set(records["compute"]) == {"shared"}  # the drop scored from the quantised body's kept states
    check_own_baselines(records)
