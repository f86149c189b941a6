"""What an offer, session or job identifier may look like, checked in one place.

Identifiers come from platforms and from users and end up in URL paths and file names: only a
plain name is allowed, so nothing can change the meaning of a path ('/', '.', '%', '@', ':' are
all refused). UUIDs and UWS job ids fit.
"""

from __future__ import annotations

import re

from .errors import FieldError, InvalidRequest

__all__ = ["IDENTIFIER_PATTERN", "SAFE_ID", "check_identifier", "is_identifier"]

#: The pattern as text (for OpenAPI ``pattern`` and JSON schema).
IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"
#: The compiled pattern.
SAFE_ID = re.compile(IDENTIFIER_PATTERN)


def is_identifier(value: object) -> bool:
    """True if ``value`` is a string that is a plain identifier."""
    return isinstance(value, str) and SAFE_ID.fullmatch(value) is not None  # fullmatch: "$" would let "id\n" pass


def check_identifier(value: str, field: str) -> str:
    """``value`` if it is a plain identifier; else an :class:`InvalidRequest` naming ``field``."""
    if not is_identifier(value):
        text = value if isinstance(value, str) else repr(value)
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidRequest(
            [FieldError(field, f"{shown!r} is not an identifier (letters, digits, '-' and '_', up to 128)")]
        )
    return value
