"""The ``monitoring:`` section of tower.yaml: the job's defaults and the alert rules per model.

```yaml
monitoring:
  backfill_days: 35            # first run: how many days back from the log's last day
  webhook_timeout_s: 5
  alerts:                      # every model's rules; a rule's threshold may be overridden below
    drift: {consecutive: 3}                          # a feature drifted 3 windows in a row
    # drift verdict: fixed (the threshold, default), beyond_noise (the bootstrap interval's lower end
    # above the noise level at the window's size) or material (the lower end above `material`);
    # confidence (0.5-0.999, default 0.95) and replicates (50-5000, default 200) of the bootstrap
    # drift: {verdict: material, material: 0.15, confidence: 0.95, replicates: 200}
    latency_p95: {consecutive: 1}                    # p95 over models.<name>.slo.latency_p95_ms
    error_rate: {consecutive: 1}                     # error rate over models.<name>.slo.error_rate
    fairness: {demographic_parity_difference: 0.1, equalized_odds_difference: null}
    performance: {metric: null, max_drop: 0.05, min_label_coverage: 0.9, min_labels: 200}
    multivariate_drift: {consecutive: 3}             # PCA reconstruction error outside its reference band
    estimated_performance_drop: {metric: null, max_drop: 0.05, min_rows: 200}   # CBPE, before labels
    data_quality: {max_null_increase: 0.05, max_unseen_share: 0.05, max_out_of_range_share: 0.05, min_rows: 100}
  models:
    demand-forecast:
      performance: {max_drop: 0.2}
    loan-approval:
      performance: {segments: [business]}          # also judge the segment (services.monitoring.segment_rules)
```

Every rule takes ``enabled`` (default true) and ``consecutive`` (windows in a row the condition must
hold before an episode opens).

Severity (``critical``, per rule; ``services.monitoring.severity``): an episode is ``warning`` unless
one of its windows reaches the rule's critical level, then ``critical`` until it ends. For drift,
multivariate_drift, latency_p95, error_rate and fairness, ``critical`` is a multiple of the rule's
threshold on the "× threshold" scale (>= 1; a drift p-value test counts the smaller p as the worse);
latency_p95 and error_rate default to 1 (every SLO breach is critical: users are failing now), the
others to null (never critical). For performance and estimated_performance_drop it is a relative
drop from the reference like ``max_drop`` and must exceed it (default null).

The webhook URL is a secret (a Slack or Teams URL carries a token), so it comes only from the
environment: ``TOWER_ALERT_WEBHOOK_URL``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from services.errors import ConfigError
from services.monitoring import segment_rules
from services.settings import Settings

WEBHOOK_ENV = "TOWER_ALERT_WEBHOOK_URL"
PERFORMANCE_METRICS = {  # metric -> True when higher is better
    "accuracy": True, "precision": True, "recall": True, "f1": True, "roc_auc": True, "mae": False, "rmse": False,
}
CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
REGRESSOR_METRICS = ("mae", "rmse")


@dataclass(frozen=True)
class DriftRule:
    """A feature whose drift verdict is positive in ``consecutive`` windows in a row.

    ``threshold``/``method`` None keep Evidently 0.7's default test and threshold per column.

    ``verdict`` (issue 15, ``services.stats.drift_intervals``): ``fixed`` judges the statistic against
    its threshold (Evidently's verdicts); ``beyond_noise`` flags a feature whose bootstrap interval's
    lower end is above the statistic's noise level at the window's size; ``material`` one whose lower
    end is above ``material`` (a distance, required in that mode). p-value methods are judged on their
    distance (KS statistic for ks, JS distance for chisquare and z). ``confidence`` is the interval's
    level and the noise level's quantile; ``replicates`` the bootstrap draws per window and feature.
    """

    enabled: bool = True
    consecutive: int = 3
    threshold: float | None = None
    method: str | None = None
    critical: float | None = None  # multiple of the threshold (severity)
    verdict: str = "fixed"
    material: float | None = None
    confidence: float = 0.95
    replicates: int = 200


@dataclass(frozen=True)
class SloRule:
    """p95 latency or error rate over the model's SLO (``models.<name>.slo``)."""

    enabled: bool = True
    consecutive: int = 1
    critical: float | None = 1.0  # multiple of the SLO (severity): by default every breach is critical


@dataclass(frozen=True)
class FairnessRule:
    """A difference over its limit for a sensitive attribute; a limit of None is not alerted on."""

    enabled: bool = True
    consecutive: int = 1
    demographic_parity_difference: float | None = 0.1
    equalized_odds_difference: float | None = None
    critical: float | None = None  # multiple of the limit (severity)


@dataclass(frozen=True)
class PerformanceRule:
    """The live metric worse than on the reference by more than ``max_drop`` (relative).

    ``metric`` None: ``roc_auc`` for classifiers, ``mae`` for regressors. Windows whose label coverage
    is below ``min_label_coverage`` are provisional, and neither they nor windows with fewer than
    ``min_labels`` labelled rows are judged.
    """

    enabled: bool = True
    consecutive: int = 1
    metric: str | None = None
    max_drop: float = 0.05
    min_label_coverage: float = 0.9
    min_labels: int = 200
    critical: float | None = None  # relative drop, like max_drop and above it (severity)

    def metric_for(self, task: str) -> str:
        if self.metric:
            return self.metric
        return "roc_auc" if task == "binary_classification" else "mae"


@dataclass(frozen=True)
class MultivariateDriftRule:
    """The PCA reconstruction error outside its reference band (mean ± 3σ of the reference chunks) in
    ``consecutive`` windows in a row (``services.monitoring.multivariate``)."""

    enabled: bool = True
    consecutive: int = 3
    critical: float | None = None  # multiple of the band's upper bound (severity)


@dataclass(frozen=True)
class EstimatedPerformanceRule:
    """The CBPE estimate's *upper* bound below the reference by more than ``max_drop`` (relative).

    Binary classifiers that log a score only (services.monitoring.estimated_performance). ``metric``
    None: ``roc_auc``; one of CLASSIFIER_METRICS otherwise. Windows with fewer than ``min_rows``
    scored predictions are not judged. Judging the upper bound means chance alone (labels drawn
    from the calibrated probabilities) would rarely raise it.
    """

    enabled: bool = True
    consecutive: int = 1
    metric: str | None = None
    max_drop: float = 0.05
    min_rows: int = 200
    critical: float | None = None  # relative drop, like max_drop and above it (severity)

    def metric_for(self, task: str) -> str:
        return self.metric or "roc_auc"


@dataclass(frozen=True)
class DataQualityRule:
    """Per feature and window, against the reference (``services.monitoring.data_quality``): the null
    share over the reference's by more than ``max_null_increase`` (absolute), the share of rows whose
    category the reference never saw over ``max_unseen_share``, the share of finite values outside the
    reference's [min, max] over ``max_out_of_range_share``. A limit of None is not checked; windows with
    fewer than ``min_rows`` rows are not judged."""

    enabled: bool = True
    consecutive: int = 1
    max_null_increase: float | None = 0.05
    max_unseen_share: float | None = 0.05
    max_out_of_range_share: float | None = 0.05
    min_rows: int = 100


@dataclass(frozen=True)
class AlertRules:
    drift: DriftRule = field(default_factory=DriftRule)
    latency_p95: SloRule = field(default_factory=SloRule)
    error_rate: SloRule = field(default_factory=SloRule)
    fairness: FairnessRule = field(default_factory=FairnessRule)
    performance: PerformanceRule = field(default_factory=PerformanceRule)
    multivariate_drift: MultivariateDriftRule = field(default_factory=MultivariateDriftRule)
    estimated_performance_drop: EstimatedPerformanceRule = field(default_factory=EstimatedPerformanceRule)
    data_quality: DataQualityRule = field(default_factory=DataQualityRule)  # issue 14 (data_quality.py)
    # Segments (issue 14): rule name -> the segments it also judges (services.monitoring.segment_rules)
    segments: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def segments_for(self, rule: str) -> tuple[str, ...]:
        """The segments ``rule`` (a field name: drift, fairness, performance, ...) also judges."""
        return dict(self.segments).get(rule, ())


_RULE_NAMES = tuple(f.name for f in fields(AlertRules) if f.name != "segments")


@dataclass(frozen=True)
class MonitoringConfig:
    backfill_days: int = 35
    webhook_url: str | None = None
    webhook_timeout_s: float = 5.0
    alerts: AlertRules = field(default_factory=AlertRules)
    models: dict[str, AlertRules] = field(default_factory=dict)

    def rules_for(self, model: str) -> AlertRules:
        return self.models.get(model, self.alerts)

    def __hash__(self) -> int:
        return hash((self.backfill_days, self.webhook_url, self.webhook_timeout_s, self.alerts,
                     tuple(sorted(self.models.items()))))


def _number(value: Any, where: str, *, integer: bool = False, minimum: float = 0.0,
            optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{where} must be {kind}, not {value!r}.")
    if value < minimum:
        raise ConfigError(f"{where} must be at least {minimum:g}, not {value!r}.")
    return int(value) if integer else float(value)


def _rule(base: Any, raw: Any, where: str) -> Any:
    """``base`` with the fields ``raw`` (a mapping) sets, each checked."""
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping of settings.")
    known = {f.name for f in fields(base)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown keys: {', '.join(map(str, unknown))}.",
                          f"Known keys: {', '.join(sorted(known))}.")
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}"
        if key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"{at} must be true or false.")
            changes[key] = value
        elif key == "consecutive":
            changes[key] = _number(value, at, integer=True, minimum=1)
        elif key in ("threshold", "demographic_parity_difference", "equalized_odds_difference"):
            changes[key] = _number(value, at, optional=True)
        elif key in ("max_null_increase", "max_unseen_share", "max_out_of_range_share"):  # data quality: shares
            changes[key] = _number(value, at, optional=True)
            if changes[key] is not None and changes[key] > 1:
                raise ConfigError(f"{at} is a share of rows, from 0 to 1 (0.05 = 5 %), not {value!r}.")
        elif key in ("max_drop", "min_label_coverage"):
            changes[key] = _number(value, at)
        elif key in ("min_labels", "min_rows"):
            changes[key] = _number(value, at, integer=True)
        elif key == "metric":
            allowed = CLASSIFIER_METRICS if isinstance(base, EstimatedPerformanceRule) else tuple(PERFORMANCE_METRICS)
            if value is not None and value not in allowed:
                raise ConfigError(f"{at} is {value!r}; expected one of {', '.join(allowed)}.")
            changes[key] = value
        elif key == "method":
            methods = ("wasserstein", "ks", "psi", "jensenshannon", "chisquare", "z")
            if value is not None and value not in methods:
                raise ConfigError(f"{at} is {value!r}; expected one of {', '.join(methods)}.")
            changes[key] = value
        elif key == "critical":
            changes[key] = _number(value, at, optional=True)
        elif key in ("verdict", "material", "confidence", "replicates"):  # issue 15: drift verdict modes
            changes[key] = _drift_verdict_setting(key, value, at)
    rule = replace(base, **changes)
    _check_critical(rule, where)
    if isinstance(rule, DriftRule) and rule.verdict == "material" and rule.material is None:
        raise ConfigError(f"{where}.material is required when {where}.verdict is material: the smallest drift "
                          "(a distance, e.g. 0.15) that matters.")
    return rule


VERDICTS = ("fixed", "beyond_noise", "material")  # services.stats.drift_intervals.VERDICT_MODES
REPLICATES_RANGE = (50, 5000)  # fewer makes the 2.5 % percentile a guess; more costs the backfill for nothing
CONFIDENCE_RANGE = (0.5, 0.999)


def _drift_verdict_setting(key: str, value: Any, at: str) -> Any:
    if key == "verdict":
        if value not in VERDICTS:
            raise ConfigError(f"{at} is {value!r}; expected one of {', '.join(VERDICTS)}.")
        return value
    if key == "replicates":
        replicates = _number(value, at, integer=True, minimum=REPLICATES_RANGE[0])
        if replicates > REPLICATES_RANGE[1]:
            raise ConfigError(f"{at} must be at most {REPLICATES_RANGE[1]}, not {value!r}.")
        return replicates
    number = _number(value, at, optional=key == "material")
    if number is None:
        return None
    if not math.isfinite(number):
        raise ConfigError(f"{at} must be a finite number, not {value!r}.")
    if key == "confidence" and not CONFIDENCE_RANGE[0] <= number <= CONFIDENCE_RANGE[1]:
        raise ConfigError(f"{at} must be between {CONFIDENCE_RANGE[0]} and {CONFIDENCE_RANGE[1]} (0.95 = 95 %), "
                          f"not {value!r}.")
    if key == "material" and number <= 0:
        raise ConfigError(f"{at} is a drift distance and must be above 0, not {value!r}.")
    return number


def _check_critical(rule: Any, where: str) -> None:
    """A critical level is beyond the warning one: a multiple >= 1, or a drop above ``max_drop``."""
    critical = getattr(rule, "critical", None)
    if critical is None:
        return
    if hasattr(rule, "max_drop"):
        if critical <= rule.max_drop:
            raise ConfigError(f"{where}.critical ({critical:g}) is a relative drop and must exceed max_drop "
                              f"({rule.max_drop:g}).")
    elif critical < 1:
        raise ConfigError(f"{where}.critical ({critical:g}) is a multiple of the threshold and must be at least 1.")


def _rules(base: AlertRules, raw: Any, where: str) -> AlertRules:
    if raw is None:
        return base
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must map rule names ({', '.join(_RULE_NAMES)}) to their settings.")
    unknown = sorted(set(raw) - set(_RULE_NAMES))
    if unknown:
        raise ConfigError(f"{where} has unknown rules: {', '.join(map(str, unknown))}.",
                          f"Known rules: {', '.join(_RULE_NAMES)}.")
    return replace(base, **{name: _rule(getattr(base, name), segment_rules.without_segments(value), f"{where}.{name}")
                            for name, value in raw.items()},
                   segments=segment_rules.rule_segments(raw, base.segments, where))  # issue 14: segments


