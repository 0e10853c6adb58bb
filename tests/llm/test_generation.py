"""Shared generation on a tiny model: one prefill, every condition decoded as transformers' generate would."""

import pytest
import torch

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import architectures, hooks, shared_prefix
from llmtrunc.llm.generation import Condition, check_greedy, decode, prefill
from llmtrunc.spec import Mask
from tests.helpers.checkpoint import tiny_tokenizer
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


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
def test_rows_decoded_alone_equal_generate(family):
    """Batch size 1: one prompt per prefill and one row at a time, as a separate run at batch size 1."""
    model = tiny_model(family)
    arch = architectures.for_model(model)
    for prompt in (PROMPTS[0, 2:], PROMPTS[1]):
        with torch.no_grad():
            batch = prefill(model, arch, prompt[None], None)
            shared = decode(model, arch, tiny_tokenizer(), batch, CONDITIONS, len(prompt) + 12, [], set(), 0, 1)
        for condition, out in zip(CONDITIONS, shared):
            assert torch.equal(out[0], separate(model, condition, prompt, torch.ones_like(prompt), len(prompt) + 12))


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


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_shared_prefix_attention_equals_a_copy_per_row(family):
    """Rows of a padded prompt batch attending over the prompts' one cached copy (llmtrunc.llm.shared_prefix)
    give the logits of every row attending over its own copy with transformers' attention, up to rounding,
    and the same greedy tokens; rows leaving the batch keep the others' prompts right."""
    model = tiny_model(family)
    arch = architectures.for_model(model)
    assert arch.shared_prefix_attention
    steps = {True: [], False: []}
    used = []
    real = shared_prefix.attention
    with torch.no_grad():
        batch = prefill(model, arch, PROMPTS, MASK)
        for once in (True, False):
            with pytest.MonkeyPatch.context() as patch:
                patch.setitem(shared_prefix.AttentionInterface._global_mapping, shared_prefix.NAME,
                              lambda *a, **k: used.append(once) or real(*a, **k))
                outs = decode(model, arch, tiny_tokenizer(), batch, CONDITIONS, 7 + 10, [], {5}, 0, 8, prefix_once=once,
                              on_step=lambda rows, step: steps[once].append(dict(zip(rows, step))))
            if once:
                first = outs
    assert used and set(used) == {True}  # the shared run used it, on every layer; the copies never
    assert [s.keys() for s in steps[True]] == [s.keys() for s in steps[False]]  # the same rows stepped
    assert len(steps[True][-1]) < len(steps[True][0])  # some rows ended early (EOS 5) and left the batch
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


def test_sampling_and_processors_are_refused():
    model = tiny_model("llama")
    with pytest.raises(LLMTruncError, match="--separate"):
        check_greedy(model, {"do_sample": True, "temperature": 0.7})
    with pytest.raises(LLMTruncError, match="repetition_penalty"):
        check_greedy(model, {"repetition_penalty": 1.3})
    check_greedy(model, {"temperature": 0.0, "do_sample": False})
