"""Shared generation: one prefill per prompt, every drop condition decoded together.

Both positions act after the last decoder layer, so a drop never changes the key/value cache of a
token it did not produce: the prompt's prefill is the same for every condition. `decode` expands a
prefilled batch of prompts into one row per (prompt, condition), applies each row's own mask at its
own position on every step (per-row pre-hooks on the final norm and the LM head), and decodes
greedily the way transformers' `generate` does it (the model's own `prepare_inputs_for_generation`
and `_update_model_kwargs_for_generation`, position ids from the attention mask, no mask when
nothing is padded). A row ends at EOS, at one of lm-eval's stop sequences (the same look-back test
as lm-eval's `MultiTokenEOSCriteria`) or at the maximum length, and leaves the batch at once;
at most `max_rows` rows decode at a time. The rows of one prompt attend over its one cached copy of
keys and values where the family allows (llmtrunc.llm.shared_prefix); elsewhere each row gets its own copy.

Exactness: transformers' matrix products round differently for different batch sizes, so a row
decoded beside other rows can differ in the last bits from the same row decoded alone (and, rarely,
flip a greedy token); with `max_rows=1` every row decodes alone, as a separate run at batch size 1
does, and the two agree token for token (tests/llm/test_generation.py).
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from torch import nn
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from llmtrunc.llm import compat, shared_prefix
from llmtrunc.llm.architectures import Architecture
from llmtrunc.spec import Mask

# Generation settings that need transformers' logits processors or beam search: not decoded here.
PROCESSOR_SETTINGS = {"num_beams": 1, "num_beam_groups": 1, "penalty_alpha": None, "repetition_penalty": 1.0,
                      "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None,
                      "min_length": 0, "min_new_tokens": None, "forced_bos_token_id": None,
                      "forced_eos_token_id": None, "suppress_tokens": None, "begin_suppress_tokens": None,
                      "sequence_bias": None, "guidance_scale": None, "exponential_decay_length_penalty": None,
                      "renormalize_logits": False, "constraints": None, "force_words_ids": None}


@dataclass(frozen=True)
class Condition:
    """One drop condition: its mask and where it applies."""

    mask: Mask
    at: str

    @property
    def name(self) -> tuple[tuple[int, ...], str]:
        return self.mask.dropped, self.at if self.mask.dropped else "-"


def not_greedy(model: nn.Module, generation_kwargs: dict) -> str | None:
    """What in these settings this decoder would not do exactly as `generate` does (None: nothing)."""
    config = copy.deepcopy(model.generation_config)
    for key, value in generation_kwargs.items():
        if hasattr(config, key):
            setattr(config, key, value)
    if config.do_sample:
        return "sampling (do_sample=true) is not decoded together"
    changed = [k for k, default in PROCESSOR_SETTINGS.items() if getattr(config, k, None) not in (default, None, [])]
    if changed:
        return f"generation setting {changed[0]}={getattr(config, changed[0])!r} needs transformers' own generate"
    return None


@dataclass
class Prefill:
    """A batch of prompts after their one forward pass: the cache, the last position's pre-norm state
    and the generation kwargs as `generate` holds them after its first step."""

    context: torch.Tensor  # [b, L] left-padded prompt ids
    cache: object  # transformers DynamicCache, prompts only
    last_state: torch.Tensor  # [b, 1, d] input of the final norm at the last prompt position
    kwargs: dict  # attention_mask / position_ids (prompt length), use_cache, logits_to_keep


def generation_kwargs(model: nn.Module, context: torch.Tensor, attention_mask: torch.Tensor | None) -> dict:
    """The model kwargs `generate` builds before its prefill (greedy, dynamic cache)."""
    from transformers import DynamicCache

    kwargs: dict = {"attention_mask": attention_mask, "use_cache": True}
    if attention_mask is None:
        kwargs["attention_mask"] = torch.ones_like(context)
    if "position_ids" in inspect.signature(model.forward).parameters:
        kwargs["position_ids"] = compat.generation_position_ids(model, context, kwargs)
    if bool((kwargs["attention_mask"] == 1).all()):
        kwargs["attention_mask"] = None  # as generate: no mask at all when nothing is padded
    kwargs["cache"] = DynamicCache(config=model.config.get_text_config(decoder=True))
    if compat.keeps_last_logits(model):
        kwargs["logits_to_keep"] = 1
    return kwargs


@contextmanager
def capture_norm_input(arch: Architecture, model: nn.Module) -> Iterator[list]:
    """The untouched input of the final norm on every forward pass (prepended before any drop hook)."""
    seen: list = []
    handle = arch.find(model, "final_norm").register_forward_pre_hook(lambda m, a: seen.append(a[0]), prepend=True)
    try:
        yield seen
    finally:
        handle.remove()


def prefill(model: nn.Module, arch: Architecture, context: torch.Tensor, attention_mask: torch.Tensor | None) -> Prefill:
    """One forward pass over the prompts, exactly as `generate`'s first step makes it."""
    kwargs = generation_kwargs(model, context, attention_mask)
    with torch.no_grad(), capture_norm_input(arch, model) as seen:
        inputs = compat.step_inputs(model, context, first=True, **kwargs)
        outputs = model(**inputs, return_dict=True)
    kwargs["cache"] = outputs.get("cache", kwargs["cache"])
    return Prefill(context, kwargs["cache"], seen[0][:, -1:].detach(), kwargs)


