"""Shared-prefix attention: rows decoded from one prompt read its keys and values once per step.

Shared generation decodes every prompt under C conditions, one row each, and a drop never changes
the cache of a token it did not produce: the C rows of a prompt have the same prompt keys and
values. Decoding on a CPU is memory-bound, and with the prompt's cache repeated per row, reading it
costs C times what one condition pays (reports/llm/bench_generate.md). Here a step's attention is
split exactly: the prompt part is one matmul per prompt for all its rows, against the one stored
copy; each row's own generated part comes from its own small cache; one softmax (float32, as
transformers' eager attention) spans both. The result is standard attention computed in another
order, equal up to rounding, so `generation.decode` uses it only where rows share a prompt and
keeps transformers' attention when every row decodes alone (batch size 1 stays exact).

It serves the families whose hooks/<family>.yaml says `shared_prefix_attention: true`: their
attention hands `cache.update`'s result straight to the attention function (which therefore gets
the layer itself), on full-attention layers only (no sliding window, softcapping or sinks).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.cache_utils import DynamicLayer

from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import compat

NAME = "llmtrunc_shared_prefix"


class SharedPrefixLayer(DynamicLayer):
    """One layer's cache for rows that share prompts: the prompts' keys and values as prefilled (read only,
    never copied), which prompt each row continues, and each row's generated keys and values in place."""

    def __init__(self, prompt: DynamicLayer, rows: torch.Tensor, prompt_mask: torch.Tensor | None, room: int):
        super().__init__()
        self.prefix_keys, self.prefix_values = prompt.keys, prompt.values  # [prompts, kv heads, L, d]
        self.prompt_mask = prompt_mask  # [prompts, L], True where a prompt token is attended; None: no padding
        self.rows = rows  # [rows]: the prompt of each row, rows of one prompt adjacent
        shape = (len(rows), prompt.keys.shape[1], room, prompt.keys.shape[-1])
        self._keys, self._values = prompt.keys.new_empty(shape), prompt.values.new_empty(shape)
        self.n = 0
        self.is_initialized = True
        self.dtype, self.device = prompt.keys.dtype, prompt.keys.device
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._keys[..., : self.n, :], self._values[..., : self.n, :]
        rows = self.rows.tolist()
        starts = [0] + [i for i in range(1, len(rows)) if rows[i] != rows[i - 1]] + [len(rows)]
        self.groups = [(rows[a], a, b) for a, b in zip(starts, starts[1:])]  # (prompt, first row, end row)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        end = self.n + key_states.shape[-2]
        self._keys[..., self.n: end, :] = key_states
        self._values[..., self.n: end, :] = value_states
        self.n = end
        self.keys, self.values = self._keys[..., : self.n, :], self._values[..., : self.n, :]
        return self, self  # what the attention function gets as key and value (`attention` below)

    def get_seq_length(self) -> int:
        return self.prefix_keys.shape[-2] + self.n

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.rows = self.rows[indices.to(self.rows.device)]
        self._keys, self._values = self._keys[indices, ...], self._values[indices, ...]
        self._views()


def attention(module: nn.Module, query: torch.Tensor, key: SharedPrefixLayer, value: SharedPrefixLayer,
              attention_mask, scaling: float, dropout: float = 0.0, **kwargs) -> tuple[torch.Tensor, None]:
    """softmax(q k^T * scaling) v over [prompt keys | the row's generated keys], the prompt part once per prompt."""
    layer = key
    rows, heads, q_len, d = query.shape
    if q_len != 1 or kwargs.get("sliding_window") or kwargs.get("softcap") or getattr(module, "sinks", None) is not None:
        raise LLMTruncError(f"shared-prefix attention computes one new token of full attention; {type(module).__name__} "
                            "asks for more: set shared_prefix_attention: false in its hooks/ file")
    kv_heads, length = layer.prefix_keys.shape[1], layer.prefix_keys.shape[-2]
    group = heads // kv_heads  # query heads per key/value head (grouped-query attention)
    q = query.reshape(rows, kv_heads, group, d)  # head h reads kv head h // (heads / kv_heads), as repeat_kv
    scores = q.new_empty(rows, kv_heads, group, length + layer.n)
    for prompt, a, b in layer.groups:  # [kv heads, c * group, d] @ [kv heads, d, L]: the prompt read once
        many = q[a:b].transpose(0, 1).reshape(kv_heads, (b - a) * group, d)
        part = many @ layer.prefix_keys[prompt].transpose(-1, -2)
        scores[a:b, ..., :length] = part.reshape(kv_heads, b - a, group, length).transpose(0, 1)
    scores[..., length:] = q @ layer.keys.transpose(-1, -2)
    scores = scores * scaling
    if layer.prompt_mask is not None:
        padded = ~layer.prompt_mask[layer.rows][:, None, None, :]
        scores[..., :length] = scores[..., :length].masked_fill(padded, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = weights[..., length:] @ layer.values
    for prompt, a, b in layer.groups:
        many = weights[a:b, ..., :length].transpose(0, 1).reshape(kv_heads, (b - a) * group, length)
        out[a:b] += (many @ layer.prefix_values[prompt]).reshape(kv_heads, b - a, group, d).transpose(0, 1)
    return out.reshape(rows, heads, q_len, d).transpose(1, 2).contiguous(), None


def applies(cache, shared_prefix_attention: bool) -> bool:
    """Whether a prompt cache can be shared this way: the family declares it and every layer is full attention."""
    return shared_prefix_attention and all(type(layer) is DynamicLayer and layer.is_initialized
                                           for layer in cache.layers)


def row_cache(cache, rows: torch.Tensor, prompt_mask: torch.Tensor | None, room: int):
    """A cache for `rows` (the prompt of each row) continuing the prompts of `cache`, which it only reads."""
    out = compat.clone_cache(cache)
    mask = None if prompt_mask is None else prompt_mask.to(torch.bool)
    out.layers = [SharedPrefixLayer(layer, rows.to(layer.keys.device), mask, room) for layer in cache.layers]
    return out


def in_use(model: nn.Module):
    """The model's attention modules call `attention` (and build no mask: it reads the prompt mask itself),
    registered with transformers under NAME on first use."""
    return compat.attention_implementation(model, NAME, attention)
