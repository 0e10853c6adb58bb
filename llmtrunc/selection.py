"""Attribution selections shared by both tracks: which dimensions degrade or improve a score when removed
alone, and the K% most degrading / most improving of them (llmtrunc.encoder.analysis, llmtrunc.llm.attribution).

delta_j = score without dimension j - full score. delta_j > 0: removing j improves the score (a *degrading*
dimension); delta_j < 0: an *improving* dimension.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from llmtrunc.spec import DropSpec


def share(k_percent: int | float) -> Fraction:
    """K% as the exact fraction a K% spec holds (12.5 -> 1/8)."""
    return Fraction(str(k_percent)) / 100


def n_drop(dim: int, k_percent: int | float) -> int:
    """floor(K% of dim), exactly as a first/last/random:K% spec counts it."""
    return DropSpec("random", share(k_percent), 0).n_drop(dim)


def split_sets(delta: np.ndarray, tol: float = 0.0) -> dict[str, np.ndarray]:
    """Degrading (removal improves: delta > tol), improving (delta < -tol) and neutral dimensions."""
    return {"degrading": np.flatnonzero(delta > tol), "improving": np.flatnonzero(delta < -tol),
            "neutral": np.flatnonzero(np.abs(delta) <= tol)}


def ranked_selection(delta: np.ndarray, which: str, n: int, tiebreak: np.ndarray | None = None) -> list[int]:
    """The n most degrading (largest delta first) or most improving (smallest delta first) dimensions.

    Equal deltas are ordered by `tiebreak` the same way (a finer score, e.g. the gold log-likelihood next to an
    accuracy that few items decide), then by index."""
    sign = -1 if which == "degrading" else 1
    keys = (sign * delta,) if tiebreak is None else (sign * np.asarray(tiebreak), sign * delta)
    return sorted(int(j) for j in np.lexsort(keys)[:n])