@contextmanager
def row_hooks(arch: Architecture, model: nn.Module, keep: dict[str, torch.Tensor | None]) -> Iterator[None]:
    """Per-row masks at both positions: `keep[at]` is [rows, 1, d] (True = kept) or None (nothing dropped there).
    The dict is read on every call, so the caller can shrink the rows between steps."""

    def hook(at: str):
        def pre_hook(module, args):
            mask = keep[at]
            if mask is None:
                return None
            return (torch.where(mask.to(args[0].device), args[0], torch.zeros((), dtype=args[0].dtype,
                                                                                device=args[0].device)), *args[1:])
        return pre_hook

    handles = [arch.position_module(model, at).register_forward_pre_hook(hook(at)) for at in keep]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def keep_masks(conditions: list[Condition], rows: list[int], dim: int) -> dict[str, torch.Tensor | None]:
    out: dict[str, torch.Tensor | None] = {}
    for at in ("post-norm", "pre-norm"):
        keep = torch.ones(len(rows), 1, dim, dtype=torch.bool)
        for r, c in enumerate(rows):
            condition = conditions[c]
            if condition.at == at and condition.mask.dropped:
                keep[r, 0, list(condition.mask.dropped)] = False
        out[at] = None if bool(keep.all()) else keep
    return out


class StopSequences:
    """lm-eval's stop test per row: a stop string found in the decoded last len(tokens)+2 generated tokens."""

    def __init__(self, tokenizer, stop: list[str]):
        self.tokenizer = tokenizer
        self.stops = [(s, len(tokenizer.encode(s, add_special_tokens=False)) + 2) for s in stop]

    def hit(self, generated: list[int]) -> bool:
        return any(s in self.tokenizer.decode(generated[-n:]) for s, n in self.stops)


def generated_tokens(continuation: torch.Tensor, prompt_length: int, stops: StopSequences, eos_ids: set[int],
                     max_length: int) -> int:
    """How many tokens a row generated up to its end (EOS, a stop sequence, the maximum length)."""
    seq: list[int] = []
    for token in continuation[prompt_length:].tolist():
        seq.append(token)
        if token in eos_ids or prompt_length + len(seq) >= max_length or stops.hit(seq):
            break
    return len(seq)


def preallocate(cache, room: int) -> None:
    """Give every full-attention and sliding-window layer of a DynamicCache room for `room` more tokens,
    written in place.

    DynamicCache appends with torch.cat, which copies the whole cache on every step (a sliding layer its
    whole window); with the prompt's keys and values repeated for every (prompt, condition) row that copy
    dominates CPU decoding (8 rows x 10 conditions of a 5-shot GSM8K prompt: about 3.7 GB per step).
    Attention sees the same values in the same shapes (views of the kept positions), so the logits are
    those of DynamicCache."""
    for i, layer in enumerate(cache.layers):
        kind = PREALLOCATED.get(type(layer))
        if kind and layer.is_initialized and layer.keys.numel() and not getattr(layer, "record_past", False):
            cache.layers[i] = kind(layer, room)


