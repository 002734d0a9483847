"""Promotion policy as code: the ``policies:`` section of tower.yaml, parsed into typed dataclasses.

```yaml
policies:
  default:                          # every model without its own entry; each model's keys override it
    approvals_required: 1           # N distinct approvers (issuer + subject) ...
    approvers: {roles: [reviewer], subjects: []}   # ... among these (M): roles and/or identities
    override_roles: [admin]         # who may approve although a gate failed (with a written reason)
    requesters: ["tower-service|ci-bot"]   # identities that may request besides the model's owner
    max_drift_share: 0.3            # share of drifted features of the candidate
    max_fairness_dpd: 0.1           # demographic parity difference of the model
    training_skew: {max_share: 0.2} # the candidate's training data vs live traffic, judged beyond noise
                                    # (services.governance.skew_gate); absent = no such gate
    require_known_creator: false    # true: no approval while the version's creator is unknown
    evidence_max_age: 7             # days a request's evidence stays fresh for a decision; null = no limit
    auto_request: null              # a stage (e.g. Staging): on MLflow's model_version.created webhook, the
                                    # receiver requests that stage as its service account once every gate
                                    # passes (services/webhooks); null = never requested automatically
    # max_latency_p95_ms: absent = the model's SLO (models.<name>.slo.latency_p95_ms); null = no gate
  loan-approval:
    segments:                       # per model: limits on a declared segment (services.governance.segment_gates)
      business: {max_drift_share: 0.3, max_fairness_dpd: 0.1}
  credit-risk:
    approvals_required: 2
    metrics:
      - {name: roc_auc, direction: higher, max_regression: 0.01}   # may drop at most 0.01
```

Identities are written ``"<issuer>|<subject>"`` (split at the first ``|``; subjects such as
Auth0's ``auth0|123`` keep theirs) or as ``{issuer: ..., subject: ...}``. A bad value raises
ConfigError naming the field, e.g. ``policies.credit-risk.metrics[0].direction``. Approvers may
not be service accounts (identities of ``auth.service_issuer``): service accounts request; people
decide.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from services.auth.identity import ROLES, auth_config
from services.errors import ConfigError
from services.governance import segment_gates, skew_gate
from services.governance.segment_gates import SegmentGates
from services.governance.skew_gate import SkewGate
from services.mapping import ModelMapping
from services.settings import DEFAULT_STAGE_ALIASES, Settings, refuse_unknown_keys

DIRECTIONS = ("higher", "lower")
_KEYS = {"approvals_required", "approvers", "override_roles", "requesters", "metrics",
         "max_drift_share", "max_fairness_dpd", "max_latency_p95_ms", "require_known_creator",
         "evidence_max_age", "no_data", "auto_request", segment_gates.KEY, skew_gate.KEY}
# Gates a policy names in `no_data` (besides "default" and "metric:<name>").
NO_DATA_GATES = ("latency_p95_ms", "drift_share", "fairness_dpd", skew_gate.GATE)
_UNSET = object()
DEFAULT_EVIDENCE_MAX_AGE = timedelta(days=7)
DEFAULT_SERVICE_ISSUER = "tower-service"

Identity = tuple[str, str]  # (issuer, subject)


@dataclass(frozen=True)
class MetricGate:
    """The candidate's registry metric may be worse than the holder's by at most ``max_regression``."""

    name: str
    direction: str  # "higher" (is better) or "lower" (is better)
    max_regression: float


@dataclass(frozen=True)
class Approvers:
    """Who may approve (M): anyone holding one of ``roles``, or one of the listed identities."""

    roles: frozenset[str] = frozenset({"reviewer"})
    subjects: frozenset[Identity] = frozenset()


@dataclass(frozen=True)
class Policy:
    model: str  # the model it applies to ("default" for the fallback itself)
    approvals_required: int = 1
    approvers: Approvers = field(default_factory=Approvers)
    override_roles: frozenset[str] = frozenset({"admin"})
    requesters: frozenset[Identity] = frozenset()
    metrics: tuple[MetricGate, ...] = ()
    max_drift_share: float | None = None
    max_fairness_dpd: float | None = None
    max_latency_p95_ms: float | None = None
    require_known_creator: bool = False  # refuse approve/override while the version's creator is unknown
    evidence_max_age: timedelta | None = DEFAULT_EVIDENCE_MAX_AGE  # None: evidence never goes stale
    # Whether a gate without data passes: (gate or "default", "fail"|"pass") pairs; failing by default.
    no_data: tuple[tuple[str, str], ...] = (("default", "fail"),)
    # The stage a new version is requested for by the webhook receiver when every gate passes (None: never).
    auto_request: str | None = None
    segment_gates: tuple[SegmentGates, ...] = ()  # issue 14: drift/fairness limits on named segments
    training_skew: SkewGate | None = None  # the candidate's training data against live traffic

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (recorded in the evidence snapshot)."""
        return {
            "model": self.model,
            "approvals_required": self.approvals_required,
            "approvers": {"roles": sorted(self.approvers.roles),
                          "subjects": sorted(f"{i}|{s}" for i, s in self.approvers.subjects)},
            "override_roles": sorted(self.override_roles),
            "requesters": sorted(f"{i}|{s}" for i, s in self.requesters),
            "metrics": [{"name": g.name, "direction": g.direction, "max_regression": g.max_regression}
                        for g in self.metrics],
            "max_drift_share": self.max_drift_share,
            "max_fairness_dpd": self.max_fairness_dpd,
            "max_latency_p95_ms": self.max_latency_p95_ms,
            "require_known_creator": self.require_known_creator,
            "evidence_max_age": None if self.evidence_max_age is None
            else self.evidence_max_age / timedelta(days=1),  # days, as written in tower.yaml
            # Only when it differs from the default, so evidence recorded before the key keeps its digest.
            **({} if self.no_data == (("default", "fail"),) else {"no_data": dict(self.no_data)}),
            # auto_request is left out: it decides who files a request, not whether it passes or who approves.
            # Segment gates only when set, so a policy without them keeps its evidence digest.
            **({} if not self.segment_gates else
               {"segments": {g.segment: g.as_dict() for g in self.segment_gates}}),
            **({} if self.training_skew is None else {"training_skew": self.training_skew.as_dict()}),
        }


