"""Shared generation on a tiny model: one prefill, every condition decoded as transformers' generate would."""

import dataclasses

import pytest
import torch
from transformers import AttentionInterface
from lm_eval.api.instance import Instance

from llmtrunc.llm import architectures, hooks, shared_prefix
from llmtrunc.llm.generation import Condition, decode, not_greedy, preallocate, prefill
from llmtrunc.spec import Mask
from tests.helpers.checkpoint import tiny_tokenizer
from tests.helpers.lm import run_conditions, tiny_lm
from tests.helpers.models import tiny_model

PROMPTS = torch.tensor([[0, 0, 5, 17, 3, 88, 41], [9, 60, 2, 33, 71, 12, 8]])  # the first left-padded
MASK = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
CONDITIONS = [Condition(Mask(24, ()), "-"), Condition(Mask.of(24, range(12, 24)), "post-norm"),
              Condition(Mask.of(24, range(12)), "pre-norm"), Condition(Mask.of(24, (0, 3, 7)), "post-norm")]


def separate(model, condition, prompt, mask, max_length):
    """The reference: transformers' generate on one prompt, with llmtrunc's hooks for the condition."""
    with torch.no_grad(), hooks.truncated(model, condition.mask, condition.at if condition.mask.dropped else "post-norm"):
        return model.generate(input_ids=prompt[None], attention_mask=mask[None], max_length=max_length, do_sample=False,
                              pad_token_id=0, eos_token_id=None)[0]


