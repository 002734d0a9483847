"""The ``audit`` command group of ``python -m services.cli``: ``audit verify`` for a cron job or CI.

    tower audit verify [--format text|json]

Exit codes: 0 when the ledger, the request rows, the evidence bodies and the registry's audit tags
and anchors all agree; 1 on any finding (each printed with the first row or tag at fault); 2 when a
store cannot be read.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from services.settings import Settings


def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from services.governance.audit import verify_all
    from services.wiring import Backends

    report = verify_all(Backends.from_settings(settings).governance())
    if args.format == "json":
        print(json.dumps({"ok": report.ok, "rows": report.rows, "registry_checked": report.registry_checked,
                          "registry_problem": report.registry_problem,
                          "findings": [asdict(f) for f in report.findings]}, ensure_ascii=False))
    else:
        print(report.summary)
        for finding in report.findings:
            print(f"  {finding.kind:12} {finding.where or '-'}: {finding.message}")
    if not report.registry_checked and not report.findings:
        return 2
    return 0 if report.ok else 1


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="the decision ledger's integrity")
    commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = commands.add_parser("verify", help="cross-check the ledger and the registry; exit 1 on any finding")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(handler=_verify)