@dataclass(frozen=True)
class Policies:
    """Every model's policy; ``for_model`` falls back to ``default``."""

    default: dict[str, Any] = field(default_factory=dict)  # the raw, validated default section
    per_model: dict[str, dict[str, Any]] = field(default_factory=dict)
    slo_latency: dict[str, float] = field(default_factory=dict)  # model -> SLO p95 from the mapping

    def for_model(self, model: str) -> Policy:
        merged = {**self.default, **self.per_model.get(model, {})}
        return _build(model, merged, self.slo_latency.get(model))

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.per_model)), tuple(sorted(self.slo_latency.items()))))


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
def parse_identity(value: Any, where: str) -> Identity:
    if isinstance(value, Mapping):
        issuer, subject = value.get("issuer"), value.get("subject")
    elif isinstance(value, str) and "|" in value:
        issuer, _, subject = value.partition("|")
    else:
        raise ConfigError(f"{where}: {value!r} is not an identity; write \"<issuer>|<subject>\" "
                          "or {issuer: ..., subject: ...}.")
    if not isinstance(issuer, str) or not isinstance(subject, str) or not issuer or not subject:
        raise ConfigError(f"{where}: {value!r} needs a non-empty issuer and subject.")
    return issuer, subject


def _roles(value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of roles ({', '.join(ROLES)}).")
    for role in value:
        if role not in ROLES:
            raise ConfigError(f"{where}: {role!r} is not a role; roles are {', '.join(ROLES)}.")
    return frozenset(value)


def _identities(value: Any, where: str) -> frozenset[Identity]:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list of identities (\"<issuer>|<subject>\").")
    return frozenset(parse_identity(v, f"{where}[{i}]") for i, v in enumerate(value))


def _limit(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ConfigError(f"{where} must be a non-negative number (or null for no limit), got {value!r}.")
    return float(value)


def _metric(value: Any, where: str) -> MetricGate:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping {{name, direction, max_regression}}.")
    unknown = set(value) - {"name", "direction", "max_regression"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}.")
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}.name must name a registry metric (e.g. roc_auc).")
    direction = value.get("direction")
    if direction not in DIRECTIONS:
        raise ConfigError(f"{where}.direction must be 'higher' or 'lower' (which is better), got {direction!r}.")
    regression = _limit(value.get("max_regression", 0.0), f"{where}.max_regression")
    return MetricGate(name=name, direction=direction, max_regression=regression or 0.0)


def _validate_section(model: str, raw: Any, service_issuer: str = DEFAULT_SERVICE_ISSUER,
                      stages: Sequence[str] = tuple(DEFAULT_STAGE_ALIASES)) -> dict[str, Any]:
    """Check one section's keys and values; the result holds parsed values under the same keys."""
    where = f"policies.{model}"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping.")
    refuse_unknown_keys(where, raw, _KEYS)
    parsed: dict[str, Any] = {}
    if "approvals_required" in raw:
        n = raw["approvals_required"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"{where}.approvals_required must be a whole number >= 1, got {n!r}.")
        parsed["approvals_required"] = n
    if "approvers" in raw:
        spec = raw["approvers"]
        if not isinstance(spec, Mapping) or set(spec) - {"roles", "subjects"}:
            raise ConfigError(f"{where}.approvers must be a mapping with 'roles' and/or 'subjects'.")
        parsed["approvers"] = Approvers(
            roles=_roles(spec.get("roles") or [], f"{where}.approvers.roles"),
            subjects=_identities(spec.get("subjects") or [], f"{where}.approvers.subjects"),
        )
        if not parsed["approvers"].roles and not parsed["approvers"].subjects:
            raise ConfigError(f"{where}.approvers names nobody: list roles and/or subjects.")
        bots = sorted(f"{i}|{s}" for i, s in parsed["approvers"].subjects if i == service_issuer)
        if bots:
            raise ConfigError(f"{where}.approvers.subjects names service account(s) {', '.join(bots)}: "
                              "service accounts request; people decide.",
                              "List the people (or roles) who review this model instead.")
    if "override_roles" in raw:
        parsed["override_roles"] = _roles(raw["override_roles"] or [], f"{where}.override_roles")
    if "requesters" in raw:
        parsed["requesters"] = _identities(raw["requesters"] or [], f"{where}.requesters")
    if "metrics" in raw:
        metrics = raw["metrics"] or []
        if not isinstance(metrics, list):
            raise ConfigError(f"{where}.metrics must be a list of metric gates.")
        gates = tuple(_metric(m, f"{where}.metrics[{i}]") for i, m in enumerate(metrics))
        names = [g.name for g in gates]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.metrics names a metric twice.")
        parsed["metrics"] = gates
    for key in ("max_drift_share", "max_fairness_dpd", "max_latency_p95_ms"):
        if key in raw:
            parsed[key] = _limit(raw[key], f"{where}.{key}")
    for key in ("max_drift_share", "max_fairness_dpd"):
        if parsed.get(key) is not None and parsed[key] > 1:
            raise ConfigError(f"{where}.{key} is a share between 0 and 1, got {parsed[key]!r}.")
    if "require_known_creator" in raw:
        if not isinstance(raw["require_known_creator"], bool):
            raise ConfigError(f"{where}.require_known_creator must be true or false, "
                              f"got {raw['require_known_creator']!r}.")
        parsed["require_known_creator"] = raw["require_known_creator"]
    if "evidence_max_age" in raw:
        days = _limit(raw["evidence_max_age"], f"{where}.evidence_max_age")
        if days is not None and days == 0:
            raise ConfigError(f"{where}.evidence_max_age is a number of days > 0 (or null for no limit), got 0.")
        try:
            parsed["evidence_max_age"] = None if days is None else timedelta(days=days)
        except OverflowError:
            raise ConfigError(f"{where}.evidence_max_age is too large: {days!r} days.") from None
    if "no_data" in raw:
        parsed["no_data"] = _no_data(raw["no_data"], f"{where}.no_data")
    if "auto_request" in raw:
        parsed["auto_request"] = _auto_request(raw["auto_request"], f"{where}.auto_request", stages)
    if segment_gates.KEY in raw:  # issue 14
        if model == "default":
            raise ConfigError("policies.default.segments: segments belong to one model; name them in the "
                              "model's own policy section.")
        parsed["segment_gates"] = segment_gates.parse_segment_gates(raw[segment_gates.KEY], f"{where}.segments",
                                                                    _limit)
    if skew_gate.KEY in raw:
        parsed["training_skew"] = skew_gate.parse_skew_gate(raw[skew_gate.KEY], f"{where}.{skew_gate.KEY}", _limit)
    return parsed


def _auto_request(value: Any, where: str, stages: Sequence[str]) -> str | None:
    """A configured stage, spelt as in ``stages:`` whatever its case; null (never) is allowed too."""
    if value is None:
        return None
    if isinstance(value, str):
        for stage in stages:
            if value.strip().lower() == stage.lower():
                return stage
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:60] + "…"
    raise ConfigError(f"{where} must name a stage ({', '.join(stages)}) or be null, got {shown}.")


