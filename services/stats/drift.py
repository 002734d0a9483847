"""Data drift of one column, computed from warehouse aggregates, with Evidently 0.7's verdicts.

Numerical columns come as two `BinnedSample`s on the same fine edges (the reference's 1000-quantiles),
categorical columns as ``{category: count}`` maps (``GROUP BY column``). Nothing here sees a row.

The statistics themselves and their definitions are in `services.stats.two_sample`; this module
chooses the method, applies the thresholds and gathers a column's results.

**Missing values** (NULL/NaN/+-inf) are dropped before testing, as Evidently does, and reported as
``null_share`` beside the verdict. For categorical maps the key ``None`` (SQL NULL) is the null count.

**Default method, as Evidently 0.7 chooses it** (``legacy/calculations/stattests/registry.py``,
``_get_default_stattest``), from the non-null reference size and the number of distinct non-null values
in reference and current together:

================  =====================  ====================================
reference rows    numerical              categorical
================  =====================  ====================================
> 1000            <= 5 values: JS        jensenshannon (threshold 0.1)
                  else: wasserstein 0.1
<= 1000           <= 2 values: z         <= 2 values: z (p-value, 0.05)
                  3-5 values: chisquare  else: chisquare (p-value, 0.05)
                  else: ks (p, 0.05)
================  =====================  ====================================

A numerical column with at most 5 distinct values is tested like a categorical one (value counts).
Verdicts: distances drift when ``score >= threshold``; KS when ``p <= threshold``; chi-square and
z when ``p < threshold`` (Evidently's exact comparisons).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from services.stats.histogram import BinnedSample, coarsen
from services.stats.two_sample import (
    check_same_edges,
    chi2_pvalue,
    jensenshannon_distance,
    ks_pvalue,
    ks_statistic,
    psi,
    single_valued,
    wasserstein_1,
    z_pvalue,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "EVIDENTLY_DISPLAY_NAMES",
    "CategoricalDrift",
    "NumericalDrift",
    "categorical_drift",
    "categorical_method",
    "category_counts",
    "is_drifted",
    "null_share",
    "numerical_drift",
    "numerical_method",
    "psi_band",
]

SMALL_SAMPLE_ROWS = 1000
"""Evidently switches from p-value tests to distances when the reference has more rows than this."""
LOW_CARDINALITY = 5
"""A numerical column with at most this many distinct values is tested on value counts."""
STD_FLOOR = 0.001
"""Evidently's floor on the reference std used to norm the Wasserstein distance."""

DEFAULT_THRESHOLDS: dict[str, float] = {
    "wasserstein": 0.1, "jensenshannon": 0.1, "psi": 0.1, "ks": 0.05, "chisquare": 0.05, "z": 0.05,
}
EVIDENTLY_DISPLAY_NAMES: dict[str, str] = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "psi": "PSI",
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
}
PSI_BANDS = ((0.1, "stable"), (0.25, "moderate"), (math.inf, "major"))
"""PSI < 0.1 stable, 0.1 <= PSI < 0.25 moderate, PSI >= 0.25 major (the usual credit-scoring bands)."""


@dataclass(frozen=True)
class NumericalDrift:
    """Drift of one numerical column. Statistics that cannot be computed (an empty side) are None.

    ``method``/``score``/``threshold``/``drifted`` are the verdict (Evidently's default method unless
    told); the other statistics are always shown beside it. ``drifted`` is None when a side is empty.
    """

    method: str
    score: float | None
    threshold: float
    drifted: bool | None
    psi: float | None
    psi_band: str | None
    js_distance: float | None
    wasserstein_normed: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    reference_n: int
    current_n: int
    reference_null_share: float | None
    current_null_share: float | None


@dataclass(frozen=True)
class CategoricalDrift:
    """Drift of one categorical column over the union of its categories (NULL excluded, see nulls).

    ``unseen_categories`` are in the current window but not in the reference; ``unseen_share`` is
    their share of the current non-null rows; ``missing_categories`` are in the reference only.
    """

    method: str
    score: float | None
    threshold: float
    drifted: bool | None
    psi: float | None
    psi_band: str | None
    js_distance: float | None
    chi2_pvalue: float | None
    z_pvalue: float | None
    unseen_categories: tuple[str, ...]
    unseen_share: float | None
    missing_categories: tuple[str, ...]
    reference_n: int
    current_n: int
    reference_null_share: float | None
    current_null_share: float | None


# --- small pieces -------------------------------------------------------------------------------


def null_share(nulls: int, rows: int) -> float | None:
    """``nulls / rows`` (rows counts every row, null or not); None when there are no rows."""
    if nulls < 0 or rows < nulls:
        raise ValueError("need 0 <= nulls <= rows")
    return nulls / rows if rows else None


def is_drifted(method: str, score: float | None, threshold: float) -> bool | None:
    """Evidently's comparison for ``method``: distances ``>=``, KS ``p <=``, chi-square/z ``p <``."""
    if score is None:
        return None
    if method in ("wasserstein", "jensenshannon", "psi"):
        return bool(score >= threshold)
    if method == "ks":
        return bool(score <= threshold)
    if method in ("chisquare", "z"):
        return bool(score < threshold)
    raise ValueError(f"unknown drift method {method!r}")


