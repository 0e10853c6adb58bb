"""A tiny checkpoint loaded as lm-eval loads a model, and conditions run through it the way the runner runs a group."""

from __future__ import annotations

import copy
from pathlib import Path

from llmtrunc.llm.shared_body import SharedBodyLM
from llmtrunc.spec import parse_drop
from tests.helpers.checkpoint import save_tiny, tiny_tokenizer

CONDITIONS = [("none", "post-norm"), ("last-half", "post-norm"), ("first-half", "pre-norm"), ("random:50%@1", "post-norm")]


def tiny_lm(folder: Path, name: str) -> SharedBodyLM:
    """tiny_model(name) saved in `folder` and loaded as SharedBodyLM at batch size 1. The word-level tokenizer is
    handed over: AutoTokenizer maps some model types (Qwen2) to their own tokenizer class."""
    return SharedBodyLM(pretrained=str(save_tiny(folder, name)), tokenizer=tiny_tokenizer(), device="cpu", batch_size=1)


def run_conditions(lm: SharedBodyLM, requests, method: str, shared: bool, conditions=CONDITIONS) -> dict:
    """Every condition's answers to `requests` (lm-eval Instances) from `lm.<method>`, in the runner's order (the
    baseline first when the group has it); shared: one group decoded together, else each condition on its own."""
    lm.clear_cache()
    lm.shared = shared and lm.arch.shared_body
    if shared:
        lm.share([(parse_drop(drop), at) for drop, at in conditions])
    out = {}
    for drop, at in conditions:
        lm.set_drop(parse_drop(drop), at)
        out[(drop, at)] = getattr(lm, method)(copy.deepcopy(requests))
    lm.clear_cache()
    return out
