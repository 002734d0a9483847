"""Group fairness of a binary classifier from counts per (group, prediction, label).

The warehouse ships one row per combination (``label`` NULL = not yet labelled)::

    SELECT sensitive, prediction, label, COUNT(*) FROM log GROUP BY sensitive, prediction, label

`group_counts_from_rows` folds those rows into one `GroupCounts` per group; `group_counts` does the
same from arrays (tests, in-memory data). Prediction and label are 0/1, positive = 1.

**Rows without a label.** A prediction log fills its labels late and selectively (often only for
approved applications), so:

* ``selection_rate`` uses **all** rows of the group (it needs no label) and is what the demographic
  parity metrics use by default (``basis="all"``). ``selection_rate_labeled`` uses the labelled rows
  only (``basis="labeled"``) and equals fairlearn run on the labelled rows.
* ``tpr``/``fpr`` and the equalized-odds difference can only use labelled rows; fairlearn needs
  ``y_true``, so its oracle runs on exactly those rows. A group without any labelled row is left out
  of the label-based metrics (fairlearn would not see it).

**Definitions**, as fairlearn 0.15 (``fairlearn/metrics/_fairness_metrics.py``) with its defaults
``method="between_groups"``, ``agg="worst_case"``:

* demographic parity difference = max - min of the group selection rates;
* demographic parity ratio (= disparate-impact ratio) = min / max of the group selection rates;
  undefined (fairlearn: NaN, here None) when every group's rate is 0;
* equalized odds difference = max(TPR difference, FPR difference), each max - min over groups.

**Undefined rates.** A group without positive labels has no TPR (without negatives, no FPR).
`group_metrics` reports None. fairlearn takes it as **0** (sklearn's ``confusion_matrix(normalize=
"true")`` turns 0/0 into 0), which can make the equalized odds difference as large as another group's
TPR; ``undefined="zero"`` (default) reproduces that exactly, ``undefined="skip"`` leaves such groups out
of that rate's difference.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, SupportsInt, cast

import numpy as np

__all__ = [
    "FOUR_FIFTHS",
    "FairnessSummary",
    "GroupCounts",
    "GroupMetrics",
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "disparate_impact_ratio",
    "equalized_odds_difference",
    "fairness_summary",
    "group_counts",
    "group_counts_from_rows",
    "group_metrics",
    "passes_four_fifths",
]

FOUR_FIFTHS = 0.8
MISSING_GROUP = "(missing)"
"""The group name used for rows whose sensitive attribute is NULL."""

Basis = Literal["all", "labeled"]
Undefined = Literal["zero", "skip"]


@dataclass(frozen=True)
class GroupCounts:
    """Counts of one group. ``n``/``predicted_positive`` cover all rows; tp/fp/fn/tn labelled rows only."""

    group: str
    n: int
    predicted_positive: int
    tp: int
    fp: int
    fn: int
    tn: int
    labeled: int = field(init=False)

    def __post_init__(self) -> None:
        values = (self.n, self.predicted_positive, self.tp, self.fp, self.fn, self.tn)
        if any(v < 0 for v in values):
            raise ValueError(f"group {self.group!r}: counts must be non-negative")
        labeled = self.tp + self.fp + self.fn + self.tn
        if labeled > self.n or self.tp + self.fp > self.predicted_positive or self.predicted_positive > self.n:
            raise ValueError(f"group {self.group!r}: inconsistent counts {values}")
        if self.fn + self.tn > self.n - self.predicted_positive:
            raise ValueError(f"group {self.group!r}: inconsistent counts {values}")
        object.__setattr__(self, "labeled", labeled)


@dataclass(frozen=True)
class GroupMetrics:
    """Rates of one group; None where the denominator is 0."""

    group: str
    count: int
    labeled: int
    selection_rate: float | None
    selection_rate_labeled: float | None
    tpr: float | None
    fpr: float | None


@dataclass(frozen=True)
class FairnessSummary:
    """Everything the fairness panel shows for one sensitive attribute."""

    groups: tuple[GroupMetrics, ...]
    demographic_parity_difference: float | None
    demographic_parity_difference_labeled: float | None
    equalized_odds_difference: float | None
    disparate_impact_ratio: float | None
    passes_four_fifths: bool | None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _group_name(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_GROUP
    return str(value)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def group_counts_from_rows(rows: Iterable[tuple[object, object, object, int]]) -> tuple[GroupCounts, ...]:
    """Fold ``(group, prediction, label, count)`` rows (label None = unlabelled) into `GroupCounts`.

    A NULL group becomes the group ``"(missing)"``. Predictions and labels must be 0/1 (or bool).
    """
    acc: dict[str, list[int]] = {}
    for group, prediction, label, count in rows:
        if _is_missing(prediction):
            raise ValueError("a prediction is missing; drop or impute such rows in the query")
        # Compared as numbers, not truncated: a score of 0.7 logged as the prediction is refused, not read as 0.
        if prediction not in (0, 1) or (not _is_missing(label) and label not in (0, 1)):
            raise ValueError("predictions and labels must be 0 or 1")
        slot = acc.setdefault(_group_name(group), [0, 0, 0, 0, 0, 0])
        count, pred = int(count), int(cast(SupportsInt, prediction))  # checked 0/1 above
        slot[0] += count
        slot[1] += count * pred
        if not _is_missing(label):
            index = {(1, 1): 2, (1, 0): 3, (0, 1): 4, (0, 0): 5}[(pred, int(cast(SupportsInt, label)))]
            slot[index] += count
    return tuple(GroupCounts(group, *values) for group, values in sorted(acc.items()))


def group_counts(groups: np.ndarray, y_pred: np.ndarray, y_true: np.ndarray) -> tuple[GroupCounts, ...]:
    """The same aggregate from arrays; ``y_true`` NaN/None marks an unlabelled row."""
    groups = np.asarray(groups, dtype=object)
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true, dtype=object)
    if not (groups.shape == y_pred.shape == y_true.shape):
        raise ValueError("groups, y_pred and y_true must have the same length")
    rows: dict[tuple[str, int, int | None], int] = {}
    for g, p, t in zip(groups, y_pred, y_true, strict=True):
        key = (_group_name(g), int(p), None if _is_missing(t) else int(t))
        rows[key] = rows.get(key, 0) + 1
    return group_counts_from_rows((g, p, t, c) for (g, p, t), c in rows.items())


def group_metrics(groups: Sequence[GroupCounts]) -> tuple[GroupMetrics, ...]:
    """Per group: count, labelled rows, selection rate (all rows and labelled rows), TPR, FPR."""
    return tuple(
        GroupMetrics(
            group=g.group, count=g.n, labeled=g.labeled,
            selection_rate=_ratio(g.predicted_positive, g.n),
            selection_rate_labeled=_ratio(g.tp + g.fp, g.labeled),
            tpr=_ratio(g.tp, g.tp + g.fn), fpr=_ratio(g.fp, g.fp + g.tn),
        )
        for g in groups
    )


def _selection_rates(groups: Sequence[GroupCounts], basis: Basis) -> list[float]:
    if basis == "all":
        return [g.predicted_positive / g.n for g in groups if g.n]
    if basis == "labeled":
        return [(g.tp + g.fp) / g.labeled for g in groups if g.labeled]
    raise ValueError(f"basis must be 'all' or 'labeled', got {basis!r}")


def demographic_parity_difference(groups: Sequence[GroupCounts], *, basis: Basis = "all") -> float | None:
    """Largest minus smallest group selection rate (fairlearn, between_groups); None without rows."""
    rates = _selection_rates(groups, basis)
    return max(rates) - min(rates) if rates else None


def demographic_parity_ratio(groups: Sequence[GroupCounts], *, basis: Basis = "all") -> float | None:
    """Smallest over largest group selection rate (fairlearn's demographic_parity_ratio).

    None when there are no rows or every rate is 0 (fairlearn returns NaN there).
    """
    rates = _selection_rates(groups, basis)
    if not rates or max(rates) == 0:
        return None
    return min(rates) / max(rates)


disparate_impact_ratio = demographic_parity_ratio


def passes_four_fifths(ratio: float | None, *, threshold: float = FOUR_FIFTHS) -> bool | None:
    """The four-fifths rule: the disparate-impact ratio is at least 0.8. None when the ratio is None."""
    return None if ratio is None else bool(ratio >= threshold)


def _rate_difference(rates: list[float | None], undefined: Undefined) -> float | None:
    if undefined == "zero":
        values = [0.0 if r is None else r for r in rates]
    elif undefined == "skip":
        values = [r for r in rates if r is not None]
    else:
        raise ValueError(f"undefined must be 'zero' or 'skip', got {undefined!r}")
    return max(values) - min(values) if values else None


def equalized_odds_difference(groups: Sequence[GroupCounts], *, agg: Literal["worst_case", "mean"] = "worst_case",
                              undefined: Undefined = "zero") -> float | None:
    """max (or mean) of the TPR difference and the FPR difference over groups with labelled rows.

    ``undefined="zero"`` is fairlearn's behaviour (module docstring). None without labelled rows.
    """
    labeled = [g for g in groups if g.labeled]
    tpr = _rate_difference([_ratio(g.tp, g.tp + g.fn) for g in labeled], undefined)
    fpr = _rate_difference([_ratio(g.fp, g.fp + g.tn) for g in labeled], undefined)
    parts = [d for d in (tpr, fpr) if d is not None]
    if not parts:
        return None
    if agg == "worst_case":
        return max(parts)
    if agg == "mean":
        return sum(parts) / len(parts)
    raise ValueError(f"agg must be 'worst_case' or 'mean', got {agg!r}")


def fairness_summary(groups: Sequence[GroupCounts], *, undefined: Undefined = "zero") -> FairnessSummary:
    """Per-group rates plus the parity, odds and disparate-impact figures (selection on all rows)."""
    ratio = disparate_impact_ratio(groups)
    return FairnessSummary(
        groups=group_metrics(groups),
        demographic_parity_difference=demographic_parity_difference(groups),
        demographic_parity_difference_labeled=demographic_parity_difference(groups, basis="labeled"),
        equalized_odds_difference=equalized_odds_difference(groups, undefined=undefined),
        disparate_impact_ratio=ratio,
        passes_four_fifths=passes_four_fifths(ratio),
    )
