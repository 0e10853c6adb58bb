"""Every hooks/<family>.yaml, checked on a tiny random model of that family: the file's facts are true.

post-norm hook == the same model with the dropped LM-head columns zeroed; pre-norm hook == the final
norm computed by hand from the file's `norm`, `norm_scale` and `norm_bias` on the zeroed state;
shared body (decoder states -> Architecture.logits) == the full forward pass; every `export` method,
written and reloaded, == the post-norm hook bit for bit.
"""

import copy

import pytest
import torch
import transformers
from torch import nn

from llmtrunc.llm import architectures, export, hooks
from llmtrunc.spec import Mask, parse_drop
from tests.helpers.models import FAMILIES, tiny_model

MASK = Mask.of(24, (0, 3, 7, 8, 23))
INPUT = torch.tensor([[5, 17, 3, 88, 41, 9, 60]])


def test_every_file_is_covered_by_a_tiny_model():
    files = {arch.family for arch in architectures.registry().values()}
    assert files == set(FAMILIES)  # adding a hooks/ file means adding its tiny model here


def norm_input(model, arch):
    seen = []
    handle = arch.find(model, "final_norm").register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        logits = model(INPUT).logits
    handle.remove()
    return seen[0], logits


def by_hand(arch, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The final norm as hooks/<family>.yaml describes it, in float32."""
    eps = getattr(norm, "variance_epsilon", None) or getattr(norm, "eps")
    x = x.float()
    if arch.norm == "rmsnorm":
        y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    else:
        y = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
    scale = norm.weight.float() + (1 if arch.norm_scale == "1+w" else 0)
    y = y * scale
    if arch.norm_bias:
        y = y + norm.bias.float()
    return y


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tied", [False, True])
def test_post_norm_equals_zeroed_head_columns(family, tied):
    model = tiny_model(family, tied)
    arch = architectures.for_model(model)
    assert arch.family == family and arch.is_tied(model) == tied
    reference = copy.deepcopy(model)
    with torch.no_grad():
        head = arch.find(reference, "lm_head")
        head.weight = nn.Parameter(head.weight.detach().clone())  # untie the copy, then zero its columns
        head.weight[:, list(MASK.dropped)] = 0
        expected = reference(INPUT).logits
        with hooks.truncated(model, MASK, "post-norm"):
            got = model(INPUT).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_pre_norm_equals_the_norm_by_hand(family):
    model = tiny_model(family)
    arch = architectures.for_model(model)
    state, _ = norm_input(model, arch)
    zeroed = state.clone()
    zeroed[..., list(MASK.dropped)] = 0
    norm = arch.find(model, "final_norm")
    with torch.no_grad():
        torch.testing.assert_close(norm(state), by_hand(arch, norm, state), rtol=1e-5, atol=1e-5)  # the facts
        logits = arch.find(model, "lm_head")(by_hand(arch, norm, zeroed))
        cap = arch.softcap(model)
        expected = torch.tanh(logits / cap) * cap if cap else logits
        with hooks.truncated(model, MASK, "pre-norm"):
            got = model(INPUT).logits
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_shared_body_equals_the_full_forward(family):
    model = tiny_model(family)
    arch = architectures.for_model(model)
    assert arch.shared_body
    state, full = norm_input(model, arch)
    with torch.no_grad():
        torch.testing.assert_close(arch.logits(model, state), full, rtol=0, atol=0)
        with hooks.truncated(model, MASK, "post-norm"):
            truncated = model(INPUT).logits
            torch.testing.assert_close(arch.logits(model, state), truncated, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("tied", [False, True])
def test_every_export_method_reloads_as_the_hook_bit_for_bit(family, tied, tmp_path):
    model = tiny_model(family, tied)
    methods = architectures.for_model(model).export
    assert methods == ("norm", "head")  # norm first: the norm of every known family is exact to edit
    spec = parse_drop("random:25%@1")
    with torch.no_grad(), hooks.truncated(model, spec.mask(24), "post-norm"):
        expected = model(INPUT).logits
    for method in methods:
        out = export.export_model(model, None, spec, tmp_path / method, via=method)
        assert export.read_drop(out)["verification"]["max_abs_logit_diff"] == 0.0
        with torch.no_grad():
            assert torch.equal(transformers.AutoModelForCausalLM.from_pretrained(out).eval()(INPUT).logits, expected)


def test_softcapping_is_read_from_the_config():
    model = tiny_model("gemma2")
    assert architectures.for_model(model).softcap(model) == model.config.final_logit_softcapping == 30.0


def test_unknown_architecture_falls_back_to_the_generic_search(caplog):
    class Stack(nn.Module):
        def __init__(self):
            super().__init__()
            self.final_layernorm = nn.LayerNorm(4)

    class NewLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.head = Stack(), nn.Linear(4, 7)

        def get_output_embeddings(self):
            return self.head

    model = NewLM()
    with caplog.at_level("WARNING"):
        arch = architectures.for_model(model)
        architectures.for_model(model)
    assert arch.family == "generic" and not arch.shared_body
    assert arch.find(model, "final_norm") is model.model.final_layernorm and arch.find(model, "lm_head") is model.head
    assert sum("generic search" in r.message for r in caplog.records) == 1  # said once
