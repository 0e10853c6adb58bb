"""The architecture matrix: every class a hooks/<family>.yaml names, as a tiny random model, through every path.

The models come from each class's own config (tests/helpers/models.py): the family's sliding window
(shorter than the prompts here), softcapping, norm convention, tied or untied head, and the
multimodal wrapper where a file lists one. Paths: post-norm hook == the dropped LM-head columns
zeroed; pre-norm hook == the final norm computed by hand from the file's `norm`, `norm_scale` and
`norm_bias`; shared-body loglikelihoods == separate runs (lm-eval's HFLM scoring) bit for bit at
batch size 1; shared generation == `--separate` at batch size 1 (or the one-line fallback where the
file says `shared_generation: false`); every `export` method, written and reloaded, == the post-norm
hook bit for bit. The activation profile and the drops resolved against it: tests/llm/test_calibration.py,
over the same classes. Adding a hooks/ file adds its classes to every test here.
"""

import copy

import pytest
import torch
import transformers
from lm_eval.api.instance import Instance
from torch import nn
from transformers.cache_utils import DynamicCache, DynamicSlidingWindowLayer

from llmtrunc.data import shipped_dir
from llmtrunc.llm import architectures, export, hooks
from llmtrunc.spec import Mask, parse_drop
from tests.helpers.lm import CONDITIONS, run_conditions, tiny_lm
from tests.helpers.models import CLASSES, TINY, WINDOW, tiny_config, tiny_model

MASK = Mask.of(24, (0, 3, 7, 8, 23))
INPUT = torch.tensor([[5, 17, 3, 88, 41, 9, 60, 12, 33, 71, 8]])  # longer than WINDOW
PROMPTS = ["w5 w17 w3 w88 w41 w9 w60 w12 w33 w71 w8 w44", "w9 w60 w2 w33 w71 w12 w8 w19 w27 w64 w90"]


def test_every_hooks_file_is_in_the_matrix():
    files = {path.name for path in shipped_dir("hooks").glob("*.yaml")}
    assert {architectures.registry().get(name).source for name in CLASSES} == files
    assert len(CLASSES) >= len(files)


# The families whose hooks/ file turns shared generation off, with the reason; today none. A file that turns
# it off (or a loader that stops reading it) fails here until the reason is written down.
NOT_SHARING_GENERATION: dict[str, str] = {}


def test_every_family_shares_generation_unless_listed_with_its_reason():
    off = {architectures.registry().get(name).family for name in CLASSES
           if not architectures.registry().get(name).shared_generation}
    assert off == set(NOT_SHARING_GENERATION)


@pytest.mark.parametrize("name", CLASSES)
def test_a_family_with_a_sliding_window_gets_one_shorter_than_the_prompts(name):
    config = tiny_config(name).get_text_config(decoder=True)
    layers = DynamicCache(config=config).layers
    if getattr(config, "sliding_window", None):
        assert config.sliding_window == WINDOW < INPUT.shape[1]
        assert any(isinstance(layer, DynamicSlidingWindowLayer) for layer in layers)


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


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("tied", [False, True])
def test_post_norm_equals_zeroed_head_columns(name, tied):
    model = tiny_model(name, tied)
    arch = architectures.for_model(model)
    assert arch.family == CLASSES[name] and arch.is_tied(model) == tied
    reference = copy.deepcopy(model)
    with torch.no_grad():
        head = arch.find(reference, "lm_head")
        head.weight = nn.Parameter(head.weight.detach().clone())  # untie the copy, then zero its columns
        head.weight[:, list(MASK.dropped)] = 0
        expected = reference(INPUT).logits
        with hooks.truncated(model, MASK, "post-norm"):
            got = model(INPUT).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", CLASSES)
def test_pre_norm_equals_the_norm_by_hand(name):
    model = tiny_model(name)
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


@pytest.mark.parametrize("name", CLASSES)
def test_head_on_the_kept_states_equals_the_full_forward(name):
    model = tiny_model(name)
    arch = architectures.for_model(model)
    assert arch.shared_body
    state, full = norm_input(model, arch)
    with torch.no_grad():
        torch.testing.assert_close(arch.logits(model, state), full, rtol=0, atol=0)
        with hooks.truncated(model, MASK, "post-norm"):
            truncated = model(INPUT).logits
            torch.testing.assert_close(arch.logits(model, state), truncated, rtol=0, atol=0)


@pytest.fixture
def loaded(tmp_path):
    return lambda name: tiny_lm(tmp_path, name)


@pytest.mark.parametrize("name", CLASSES)
def test_shared_body_loglikelihoods_equal_separate_runs(name, loaded):
    lm = loaded(name)
    requests = [Instance("loglikelihood", {}, (prompt, " w4 w7"), i) for i, prompt in enumerate(PROMPTS)]
    lm.body_passes = 0
    shared = run_conditions(lm, requests, "loglikelihood", shared=True)
    assert lm.body_passes == len(requests)  # one body pass per request served every condition
    separate = run_conditions(lm, requests, "loglikelihood", shared=False)
    assert shared == separate  # batch size 1: bit for bit
    assert len({tuple(v) for v in shared.values()}) == len(CONDITIONS)  # every condition scores differently


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("baseline", ["in the group", "stored"])
def test_shared_generation_equals_separate_at_batch_size_1(name, baseline, loaded, capsys):
    """Prompts longer than the sliding window. With the baseline in the group its generate's prefill is kept (a
    copy of the cache as the prefill left it); with the baseline stored, the first condition prefills."""
    lm = loaded(name)
    settings = {"until": ["w50"], "max_gen_toks": 8, "do_sample": False}
    requests = [Instance("generate_until", {}, (prompt, dict(settings)), i) for i, prompt in enumerate(PROMPTS)]
    conditions = CONDITIONS if baseline == "in the group" else CONDITIONS[1:]
    lm.prefills = 0
    shared = run_conditions(lm, requests, "generate_until", True, conditions)
    said = capsys.readouterr().err
    if lm.arch.shared_generation:
        assert lm.prefills == len(PROMPTS) and "as --separate" not in said  # one prefill per prompt, every condition
    else:
        assert lm.prefills == 0 and said.count("does not share generation") == 1
    separate = run_conditions(lm, requests, "generate_until", False, conditions)
    assert shared == separate
    assert len({tuple(v) for v in shared.values()}) > 1  # the conditions really generate differently


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("tied", [False, True])
def test_every_export_method_reloads_as_the_hook_bit_for_bit(name, tied, tmp_path):
    model = tiny_model(name, tied)
    methods = architectures.for_model(model).export
    assert methods == ("norm", "head")  # norm first: the norm of every known family is exact to edit
    spec = parse_drop("random:25%@1")
    with torch.no_grad(), hooks.truncated(model, spec.mask(TINY["hidden_size"]), "post-norm"):
        expected = model(INPUT).logits
    for method in methods:
        out = export.export_model(model, None, spec, tmp_path / method, via=method)
        assert export.read_drop(out)["verification"]["max_abs_logit_diff"] == 0.0
        reloaded = getattr(transformers, name).from_pretrained(out).eval()
        with torch.no_grad():
            assert torch.equal(reloaded(INPUT).logits, expected)


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
    assert arch.family == "generic" and not arch.shared_body and not arch.shared_generation
    assert arch.find(model, "final_norm") is model.model.final_layernorm and arch.find(model, "lm_head") is model.head
    assert sum("generic search" in r.message for r in caplog.records) == 1  # said once
