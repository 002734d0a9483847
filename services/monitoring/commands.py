"""The monitoring commands of ``python -m services.cli``.

``monitor run [--model NAME] [--since DATE] [--until DATE] [--refresh-reference]``
    computes the daily windows (see ``services.monitoring.job``) with a progress bar on stderr and
    one summary line per model on stdout. Exit 0, or 2 when a model could not be monitored; a mapped
    table or column the warehouse lacks stops the run before it computes anything, with one error
    naming every one of them (exit 2).

``report --model NAME --start ISO --end ISO [--reference-start ISO --reference-end ISO] --format json``
    prints one JSON object for the window ``[start, end)`` (a stable JSON contract); without reference
    options the model's configured reference is used. Exit 0; a one-line error and exit 2 on an
    unknown model, a window whose start is not before its end, or an unusable reference.

Both read ``TOWER_CONFIG``, ``WAREHOUSE_URL`` and ``TOWER_DB_URL`` like the app.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from typing import TextIO

from services.errors import ConfigError, NotFound, TowerError
from services.monitoring.config import monitoring_config
from services.settings import Settings


def _instant(text: str) -> datetime:
    """An ISO date or date-time; one with an offset is converted to naive UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time (e.g. 2026-11-01 or "
                                         "2026-11-01T06:00:00)") from None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (e.g. 2026-11-01)") from None