def _webhook_url(env: Mapping[str, str]) -> str | None:
    url = (env.get(WEBHOOK_ENV) or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{WEBHOOK_ENV} must be an http(s) URL.")  # never echo it: it may hold a token
    return url


def monitoring_config(settings: Settings) -> MonitoringConfig:
    """tower.yaml's ``monitoring:`` section, with the alert webhook from the environment."""
    return settings.parsed("monitoring", lambda raw: parse_monitoring_config(raw, settings.environ, settings.models))


def parse_monitoring_config(raw: Any, env: Mapping[str, str], models: Mapping[str, Any] | None = None
                            ) -> MonitoringConfig:
    """Build the monitoring settings from tower.yaml's ``monitoring:`` section and the environment."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("monitoring must be a mapping (backfill_days, webhook_timeout_s, alerts, models).")
    unknown = sorted(set(raw) - {"backfill_days", "webhook_timeout_s", "alerts", "models"})
    if unknown:
        raise ConfigError(f"monitoring has unknown keys: {', '.join(map(str, unknown))}.")
    alerts = _rules(AlertRules(), raw.get("alerts"), "monitoring.alerts")
    per_model_raw = raw.get("models") or {}
    if not isinstance(per_model_raw, Mapping):
        raise ConfigError("monitoring.models must map model names to their alert rules.")
    per_model: dict[str, AlertRules] = {}
    for name, value in per_model_raw.items():
        if models is not None and str(name) not in models:
            raise ConfigError(f"monitoring.models.{name}: there is no model '{name}' under models.")
        per_model[str(name)] = _rules(alerts, value, f"monitoring.models.{name}")
    for name, mapping in (models or {}).items():  # issue 14: a rule naming a segment the model lacks
        where = f"monitoring.models.{name}" if name in per_model else "monitoring.alerts"
        segment_rules.check_rule_segments(per_model.get(name, alerts).segments, name,
                                          tuple(s.name for s in getattr(mapping, "segments", ())), where)
    return MonitoringConfig(
        backfill_days=_number(raw.get("backfill_days", 35), "monitoring.backfill_days", integer=True, minimum=1),
        webhook_url=_webhook_url(env),
        webhook_timeout_s=_number(raw.get("webhook_timeout_s", 5.0), "monitoring.webhook_timeout_s", minimum=0.1),
        alerts=alerts,
        models=per_model,
    )
