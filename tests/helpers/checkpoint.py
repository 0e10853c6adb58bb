"""A tiny random-weight causal LM saved as an ordinary checkpoint directory (weights, config, tokenizer)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.models import TINY, tiny_model


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(TINY["vocab_size"] - 1)}
    vocab["<unk>"] = TINY["vocab_size"] - 1
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="w0", pad_token="w0")


def save_tiny(folder: Path, arch: str = "qwen2", tied: bool = False) -> Path:
    """Write tiny_model(arch, tied) and a word-level tokenizer into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_model(arch, tied).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
