"""Compute-once scoring equals running each drop condition on its own, on the real SmolLM2."""

import pytest
from lm_eval.api.instance import Instance

from llmtrunc.llm.shared_body import SharedBodyLM
from llmtrunc.spec import parse_drop
from tests.helpers.requests import arc_requests

CONDITIONS = [("none", "post-norm"), ("last-half", "post-norm"), ("first-half", "pre-norm"), ("random:50%@1", "post-norm")]


@pytest.fixture(scope="module")
def lm():
    return SharedBodyLM(pretrained="smollm2-135m", device="cpu", batch_size=4)


def score_all(lm, requests, shared: bool):
    lm.shared = shared
    out = {}
    for drop, at in CONDITIONS:
        lm.set_drop(parse_drop(drop), at)
        out[(drop, at)] = lm.loglikelihood(requests)
    lm.shared = True
    return out


def test_baseline_is_plain_lm_eval_and_fills_the_cache(lm, smollm2_dir):
    """Nothing dropped: lm-eval's own HFLM scoring, bit for bit; its forward passes keep the states."""
    from lm_eval.models.huggingface import HFLM

    plain = HFLM(pretrained=smollm2_dir.pretrained, gguf_file=smollm2_dir.gguf_file, device="cpu", batch_size=4)
    requests = arc_requests(3)
    lm.clear_cache()
    lm.body_passes = 0
    lm.set_drop(parse_drop("none"))
    assert lm.loglikelihood(requests) == plain.loglikelihood(requests)  # exact float equality
    assert lm.body_passes == len(requests)  # every request's states were kept on the way
    lm.set_drop(parse_drop("last-half"))
    lm.loglikelihood(requests)
    assert lm.body_passes == len(requests)  # the truncated condition ran no body pass of its own


def test_shared_body_matches_separate_runs(lm):
    requests = arc_requests(3)
    lm.clear_cache()
    lm.body_passes = 0
    shared = score_all(lm, requests, shared=True)
    assert lm.body_passes == len(requests)  # the body ran once per request for all four conditions
    separate = score_all(lm, requests, shared=False)
    for condition in CONDITIONS:
        for (ll_a, greedy_a), (ll_b, greedy_b) in zip(shared[condition], separate[condition]):
            assert abs(ll_a - ll_b) < 1e-4 and greedy_a == greedy_b
    # the conditions really differ, and the per-question choice (accuracy) agrees
    assert shared[CONDITIONS[0]] != shared[CONDITIONS[1]]
    for condition in CONDITIONS:
        picks = lambda res: [max(range(4), key=lambda j: res[4 * i + j][0]) for i in range(3)]  # noqa: E731
        assert picks(shared[condition]) == picks(separate[condition])


def test_rolling_loglikelihood_matches(lm):
    text = "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France."
    request = [Instance("loglikelihood_rolling", doc={}, arguments=(text,), idx=0)]
    for drop, at in CONDITIONS[:2]:
        lm.set_drop(parse_drop(drop), at)
        lm.shared = False
        separate = lm.loglikelihood_rolling(request)[0]
        lm.shared = True
        assert abs(lm.loglikelihood_rolling(request)[0] - separate) < 1e-4


def test_scoring_in_small_chunks_gives_the_same_scores(lm, monkeypatch):
    requests = arc_requests(3)
    lm.set_drop(parse_drop("last-half"))
    whole = lm.loglikelihood(requests)
    monkeypatch.setattr(lm, "SCORE_TOKENS", 2)  # chunks of one or two requests; longer ones alone
    assert len(lm._score_chunks([(None, (None, 3))] * 2 + [(None, (None, 1))] * 3)) == 4
    for (ll_a, greedy_a), (ll_b, greedy_b) in zip(lm.loglikelihood(requests), whole):
        # float32 sums of ~60 nats: the head GEMM's row count changes the last bits (measured 1.9e-5)
        assert ll_a == pytest.approx(ll_b, rel=1e-6, abs=1e-5) and greedy_a == greedy_b


def test_post_norm_drops_multiply_only_the_kept_columns(lm):
    """The kept-columns product is the hook path's logits up to summation order; elsewhere the modules run."""
    import torch

    states = torch.randn(64, lm.hidden_size, generator=torch.Generator().manual_seed(0))
    fast = {}
    for drop, at, shortcut in [("random:50%@1", "post-norm", True), ("last-half", "pre-norm", False),
                               ("none", "post-norm", False)]:
        lm.set_drop(parse_drop(drop), at)
        head = lm._kept_columns_head()
        assert (head is not None) == shortcut
        with torch.no_grad():
            hooked = lm.arch.logits(lm.model, states)  # the real modules with the drop's hook in place
            fast[drop] = lm.arch.logits(lm.model, states, head)
        assert float((fast[drop] - hooked).abs().max()) < 1e-4  # float32, |logits| ~ 30: measured about 1e-5
    lm.set_drop(parse_drop("random:50%@2"))  # a new drop: new columns, not the last drop's
    with torch.no_grad():
        assert not torch.allclose(lm.arch.logits(lm.model, states, lm._kept_columns_head()), fast["random:50%@1"])
