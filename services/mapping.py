"""The model -> prediction-log table mapping of tower.yaml (docs/ARCHITECTURE.md, contracts), parsed and validated.

Table and column names reach SQL only from here, so they are checked once, at load time.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from services.errors import ConfigError
from services.segments import Segment, parse_segments

TASKS = ("binary_classification", "regression")
# Logical column -> whether a mapping must name it. Optional ones may be absent from a log.
LOGICAL_COLUMNS: dict[str, bool] = {
    "request_id": False,
    "timestamp": True,
    "version": True,
    "prediction": True,
    "score": False,
    "label": False,
    "latency_ms": True,
    "status": True,
}
# Letters, digits, underscore; an optional schema prefix. Quoted by SQLAlchemy anyway, but a
# name outside this set in a config file is far more likely a typo or an attack than a table.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}(\.[A-Za-z_][A-Za-z0-9_]{0,127})?$")


# What ``reference.from_registry`` may name: the dataset the version's run logged with this context.
REGISTRY_REFERENCES = ("training",)
EXACT_EDGES_MAX_ROWS = 2_000_000
"""Default of ``reference.exact_edges_max_rows``: a reference of more rows gets its quantile edges from a
sample on DuckDB (the bins stay exact for whichever edges are chosen); one of at most this many, exact ones."""


@dataclass(frozen=True)
class Reference:
    """Where the reference data of a model lives: its own table, or a time range of the log.

    With ``from_registry`` the reference is the dataset the serving version's run logged (resolved by
    services.monitoring.registry_reference); table/start/end are then the fallback. A resolved copy
    carries the warehouse table the dataset resolved to, its snapshot filter and ``registry``: the
    link (version, dataset, digest, source) that makes each (model, version, digest) its own profile.
    ``exact_edges_max_rows``: above this many reference rows the 1000-quantile edges are taken from a
    random sample instead of sorting every value (DuckDB only; see warehouse/profiles.py).
    """

    table: str | None = None
    start: str | None = None
    end: str | None = None
    from_registry: str | None = None
    snapshot_column: str | None = None  # set on a resolved reference only: rows where column = snapshot
    snapshot: str | None = None
    registry: tuple[tuple[str, str], ...] = ()  # set on a resolved reference only
    exact_edges_max_rows: int = EXACT_EDGES_MAX_ROWS


@dataclass(frozen=True)
class Slo:
    latency_p95_ms: float | None = None
    error_rate: float | None = None


@dataclass(frozen=True)
class ModelMapping:
    """One monitored registered model and the wide log table that records its predictions."""

    name: str
    table: str
    task: str
    columns: dict[str, str]
    numerical: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    reference: Reference = field(default_factory=Reference)
    slo: Slo = field(default_factory=Slo)
    ok_status: str = "ok"
    segments: tuple[Segment, ...] = ()  # declared sub-populations
    segment: Segment | None = None  # set on a copy that reads one segment's rows (for_segment)

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the whole mapping (its segment included): what cached reads key on, instead of
        Streamlit's hasher walking the object on every call."""
        return hashlib.sha256(repr(self).encode("utf-8")).hexdigest()

    def column(self, logical: str) -> str:
        """The physical column for a logical one (``timestamp`` -> ``ts``)."""
        return self.columns[logical]

    @property
    def features(self) -> tuple[str, ...]:
        return self.numerical + self.categorical

    def for_segment(self, name: str | None) -> ModelMapping:
        """This mapping reading only the rows of segment ``name`` (None or '': the whole population)."""
        if not name:
            return replace(self, segment=None)
        found = next((s for s in self.segments if s.name == name), None)
        if found is None:
            known = ", ".join(s.name for s in self.segments) or "none"
            raise ConfigError(f"Model '{self.name}' has no segment named {name!r}.", f"Its segments: {known}.")
        return replace(self, segment=found)

    def __hash__(self) -> int:  # dict field: hash by name, mappings are unique per model
        return hash((self.name, self.table, self.segment))


def valid_identifier(value: Any) -> bool:
    """Whether ``value`` is a table or column name the tower lets reach SQL (optionally schema.table)."""
    return isinstance(value, str) and _IDENTIFIER.match(value) is not None and "\n" not in value


