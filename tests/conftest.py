"""Shared fixtures: tiny random-weight decoders for exactness checks, and the real offline SmolLM2."""

from __future__ import annotations

import pytest
import torch
import transformers

TINY = dict(vocab_size=97, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


def tiny_model(arch: str, tied: bool = False) -> transformers.PreTrainedModel:
    """A random-weight decoder of the named architecture, in float32 eval mode."""
    torch.manual_seed(0)
    config_cls, model_cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
        "gemma": (transformers.GemmaConfig, transformers.GemmaForCausalLM),
        "gemma3": (transformers.Gemma3TextConfig, transformers.Gemma3ForCausalLM),
    }[arch]
    extra = {"head_dim": 6} if arch in ("gemma", "gemma3") else {}
    model = model_cls(config_cls(**TINY, **extra, tie_word_embeddings=tied))
    return model.eval()


@pytest.fixture(scope="session")
def smollm2_dir():
    from llmtrunc.models import resolve_model

    return resolve_model("smollm2-135m")
