"""Compute once, score many: the transformer body runs once per request for every drop condition.

A drop only changes the final hidden state, so:

* loglikelihood requests (multiple choice, loglikelihood_rolling): `SharedScoring` keeps the last
  decoder layer's output at the scored positions and scores each condition from it with only the
  final norm and the LM head, called as the real modules so the current condition's hooks apply
  exactly as in a full forward pass;
* generation requests (generate_until, `SharedGeneration`): each prompt is prefilled once and every condition that
  `share` named is decoded together from that prefill, one row per (prompt, condition)
  (llmtrunc.llm.generation); lm-eval's own generate_until runs for every condition around it, so
  stop sequences, max_gen_toks and the text post-processing are lm-eval's. `--batch-size` B bounds
  the rows decoded at once: prompts are prefilled B // C at a time for C conditions (at least one),
  so batch size 1 decodes every row alone, exactly as a separate run at batch size 1 does.

The baseline (nothing dropped) is never scored by these shortcuts: it runs lm-eval's own HFLM code
(loglikelihood: HFLM's scoring; generation: transformers' generate), so it equals plain lm-eval bit
for bit, and its forward passes fill the cache on the way (pre-hooks read the states; the rows of a
batch are matched to requests by their tokens; generate's own cache is kept for the prefill).

The cache lives on one loaded model (so never crosses models, revisions or dtypes) and is keyed
by the exact input token ids and continuation length (so never crosses task configs); the
position is applied at scoring time, never cached.
"""

from __future__ import annotations

import copy
import sys
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from llmtrunc.llm import compat, generation
from llmtrunc.llm.architectures import for_model
from llmtrunc.llm.hf_trunc import HFTruncLM
from llmtrunc.spec import DropSpec


