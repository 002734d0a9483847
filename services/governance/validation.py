"""Checks on the free text users give (reasons, comments): stored exactly, or refused with a reason.

Text is never rewritten: unicode, right-to-left and zero-width characters, markdown and HTML are
kept byte for byte (pages render them inert). Refused are only what no store can keep exactly:
NUL characters (PostgreSQL text cannot hold them) and lone surrogates (not encodable as UTF-8).
"""

from __future__ import annotations

from services.errors import TowerError

MAX_TEXT_CHARS = 1_000_000


class InvalidInput(TowerError):
    """A request or decision is missing something it needs, or carries unusable input."""


def check_text(value: str | None, what: str, *, required: bool) -> str:
    """``value`` unchanged if it may be stored; InvalidInput naming ``what`` otherwise."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"The {what} must be text.")
    if required and not value.strip():
        raise InvalidInput(f"A {what} is required.", "Write why, in a sentence or two.")
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidInput(f"The {what} is {len(value):,} characters long; at most {MAX_TEXT_CHARS:,} are kept.")
    if "\x00" in value:
        raise InvalidInput(f"The {what} contains a NUL character, which cannot be stored.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"The {what} contains characters that are not valid unicode text.") from exc
    return value


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
    stripped = text.strip().lstrip("+")
    suggestion = ""
    try:
        number = float(stripped) if stripped.isascii() else int(stripped)
        if number >= 1 and number == int(number) and len(str(int(number))) <= MAX_VERSION_DIGITS:
            suggestion = f" Write it as {int(number)}."
    except (ValueError, OverflowError):
        pass
    raise InvalidInput(f"Version {shown!r} is not in canonical form: a version is a positive whole number "
                       f"written in ASCII digits without sign, spaces or leading zeros.{suggestion}")
