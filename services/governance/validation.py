"""Checks on the free text users give (reasons, comments): stored exactly, or refused with a reason.

Text is never rewritten: unicode, right-to-left and zero-width characters, markdown and HTML are
kept byte for byte (pages render them inert). Refused are only what no store can keep exactly:
NUL characters (PostgreSQL text cannot hold them) and lone surrogates (not encodable as UTF-8).
"""

from __future__ import annotations

from services.errors import InvalidInput
from services.versions import canonical_version

__all__ = ["MAX_TEXT_CHARS", "InvalidInput", "canonical_version", "check_text"]

MAX_TEXT_CHARS = 1_000_000


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
