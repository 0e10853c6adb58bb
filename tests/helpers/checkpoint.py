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


def bos_tokenizer():
    """A word-level tokenizer that adds BOS, as Llama's, Mistral's and Gemma's do, with a chat template; its
    vocabulary holds the words of llmtrunc.llm.tokenizer_parity's samples (TINY's vocabulary size at most)."""
    import re

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from llmtrunc.llm.tokenizer_parity import FEW_SHOT

    words = sorted(set(re.findall(r"\w+|[^\w\s]+", FEW_SHOT + " Jupiter, the fifth planet")))
    vocab = {token: i for i, token in enumerate(["<unk>", "<bos>", "<eos>", "<pad>", *words])}
    assert len(vocab) <= TINY["vocab_size"]
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", add_bos_token=True,
                                   chat_template="{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