def drift_ratio(method: str, score: float | None, threshold: float | None) -> float | None:
    """How far past the verdict line a score is, on one scale for every method: 1 is the line, above
    1 the drifted side. Distances give ``score / threshold``; the tests (KS, chi-square, z) give
    ``threshold / p`` because a smaller p-value drifts more, so a raw ``p / threshold`` would rank
    the strongest drift last. A p-value of 0 gives inf; no score or threshold gives None."""
    if score is None or threshold is None:
        return None
    if method in ("ks", "chisquare", "z"):
        return math.inf if score == 0 else threshold / score
    if method in ("wasserstein", "jensenshannon", "psi"):
        return math.inf if threshold == 0 else score / threshold
    raise ValueError(f"unknown drift method {method!r}")


def psi_band(value: float | None) -> str | None:
    """'stable' (< 0.1), 'moderate' (< 0.25) or 'major'; None for None."""
    if value is None:
        return None
    return next(label for bound, label in PSI_BANDS if value < bound)


def numerical_method(n_reference: int, n_distinct: int | None) -> str:
    """Evidently 0.7's default test for a numerical column (``n_distinct`` None means "more than 5")."""
    few = n_distinct is not None and n_distinct <= LOW_CARDINALITY
    if n_reference > SMALL_SAMPLE_ROWS:
        return "jensenshannon" if few else "wasserstein"
    if few:
        assert n_distinct is not None  # few implies n_distinct is not None
        return "z" if n_distinct <= 2 else "chisquare"
    return "ks"


def categorical_method(n_reference: int, n_distinct: int) -> str:
    """Evidently 0.7's default test for a categorical column."""
    if n_reference > SMALL_SAMPLE_ROWS:
        return "jensenshannon"
    return "z" if n_distinct <= 2 else "chisquare"


# --- low-cardinality numerical columns -----------------------------------------------------------


def _values_from_bins(reference: BinnedSample, current: BinnedSample) -> tuple[dict[str, int], dict[str, int]] | None:
    """Value counts, when each non-empty bin of both samples holds a single value at its left edge."""
    if not (single_valued(reference).all() and single_valued(current).all()):
        return None
    left = np.concatenate([[np.nan], reference.edges])

    def counts(sample: BinnedSample) -> dict[str, int]:
        return {repr(float(left[i])): int(c) for i, c in enumerate(sample.counts) if c > 0}

    return counts(reference), counts(current)


def _distinct_lower_bound(reference: BinnedSample, current: BinnedSample) -> int:
    """At least this many distinct values are in reference and current together.

    An occupied bin holding one value at its left edge in both samples counts 1; the lower tail bin
    counts 1 (its values are unknown); any other occupied bin holds at least 2 values.
    """
    occupied = (reference.counts > 0) | (current.counts > 0)
    per_bin = np.where(single_valued(reference) & single_valued(current), 1, 2)
    per_bin[0] = 1
    return int(np.sum(per_bin[occupied]))


# --- column verdicts -----------------------------------------------------------------------------


