"""Training–serving skew: a version's own training data against the traffic it would meet.

The promotion gate ``training_skew`` (services.governance.skew_gate) asks this module. The candidate's
training dataset is found as the drift reference is (``registry_reference.reference_for`` with the
candidate's version: its run's logged dataset, resolved and verified), profiled once per (model, version,
digest) like any reference, and compared with the last ``days`` of the log, every version together, with
the drift statistics' bootstrap intervals and noise levels (services.stats.drift_intervals). The verdict
is the gate's (beyond noise, or material), never the bare number.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from services.governance.skew_gate import FeatureSkew, SkewGate, SkewReading
from services.monitoring.config import DriftRule
from services.monitoring.reference import load_or_compute
from services.monitoring.registry_reference import reference_for
from services.monitoring.report import DriftSeeds, categorical_column_drift, fetch_aggregates, numerical_column_drift
from services.monitoring.results import DriftResult
from services.settings import Settings
from services.stores.registry import Registry
from services.stores.warehouse.sql import WHOLE


def _feature(result: DriftResult) -> FeatureSkew:
    return FeatureSkew(column=result.column, statistic=result.effect_statistic or result.method, value=result.effect,
                       lower=result.lower, upper=result.upper, noise=result.noise, skewed=result.drifted,
                       training_rows=result.reference_n, serving_rows=result.current_n)


def training_skew(settings: Settings, registry: Registry, tower: Engine, warehouse: Engine, model: str,
                  version: str, gate: SkewGate, now: datetime) -> SkewReading:
    """``version``'s training data against the ``gate.days`` of traffic before ``now`` (naive UTC).

    Nothing to compare (no mapping, no ``from_registry`` reference, a dataset that does not resolve, no
    traffic) is a reading with ``missing`` saying why; an unreachable store raises its TowerError.
    """
    start = now - timedelta(days=gate.days)
    window = f"{start:%Y-%m-%d %H:%M} .. {now:%Y-%m-%d %H:%M} UTC, all versions"
    mapping = settings.model(model)
    if mapping is None:
        return SkewReading("", window, missing=f"'{model}' has no prediction-log mapping in tower.yaml.")
    if mapping.reference.from_registry is None:
        return SkewReading("", window, missing=(
            f"models.{model}.reference has no from_registry: the skew gate compares the training dataset the "
            "candidate's run logged, so set reference: {from_registry: training, ...}."))
    resolved = reference_for(settings, registry, warehouse, mapping, version=version)
    if resolved.source is None:
        return SkewReading("", window,
                           missing=resolved.fallback or f"Version {version}'s training data did not resolve.")
    source = resolved.source
    dataset = (f"{source.dataset} (digest {source.digest}) of version {source.version}, {source.table}"
               + (f" snapshot {source.snapshot}" if source.snapshot else "") + f": {source.verification.text}")
    training = resolved.mapping
    profile = load_or_compute(tower, warehouse, training)
    aggregates = fetch_aggregates(warehouse, training, profile, start, now)[WHOLE]
    if aggregates.rows == 0:
        return SkewReading(dataset, window, missing=f"Nothing was served in {window}: no traffic to compare with.")
    rule = DriftRule(verdict=gate.verdict, material=gate.material)
    key = ("training_skew", str(version), start.isoformat(), now.isoformat())
    results = [numerical_column_drift(profile.numerical[c], aggregates.numerical.get(c),
                                      aggregates.numerical_values.get(c), rule,
                                      DriftSeeds.of(profile.reference_id, c, *key)) for c in training.numerical]
    results += [categorical_column_drift(c, profile.categorical.get(c, {}), aggregates.categorical.get(c, {}), rule,
                                         DriftSeeds.of(profile.reference_id, c, *key)) for c in training.categorical]
    return SkewReading(dataset, window, features=tuple(_feature(r) for r in results))
