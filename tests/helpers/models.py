"""Tiny random-weight decoders of every architecture class that a hooks/<family>.yaml names.

Each is built from its class's own transformers config, shrunk to TINY sizes, so a new hooks/ file
is in every architecture test without a line here: the family's defaults stay (softcapping, norm
convention, a multimodal wrapper's sub-configs), and a family with a sliding window gets a WINDOW
short enough for the tests' prompts to pass it (its first layer sliding, its second full attention,
where the config lists layer types).
"""

from __future__ import annotations

import torch
import transformers

from llmtrunc.llm import architectures

TINY = dict(vocab_size=97, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)
WINDOW = 5  # tokens a sliding-window layer attends to
SPECIAL_TOKENS = dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _classes() -> dict[str, str]:
    """Every class named in hooks/ -> its family."""
    return {name: arch.family for name, arch in architectures.registry().items()}


CLASSES = _classes()
FAMILIES = {family: next(c for c, f in CLASSES.items() if f == family) for family in dict.fromkeys(CLASSES.values())}


def _fields(config_cls) -> set[str]:
    default = config_cls()
    return {name for name in (*TINY, "head_dim", *SPECIAL_TOKENS, "tie_word_embeddings", "sliding_window",
                              "use_sliding_window", "layer_types") if hasattr(default, name)}


def _tiny_kwargs(config_cls, window: bool, tied: bool) -> dict:
    have = _fields(config_cls)
    kwargs = {k: v for k, v in {**TINY, **SPECIAL_TOKENS, "tie_word_embeddings": tied}.items() if k in have}
    if "head_dim" in have:
        kwargs["head_dim"] = TINY["hidden_size"] // TINY["num_attention_heads"]
    if window and "sliding_window" in have:
        kwargs["sliding_window"] = WINDOW
        if "use_sliding_window" in have:
            kwargs["use_sliding_window"] = True
        if "layer_types" in have:
            kwargs["layer_types"] = ["sliding_attention", "full_attention"]
    elif "sliding_window" in have:
        kwargs["sliding_window"] = None
    return kwargs


def tiny_config(name: str, tied: bool = False, window: bool = True) -> transformers.PretrainedConfig:
    """The config of `name` (a family or a class in hooks/) at TINY sizes; `window=False`: full attention only."""
    config_cls = getattr(transformers, FAMILIES.get(name, name)).config_class
    subs = getattr(config_cls, "sub_configs", None) or {}
    if subs:  # a wrapper (e.g. multimodal): every sub-config tiny, the wrapper's own defaults kept
        default = config_cls()
        kwargs = {key: type(getattr(default, key))(**_tiny_kwargs(type(getattr(default, key)), window, tied)).to_dict()
                  for key in subs}
        return config_cls(**kwargs, tie_word_embeddings=tied)
    return config_cls(**{**_tiny_kwargs(config_cls, window, tied), "tie_word_embeddings": tied})


def tiny_model(name: str, tied: bool = False, window: bool = True) -> transformers.PreTrainedModel:
    """A random-weight decoder of the named family or class, in float32 eval mode, with non-trivial norm weights."""
    torch.manual_seed(0)
    model = getattr(transformers, FAMILIES.get(name, name))(tiny_config(name, tied, window)).eval()
    with torch.no_grad():  # norms start at w = 1 (or 0 for 1 + w): perturb so a wrong scale convention shows
        for param_name, param in model.named_parameters():
            if "norm" in param_name or "ln_" in param_name:
                param.add_(0.1 * torch.randn_like(param))
    return model
