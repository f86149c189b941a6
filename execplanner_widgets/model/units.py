"""Sizes and durations as people write them, converted to what ExecutionBroker v1.0 puts on the wire.

ExecutionBroker v1.0 counts memory and storage in whole GiB and writes durations in ISO 8601.
Scientists write ``8G``, ``512Mi``, ``1.5T``, ``10m`` or ``9h30m``. The functions here are the
single place where one becomes the other, so every dialect reader, the widgets and the command line
agree on what a unit means.

Sizes are converted honestly: a decimal gigabyte (``8G`` = 8 * 10**9 bytes) is 7.45 GiB, which is
rounded *up* to 8 so that a minimum the user needs is always met. Maxima are rounded up too, so a
request such as ``min: 8G, max: 8G`` never turns into ``min > max``.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

__all__ = [
    "GIB",
    "UnitError",
    "format_duration",
    "format_size",
    "human_duration",
    "parse_duration",
    "parse_size_gib",
]

GIB = 1024**3

#: Multipliers in bytes. Single letters (``G``) and ``GB`` are decimal, ``Gi`` and ``GiB`` binary,
#: as in Kubernetes quantities and the ExecutionBroker ``ComputeUnitsEnum``.
_SIZE_UNITS: dict[str, int] = {
    "": GIB,  # a bare number is GiB, the ExecutionBroker unit
    "b": 1,
    "k": 10**3, "kb": 10**3, "ki": 2**10, "kib": 2**10,
    "m": 10**6, "mb": 10**6, "mi": 2**20, "mib": 2**20,
    "g": 10**9, "gb": 10**9, "gi": 2**30, "gib": 2**30,
    "t": 10**12, "tb": 10**12, "ti": 2**40, "tib": 2**40,
    "p": 10**15, "pb": 10**15, "pi": 2**50, "pib": 2**50,
}  # fmt: skip

_SIZE_RE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(?P<unit>[a-zA-Z]*)\s*$")

_SHORTHAND_RE = re.compile(
    r"^\s*(?:(?P<w>\d+(?:\.\d+)?)\s*w)?\s*(?:(?P<d>\d+(?:\.\d+)?)\s*d)?\s*(?:(?P<h>\d+(?:\.\d+)?)\s*h)?"
    r"\s*(?:(?P<m>\d+(?:\.\d+)?)\s*m(?:in)?)?\s*(?:(?P<s>\d+(?:\.\d+)?)\s*s)?\s*$",
    re.IGNORECASE,
)

_ISO_DURATION_RE = re.compile(
    r"^P(?!$)(?:(?P<w>\d+(?:[.,]\d+)?)W)?(?:(?P<d>\d+(?:[.,]\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?$",
    re.IGNORECASE,
)


#: ISO 8601 durations with years or months (``P1Y``, ``P2M``, ``P1M2DT3H``): calendar-dependent.
_CALENDAR_DURATION_RE = re.compile(r"^P(?:\d+(?:[.,]\d+)?Y)?(?:\d+(?:[.,]\d+)?M)", re.IGNORECASE)
_CALENDAR_YEARS_RE = re.compile(r"^P\d+(?:[.,]\d+)?Y", re.IGNORECASE)


#: Durations in words, as people type them in a form: ``2 hours``, ``90 minutes``, ``1 day 6 hours``.
_WORD_UNITS = {
    "w": ("w", "week", "weeks", "wk", "wks"),
    "d": ("d", "day", "days"),
    "h": ("h", "hr", "hrs", "hour", "hours"),
    "m": ("m", "min", "mins", "minute", "minutes"),
    "s": ("s", "sec", "secs", "second", "seconds"),
}
_WORD_LOOKUP = {word: key for key, words in _WORD_UNITS.items() for word in words}
_WORD_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)
_WORDS_RE = re.compile(r"^\s*(?:\d+(?:\.\d+)?\s*[a-z]+(?:\s*,\s*|\s+and\s+|\s*))+$", re.IGNORECASE)
_CALENDAR_WORDS_RE = re.compile(r"\d\s*(?:months?|mo|mos|years?|yrs?|y)\b", re.IGNORECASE)


def _duration_words(text: str) -> dict[str, float] | None:
    """``2 hours``, ``1 day 6 hours``, ``1 hour and 30 minutes`` as parts, or None if not in words."""
    if not _WORDS_RE.match(text):
        return None
    parts = {key: 0.0 for key in _WORD_UNITS}
    for number, word in _WORD_PART_RE.findall(text):
        key = _WORD_LOOKUP.get(word.lower())
        if key is None:
            return None
        parts[key] += float(number)
    return parts


class UnitError(ValueError):
    """A size or duration that cannot be understood; the message says what was expected."""


def parse_size_gib(value: object, *, units: str | None = None) -> int:
    """Return ``value`` as a whole number of GiB, rounded up.

    Accepts integers (already GiB), numbers with an explicit ``units`` (``units="MiB"``, as the
    ExecutionBroker ``MinMaxComputeLong`` carries), and strings such as ``"32Gi"``, ``"8G"``,
    ``"512Mi"``, ``"1.5T"`` or ``"64"``.
    """
    # exact types: a bool (equal to 0 or 1 as a cache key) or a float takes the long way
    if type(value) is int or (type(value) is str and len(value) <= _CACHED_TEXT):
        return _size_cached(value, units)
    return _size(value, units)


def _size(value: object, units: str | None) -> int:
    """:func:`parse_size_gib`."""
    if isinstance(value, bool):
        raise UnitError(f"expected a size such as 8, '8Gi' or '512Mi', got {value!r}")
    if isinstance(value, (int, float, Decimal)):
        number = Decimal(str(value))
        unit = (units or "").strip().lower()
    elif isinstance(value, str):
        match = _SIZE_RE.match(value)
        if not match:
            raise UnitError(f"expected a size such as 8, '8Gi', '512Mi' or '1.5T', got {value!r}")
        number = Decimal(match["number"])
        unit = match["unit"].lower() or (units or "").strip().lower()
    else:
        raise UnitError(f"expected a size such as 8, '8Gi' or '512Mi', got {value!r}")
    if unit not in _SIZE_UNITS:
        known = "Mi, Gi, Ti, M, G, T (and MiB, GiB, MB, GB ...)"
        raise UnitError(f"unknown size unit {unit!r} in {value!r}; use one of {known}")
    if number.is_nan() or number.is_infinite():
        raise UnitError(f"expected a finite size, got {value!r}")
    if number < 0:
        raise UnitError(f"a size cannot be negative, got {value!r}")
    size_bytes = number * _SIZE_UNITS[unit]
    gib = size_bytes / GIB
    return int(math.ceil(gib))


_size_cached = functools.lru_cache(maxsize=1024)(_size)


def format_size(gib: int | None) -> str:
    """Render a GiB count for people: ``8 GiB``, ``2 TiB``."""
    if gib is None:
        return "-"
    if gib >= 1024 and gib % 1024 == 0:
        return f"{gib // 1024} TiB"
    return f"{gib} GiB"


def _to_float(text: str | None) -> float:
    if not text:
        return 0.0
    try:
        return float(Decimal(text.replace(",", ".")))
    except InvalidOperation as error:  # pragma: no cover - the regexes admit digits only
        raise UnitError(f"not a number: {text!r}") from error


def parse_duration(value: object) -> timedelta:
    """Return ``value`` as a :class:`~datetime.timedelta`.

    Accepts ISO 8601 durations (``PT9H30M``, ``P2D``, ``P1W``), shorthand (``10m``, ``9h30m``,
    ``2d``, ``90s``), words (``2 hours``, ``90 minutes``, ``1 day and 6 hours``), a number of
    seconds, or a timedelta. Years and months are refused, saying why: their length depends on the
    calendar, and no booking system should guess it.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise UnitError(f"expected a duration such as 'PT1H' or '9h30m', got {value!r}")
    elif isinstance(value, (int, float)):
        result = timedelta(seconds=float(value))
    elif isinstance(value, str):
        return _duration_text_cached(value) if len(value) <= _CACHED_TEXT else _duration_text(value)
    else:
        raise UnitError(f"expected a duration such as 'PT1H' or '9h30m', got {value!r}")
    if result < timedelta(0):
        raise UnitError(f"a duration cannot be negative, got {value!r}")
    return result