def _room(tensor: torch.Tensor, room: int) -> torch.Tensor:
    out = tensor.new_empty(*tensor.shape[:-2], tensor.shape[-2] + room, tensor.shape[-1])
    out[..., : tensor.shape[-2], :] = tensor
    return out


class PreallocatedLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are positions [start, n) of larger buffers (`preallocate`):
    every position of a full-attention layer, the last `sliding_window - 1` of a sliding one."""

    def __init__(self, layer, room: int):  # takes over `layer`'s state, so no base __init__
        compat.take_over(self, layer)
        self.start, self.n = 0, layer.keys.shape[-2]
        self._keys, self._values = _room(layer.keys, room), _room(layer.values, room)
        self._views()

    def _views(self) -> None:
        self.keys, self.values = self._keys[..., self.start: self.n, :], self._values[..., self.start: self.n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self.n + new > self._keys.shape[-2]:  # out of room: the kept positions move to a buffer twice their size
            kept = self.keys.shape[-2] + new
            self._keys, self._values, self.start, self.n = _room(self.keys, kept), _room(self.values, kept), 0, kept - new
        self._keys[..., self.n: self.n + new, :] = key_states
        self._values[..., self.n: self.n + new, :] = value_states
        self.n += new
        attended = self._keys[..., self.start: self.n, :], self._values[..., self.start: self.n, :]
        if self.is_sliding:  # as DynamicSlidingWindowLayer: attend over the window and the new tokens, keep window - 1
            self.cumulative_length += new
            self.start = max(self.start, self.n - self.sliding_window + 1)
        self._views()
        return attended

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._keys, self._values = self._keys[indices, ...], self._values[indices, ...]
        self._views()


class PreallocatedSlidingLayer(PreallocatedLayer, DynamicSlidingWindowLayer):
    """A sliding-window layer written in place: its mask sizes and length are DynamicSlidingWindowLayer's."""


PREALLOCATED = {DynamicLayer: PreallocatedLayer, DynamicSlidingWindowLayer: PreallocatedSlidingLayer}


def _select(kwargs: dict, index: torch.Tensor) -> dict:
    """The generation kwargs of a subset (or repetition) of the batch rows."""
    out = dict(kwargs)
    for key in ("attention_mask", "position_ids"):
        if out.get(key) is not None:
            out[key] = out[key][index.to(out[key].device)]
    return out


def decode(model: nn.Module, arch: Architecture, tokenizer, batch: Prefill, conditions: list[Condition],
           max_length: int, stop: list[str], eos_ids: set[int], pad_id: int, max_rows: int,
           on_step: Callable[[list[tuple[int, int]], torch.Tensor], None] | None = None,
           prefix_once: bool = True) -> list[torch.Tensor]:
    """Greedy continuations of every prompt of `batch` under every condition.

    Returns one [b, L + n] tensor per condition (prompt ids, then generated ids, pad after a row's end),
    shaped as `generate` returns it. `on_step(rows, logits)` sees every step's (prompt, condition) rows and
    their next-token logits (tests use it to check that every row's mask acts on every step). Rows of one
    prompt attend over its one cached copy where the family allows (llmtrunc.llm.shared_prefix); `prefix_once=False`:
    every row over its own copy, with transformers' attention."""
    stops = StopSequences(tokenizer, stop)
    generated: dict[tuple[int, int], list[int]] = {}
    pairs = [(p, c) for p in range(batch.context.shape[0]) for c in range(len(conditions))]
    for start in range(0, len(pairs), max(1, max_rows)):
        rows = pairs[start: start + max(1, max_rows)]
        cache, attend = row_cache(model, arch, batch, rows, max_length, prefix_once)
        with torch.no_grad(), attend:
            decode_rows(model, arch, batch, conditions, rows, cache, max_length,
                        lambda row, seq: seq[-1] in eos_ids or stops.hit(seq), generated, on_step)
    return continuations(batch, len(conditions), generated, pad_id)