class SharedScoring:
    """Compute-once loglikelihood: the body's pre-norm states are kept per request (the baseline's own forward
    passes fill them), and every other condition is scored from them with the final norm and the LM head only.
    Overrides HFLM's private scoring methods (llmtrunc.llm.compat.HFLM_OVERRIDES); mixed in before an HFTruncLM
    that has `arch` and `shared` (SharedBodyLM)."""

    SCORE_TOKENS = 1024  # scored positions per LM-head call (bounds the vocab-sized logits in memory)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._states: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}
        self._wanted: dict[tuple[int, ...], list[tuple[tuple[int, ...], int]]] | None = None
        self._collected: list[tuple[tuple[int, ...], int]] | None = None  # `keep`: the keys lm-eval's tokenisation gives
        self._encoded: dict[tuple[str, str], tuple[list[int], list[int]]] = {}  # one task's tokenised requests
        self._kept_weight: tuple | None = None  # (dropped, kept index, the head's kept columns) of the last drop
        self.body_passes = 0  # requests whose body was computed (for tests and benchmarks)

    def forget_states(self) -> None:
        """Drop what was kept for the group just scored."""
        self._states.clear()
        self._encoded.clear()
        self._kept_weight = None

    def _encode_pair(self, context: str, continuation: str):
        """lm-eval's tokenisation of a request, once per task: every condition asks for the same pairs."""
        if not self.shared:
            return super()._encode_pair(context, continuation)
        if (context, continuation) not in self._encoded:
            self._encoded[(context, continuation)] = super()._encode_pair(context, continuation)
        context_enc, continuation_enc = self._encoded[(context, continuation)]
        return list(context_enc), list(continuation_enc)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        if not self.shared:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        keys = []
        for _, context_enc, continuation_enc in requests:
            full = tuple((context_enc + continuation_enc)[-(self.max_length + 1):])  # as HFLM truncates
            keys.append((full, len(continuation_enc)))
        if self._collected is not None:
            self._collected.extend(keys)
            return []
        if self.drop.kind == "none":
            return self._plain_and_capture(requests, keys, disable_tqdm, override_bs)
        self._run_body(keys, disable_tqdm)
        results = []
        for chunk in self._score_chunks(list(zip(requests, keys))):
            # one head call per chunk: per-request calls cost more than the body for short continuations
            logprobs = self._head_logprobs(torch.cat([self._states[key] for _, key in chunk]))
            targets = torch.tensor([t for (_, _, cont), _ in chunk for t in cont], dtype=torch.long, device=logprobs.device)
            hits = (logprobs.argmax(dim=-1) == targets).tolist()
            picked = logprobs.gather(-1, targets[:, None])[:, 0]
            offset = 0
            for (request, _, continuation_enc), key in chunk:
                end = offset + key[1]
                answer = (float(picked[offset:end].sum()), all(hits[offset:end]))
                offset = end
                results.append(answer)
                if request is not None:
                    self.cache_hook.add_partial("loglikelihood", request, answer)
        return results

    def _run_body(self, keys, disable_tqdm: bool) -> None:
        missing = sorted({k for k in keys if k not in self._states}, key=lambda k: -len(k[0]))
        size = self.batch_size if isinstance(self.batch_size, int) and self.batch_size > 0 else 8
        for start in tqdm(range(0, len(missing), size), disable=disable_tqdm or self.rank != 0,
                          desc="Running shared body"):
            self._body_batch(missing[start: start + size])

    def keep(self, requests) -> list[tuple[tuple[int, ...], int]]:
        """The keys (input token ids, continuation length) of loglikelihood Instances, tokenised by lm-eval's own
        `loglikelihood`, with their states kept: the body runs for those not kept yet (llmtrunc.llm.attribution)."""
        self._collected = []
        try:
            self.loglikelihood(requests, disable_tqdm=True)
            keys = self._collected
        finally:
            self._collected = None
        self._run_body(keys, disable_tqdm=True)
        return keys

    def kept(self, key: tuple[tuple[int, ...], int]) -> torch.Tensor:
        """The pre-norm states that score a kept request's continuation (one row per continuation token)."""
        return self._states[key]

    def _plain_and_capture(self, requests, keys, disable_tqdm: bool, override_bs: int | None):
        """lm-eval's own scoring (the baseline), keeping the body's states of every request on the way."""
        self._wanted = {}
        for key in keys:
            if key not in self._states:
                self._wanted.setdefault(key[0][:-1], []).append(key)
        try:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        finally:
            self._wanted = None

    def _model_call(self, inps, attn_mask=None, labels=None):
        if not self._wanted:
            return super()._model_call(inps, attn_mask, labels)
        with generation.capture_norm_input(self.arch, self.model) as captured:
            logits = super()._model_call(inps, attn_mask, labels)
        # right-padded: a request's input is a prefix of its row. A lone row is unpadded and gives only its own
        # request's states: a request whose input is a prefix of a longer one's then gets them from its own pass,
        # as a separate run does, whichever requests share the process (data parallel: N processes equal one)
        lengths = sorted({len(x) for x in self._wanted})
        for row, tokens in enumerate(inps.tolist()):
            for n in (n for n in lengths if n == len(tokens) or (n < len(tokens) and len(inps) > 1)):
                for key in self._wanted.pop(tuple(tokens[:n]), ()):
                    self._states[key] = captured[0][row, n - key[1]: n].detach().clone()
                    self.body_passes += 1
        return logits

    def _body_batch(self, keys: list[tuple[tuple[int, ...], int]]) -> None:
        """Run the decoder stack on right-padded inputs; keep pre-norm states at the scored positions."""
        inputs = [torch.tensor(full[:-1], dtype=torch.long) for full, _ in keys]
        length = max(len(x) for x in inputs)
        batch = torch.zeros(len(inputs), length, dtype=torch.long)
        for row, x in enumerate(inputs):
            batch[row, : len(x)] = x
        with torch.no_grad(), generation.capture_norm_input(self.arch, self.model) as captured:
            self.arch.find(self.model, "decoder")(input_ids=batch.to(self.device), use_cache=False)
        states = captured[0]
        for row, (key, x) in enumerate(zip(keys, inputs)):
            contlen = key[1]
            self._states[key] = states[row, len(x) - contlen: len(x)].detach().clone()
        self.body_passes += len(keys)

    def _head_logprobs(self, states: torch.Tensor) -> torch.Tensor:
        """log-softmax over the vocabulary under the current drop: final norm, LM head, softcap."""
        with torch.no_grad():
            return F.log_softmax(self.arch.logits(self.model, states, self._kept_columns_head()), dim=-1,
                                 dtype=self.softmax_dtype)

    def _kept_columns_head(self):
        """A post-norm drop on a plain linear head: multiply only the kept columns of its weight.

        A dropped dimension adds an exact zero to every logit, so this is the hook path's product up to the
        summation order (the last bits; tests/llm/test_shared_body.py), at the kept share of the LM head's
        matmul, which is most of a condition's cost. None (the module with its hooks) otherwise, and at batch
        size 1, the exact mode: there every score equals the separate run's bit for bit, as SQuAD v2's
        no-answer thresholds need for equal metrics (tests/llm/test_shared_generation.py)."""
        head, mask = self.arch.find(self.model, "lm_head"), self.drop_hooks.mask
        if self.at != "post-norm" or not mask.dropped or type(head) is not nn.Linear or self.batch_size == 1:
            return None
        if self._kept_weight is None or self._kept_weight[0] != mask.dropped:
            dropped = set(mask.dropped)
            kept = torch.tensor([i for i in range(mask.dim) if i not in dropped], device=head.weight.device)
            self._kept_weight = (mask.dropped, kept, head.weight[:, kept])
        _, kept, weight = self._kept_weight
        return lambda normed: F.linear(normed[..., kept], weight, head.bias)

    def _score_chunks(self, items: list) -> list[list]:
        """Consecutive requests grouped up to SCORE_TOKENS scored positions (a longer one stands alone)."""
        chunks, current, tokens = [], [], 0
        for item in items:
            contlen = item[1][1]
            if current and tokens + contlen > self.SCORE_TOKENS:
                chunks.append(current)
                current, tokens = [], 0
            current.append(item)
            tokens += contlen
        return chunks + [current] if current else chunks


