"""A real webhook receiver on loopback for the alert and notification tests: an ``http.server`` in a thread."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "T0KEN-very-secret"  # in the URL path, as Slack-style webhooks carry their token


class Receiver:
    """A webhook receiver on 127.0.0.1: records every accepted POST; answers with the queued statuses.

    ``statuses`` entries are a status code or (status, body, headers); ``attempts`` counts every POST,
    accepted or not; ``headers`` holds the request headers of each accepted POST."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int | tuple[int, str, dict[str, str]]] = []
        self.attempts = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.attempts += 1
                    queued = receiver.statuses.pop(0) if receiver.statuses else 200
                    status, text, extra = queued if isinstance(queued, tuple) else (queued, "", {})
                    if status < 300:
                        receiver.received.append(json.loads(body))
                        receiver.paths.append(self.path)
                        receiver.headers.append(dict(self.headers))
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text.encode())))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{SECRET}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