def row_cache(model: nn.Module, arch: Architecture, batch: Prefill, rows: list[tuple[int, int]], max_length: int,
              prefix_once: bool):
    """The cache the (prompt, condition) `rows` decode from, and the attention they decode with: the prompts'
    one copy read by all their rows (shared-prefix attention, where the family and every cache layer allow
    it and some prompt has several rows), else a copy per row, written in place where the layer allows."""
    index = torch.tensor([p for p, _ in rows])
    room = max_length - batch.context.shape[1]
    shares = len(rows) > len({p for p, _ in rows})
    if prefix_once and shares and shared_prefix.applies(batch.cache, arch.shared_prefix_attention):
        return (shared_prefix.row_cache(batch.cache, index, batch.kwargs.get("attention_mask"), room),
                shared_prefix.in_use(model))
    cache = copy.deepcopy(batch.cache)
    cache.batch_select_indices(index.to(batch.context.device))
    preallocate(cache, room)
    return cache, nullcontext()


def decode_rows(model: nn.Module, arch: Architecture, batch: Prefill, conditions: list[Condition],
                rows: list[tuple[int, int]], cache, max_length: int, ends: Callable[[tuple, list[int]], bool],
                generated: dict[tuple[int, int], list[int]], on_step=None) -> None:
    """Decode `rows` greedily from the prefill until each ends (`ends(row, tokens)`, or the maximum length),
    each with its condition's mask on every step; finished rows leave the batch at once."""
    index = torch.tensor([p for p, _ in rows])
    kwargs = {**_select(batch.kwargs, index), "cache": cache}
    ids = batch.context[index.to(batch.context.device)]
    keep = keep_masks(conditions, [c for _, c in rows], batch.last_state.shape[-1])
    live = list(rows)
    with row_hooks(arch, model, keep):
        logits = arch.logits(model, batch.last_state[index.to(batch.last_state.device)])
        kwargs = compat.after_step(model, {"cache": cache}, kwargs)
        while True:
            next_logits = logits[:, -1].float()  # a view when float32 already: the argmax needs no copy
            if on_step:
                on_step(live, next_logits)
            tokens = torch.argmax(next_logits, dim=-1)
            ids = torch.cat([ids, tokens[:, None].to(ids.device)], dim=-1)
            done = []
            for row, token in zip(live, tokens.tolist()):
                generated.setdefault(row, []).append(token)
                done.append(ids.shape[1] >= max_length or ends(row, generated[row]))
            if all(done):
                return
            if any(done):
                stay = torch.tensor([r for r, d in enumerate(done) if not d])
                live = [live[r] for r in stay.tolist()]
                ids = ids[stay.to(ids.device)]
                kwargs = _select(kwargs, stay)
                kwargs["cache"].batch_select_indices(stay.to(ids.device))
                for at, mask in keep.items():
                    keep[at] = None if mask is None else mask[stay]
            outputs = model(**compat.step_inputs(model, ids, first=False, **kwargs), return_dict=True)
            kwargs = compat.after_step(model, outputs, kwargs)
            logits = outputs.logits


def continuations(batch: Prefill, n_conditions: int, generated: dict[tuple[int, int], list[int]],
                  pad_id: int) -> list[torch.Tensor]:
    """One [b, L + n] tensor per condition, as `generate` returns it: the prompt, the row's tokens, then padding."""
    b, length = batch.context.shape
    width = length + max(len(seq) for seq in generated.values())
    results = []
    for c in range(n_conditions):
        out = torch.full((b, width), pad_id, dtype=batch.context.dtype, device=batch.context.device)
        out[:, :length] = batch.context
        for p in range(b):
            seq = generated[(p, c)]
            out[p, length: length + len(seq)] = torch.tensor(seq, dtype=out.dtype)
        results.append(out)
    return results
