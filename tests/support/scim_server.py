"""A small, honest SCIM 2.0 service provider on loopback: the organisation's directory's stand-in.

``GET {base}/Users?filter=...`` with a bearer token, answering a ListResponse (RFC 7644 3.4.2).
The filter is parsed as RFC 7644 3.4.2.2 writes it, for the part a directory client needs:
``attrPath op compValue`` with ``eq ne co sw ew`` and ``pr``, combined with ``and``/``or``/``not``
and parentheses, string values as JSON strings. It parses ``or`` on purpose: a client that pasted
a hostile subject into the filter unescaped WOULD widen it here, as on a real server.

The tests change its people and groups, make it fail (``failing``: HTTP 503; ``hang_s``: answer
late), ignore the filter (``ignore_filter``: a broken server answering everyone), or stop it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
CASE_EXACT = {"id", "externalid"}  # RFC 7643: userName and emails.value are caseExact false


class InvalidFilter(ValueError):
    pass


# ------------------------------------------------------------------------------------------------
# Filter parsing (RFC 7644 3.4.2.2)
# ------------------------------------------------------------------------------------------------
def _tokens(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == " ":
            i += 1
        elif c in "()":
            out.append((c, c))
            i += 1
        elif c == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= len(text):
                raise InvalidFilter("unterminated string")
            try:
                out.append(("value", json.loads(text[i:j + 1])))
            except json.JSONDecodeError as exc:
                raise InvalidFilter(f"bad string: {exc}") from exc
            i = j + 1
        else:
            j = i
            while j < len(text) and text[j] not in ' ()"':
                j += 1
            word = text[i:j]
            low = word.lower()
            if low in ("true", "false", "null"):
                out.append(("value", json.loads(low)))
            else:
                try:
                    out.append(("value", json.loads(word)))  # a number
                except json.JSONDecodeError:
                    out.append(("word", word))
            i = j
    return out


def _values(user: dict[str, Any], path: str) -> list[Any]:
    head, _, sub = path.partition(".")
    found = next((v for k, v in user.items() if k.lower() == head.lower()), None)
    if found is None:
        return []
    items = found if isinstance(found, list) else [found]
    if not sub:
        return [v for v in items if not isinstance(v, dict)]
    return [next((v for k, v in item.items() if k.lower() == sub.lower()), None)
            for item in items if isinstance(item, dict)]


def _compare(op: str, actual: Any, wanted: Any, exact: bool) -> bool:
    if isinstance(actual, str) and isinstance(wanted, str):
        a, w = (actual, wanted) if exact else (actual.lower(), wanted.lower())
        return {"eq": a == w, "ne": a != w, "co": w in a, "sw": a.startswith(w), "ew": a.endswith(w)}[op]
    if op == "eq":
        return bool(actual == wanted)
    if op == "ne":
        return bool(actual != wanted)
    return False


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.i = 0

    def _peek_word(self) -> str | None:
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "word":
            return str(self.tokens[self.i][1]).lower()
        return None

    def _take(self) -> tuple[str, Any]:
        if self.i >= len(self.tokens):
            raise InvalidFilter("the filter ends too early")
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Any:
        tree = self._or()
        if self.i != len(self.tokens):
            raise InvalidFilter(f"unexpected {self.tokens[self.i][1]!r}")
        return tree

    def _or(self) -> Any:
        left = self._and()
        while self._peek_word() == "or":
            self.i += 1
            left = ("or", left, self._and())
        return left

    def _and(self) -> Any:
        left = self._atom()
        while self._peek_word() == "and":
            self.i += 1
            left = ("and", left, self._atom())
        return left

    def _atom(self) -> Any:
        kind, value = self._take()
        if kind == "(":
            inner = self._or()
            if self._take()[0] != ")":
                raise InvalidFilter("missing )")
            return inner
        if kind == "word" and str(value).lower() == "not":
            if self._take()[0] != "(":
                raise InvalidFilter("not needs (")
            inner = self._or()
            if self._take()[0] != ")":
                raise InvalidFilter("missing )")
            return ("not", inner)
        if kind != "word":
            raise InvalidFilter(f"an attribute was expected, got {value!r}")
        op_kind, op = self._take()
        op = str(op).lower()
        if op_kind != "word" or op not in ("eq", "ne", "co", "sw", "ew", "pr"):
            raise InvalidFilter(f"unknown operator {op!r}")
        if op == "pr":
            return ("pr", value)
        value_kind, wanted = self._take()
        if value_kind != "value":
            raise InvalidFilter(f"a value was expected after {op}")
        return ("cmp", value, op, wanted)


def matches(tree: Any, user: dict[str, Any]) -> bool:
    kind = tree[0]
    if kind == "or":
        return matches(tree[1], user) or matches(tree[2], user)
    if kind == "and":
        return matches(tree[1], user) and matches(tree[2], user)
    if kind == "not":
        return not matches(tree[1], user)
    if kind == "pr":
        return any(v not in (None, "", []) for v in _values(user, tree[1]))
    _, path, op, wanted = tree
    exact = path.split(".")[0].lower() in CASE_EXACT
    return any(_compare(op, v, wanted, exact) for v in _values(user, path))


def parse_filter(text: str) -> Any:
    return _Parser(text).parse()


# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------
@dataclass
class ScimServer:
    token: str = "scim-test-token-7d1e"
    base_path: str = "/scim/v2"
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # by externalId
    failing: bool = False  # answer 503 Service Unavailable
    hang_s: float = 0.0  # answer this late
    ignore_filter: bool = False  # a broken server: every user, whatever the filter
    seen: list[str] = field(default_factory=list)  # the filters received, in order
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    # people ---------------------------------------------------------------------------------------
    def add_user(self, external_id: str, *groups: str, user_name: str | None = None, email: str | None = None,
                 active: bool | None = True) -> dict[str, Any]:
        user: dict[str, Any] = {
            "schemas": [USER_SCHEMA], "id": f"id-{len(self.users) + 1}", "externalId": external_id,
            "userName": user_name or external_id,
            "emails": [{"value": email or f"{external_id}@example.test", "primary": True}],
            "groups": [{"value": f"g-{g}", "display": g} for g in groups],
        }
        if active is not None:
            user["active"] = active
        self.users[external_id] = user
        return user

    def set_groups(self, external_id: str, *groups: str) -> None:
        self.users[external_id]["groups"] = [{"value": f"g-{g}", "display": g} for g in groups]

    def set_active(self, external_id: str, active: Any) -> None:
        self.users[external_id]["active"] = active

    # life -----------------------------------------------------------------------------------------
    def start(self) -> ScimServer:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {self.token}":
            return 401, {"schemas": [ERROR_SCHEMA], "status": "401", "detail": "bad token"}
        parts = urlsplit(path)
        if parts.path.rstrip("/") != f"{self.base_path}/Users":
            return 404, {"schemas": [ERROR_SCHEMA], "status": "404"}
        if self.failing:
            return 503, {"schemas": [ERROR_SCHEMA], "status": "503"}
        query = parse_qs(parts.query)
        text = query.get("filter", [""])[0]
        self.seen.append(text)
        users = list(self.users.values())
        if text and not self.ignore_filter:
            try:
                tree = parse_filter(text)
            except InvalidFilter as exc:
                return 400, {"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter",
                             "detail": str(exc)}
            users = [u for u in users if matches(tree, u)]
        count = int(query.get("count", ["100"])[0])
        return 200, {"schemas": [LIST_SCHEMA], "totalResults": len(users), "startIndex": 1,
                     "itemsPerPage": min(count, len(users)), "Resources": users[:count]}


def _handler(scim: ScimServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if scim.hang_s:
                time.sleep(scim.hang_s)
            status, body = scim.answer(self.path, self.headers.get("Authorization"))
            data = json.dumps(body).encode("utf-8")
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/scim+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout test)
                pass

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler
