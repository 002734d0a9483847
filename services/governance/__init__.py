"""Governance: who may promote what, promotion requests, decisions, the ledger and its projection.

Modules (import the one you need; this package re-exports nothing):

- ``context``     ``GovernanceContext`` (settings, registry, tower state, warehouse, monitoring) and
                  the ``MonitoringEvidence`` protocol the monitoring subsystem implements.
- ``authz``       ``authorize(actor, action, resource)``, the one authorization function, and the
                  ``write_action`` / ``write_step`` markers every write goes through.
- ``policy``      the ``policies:`` section of tower.yaml as typed dataclasses.
- ``evidence``    candidate vs current holder on every gate of the policy; canonical JSON + digest.
- ``ledger``      the append-only, hash-chained decision ledger and the request table (tower state).
- ``projection``  the ledger's projection onto the MLflow registry (audit tags, aliases) and repair.
- ``promotion``   the service functions pages and the CLI call: request, cancel, approve, reject...
- ``audit``       chain verification, history, exports, "who held stage S at T", external changes.
- ``commands``    the ``promote`` command group of ``python -m services.cli``.
- ``canonical``, ``validation``: canonical JSON + SHA-256; checks on free text (InvalidInput).
"""
