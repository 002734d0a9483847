"""Tables shared by the promotion, review and audit pages (registry and ledger text stays in cells)."""

from __future__ import annotations

import pandas as pd

from services.governance.evidence import Evidence
from services.governance.ledger_rows import Decision
from services.governance.review_state import PromotionRequest
from ui.tables import format_time

GATE_ICONS = {"passed": "✅ passed", "failed": "❌ failed", "no_data": "⚪ no data"}


def requests_table(requests: list[PromotionRequest]) -> pd.DataFrame:
    """One row per request, with who decided it and why once it is decided."""
    return pd.DataFrame([{
        "Request": r.id[:12], "Model": r.model, "Version": r.version, "To stage": r.stage,
        "Replaces": r.previous_version or "—", "Kind": r.kind, "Status": r.status,
        "Approvals": f"{len(r.approvals)}/{r.approvals_required}",
        "Requested by": r.requester_name, "Requested at": format_time(r.created_at), "Reason": r.reason,
        "Decided by": r.resolution.actor_name if r.resolution else "—",
        "Decision comment": (r.resolution.comment or "—") if r.resolution else "—",
    } for r in requests])


def gates_table(evidence: Evidence) -> pd.DataFrame:
    return pd.DataFrame([{
        "gate": g.name, "result": GATE_ICONS.get(g.status, g.status), "candidate": g.candidate,
        "current holder": g.holder, "limit": g.limit, "detail": g.detail,
    } for g in evidence.gates])


def metrics_table(evidence: Evidence) -> pd.DataFrame:
    holder = evidence.holder.metrics if evidence.holder else {}
    names = sorted(set(evidence.candidate.metrics) | set(holder))
    return pd.DataFrame([{"metric": n, f"candidate v{evidence.version}": evidence.candidate.metrics.get(n),
                          f"holder v{evidence.holder.version if evidence.holder else '—'}": holder.get(n)}
                         for n in names])


def decisions_table(decisions: list[Decision]) -> pd.DataFrame:
    return pd.DataFrame([{
        "seq": d.seq, "time": format_time(d.recorded_at), "action": d.action, "model": d.model, "version": d.version,
        "from": d.from_stage or "—", "to": d.to_stage, "actor": d.actor_name, "subject": d.actor_subject,
        "roles": ", ".join(d.actor_roles), "comment": d.comment, "override": d.override_reason or "",
        "evidence": (d.evidence_digest or "")[:12], "decision id": d.decision_id[:16],
    } for d in decisions])
