"""`tower gate`: the policy's gates for a candidate, with an exit code a CI step can fail on.

    tower gate --model M --version V --to STAGE [--format text|json|junit|markdown] [--output FILE]
               [--request --reason TEXT [--on-behalf-of NAME]]

Exit codes: 0 every gate passes; 1 a gate failed (or has no data where the policy says that
fails); 2 bad input or configuration (unknown model or version, unreachable store), one line on
stderr. The gates come from ``gate_check.gate_preview``, the code a promotion request records its
evidence with, and nothing is recorded, unless ``--request`` files the request once every gate
passes (as the service account, like ``tower promote request``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from services.errors import Conflict
from services.governance.evidence import Evidence
from services.governance.gate_report import FORMATS, as_text, passed, render
from services.settings import Settings

PASS, FAIL = 0, 1


def _emit(report: str, output: str | None) -> None:
    if output:
        Path(output).write_text(report if report.endswith("\n") else report + "\n", encoding="utf-8")
    else:
        print(report)


def _gate(args: argparse.Namespace, settings: Settings) -> int:
    from services.governance.commands import cli_actor, context
    from services.governance.gate_check import gate_preview

    actor = cli_actor(settings) if args.request else None  # a missing token fails before any store is read
    ctx = context(settings)
    evidence: Evidence = gate_preview(ctx, args.model, args.version, args.to)
    if evidence.holder is not None and evidence.holder.version == evidence.version:
        raise Conflict(f"Version {evidence.version} of '{evidence.model}' already holds {evidence.stage}: "
                       "there is nothing to gate.", "Gate the candidate version instead.")
    if args.request and passed(evidence):
        from services.governance.promotion import request_promotion
        from services.governance.review_state import evidence_snapshot

        assert actor is not None
        outcome = request_promotion(ctx, actor, args.model, args.version, args.to, args.reason,
                                    on_behalf_of=args.on_behalf_of)
        # Report what the request recorded: the same code, but the data may have moved meanwhile.
        evidence = evidence_snapshot(ctx, outcome.request.evidence_digest or "") or evidence
        print(f"request {outcome.request.id} " + ("filed" if outcome.created else "was already open"),
              file=sys.stderr)
    elif args.request:
        print("no request filed: a gate did not pass", file=sys.stderr)
    _emit(render(evidence, args.format), args.output)
    if args.output:  # the file is for the CI system; the log still says what happened
        print(as_text(evidence).splitlines()[0])
    return PASS if passed(evidence) else FAIL


def register(subparsers: Any) -> None:
    gate = subparsers.add_parser("gate", help="the policy's gates for a version, exit 1 when one fails (CI)")
    gate.add_argument("--model", required=True)
    gate.add_argument("--version", required=True)
    gate.add_argument("--to", required=True, help="target stage, e.g. Production or Staging")
    gate.add_argument("--format", choices=FORMATS, default="text")
    gate.add_argument("--output", default=None, metavar="FILE", help="write the report there (e.g. junit.xml)")
    gate.add_argument("--request", action="store_true",
                      help="file the promotion request when every gate passes (as TOWER_SERVICE_ACCOUNT)")
    gate.add_argument("--reason", default="every gate of the policy passed in CI",
                      help="the request's justification (with --request)")
    gate.add_argument("--on-behalf-of", default=None, metavar="NAME",
                      help="the person who triggered the pipeline; excluded from approving the request")
    gate.set_defaults(handler=_gate)
