"""Drop specs: the grammar that names which dimensions of a representation are removed.

A spec is parsed once into a `DropSpec` and resolved, for a given hidden size, into one `Mask`:
the exact sorted tuple of dropped indices. The same grammar serves the LLM track (final hidden state) and
the encoder track (sentence embeddings); `pca:K` is encoder-only because it is a projection, not
a set of indices.

    none                  nothing dropped
    first-half, last-half first:50%, last:50%
    first:K, last:K       the first / last floor(K*d) dimensions
    random:K[@SEED]       floor(K*d) dimensions drawn without replacement (seed default 0)
    indices:FILE          the dimensions listed in FILE (whitespace/comma separated or a JSON list)
    pca:K                 (encoders) project onto the top d - floor(K*d) principal components

and, resolved against the model's activation profile (llmtrunc.profile):

    outliers              the outlier dimensions (per-dimension mean beyond +-3 std of the means)
    top:K, bottom:K       the floor(K*d) dimensions of largest / smallest mean |activation| (ties: lower index)
    random:K!outliers     floor(K*d) random dimensions, never an outlier (the same draw with the outliers skipped)
    random:outliers       as many random dimensions as there are outliers (the control for `outliers`);
                          random:outliers!outliers draws them from the non-outliers

K is a percent ("50%") or a fraction ("0.5"), in [0, 1]. The count is floor(K*d) computed in exact
rational arithmetic, so `first-half` of an odd d drops (d-1)/2 dimensions and `random:0.29` of
d=100 drops exactly 29.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmtrunc.errors import LLMTruncError

if TYPE_CHECKING:
    from llmtrunc.profile import Profile

KINDS = ("none", "first", "last", "random", "indices", "pca", "outliers", "top", "bottom")
PROFILE_KINDS = ("outliers", "top", "bottom")
AVOID = "!outliers"
_ALIASES = {"first-half": "first:50%", "last-half": "last:50%", "full": "none"}
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def parse_ratio(text: str) -> Fraction:
    """'50%' or '0.5' -> Fraction(1, 2); anything outside [0, 1] is an error."""
    raw = text.strip()
    percent = raw.endswith("%")
    number = raw[:-1].strip() if percent else raw
    if not _NUMBER.match(number):
        raise LLMTruncError(f"malformed ratio {text!r}: use a percent like 50% or a fraction like 0.5")
    value = Fraction(number) / (100 if percent else 1)
    if not 0 <= value <= 1:
        hint = f" (did you mean {raw}%?)" if not percent and value <= 100 else ""
        raise LLMTruncError(f"ratio {text!r} is outside 0-100% (a fraction in [0, 1] or a percent){hint}")
    return value


def _format_ratio(value: Fraction) -> str:
    percent = value * 100
    shown = str(percent.numerator) if percent.denominator == 1 else f"{float(percent):g}"
    return f"{shown}%"


@dataclass(frozen=True)
class DropSpec:
    """One parsed drop condition. `name` is the canonical text stored with every result.

    Two modifiers of `random`: `outlier_count` (random:outliers, as many dims as the profile has
    outliers, `ratio` None) and `avoid_outliers` (random:K!outliers, drawn from the non-outliers)."""

    kind: str
    ratio: Fraction | None = None
    seed: int | None = None
    path: str | None = None
    outlier_count: bool = False
    avoid_outliers: bool = False

    @property
    def name(self) -> str:
        if self.kind in ("none", "outliers"):
            return self.kind
        if self.kind == "indices":
            return f"indices:{self.path}"
        text = f"{self.kind}:{'outliers' if self.outlier_count else _format_ratio(self.ratio)}"
        text += AVOID if self.avoid_outliers else ""
        return f"{text}@{self.seed}" if self.kind == "random" else text

    @property
    def family(self) -> str:
        """The spec without its seed: the key that groups random draws for mean +- std."""
        return self.name.split("@")[0]

    @property
    def variant(self) -> str:
        """The kind with its modifiers (random, random!outliers, random:outliers): what curves over K group by,
        so a draw that skips the outliers never averages with a plain random one."""
        if self.outlier_count:
            return self.family
        return self.kind + (AVOID if self.avoid_outliers else "")

    @property
    def removes_nothing(self) -> bool:
        """Whether it removes no dimension at any size -- K = 0 of a set of indices, an empty index file: the
        baseline under another name."""
        if self.kind == "indices":
            return not _read_index_file(Path(self.path))
        return self.kind in ("first", "last", "random", "top", "bottom") and self.ratio == 0

    @property
    def needs_profile(self) -> bool:
        """Whether the dimensions depend on the model's activation profile (llmtrunc.profile)."""
        return self.kind in PROFILE_KINDS or self.outlier_count or self.avoid_outliers

    def n_drop(self, dim: int, profile: Profile | None = None) -> int:
        """How many of `dim` dimensions this spec removes (for pca: how many components are cut)."""
        if self.ratio is None:
            return self.mask(dim, profile).n_dropped
        return math.floor(self.ratio * dim)

    def mask(self, dim: int, profile: Profile | None = None) -> Mask:
        """The exact dimensions this spec removes from a `dim`-wide representation; profile-based specs
        resolve against `profile` and refuse, in one line, to resolve without it."""
        if dim <= 0:
            raise LLMTruncError(f"hidden size must be positive, got {dim}")
        if self.kind == "pca":
            raise LLMTruncError("pca:K is a projection, not a set of indices: it applies to encoder embeddings only")
        if self.needs_profile:
            if profile is None:
                raise LLMTruncError(f"drop {self.name} needs an activation profile of the model (its outlier dims and "
                                    "magnitudes): resolve it where the model is loaded, as llmtrunc eval does")
            if profile.dim != dim:
                raise LLMTruncError(f"the activation profile has {profile.dim} dimensions, the representation {dim}")
        if self.kind == "none":
            return Mask(dim, ())
        if self.kind == "indices":
            return Mask.of(dim, _read_index_file(Path(self.path)), f"index file {self.path}: ")
        if self.kind == "outliers":
            return Mask(dim, profile.outliers)
        n = len(profile.outliers) if self.outlier_count else self.n_drop(dim)
        if self.kind == "first":
            return Mask(dim, tuple(range(n)))
        if self.kind == "last":
            return Mask(dim, tuple(range(dim - n, dim)))
        if self.kind in ("top", "bottom"):
            return Mask.of(dim, profile.by_magnitude(largest=self.kind == "top")[:n])
        return Mask.random(dim, n, self.seed, profile.outliers if self.avoid_outliers else (), self.name)

    def with_seed(self, seed: int) -> DropSpec:
        if self.kind != "random":
            return self
        return dataclasses.replace(self, seed=seed)


