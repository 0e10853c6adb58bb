"""Tiny random-weight decoders for exactness checks, one builder per architecture family in hooks/."""

from __future__ import annotations

import torch
import transformers

TINY = dict(vocab_size=97, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)

# family -> (config class, model class, extra config); the first class of each hooks/<family>.yaml
FAMILIES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM, {}),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM, {}),
    "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM, {"head_dim": 6}),
    "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM, {}),
    "gemma": (transformers.GemmaConfig, transformers.GemmaForCausalLM, {"head_dim": 6}),
    "gemma2": (transformers.Gemma2Config, transformers.Gemma2ForCausalLM, {"head_dim": 6}),
    "gemma3": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM, {"head_dim": 6}),
    "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM, {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}),
    "olmo2": (transformers.Olmo2Config, transformers.Olmo2ForCausalLM, {"pad_token_id": 0, "eos_token_id": 2}),
    "gpt_neox": (transformers.GPTNeoXConfig, transformers.GPTNeoXForCausalLM, {"bos_token_id": 1, "eos_token_id": 2}),
    "gpt2": (transformers.GPT2Config, transformers.GPT2LMHeadModel, {"bos_token_id": 1, "eos_token_id": 2}),
}
_GPT2_NAMES = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head",
               "max_position_embeddings": "n_positions"}


def tiny_config(arch: str, tied: bool = False) -> transformers.PretrainedConfig:
    config_cls, _, extra = FAMILIES[arch]
    sizes = dict(TINY)
    if arch == "gpt2":
        sizes = {_GPT2_NAMES.get(k, k): v for k, v in sizes.items() if k not in ("intermediate_size", "num_key_value_heads")}
    if arch == "gpt_neox":
        sizes.pop("num_key_value_heads")
    return config_cls(**sizes, **extra, tie_word_embeddings=tied)


def tiny_model(arch: str, tied: bool = False) -> transformers.PreTrainedModel:
    """A random-weight decoder of the named family, in float32 eval mode, with non-trivial norm weights."""
    torch.manual_seed(0)
    model = FAMILIES[arch][1](tiny_config(arch, tied)).eval()
    with torch.no_grad():  # norms start at w = 1 (or 0 for 1 + w): perturb so a wrong scale convention shows
        for name, param in model.named_parameters():
            if "norm" in name or "ln_" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model
