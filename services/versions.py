"""Model versions as the registry names them: one canonical spelling, so "03" and "3" never differ."""

from __future__ import annotations

from services.errors import InvalidInput

MAX_VERSION_DIGITS = 18  # MLflow versions are 64-bit integers


def canonical_version(value: object) -> str:
    """A model version as the registry names it: a positive integer in canonical form ("3").

    "03", " 3", "3.0", "+3" and non-ASCII digits ("٣") are refused, not repaired: two spellings of one
    version must never open two requests, and a silent rewrite would hide a caller's mistake.
    """
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) and not isinstance(value, bool) \
        else None
    if text is None:
        raise InvalidInput(f"A model version must be a whole number, got {type(value).__name__}.")
    ok = (0 < len(text) <= MAX_VERSION_DIGITS and text.isascii() and text.isdigit() and text[0] != "0")
    if ok:
        return text
    shown = text if len(text) <= 40 else text[:40] + "…"
    meant = intended_version(text)
    suggestion = f" Write it as {meant}." if meant else ""
    raise InvalidInput(f"Version {shown!r} is not in canonical form: a version is a positive whole number "
                       f"written in ASCII digits without sign, spaces or leading zeros.{suggestion}")


def intended_version(text: str) -> str | None:
    """The canonical version another spelling means ("03", " 3", "+3", "3.0", "٣" → "3"); None when
    it names no positive whole number. For messages and for migrating rows, never to accept input."""
    stripped = text.strip().lstrip("+")
    try:
        number = float(stripped) if stripped.isascii() else int(stripped)
        if number >= 1 and number == int(number) and len(str(int(number))) <= MAX_VERSION_DIGITS:
            return str(int(number))
    except (ValueError, OverflowError):
        pass
    return None