class SharedGeneration:
    """Shared decoding: each prompt is prefilled once and every condition `share` named is decoded together from
    that prefill (llmtrunc.llm.generation), inside lm-eval's own generate_until. Overrides HFLM's private
    `_model_generate` (llmtrunc.llm.compat.HFLM_OVERRIDES); mixed in before an HFTruncLM that has `arch` and
    `shared` (SharedBodyLM)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sharing: list[generation.Condition] = []  # conditions decoded together (one task's pending cells)
        self.separate_generation: str | None = None  # why this task's conditions could not be decoded together
        self._generated: dict[tuple, torch.Tensor] = {}  # (condition, batch) -> continuation not yet asked for
        self.prefills = 0  # prompt batches prefilled for shared generation (tests and benchmarks)
        self.prompt_tokens = 0  # shared generation: prompt tokens prefilled, and tokens generated per condition
        self.generated_tokens: dict[tuple, int] = {}
        self._rows = 1  # rows decoded at once (the batch size, while generate_until runs)

    def forget_generations(self) -> None:
        """Drop the group's conditions and the continuations not asked for yet."""
        self._sharing, self._generated, self.separate_generation = [], {}, None

    def share(self, conditions: list[tuple[DropSpec, str]]) -> None:
        """Decode these conditions together from one prefill per prompt, until `clear_cache`."""
        sharing = {}
        for spec, at in conditions:
            condition = generation.Condition(self.mask_for(spec, at), at)
            sharing.setdefault(condition.name, condition)
        self._sharing = list(sharing.values())

    def _current(self) -> generation.Condition:
        return generation.Condition(self.drop_hooks.mask, self.at)

    def generate_until(self, requests, disable_tqdm: bool = False):
        if self._sharing and not self.separate_generation:
            self.separate_generation = self._why_not_shared(requests)
            if self.separate_generation and self.rank == 0:
                print(f"llmtrunc: {self.separate_generation}: this task's conditions run one by one through "
                      "transformers' generate (as --separate)", file=sys.stderr, flush=True)
        if not (self.shared and self._sharing) or self.separate_generation:
            return super().generate_until(requests, disable_tqdm=disable_tqdm)
        self._rows = rows = self.batch_size  # rows decoded at once
        with compat.batched(self, max(1, rows // len(self._sharing))):  # prompts per prefill: rows // conditions
            return super().generate_until(requests, disable_tqdm=disable_tqdm)

    def _why_not_shared(self, requests) -> str | None:
        """Why this task's generation cannot be decoded together (None: it can): what hooks/<family>.yaml
        declares, the batch size, and the requests' generation settings (greedy only)."""
        if not self.arch.shared_generation:
            return f"{self.arch.family} does not share generation ({self.arch.source or 'no hooks/ file'})"
        if not isinstance(self.batch_size, int):
            return f"shared generation needs an integer batch size, not {self.batch_size!r}"
        for request in requests:
            settings = {k: v for k, v in request.args[1].items() if k not in ("until", "max_gen_toks")}
            why = generation.not_greedy(self.model, settings)
            if why:
                return why
        return None

    def _model_generate(self, context, max_length: int, stop: list[str], **generation_kwargs):
        if not (self.shared and self._sharing) or self.separate_generation:
            return super()._model_generate(context, max_length, stop, **generation_kwargs)
        current = self._current()
        key = (tuple(map(tuple, context.tolist())), max_length, tuple(stop))
        if (current.name, key) in self._generated:
            return self._generated.pop((current.name, key))
        attention_mask = generation_kwargs.pop("attention_mask", None)
        others = [c for c in self._sharing if c.name != current.name]
        batch, out = None, None
        if not current.mask.dropped:  # the baseline: transformers' generate, its prefill kept for the others
            with self._keep_prefill(context, attention_mask, bool(others)) as kept:
                out = super()._model_generate(context, max_length, stop, attention_mask=attention_mask, **generation_kwargs)
            batch, todo = kept.get("batch"), others
        else:
            todo = [current, *others]
        if todo:
            if batch is None:
                batch = generation.prefill(self.model, self.arch, context, attention_mask)
            self.prefills += 1
            config = self.model.generation_config
            eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
            with self._without_drop_hooks():
                outs = generation.decode(self.model, self.arch, self.tokenizer, batch, todo, max_length, stop,
                                         {e for e in eos if e is not None}, self.tokenizer.pad_token_id, self._rows)
            for condition, continuation in zip(todo, outs):
                self._generated[(condition.name, key)] = continuation
            out = self._generated.pop((current.name, key)) if out is None else out
            self._count_tokens(context, attention_mask, {current.name: out, **{c.name: o for c, o in zip(todo, outs)}},
                               max_length, stop, eos)
        return out

    def _count_tokens(self, context, attention_mask, outputs: dict, max_length: int, stop: list[str], eos) -> None:
        """The tokens this batch cost: its prompts once, each condition's rows up to their ends."""
        stops, eos_ids = generation.StopSequences(self.tokenizer, stop), {e for e in eos if e is not None}
        self.prompt_tokens += int(attention_mask.sum()) if attention_mask is not None else context.numel()
        for name, out in outputs.items():
            self.generated_tokens[name] = self.generated_tokens.get(name, 0) + sum(
                generation.generated_tokens(row, context.shape[1], stops, eos_ids, max_length) for row in out)

    @contextmanager
    def _keep_prefill(self, context, attention_mask, wanted: bool):
        """Around transformers' generate: a copy of the cache as its prefill left it, and the prefill's last
        pre-norm state.

        The copy is taken right after the first forward pass, so it holds exactly the prompt's keys and values
        for every cache layer type: a sliding-window layer keeps only its last window, and cropping generate's
        final cache back to the prompt cannot restore what it dropped (transformers refuses)."""
        kept: dict = {}
        if not wanted:
            yield kept
            return

        def after_prefill(module, args, kwargs, output):
            if "cache" not in kept and kwargs.get("cache") is not None:
                kept["cache"] = copy.deepcopy(kwargs["cache"])

        grab = self.model.register_forward_hook(after_prefill, with_kwargs=True)
        try:
            with generation.capture_norm_input(self.arch, self.model) as seen:
                yield kept
        finally:
            grab.remove()
        if "cache" in kept and seen:
            kwargs = generation.generation_kwargs(self.model, context, attention_mask)
            kwargs["cache"] = kept.pop("cache")
            kept["batch"] = generation.Prefill(context, kwargs["cache"], seen[0][:, -1:].detach(), kwargs)


class SharedBodyLM(SharedGeneration, SharedScoring, HFTruncLM):
    """hf-trunc that computes the body once for every condition of a group: scoring and generation."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arch = for_model(self.model)
        self.shared = self.arch.shared_body and self.backend == "causal"  # hooks/<family>.yaml says it is exact

    @property
    def compute(self) -> str:
        """"separate" also for a task whose generation fell back to separate runs (`separate_generation`)."""
        return "shared" if self.shared and not self.separate_generation else "separate"

    def clear_cache(self) -> None:
        self.forget_states()
        self.forget_generations()
