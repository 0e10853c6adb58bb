import copy

import pytest
import torch
from torch import nn

from llmtrunc import hooks
from llmtrunc.errors import LLMTruncError
from tests.conftest import tiny_model

ARCHS = ["llama", "qwen2", "mistral", "gemma", "gemma3"]
DROP = (0, 3, 7, 8, 23)
INPUT = torch.tensor([[5, 17, 3, 88, 41, 9, 60]])


def capture_input(module: nn.Module, store: list):
    return module.register_forward_pre_hook(lambda m, args: store.append(args[0].detach().clone()))


@pytest.mark.parametrize("arch", ARCHS)
def test_finds_norm_and_head(arch):
    model = tiny_model(arch)
    assert hooks.find_lm_head(model) is model.lm_head
    assert hooks.find_final_norm(model) is model.model.norm
    assert hooks.hidden_size(model) == 24


@pytest.mark.parametrize("arch", ARCHS)
def test_post_norm_zeroes_exactly_the_named_dims(arch):
    model = tiny_model(arch)
    clean, cut = [], []
    handle = capture_input(model.lm_head, clean)
    with torch.no_grad():
        model(INPUT)
    handle.remove()
    with torch.no_grad(), hooks.truncated(model, DROP, "post-norm"):
        handle = capture_input(model.lm_head, cut)  # registered after the truncation hook: sees its output
        model(INPUT)
    handle.remove()
    keep = [i for i in range(24) if i not in DROP]
    assert torch.all(cut[0][..., list(DROP)] == 0)
    assert torch.equal(cut[0][..., keep], clean[0][..., keep])  # bit-identical elsewhere
    assert not torch.all(clean[0][..., list(DROP)] == 0)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_post_norm_equals_zeroed_head_columns_on_untied_copy(arch):
    model = tiny_model(arch)
    copy_ = copy.deepcopy(model)
    with torch.no_grad():
        copy_.lm_head.weight[:, list(DROP)] = 0
        expected = copy_(INPUT).logits
        with hooks.truncated(model, DROP, "post-norm"):
            got = model(INPUT).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_pre_norm_equals_hand_computation_through_final_norm(arch):
    model = tiny_model(arch)
    last_layer_out = []
    handle = capture_input(model.model.norm, last_layer_out)
    with torch.no_grad():
        model(INPUT)
        handle.remove()
        x = last_layer_out[0].clone()
        x[..., list(DROP)] = 0
        expected = model.lm_head(model.model.norm(x))
        if getattr(model.config, "final_logit_softcapping", None):
            cap = model.config.final_logit_softcapping
            expected = torch.tanh(expected / cap) * cap
        with hooks.truncated(model, DROP, "pre-norm"):
            got = model(INPUT).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_generation_is_truncated_at_every_step():
    model = tiny_model("qwen2")
    ref = copy.deepcopy(model)
    seen = []
    with torch.no_grad():
        ref.lm_head.weight[:, list(DROP)] = 0
        with hooks.truncated(model, DROP, "post-norm"):
            spy = capture_input(model.lm_head, seen)
            out = model.generate(INPUT, max_new_tokens=6, do_sample=False, min_new_tokens=6)
            spy.remove()
        # manual greedy decoding with the zeroed-column copy, no cache
        ids = INPUT
        for _ in range(6):
            ids = torch.cat([ids, ref(ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)
    assert len(seen) == 6  # one LM-head call per decoding step, each truncated
    assert all(torch.all(s[..., list(DROP)] == 0) for s in seen)


def test_remove_restores_the_model_exactly():
    model = tiny_model("llama")
    with torch.no_grad():
        before = model(INPUT).logits
        handle = hooks.attach(model, DROP)
        during = model(INPUT).logits
        handle.remove()
        after = model(INPUT).logits
    assert torch.equal(before, after)
    assert not torch.equal(before, during)


def test_tied_embeddings_are_never_modified():
    model = tiny_model("llama", tied=True)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    weights = model.model.embed_tokens.weight.detach().clone()
    with torch.no_grad(), hooks.truncated(model, DROP):
        model(INPUT)
        model.generate(INPUT, max_new_tokens=3, do_sample=False)
    assert torch.equal(model.model.embed_tokens.weight, weights)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_empty_drop_attaches_nothing():
    model = tiny_model("llama")
    handle = hooks.attach(model, ())
    assert handle.handle is None and not model.lm_head._forward_pre_hooks


def test_errors_are_clear():
    model = tiny_model("llama")
    with pytest.raises(LLMTruncError, match="out of range"):
        hooks.attach(model, (24,))
    with pytest.raises(LLMTruncError, match="unknown position"):
        hooks.attach(model, (1,), "mid-norm")

    class NotALM(nn.Module):
        def get_output_embeddings(self):
            return nn.Linear(4, 4)

    with pytest.raises(LLMTruncError, match="cannot find the final norm of NotALM"):
        hooks.attach(NotALM(), (1,), "pre-norm")
    with pytest.raises(LLMTruncError, match="LM head"):
        hooks.find_lm_head(nn.Linear(3, 3))
