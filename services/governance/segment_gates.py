"""Promotion gates that name a segment: a model's policy may hold drift and fairness limits for one of
its segments (issue 14), read from that segment's stored monitoring results.

```yaml
policies:
  loan-approval:
    segments:                        # per model only; each name a segment of models.<name>.segments
      business: {max_drift_share: 0.3, max_fairness_dpd: 0.1}
```

Each limit is one more gate, named ``segment:<name>/drift_share`` or ``segment:<name>/fairness_dpd``
(the spelling of segment alert subjects), judged exactly like the whole population's gate of the same
kind on the segment's numbers: the candidate version's share of drifted features in the latest
window it served in that segment, and the segment's worst demographic parity difference. ``no_data``
may name such a gate; otherwise it follows its kind's rule (``drift_share``, ``fairness_dpd``), then
``default``. A policy without ``segments`` records exactly what it recorded before (its ``as_dict``
and so its evidence digest do not change).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from services.errors import ConfigError, TowerError

KEY = "segments"
PREFIX = "segment:"
KINDS = ("drift_share", "fairness_dpd")  # the gate kinds a segment may hold, in the order they are judged
_LIMITS = {"max_drift_share": "drift_share", "max_fairness_dpd": "fairness_dpd"}


@dataclass(frozen=True)
class SegmentGates:
    """The limits a policy sets on one segment (None: no such gate)."""

    segment: str
    max_drift_share: float | None = None
    max_fairness_dpd: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"max_drift_share": self.max_drift_share, "max_fairness_dpd": self.max_fairness_dpd}


@runtime_checkable
class SegmentEvidence(Protocol):
    """What a monitoring source must answer for segment gates (``TowerMonitoringEvidence`` does)."""

    def segment_drift_share(self, model: str, version: str, segment: str) -> float | None: ...

    def segment_fairness_dpd(self, model: str, segment: str) -> float | None: ...


def gate_name(segment: str, kind: str) -> str:
    return f"{PREFIX}{segment}/{kind}"


def kind_of(gate: str) -> str | None:
    """``drift_share`` of ``segment:x/drift_share``; None for a gate that names no segment."""
    if not gate.startswith(PREFIX) or "/" not in gate:
        return None
    kind = gate.rsplit("/", 1)[1]
    return kind if kind in KINDS else None


def parse_segment_gates(raw: Any, where: str, limit: Callable[[Any, str], float | None]) -> tuple[SegmentGates, ...]:
    """``policies.<model>.segments``: segment name -> {max_drift_share, max_fairness_dpd} (shares in [0, 1]).
    ``limit`` is the policy's own number check. Names are checked against the model in `check_declared`."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where} must map segment names to their limits, e.g. "
                          "{business: {max_drift_share: 0.3, max_fairness_dpd: 0.1}}.")
    found = []
    for name, limits in raw.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: {name!r} is not a segment name.")
        if not isinstance(limits, Mapping) or not limits or set(limits) - set(_LIMITS):
            raise ConfigError(f"{at} must set max_drift_share and/or max_fairness_dpd (nothing else).")
        values = {key: limit(limits.get(key), f"{at}.{key}") for key in _LIMITS}
        for key, value in values.items():
            if value is not None and value > 1:
                raise ConfigError(f"{at}.{key} is a share between 0 and 1, got {value!r}.")
        found.append(SegmentGates(name, **values))
    return tuple(found)


def check_declared(gates: tuple[SegmentGates, ...], model: str, declared: tuple[str, ...] | None) -> None:
    """Refuse a gate on a segment the model does not declare (``declared`` None: the model is not mapped)."""
    for gate in gates:
        if declared is not None and gate.segment in declared:
            continue
        shown = gate.segment if len(gate.segment) <= 64 else gate.segment[:64] + "…"
        if declared is None:
            raise ConfigError(f"policies.{model}.segments.{shown}: '{model}' has no prediction-log mapping under "
                              "models, so it has no segments.")
        near = [d for d in declared if d.casefold() == gate.segment.strip().casefold()]
        raise ConfigError(f"policies.{model}.segments names {shown!r}, which is not a segment of model '{model}'.",
                          ("Did you mean " + repr(near[0]) + "? " if near else "")
                          + f"Its segments: {', '.join(declared) or 'none'}.")


def segment_numbers(monitoring: object | None, model: str, version: str, holder: str | None,
                    gates: tuple[SegmentGates, ...], notes: list[str]
                    ) -> dict[str, tuple[float | None, float | None, float | None]]:
    """Segment -> (candidate's drift share, holder's drift share, fairness dpd) from ``monitoring``."""
    if not gates:
        return {}
    if not isinstance(monitoring, SegmentEvidence):
        notes.append("The monitoring source cannot read segments: the segment gates have no data.")
        return {}

    def read(what: str, call: Callable[..., float | None], *args: str) -> float | None:
        try:
            return call(model, *args)
        except TowerError as exc:
            notes.append(f"{what} could not be read: {exc.message}")
            return None

    numbers = {}
    for g in gates:
        s = g.segment
        drift = g.max_drift_share is not None
        candidate = read(f"Drift of version {version} in segment {s}", monitoring.segment_drift_share, version, s) \
            if drift else None
        held = read(f"Drift of version {holder} in segment {s}", monitoring.segment_drift_share, holder, s) \
            if drift and holder is not None else None
        fairness = read(f"Fairness in segment {s}", monitoring.segment_fairness_dpd, s) \
            if g.max_fairness_dpd is not None else None
        numbers[s] = (candidate, held, fairness)
    return numbers
