"""The ``webhooks`` command group of ``python -m services.cli``.

    python -m services.cli webhooks register --url URL [--name NAME]
    python -m services.cli webhooks serve [--host 127.0.0.1] [--port 8765]

``register`` creates (or updates in place, by name) the MLflow webhook for model_version.created
with the shared secret, through MLflow's API, and prints its id. ``serve`` runs the receiver as the
service account of ``TOWER_SERVICE_ACCOUNT``/``TOWER_SERVICE_TOKEN`` (like ``promote``). Both need
``TOWER_WEBHOOK_SECRET``. Errors exit 2 with one line on stderr (services/cli.py).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from services.errors import ConfigError
from services.settings import Settings
from services.webhooks.events import HANDLED_EVENTS
from services.webhooks.signature import DEFAULT_TOLERANCE_S

DEFAULT_NAME = "ml-control-tower"
DEFAULT_PORT = 8765


def _check_url(url: str) -> str:
    try:
        parts = urlsplit(url.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok or len(url) > 2000:
        raise ConfigError(f"--url must be an http(s) URL of the receiver, got {url[:80]!r}.")
    return url.strip()


def _register(args: argparse.Namespace, settings: Settings) -> int:
    from services.webhooks.secret import webhook_secret
    from services.wiring import registry

    secret = webhook_secret(settings.environ)  # before any store is touched
    url = _check_url(args.url)
    name = args.name.strip()
    if not name or len(name) > 200:
        raise ConfigError("--name must be a non-empty name of at most 200 characters.")
    hook_id, created = registry(settings).upsert_webhook(
        name, url, list(HANDLED_EVENTS), secret,
        "ML Control Tower: files promotion requests for new versions of governed models")
    print(hook_id)
    print(f"webhook {name!r} {'created' if created else 'updated'}: {', '.join(HANDLED_EVENTS)} -> {url}",
          file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.governance.commands import cli_actor
    from services.webhooks.handler import resume_stuck
    from services.webhooks.secret import tolerance_s, webhook_secret
    from services.webhooks.server import Receiver, make_server
    from services.wiring import Backends

    secret = webhook_secret(settings.environ)
    tolerance = tolerance_s(settings.environ, DEFAULT_TOLERANCE_S)
    actor = cli_actor(settings)  # the service account proves itself before the port opens
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    backends = Backends.from_settings(settings)
    ctx = backends.governance()  # creates the tower schema (webhook_deliveries among it)
    receiver = Receiver(ctx=ctx, actor=actor, secret=secret, tolerance_s=tolerance,
                        lease=timedelta(seconds=args.lease_s))
    for delivery_id, handled in resume_stuck(ctx, actor, lease=receiver.lease):
        logging.getLogger("services.webhooks").info("resumed delivery %s: %s %s", delivery_id, handled.status,
                                                    handled.outcome)
    try:
        server = make_server(receiver, args.host, args.port)
    except OSError as exc:
        backends.close()
        raise ConfigError(f"Cannot listen on {args.host}:{args.port}: {exc.strerror}.") from None
    port = server.server_address[1]
    print(f"tower webhooks: receiving MLflow deliveries on http://{args.host}:{port}/ as {actor.name}", file=sys.stderr,
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        backends.close()
    return 0


def register(subparsers: Any) -> None:
    """Add ``webhooks register|serve`` to the CLI's subcommands."""
    webhooks = subparsers.add_parser("webhooks", help="MLflow registry webhooks that file promotion requests")
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True)
    reg = commands.add_parser("register", help="create or update the MLflow webhook (model_version.created)")
    reg.add_argument("--url", required=True, help="where MLflow posts, e.g. https://tower.example/mlflow-webhook")
    reg.add_argument("--name", default=DEFAULT_NAME, help=f"the webhook's name in MLflow (default {DEFAULT_NAME})")
    reg.set_defaults(handler=_register)
    serve = commands.add_parser("serve", help="receive MLflow deliveries (as TOWER_SERVICE_ACCOUNT)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    serve.add_argument("--lease-s", type=float, default=120.0,
                       help="seconds after which a delivery a dead process left half-done is taken over")
    serve.set_defaults(handler=_serve)
