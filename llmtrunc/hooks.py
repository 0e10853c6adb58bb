"""The truncation hooks: zero chosen dimensions of a causal LM's final hidden state.

Two positions, both found generically from the model's structure:

    post-norm  the tensor the LM head receives (after the final norm)  -> pre-hook on the LM head
    pre-norm   the last decoder layer's output (before the final norm) -> pre-hook on the final norm

Hooks fire on every forward pass, so every decoding step of `generate` is truncated too. They
never touch weights: a tied input embedding stays exactly as loaded. Zeroing uses `index_fill`,
which writes exact zeros at the named indices and leaves every other element bit-identical.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from llmtrunc.errors import LLMTruncError

POSITIONS = ("post-norm", "pre-norm")
# Attribute names of the final norm on the decoder stack, across architectures.
_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f")
# Paths from the causal-LM wrapper to its decoder stack (Llama/Qwen2/Mistral/Gemma: model;
# Gemma3 multimodal: model.language_model; GPT-2 style: transformer).
_DECODER_PATHS = ("model.language_model", "model", "transformer", "language_model.model", "gpt_neox")


def _get(module: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if module is None:
            return None
    return module


def find_lm_head(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not isinstance(head, nn.Module):
        raise LLMTruncError(f"cannot find the LM head of {type(model).__name__}: no output embeddings")
    return head


def find_final_norm(model: nn.Module) -> nn.Module:
    """The norm applied to the last decoder layer's output, for any supported architecture."""
    for path in _DECODER_PATHS:
        decoder = _get(model, path)
        if decoder is None:
            continue
        for name in _NORM_NAMES:
            norm = getattr(decoder, name, None)
            if isinstance(norm, nn.Module):
                return norm
    raise LLMTruncError(
        f"cannot find the final norm of {type(model).__name__}: supported are Llama, Qwen2, Mistral, "
        "Gemma/Gemma3 and other decoders whose stack has a `norm`/`final_layernorm`/`ln_f` module"
    )


def hidden_size(model: nn.Module) -> int:
    """Width of the final hidden state (from the config: quantised heads pack their weights)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "hidden_size", None)
        if size:
            return int(size)
    head = find_lm_head(model)
    return int(getattr(head, "in_features", None) or head.weight.shape[1])


def zero_dims(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x with exact zeros at `index` of its last dimension; nothing else changes."""
    return x.index_fill(-1, index.to(x.device), 0)


@dataclass
class Truncation:
    """Hooks attached to one model; `remove()` restores it exactly."""

    indices: tuple[int, ...]
    at: str
    handle: torch.utils.hooks.RemovableHandle | None

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def attach(model: nn.Module, indices: Sequence[int], at: str = "post-norm") -> Truncation:
    """Zero `indices` of the final hidden state at position `at` on every forward pass."""
    if at not in POSITIONS:
        raise LLMTruncError(f"unknown position {at!r}: choose post-norm or pre-norm")
    target = find_lm_head(model) if at == "post-norm" else find_final_norm(model)
    dim = hidden_size(model)
    bad = [i for i in indices if not 0 <= i < dim]
    if bad:
        raise LLMTruncError(f"dimension {bad[0]} is out of range for hidden size {dim}")
    if not indices:
        return Truncation((), at, None)
    index = torch.tensor(sorted(indices), dtype=torch.long)

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        return (zero_dims(args[0], index), *args[1:])

    return Truncation(tuple(sorted(indices)), at, target.register_forward_pre_hook(pre_hook))


@contextmanager
def truncated(model: nn.Module, indices: Sequence[int], at: str = "post-norm") -> Iterator[Truncation]:
    handle = attach(model, indices, at)
    try:
        yield handle
    finally:
        handle.remove()
