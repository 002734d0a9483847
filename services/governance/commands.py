"""The ``promote`` command group of ``python -m services.cli`` (CI and scripts).

    tower promote request --model NAME --version V --to STAGE --reason TEXT [--on-behalf-of NAME]
    tower promote list [--status open] [--model NAME]
    tower promote repair
    tower token new           # a new random service token and its hash
    tower token hash < FILE   # the hash of a token read from stdin

Writes run under the service account named by ``TOWER_SERVICE_ACCOUNT`` (declared in tower.yaml
under ``auth.service_accounts``), which proves itself with ``TOWER_SERVICE_TOKEN`` (checked
against the account's salted hash in tower.yaml or the secrets file), and go through the same
authorization as the browser. Errors (unset or unknown account, missing or wrong token,
forbidden, conflict) exit with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from services.auth.identity import Actor
from services.errors import ConfigError
from services.governance.context import GovernanceContext
from services.settings import Settings

ACCOUNT_ENV = "TOWER_SERVICE_ACCOUNT"
TOKEN_ENV = "TOWER_SERVICE_TOKEN"


def cli_actor(settings: Settings) -> Actor:
    """The service account the environment names, proven by its token (TOWER_SERVICE_ACCOUNT/TOKEN)."""
    from services.auth.identity import auth_config, service_actor
    from services.secrets_file import service_account_hashes

    account = os.environ.get(ACCOUNT_ENV, "").strip()
    if not account:
        raise ConfigError(f"{ACCOUNT_ENV} is not set: the CLI acts as a service account.",
                          f"Set {ACCOUNT_ENV} to an account declared under auth.service_accounts in tower.yaml "
                          f"and {TOKEN_ENV} to its token.")
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    return service_actor(account, auth_config(settings), token, demo=settings.demo,
                         secret_hashes=service_account_hashes())


def context(settings: Settings) -> GovernanceContext:
    from services.wiring import Backends

    return Backends.from_settings(settings).governance()  # the same context as the browser's


def _request(args: argparse.Namespace, settings: Settings) -> int:
    from services.governance.promotion import request_promotion

    actor = cli_actor(settings)  # before touching any store
    ctx = context(settings)
    outcome = request_promotion(ctx, actor, args.model, args.version, args.to, args.reason,
                                on_behalf_of=args.on_behalf_of)
    print(outcome.request.id)
    for gate in _gates(ctx, outcome.request.evidence_digest):
        print(f"  {gate.status:8} {gate.name}: {gate.detail}", file=sys.stderr)
    if not outcome.created:
        print("(this request was already open; nothing new was recorded)", file=sys.stderr)
    if outcome.projection_error:
        print(f"warning: {outcome.projection_error}", file=sys.stderr)
    return 0


def _gates(ctx: Any, digest: str | None) -> list[Any]:
    from services.governance.review_state import evidence_snapshot

    evidence = None if digest is None else evidence_snapshot(ctx, digest)
    return [] if evidence is None else list(evidence.gates)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from services.governance.review_state import list_requests

    ctx = context(settings)
    for r in list_requests(ctx, status=args.status, model=args.model):
        approvals = f"{len(r.approvals)}/{r.approvals_required}"
        print("\t".join([r.id, r.status, r.model, r.version, r.stage, approvals, r.requester_name,
                         r.created_at.isoformat()]))
    return 0


def _repair(args: argparse.Namespace, settings: Settings) -> int:
    from services.governance.projection import repair_projections

    actor = cli_actor(settings)
    report = repair_projections(context(settings), actor)
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
    request.add_argument("--on-behalf-of", default=None, metavar="NAME",
                         help="the person who triggered this request (e.g. the commit author); they may not approve it")
    request.set_defaults(handler=_request)
    listing = commands.add_parser("list", help="list promotion requests")
    listing.add_argument("--status", choices=("open", "approved", "rejected", "cancelled"), default=None)
    listing.add_argument("--model", default=None)
    listing.set_defaults(handler=_list)
    repair = commands.add_parser("repair", help="re-apply registry projections a crash interrupted (admin)")
    repair.set_defaults(handler=_repair)


def _token_new(args: argparse.Namespace, settings: Settings) -> int:
    from services.auth.service_tokens import hash_token, new_token

    token = new_token()
    print(f"token: {token}")
    print(f"token_hash: {hash_token(token)}")
    print("Keep the token in your CI's secret store (as TOWER_SERVICE_TOKEN); put only the hash under "
          "auth.service_accounts.<name>.token_hash in tower.yaml or [service_accounts] in the secrets file.",
          file=sys.stderr)
    return 0


def _token_hash(args: argparse.Namespace, settings: Settings) -> int:
    from services.auth.service_tokens import hash_token

    token = sys.stdin.read().strip()
    if not token:
        raise ConfigError("No token on stdin.", "Pipe the token in, e.g. `printf %s \"$TOKEN\" | ... token hash`.")
    print(hash_token(token))
    return 0


def register_token(subparsers: Any) -> None:
    """Add ``token new|hash`` (service-account tokens) to the CLI's subcommands."""
    token = subparsers.add_parser("token", help="service-account tokens (TOWER_SERVICE_TOKEN)")
    commands = token.add_subparsers(dest="token_command", required=True)
    commands.add_parser("new", help="print a new random token and its hash").set_defaults(handler=_token_new)
    commands.add_parser("hash", help="print the hash of a token read from stdin").set_defaults(handler=_token_hash)
