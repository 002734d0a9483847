"""The HTTP receiver: the standard library's ThreadingHTTPServer (no web framework to pin).

``Receiver.receive`` turns one POST (headers, raw body) into an HTTP status and a JSON answer, in
this order, nothing recorded before the last step: body size (413 over 1 MiB, 411 without a
length), signature (401), timestamp window (400), event (400 unless model_version.created), then
``handler.handle_version_created`` (200; 503 on an outage so MLflow retries). Every delivery is
logged in one line: delivery id, status, outcome; never a header value or the secret.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from services.auth.identity import Actor
from services.errors import TowerError
from services.governance.context import GovernanceContext
from services.webhooks import deliveries
from services.webhooks.events import parse_event
from services.webhooks.handler import Handled, handle_version_created
from services.webhooks.signature import DEFAULT_TOLERANCE_S, RejectedDelivery, verify

_log = logging.getLogger("services.webhooks")
MAX_BODY_BYTES = 1 << 20  # MLflow's payloads are a few hundred bytes
READ_TIMEOUT_S = 10.0  # a client that stalls mid-body loses its connection, not a thread forever


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class Receiver:
    """Everything a delivery needs: the governance context, the service account, the secret."""

    ctx: GovernanceContext
    actor: Actor
    secret: str = field(repr=False)
    tolerance_s: float = DEFAULT_TOLERANCE_S
    lease: timedelta = deliveries.DEFAULT_LEASE
    clock: Callable[[], float] = time.time

    def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        delivery_id = "-"
        try:
            signed = verify(self.secret, headers, body, now=self.clock(), tolerance_s=self.tolerance_s)
            delivery_id = signed.delivery_id
            event = parse_event(body)
            handled = handle_version_created(self.ctx, self.actor, delivery_id, event, lease=self.lease)
        except RejectedDelivery as exc:
            return self._answer(delivery_id, Handled(exc.status, exc.message), level=logging.WARNING)
        except TowerError as exc:  # e.g. the tower state down while claiming: MLflow retries on 503
            return self._answer(delivery_id, Handled(503, f"not handled, try again: {exc.message}"),
                                level=logging.ERROR)
        except Exception:  # a bug: logged with its traceback, answered without it (MLflow retries a 500)
            _log.exception("delivery %s failed", delivery_id)
            return Answer(500, {"status": 500, "outcome": "internal error; see the receiver's log"})
        _log_event = f"{event.event} {event.model!r} v{event.version}"
        return self._answer(delivery_id, handled, level=logging.INFO if handled.status < 500 else logging.ERROR,
                            what=_log_event)

    @staticmethod
    def _answer(delivery_id: str, handled: Handled, *, level: int, what: str = "") -> Answer:
        _log.log(level, "delivery %s%s: %s %s", delivery_id, f" ({what})" if what else "", handled.status,
                 handled.outcome)
        body: dict[str, Any] = {"status": handled.status, "outcome": handled.outcome}
        if handled.request_id:
            body["request_id"] = handled.request_id
        return Answer(handled.status, body)


def _handler_class(receiver: Receiver, max_body: int) -> type[BaseHTTPRequestHandler]:
    class WebhookHandler(BaseHTTPRequestHandler):
        timeout = READ_TIMEOUT_S
        server_version = "tower-webhooks"
        sys_version = ""

        def _reply(self, answer: Answer, extra: Mapping[str, str] | None = None) -> None:
            payload = json.dumps(answer.body).encode("utf-8")
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            if answer.status == 503:
                self.send_header("Retry-After", "5")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # a health probe for the load balancer
            self._reply(Answer(200, {"status": 200, "outcome": "ok"}) if self.path == "/health"
                        else Answer(404, {"status": 404, "outcome": "POST deliveries here; GET /health"}))

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isascii() or not length.isdigit():
                self.close_connection = True
                self._reply(Answer(411, {"status": 411, "outcome": "a Content-Length is required"}))
                return
            if int(length) > max_body:
                _log.warning("delivery refused: body of %s bytes over the %d-byte cap", length[:20], max_body)
                self.close_connection = True  # the body is never read
                self._reply(Answer(413, {"status": 413, "outcome": f"the body is over {max_body} bytes"}))
                return
            try:
                body = self.rfile.read(int(length))
            except TimeoutError:
                self.close_connection = True
                return
            self._reply(receiver.receive(dict(self.headers.items()), body))

        def log_message(self, format: str, *args: Any) -> None:
            pass  # Receiver logs each delivery once, without the request line's details

    return WebhookHandler


def make_server(receiver: Receiver, host: str = "127.0.0.1", port: int = 0, *,
                max_body: int = MAX_BODY_BYTES) -> ThreadingHTTPServer:
    """The bound server (port 0: a free one, read back from ``server_address``); call serve_forever."""
    server = ThreadingHTTPServer((host, port), _handler_class(receiver, max_body))
    server.daemon_threads = True
    return server
