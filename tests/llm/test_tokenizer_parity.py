"""Exports and dense GGUF copies encode text exactly as their source's tokenizer does (issue 31).

transformers 5.19, the vLLM CPU engine's pin, ignores a GGUF's add_bos_token: its dense copy of Gemma 3, and
every export made from it, fed engines text without BOS. For every family in hooks/, a tiny tokenizer that
adds BOS goes through an export, and a tiny GGUF tokenizer that adds BOS through the dense copy's tokenizer
step, here and in the vLLM environment; a folder whose tokenizer lost BOS is refused in one line.
"""

import json
import subprocess

import pytest
import transformers

from llmtrunc.data import PROJECT_ROOT
from llmtrunc.errors import LLMTruncError
from llmtrunc.llm import export
from llmtrunc.llm.gguf import gguf_tokenizer, write_tokenizer
from llmtrunc.llm.tokenizer_parity import QUESTION, encodings, verify
from llmtrunc.spec import parse_drop
from tests.helpers.checkpoint import bos_tokenizer
from tests.helpers.gguf import GGUF_TOKENIZERS, NO_GGUF, tiny_gguf
from tests.helpers.models import FAMILIES, tiny_model
from tests.helpers.vllm import require_vllm_env

GGUF_CASES = [(family, architecture, model) for family, kinds in GGUF_TOKENIZERS.items() for architecture, model in kinds]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_an_export_of_every_family_encodes_as_its_source_tokenizer(family, tmp_path):
    model = tiny_model(family)
    model.save_pretrained(tmp_path / "source")
    bos_tokenizer().save_pretrained(tmp_path / "source")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "source")  # as export.load_source loads it
    out = export.export_model(model, tokenizer, parse_drop("last-half"), tmp_path / "export")
    checked = export.read_drop(out)["verification"]["tokenizer"]
    assert checked["adds_bos"] and not checked["adds_eos"] and "chat template" in checked["samples"]
    written = transformers.AutoTokenizer.from_pretrained(out)
    assert written(QUESTION)["input_ids"][0] == tokenizer.bos_token_id == 1
    assert encodings(written) == encodings(tokenizer)


def test_every_family_in_hooks_is_covered_by_the_gguf_cases():
    assert set(GGUF_TOKENIZERS) | set(NO_GGUF) == set(FAMILIES) and not set(GGUF_TOKENIZERS) & set(NO_GGUF)


@pytest.mark.parametrize("family,architecture,model", GGUF_CASES)
def test_a_dense_copy_tokenizer_adds_bos_and_eos_as_the_gguf_says(family, architecture, model, tmp_path):
    for add_bos, add_eos in ((True, False), (False, True)):
        source = tiny_gguf(tmp_path / f"{add_bos}.gguf", architecture, model, add_bos, add_eos)
        checked = write_tokenizer(source, tmp_path / f"copy-{add_bos}")
        assert (checked["adds_bos"], checked["adds_eos"]) == (add_bos, add_eos), family


def test_a_sentencepiece_gguf_without_a_bos_flag_adds_bos_as_llama_cpp_does(tmp_path):
    assert write_tokenizer(tiny_gguf(tmp_path / "t.gguf", "llama", "llama", add_bos=None), tmp_path / "copy")["adds_bos"]


@pytest.mark.parametrize("family", sorted(NO_GGUF))
def test_transformers_reads_no_gguf_of_the_remaining_families(family, tmp_path):
    with pytest.raises(ValueError, match="not supported"):
        gguf_tokenizer(tiny_gguf(tmp_path / "t.gguf", NO_GGUF[family], "llama"))


def test_a_folder_whose_tokenizer_lost_bos_is_refused_in_one_line(tmp_path):
    """What transformers 5.19 wrote for Gemma 3: the GGUF's tokenizer without its BOS."""
    source = tiny_gguf(tmp_path / "t.gguf", "gemma3", "llama")
    lost = gguf_tokenizer(source)
    lost.add_bos_token = False
    lost.save_pretrained(tmp_path / "lost")
    with pytest.raises(LLMTruncError) as refused:
        verify(gguf_tokenizer(source), tmp_path / "lost", "export")
    message = str(refused.value)
    assert message.startswith("the export's tokenizer does not encode as its source's: the plain sample gives [")
    assert "instead of [1, " in message and "\n" not in message


VLLM_ENV_SCRIPT = """
import json, sys
from pathlib import Path
import transformers
from llmtrunc.llm.gguf import write_tokenizer
from tests.helpers.gguf import tiny_gguf
root = Path(sys.argv[1])
for name in sys.argv[2:]:
    architecture, model = name.split("-")
    source = tiny_gguf(root / f"{name}.gguf", architecture, model)
    print(json.dumps([transformers.__version__, name, write_tokenizer(source, root / name)]))
"""


def test_the_vllm_environment_writes_the_same_tokenizers(tmp_path):
    """Its older transformers converts each tiny GGUF tokenizer into the same files, BOS included."""
    python = require_vllm_env()
    names = sorted({f"{architecture}-{model}" for _, architecture, model in GGUF_CASES})
    (tmp_path / "vllm").mkdir()
    proc = subprocess.run([str(python), "-c", VLLM_ENV_SCRIPT, str(tmp_path / "vllm"), *names], capture_output=True,
                          text=True, timeout=300, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [name for _, name, _ in lines] == names and all(checked["adds_bos"] for *_, checked in lines)
    for name in names:
        architecture, model = name.split("-")
        write_tokenizer(tiny_gguf(tmp_path / f"{name}.gguf", architecture, model), tmp_path / "main" / name)
        for file in ("tokenizer.json", "tokenizer_config.json"):
            assert (tmp_path / "vllm" / name / file).read_bytes() == (tmp_path / "main" / name / file).read_bytes(), name
    print(f"transformers {lines[0][0]} (vLLM environment) and {transformers.__version__} write the same tokenizers")