class TextProgress:
    """A plain-text progress bar on a stream: redrawn in place on a terminal, one line per step otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width

    def __call__(self, model: str, done: int, total: int) -> None:
        filled = self.width * done // total if total else self.width
        line = f"{model:<24} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total} days"
        if self.stream.isatty():
            self.stream.write("\r" + line + ("\n" if done >= total else ""))
        elif done > 0 or total == 0:
            self.stream.write(line + "\n")
        self.stream.flush()


def _model(settings: Settings, name: str) -> None:
    if name not in settings.models:
        known = ", ".join(sorted(settings.models)) or "none"
        raise NotFound(f"No monitored model named '{name}'.", f"Models mapped in tower.yaml: {known}.")


def _monitor_run(args: argparse.Namespace, settings: Settings) -> int:
    from services.monitoring.job import run_monitoring

    if args.model is not None:
        _model(settings, args.model)
    runs = run_monitoring(settings, model=args.model, since=args.since, until=args.until,
                          refresh_reference=args.refresh_reference,
                          progress=None if args.quiet else TextProgress())
    failed = False
    for run in runs:
        if run.error:
            failed = True
            print(f"{run.model}: error: {run.error}", file=sys.stderr)
            continue
        alerts = run.alerts
        alert_text = "" if alerts is None else (
            f", {alerts.active} alert(s) active ({alerts.opened} new, {alerts.resolved} resolved, "
            f"{alerts.notified} notified" + (f", {alerts.notify_failed} notification(s) failed" if alerts.notify_failed
                                               else "") + ")")
        if run.windows:
            what = f"{run.windows} daily window(s) {run.first_day}..{run.last_day}, {run.results:,} results"
        else:
            what = f"nothing to compute ({run.note})"
        print(f"{run.model}: {what}{alert_text}, {run.seconds:.1f} s")
        if run.reference:
            print(f"{run.model}: reference: {run.reference}", file=sys.stderr if "MISMATCH" in run.reference else
                  sys.stdout)
        for problem in run.segment_errors:
            failed = True
            print(f"{run.model}: error: {problem}", file=sys.stderr)
    if args.model is None and not _retry_projections(settings):
        failed = True
    _deliver_notifications(settings)
    return 2 if failed else 0


def _deliver_notifications(settings: Settings) -> None:
    """The scheduled job is also the sender of every notification still owed: promotions decided since
    the last pass and retries of failed deliveries. A receiver that is down does not fail the run: what
    is owed stays in the outbox and is retried (said on stderr, so cron shows it)."""
    from services.notify.config import notification_config
    from services.notify.sender import deliver_due
    from services.wiring import Backends

    config = notification_config(settings)
    if not config.destinations():
        return
    backends = Backends.from_settings(settings)
    try:
        report = deliver_due(backends.tower(), config.destinations(), retry=config.retry,
                             public_url=config.public_url)
    except TowerError as exc:
        print(f"notifications: not delivered: {exc.message}", file=sys.stderr)
        return
    finally:
        backends.close()
    if report.total_sent:
        print(f"{report.total_sent} notification(s) delivered")
    for error in report.errors:
        print(f"notification not delivered (kept, retried later): {error}", file=sys.stderr)


def _retry_projections(settings: Settings) -> bool:
    """The scheduled job is also the automatic retry of promotion decisions the registry missed;
    False when some are still behind (said on stderr, so cron shows it)."""
    from services.governance.projection import retry_pending
    from services.wiring import governance_context

    try:
        report = retry_pending(governance_context(settings))
    except TowerError as exc:
        print(f"promotion decisions: not retried: {exc.message}", file=sys.stderr)
        return False
    if report.applied:
        print(f"{len(report.applied)} pending promotion decision(s) applied to the registry")
    for decision_id, why in report.failed:
        print(f"promotion decision {decision_id}: still not in the registry: {why}", file=sys.stderr)
    return not report.failed


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from services import wiring
    from services.monitoring.registry_reference import reference_for
    from services.monitoring.segment_reports import segmented_report_json

    _model(settings, args.model)
    if args.start >= args.end:
        raise ConfigError(f"The window starts at {args.start.isoformat(sep=' ')} but ends at "
                          f"{args.end.isoformat(sep=' ')}; --start must be before --end.")
    if (args.reference_start is None) != (args.reference_end is None):
        raise ConfigError("Give both --reference-start and --reference-end, or neither.")
    if args.reference_start is not None and args.reference_start >= args.reference_end:
        raise ConfigError("--reference-start must be before --reference-end.")
    mapping = settings.models[args.model]
    backends = wiring.Backends.from_settings(settings)
    warehouse, tower = backends.warehouse(), backends.tower()
    try:
        if args.reference_start is None:  # the configured reference: from the registry when so mapped
            resolved = reference_for(settings, backends.registry, warehouse, mapping)
            mapping = resolved.mapping
            if resolved.fallback or resolved.mismatch:
                print(f"{mapping.name}: reference: {resolved.text}", file=sys.stderr)
        report = segmented_report_json(tower, warehouse, mapping, args.start, args.end, segment=args.segment,
                                       rules=monitoring_config(settings).rules_for(mapping.name),
                                       reference_start=args.reference_start, reference_end=args.reference_end)
    finally:
        backends.close()
    print(json.dumps(report, indent=2, allow_nan=False))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``monitor run`` and ``report`` to the CLI's sub-commands."""
    monitor = commands.add_parser("monitor", help="monitoring of the prediction logs").add_subparsers(
        dest="monitor_command", required=True)
    run = monitor.add_parser("run", help="compute daily monitoring windows, store them and raise alerts")
    run.add_argument("--model", help="only this model (default: every model mapped in tower.yaml)")
    run.add_argument("--since", type=_day, help="recompute from this day (default: from the last stored window, "
                                                "or backfill_days back on the first run)")
    run.add_argument("--until", type=_day, help="last day to compute (default: the log's last day)")
    run.add_argument("--refresh-reference", action="store_true",
                     help="recompute the kept reference histograms (after the reference data changed in place)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_monitor_run)

    report = commands.add_parser("report", help="print one window's drift, fairness, latency and performance")
    report.add_argument("--model", required=True, help="a model mapped in tower.yaml")
    report.add_argument("--start", required=True, type=_instant, help="window start (ISO, inclusive, UTC)")
    report.add_argument("--end", required=True, type=_instant, help="window end (ISO, exclusive, UTC)")
    report.add_argument("--reference-start", type=_instant, help="reference = the log from this time (ISO)")
    report.add_argument("--reference-end", type=_instant, help="... to this time (ISO, exclusive)")
    report.add_argument("--segment", help="only this segment of the model (tower.yaml models.<name>.segments)")
    report.add_argument("--format", choices=["json"], default="json", help="output format (json)")
    report.set_defaults(handler=_report)

