"""Kept daily aggregates (issue 16): a window of whole UTC days from the days the job already binned.

The monitoring job aggregates every day it computes by day and version; the all-versions aggregates of
each day that is over are kept in ``monitoring_kept_days`` (``services.monitoring.store``). Every count and
sum of :class:`~services.monitoring.report.WindowAggregates` adds up, so the report of a 7-day window
combines seven kept days instead of binning every row of the window again (``report.window_report``).
Latency quantiles do not add up and are queried for the window; so are fairness and performance, which
labels arriving after the day change (a provisional day): the kept days give the distributions, whose
fine histograms are the dear part (bench/RESULTS.md, scale).

A kept day counts only under the keys it was computed with: the reference profile (its id, edges and
shifts: another reference, or the same one recomputed with other edges, misses) and the mapping parts that
change the numbers (table, columns, features, sensitive attributes, task, segment). CBPE cells are not
kept: a report with a calibration map is computed from SQL.

The payload is JSON read by a strict decoder, never pickle: whoever can write the tower state must not
get code execution from it. Its row holds a digest of the payload and its key; a payload that does not
match, does not decode, or does not fit the profile is a miss (the report is computed from SQL), logged.
The digest is a plain SHA-256: it catches a damaged or moved row, not a database administrator who
recomputes it (see the README's threat model for what the tower state's owner can do).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from services.errors import TowerError
from services.mapping import ModelMapping
from services.monitoring.reference import ReferenceProfile
from services.monitoring.report import WindowAggregates, combine
from services.monitoring.store import monitoring_kept_days
from services.segments import OVERALL
from services.stats.fairness import GroupCounts
from services.stats.histogram import BinnedSample
from services.stats.performance import ConfusionCounts, ScoreCounts
from services.stores.warehouse.outcomes import ClassificationCounts, RegressionSums

FORMAT = 1  # of the payload and of the key digests: a change here makes every kept day a miss
log = logging.getLogger(__name__)


class KeptDayInvalid(ValueError):
    """A kept payload that is not what this module writes (damaged or edited): treated as a miss."""


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------
def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def profile_digest(profile: ReferenceProfile) -> str:
    """The reference the day was binned against: its id and, per numerical feature, the edges and shift of
    its histogram or that it is value-counted (a recomputed profile with other edges is another key)."""
    numerical = {}
    for column, ref in sorted(profile.numerical.items()):
        shift = None if ref.histogram is None else float(ref.histogram.shift)
        numerical[column] = [ref.value_counted, [float(e) for e in ref.edges], shift]
    return _digest({"format": FORMAT, "reference_id": profile.reference_id, "numerical": numerical})


def mapping_digest(mapping: ModelMapping) -> str:
    """The parts of the mapping that change a day's aggregates (not its name, SLO or reference)."""
    return _digest({"format": FORMAT, "table": mapping.table, "task": mapping.task,
                    "columns": dict(sorted(mapping.columns.items())), "numerical": list(mapping.numerical),
                    "categorical": list(mapping.categorical), "sensitive": list(mapping.sensitive),
                    "ok_status": mapping.ok_status,
                    "segment": None if mapping.segment is None else mapping.segment.definition()})


def _segment(mapping: ModelMapping) -> str:
    return OVERALL if mapping.segment is None else mapping.segment.name


def payload_digest(model: str, segment: str, day: date, profile: str, mapping: str, payload: str) -> str:
    # Over the key too: a valid payload copied to another day, model or reference does not match there.
    return _digest([FORMAT, model, segment, day.isoformat(), profile, mapping, payload])


# --------------------------------------------------------------------------------------------
# Payload: JSON out, strictly checked JSON in
# --------------------------------------------------------------------------------------------
def _value_order(pair: list[Any]) -> tuple[bool, str, float]:
    value = pair[0]
    return (value is None, value if isinstance(value, str) else "", value if isinstance(value, float) else 0.0)


def encode(aggregates: WindowAggregates) -> str:
    """The JSON of a day's aggregates without latency and CBPE cells (neither is kept)."""
    c, r = aggregates.classification, aggregates.regression
    body = {
        "format": FORMAT,
        "rows": int(aggregates.rows),
        "numerical": {k: {"counts": [int(x) for x in s.counts], "sums": [float(x) for x in s.sums],
                          "nulls": int(s.nulls), "sum_sq": float(s.sum_sq),
                          "shift": float(s.shift)} for k, s in aggregates.numerical.items()},
        # Value counts sorted: the warehouse returns groups in any order, and a recomputed day must give the
        # same payload (and digest) for the same rows.
        "numerical_values": {k: sorted(([None if v is None else float(v), int(n)] for v, n in counts.items()),
                                       key=_value_order)
                             for k, counts in aggregates.numerical_values.items()},
        "categorical": {k: sorted(([v, int(n)] for v, n in counts.items()), key=_value_order)
                        for k, counts in aggregates.categorical.items()},
        "fairness": {k: [[g.group, *(int(x) for x in (g.n, g.predicted_positive, g.tp, g.fp, g.fn, g.tn))]
                         for g in groups]
                     for k, groups in aggregates.fairness.items()},
        "classification": None if c is None else {
            "predictions": int(c.predictions), "labeled": int(c.labeled),
            "confusion": [int(c.confusion.tp), int(c.confusion.fp), int(c.confusion.fn), int(c.confusion.tn)],
            "scores": None if c.scores is None else {
                "levels": [float(x) for x in c.scores.levels], "positives": [int(x) for x in c.scores.positives],
                "negatives": [int(x) for x in c.scores.negatives]}},
        "regression": None if r is None else [int(r.predictions), int(r.labeled), float(r.sum_abs_error),
                                              float(r.sum_squared_error)],
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=True)


