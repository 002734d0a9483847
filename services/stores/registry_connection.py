"""How ``Registry`` reaches MLflow: its tracking URI, the HTTP budget, and a failure in one line.

The URI helpers keep the password out of anything shown or logged and find a local store's file;
the HTTP environment carries our timeout and retry budget into MLflow's REST client; the failure
description turns a chain of MLflow, requests and SQLAlchemy exceptions into a readable reason.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from urllib.request import url2pathname

import requests
import sqlalchemy.exc
from sqlalchemy.engine import make_url


def redact_uri(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to show and to log)."""
    try:
        parts = urlsplit(uri)
        password = parts.password
    except ValueError:
        return uri
    if not password:
        return uri
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostport}"))


def uri_password(uri: str) -> str | None:
    try:
        return urlsplit(uri).password
    except ValueError:
        return None


def local_store_path(uri: str) -> tuple[Path, bool] | None:
    """(path, is_database) of a local store URI, or None if the store is remote or in memory."""
    scheme = urlsplit(uri).scheme.lower()
    if scheme == "sqlite":
        database = make_url(uri).database
        if not database or database == ":memory:":
            return None
        if database.startswith("file:"):  # sqlite URI filename: file:path?mode=ro
            database = database[len("file:"):].split("?", 1)[0]
        return Path(database), True
    if scheme == "file":
        return Path(url2pathname(urlsplit(uri).path)), False
    if scheme == "" and uri:  # a bare path: MLflow's file store
        return Path(uri), False
    return None


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def http_environment(timeout_s: float, max_retries: int) -> dict[str, str]:
    """The MLflow environment variables that carry our timeout and retry budget.

    MLflow 3.17's REST client (mlflow/utils/rest_utils.py: ``http_request``) takes timeout and
    retries as arguments, but the stores never pass them: each request reads
    MLFLOW_HTTP_REQUEST_TIMEOUT (int seconds, default 120), MLFLOW_HTTP_REQUEST_MAX_RETRIES
    (default 7) and MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR (int, default 2) from os.environ *at call
    time*, and honours Retry-After headers unless MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER is false.
    With those defaults an unreachable server holds a page for minutes. There is no per-client
    setting, so the environment is the only place to put ours. The effect is process-wide (every
    MLflow HTTP call of this process gets the same budget), which is what the app wants: it holds
    one Registry built from one Settings. Values are re-applied before each call, so in a process
    holding Registries with different budgets (tests) each call runs with its own.

    The backoff factor is 1: urllib3 2 sleeps 0 s before the first retry and 2, 4, ... s before
    later ones, so with the default single retry a dead server fails in about timeout*(retries+1)
    seconds. Retry-After is ignored so that a 429/503 cannot stall a page for the server's chosen
    delay.
    """
    return {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout_s))),  # MLflow parses an int
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER": "false",
    }


_env_lock = threading.Lock()


def apply_environment(values: Mapping[str, str]) -> None:
    # Written only when different: in the app every Registry has the same settings, so after the
    # first call this never writes again (setenv racing getenv in another thread is unsafe in C).
    with _env_lock:
        for key, value in values.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def describe_failure(exc: BaseException, timeout_s: str) -> str:
    """A one-line reason, preferring the network cause over MLflow's long wrapper text."""
    for link in _exception_chain(exc):
        if isinstance(link, requests.exceptions.Timeout):
            return f"no answer within {timeout_s} s."
        if isinstance(link, requests.exceptions.ConnectionError):
            text = str(link)
            if "timed out" in text.lower():
                return f"no answer within {timeout_s} s."
            if "refused" in text.lower():
                return "connection refused."
            if "name or service not known" in text.lower() or "nodename nor servname" in text.lower():
                return "the host name does not resolve."
            return "the connection failed."
        if isinstance(link, sqlalchemy.exc.SQLAlchemyError):
            orig = getattr(link, "orig", None)
            return f"database error: {orig or link}".splitlines()[0][:300]
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = " ".join(str(message).split())
    return message if len(message) <= 500 else message[:497] + "..."