def _identifier(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ConfigError(
            f"{where}: {value!r} is not a valid table or column name.",
            "Use letters, digits and underscores (optionally schema.table).",
        )
    return value


def _names(values: Any, where: str) -> tuple[str, ...]:
    if values is None:
        return ()
    if not isinstance(values, list):
        raise ConfigError(f"{where} must be a list of column names.")
    return tuple(_identifier(v, where) for v in values)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where} must be a non-negative number, not {value!r}.")
    return float(value)


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a whole number of rows of at least 1, not {value!r}.")
    return int(value)


def parse_model_mapping(name: str, raw: Any) -> ModelMapping:
    """Build one mapping from its tower.yaml entry; raise ConfigError naming the bad field."""
    where = f"models.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with at least table, task and columns.")
    task = raw.get("task", "binary_classification")
    if task not in TASKS:
        raise ConfigError(f"{where}.task is {task!r}; expected one of {', '.join(TASKS)}.")
    columns_raw = raw.get("columns") or {}
    if not isinstance(columns_raw, dict):
        raise ConfigError(f"{where}.columns must map logical names to column names.")
    unknown = set(columns_raw) - set(LOGICAL_COLUMNS)
    if unknown:
        raise ConfigError(f"{where}.columns has unknown keys: {', '.join(sorted(unknown))}.")
    columns = {k: _identifier(v, f"{where}.columns.{k}") for k, v in columns_raw.items()}
    missing = [k for k, required in LOGICAL_COLUMNS.items() if required and k not in columns]
    if missing:
        raise ConfigError(f"{where}.columns is missing: {', '.join(missing)}.")
    features = raw.get("features") or {}
    ref_raw = raw.get("reference") or {}
    slo_raw = raw.get("slo") or {}
    if not isinstance(features, dict) or not isinstance(ref_raw, dict) or not isinstance(slo_raw, dict):
        raise ConfigError(f"{where}: features, reference and slo must be mappings.")
    ref_table = ref_raw.get("table")
    refuse_unknown = set(ref_raw) - {"table", "start", "end", "from_registry", "exact_edges_max_rows"}
    if refuse_unknown:
        raise ConfigError(f"{where}.reference has unknown keys: {', '.join(sorted(map(str, refuse_unknown)))}.",
                          "Known keys: table, start, end, from_registry, exact_edges_max_rows.")
    from_registry = ref_raw.get("from_registry")
    if from_registry is not None and from_registry not in REGISTRY_REFERENCES:
        raise ConfigError(f"{where}.reference.from_registry is {from_registry!r}; expected one of "
                          f"{', '.join(REGISTRY_REFERENCES)}.",
                          "`training` takes the dataset the serving version's run logged with context training.")
    return ModelMapping(
        name=name,
        table=_identifier(raw.get("table"), f"{where}.table"),
        task=task,
        columns=columns,
        numerical=_names(features.get("numerical"), f"{where}.features.numerical"),
        categorical=_names(features.get("categorical"), f"{where}.features.categorical"),
        sensitive=_names(raw.get("sensitive"), f"{where}.sensitive"),
        reference=Reference(
            table=_identifier(ref_table, f"{where}.reference.table") if ref_table else None,
            start=str(ref_raw["start"]) if ref_raw.get("start") else None,
            end=str(ref_raw["end"]) if ref_raw.get("end") else None,
            from_registry=from_registry,
            exact_edges_max_rows=_positive_int(ref_raw.get("exact_edges_max_rows", EXACT_EDGES_MAX_ROWS),
                                               f"{where}.reference.exact_edges_max_rows"),
        ),
        slo=Slo(
            latency_p95_ms=_number(slo_raw.get("latency_p95_ms"), f"{where}.slo.latency_p95_ms"),
            error_rate=_number(slo_raw.get("error_rate"), f"{where}.slo.error_rate"),
        ),
        ok_status=str(raw.get("ok_status", "ok")),
        segments=parse_segments(raw.get("segments"), f"{where}.segments", {
            **{c: "numerical" for c in _names(features.get("numerical"), where)},
            **{c: "categorical" for c in _names(features.get("categorical"), where)},
            **{c: "sensitive" for c in _names(raw.get("sensitive"), where)}}),
    )
