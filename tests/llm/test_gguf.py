"""A local GGUF loads through its dense copy: the same weights, config and tokenizer as transformers' GGUF load."""

import json
import shutil

import pytest
import torch
import transformers

from llmtrunc.files import file_digest
from llmtrunc.llm.gguf import MARKER, copy_key, dense_copy

TEXTS = ["Hello world, the capital of France is", " leading space and\n\nnew lines\t tabs",
         "<|im_start|>user\nhi<|im_end|>", "ünïcödé 123 + 4.5e-6 = ?"]


@pytest.fixture(scope="module")
def gguf_load(smollm2_dir):
    """transformers' own load of the real SmolLM2 GGUF (the reference), and its dense copy's folder."""
    kwargs = {"gguf_file": smollm2_dir.gguf_file}
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir.pretrained, **kwargs)
    model = transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir.pretrained, dtype="auto", **kwargs)
    return tokenizer, model, dense_copy(smollm2_dir.pretrained, smollm2_dir.gguf_file)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa)


def test_the_dense_copy_loads_the_gguf_bit_for_bit(gguf_load, smollm2_dir):
    tokenizer, model, folder = gguf_load
    dense = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="auto")
    assert dense.dtype == model.dtype == torch.float32 and same_weights(dense, model)
    assert dense.lm_head.weight.data_ptr() == dense.model.embed_tokens.weight.data_ptr()  # still tied
    config, reference = dense.config.to_dict(), model.config.to_dict()
    for different in ("quantization_config", "_name_or_path"):  # the GGUF load's quantizer; where it was read from
        reference.pop(different), config.pop(different, None)
    assert config == reference
    assert dense.generation_config.to_dict() == model.generation_config.to_dict()
    ids = torch.tensor([tokenizer(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        assert torch.equal(dense(ids).logits, model(ids).logits)
    meta = json.loads((folder / MARKER).read_text())
    assert meta["sha256"] == file_digest(f"{smollm2_dir.pretrained}/{smollm2_dir.gguf_file}")
    assert meta["transformers"] == transformers.__version__


def test_the_dense_copy_casts_as_the_gguf_load_does(gguf_load, smollm2_dir):
    *_, folder = gguf_load
    cast = transformers.AutoModelForCausalLM.from_pretrained(smollm2_dir.pretrained, gguf_file=smollm2_dir.gguf_file,
                                                             dtype="bfloat16")
    assert same_weights(transformers.AutoModelForCausalLM.from_pretrained(folder, dtype="bfloat16"), cast)


def test_the_dense_copy_has_the_gguf_tokenizer(gguf_load):
    tokenizer, _, folder = gguf_load
    dense = transformers.AutoTokenizer.from_pretrained(folder)
    assert dense.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert dense.get_vocab() == tokenizer.get_vocab() and dense.special_tokens_map == tokenizer.special_tokens_map
    assert dense.chat_template == tokenizer.chat_template and dense.model_max_length == tokenizer.model_max_length
    for add in (True, False):
        assert dense(TEXTS, add_special_tokens=add)["input_ids"] == tokenizer(TEXTS, add_special_tokens=add)["input_ids"]
    encoded = tokenizer(TEXTS)["input_ids"]
    assert dense.batch_decode(encoded) == tokenizer.batch_decode(encoded)
    chat = [{"role": "user", "content": "hi"}]
    assert dense.apply_chat_template(chat, tokenize=False) == tokenizer.apply_chat_template(chat, tokenize=False)


def test_the_copy_is_made_once_and_named_by_content(gguf_load, smollm2_dir, tmp_path):
    *_, folder = gguf_load
    source = tmp_path / smollm2_dir.gguf_file
    shutil.copy(f"{smollm2_dir.pretrained}/{smollm2_dir.gguf_file}", source)
    key, meta = copy_key(source), json.loads((folder / MARKER).read_text())
    assert {name: meta[name] for name in key} == key  # the copy records what it was made from
    mtime = (folder / MARKER).stat().st_mtime_ns
    assert dense_copy(str(tmp_path), source.name) == folder  # the same content, wherever it lies: no new conversion
    assert (folder / MARKER).stat().st_mtime_ns == mtime
    assert dense_copy(str(tmp_path), "absent.gguf") is None  # not a local file: transformers loads it as given
    with source.open("r+b") as handle:
        handle.seek(0, 2)
        handle.write(b"\0" * 32)  # alignment padding: still a valid file, other content
    assert copy_key(source)["sha256"] != json.loads((folder / MARKER).read_text())["sha256"]


def test_hf_trunc_loads_the_copy_and_keeps_naming_the_gguf(gguf_load, smollm2_dir):
    from llmtrunc.llm.hf_trunc import HFTruncLM

    *_, folder = gguf_load
    lm = HFTruncLM(pretrained="smollm2-135m", device="cpu", batch_size=1)
    assert lm.model.name_or_path == str(folder)
    assert lm.identity["pretrained"] == smollm2_dir.pretrained and lm.identity["gguf_file"] == smollm2_dir.gguf_file