def _fail(what: str) -> KeptDayInvalid:
    return KeptDayInvalid(f"kept day payload: {what}")


def _int(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _fail(f"{what} is not a count")
    return value


def _float(value: Any, what: str) -> float:
    if type(value) not in (int, float):
        raise _fail(f"{what} is not a number")
    return float(value)


def _obj(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise _fail(f"{what} is not an object")
    return value


def _list(value: Any, what: str, length: int | None = None) -> list[Any]:
    if type(value) is not list or (length is not None and len(value) != length):
        raise _fail(f"{what} is not a list" + ("" if length is None else f" of {length}"))
    return value


def _keys(value: dict[str, Any], expected: Iterable[str], what: str) -> None:
    if set(value) != set(expected):
        raise _fail(f"{what} has other fields or features than expected")


def decode(text: str, mapping: ModelMapping, profile: ReferenceProfile) -> WindowAggregates:
    """The aggregates of a kept payload, checked field by field against the mapping and the profile
    (edges and shifts come from the profile); KeptDayInvalid when anything does not fit."""
    try:
        body = _obj(json.loads(text), "the payload")
    except (ValueError, RecursionError) as exc:
        raise _fail("not JSON") from exc
    _keys(body, ("format", "rows", "numerical", "numerical_values", "categorical", "fairness", "classification",
                 "regression"), "the payload")
    if body["format"] != FORMAT:
        raise _fail("another format")
    histogrammed = {c: r for c, r in profile.numerical.items() if not r.value_counted}
    few = [c for c, r in profile.numerical.items() if r.value_counted]
    numerical_in = _obj(body["numerical"], "numerical")
    _keys(numerical_in, histogrammed, "numerical")
    numerical = {}
    for column, ref in histogrammed.items():
        item = _obj(numerical_in[column], column)
        _keys(item, ("counts", "sums", "nulls", "sum_sq", "shift"), column)
        size = ref.edges.size + 1
        counts = np.array([_int(x, column) for x in _list(item["counts"], column, size)], dtype=np.int64)
        sums = np.array([_float(x, column) for x in _list(item["sums"], column, size)], dtype=float)
        numerical[column] = BinnedSample(edges=ref.edges, counts=counts, sums=sums, nulls=_int(item["nulls"], column),
                                         sum_sq=_float(item["sum_sq"], column),
                                         shift=_float(item["shift"], column))
    values_in = _obj(body["numerical_values"], "numerical_values")
    _keys(values_in, few, "numerical_values")
    numerical_values: dict[str, dict[float | None, int]] = {}
    for column in few:
        pairs = [_list(p, column, 2) for p in _list(values_in[column], column)]
        numerical_values[column] = {None if v is None else _float(v, column): _int(n, column) for v, n in pairs}
    categorical_in = _obj(body["categorical"], "categorical")
    _keys(categorical_in, mapping.categorical, "categorical")
    categorical: dict[str, dict[str | None, int]] = {}
    for column in mapping.categorical:
        pairs = [_list(p, column, 2) for p in _list(categorical_in[column], column)]
        if any(v is not None and type(v) is not str for v, _ in pairs):
            raise _fail(f"{column} has a category that is not text")
        categorical[column] = {v: _int(n, column) for v, n in pairs}
    classifier = mapping.task == "binary_classification"
    fairness_in = _obj(body["fairness"], "fairness")
    _keys(fairness_in, mapping.sensitive if classifier else (), "fairness")
    fairness = {}
    for attribute, groups in fairness_in.items():
        rows = [_list(g, attribute, 7) for g in _list(groups, attribute)]
        if any(type(g[0]) is not str for g in rows):
            raise _fail(f"{attribute} has a group that is not text")
        fairness[attribute] = tuple(GroupCounts(g[0], *(_int(x, attribute) for x in g[1:])) for g in rows)
    classification = regression = None
    if classifier:
        c = _obj(body["classification"], "classification")
        _keys(c, ("predictions", "labeled", "confusion", "scores"), "classification")
        confusion = ConfusionCounts(*(_int(x, "confusion") for x in _list(c["confusion"], "confusion", 4)))
        scores = None
        if c["scores"] is not None:
            s = _obj(c["scores"], "scores")
            _keys(s, ("levels", "positives", "negatives"), "scores")
            levels = [_float(x, "scores") for x in _list(s["levels"], "scores")]
            positives = [_int(x, "scores") for x in _list(s["positives"], "scores", len(levels))]
            negatives = [_int(x, "scores") for x in _list(s["negatives"], "scores", len(levels))]
            if any(b <= a for a, b in zip(levels, levels[1:], strict=False)):
                raise _fail("score levels are not increasing")
            scores = ScoreCounts(np.array(levels, dtype=float), np.array(positives, dtype=np.int64),
                                 np.array(negatives, dtype=np.int64))
        classification = ClassificationCounts(_int(c["predictions"], "predictions"), _int(c["labeled"], "labeled"),
                                              confusion, scores)
    else:
        r = _list(body["regression"], "regression", 4)
        regression = RegressionSums(_int(r[0], "regression"), _int(r[1], "regression"), _float(r[2], "regression"),
                                    _float(r[3], "regression"))
    return WindowAggregates(rows=_int(body["rows"], "rows"), numerical=numerical, numerical_values=numerical_values,
                            categorical=categorical, fairness=fairness, classification=classification,
                            regression=regression)


# --------------------------------------------------------------------------------------------
# Writing (the job) and reading (the report)
# --------------------------------------------------------------------------------------------
def kept_rows(mapping: ModelMapping, profile: ReferenceProfile, days: Mapping[date, WindowAggregates],
              computed_at: datetime) -> list[dict[str, Any]]:
    """The rows that keep these days' all-versions aggregates (for :func:`replace_days`)."""
    model, segment = mapping.name, _segment(mapping)
    keys = {"profile_digest": profile_digest(profile), "mapping_digest": mapping_digest(mapping)}
    rows = []
    for day, aggregates in sorted(days.items()):
        payload = encode(aggregates)
        rows.append({"model": model, "segment": segment, "day": day, **keys, "payload": payload,
                     "payload_digest": payload_digest(model, segment, day, keys["profile_digest"],
                                                       keys["mapping_digest"], payload),
                     "computed_at": computed_at})
    return rows


def replace_days(conn: Connection, model: str, segment: str, days: Iterable[date],
                 rows: Sequence[Mapping[str, Any]]) -> None:
    """In the caller's transaction: forget what was kept for ``days`` (a day recomputed and now provisional
    or incomplete stays forgotten), then keep ``rows`` (some of those days)."""
    k = monitoring_kept_days.c
    conn.execute(sa.delete(monitoring_kept_days).where(k.model == model, k.segment == segment,
                                                       k.day.in_(list(days))))
    if rows:
        conn.execute(sa.insert(monitoring_kept_days), list(rows))


def whole_days(start: datetime, end: datetime) -> list[date] | None:
    """The UTC days of ``[start, end)`` (naive UTC), or None unless both bounds are midnights."""
    if start.time() != time(0) or end.time() != time(0) or start >= end:
        return None
    return [start.date() + timedelta(days=i) for i in range((end.date() - start.date()).days)]


@dataclass(frozen=True)
class KeptDays:
    """Reads kept days from the tower state (``report.window_report``'s ``kept``): the engine, or what opens
    it (``wiring.Backends.tower``). A tower state that cannot be read is a miss: the report still comes, from
    the warehouse."""

    tower: Engine | Callable[[], Engine]

    def window(self, mapping: ModelMapping, profile: ReferenceProfile, start: datetime,
               end: datetime) -> WindowAggregates | None:
        """The combined aggregates of ``[start, end)`` without latency, or None (compute from SQL) unless it
        is whole days, each kept under this profile and mapping, each payload intact."""
        days = whole_days(start, end)
        if days is None:
            return None
        model, segment = mapping.name, _segment(mapping)
        keys = (profile_digest(profile), mapping_digest(mapping))
        k = monitoring_kept_days.c
        query = sa.select(k.day, k.profile_digest, k.mapping_digest, k.payload, k.payload_digest).where(
            k.model == model, k.segment == segment, k.day >= days[0], k.day <= days[-1])
        try:
            engine = self.tower if isinstance(self.tower, Engine) else self.tower()
            with engine.connect() as conn:
                found = {row.day: row for row in conn.execute(query)}
        except (TowerError, sa.exc.DBAPIError) as exc:
            log.warning("Kept aggregates cannot be read (%s): computed from SQL.", str(exc).splitlines()[0])
            return None
        if len(found) != len(days):
            return None
        parts = []
        for day in days:
            row = found.get(day)
            if row is None or (row.profile_digest, row.mapping_digest) != keys:
                return None
            if row.payload_digest != payload_digest(model, segment, day, *keys, row.payload):
                log.warning("The kept aggregates of %s on %s do not match their digest: computed from SQL.", model, day)
                return None
            try:
                parts.append(decode(row.payload, mapping, profile))
            except KeptDayInvalid as exc:
                log.warning("The kept aggregates of %s on %s are unreadable (%s): computed from SQL.", model, day, exc)
                return None
        return combine(parts, None)
