"""The truncation hooks: zero chosen dimensions of a causal LM's final hidden state.

Two positions, located from the model's hooks/<family>.yaml (llmtrunc.llm.architectures.POSITION_MODULES):
a forward pre-hook on the module whose input the position's hidden state is.

    post-norm  the tensor the LM head receives (after the final norm)  -> pre-hook on the LM head
    pre-norm   the last decoder layer's output (before the final norm) -> pre-hook on the final norm

Hooks fire on every forward pass, so every decoding step of `generate` is truncated too. They
never touch weights: a tied input embedding stays exactly as loaded. Zeroing uses `index_fill`,
which writes exact zeros at the named indices and leaves every other element bit-identical.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm.architectures import for_model
from llmtrunc.spec import Mask


def find_lm_head(model: nn.Module) -> nn.Module:
    return for_model(model).find(model, "lm_head")


def find_final_norm(model: nn.Module) -> nn.Module:
    return for_model(model).find(model, "final_norm")


def hidden_size(model: nn.Module) -> int:
    """Width of the final hidden state (from the config: quantised heads pack their weights)."""
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(), "hidden_size", None) or getattr(config.get_text_config(), "n_embd", None)
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

    mask: Mask
    at: str
    handle: torch.utils.hooks.RemovableHandle | None

    def remove(self) -> None:
        if self.handle is not None:
            self.handle.remove()
            self.handle = None


def attach(model: nn.Module, mask: Mask, at: str = "post-norm") -> Truncation:
    """Zero `mask.dropped` of the final hidden state at position `at` on every forward pass."""
    target = for_model(model).position_module(model, at)
    dim = hidden_size(model)
    if mask.dim != dim:
        raise LLMTruncError(f"the mask is for {mask.dim} dimensions but the model's hidden size is {dim}")
    if not mask.dropped:
        return Truncation(mask, at, None)
    index = torch.tensor(mask.dropped, dtype=torch.long)

    def pre_hook(module: nn.Module, args: tuple) -> tuple:
        return (zero_dims(args[0], index), *args[1:])

    return Truncation(mask, at, target.register_forward_pre_hook(pre_hook))


@contextmanager
def truncated(model: nn.Module, mask: Mask, at: str = "post-norm") -> Iterator[Truncation]:
    handle = attach(model, mask, at)
    try:
        yield handle
    finally:
        handle.remove()
