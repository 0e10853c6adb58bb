"""TruncatedEncoder: a sentence encoder with dimensions removed, usable in `mteb.evaluate`.

    import mteb
    from llmtrunc.encoder.mteb_wrapper import TruncatedEncoder

    model = TruncatedEncoder("e5-large", drop="random:50%@3")
    mteb.evaluate(model, mteb.get_tasks(tasks=["SciFact", "Banking77Classification", "STSBenchmark"]))

It follows mteb 2.x's EncoderProtocol (`encode(inputs, *, task_metadata, hf_split, hf_subset,
prompt_type)`, `similarity`, `similarity_pairwise`, `mteb_model_meta`) and also accepts a plain list
of strings (mteb 1.x / sentence-transformers style). mteb is imported only when mteb asks for
`mteb_model_meta`. Prompts come from the llmtrunc alias registry (query/document/symmetric roles,
e5-mistral instructions by task). `pca:K` needs `pca_fit_texts` (the corpus or train texts): the
encode interface cannot tell which side of a task it is given, and PCA must never be fitted on
queries or test texts.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from llmtrunc.encoder import truncate as trunc
from llmtrunc.encoder.models import DEFAULT_MODEL, Encoder, EncoderSpec, resolve_model, similarity_matrix, similarity_pairwise
from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import DropSpec, parse_drop


def _texts(inputs: Any) -> list[str]:
    """A list of strings, or mteb's DataLoader of batches ({"text": [...]} dicts)."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, Sequence) and (not inputs or isinstance(inputs[0], str)):
        return list(inputs)
    texts: list[str] = []
    for batch in inputs:
        if isinstance(batch, dict):
            values = batch.get("text")
            if values is None:
                raise LLMTruncError(f"TruncatedEncoder handles text inputs only; got batch keys {sorted(batch)}")
            texts.extend([values] if isinstance(values, str) else list(values))
        elif isinstance(batch, str):
            texts.append(batch)
        else:
            texts.extend(list(batch))
    return texts


class TruncatedEncoder:
    """Encode with a sentence-transformers model, then remove dimensions as a drop spec says."""

    def __init__(self, model: str | Any = DEFAULT_MODEL, drop: str | DropSpec = "none", *, revision: str | None = None,
                 device: str | None = None, batch_size: int = 32, pca_fit_texts: Iterable[str] | None = None, **_: Any):
        if isinstance(model, str):
            self.encoder = Encoder(resolve_model(model), device=device, revision=revision, batch_size=batch_size)
        else:  # an already loaded SentenceTransformer
            spec = EncoderSpec(alias=type(model).__name__, hub_id=str(getattr(model, "model_card_data", None) and
                                                                       model.model_card_data.base_model or "local"))
            self.encoder = Encoder(spec, device=device, revision=revision, batch_size=batch_size, loaded=model)
        self.drop = parse_drop(drop) if isinstance(drop, str) else drop
        self._pca_fit_texts = list(pca_fit_texts) if pca_fit_texts is not None else None
        self._pca: trunc.PCAProjector | None = None
        self._meta = None

    def _fit_pca(self) -> trunc.PCAProjector | None:
        if self.drop.kind == "pca" and self._pca is None:
            if not self._pca_fit_texts:
                raise LLMTruncError("pca:K needs pca_fit_texts (corpus or train texts, never queries or test texts)")
            self._pca = trunc.PCAProjector(self.encoder.embed(self._pca_fit_texts, self.encoder.spec.prompt("document")))
        return self._pca

    def encode(self, inputs: Any, *, task_metadata: Any = None, hf_split: str | None = None, hf_subset: str | None = None,
               prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
        role = getattr(prompt_type, "value", prompt_type) or "symmetric"
        if role not in ("query", "document"):
            role = "symmetric"
        task_name = getattr(task_metadata, "name", "") or ""
        task_kind = (getattr(task_metadata, "type", "") or "").lower()
        from llmtrunc.encoder.tasks import MTEB_NAMES

        prompt = self.encoder.spec.prompt(role, MTEB_NAMES.get(task_name.lower(), task_name), "sts" if task_kind == "sts" else task_kind)
        embeddings = self.encoder.embed(_texts(inputs), prompt)
        return trunc.apply(self.drop, embeddings, self._fit_pca())

    def similarity(self, embeddings1, embeddings2):
        return _as_tensor(similarity_matrix(_np(embeddings1), _np(embeddings2), self.encoder.spec.similarity))

    def similarity_pairwise(self, embeddings1, embeddings2):
        return _as_tensor(similarity_pairwise(_np(embeddings1), _np(embeddings2), self.encoder.spec.similarity))

    @property
    def name(self) -> str:
        suffix = self.drop.name.replace(":", "-").replace("%", "pct").replace("@", "-seed").replace("/", "_")
        base = self.encoder.model_id if "/" in self.encoder.model_id else f"local/{self.encoder.model_id}"
        return f"{base}__drop-{suffix}"

    @property
    def mteb_model_meta(self):
        if self._meta is None:
            from mteb.models import ModelMeta
            from mteb.models.model_meta import ScoringFunction

            self._meta = ModelMeta.create_empty(overwrites={
                "name": self.name,
                "revision": self.encoder.revision,
                "embed_dim": self.encoder.dim - self.drop.n_drop(self.encoder.dim),
                "similarity_fn_name": ScoringFunction.COSINE if self.encoder.spec.similarity == "cosine" else ScoringFunction.DOT_PRODUCT,
                "framework": ["Sentence Transformers"],
                "modalities": ["text"],
            })
        return self._meta


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    return x[None, :] if x.ndim == 1 else x


def _as_tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))