@dataclass(frozen=True)
class Mask:
    """The exact sorted dimensions one drop removes from a `dim`-wide representation.

    The one mask object of both tracks: the LLM hooks zero `dropped` (llmtrunc.llm.hooks), the
    encoder track slices them away (`remove`), attribution and the random baselines build one with
    `Mask.random` -- the only random draw in llmtrunc, so `random:K@S` means the same dimensions
    everywhere.
    """

    dim: int
    dropped: tuple[int, ...]

    @classmethod
    def of(cls, dim: int, indices, context: str = "") -> Mask:
        """A mask from any iterable of indices (sorted, duplicates merged, range checked)."""
        values = sorted({int(i) for i in indices})
        bad = [v for v in values if not 0 <= v < dim]
        if bad:
            raise LLMTruncError(f"{context}dimension {bad[0]} is out of range for hidden size {dim}")
        return cls(dim, tuple(values))

    @classmethod
    def random(cls, dim: int, n: int, seed: int | None, avoid=(), what: str = "random") -> Mask:
        """n of dim dimensions without replacement: the first n of numpy's default_rng(seed) permutation,
        skipping `avoid` (so avoiding nothing is the plain draw, and a skipped dim is replaced by the next)."""
        order = np.random.default_rng(seed).permutation(dim)
        if len(avoid):
            order = order[~np.isin(order, list(avoid))]
        if n > len(order):
            raise LLMTruncError(f"drop {what} needs {n} dimensions but only {len(order)} of {dim} may be drawn")
        return cls(dim, tuple(sorted(int(i) for i in order[:n])))

    @property
    def n_dropped(self) -> int:
        return len(self.dropped)

    @property
    def kept(self) -> np.ndarray:
        keep = np.ones(self.dim, dtype=bool)
        keep[list(self.dropped)] = False
        return np.flatnonzero(keep)

    def remove(self, matrix: np.ndarray) -> np.ndarray:
        """`matrix` (rows x dim) with the dropped columns sliced away."""
        if matrix.shape[-1] != self.dim:
            raise LLMTruncError(f"embedding size {matrix.shape[-1]} does not match the mask's {self.dim}")
        return matrix if not self.dropped else np.ascontiguousarray(matrix[..., self.kept])


