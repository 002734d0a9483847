"""Canonical JSON and SHA-256: the one serialization that evidence digests and ledger hashes use.

Keys sorted, no whitespace, UTF-8 text kept as is (``ensure_ascii=False``), and no NaN or
infinity (JSON has none: they become ``null`` before hashing, so a digest never depends on how a
float was spelled).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every NaN/inf float replaced by None, tuples and sets as lists (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(finite(v) for v in value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(finite(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
