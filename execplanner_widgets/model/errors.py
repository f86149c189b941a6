"""Errors a scientist can act on: which field, what was wrong, what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

__all__ = ["FieldError", "InvalidRequest", "from_validation_error"]


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, e.g. ``compute.memory.min``: "unknown size unit 'gb2'"."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidRequest(ValueError):
    """A document that cannot be understood. ``errors`` lists each field and what was wrong."""

    def __init__(self, errors: list[FieldError], what: str = "request") -> None:
        self.errors = errors
        self.what = what
        lines = [f"  {error.field}: {error.message}" if error.field else f"  {error.message}" for error in errors]
        plural = "problem" if len(errors) == 1 else "problems"
        super().__init__(f"The {what} has {len(errors)} {plural}:\n" + "\n".join(lines))

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of a 400 answer: a message and the list of fields."""
        first = self.errors[0] if self.errors else None
        summary = f"{first.field}: {first.message}" if first and first.field else (first.message if first else "")
        return {
            "message": f"Invalid {self.what}: {summary}",
            "field": first.field if first else None,
            "errors": [error.to_dict() for error in self.errors],
        }


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(item, str) and (item.startswith("function-") or item in {"simple", "generic"} or "/" in item):
            continue  # discriminator tags and validator wrappers mean nothing to a user
        elif item in {
            "jupyter-notebook",
            "docker-container",
            "singularity-container",
            "python-script",
            "s3",
            "ivoa",
            "rucio",
            "skao",
        }:
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error.get("type") == "missing":
        return "this field is required"
    if error.get("type") == "extra_forbidden":
        return "this field is not allowed here"
    if error.get("type") == "literal_error" and "kind" in tuple(error.get("loc", ())):
        return f"unexpected kind {error.get('input')!r}"
    return message


def from_validation_error(error: ValidationError, *, prefix: str = "", what: str = "request") -> InvalidRequest:
    """Turn pydantic's error list into an :class:`InvalidRequest` with dotted field names."""
    fields: list[FieldError] = []
    seen: set[tuple[str, str]] = set()
    for item in error.errors():
        field = _location(tuple(item.get("loc", ())))
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        message = _message(item)
        if (field, message) not in seen:
            seen.add((field, message))
            fields.append(FieldError(field, message))
    return InvalidRequest(fields, what)
