"""The ``promote`` command group of ``python -m services.cli`` (CI and scripts).

    python -m services.cli promote request --model NAME --version V --to STAGE --reason TEXT
    python -m services.cli promote list [--status open] [--model NAME]
    python -m services.cli promote repair

Writes run under the service account named by ``TOWER_SERVICE_ACCOUNT`` (declared in tower.yaml
under ``auth.service_accounts``) and go through the same authorization as the browser. Errors
(unset or unknown account, forbidden, conflict) exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from services.errors import ConfigError
from services.identity import Actor

ACCOUNT_ENV = "TOWER_SERVICE_ACCOUNT"


def _actor(settings: Any) -> Actor:
    from services.identity import service_actor

    account = os.environ.get(ACCOUNT_ENV, "").strip()
    if not account:
        raise ConfigError(f"{ACCOUNT_ENV} is not set: the CLI acts as a service account.",
                          f"Set {ACCOUNT_ENV} to an account declared under auth.service_accounts in tower.yaml.")
    return service_actor(account, settings.auth)


def _settings() -> Any:
    from services.settings import load_settings

    return load_settings()


def _context(settings: Any) -> Any:
    from services.governance.context import GovernanceContext

    return GovernanceContext.from_settings(settings)


def _request(args: argparse.Namespace) -> int:
    from services.governance.promotion import request_promotion

    settings = _settings()
    actor = _actor(settings)  # before touching any store
    ctx = _context(settings)
    outcome = request_promotion(ctx, actor, args.model, args.version, args.to, args.reason)
    print(outcome.request.id)
    for gate in _gates(ctx, outcome.request.evidence_digest):
        print(f"  {gate.status:8} {gate.name}: {gate.detail}", file=sys.stderr)
    if not outcome.created:
        print("(this request was already open; nothing new was recorded)", file=sys.stderr)
    if outcome.projection_error:
        print(f"warning: {outcome.projection_error}", file=sys.stderr)
    return 0


def _gates(ctx: Any, digest: str | None) -> list[Any]:
    from services.governance.promotion import evidence_snapshot

    evidence = None if digest is None else evidence_snapshot(ctx, digest)
    return [] if evidence is None else list(evidence.gates)


def _list(args: argparse.Namespace) -> int:
    from services.governance.promotion import list_requests

    ctx = _context(_settings())
    for r in list_requests(ctx, status=args.status, model=args.model):
        approvals = f"{len(r.approvals)}/{r.approvals_required}"
        print("\t".join([r.id, r.status, r.model, r.version, r.stage, approvals, r.requester_name,
                         r.created_at.isoformat()]))
    return 0


def _repair(args: argparse.Namespace) -> int:
    from services.governance.projection import repair_projections

    settings = _settings()
    actor = _actor(settings)
    report = repair_projections(_context(settings), actor)
    print(f"Re-applied {len(report.applied)} projection(s); {len(report.failed)} failed.")
    for decision_id, why in report.failed:
        print(f"  {decision_id}: {why}", file=sys.stderr)
    return 0 if not report.failed else 1


def register(subparsers: Any) -> None:
    """Add ``promote request|list|repair`` to the CLI's subcommands."""
    promote = subparsers.add_parser("promote", help="promotion requests (as TOWER_SERVICE_ACCOUNT)")
    commands = promote.add_subparsers(dest="promote_command", required=True)
    request = commands.add_parser("request", help="request the promotion of a model version to a stage")
    request.add_argument("--model", required=True)
    request.add_argument("--version", required=True)
    request.add_argument("--to", required=True, help="target stage, e.g. Production or Staging")
    request.add_argument("--reason", required=True, help="why (recorded in the ledger)")
    request.set_defaults(handler=_request)
    listing = commands.add_parser("list", help="list promotion requests")
    listing.add_argument("--status", choices=("open", "approved", "rejected", "cancelled"), default=None)
    listing.add_argument("--model", default=None)
    listing.set_defaults(handler=_list)
    repair = commands.add_parser("repair", help="re-apply registry projections a crash interrupted (admin)")
    repair.set_defaults(handler=_repair)