@pytest.mark.parametrize("window", [None, 4, 16])
def test_a_preallocated_cache_layer_is_the_dynamic_layer_written_in_place(window):
    """Full-attention and sliding-window layers (a window shorter and longer than the prompt) give the same
    attended states, kept states, mask sizes and length as transformers' layers step by step, also after
    rows leave and when the room runs out (a room of 2 for 7 steps)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    def layer():
        return DynamicLayer() if window is None else DynamicSlidingWindowLayer(sliding_window=window)

    torch.manual_seed(0)
    prompt = torch.randn(3, 2, 9, 4), torch.randn(3, 2, 9, 4)
    reference, cache = layer(), DynamicCache()
    cache.layers = [layer()]
    reference.update(*prompt)
    cache.layers[0].update(*prompt)
    preallocate(cache, room=2)
    inplace = cache.layers[0]
    assert type(inplace) is not type(reference) and isinstance(inplace, type(reference))
    for step in range(7):
        if step == 3:
            for each in (reference, inplace):
                each.batch_select_indices(torch.tensor([0, 2]))
        new = torch.randn(reference.keys.shape[0], 2, 1, 4), torch.randn(reference.keys.shape[0], 2, 1, 4)
        for got, want in zip(inplace.update(*new), reference.update(*new)):
            assert torch.equal(got, want)
        assert torch.equal(inplace.keys, reference.keys) and torch.equal(inplace.values, reference.values)
        assert inplace.get_mask_sizes(1) == reference.get_mask_sizes(1)
        assert inplace.get_seq_length() == reference.get_seq_length()


def test_padded_batch_matches_generate_on_the_same_batch():
    """Left padding, position ids and the attention mask as generate builds them (one condition, same batch)."""
    model = tiny_model("llama")
    arch = architectures.for_model(model)
    with torch.no_grad():
        batch = prefill(model, arch, PROMPTS, MASK)
        got = decode(model, arch, tiny_tokenizer(), batch, CONDITIONS[:1], 7 + 10, [], set(), 0, 2)[0]
        expected = model.generate(input_ids=PROMPTS, attention_mask=MASK, max_length=17, do_sample=False, pad_token_id=0,
                                  eos_token_id=None)
    assert torch.equal(got, expected)


def test_every_row_is_masked_on_every_step():
    """Two conditions one dimension apart: their logits differ at every step (a step without its hooks would not)."""
    model = tiny_model("llama")
    arch = architectures.for_model(model)
    pair = [Condition(Mask.of(24, range(6)), "post-norm"), Condition(Mask.of(24, range(7)), "post-norm")]
    steps = []
    with torch.no_grad():
        batch = prefill(model, arch, PROMPTS[1:], None)
        decode(model, arch, tiny_tokenizer(), batch, pair, 7 + 10, [], set(), 0, 2,
               on_step=lambda rows, logits: steps.append(dict(zip(rows, logits))))
    assert len(steps) == 10
    assert all(not torch.equal(step[(0, 0)], step[(0, 1)]) for step in steps)


PREFIX_FAMILIES = [a.family for a in dict.fromkeys(architectures.registry().values()) if a.shared_prefix_attention]


@pytest.mark.parametrize("family", PREFIX_FAMILIES)
def test_shared_prefix_attention_equals_a_copy_per_row(family):
    """Rows of a padded prompt batch attending over the prompts' one cached copy (llmtrunc.llm.shared_prefix)
    give the logits of every row attending over its own copy with transformers' attention, up to rounding,
    and the same greedy tokens; rows leaving the batch keep the others' prompts right. Full attention only (a
    model configured with a sliding window gets a copy per row: tests/llm/test_architectures.py)."""
    model = tiny_model(family, window=False)
    arch = architectures.for_model(model)
    assert arch.shared_prefix_attention
    steps = {True: [], False: []}
    used = []
    real = shared_prefix.attention
    with torch.no_grad():
        batch = prefill(model, arch, PROMPTS, MASK)
        free = decode(model, arch, tiny_tokenizer(), batch, CONDITIONS, 7 + 10, [], set(), 0, 8, prefix_once=False)
        eos = {int(free[1][0, 7 + 3])}  # the fourth token of one row: that row ends early
        for once in (True, False):
            with pytest.MonkeyPatch.context() as patch:
                patch.setitem(AttentionInterface._global_mapping, shared_prefix.NAME,
                              lambda *a, **k: used.append(once) or real(*a, **k))  # registered: used as it is
                outs = decode(model, arch, tiny_tokenizer(), batch, CONDITIONS, 7 + 10, [], eos, 0, 8, prefix_once=once,
                              on_step=lambda rows, step: steps[once].append(dict(zip(rows, step))))
            if once:
                first = outs
    assert used and set(used) == {True}  # the shared run used it, on every layer; the copies never
    assert [s.keys() for s in steps[True]] == [s.keys() for s in steps[False]]  # the same rows stepped
    assert len(steps[True][-1]) < len(steps[True][0])  # some rows ended early (at eos) and left the batch
    worst = max(float((a[row] - b[row]).abs().max()) for a, b in zip(steps[True], steps[False]) for row in a)
    print(f"{family}: max |logit difference| {worst:.2g}")
    assert worst < 1e-5  # float32: measured 6e-8 (llama, qwen2)
    assert all(torch.equal(a, b) for a, b in zip(first, outs))


def test_rows_leave_at_eos_and_stop_sequences():
    model = tiny_model("llama")
    arch = architectures.for_model(model)
    tokenizer = tiny_tokenizer()
    with torch.no_grad():
        batch = prefill(model, arch, PROMPTS[1:], None)
        free = decode(model, arch, tokenizer, batch, CONDITIONS, 7 + 12, [], set(), 0, 8)
        first = [int(out[0, 7]) for out in free]  # each condition's first generated token
        eos = decode(model, arch, tokenizer, batch, CONDITIONS, 7 + 12, [], {first[1]}, 0, 8)
        stop = decode(model, arch, tokenizer, batch, CONDITIONS, 7 + 12, [f"w{first[2]}"], set(), 0, 8)
    assert eos[1][0, 7] == first[1] and (eos[1][0, 8:] == 0).all()  # ended at its EOS, then padding
    assert stop[2][0, 7] == first[2] and (stop[2][0, 8:] == 0).all()  # ended at the stop string
    assert torch.equal(eos[0][0, :8], free[0][0, :8])  # the other rows ran on unchanged


def test_sampling_and_processors_are_named():
    model = tiny_model("llama")
    assert "sampling" in not_greedy(model, {"do_sample": True, "temperature": 0.7})
    assert "repetition_penalty=1.3" in not_greedy(model, {"repetition_penalty": 1.3})
    assert not_greedy(model, {"temperature": 0.0, "do_sample": False}) is None


@pytest.mark.parametrize("why,said", [("setting", "repetition_penalty=1.3 needs transformers' own generate"),
                                      ("hooks file", "llama does not share generation (llama.yaml)")])
def test_what_cannot_be_shared_falls_back_to_separate_runs_with_one_line(why, said, tmp_path, capsys):
    """A generation setting the shared decoder does not do, or a family whose hooks/ file says
    `shared_generation: false`: the task's conditions run through generate one by one, as --separate would."""
    lm = tiny_lm(tmp_path, "llama")
    settings = {"until": ["w50"], "max_gen_toks": 6, "do_sample": False}
    if why == "setting":
        settings["repetition_penalty"] = 1.3
    else:
        lm.arch = dataclasses.replace(lm.arch, shared_generation=False)
    requests = [Instance("generate_until", {}, ("w5 w17 w3 w88 w41 w9 w60", dict(settings)), 0)]
    lm.prefills = 0
    shared = run_conditions(lm, requests, "generate_until", shared=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if "as --separate" in line]
    assert lm.prefills == 0 and len(lines) == 1 and said in lines[0]
    assert shared == run_conditions(lm, requests, "generate_until", shared=False)
