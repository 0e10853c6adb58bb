"""Compute once, score many: the transformer body runs once per loglikelihood request.

A drop only changes the final hidden state, so for loglikelihood-based requests (multiple
choice, loglikelihood_rolling) `SharedBodyLM` keeps the last decoder layer's output at the
scored positions and scores each drop condition from it with only the final norm and the LM
head, called as the real modules so the truncation hooks of the current condition apply exactly
as in a full forward pass. Generation requests run the whole model per condition, as usual.

The baseline (nothing dropped) is never scored this way: it runs lm-eval's own HFLM code, so it
equals plain lm-eval bit for bit, and its forward passes fill the cache on the way (a pre-hook on
the final norm reads the states; the rows of each batch are matched to requests by their tokens).

The cache lives on one loaded model (so never crosses models, revisions or dtypes) and is keyed
by the exact input token ids and continuation length (so never crosses task configs); the
position is applied at scoring time, never cached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from llmtrunc.llm.architectures import for_model
from llmtrunc.llm.hf_trunc import HFTruncLM


class SharedBodyLM(HFTruncLM):
    SCORE_TOKENS = 1024  # scored positions per LM-head call (bounds the vocab-sized logits in memory)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arch = for_model(self.model)
        self.shared = self.arch.shared_body and self.backend == "causal"  # hooks/<family>.yaml says it is exact
        self._states: dict[tuple[tuple[int, ...], int], torch.Tensor] = {}
        self._wanted: dict[tuple[int, ...], list[tuple[tuple[int, ...], int]]] | None = None
        self.body_passes = 0  # requests whose body was computed (for tests and benchmarks)

    def clear_cache(self) -> None:
        self._states.clear()

    def _body_batch(self, keys: list[tuple[tuple[int, ...], int]]) -> None:
        """Run the decoder stack on right-padded inputs; keep pre-norm states at the scored positions."""
        inputs = [torch.tensor(full[:-1], dtype=torch.long) for full, _ in keys]
        length = max(len(x) for x in inputs)
        batch = torch.zeros(len(inputs), length, dtype=torch.long)
        for row, x in enumerate(inputs):
            batch[row, : len(x)] = x
        captured = []
        norm = self.arch.find(self.model, "final_norm")
        # prepend: capture the untouched state before any pre-norm truncation hook sees it
        handle = norm.register_forward_pre_hook(lambda m, a: captured.append(a[0]), prepend=True)
        try:
            with torch.no_grad():
                self.arch.find(self.model, "decoder")(input_ids=batch.to(self.device), use_cache=False)
        finally:
            handle.remove()
        states = captured[0]
        for row, (key, x) in enumerate(zip(keys, inputs)):
            contlen = key[1]
            self._states[key] = states[row, len(x) - contlen: len(x)].detach().clone()
        self.body_passes += len(keys)

    def _head_logprobs(self, states: torch.Tensor) -> torch.Tensor:
        """log-softmax over the vocabulary under the current drop: final norm, LM head, softcap."""
        with torch.no_grad():
            return F.log_softmax(self.arch.logits(self.model, states), dim=-1, dtype=self.softmax_dtype)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
        if not self.shared:
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm, override_bs=override_bs)
        keys = []
        for _, context_enc, continuation_enc in requests:
            full = tuple((context_enc + continuation_enc)[-(self.max_length + 1):])  # as HFLM truncates
            keys.append((full, len(continuation_enc)))
        if self.drop.kind == "none":
            return self._plain_and_capture(requests, keys, disable_tqdm, override_bs)
        missing = sorted({k for k in keys if k not in self._states}, key=lambda k: -len(k[0]))
        size = self.batch_size if isinstance(self.batch_size, int) and self.batch_size > 0 else 8
        for start in tqdm(range(0, len(missing), size), disable=disable_tqdm or self.rank != 0,
                          desc="Running shared body"):
            self._body_batch(missing[start: start + size])
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
        captured = []
        handle = self.arch.find(self.model, "final_norm").register_forward_pre_hook(
            lambda m, a: captured.append(a[0]), prepend=True)
        try:
            logits = super()._model_call(inps, attn_mask, labels)
        finally:
            handle.remove()
        lengths = sorted({len(x) for x in self._wanted})
        for row, tokens in enumerate(inps.tolist()):  # right-padded: a request's input is a prefix of its row
            for n in (n for n in lengths if n <= len(tokens)):
                for key in self._wanted.pop(tuple(tokens[:n]), ()):
                    self._states[key] = captured[0][row, n - key[1]: n].detach().clone()
                    self.body_passes += 1
        return logits

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
