"""Tiny GGUF files that hold only a tokenizer (llama.cpp's metadata keys, no tensors): enough for transformers'
GGUF tokenizer conversion, which is what a dense copy's tokenizer comes from (llmtrunc.llm.gguf)."""

from __future__ import annotations

import string
from pathlib import Path

# Each hooks/ family's GGUF architecture name and tokenizer model (tokenizer.ggml.model): sentencepiece ("llama")
# or byte-level BPE ("gpt2"); transformers picks Gemma's and Phi-3's tokenizer builders by architecture.
GGUF_TOKENIZERS = {"llama": [("llama", "llama"), ("llama", "gpt2")], "mistral": [("llama", "llama")],
                   "gemma2": [("gemma2", "llama")], "gemma3": [("gemma3", "llama")], "phi3": [("phi3", "llama")],
                   "qwen2": [("qwen2", "gpt2")], "qwen3": [("qwen3", "gpt2")], "gpt2": [("gpt2", "gpt2")]}
NO_GGUF = {"gemma": "gemma", "gpt_neox": "gptneox", "olmo2": "olmo2"}  # families whose GGUFs transformers cannot read


def tiny_gguf(path: Path, architecture: str, model: str, add_bos: bool | None = True, add_eos: bool = False) -> Path:
    """A GGUF at `path` with a tiny `model` ("llama" | "gpt2") vocabulary; `add_bos` None: the file sets no BOS flag."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tokenizer_model(model)
    if model == "llama":
        tokens = ["<unk>", "<bos>", "<eos>", "<pad>", "\u2581", *(c for c in string.printable if not c.isspace()),
                  "\u2581Question", "\u2581What", "\u2581the", "Answer"]
        writer.add_token_list(tokens)
        writer.add_token_scores([-float(i) for i in range(len(tokens))])
        writer.add_token_types([2, 3, 3, 3] + [1] * (len(tokens) - 4))  # unknown, control x3, normal
        writer.add_unk_token_id(0)
        writer.add_pad_token_id(3)
        bos, eos = 1, 2
    else:
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        tokens = ["<|bos|>", "<|eos|>", *bytes_to_unicode().values(), "\u0120t", "\u0120th", "\u0120the"]
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types([3, 3] + [1] * (len(tokens) - 2))
        writer.add_token_merges(["\u0120 t", "\u0120t h", "\u0120th e"])
        bos, eos = 0, 1
    writer.add_bos_token_id(bos)
    writer.add_eos_token_id(eos)
    if add_bos is not None:
        writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
