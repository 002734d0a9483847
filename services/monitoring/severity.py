"""How bad an alert episode is: ``warning`` or ``critical``, from the rule's ``critical`` level (pure).

Two kinds of level (tower.yaml ``monitoring.alerts.<rule>.critical``, see ``services.monitoring.config``):

- a **multiple of the threshold** for the rules whose window verdict is "value past a threshold"
  (drift, multivariate_drift, latency_p95, error_rate, fairness): critical when the value reaches
  ``critical`` × threshold. Drift goes through ``stats.drift.drift_ratio``, the one "× threshold" scale
  the drift page shows, so for a p-value test (KS, chi-square) the smaller p counts as the worse.
- a **relative drop** for the rules judged against the reference's performance (performance,
  estimated_performance_drop), in the units of their ``max_drop``: the stored threshold is the
  reference less ``max_drop`` (or plus, for an error metric), so the reference is recovered from it.

An episode is critical once any of its windows was (it never steps back down while it lasts: a
severity that flaps with each day would page people for noise); the episode row keeps it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from services.monitoring.config import PERFORMANCE_METRICS, AlertRules
from services.monitoring.store import CRITICAL, WARNING
from services.stats.drift import drift_ratio

# value, threshold, method of one window -> critical?
CriticalTest = Callable[[float | None, float | None, str], bool]


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _multiple(level: float, drift: bool) -> CriticalTest:
    def test(value: float | None, threshold: float | None, method: str) -> bool:
        if not _finite(value, threshold):
            return False
        assert value is not None and threshold is not None
        if drift and method:
            ratio = drift_ratio(method, value, threshold)
            return ratio is not None and ratio >= level
        return threshold > 0 and abs(value) >= level * threshold

    return test


def _drop(level: float, max_drop: float, higher_is_better: bool) -> CriticalTest:
    def test(value: float | None, threshold: float | None, method: str) -> bool:
        if not _finite(value, threshold):
            return False
        assert value is not None and threshold is not None
        reference = threshold / (1 - max_drop) if higher_is_better else threshold / (1 + max_drop)
        if reference == 0:
            return False
        drop = (reference - value) / abs(reference) if higher_is_better else (value - reference) / abs(reference)
        return drop >= level - 1e-12  # a drop of exactly the level counts (float noise aside)

    return test


def critical_test(rule: str, metric: str, rules: AlertRules) -> CriticalTest | None:
    """The window test of ``rule`` (an alerts.py rule name) on ``metric``; None: the rule is never critical."""
    if rule == "drift":
        return None if rules.drift.critical is None else _multiple(rules.drift.critical, drift=True)
    if rule in ("latency_p95", "error_rate"):
        level = getattr(rules, rule).critical
        return None if level is None else _multiple(level, drift=False)
    if rule in ("fairness_dpd", "fairness_eod"):
        return None if rules.fairness.critical is None else _multiple(rules.fairness.critical, drift=False)
    if rule == "multivariate_drift":
        level = rules.multivariate_drift.critical
        return None if level is None else _multiple(level, drift=False)
    if rule == "performance":
        perf = rules.performance
        if perf.critical is None:
            return None
        return _drop(perf.critical, perf.max_drop, PERFORMANCE_METRICS.get(metric, True))
    if rule == "estimated_performance_drop":
        est = rules.estimated_performance_drop
        return None if est.critical is None else _drop(est.critical, est.max_drop, True)
    return None


def episode_severity(test: CriticalTest | None,
                     windows: list[tuple[float | None, float | None, str]]) -> str:
    """``critical`` if any of the episode's windows (value, threshold, method) is, else ``warning``."""
    if test is None:
        return WARNING
    return CRITICAL if any(test(v, t, m) for v, t, m in windows) else WARNING
