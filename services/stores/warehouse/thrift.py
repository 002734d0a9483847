"""Connections to a Spark Thrift server (HiveServer2 protocol, ``hive://`` URLs through PyHive), read only.

PyHive opens its socket without a timeout, raises the transport's own exceptions (not DB-API
errors, so SQLAlchemy would not wrap them) and has no read-only session. So for ``hive://`` the
engine connects through :func:`connect`: the socket waits ``connect_timeout_s`` to connect and
``statement_timeout_s`` (plus a grace) for an answer, the server is asked to cancel a statement
after ``statement_timeout_s`` (``spark.sql.thriftServer.queryTimeout``) and to compute in UTC, and
transport failures, on connecting or mid-statement, come out as ``pyhive.exc.OperationalError``
(:func:`lost_connection` tells the pool such a connection is dead). :func:`refuse_writes` lets only
queries through: Spark has no read-only session to fall back on.

Measured on Spark 4.3: a statement cancelled by ``queryTimeout`` answers TIMEDOUT at once, but its
job may run on in the cluster (a long task is not interrupted), so the timeout bounds the page's
wait, not the cluster's work.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sqlalchemy.engine import URL

# What a read-only session may send: queries, and the introspection the mapping check uses.
_READ_ONLY = re.compile(r"^\s*(\(|select\b|with\b|show\b|describe\b|desc\b|explain\b|values\b)", re.IGNORECASE)
_TIMED_OUT = re.compile(r"timed ?out|timeout", re.IGNORECASE)  # Spark: "... but found TIMEDOUT"
_GRACE_S = 15.0  # the socket outwaits the server's own cancellation, so the server's message wins
_SASL_PLAIN_AUTHS = ("NONE", "LDAP", "CUSTOM")


def _transport(url: URL, connect_timeout_s: float) -> tuple[Any, Any]:
    """(socket, transport) for the URL's ``auth`` (NONE by default; NOSASL, LDAP, CUSTOM)."""
    from pyhive.hive import get_installed_sasl
    from thrift.transport import TSocket, TTransport

    auth = str(url.query.get("auth", "NONE")).upper()
    sock = TSocket.TSocket(url.host or "localhost", url.port or 10000)
    sock.setTimeout(connect_timeout_s * 1000)
    if auth == "NOSASL":
        return sock, TTransport.TBufferedTransport(sock)
    if auth not in _SASL_PLAIN_AUTHS:
        raise ValueError(f"auth={auth} is not supported for the warehouse; use NONE, NOSASL, LDAP or CUSTOM")
    import thrift_sasl

    host, username, password = url.host, url.username or "tower", url.password or "x"

    def sasl() -> Any:
        return get_installed_sasl(host=host, sasl_auth="PLAIN", service=None, username=username, password=password)

    return sock, thrift_sasl.TSaslClientTransport(sasl, "PLAIN", sock)


def connect(url: URL, connect_timeout_s: float, statement_timeout_s: float) -> Any:
    """A PyHive connection for the engine's pool (its ``creator``); OperationalError if it cannot open."""
    from pyhive import exc, hive
    from thrift.Thrift import TException

    sock, transport = _transport(url, connect_timeout_s)
    try:
        conn = hive.connect(thrift_transport=transport, username=url.username or "tower",
                            database=url.database or "default")
    except (TException, OSError, EOFError) as error:
        raise exc.OperationalError(f"cannot open a session with the Thrift server at "
                                   f"{url.host}:{url.port or 10000}: {error}") from error
    sock.setTimeout((statement_timeout_s + _GRACE_S) * 1000)
    try:
        cursor = conn.cursor()
        cursor.execute("SET spark.sql.session.timeZone=UTC")
        # Spark cancels the statement itself (SPARK-26533); whole seconds, at least one.
        cursor.execute(f"SET spark.sql.thriftServer.queryTimeout={max(1, math.ceil(statement_timeout_s))}s")
        cursor.close()
    except (TException, OSError, EOFError) as error:
        conn.close()
        raise exc.OperationalError(f"the Thrift server at {url.host}:{url.port or 10000} dropped the session: "
                                   f"{error}") from error
    return _Connection(conn)


def refuse_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    """``before_cursor_execute``: anything but a query is refused before it reaches the server."""
    if not _READ_ONLY.match(statement):
        from pyhive import exc

        raise exc.NotSupportedError("the warehouse is read-only for the tower: only queries are sent")


_LOST = "the Thrift connection failed"


class _Cursor:
    """A PyHive cursor whose transport failures are DB-API errors (so SQLAlchemy wraps them, and its
    pool's pre-ping can tell a dead connection and open a new one)."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._cursor, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            from pyhive import exc
            from thrift.Thrift import TException

            try:
                return attr(*args, **kwargs)
            except (TException, OSError, EOFError) as error:
                raise exc.OperationalError(f"{_LOST}: {error}") from error

        return call


class _Connection:
    """A PyHive connection handing out `_Cursor`s."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def cursor(self, *args: Any, **kwargs: Any) -> _Cursor:
        return _Cursor(self._conn.cursor(*args, **kwargs))

    def close(self) -> None:
        from thrift.Thrift import TException

        try:
            self._conn.close()
        except (TException, OSError, EOFError):
            pass  # closing a connection whose socket is already gone

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def lost_connection(context: Any) -> None:
    """``handle_error``: a failed transport means the connection is dead (the pool discards it)."""
    if str(context.original_exception).startswith(_LOST):
        context.is_disconnect = True


def status_of(error: BaseException) -> tuple[str | None, str] | None:
    """(SQLSTATE, message) of a PyHive error that carries the server's status, else None.

    PyHive raises ``OperationalError(response)``: the whole Thrift response, whose text is one long
    line; the server's SQLSTATE and message are inside it.
    """
    response = error.args[0] if error.args else None
    status = getattr(response, "status", None)
    if status is None:
        return None
    message = str(getattr(status, "errorMessage", None) or "").strip()
    return getattr(status, "sqlState", None), message or type(error).__name__


def timed_out(error: BaseException | None) -> bool:
    """True when the server cancelled the statement for running past its query timeout, or the socket
    gave up waiting for its answer."""
    if error is None:
        return False
    status = status_of(error)
    # Without a status: our socket's own read timeout (``transport_failure``) outwaited the server.
    return bool(_TIMED_OUT.search(status[1] if status is not None else str(error)))
