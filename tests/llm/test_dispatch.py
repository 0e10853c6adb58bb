"""Hooks on dispatched models (device_map / accelerate offload): they act on whatever device the input is on."""

import pytest
import torch
import transformers

from llmtrunc.llm import hooks
from llmtrunc.spec import Mask
from tests.helpers.models import tiny_model
from tests.helpers.checkpoint import save_tiny

DROP = Mask.of(24, (0, 3, 7, 8, 23))
INPUT = torch.tensor([[5, 17, 3, 88, 41, 9, 60]])


def reference_logits(model):
    """The hook's exact equivalent: a copy of the model with the dropped LM-head columns zeroed."""
    import copy

    ref = copy.deepcopy(model)
    with torch.no_grad():
        ref.lm_head.weight[:, list(DROP.dropped)] = 0
        return ref(INPUT).logits


def test_index_follows_the_input_device():
    index = torch.tensor([1, 3])  # created on CPU, like the hook's
    x = torch.ones(2, 3, 5, device="meta")
    out = hooks.zero_dims(x, index)
    assert out.device.type == "meta" and out.shape == x.shape


@pytest.mark.parametrize("at", ["post-norm", "pre-norm"])
def test_hooks_under_accelerate_offload(at):
    """accelerate's AlignDevicesHook wraps forward (weights live on meta until the call); our pre-hook still applies."""
    from accelerate import cpu_offload

    model = tiny_model("llama")
    with torch.no_grad(), hooks.truncated(model, DROP, at):
        expected = model(INPUT).logits
    cpu_offload(model, execution_device="cpu")
    assert model.lm_head.weight.device.type == "meta"
    with torch.no_grad(), hooks.truncated(model, DROP, at):
        got = model(INPUT).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_hooks_on_a_device_mapped_model(tmp_path):
    """from_pretrained with a device_map that splits the model (head and final norm offloaded to disk)."""
    folder = save_tiny(tmp_path / "tiny", "llama")
    plain = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    device_map = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.rotary_emb": "cpu",
                  "model.norm": "disk", "lm_head": "disk"}
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, device_map=device_map,
                                                              offload_folder=str(tmp_path / "offload")).eval()
    assert model.hf_device_map["lm_head"] == "disk" and model.lm_head.weight.device.type == "meta"
    with torch.no_grad(), hooks.truncated(model, DROP, "post-norm"):
        got = model(INPUT).logits
    torch.testing.assert_close(got, reference_logits(plain), rtol=0, atol=1e-6)
