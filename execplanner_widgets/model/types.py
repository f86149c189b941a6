"""Annotated pydantic types for the values ExecutionBroker v1.0 writes as strings.

In Python a duration is a :class:`~datetime.timedelta`, an instant an aware UTC
:class:`~datetime.datetime` and a start window a :class:`TimeInterval`; on the wire they are ISO 8601
strings. Keeping the conversion in the types means no model has to remember it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, TypeAdapter, WithJsonSchema

from .units import format_duration, parse_duration

__all__ = ["Duration", "GiB", "Instant", "Interval", "TimeInterval", "format_instant", "parse_instant", "utcnow"]

_DATETIME = TypeAdapter(datetime)


def utcnow() -> datetime:
    """The current time, aware and in UTC, truncated to whole seconds as the wire carries them."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def parse_instant(value: Any) -> datetime:
    """Parse an ISO 8601 instant; a time without a zone is taken as UTC (the broker's convention)."""
    if isinstance(value, str):
        text = value.strip()
        # The 2022 note wrote compact dates: 20220424T120000
        if len(text) == 15 and text[8] == "T" and text.replace("T", "").isdigit():
            text = f"{text[0:4]}-{text[4:6]}-{text[6:8]}T{text[9:11]}:{text[11:13]}:{text[13:15]}"
        value = text
    try:
        parsed = _DATETIME.validate_python(value)
    except Exception as error:
        raise ValueError(f"expected an ISO 8601 date and time such as '2026-11-22T14:00:00Z', got {value!r}") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_instant(value: datetime) -> str:
    """``2026-11-22T14:00:00Z``: whole seconds unless sub-second precision is really there."""
    value = value.astimezone(timezone.utc)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeInterval:
    """An ISO 8601 interval: a start and either an end or a duration.

    ExecutionBroker writes requested and offered start windows this way:
    ``2025-11-25T05:14:00Z/PT0S`` is "exactly then", ``2025-11-25T05:14:00Z/PT2H`` is "any time in
    the two hours from then".
    """

    start: datetime
    end: datetime

    @classmethod
    def parse(cls, value: Any) -> TimeInterval:
        if type(value) is not str:
            if isinstance(value, TimeInterval):
                return value
            if isinstance(value, datetime):
                start = parse_instant(value)
                return cls(start, start)
            if not isinstance(value, str):
                raise ValueError(f"expected an ISO 8601 interval such as '2026-11-22T14:00:00Z/PT2H', got {value!r}")
        text = value.strip()
        first, slash, second = text.partition("/")
        if not slash:
            start = parse_instant(text)
            return cls(start, start)
        if first.startswith(("P", "p")):
            end = parse_instant(second)
            return cls(end - parse_duration(first), end)
        start = parse_instant(first)
        if second.startswith(("P", "p")):
            return cls(start, start + parse_duration(second))
        end = parse_instant(second)
        if end < start:
            raise ValueError(f"the interval {value!r} ends before it starts")
        return cls(start, end)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def __str__(self) -> str:
        return f"{format_instant(self.start)}/{format_duration(self.duration)}"


def _interval(value: Any) -> TimeInterval:
    return TimeInterval.parse(value)


#: Written by pydantic's own serialiser, which writes an instant in UTC exactly as
#: :func:`format_instant` does (``...Z``, microseconds only when there are some); every instant a
#: model reads is in UTC, and one written in another zone keeps its offset.
Instant = Annotated[
    datetime,
    BeforeValidator(parse_instant),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

Interval = Annotated[
    TimeInterval,
    BeforeValidator(_interval),
    PlainSerializer(str, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "ISO 8601 interval, e.g. 2026-11-22T14:00:00Z/PT2H"}),
]

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "duration", "examples": ["PT9H30M", "P2D"]}),
]

#: A whole number of GiB. Sizes with units (``8Gi``, ``512Mi``) are read into it by the model that
#: holds it (:class:`~execplanner_widgets.model.components.SizeRange`), with its ``units`` field.
GiB = Annotated[
    int,
    Field(ge=0),
    WithJsonSchema({"type": "integer", "minimum": 0, "description": "GiB (2^30 bytes)"}),
]
