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
(tests/llm/test_gguf.py, on the real SmolLM2). Records, cell keys and profile keys go on naming the GGUF
(its folder and file name): the copy is only how it is read. A GGUF that is not a local file (a Hub id
with gguf_file=) loads as transformers loads it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from llmtrunc.data import cache_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import digest, file_digest, slug
from llmtrunc.llm.compat import dense_for_saving

FORMAT = 1
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


def convert(source: Path, target: Path, key: dict) -> None:
    """transformers' own load of the GGUF `source`, saved as a dense checkpoint in `target` (atomically)."""
    import transformers

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
            model = transformers.AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype="auto")
        except Exception as exc:  # transformers raises many types; the user needs the first line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LLMTruncError(f"cannot read the GGUF file {source}: {first}") from None
        architectures = model.config.architectures  # the GGUF load leaves it unset; save_pretrained fills it in
        with dense_for_saving(model):
            model.save_pretrained(staging)
        config = json.loads((staging / "config.json").read_text())
        (staging / "config.json").write_text(json.dumps({**config, "architectures": architectures}, indent=2,
                                                        sort_keys=True) + "\n")
        tokenizer.save_pretrained(staging)
        (staging / MARKER).write_text(json.dumps({**key, "source": str(source)}, indent=2) + "\n")
        try:
            staging.rename(target)  # atomic; fails when another process published the copy first
        except OSError:
            if not (target / MARKER).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
