"""Service-account tokens: random secrets, stored only as salted scrypt hashes.

A hash reads ``scrypt$<n>$<r>$<p>$<salt base64>$<hash base64>`` (the parameters travel with it,
so they can be raised later without invalidating stored hashes). ``verify_token`` recomputes the
hash with the stored salt and parameters and compares in constant time.

    tower token new     # a new random token and its hash
    tower token hash    # the hash of a token read from stdin
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from services.errors import ConfigError

SCHEME = "scrypt"
N, R, P = 16384, 8, 1  # scrypt's interactive-login parameters (about 16 MiB, tens of ms)
SALT_BYTES, HASH_BYTES = 16, 32
# Bounds on the parameters a stored hash may ask for, so a bad value cannot exhaust the machine.
_MAX_N, _MAX_R, _MAX_P = 2**17, 16, 4
_MAXMEM = 256 * 1024 * 1024


def new_token() -> str:
    """A new random token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=_MAXMEM)


def hash_token(token: str) -> str:
    """The salted hash of ``token`` to store in tower.yaml or the secrets file."""
    if not token:
        raise ConfigError("An empty token cannot be hashed.")
    salt = secrets.token_bytes(SALT_BYTES)
    return f"{SCHEME}${N}${R}${P}${_b64(salt)}${_b64(_scrypt(token, salt, N, R, P, HASH_BYTES))}"


def parse_token_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    """(n, r, p, salt, hash) of a stored hash; ValueError saying what is wrong with it."""
    if not isinstance(stored, str):
        raise ValueError("a token hash must be a string")
    parts = stored.strip().split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(f"a token hash reads {SCHEME}$<n>$<r>$<p>$<salt>$<hash> "
                         "(make one with `tower token hash`)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("a token hash has non-numeric parameters or bad base64") from None
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        raise ValueError(f"a token hash's scrypt parameters are out of bounds (n a power of two <= {_MAX_N}, "
                         f"r <= {_MAX_R}, p <= {_MAX_P})")
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("a token hash's salt or hash is too short")
    return n, r, p, salt, digest


def is_token_hash(stored: object) -> bool:
    try:
        parse_token_hash(stored)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


def verify_token(token: str, stored: str) -> bool:
    """Whether ``token`` hashes to ``stored``; False for an empty token or a malformed hash."""
    if not token or not isinstance(token, str):
        return False
    try:
        n, r, p, salt, digest = parse_token_hash(stored)
    except ValueError:
        return False
    return hmac.compare_digest(_scrypt(token, salt, n, r, p, len(digest)), digest)
