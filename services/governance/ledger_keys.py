"""Optional keys for the ledger's hashes (HMAC-SHA256): whoever can write the tower database but
cannot read the key cannot re-hash the chain after rewriting a row.

The current key comes from ``TOWER_LEDGER_KEY`` or the secrets file (``[governance] ledger_key``);
keys retired by a rotation stay readable from ``TOWER_LEDGER_PREVIOUS_KEYS`` (comma-separated) or
``[governance] ledger_previous_keys`` (a list), so the rows they signed still verify. Each keyed row
records the key's fingerprint (``key_id``, never the key). Rotation: generate a new key, move the
old one to the previous keys, set the new one as current; rows from then on carry the new id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from services.errors import TowerError
from services.secrets_file import load_secrets

KEY_ENV, PREVIOUS_ENV = "TOWER_LEDGER_KEY", "TOWER_LEDGER_PREVIOUS_KEYS"
MIN_KEY_CHARS = 32


class MissingLedgerKey(TowerError):
    """A row was hashed with a key that is not configured here."""


def fingerprint(key: str) -> str:
    return hashlib.sha256(("tower-ledger-key\x1f" + key).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class LedgerKeys:
    current: str | None
    by_id: dict[str, str]

    @property
    def current_id(self) -> str | None:
        return None if self.current is None else fingerprint(self.current)

    def sign(self, key_id: str, text: str) -> str:
        key = self.by_id.get(key_id)
        if key is None:
            raise MissingLedgerKey(f"Ledger key {key_id} is not configured here.",
                                   f"Set {KEY_ENV} or {PREVIOUS_ENV} to the key that signed these rows.")
        return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def _check(key: str, where: str) -> str:
    if len(key) < MIN_KEY_CHARS:
        raise TowerError(f"The ledger key in {where} is shorter than {MIN_KEY_CHARS} characters.",
                         "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return key


def load_keys() -> LedgerKeys:
    """The configured keys (none: plain SHA-256, as before keys existed)."""
    section = load_secrets().get("governance") or {}
    current = os.environ.get(KEY_ENV, "").strip() or str(section.get("ledger_key") or "").strip() or None
    previous_env = [k.strip() for k in os.environ.get(PREVIOUS_ENV, "").split(",") if k.strip()]
    previous = previous_env or [str(k).strip() for k in section.get("ledger_previous_keys") or [] if str(k).strip()]
    keys = ([_check(current, KEY_ENV)] if current else []) + [_check(k, PREVIOUS_ENV) for k in previous]
    return LedgerKeys(current, {fingerprint(k): k for k in keys})
