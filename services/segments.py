"""Segments: named sub-populations of a model's log, declared in tower.yaml, never raw SQL.

A segment is a structured filter on one column the model's mapping names (a feature or a
sensitive attribute)::

    models:
      credit-risk:
        segments:
          - {name: north, column: region, values: [north]}
          - {name: young, column: age, range: [18, 30]}     # [lo, hi): 18 <= age < 30
          - {name: high-income, column: income, range: [100000, null]}   # null: unbounded

Rows whose column is NULL belong to no segment. Every monitoring number of a segment is the same
code as the whole population's, run on the segment's rows (the warehouse adds the filter), and the
segment's drift compares with the segment's own reference rows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from services.errors import ConfigError

OVERALL = ""  # the segment name of the whole population in stored results
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_VALUES = 1000
MAX_VALUE_LENGTH = 1000

Scalar = str | int | float


@dataclass(frozen=True)
class Segment:
    """One named filter: ``column`` in ``values``, or ``lo <= column < hi`` (an end None is open)."""

    name: str
    column: str
    values: tuple[Scalar, ...] | None = None
    lo: float | None = None
    hi: float | None = None

    @property
    def is_range(self) -> bool:
        return self.values is None

    def definition(self) -> dict[str, Any]:
        """What the segment selects, as JSON (part of its reference's digest)."""
        if self.values is not None:
            return {"name": self.name, "column": self.column, "values": list(self.values)}
        return {"name": self.name, "column": self.column, "range": [self.lo, self.hi]}

    def describe(self) -> str:
        """The segment in words, for pages and messages."""
        if self.values is not None:
            shown = ", ".join(str(v) for v in self.values[:5]) + (", …" if len(self.values) > 5 else "")
            return f"{self.name} ({self.column} in {shown})"
        lo = "" if self.lo is None else f"{self.lo:g} ≤ "
        hi = "" if self.hi is None else f" < {self.hi:g}"
        return f"{self.name} ({lo}{self.column}{hi})"


def _value(value: Any, where: str) -> Scalar:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: {value!r} is not a string or a number.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number.")
    if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
        raise ConfigError(f"{where}: a value is longer than {MAX_VALUE_LENGTH} characters.")
    scalar: Scalar = value
    return scalar


def _bound(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not a finite number (or null for an open end).")
    return float(value)


def parse_segment(raw: Any, where: str, columns: dict[str, str]) -> Segment:
    """One segment of ``models.<m>.segments``; ``columns`` maps each allowed column to its kind
    (``numerical``, ``categorical`` or ``sensitive``)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping: {{name, column, values}} or {{name, column, range: [lo, hi]}}.")
    unknown = set(raw) - {"name", "column", "values", "range"}
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(sorted(map(str, unknown)))} "
                          "(a segment is a structured filter, never SQL).")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}.name {name!r} is not a valid segment name.",
                          "Use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit.")
    column = raw.get("column")
    if column not in columns:
        allowed = ", ".join(sorted(columns)) or "none"
        raise ConfigError(f"{where}.column {column!r} is not a feature or sensitive column of the model.",
                          f"Segment on one of: {allowed}.")
    has_values, has_range = "values" in raw, "range" in raw
    if has_values == has_range:
        raise ConfigError(f"{where} needs exactly one of values or range.")
    if has_values:
        values = raw["values"]
        if not isinstance(values, list) or not values or len(values) > MAX_VALUES:
            raise ConfigError(f"{where}.values must be a list of 1 to {MAX_VALUES} values.")
        return Segment(name, column, values=tuple(dict.fromkeys(_value(v, f"{where}.values") for v in values)))
    if columns[column] != "numerical":
        raise ConfigError(f"{where}: a range needs a numerical column; {column!r} is {columns[column]}.",
                          "Use values: [...] for a categorical column.")
    bounds = raw["range"]
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise ConfigError(f"{where}.range must be [lo, hi] (lo included, hi excluded; null for an open end).")
    lo, hi = _bound(bounds[0], f"{where}.range"), _bound(bounds[1], f"{where}.range")
    if lo is None and hi is None:
        raise ConfigError(f"{where}.range is open at both ends: that is the whole population.")
    if lo is not None and hi is not None and lo >= hi:
        raise ConfigError(f"{where}.range [{lo:g}, {hi:g}) is empty: lo must be below hi.")
    return Segment(name, column, lo=lo, hi=hi)


def parse_segments(raw: Any, where: str, columns: dict[str, str]) -> tuple[Segment, ...]:
    """``models.<m>.segments``: a list of segments with distinct names (case-insensitively)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list of segments.")
    segments = tuple(parse_segment(item, f"{where}[{i}]", columns) for i, item in enumerate(raw))
    seen: set[str] = set()
    for s in segments:
        if s.name.casefold() in seen:
            raise ConfigError(f"{where}: the segment name {s.name!r} is used twice.")
        seen.add(s.name.casefold())
    return segments
