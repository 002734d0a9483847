"""MLflow's webhook signature, checked: pure, no I/O.

MLflow 3 (``mlflow/webhooks/delivery.py``, the Standard Webhooks scheme) sends three headers:
``X-MLflow-Delivery-Id`` (a UUID, the same on every retry of one delivery), ``X-MLflow-Timestamp``
(Unix seconds) and ``X-MLflow-Signature`` = ``v1,`` + base64(HMAC-SHA256(secret,
"<delivery id>.<timestamp>.<raw body>")). The id and the timestamp are signed with the body, so a
replay cannot move either; the timestamp window stops an old capture from being played again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

from services.errors import InvalidInput

DELIVERY_ID_HEADER = "X-MLflow-Delivery-Id"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
SIGNATURE_HEADER = "X-MLflow-Signature"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300.0
_DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # MLflow sends a UUID; the id is a primary key of ours
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAX_SIGNATURES = 8  # "v1,a v1,b" (Standard Webhooks lists several during a rotation); more is abuse


class RejectedDelivery(InvalidInput):
    """A delivery refused before anything is recorded; ``status`` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SignedDelivery:
    """What a valid signature vouches for besides the body."""

    delivery_id: str
    timestamp: int


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The header value MLflow sends (``v1,<base64>``): used by tests and by nothing that receives."""
    digest = hmac.new(secret.encode("utf-8"), _signed_content(delivery_id, timestamp, body), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def _signed_content(delivery_id: str, timestamp: str, body: bytes) -> bytes:
    return delivery_id.encode("ascii") + b"." + timestamp.encode("ascii") + b"." + body


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> SignedDelivery:
    """The delivery's id and timestamp once its signature and age are good.

    RejectedDelivery 401 when a header is missing or malformed or no signature matches (the message
    never says which part was wrong beyond that); 400 when the signed timestamp is more than
    ``tolerance_s`` from ``now`` (an old capture replayed, or a clock far ahead)."""
    if not secret:
        raise ValueError("no webhook secret")  # the caller refuses to start without one
    delivery_id = _header(headers, DELIVERY_ID_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    offered = _header(headers, SIGNATURE_HEADER)
    if delivery_id is None or stamp is None or offered is None:
        raise RejectedDelivery(401, "The delivery is not signed (missing MLflow signature headers).")
    if not _DELIVERY_ID.fullmatch(delivery_id) or not _TIMESTAMP.fullmatch(stamp):
        raise RejectedDelivery(401, "The delivery's signature headers are malformed.")
    expected = sign(secret, delivery_id, stamp, body).encode("ascii")
    candidates = offered.split()[:_MAX_SIGNATURES]
    # Compare against every offered value (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(candidate.encode("utf-8", "replace"), expected)
    if not matched:
        raise RejectedDelivery(401, "The delivery's signature does not match: refused.")
    timestamp = int(stamp)
    if abs(now - timestamp) > tolerance_s:
        direction = "old" if timestamp < now else "far in the future"
        raise RejectedDelivery(400, f"The delivery's timestamp is {direction} (more than {tolerance_s:g} s from "
                                    "this server's clock): refused as a replay.")
    return SignedDelivery(delivery_id, timestamp)
