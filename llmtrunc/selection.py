"""Attribution selections shared by both tracks: which dimensions degrade or improve a score when removed
alone, the K% most degrading / most improving of them, and the columns their records carry
(llmtrunc.encoder.analysis, llmtrunc.llm.attribution), so both tracks' attributions speak one vocabulary.

delta_j = score without dimension j - full score. delta_j > 0: removing j improves the score (a *degrading*
dimension); delta_j < 0: an *improving* dimension.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from llmtrunc.record import drop_fields
from llmtrunc.spec import DropSpec, Mask


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


def single_drop(j: int) -> dict:
    """A per-dimension record's columns: dimension j removed alone. Its delta is no condition of the task's score
    (not main) and has no better direction."""
    return {"drop": f"single:{j}", "drop_family": "single", "drop_kind": "single", "dropped_indices": [j],
            "n_dropped": 1, "main": False, "higher_is_better": None}


def set_fields(dims) -> dict:
    """A count record's columns (n_degrading ...): the set's dimensions; a count, not a score."""
    return {"dropped_indices": [int(j) for j in dims], "n_dropped": len(dims), "main": False, "higher_is_better": None}


def selection_drop(condition: str, k: int | float, seed: int | None, dims, dim: int) -> dict:
    """A selection record's drop columns: a random selection is exactly random:K%@seed; a ranked one is degrading:K%
    or improving:K% (its own kind, so that nothing takes it for a baseline)."""
    if condition == "random":
        fields = drop_fields(DropSpec("random", share(k), seed), Mask(dim, tuple(dims)), dim)
        fields.pop("dim")
        return fields
    return {"drop": f"{condition}:{k}%", "drop_family": f"{condition}:{k}%", "drop_kind": condition,
            "drop_ratio": float(share(k)), "dropped_indices": list(dims), "n_dropped": len(dims)}
