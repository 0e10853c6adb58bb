"""A local GGUF file as a dense safetensors checkpoint, converted once into the cache and loaded normally.

transformers reads a GGUF file three times per load (config, tokenizer, weights) and dequantises it every
time: SmolLM2-135M took 13 to 33 s per load. `dense_copy` does transformers' own GGUF load once, saves the
result with `save_pretrained` (weights, config, generation config, tokenizer) under
$LLMTRUNC_CACHE_DIR/gguf (else the checkout's .cache/gguf), and every later load is an ordinary
safetensors load (under a second). The copy is keyed by the file's SHA-256 and the transformers version
that dequantised it, so an edited file or another transformers gets its own copy; it is written to a
temporary folder and renamed into place, so concurrent processes never see half of one.

Loaded from the copy, the model has the GGUF load's weights bit for bit (in float32 and when cast to
bfloat16 or float16), its config (less the `quantization_config` of the GGUF load) and its tokenizer
(tests/llm/test_gguf.py, on the real SmolLM2).

The tokenizer adds BOS and EOS as the file says (`tokenizer.ggml.add_bos_token`, `add_eos_token`; a
sentencepiece vocabulary without the BOS flag adds BOS, as llama.cpp reads it), passed to transformers
explicitly: transformers 5.19 (the vLLM CPU engine's pin) ignores those keys and builds every GGUF tokenizer
without BOS, so its copy of Gemma 3 fed engines text without `<bos>` (issue 31); 5.25 reads them. The copy's
tokenizer is reloaded and must encode sample prompts exactly as that tokenizer does
(llmtrunc.llm.tokenizer_parity), whatever transformers converts. Records, cell keys and profile keys go on
naming the GGUF (its folder and file name): the copy is only how it is read. A GGUF that is not a local file (a Hub id
with gguf_file=) loads as transformers loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

from llmtrunc.data import cache_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import digest, file_digest, slug, staged_folder
from llmtrunc.llm.compat import dense_for_saving

FORMAT = 2  # 2: the tokenizer takes the file's BOS/EOS flags and is verified (copies of 1 may lack BOS)
MARKER = "llmtrunc_gguf.json"  # written last: its presence marks a complete copy


def dense_copy(pretrained: str, gguf_file: str) -> Path | None:
    """The dense checkpoint folder of the local GGUF file `pretrained`/`gguf_file`, converted on first use;
    None when that is no local file."""
    source = Path(pretrained) / gguf_file
    if not source.is_file():
        return None
    key = copy_key(source)
    target = cache_dir("gguf") / f"{slug(source.stem, 60)}__{digest(key)}"
    if not (target / MARKER).is_file():
        convert(source, target, key)
    return target


def copy_key(source: Path) -> dict:
    """What a dense copy depends on: the GGUF file's content and the transformers that dequantises it."""
    import transformers

    return {"sha256": file_digest(source), "transformers": transformers.__version__, "format": FORMAT}


def tokenizer_flags(source: Path) -> dict[str, bool]:
    """Whether the GGUF file's tokenizer adds BOS and EOS, as llama.cpp reads it: its add_bos_token and
    add_eos_token where it sets them; a sentencepiece vocabulary ("llama") that sets no BOS flag adds BOS."""
    from gguf import GGUFReader

    fields = GGUFReader(source).fields
    flags = {name: bool(fields[f"tokenizer.ggml.{name}"].contents()) for name in ("add_bos_token", "add_eos_token")
             if f"tokenizer.ggml.{name}" in fields}
    model = fields["tokenizer.ggml.model"].contents() if "tokenizer.ggml.model" in fields else None
    if model == "llama":
        flags.setdefault("add_bos_token", True)
    return flags


def gguf_tokenizer(source: Path):
    """transformers' tokenizer of the GGUF file `source`, adding BOS and EOS as the file says (checked: a
    transformers that took the flags and built its post-processor otherwise is refused in one line)."""
    import transformers

    flags = tokenizer_flags(source)
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name, **flags)
    ids = tokenizer("a")["input_ids"]
    for name, token_id, end in (("add_bos_token", tokenizer.bos_token_id, ids[:1]),
                                ("add_eos_token", tokenizer.eos_token_id, ids[-1:])):
        if name in flags and token_id is not None and (end == [token_id]) != flags[name]:
            raise LLMTruncError(f"transformers {transformers.__version__} does not honour {source.name}'s "
                                f"tokenizer.ggml.{name} = {flags[name]}: its tokenizer encodes 'a' as {ids}")
    return tokenizer


def write_tokenizer(source: Path, folder: Path) -> dict:
    """The GGUF's tokenizer saved into `folder`, verified to encode as it does; what was compared."""
    from llmtrunc.llm.tokenizer_parity import verify

    tokenizer = gguf_tokenizer(source)
    tokenizer.save_pretrained(folder)
    return verify(tokenizer, folder, f"dense copy of {source.name}")


def convert(source: Path, target: Path, key: dict) -> None:
    """transformers' own load of the GGUF `source`, saved as a dense checkpoint in `target` (atomically)."""
    import transformers

    # another process that published the copy first wins; ours is discarded
    with staged_folder(target, complete=lambda folder: (folder / MARKER).is_file()) as staging:
        try:
            tokenizer = write_tokenizer(source, staging)
            model = transformers.AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype="auto")
        except LLMTruncError:
            raise
        except Exception as exc:  # transformers raises many types; the user needs the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LLMTruncError(f"cannot read the GGUF file {source}: {first}") from None
        architectures = model.config.architectures  # the GGUF load leaves it unset; save_pretrained fills it in
        with dense_for_saving(model):
            model.save_pretrained(staging)
        config = json.loads((staging / "config.json").read_text())
        (staging / "config.json").write_text(json.dumps({**config, "architectures": architectures}, indent=2,
                                                        sort_keys=True) + "\n")
        (staging / MARKER).write_text(json.dumps({**key, "source": str(source), "tokenizer": tokenizer}, indent=2) + "\n")