def _no_data(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """`no_data: fail|pass` for every gate, or a mapping {gate or default: fail|pass}."""
    if value in ("fail", "pass"):
        return (("default", value),)
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where} must be 'fail', 'pass' or a mapping of gates to fail/pass, got {value!r}.")
    rules = {"default": "fail"}
    for gate, verdict in value.items():
        if gate != "default" and gate not in NO_DATA_GATES and not (isinstance(gate, str) and (
                (gate.startswith("metric:") and gate[7:]) or segment_gates.kind_of(gate))):
            raise ConfigError(f"{where} names an unknown gate {gate!r}.",
                              f"Gates: default, {', '.join(NO_DATA_GATES)}, metric:<name>, "
                              "segment:<segment>/drift_share, segment:<segment>/fairness_dpd.")
        if verdict not in ("fail", "pass"):
            raise ConfigError(f"{where}.{gate} must be fail or pass, got {verdict!r}.")
        rules[str(gate)] = str(verdict)
    return tuple(sorted(rules.items()))


def _build(model: str, merged: Mapping[str, Any], slo_p95: float | None) -> Policy:
    approvers = merged.get("approvers", Approvers())
    n = merged.get("approvals_required", 1)
    if not approvers.roles and n > len(approvers.subjects):
        raise ConfigError(f"policies.{model}: approvals_required is {n} but only "
                          f"{len(approvers.subjects)} approvers are listed.")
    latency = merged.get("max_latency_p95_ms", _UNSET)
    return Policy(
        model=model,
        approvals_required=n,
        approvers=approvers,
        override_roles=merged.get("override_roles", frozenset({"admin"})),
        requesters=merged.get("requesters", frozenset()),
        metrics=merged.get("metrics", ()),
        max_drift_share=merged.get("max_drift_share"),
        max_fairness_dpd=merged.get("max_fairness_dpd"),
        max_latency_p95_ms=slo_p95 if latency is _UNSET else latency,
        require_known_creator=merged.get("require_known_creator", False),
        evidence_max_age=merged.get("evidence_max_age", DEFAULT_EVIDENCE_MAX_AGE),
        no_data=merged.get("no_data", (("default", "fail"),)),
        auto_request=merged.get("auto_request"),
        segment_gates=merged.get("segment_gates", ()),
        training_skew=merged.get("training_skew"),
    )


