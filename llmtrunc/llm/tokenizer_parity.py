"""A written checkpoint's tokenizer must encode text exactly as the tokenizer it was written from.

An export or a dense GGUF copy is only the source model if an engine that tokenizes from the folder
feeds it the same token ids. The logits check of an export (llmtrunc.llm.export.verify) runs on token
ids and cannot see the tokenizer, so a folder whose tokenizer lost BOS (transformers 5.19's GGUF
conversion, issue 31) passed it while every engine scored a different input. `verify` reloads the
folder's tokenizer with transformers and compares its encodings of sample prompts (plain text with and
without special tokens, a few-shot prompt, text holding the special tokens, the chat template when
the tokenizer has one) with the source tokenizer's; a difference is one line naming the first sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmtrunc.errors import LLMTruncError

QUESTION = "Question: What is the largest planet in the Solar System?\nAnswer:"
FEW_SHOT = ("Question: Which gas do plants take in?\nAnswer: carbon dioxide\n\n"
            "Question: What is 12 + 30?\nAnswer: 42\n\n" + QUESTION)


def samples(tokenizer) -> dict[str, tuple[str, bool]]:
    """name -> (text, add_special_tokens): what lm-eval encodes (contexts with, continuations without special
    tokens), the special tokens written in text, and the chat template's rendering where there is one."""
    found = {"plain": (QUESTION, True), "continuation": (" Jupiter, the fifth planet", False),
             "few-shot": (FEW_SHOT, True),
             "special tokens in text": (" ".join([*tokenizer.all_special_tokens, QUESTION]), True)}
    if tokenizer.chat_template:
        chat = [{"role": "user", "content": QUESTION}]
        found["chat template"] = (tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), False)
    return found


def encodings(tokenizer) -> dict[str, list[int]]:
    """Every sample's token ids; the chat template's rendered text is a sample too, so a changed template shows."""
    return {name: tokenizer(text, add_special_tokens=special)["input_ids"]
            for name, (text, special) in samples(tokenizer).items()}


def verify(source, folder: str | Path, what: str) -> dict[str, Any]:
    """Reload the tokenizer saved in `folder` and require `source`'s encodings of every sample; refused in one
    line naming the first sample that differs. Returns what was compared (for the folder's records)."""
    import transformers

    written = transformers.AutoTokenizer.from_pretrained(folder)
    expected, got = encodings(source), encodings(written)  # each renders its own chat template
    for name, ids in expected.items():
        if got.get(name) != ids:
            shown = "no chat template" if name not in got else _head(got[name])
            raise LLMTruncError(f"the {what}'s tokenizer does not encode as its source's: the {name} sample gives "
                                f"{shown} instead of {_head(ids)}; nothing was written")
    plain = expected["plain"]
    return {"samples": sorted(expected), "tokens": sum(map(len, expected.values())),
            "adds_bos": source.bos_token_id is not None and plain[:1] == [source.bos_token_id],
            "adds_eos": source.eos_token_id is not None and plain[-1:] == [source.eos_token_id]}


def _head(ids: list[int], n: int = 6) -> str:
    return "[" + ", ".join(map(str, ids[:n])) + (", ...]" if len(ids) > n else "]")