def _read_index_file(path: Path) -> list[int]:
    if not path.is_file():
        raise LLMTruncError(f"index file not found: {path}")
    text = path.read_text().strip()
    try:
        values = json.loads(text) if text.startswith("[") else [int(t) for t in re.split(r"[\s,]+", text) if t]
        return [int(v) for v in values]
    except (ValueError, TypeError) as exc:
        raise LLMTruncError(f"index file {path} must hold integers: {exc}") from None


def parse_drop(text: str, seed: int | None = None) -> DropSpec:
    """Parse one spec. `seed` (from --seed) applies to random specs that carry no @SEED."""
    raw = _ALIASES.get(text.strip(), text.strip())
    kind, _, arg = raw.partition(":")
    if kind not in KINDS:
        raise LLMTruncError(
            f"malformed drop spec {text!r}: expected none, first-half, last-half, first:K, last:K, "
            "random:K[!outliers][@SEED], random:outliers[@SEED], outliers, top:K, bottom:K, indices:FILE or pca:K"
        )
    if kind in ("none", "outliers"):
        if arg:
            raise LLMTruncError(f"malformed drop spec {text!r}: {kind!r} takes no argument")
        return DropSpec(kind)
    if not arg:
        raise LLMTruncError(f"malformed drop spec {text!r}: {kind} needs an argument, e.g. {kind}:50%")
    if kind == "indices":
        _read_index_file(Path(arg))  # a missing or malformed file is refused now, not after a model load
        return DropSpec("indices", path=arg)
    count_text, at, seed_text = arg.partition("@")
    count_text, bang, avoided = count_text.partition("!")
    if (at or bang) and kind != "random":
        raise LLMTruncError(f"malformed drop spec {text!r}: only random takes @SEED or !outliers")
    if bang and avoided != "outliers":
        raise LLMTruncError(f"malformed drop spec {text!r}: random can avoid only the outliers (random:K!outliers)")
    if at:
        if not seed_text.isdigit():
            raise LLMTruncError(f"malformed drop spec {text!r}: the seed after @ must be a non-negative integer "
                                "(the order is random:K!outliers@SEED)")
        seed = int(seed_text)
    if kind != "random":
        return DropSpec(kind, parse_ratio(count_text))
    by_outliers = count_text == "outliers"
    return DropSpec("random", None if by_outliers else parse_ratio(count_text), seed if seed is not None else 0,
                    outlier_count=by_outliers, avoid_outliers=bool(bang))


def parse_drops(values: list[str] | str, seed: int | None = None, seeds: list[int] | None = None) -> list[DropSpec]:
    """Parse repeatable / comma-separated --drop values; `seeds` expands each random spec over seeds."""
    items = [values] if isinstance(values, str) else list(values)
    specs: list[DropSpec] = []
    for item in items:
        for part in (p for p in item.split(",") if p.strip()):
            spec = parse_drop(part, seed)
            has_own_seed = "@" in part
            if spec.kind == "random" and seeds and not has_own_seed:
                specs.extend(spec.with_seed(s) for s in seeds)
            else:
                specs.append(spec)
    if not specs:
        raise LLMTruncError("no drop spec given")
    return list(dict.fromkeys(specs))


