"""The hooks on tiny models: every decoding step truncated, exact removal, tied weights untouched, clear errors."""

import copy

import pytest
import torch
from torch import nn

from llmtrunc.llm import hooks
from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import Mask
from tests.helpers.models import tiny_model

DROP = Mask.of(24, (0, 3, 7, 8, 23))
INPUT = torch.tensor([[5, 17, 3, 88, 41, 9, 60]])


def capture_input(module: nn.Module, store: list):
    return module.register_forward_pre_hook(lambda m, args: store.append(args[0].detach().clone()))


def test_generation_is_truncated_at_every_step():
    model = tiny_model("qwen2")
    ref = copy.deepcopy(model)
    seen = []
    with torch.no_grad():
        ref.lm_head.weight[:, list(DROP.dropped)] = 0
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
    assert all(torch.all(s[..., list(DROP.dropped)] == 0) for s in seen)


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
    handle = hooks.attach(model, Mask(24, ()))
    assert handle.handle is None and not model.lm_head._forward_pre_hooks


def test_errors_are_clear():
    model = tiny_model("llama")
    with pytest.raises(LLMTruncError, match="out of range"):
        Mask.of(24, (24,))
    with pytest.raises(LLMTruncError, match="hidden size is 24"):
        hooks.attach(model, Mask.of(25, (1,)))
    with pytest.raises(LLMTruncError, match="unknown position"):
        hooks.attach(model, Mask.of(24, (1,)), "mid-norm")

    class NotALM(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 4)

        def get_output_embeddings(self):
            return self.head

    with pytest.raises(LLMTruncError, match="cannot find the final norm of NotALM"):
        hooks.attach(NotALM(), Mask.of(4, (1,)), "pre-norm")
    with pytest.raises(LLMTruncError, match="LM head"):
        hooks.find_lm_head(nn.Linear(3, 3))