#: Texts up to this length are parsed once and remembered (an offer set repeats the same few
#: durations and sizes hundreds of times; a long text is rare and not worth keeping).
_CACHED_TEXT = 64


def _duration_text(value: str) -> timedelta:
    """:func:`parse_duration` of a text."""
    text = value.strip()
    match = _ISO_DURATION_RE.match(text) or _SHORTHAND_RE.match(text)
    if match and any(match.groupdict().values()):
        parts = {key: _to_float(val) for key, val in match.groupdict().items()}
    else:
        words = _duration_words(text)
        if not text or words is None or not any(words.values()):
            if _CALENDAR_DURATION_RE.match(text) or _CALENDAR_YEARS_RE.match(text) or _CALENDAR_WORDS_RE.search(text):
                raise UnitError(
                    f"durations in years or months depend on the calendar; write days or weeks instead "
                    f"(e.g. '90 days' or 'P90D'), got {value!r}"
                )
            raise UnitError(
                f"expected a duration such as '2 hours', '9h30m', '10m', '2d' or an ISO 8601 duration such as "
                f"'PT9H30M', got {value!r}"
            )
        parts = words
    result = timedelta(weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
    if result < timedelta(0):  # pragma: no cover - the patterns admit no sign
        raise UnitError(f"a duration cannot be negative, got {value!r}")
    return result


_duration_text_cached = functools.lru_cache(maxsize=1024)(_duration_text)


def format_duration(value: timedelta) -> str:
    """Render a timedelta as a canonical ISO 8601 duration (``P1DT2H``, ``PT9H30M``, ``PT0S``)."""
    total = value.total_seconds()
    if total < 0:
        raise UnitError(f"a duration cannot be negative, got {value!r}")
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "P"
    if days:
        out += f"{int(days)}D"
    time = ""
    if hours:
        time += f"{int(hours)}H"
    if minutes:
        time += f"{int(minutes)}M"
    if seconds:
        secs = f"{seconds:.6f}".rstrip("0").rstrip(".")
        time += f"{secs}S"
    if time:
        out += "T" + time
    return out if out != "P" else "PT0S"


def human_duration(value: timedelta | None) -> str:
    """Render a timedelta for people: ``9h 30m``, ``2d``, ``45s``."""
    if value is None:
        return "-"
    total = int(value.total_seconds())
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if n]
    return " ".join(parts) or "0s"
