"""Reference profiles: the reference's histograms, computed once per (model, reference) and kept.

A profile holds everything the statistics need from the reference side: per numerical feature its
1000-quantile edges, deciles, distinct count and fine histogram (or value counts when it has at most
``VALUE_COUNT_MAX`` distinct values), per categorical feature its category counts, and the model's
performance on the reference (when the reference holds predictions and labels).

It is keyed by ``reference_id``, a digest of the reference's *definition* (table or log range,
features, columns, binning), and stored in ``monitoring_references`` of the tower state, so each
definition is computed once: later windows, reports and pages only load it. A changed mapping gives
a new definition and so a new profile. If the reference table's content changes in place, pass
``refresh=True`` (CLI: ``--refresh-reference``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from services.errors import ConfigError, MappingError, TowerStateUnavailable
from services.mapping import EXACT_EDGES_MAX_ROWS, ModelMapping
from services.monitoring.store import monitoring_references
from services.stats.histogram import BinnedSample
from services.stats.performance import ConfusionCounts, ScoreCounts
from services.stores.warehouse.histograms import numeric_histograms, value_counts
from services.stores.warehouse.outcomes import (
    ClassificationCounts,
    RegressionSums,
    classification_counts,
    regression_sums,
)
from services.stores.warehouse.profiles import FINE_BINS, VALUE_COUNT_MAX, column_profiles
from services.stores.warehouse.rows import Rows, reference_rows
from services.stores.warehouse.sql import WHOLE

PROFILE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class NumericReference:
    """The reference side of one numerical feature.

    ``histogram`` is the fine histogram on ``edges``; for a feature with few distinct values it is
    None and ``values`` holds its value counts (key None: NULL/NaN/inf rows) instead.
    """

    column: str
    edges: np.ndarray
    deciles: np.ndarray
    distinct: int
    histogram: BinnedSample | None
    values: dict[float | None, int] | None

    @property
    def value_counted(self) -> bool:
        return self.values is not None


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    reference_id: str
    model: str
    description: str
    definition: dict[str, Any]
    rows: int
    numerical: dict[str, NumericReference]
    categorical: dict[str, dict[str | None, int]]
    classification: ClassificationCounts | None
    regression: RegressionSums | None
    computed_at: datetime


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(sep=" ")


def reference_definition(mapping: ModelMapping, start: datetime | None = None,
                         end: datetime | None = None) -> dict[str, Any]:
    """What the reference is (the input of its digest): ConfigError when the model has none."""
    rows = reference_rows(mapping, start, end)
    return {
        "format": PROFILE_FORMAT,
        "model": mapping.name,
        "table": rows.table,
        "log_range": [_iso(rows.start), _iso(rows.end)] if rows.is_log else None,
        "task": mapping.task,
        "numerical": list(mapping.numerical),
        "categorical": list(mapping.categorical),
        "columns": {k: mapping.columns[k] for k in ("timestamp", "version", "prediction", "score", "label")
                    if k in mapping.columns},
        "bins": FINE_BINS,
        "value_count_max": VALUE_COUNT_MAX,
        # only when set, so the whole population's reference keeps the id it always had
        **({"segment": mapping.segment.definition()} if mapping.segment is not None else {}),
        # a reference resolved from the registry: one profile per (model, version, dataset digest, snapshot)
        **({"snapshot": list(rows.snapshot)} if rows.snapshot is not None else {}),
        **({"registry": dict(mapping.reference.registry)} if mapping.reference.registry and not rows.is_log
           else {}),
        # likewise: only a non-default threshold of sampled edges is part of the definition
        **({"exact_edges_max_rows": mapping.reference.exact_edges_max_rows}
           if mapping.reference.exact_edges_max_rows != EXACT_EDGES_MAX_ROWS else {}),
    }


def reference_id(definition: dict[str, Any]) -> str:
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _rows_of(mapping: ModelMapping, definition: dict[str, Any]) -> Rows:
    if definition["log_range"]:
        start, end = (datetime.fromisoformat(v) for v in definition["log_range"])
        return reference_rows(mapping, start, end)
    return reference_rows(mapping)


def compute_profile(engine: Engine, mapping: ModelMapping, start: datetime | None = None,
                    end: datetime | None = None) -> ReferenceProfile:
    """Compute a profile from the warehouse (a handful of statements), without storing it."""
    definition = reference_definition(mapping, start, end)
    rows = _rows_of(mapping, definition)
    total, columns = column_profiles(engine, mapping, rows, mapping.numerical,
                                     exact_max_rows=mapping.reference.exact_edges_max_rows)
    if total == 0:
        raise ConfigError(f"The reference of model '{mapping.name}' ({rows.description}) holds no rows.",
                          "Point the reference at a table or time range with data.")
    few = [c for c, p in columns.items() if p.distinct <= VALUE_COUNT_MAX]
    many = {c: p.edges for c, p in columns.items() if c not in few}
    histograms = numeric_histograms(engine, mapping, rows, many).get(WHOLE, {}) if many else {}
    values = value_counts(engine, mapping, rows, few, numeric=True).get(WHOLE, {}) if few else {}
    numerical = {
        column: NumericReference(column=column, edges=p.edges, deciles=p.deciles, distinct=p.distinct,
                                 histogram=histograms.get(column), values=values.get(column, {}) if column in few
                                 else None)
        for column, p in columns.items()
    }
    categorical = (value_counts(engine, mapping, rows, mapping.categorical, numeric=False).get(WHOLE, {})
                   if mapping.categorical else {})
    classification = regression = None
    try:  # a reference may hold features only: then there is no reference performance
        if mapping.task == "binary_classification":
            classification = classification_counts(engine, mapping, rows).get(WHOLE)
        else:
            regression = regression_sums(engine, mapping, rows).get(WHOLE)
    except MappingError:
        classification = regression = None
    return ReferenceProfile(
        reference_id=reference_id(definition), model=mapping.name, description=rows.description,
        definition=definition, rows=total, numerical=numerical,
        categorical={c: dict(categorical.get(c, {})) for c in mapping.categorical},
        classification=classification, regression=regression,
        computed_at=datetime.now(UTC).replace(tzinfo=None, microsecond=0),
    )


# --------------------------------------------------------------------------------------------
# JSON payload
# --------------------------------------------------------------------------------------------
def _pairs(counts: dict[Any, int]) -> list[list[Any]]:
    return [[k, int(v)] for k, v in counts.items()]


def _sample_json(sample: BinnedSample | None) -> dict[str, Any] | None:
    if sample is None:
        return None
    return {"counts": sample.counts.tolist(), "sums": sample.sums.tolist(), "nulls": sample.nulls,
            "sum_sq": sample.sum_sq, "shift": sample.shift}


def profile_payload(profile: ReferenceProfile) -> dict[str, Any]:
    c, r = profile.classification, profile.regression
    return {
        "description": profile.description,
        "numerical": {
            name: {"edges": ref.edges.tolist(), "deciles": ref.deciles.tolist(), "distinct": ref.distinct,
                   "histogram": _sample_json(ref.histogram),
                   "values": None if ref.values is None else _pairs(ref.values)}
            for name, ref in profile.numerical.items()
        },
        "categorical": {name: _pairs(counts) for name, counts in profile.categorical.items()},
        "classification": None if c is None else {
            "predictions": c.predictions, "labeled": c.labeled,
            "confusion": [c.confusion.tp, c.confusion.fp, c.confusion.fn, c.confusion.tn],
            "scores": None if c.scores is None else [c.scores.levels.tolist(), c.scores.positives.tolist(),
                                                     c.scores.negatives.tolist()]},
        "regression": None if r is None else [r.predictions, r.labeled, r.sum_abs_error, r.sum_squared_error],
    }


def profile_from_row(row: Any) -> ReferenceProfile:
    payload = json.loads(row.payload)
    numerical = {}
    for name, ref in payload["numerical"].items():
        edges = np.asarray(ref["edges"], dtype=float)
        hist = ref["histogram"]
        numerical[name] = NumericReference(
            column=name, edges=edges, deciles=np.asarray(ref["deciles"], dtype=float), distinct=ref["distinct"],
            histogram=None if hist is None else BinnedSample(edges=edges, counts=hist["counts"], sums=hist["sums"],
                                                             nulls=hist["nulls"], sum_sq=hist["sum_sq"],
                                                             shift=hist["shift"]),
            values=None if ref["values"] is None else {k: v for k, v in ref["values"]},
        )
    c, r = payload["classification"], payload["regression"]
    classification = None if c is None else ClassificationCounts(
        predictions=c["predictions"], labeled=c["labeled"], confusion=ConfusionCounts(*c["confusion"]),
        scores=None if c["scores"] is None else ScoreCounts(*(np.asarray(v) for v in c["scores"])))
    return ReferenceProfile(
        reference_id=row.reference_id, model=row.model, description=payload["description"],
        definition=json.loads(row.definition), rows=row.rows, numerical=numerical,
        categorical={name: {k: v for k, v in pairs} for name, pairs in payload["categorical"].items()},
        classification=classification, regression=None if r is None else RegressionSums(*r),
        computed_at=row.computed_at,
    )


# --------------------------------------------------------------------------------------------
# Kept in tower state
# --------------------------------------------------------------------------------------------
def _tower_error(exc: sa_exc.DBAPIError) -> TowerStateUnavailable:
    return TowerStateUnavailable(f"The tower state cannot be read or written: {str(exc.orig).splitlines()[0]}",
                                 "Check TOWER_DB_URL (and run the monitoring job, which creates its tables).")


def stored_profile(tower: Engine, rid: str) -> ReferenceProfile | None:
    try:
        with tower.connect() as conn:
            row = conn.execute(sa.select(monitoring_references).where(
                monitoring_references.c.reference_id == rid)).first()
    except sa_exc.DBAPIError as exc:
        raise _tower_error(exc) from exc
    return None if row is None else profile_from_row(row)


def save_profile(tower: Engine, profile: ReferenceProfile) -> None:
    """Store (or replace) a profile under its reference id."""
    values = {"reference_id": profile.reference_id, "model": profile.model,
              "definition": json.dumps(profile.definition, sort_keys=True),
              "payload": json.dumps(profile_payload(profile), allow_nan=False), "rows": profile.rows,
              "computed_at": profile.computed_at}
    table = monitoring_references
    try:
        with tower.begin() as conn:
            conn.execute(sa.delete(table).where(table.c.reference_id == profile.reference_id))
            conn.execute(sa.insert(table).values(**values))
    except sa_exc.IntegrityError:
        return  # another run stored the same definition at the same moment: theirs is as good
    except sa_exc.DBAPIError as exc:
        raise _tower_error(exc) from exc


def load_or_compute(tower: Engine, engine: Engine, mapping: ModelMapping, start: datetime | None = None,
                    end: datetime | None = None, *, refresh: bool = False) -> ReferenceProfile:
    """The kept profile of this reference definition, computed and stored the first time."""
    rid = reference_id(reference_definition(mapping, start, end))
    if not refresh:
        found = stored_profile(tower, rid)
        if found is not None:
            return found
    profile = compute_profile(engine, mapping, start, end)
    save_profile(tower, profile)
    return profile
