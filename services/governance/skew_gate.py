"""The training–serving skew gate: the candidate's own training data against the traffic it will meet.

```yaml
policies:
  credit-risk:
    training_skew: {max_share: 0.2}                   # beyond noise (the default verdict), last 7 days
    # training_skew: {max_share: 0, verdict: material, material: 0.1, days: 14}
```

The gate compares, feature by feature, the training dataset the candidate's run logged (resolved to a
warehouse table by ``reference_sources``, services.monitoring.registry_reference) with the last ``days``
of live traffic of every version: the data the candidate will meet once promoted. Each feature's
statistic comes with its bootstrap interval and its noise level (services.stats.drift_intervals); a
feature is *skewed* when the interval's lower end is above the noise level (``beyond_noise``) or above the
practical threshold ``material``. A fixed threshold on the bare number is not offered here: at the sizes
a promotion compares (a training set against a week of traffic) it flags shifts too small to matter.

The gate fails when the share of skewed features is above ``max_share``; it has no data when the
candidate logged no training dataset, its source does not resolve, or nothing was served in the window.
A policy without ``training_skew`` records exactly what it recorded before (evidence digests unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from services.errors import ConfigError

KEY = "training_skew"
GATE = "training_skew"
VERDICTS = ("beyond_noise", "material")
DEFAULT_DAYS = 7
MAX_DAYS = 366
_KEYS = {"max_share", "verdict", "material", "days"}


@dataclass(frozen=True)
class SkewGate:
    """A policy's skew limit: at most ``max_share`` of the features skewed, judged by ``verdict``."""

    max_share: float
    verdict: str = "beyond_noise"
    material: float | None = None  # the practical threshold, for verdict "material"
    days: int = DEFAULT_DAYS

    def as_dict(self) -> dict[str, Any]:
        return {"max_share": self.max_share, "verdict": self.verdict, "material": self.material, "days": self.days}


@dataclass(frozen=True)
class FeatureSkew:
    """One feature's comparison: the statistic, its interval, the noise level at these sizes."""

    column: str
    statistic: str  # the effect size judged ("wasserstein", "jensenshannon", "psi", "ks")
    value: float | None
    lower: float | None
    upper: float | None
    noise: float | None
    skewed: bool | None  # None: could not be judged (an empty side)
    training_rows: int
    serving_rows: int

    def as_dict(self) -> dict[str, Any]:
        return {"column": self.column, "statistic": self.statistic, "value": self.value, "lower": self.lower,
                "upper": self.upper, "noise": self.noise, "skewed": self.skewed,
                "training_rows": self.training_rows, "serving_rows": self.serving_rows}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSkew:
        return cls(**{k: data[k] for k in ("column", "statistic", "value", "lower", "upper", "noise", "skewed",
                                           "training_rows", "serving_rows")})


@dataclass(frozen=True)
class SkewReading:
    """What the skew gate read: which training data, which traffic, and each feature's comparison.

    ``features`` is empty and ``missing`` says why when there was nothing to compare."""

    dataset: str  # e.g. "credit_risk_training (digest 1a2b3c4d) at features.credit_risk_training@2026.11.24"
    window: str  # e.g. "2026-11-30 .. 2026-12-07, all versions"
    features: tuple[FeatureSkew, ...] = ()
    missing: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "window": self.window, "missing": self.missing,
                "features": [f.as_dict() for f in self.features]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkewReading:
        return cls(dataset=data["dataset"], window=data["window"], missing=data.get("missing"),
                   features=tuple(FeatureSkew.from_dict(f) for f in data.get("features", ())))


@runtime_checkable
class SkewEvidence(Protocol):
    """What a monitoring source must answer for the skew gate (``TowerMonitoringEvidence`` does)."""

    def training_skew(self, model: str, version: str, gate: SkewGate, now: datetime) -> SkewReading:
        """``version``'s training data against the ``gate.days`` of traffic before ``now`` (naive UTC)."""


def parse_skew_gate(raw: Any, where: str, limit: Callable[[Any, str], float | None]) -> SkewGate | None:
    """``policies.<model>.training_skew`` (null: no gate). ``limit`` is the policy's own number check."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping such as {{max_share: 0.2, verdict: beyond_noise}}.")
    unknown = sorted(str(k) for k in set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}.",
                          f"Keys: {', '.join(sorted(_KEYS))}.")
    share = limit(raw.get("max_share"), f"{where}.max_share")
    if share is None or share > 1:
        raise ConfigError(f"{where}.max_share is the share of features that may be skewed, between 0 and 1, "
                          f"got {raw.get('max_share')!r}.")
    verdict = raw.get("verdict", "beyond_noise")
    if verdict not in VERDICTS:
        raise ConfigError(f"{where}.verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}.",
                          "A fixed threshold on the bare statistic flags negligible shifts at training-set sizes.")
    material = limit(raw.get("material"), f"{where}.material")
    if verdict == "material" and not material:
        raise ConfigError(f"{where}.material must be a positive threshold when verdict is material.")
    if verdict != "material" and material is not None:
        raise ConfigError(f"{where}.material is only read with verdict: material.")
    days = raw.get("days", DEFAULT_DAYS)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"{where}.days must be a whole number of days from 1 to {MAX_DAYS}, got {days!r}.")
    return SkewGate(max_share=share, verdict=verdict, material=material, days=days)


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def describe(feature: FeatureSkew) -> str:
    """``income: wasserstein 0.18 [0.15, 0.21], noise 0.02`` — a number is never shown without its interval."""
    return (f"{feature.column}: {feature.statistic} {_fmt(feature.value)} "
            f"[{_fmt(feature.lower)}, {_fmt(feature.upper)}], noise {_fmt(feature.noise)}")


def judge(gate: SkewGate, reading: SkewReading) -> tuple[str, float | None, str]:
    """(status, share of skewed features, detail) for the gate on a reading; status is passed, failed or
    no_data (the caller maps it to its GateResult)."""
    judged = [f for f in reading.features if f.skewed is not None]
    if reading.missing or not judged:
        return "no_data", None, reading.missing or f"No feature could be compared ({reading.window})."
    skewed: Sequence[FeatureSkew] = [f for f in judged if f.skewed]
    share = len(skewed) / len(judged)
    ok = share <= gate.max_share + 1e-9
    how = "beyond noise" if gate.verdict == "beyond_noise" else f"by more than {_fmt(gate.material)}"
    listed = "; ".join(describe(f) for f in sorted(skewed, key=lambda f: -(f.lower or 0.0))[:5])
    detail = (f"{len(skewed)} of {len(judged)} features of the training data ({reading.dataset}) differ from "
              f"live traffic ({reading.window}) {how}: a share of {share:.2f}, at most {gate.max_share:.2f} "
              f"allowed." + (f" {listed}." if listed else ""))
    return ("passed" if ok else "failed"), share, detail
