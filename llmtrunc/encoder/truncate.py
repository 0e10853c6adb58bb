"""Apply drop specs (and PCA) to embedding matrices.

Removing dimensions means slicing them away (`llmtrunc.spec.Mask.remove`; equivalent to zeroing
them for every similarity and for the linear classifier). Following the paper's code, nothing is re-normalised after slicing: cosine
does so implicitly, dot-product models and the classifiers see the raw truncated vectors.

`pca:K` keeps the top d - floor(K*d) principal components, the same size as the matching truncation.
PCA is fitted on the allowed side only (corpus or train embeddings, never queries or test texts):
centred by the fit mean, components from one SVD of the fit matrix, so every K of a grid is a slice
of the same fit. When the fit side has fewer rows r than the requested size (tiny test subsets),
only r components exist and the remaining coordinates are zero, which changes neither cosine nor dot.
"""

from __future__ import annotations

import numpy as np

from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import DropSpec


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


def apply(spec: DropSpec, matrix: np.ndarray, pca: PCAProjector | None = None) -> np.ndarray:
    """`matrix` under `spec`: dropped columns sliced away (`Mask.remove`), or the PCA projection to the
    same size (d - floor(K*d) components)."""
    dim = matrix.shape[1]
    if spec.kind == "pca":
        if pca is None:
            raise LLMTruncError("pca variant needs a fitted PCAProjector")
        return pca.transform(matrix, dim - spec.n_drop(dim))
    return spec.mask(dim).remove(matrix)
