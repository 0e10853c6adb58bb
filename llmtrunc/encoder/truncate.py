"""Apply drop specs (and PCA) to embedding matrices.

Removing dimensions means slicing them away (equivalent to zeroing them for every similarity and for
the linear classifier). Following the paper's code, nothing is re-normalised after slicing: cosine
does so implicitly, dot-product models and the classifiers see the raw truncated vectors.

`pca:K` keeps the top d - floor(K*d) principal components, the same size as the matching truncation.
PCA is fitted on the allowed side only (corpus or train embeddings, never queries or test texts):
centred by the fit mean, components from one SVD of the fit matrix, so every K of a grid is a slice
of the same fit. When the fit side has fewer rows r than the requested size (tiny test subsets),
only r components exist and the remaining coordinates are zero, which changes neither cosine nor dot.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import DropSpec


@dataclass(frozen=True)
class Variant:
    """A drop spec resolved for one embedding size."""

    spec: DropSpec
    dim: int
    dropped: tuple[int, ...] | None  # None for pca (a projection, not a set of indices)
    n_keep: int

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def ratio(self) -> float:
        """The dropped share K as requested (0 for none; the realised share for indices)."""
        if self.spec.ratio is not None:
            return float(self.spec.ratio)
        return (self.dim - self.n_keep) / self.dim

    @property
    def keep(self) -> np.ndarray:
        if self.dropped is None:
            raise LLMTruncError("pca variants have no kept indices")
        mask = np.ones(self.dim, dtype=bool)
        mask[list(self.dropped)] = False
        return np.flatnonzero(mask)


def resolve(spec: DropSpec, dim: int) -> Variant:
    if spec.kind == "pca":
        n_drop = spec.n_drop(dim)
        return Variant(spec, dim, None, dim - n_drop)
    dropped = spec.indices(dim)
    return Variant(spec, dim, dropped, dim - len(dropped))


def truncate(matrix: np.ndarray, variant: Variant) -> np.ndarray:
    """The embedding matrix with the variant's dropped columns sliced away (not re-normalised)."""
    if matrix.shape[1] != variant.dim:
        raise LLMTruncError(f"embedding size {matrix.shape[1]} does not match the variant's {variant.dim}")
    if not variant.dropped:
        return matrix
    return np.ascontiguousarray(matrix[:, variant.keep])


class PCAProjector:
    """PCA fitted once on the allowed side; `transform(x, n)` projects onto the top-n components."""

    def __init__(self, fit_matrix: np.ndarray):
        fit = np.asarray(fit_matrix, dtype=np.float64)
        if fit.ndim != 2 or fit.shape[0] < 2:
            raise LLMTruncError("PCA needs at least two fit rows")
        self.dim = fit.shape[1]
        self.n_fit = fit.shape[0]
        self.mean = fit.mean(axis=0)
        _, singular, vt = np.linalg.svd(fit - self.mean, full_matrices=False)
        self.components = vt  # (min(n, d), d), rows sorted by explained variance
        self.explained_variance = singular**2 / max(self.n_fit - 1, 1)

    def transform(self, matrix: np.ndarray, n_components: int) -> np.ndarray:
        if matrix.shape[1] != self.dim:
            raise LLMTruncError(f"embedding size {matrix.shape[1]} does not match the PCA fit size {self.dim}")
        available = min(n_components, self.components.shape[0])
        projected = (np.asarray(matrix, dtype=np.float64) - self.mean) @ self.components[:available].T
        if available < n_components:
            projected = np.hstack([projected, np.zeros((matrix.shape[0], n_components - available))])
        return projected.astype(np.float32)


def apply(variant: Variant, matrix: np.ndarray, pca: PCAProjector | None = None) -> np.ndarray:
    if variant.kind == "pca":
        if pca is None:
            raise LLMTruncError("pca variant needs a fitted PCAProjector")
        return pca.transform(matrix, variant.n_keep)
    return truncate(matrix, variant)


def k_percent(spec: DropSpec) -> float | None:
    return None if spec.ratio is None else float(Fraction(spec.ratio) * 100)
