"""The model registry's GGUF loading: parsed once per process, the same model as a fresh parse."""

import shutil
from pathlib import Path

import gguf
import numpy as np

from llmtrunc.llm.models import _ReadOnce, parse_gguf_once


def test_a_gguf_file_is_parsed_once_and_reads_as_a_fresh_parse(smollm2_dir, tmp_path):
    parse_gguf_once()  # perhaps already done by an earlier load in this process
    parse_gguf_once()  # idempotent: never wraps twice
    assert gguf.GGUFReader is _ReadOnce and not hasattr(gguf.get_tensor_name_map.__wrapped__, "cache_info")
    library = _ReadOnce.__base__
    path = Path(smollm2_dir.pretrained) / smollm2_dir.gguf_file
    cached = gguf.GGUFReader(path)
    assert gguf.GGUFReader(path) is cached  # the second open of an unchanged file reuses the parse
    fresh = library(path)  # the library's own class, parsing again
    assert list(cached.fields) == list(fresh.fields)
    for name, field in fresh.fields.items():
        assert field.contents() == cached.fields[name].contents(), name
    assert [t.name for t in cached.tensors] == [t.name for t in fresh.tensors]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(cached.tensors, fresh.tensors))
    # a changed file is parsed anew
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    first = gguf.GGUFReader(copy)
    with copy.open("r+b") as f:
        f.seek(0, 2)
        f.write(b"\0" * 32)  # alignment padding at the end: still a valid file, another size
    assert gguf.GGUFReader(copy) is not first
    arch = gguf.MODEL_ARCH.LLAMA
    assert gguf.get_tensor_name_map(arch, 30) is gguf.get_tensor_name_map(arch, 30)
    assert gguf.get_tensor_name_map(arch, 30).mapping == gguf.tensor_mapping.TensorNameMap(arch, 30).mapping
