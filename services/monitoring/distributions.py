"""One feature's distribution, reference against a window, binned in the warehouse for an overlay chart."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from services.errors import ConfigError
from services.mapping import ModelMapping
from services.monitoring.reference import ReferenceProfile
from services.stats.histogram import BinnedSample, coarsen
from services.stores.warehouse.histograms import numeric_histograms, value_counts
from services.stores.warehouse.rows import log_rows
from services.stores.warehouse.sql import WHOLE

DISPLAY_BINS = 20  # feature_distributions: equal-mass reference bins (every 50th of the 1000 edges)


def _label(lower: float | None, upper: float | None) -> str:
    if lower is None:
        return f"< {upper:.4g}"
    if upper is None:
        return f">= {lower:.4g}"
    return f"[{lower:.4g}, {upper:.4g})"


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else np.full(counts.shape, np.nan)


def feature_distributions(engine: Engine, mapping: ModelMapping, reference: ReferenceProfile, column: str,
                          start: datetime, end: datetime) -> pd.DataFrame:
    """Reference and window distribution of one feature, for an overlay chart.

    Numerical features: ``DISPLAY_BINS`` equal-mass reference bins (open tails: ``lower``/``upper``
    None); features with few values: one row per value; categorical: one row per category (NULLs
    excluded). Columns: bin, lower, upper, reference_count, current_count, reference_share,
    current_share. One warehouse statement.
    """
    rows = log_rows(mapping, start, end)
    if column in mapping.categorical:
        current = value_counts(engine, mapping, rows, [column], numeric=False).get(WHOLE, {}).get(column, {})
        ref: dict[str | None, int] | dict[float | None, int] = reference.categorical.get(column, {})
        keys = sorted({k for k in (*ref, *current) if k is not None})
        ref_counts = np.array([ref.get(k, 0) for k in keys], dtype=float)
        cur_counts = np.array([current.get(k, 0) for k in keys], dtype=float)
        labels, lower, upper = keys, [None] * len(keys), [None] * len(keys)
    elif column in mapping.numerical:
        ref_column = reference.numerical[column]
        if ref_column.value_counted:
            current = value_counts(engine, mapping, rows, [column], numeric=True).get(WHOLE, {}).get(column, {})
            ref = ref_column.values or {}
            values = sorted({k for k in (*ref, *current) if k is not None})
            ref_counts = np.array([ref.get(v, 0) for v in values], dtype=float)
            cur_counts = np.array([current.get(v, 0) for v in values], dtype=float)
            labels, lower, upper = [f"{v:g}" for v in values], list(values), list(values)
        else:
            sample = numeric_histograms(
                engine, mapping, rows, {column: ref_column.edges},
                shifts={column: cast(BinnedSample, ref_column.histogram).shift})[WHOLE][column]
            step = max((ref_column.edges.size + 1) // DISPLAY_BINS, 1)  # 999 edges: every 50th, 5 % each
            display = ref_column.edges[step - 1::step][:DISPLAY_BINS - 1]
            ref_coarse = coarsen(cast(BinnedSample, ref_column.histogram), display)
            cur_coarse = coarsen(sample, display)
            ref_counts, cur_counts = ref_coarse.counts.astype(float), cur_coarse.counts.astype(float)
            bounds = [None, *display.tolist(), None]
            lower, upper = bounds[:-1], bounds[1:]
            labels = [_label(lo, hi) for lo, hi in zip(lower, upper, strict=True)]
    else:
        raise ConfigError(f"'{column}' is not a feature of model '{mapping.name}'.")
    return pd.DataFrame({
        "bin": labels, "lower": pd.Series(lower, dtype="float64"), "upper": pd.Series(upper, dtype="float64"),
        "reference_count": ref_counts.astype("int64"), "current_count": cur_counts.astype("int64"),
        "reference_share": _shares(ref_counts), "current_share": _shares(cur_counts),
    })
