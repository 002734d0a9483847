"""The evidence for a promotion: the candidate against the current holder of the target stage.

Sources: registry metrics (the version's run), p95 latency per version over the last 7 days from
the warehouse (SQL push-down, ``warehouse.latency_by_version``), drift and fairness from the
monitoring subsystem (``MonitoringEvidence``). Each gate of the model's policy comes out passed,
failed or no data, with the numbers. The whole evidence is snapshotted as canonical JSON and its
SHA-256 digest is recorded with the request and with every decision.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.errors import TowerError
from services.governance import segment_gates, skew_gate
from services.governance.canonical import canonical_json, sha256_hex
from services.governance.context import GovernanceContext
from services.governance.policy import Policy
from services.stores.warehouse import logs as warehouse

PASSED, FAILED, NO_DATA = "passed", "failed", "no_data"
LATENCY_WINDOW = timedelta(days=7)
_EPS = 1e-9  # 0.86 - 0.85 is 0.010000000000000009 in floating point


def no_data_passes(policy: Mapping[str, Any], gate: str) -> bool:
    """Whether the snapshotted policy lets ``gate`` pass without data."""
    rules = policy.get("no_data") or {}
    kind = segment_gates.kind_of(gate)  # issue 14: a segment's gate falls back to its kind's rule
    fallback = rules.get(kind, rules.get("default", "fail")) if kind else rules.get("default", "fail")
    return bool(rules.get(gate, fallback) == "pass")


@dataclass(frozen=True)
class GateResult:
    name: str  # "metric:roc_auc", "latency_p95_ms", "drift_share", "fairness_dpd"
    status: str  # passed / failed / no_data
    candidate: float | None
    holder: float | None
    limit: float | None
    detail: str


@dataclass(frozen=True)
class VersionEvidence:
    version: str
    metrics: dict[str, float | None]
    p95_ms: float | None
    requests: int
    drift_share: float | None


@dataclass(frozen=True)
class Evidence:
    model: str
    version: str
    stage: str
    candidate: VersionEvidence
    holder: VersionEvidence | None  # None: nobody holds the stage
    fairness_dpd: float | None
    window_start: str
    window_end: str
    collected_at: str
    policy: dict[str, Any]
    gates: tuple[GateResult, ...]
    notes: tuple[str, ...] = ()
    training_skew: skew_gate.SkewReading | None = None  # what the skew gate read, when the policy has one

    @property
    def failing(self) -> tuple[GateResult, ...]:
        """Gates that did not pass: failed, or without data where the policy's ``no_data`` says fail
        (the default). Approving past them needs an override; ``tower gate`` exits 1 on them."""
        return tuple(g for g in self.gates if g.status == FAILED or (g.status == NO_DATA and
                                                                     not no_data_passes(self.policy, g.name)))

    def as_dict(self) -> dict[str, Any]:
        def version(v: VersionEvidence | None) -> dict[str, Any] | None:
            return None if v is None else {"version": v.version, "metrics": v.metrics, "p95_ms": v.p95_ms,
                                           "requests": v.requests, "drift_share": v.drift_share}
        return {
            "model": self.model, "version": self.version, "stage": self.stage,
            "candidate": version(self.candidate), "holder": version(self.holder),
            "fairness_dpd": self.fairness_dpd,
            "window": {"start": self.window_start, "end": self.window_end},
            "collected_at": self.collected_at, "policy": self.policy,
            "gates": [{"name": g.name, "status": g.status, "candidate": g.candidate, "holder": g.holder,
                       "limit": g.limit, "detail": g.detail} for g in self.gates],
            "notes": list(self.notes),
            # Only with a skew gate, so evidence recorded without one keeps its digest.
            **({} if self.training_skew is None else {"training_skew": self.training_skew.as_dict()}),
        }

    def to_json(self) -> str:
        return canonical_json(self.as_dict())

    @property
    def digest(self) -> str:
        return sha256_hex(self.to_json())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        def version(v: Mapping[str, Any] | None) -> VersionEvidence | None:
            return None if v is None else VersionEvidence(
                version=v["version"], metrics=dict(v["metrics"]), p95_ms=v["p95_ms"],
                requests=int(v["requests"]), drift_share=v["drift_share"])
        candidate = version(data["candidate"])
        assert candidate is not None
        return cls(
            model=data["model"], version=data["version"], stage=data["stage"], candidate=candidate,
            holder=version(data["holder"]), fairness_dpd=data["fairness_dpd"],
            window_start=data["window"]["start"], window_end=data["window"]["end"],
            collected_at=data["collected_at"], policy=dict(data["policy"]),
            gates=tuple(GateResult(**g) for g in data["gates"]), notes=tuple(data.get("notes", ())),
            training_skew=None if data.get("training_skew") is None
            else skew_gate.SkewReading.from_dict(data["training_skew"]),
        )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: float | None) -> str:
    return "no data" if value is None else f"{value:.6g}"


def _latency(ctx: GovernanceContext, model: str, start: datetime, end: datetime,
             notes: list[str]) -> dict[str, tuple[float | None, int]]:
    """Version -> (p95 ms, requests) over [start, end); empty when there is nothing to read."""
    mapping = ctx.settings.model(model)
    if mapping is None:
        notes.append(f"'{model}' has no prediction-log mapping in tower.yaml: no latency data.")
        return {}
    if ctx.warehouse is None:
        notes.append("The warehouse is not configured or cannot be opened: no latency data.")
        return {}
    try:
        frame = warehouse.latency_by_version(ctx.warehouse, mapping, start, end)
    except TowerError as exc:
        notes.append(f"Latency could not be read: {exc.message}")
        return {}
    return {str(row.version): (_number(row.p95_ms), int(row.requests)) for row in frame.itertuples()}


def _monitoring(ctx: GovernanceContext, what: str, call: Any, notes: list[str]) -> float | None:
    if ctx.monitoring is None:
        return None
    try:
        return _number(call())
    except TowerError as exc:
        notes.append(f"{what} could not be read: {exc.message}")
        return None


def _version_evidence(ctx: GovernanceContext, model: str, version: str,
                      latency: dict[str, tuple[float | None, int]], notes: list[str]) -> VersionEvidence:
    metrics = ctx.registry.lineage(model, version).metrics
    p95, requests = latency.get(version, (None, 0))
    monitoring = ctx.monitoring
    drift = None if monitoring is None else _monitoring(
        ctx, f"Drift of version {version}", lambda: monitoring.latest_drift_share(model, version), notes)
    return VersionEvidence(version=version, metrics={k: _number(v) for k, v in metrics.items()},
                           p95_ms=p95, requests=requests, drift_share=drift)


def _limit_gate(name: str, value: float | None, limit: float, unit: str, missing: str) -> GateResult:
    if value is None:
        return GateResult(name, NO_DATA, None, None, limit, missing)
    ok = value <= limit + _EPS
    return GateResult(name, PASSED if ok else FAILED, value, None, limit,
                      f"{_fmt(value)}{unit} {'within' if ok else 'above'} the limit of {_fmt(limit)}{unit}.")


def evaluate_gates(policy: Policy, candidate: VersionEvidence, holder: VersionEvidence | None,
                   fairness_dpd: float | None,
                   segments: Mapping[str, tuple[float | None, float | None, float | None]] | None = None,
                   skew: skew_gate.SkewReading | None = None) -> tuple[GateResult, ...]:
    """Each gate of ``policy`` on the numbers: passed, failed or no data (pure). ``segments``: segment ->
    (candidate's drift share, holder's, fairness dpd) for the gates that name a segment; ``skew``: what
    the training-skew gate read."""
    gates: list[GateResult] = []
    for gate in policy.metrics:
        name = f"metric:{gate.name}"
        cand = candidate.metrics.get(gate.name)
        if cand is None:
            gates.append(GateResult(name, NO_DATA, None, None, gate.max_regression,
                                    f"Version {candidate.version} has no '{gate.name}' metric in the registry."))
            continue
        if holder is None:
            gates.append(GateResult(name, PASSED, cand, None, gate.max_regression,
                                    "Nobody holds the stage: there is nothing to regress from."))
            continue
        held = holder.metrics.get(gate.name)
        if held is None:
            gates.append(GateResult(name, NO_DATA, cand, None, gate.max_regression,
                                    f"The holder, version {holder.version}, has no '{gate.name}' metric."))
            continue
        regression = held - cand if gate.direction == "higher" else cand - held
        ok = regression <= gate.max_regression + _EPS
        better = "higher" if gate.direction == "higher" else "lower"
        gates.append(GateResult(
            name, PASSED if ok else FAILED, cand, held, gate.max_regression,
            f"{gate.name} {_fmt(cand)} vs {_fmt(held)} ({better} is better): "
            f"{'a regression' if regression > 0 else 'an improvement'} of {_fmt(abs(regression))}, "
            f"at most {_fmt(gate.max_regression)} allowed."))
    if policy.max_latency_p95_ms is not None:
        limit_gate = _limit_gate("latency_p95_ms", candidate.p95_ms, policy.max_latency_p95_ms, " ms",
                                 f"Version {candidate.version} served no traffic in the last 7 days.")
        gates.append(GateResult(limit_gate.name, limit_gate.status, limit_gate.candidate,
                                None if holder is None else holder.p95_ms, limit_gate.limit, limit_gate.detail))
    if policy.max_drift_share is not None:
        limit_gate = _limit_gate("drift_share", candidate.drift_share, policy.max_drift_share, "",
                                 f"No drift result for version {candidate.version}.")
        gates.append(GateResult(limit_gate.name, limit_gate.status, limit_gate.candidate,
                                None if holder is None else holder.drift_share, limit_gate.limit, limit_gate.detail))
    if policy.max_fairness_dpd is not None:
        gates.append(_limit_gate("fairness_dpd", fairness_dpd, policy.max_fairness_dpd, "",
                                 "No fairness result for the model."))
    if policy.training_skew is not None:
        reading = skew or skew_gate.SkewReading("", "", missing="The training data was not compared with live traffic.")
        status, share, detail = skew_gate.judge(policy.training_skew, reading)
        gates.append(GateResult(skew_gate.GATE, status, share, None, policy.training_skew.max_share, detail))
    for seg in policy.segment_gates:  # issue 14: gates naming a segment (services.governance.segment_gates)
        drift, held, fairness = (_number(v) for v in (segments or {}).get(seg.segment, (None, None, None)))
        if seg.max_drift_share is not None:
            found = _limit_gate(segment_gates.gate_name(seg.segment, "drift_share"), drift, seg.max_drift_share, "",
                                f"No drift result for version {candidate.version} in segment {seg.segment}.")
            gates.append(GateResult(found.name, found.status, found.candidate, held, found.limit, found.detail))
        if seg.max_fairness_dpd is not None:
            gates.append(_limit_gate(segment_gates.gate_name(seg.segment, "fairness_dpd"), fairness,
                                     seg.max_fairness_dpd, "", f"No fairness result for segment {seg.segment}."))
    return tuple(gates)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def collect_evidence(ctx: GovernanceContext, model: str, version: str, stage: str,
                     *, holder_version: str | None = None, holders_known: bool = False) -> Evidence:
    """Candidate ``version`` of ``model`` against the current holder of ``stage``.

    NotFound if the model or the version is not in the registry. ``holder_version`` (with
    ``holders_known=True``) saves a registry call when the caller just read the holders.
    """
    stage = ctx.stage_name(stage)
    version = str(version).strip()
    if not holders_known:
        holder_version = ctx.current_holders(model).get(stage)
    now = ctx.now()
    start = now - LATENCY_WINDOW
    notes: list[str] = []
    naive = now.astimezone(UTC).replace(tzinfo=None)  # the warehouse works in naive UTC
    latency = _latency(ctx, model, naive - LATENCY_WINDOW, naive, notes)
    candidate = _version_evidence(ctx, model, version, latency, notes)
    holder = None if holder_version is None else _version_evidence(ctx, model, holder_version, latency, notes)
    monitoring = ctx.monitoring
    fairness = None if monitoring is None else _monitoring(
        ctx, "Fairness", lambda: monitoring.latest_fairness_dpd(model), notes)
    if monitoring is None:
        notes.append("No monitoring source is connected: no drift or fairness data.")
    if ctx.registry.version_creator(model, version) is None:
        notes.append(f"The creator of version {version} is unknown (no run and no user tag): the four-eyes rule "
                     "cannot exclude them.")
    policy = ctx.policy(model)
    segments = segment_gates.segment_numbers(ctx.monitoring, model, version, holder_version, policy.segment_gates,
                                             notes)
    skew = None if policy.training_skew is None else _training_skew(ctx, model, version, policy.training_skew, naive)
    return Evidence(
        model=model, version=version, stage=stage, candidate=candidate, holder=holder, fairness_dpd=fairness,
        window_start=_iso(start), window_end=_iso(now), collected_at=_iso(now), policy=policy.as_dict(),
        gates=evaluate_gates(policy, candidate, holder, fairness, segments, skew), notes=tuple(notes),
        training_skew=skew,
    )


def _training_skew(ctx: GovernanceContext, model: str, version: str, gate: skew_gate.SkewGate,
                   now: datetime) -> skew_gate.SkewReading:
    """What the monitoring source reads for the skew gate; a source that cannot compare says why."""
    source = ctx.monitoring
    if not isinstance(source, skew_gate.SkewEvidence):
        return skew_gate.SkewReading("", "", missing="No monitoring source that can read training data is connected.")
    try:
        return source.training_skew(model, version, gate, now)
    except TowerError as exc:
        return skew_gate.SkewReading("", "", missing=f"The training data could not be compared: {exc.message}")