def numerical_drift(reference: BinnedSample, current: BinnedSample, *, deciles: np.ndarray,
                    threshold: float | None = None, method: str | None = None,
                    n_distinct: int | None = None, every_pvalue: bool = True) -> NumericalDrift:
    """Drift of a numerical column from two fine histograms on the reference's edges.

    Args:
        reference, current: `BinnedSample`s on the same edges (the reference's 1000-quantiles).
        deciles: the reference deciles (``decile_edges(ref)`` / SQL quantiles at 0.1 .. 0.9), a subset
            of the edges; PSI and JS use these 10 bins.
        threshold: None for the method's default (0.1 for distances, 0.05 for p-values).
        method: None for Evidently 0.7's default choice (module docstring), or one of "wasserstein",
            "ks", "psi", "jensenshannon" (JS on the decile bins).
        n_distinct: distinct non-null values in reference and current together (``COUNT(DISTINCT)``;
            capped at 6 is enough). None: inferred from the bins when that is certain (every bin holds
            one value, or more than 5 values are certain), otherwise ValueError asking for it.
        every_pvalue: False computes the KS p-value only where it is the verdict (method "ks"), else
            leaves ``ks_pvalue`` None: scipy's exact p-value costs ~10 ms per column and window, which
            a backfill of every version and feature pays thousands of times for a number nobody reads.

    A column with at most 5 distinct values is tested on value counts, like Evidently; the bins
    must then isolate each value (``bin_value_counts`` at the distinct values), else ValueError.
    """
    check_same_edges(reference, current)
    coarse_ref, coarse_cur = coarsen(reference, deciles), coarsen(current, deciles)
    psi_value = psi(coarse_ref.counts, coarse_cur.counts)
    js_value = jensenshannon_distance(coarse_ref.counts, coarse_cur.counts)
    w1 = wasserstein_1(reference, current)
    std = reference.std
    w_normed = None if w1 is None or std is None else w1 / max(std, STD_FLOOR)
    d = ks_statistic(reference, current)

    value_counts = None
    low_cardinality = False
    if method is None:
        if n_distinct is None and reference.n and current.n:
            value_counts = _values_from_bins(reference, current)
            if value_counts is not None:
                n_distinct = len(set(value_counts[0]) | set(value_counts[1]))
            elif _distinct_lower_bound(reference, current) <= LOW_CARDINALITY:
                raise ValueError("cannot tell from the bins whether the column has more than 5 distinct values; "
                                 "pass n_distinct (COUNT(DISTINCT x) over reference and current)")
        method = numerical_method(reference.n, n_distinct)
        low_cardinality = n_distinct is not None and n_distinct <= LOW_CARDINALITY
    p_ks = ks_pvalue(reference, current) if every_pvalue or method == "ks" else None

    if low_cardinality:
        if value_counts is None and reference.n and current.n:
            value_counts = _values_from_bins(reference, current)
            if value_counts is None:
                raise ValueError("a numerical column with at most 5 distinct values is tested on value counts: bin "
                                 "both samples at their distinct values (bin_value_counts) or use categorical_drift")
        pair = cast("tuple[Mapping[str | None, int], Mapping[str | None, int]]", value_counts or ({}, {}))
        score = categorical_drift(*pair, method=method).score
    else:
        scores = {"wasserstein": w_normed, "ks": p_ks, "psi": psi_value, "jensenshannon": js_value}
        if method not in scores:
            raise ValueError(f"unknown numerical drift method {method!r}")
        score = scores[method]
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    return NumericalDrift(
        method=method, score=score, threshold=threshold, drifted=is_drifted(method, score, threshold),
        psi=psi_value, psi_band=psi_band(psi_value), js_distance=js_value, wasserstein_normed=w_normed,
        ks_statistic=d, ks_pvalue=p_ks, reference_n=reference.n, current_n=current.n,
        reference_null_share=reference.null_share, current_null_share=current.null_share,
    )


def category_counts(values: np.ndarray) -> dict[str | None, int]:
    """The categorical aggregate from an array (``GROUP BY column``): None/NaN become the key None."""
    counts: dict[str | None, int] = {}
    for value in np.asarray(values, dtype=object).reshape(-1):
        key = None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _split_nulls(counts: Mapping[str | None, int]) -> tuple[dict[str, int], int]:
    nulls = 0
    kept: dict[str, int] = {}
    for key, value in counts.items():
        if value < 0:
            raise ValueError("category counts must be non-negative")
        if key is None:
            nulls += int(value)
        elif value:
            kept[str(key)] = kept.get(str(key), 0) + int(value)
    return kept, nulls




def categorical_drift(reference_counts: Mapping[str | None, int], current_counts: Mapping[str | None, int], *,
                      threshold: float | None = None, method: str | None = None) -> CategoricalDrift:
    """Drift of a categorical column from ``{category: count}`` maps (``GROUP BY column``).

    The key None (SQL NULL) is the null count, not a category. Categories are compared over the union
    of both maps (keys are compared as strings). ``method`` None picks Evidently 0.7's default; else one
    of "jensenshannon", "psi", "chisquare", "z". ``threshold`` None: the method's default.
    """
    ref_map, ref_nulls = _split_nulls(reference_counts)
    cur_map, cur_nulls = _split_nulls(current_counts)
    keys = sorted(set(ref_map) | set(cur_map))
    ref = np.array([ref_map.get(k, 0) for k in keys], dtype=float)
    cur = np.array([cur_map.get(k, 0) for k in keys], dtype=float)
    n_ref, n_cur = int(ref.sum()), int(cur.sum())
    unseen = tuple(k for k in keys if k not in ref_map)
    missing = tuple(k for k in keys if k not in cur_map)

    psi_value = psi(ref, cur)
    js_value = jensenshannon_distance(ref, cur)
    chi2_p = chi2_pvalue(ref, cur)
    z_p = z_pvalue(ref, cur)
    if method is None:
        method = categorical_method(n_ref, len(keys))
    scores = {"jensenshannon": js_value, "psi": psi_value, "chisquare": chi2_p, "z": z_p}
    if method not in scores:
        raise ValueError(f"unknown categorical drift method {method!r}")
    if method == "z" and len(keys) > 2:
        raise ValueError("the z-test compares two categories; this column has more")
    score = scores[method]
    threshold = DEFAULT_THRESHOLDS[method] if threshold is None else float(threshold)
    return CategoricalDrift(
        method=method, score=score, threshold=threshold, drifted=is_drifted(method, score, threshold),
        psi=psi_value, psi_band=psi_band(psi_value), js_distance=js_value, chi2_pvalue=chi2_p, z_pvalue=z_p,
        unseen_categories=unseen,
        unseen_share=(sum(cur_map[k] for k in unseen) / n_cur) if n_cur else None,
        missing_categories=missing, reference_n=n_ref, current_n=n_cur,
        reference_null_share=null_share(ref_nulls, n_ref + ref_nulls),
        current_null_share=null_share(cur_nulls, n_cur + cur_nulls),
    )
