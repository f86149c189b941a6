"""Errors of the kernel client: the server's (or a platform's) message, as a Python exception."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model import (
    FieldError,
    InvalidRequest,
)

if TYPE_CHECKING:
    import httpx


class PlannerError(RuntimeError):
    """The planner or a platform could not do what was asked; the message says why.

    ``status`` is the HTTP-style status (404 unknown platform or session, 409 not possible in this
    phase, 502 the platform failed, 504 it did not answer in time), ``field`` the request field at
    fault where there is one, ``platform`` the platform concerned.
    """

    def __init__(
        self, message: str, *, status: int | None = None, field: str | None = None, platform: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.platform = platform


class PlannerTimeout(PlannerError, TimeoutError):
    """``wait`` ran out of time before the session reached the phase it was waiting for."""


# ------------------------------------------------------------------------------------ discovery


def error_from_document(status: int, document: Any, fallback: str) -> Exception:
    """The exception for an error answer: InvalidRequest for a bad request, else PlannerError."""
    if not isinstance(document, dict) or not isinstance(document.get("message"), str):
        return PlannerError(fallback, status=status)
    errors = document.get("errors")
    if status == 400 and isinstance(errors, list) and errors:
        fields = [
            FieldError(str(item.get("field") or ""), str(item.get("message") or ""))
            for item in errors
            if isinstance(item, dict)
        ]
        if fields:
            return InvalidRequest(fields)
    field = document.get("field") if isinstance(document.get("field"), str) else None
    platform = document.get("platform") if isinstance(document.get("platform"), str) else None
    return PlannerError(document["message"], status=status, field=field, platform=platform)


#: The most of an error answer's body that is read (an error body is a sentence or two of JSON).
MAX_ERROR_BODY = 64 * 1024


def raise_for_status(answer: httpx.Response, fallback: str) -> None:
    """A 4xx/5xx answer as the exception its JSON body describes (``fallback`` when it has none)."""
    if answer.status_code < 400:
        return
    import json

    import httpx

    try:
        body = bytearray()
        for chunk in answer.iter_bytes():  # a streamed answer is read here; a read one is replayed
            body.extend(chunk)
            if len(body) > MAX_ERROR_BODY:
                break
        document = json.loads(bytes(body)) if len(body) <= MAX_ERROR_BODY else None
    except (ValueError, httpx.HTTPError, httpx.StreamError):
        document = None
    finally:
        answer.close()
    raise error_from_document(answer.status_code, document, fallback)
