"""hf-trunc against plain lm-eval HF on the real offline SmolLM2 (tied embeddings)."""

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM

from llmtrunc.llm.hf_trunc import HFTruncLM
from llmtrunc.spec import parse_drop
from tests.helpers.requests import arc_requests


@pytest.fixture(scope="module")
def trunc_lm():
    return HFTruncLM(pretrained="smollm2-135m", drop="none", device="cpu", batch_size=4)


def test_drop_none_equals_plain_lm_eval_hf_bit_for_bit(trunc_lm, smollm2_dir):
    plain = HFLM(pretrained=smollm2_dir.pretrained, gguf_file=smollm2_dir.gguf_file, device="cpu", batch_size=4)
    requests = arc_requests()
    expected = plain.loglikelihood(requests)
    assert trunc_lm.loglikelihood(requests) == expected  # exact float equality
    rolling = [Instance("loglikelihood_rolling", doc={}, arguments=("The Normans were the people who gave their name to Normandy.",), idx=0)]
    assert trunc_lm.loglikelihood_rolling(rolling) == plain.loglikelihood_rolling(rolling)


def test_set_drop_changes_scores_and_none_restores_them(trunc_lm):
    requests = arc_requests(2)
    baseline = trunc_lm.loglikelihood(requests)
    mask = trunc_lm.set_drop(parse_drop("last-half"))
    assert mask.dropped == tuple(range(288, 576))
    truncated = trunc_lm.loglikelihood(requests)
    assert truncated != baseline
    trunc_lm.set_drop(parse_drop("none"))
    assert trunc_lm.loglikelihood(requests) == baseline


def test_generation_through_lm_eval_is_truncated(trunc_lm):
    seen = []
    trunc_lm.set_drop(parse_drop("first-half"))
    spy = trunc_lm.model.lm_head.register_forward_pre_hook(lambda m, a: seen.append(a[0][..., :288].abs().max().item()))
    try:
        out = trunc_lm.generate_until([Instance("generate_until", doc={}, idx=0,
                                                arguments=("Question: What is 2 + 3?\nAnswer:", {"until": ["\n"], "max_gen_toks": 5}))])
    finally:
        spy.remove()
        trunc_lm.set_drop(parse_drop("none"))
    assert isinstance(out[0], str)
    assert len(seen) >= 2 and all(v == 0 for v in seen)


def test_tied_embeddings_unchanged_by_a_run(trunc_lm):
    model = trunc_lm.model
    assert model.lm_head.weight is model.model.embed_tokens.weight
    before = model.model.embed_tokens.weight.detach().clone()
    trunc_lm.set_drop(parse_drop("random:50%@1"), "pre-norm")
    with torch.no_grad():
        trunc_lm.loglikelihood(arc_requests(1))
    trunc_lm.set_drop(parse_drop("none"))
    assert torch.equal(model.model.embed_tokens.weight, before)