BARE_KINDS = ("first", "last", "random", "pca", "top", "bottom")


def expand_grid(drops: list[str], ks: list[str] | None = None, seeds: list[int] | None = None,
                seed: int | None = None) -> list[DropSpec]:
    """The drop conditions of a grid, the one expander of every command: `none` (the baseline) first,
    then each --drop item; a bare family (first, last, random, pca, top, bottom, random!outliers) is crossed
    with the K grid `ks` (dropped percents, see `parse_k_list`), and random specs without @SEED run once per seed."""
    texts = []
    for part in (p.strip() for item in drops for p in str(item).split(",") if p.strip()):
        if part in BARE_KINDS or part == f"random{AVOID}":
            if not ks:
                raise LLMTruncError(f"drop {part!r} needs a K grid (--k 10,50,90)")
            base, bang, avoided = part.partition("!")
            texts += [f"{base}:{k}{bang}{avoided}" for k in ks]
        else:
            spec = parse_drop(part, seed)
            if spec.removes_nothing:  # a grid's K = 0 is its curve's origin; named alone it is the baseline
                why = "its file lists none" if spec.kind == "indices" else "a K grid may start at 0: --k 0,10,...,90"
                raise LLMTruncError(f"drop {part} removes no dimension: it is the baseline, which every run scores "
                                    f"already ({why})")
            texts.append(part)
    specs = parse_drops(texts, seed, seeds) if texts else []
    return [DropSpec("none"), *(s for s in specs if s.kind != "none")]


def parse_k_list(text: str) -> list[str]:
    """--k of every command: dropped percents, '0,10,...,90', '0-90' steps of 1, or '12.5%,25%' -> ['0%', '10%', ...]
    (the % is optional: a number is a percent)."""
    items = [p.strip().rstrip("%").strip() for p in str(text).split(",") if p.strip()]
    if all(re.fullmatch(r"\d+|\.\.\.|…|\d+-\d+", i) for i in items):
        values = [str(v) for v in parse_int_list(",".join(items), "--k")]
    else:
        values = items
    out = []
    for value in values:
        parse_ratio(f"{value}%")  # validates 0..100 with the ratio's own message
        out.append(f"{value}%")
    if not out:
        raise LLMTruncError("no --k given")
    return out


def k_percent(k: str) -> int | float:
    """One item of `parse_k_list` as the number of percent it is (25, 12.5): what an attribution selection keys,
    names and records its K by."""
    value = parse_ratio(k) * 100
    return int(value) if value.denominator == 1 else float(value)


def parse_int_list(text: str, what: str) -> list[int]:
    """'0,10,...,90' (arithmetic ellipsis), '0-9' (inclusive range) or '1,2,5'."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    values: list[int] = []
    try:
        i = 0
        while i < len(parts):
            part = parts[i]
            if part in ("...", "…"):
                if len(values) < 2 or i + 1 >= len(parts):
                    raise ValueError("'...' needs two values before it and one after")
                step, end = values[-1] - values[-2], int(parts[i + 1])
                if step <= 0:
                    raise ValueError("'...' needs an increasing sequence")
                values.extend(range(values[-1] + step, end + 1, step))
                if values[-1] != end:
                    raise ValueError(f"{end} is not reached in steps of {step}")
                i += 2
                continue
            match = re.fullmatch(r"(\d+)-(\d+)", part)
            if match and int(match[1]) > int(match[2]):
                raise ValueError(f"the range {part} is reversed (did you mean {match[2]}-{match[1]}?)")
            values.extend(range(int(match[1]), int(match[2]) + 1) if match else [int(part)])
            i += 1
    except ValueError as exc:
        raise LLMTruncError(f"malformed {what} {text!r}: {exc}") from None
    if not values:
        raise LLMTruncError(f"no {what} given")
    return list(dict.fromkeys(values))