def policies(settings: Settings) -> Policies:
    """tower.yaml's ``policies:`` section: the promotion policy of each model."""
    issuer = auth_config(settings).service_issuer
    return settings.parsed("policies", lambda raw: parse_policies(raw, settings.models, service_issuer=issuer,
                                                                  stages=tuple(settings.stage_aliases)))


def parse_policies(raw: Any, models: Mapping[str, ModelMapping] | None = None, *,
                   service_issuer: str = DEFAULT_SERVICE_ISSUER,
                   stages: Sequence[str] = tuple(DEFAULT_STAGE_ALIASES)) -> Policies:
    """The ``policies:`` section; ``models`` (the parsed mapping) gives each model's SLO latency.

    ``service_issuer`` (``auth.service_issuer``) is the issuer of service accounts, which may not approve;
    ``stages`` (the configured stage names) are what ``auto_request`` may name.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("policies must map model names (and 'default') to their promotion policy.")
    sections = {str(name): _validate_section(str(name), section, service_issuer, stages)
                for name, section in raw.items()}
    default = sections.pop("default", {})
    slo = {name: m.slo.latency_p95_ms for name, m in (models or {}).items() if m.slo.latency_p95_ms is not None}
    policies = Policies(default=default, per_model=sections, slo_latency=slo)
    for name in ["default", *sections]:  # refuse impossible N-of-M at load time, not at the first request
        policies.for_model(name)
    for name, section in sections.items():  # issue 14: a gate on a segment the model does not declare
        if models is not None or "segment_gates" in section:
            mapping = (models or {}).get(name)
            segment_gates.check_declared(section.get("segment_gates", ()), name,
                                         None if mapping is None else tuple(s.name for s in mapping.segments))
    return policies


# ----------------------------------------------------------------------------------------------
# Can a policy be met?
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Person:
    """Someone the identity provider is known to hold, with their tower roles (the demo's people)."""

    subject: str
    roles: frozenset[str]
    issuer: str = ""


_IMPLIED = {"admin": frozenset({"reviewer", "model_owner"})}  # as authorization implies them


def _effective(roles: frozenset[str]) -> frozenset[str]:
    return roles.union(*(_IMPLIED.get(r, frozenset()) for r in roles))


def _may_approve(policy: Policy, person: Person) -> bool:
    roles = _effective(person.roles)
    listed = bool(roles & policy.approvers.roles) or (person.issuer, person.subject) in policy.approvers.subjects
    return bool(roles & {"reviewer", "admin"}) and listed


def check_satisfiable(policies: Policies, models: Sequence[str], people: Sequence[Person]) -> None:
    """Refuse a policy the known ``people`` can never meet: more approvals than people who may give
    them, or overrides only by a role that none of those approvers holds. An override is given once
    and the approvals after it are ordinary, so one approver holding an override role is enough."""
    for model in models:
        policy = policies.for_model(model)
        approvers = sorted(p.subject for p in people if _may_approve(policy, p))
        if len(approvers) < policy.approvals_required:
            raise ConfigError(
                f"policies.{model}: approvals_required is {policy.approvals_required} but only "
                f"{len(approvers)} people may approve ({', '.join(approvers) or 'nobody'}), so no request "
                "can ever be promoted.",
                f"Lower policies.{model}.approvals_required, or give more people an approver role.")
        if policy.override_roles:
            overriders = [p.subject for p in people
                          if _may_approve(policy, p) and _effective(p.roles) & policy.override_roles]
            if not overriders:
                raise ConfigError(
                    f"policies.{model}: only the roles {', '.join(sorted(policy.override_roles))} may override a "
                    "failed gate, and none of the people who may approve holds one, so a candidate with a "
                    "failed gate can never be promoted.",
                    f"Set policies.{model}.override_roles to a role an approver holds (for example admin), or "
                    "[] to forbid overrides.")
