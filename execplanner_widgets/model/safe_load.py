"""Read JSON or YAML from people we do not trust, with every limit checked before it can hurt.

A few hundred bytes of YAML anchors (``&a``/``*a``) expand to gigabytes; a thousand nested brackets
exhaust the recursion limit; ``Infinity`` seconds, ``P99999999999D`` or a start in year 9999 overflow
Python's dates deep inside the booking code; a lone surrogate or NUL cannot be written to the
database or to XML. Each of those reached the server as a 500 or an out-of-memory kill. Here they
are refused while reading, with an :class:`InvalidRequest` naming the field (or the line and
column), in time and memory bounded by the document's size:

* the document is at most ``max_bytes`` long and must be UTF-8;
* YAML aliases are refused outright (a task description never needs them) and YAML timestamps stay
  strings, so JSON and YAML give the same values and date checks see both;
* nesting is at most ``max_depth`` levels and a document has at most ``max_nodes`` values;
* numbers are finite and within :data:`MAX_NUMBER`; under a duration-like key (``duration``,
  ``lifetime``, ``ttl``, ...) a number of seconds is at most :data:`MAX_DURATION_SECONDS`;
* strings that are ISO 8601 dates, intervals or durations are range-checked (years
  :data:`YEARS`, durations at most :data:`MAX_DURATION_SECONDS`), and numbers written as size
  strings (``"99999999999999999999Gi"``) within :data:`MAX_NUMBER`;
* no string or key holds NUL or a lone surrogate.

Only these loaders are meant for untrusted input; they import nothing outside the model layer.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import yaml

from .errors import FieldError, InvalidRequest

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT_BYTES",
    "MAX_DURATION_SECONDS",
    "MAX_NODES",
    "MAX_NUMBER",
    "YEARS",
    "check_value",
    "load_json",
    "load_text",
    "load_yaml",
]

#: A task description is a few kilobytes; a platforms file a few tens.
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
#: The deepest real document (a 2022-note lease) nests about 8 levels.
MAX_DEPTH = 64
#: Values (mappings, lists, scalars) in one document.
MAX_NODES = 200_000
#: Largest magnitude of any number: well inside SQLite's 64-bit integers even as bytes of GiB.
MAX_NUMBER = 10**15
#: Longest duration anyone may write (1,000 years): a start in :data:`YEARS` plus this stays a date.
MAX_DURATION_SECONDS = 1000 * 365.25 * 86400
#: Years an ISO 8601 date may name.
YEARS = (1900, 2999)

_DURATION_KEYS = ("duration", "lifetime", "ttl", "horizon", "timeout", "seconds", "retention", "preparation")

_ISO_DURATION = re.compile(
    r"P(?!$)(?:(?P<y>\d+(?:[.,]\d+)?)Y)?(?:(?P<mo>\d+(?:[.,]\d+)?)M)?(?:(?P<w>\d+(?:[.,]\d+)?)W)?"
    r"(?:(?P<d>\d+(?:[.,]\d+)?)D)?(?:T(?=\d)(?:(?P<h>\d+(?:[.,]\d+)?)H)?(?:(?P<m>\d+(?:[.,]\d+)?)M)?"
    r"(?:(?P<s>\d+(?:[.,]\d+)?)S)?)?",
    re.IGNORECASE,
)
_SECONDS = {"y": 365.25 * 86400, "mo": 31 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DATE = re.compile(
    r"[+-]?(?:(?P<year>\d{4,})-\d{2}-\d{2}(?:[T ][0-9:.,]+)?|(?P<compact>\d{4})\d{4}T\d{6})(?:Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_SIZE = re.compile(r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*[a-zA-Z]{0,3}\s*")


def _where(path: tuple[Any, ...]) -> str:
    """``schedule.requested.duration`` or ``data[3].location`` for a path of keys and indexes."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _refuse(path: tuple[Any, ...], message: str, what: str) -> InvalidRequest:
    return InvalidRequest([FieldError(_where(path), message)], what)


def _duration_seconds(text: str) -> float | None:
    """Seconds an ISO 8601 duration string stands for, or ``None`` if it is not one."""
    match = _ISO_DURATION.fullmatch(text)
    if not match or not any(match.groupdict().values()):
        return None
    total = 0.0
    for key, value in match.groupdict().items():
        if value:
            if len(value) > 20:
                return math.inf
            total += float(value.replace(",", ".")) * _SECONDS[key]
    return total


def _check_date(text: str) -> str | None:
    match = _DATE.fullmatch(text)
    if not match:
        return None
    digits = match["year"] or match["compact"]
    year = int(digits) if len(digits) < 10 else 10**9
    if text.startswith("-") or not YEARS[0] <= year <= YEARS[1]:
        return f"the date {text[:40]!r} is out of range: dates must fall in the years {YEARS[0]} to {YEARS[1]}"
    return None


def _check_string(text: str, path: tuple[Any, ...], what: str, *, is_key: bool = False) -> None:
    if "\x00" in text:
        raise _refuse(
            path, f"{'a key' if is_key else 'the text'} holds a NUL character (\\x00), which is not allowed", what
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise _refuse(
            path,
            f"the text holds a lone surrogate ({text[error.start]!r} at character {error.start}), not valid Unicode",
            what,
        ) from None
    if is_key or len(text) > 200:
        return
    stripped = text.strip()
    if not stripped:
        return
    first = stripped[0]
    if first in "Pp":
        seconds = _duration_seconds(stripped)
        if seconds is not None and not seconds <= MAX_DURATION_SECONDS:
            raise _refuse(path, f"the duration {stripped[:40]!r} is longer than 1,000 years", what)
        return
    if first.isdigit() or first in "+-.":
        for part in stripped.split("/", 1):
            part = part.strip()
            if part[:1] in ("P", "p"):
                seconds = _duration_seconds(part)
                if seconds is not None and not seconds <= MAX_DURATION_SECONDS:
                    raise _refuse(path, f"the duration {part[:40]!r} is longer than 1,000 years", what)
                continue
            problem = _check_date(part)
            if problem:
                raise _refuse(path, problem, what)
        size = _SIZE.fullmatch(stripped)
        if size:
            try:
                number = float(stripped.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ").strip())
            except ValueError:
                return
            if not abs(number) <= MAX_NUMBER:
                raise _refuse(path, f"the number {stripped[:40]!r} is out of range (at most {MAX_NUMBER:.0e})", what)


def _check_number(value: float, path: tuple[Any, ...], what: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _refuse(path, f"{value!r} is not a finite number", what)
    if not -MAX_NUMBER <= value <= MAX_NUMBER:
        text = (
            f"{value:.3g}"
            if isinstance(value, float)
            else (str(value) if value.bit_length() < 200 else "a huge number")
        )
        raise _refuse(path, f"the number {text} is out of range (at most {MAX_NUMBER:.0e} in magnitude)", what)
    keys = [part.lower() for part in path if isinstance(part, str)]
    in_duration = bool(keys) and any(word in key for key in keys[-2:] for word in _DURATION_KEYS)
    if in_duration and not abs(value) <= MAX_DURATION_SECONDS:
        raise _refuse(path, f"{value:.3g} seconds is longer than 1,000 years", what)


def _check_time(value: datetime.date | datetime.timedelta, path: tuple[Any, ...], what: str) -> None:
    if isinstance(value, datetime.timedelta):
        if abs(value.total_seconds()) > MAX_DURATION_SECONDS:
            raise _refuse(path, "the duration is longer than 1,000 years", what)
    elif not YEARS[0] <= value.year <= YEARS[1]:
        raise _refuse(
            path,
            f"the date {value.isoformat()} is out of range: dates must fall in the years {YEARS[0]} to {YEARS[1]}",
            what,
        )


def check_value(value: Any, *, what: str = "request", max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Walk ``value`` (what JSON or YAML gave) without recursion and raise on the first value out of bounds."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    nodes = 0
    while stack:
        item, path = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise _refuse(path, f"the document has more than {max_nodes} values", what)
        if len(path) > max_depth:
            raise _refuse(path[:8] + ("...",), f"the document nests deeper than {max_depth} levels", what)
        if isinstance(item, str):
            _check_string(item, path, what)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, (int, float)):
            _check_number(item, path, what)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    if isinstance(key, (int, float)) and not isinstance(key, bool):
                        _check_number(key, path, what)
                    key = str(key)
                _check_string(key, path + (key,), what, is_key=True)
                stack.append((child, path + (key,)))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, path + (index,)) for index, child in enumerate(item))
        elif isinstance(item, (datetime.date, datetime.timedelta)):  # from Python callers, not from text
            _check_time(item, path, what)
        else:  # YAML's !!binary, !!set ...: a task description holds none of them
            raise _refuse(path, f"a {type(item).__name__} value is not allowed here", what)


# ------------------------------------------------------------------------------------------ YAML


def _resolvers_without_timestamps() -> dict[Any, Any]:
    resolvers: dict[Any, Any] = {}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        resolvers[first] = [(tag, regexp) for tag, regexp in entries if tag != "tag:yaml.org,2002:timestamp"]
    return resolvers


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and deep nesting while composing, before anything is built."""

    yaml_implicit_resolvers = _resolvers_without_timestamps()
    max_depth = MAX_DEPTH
    max_nodes = MAX_NODES

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not accepted in a request; write the value out", event.start_mark
            )
        self._nodes += 1
        if self._nodes > self.max_nodes:
            raise yaml.composer.ComposerError(
                None, None, f"the document has more than {self.max_nodes} values", self.peek_event().start_mark
            )
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise yaml.composer.ComposerError(
                    None, None, f"the document nests deeper than {self.max_depth} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_BRACKETS = re.compile(r"[\[\]{}]")


def _check_flow_depth(text: str, what: str, max_depth: int) -> None:
    """Refuse deep ``[[[[`` before PyYAML's scanner sees it (its cost grows with the square of the depth).

    Brackets inside quoted strings are counted too, so this only refuses what could be that deep."""
    if text.count("[") + text.count("{") <= max_depth:
        return
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                line = text.count("\n", 0, match.start()) + 1
                raise InvalidRequest(
                    [FieldError(f"line {line}", f"the document nests deeper than {max_depth} levels")], what
                )
        else:
            depth = max(0, depth - 1)


def _yaml_error(error: Exception, what: str, origin: str) -> InvalidRequest:
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return InvalidRequest([FieldError(where, f"{origin} is not valid YAML: {problem}")], what)


def load_yaml(
    text: str,
    *,
    what: str = "request",
    origin: str = "the text",
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """One YAML document, with aliases refused and nesting and size bounded while it is composed."""
    _check_flow_depth(text, what, max_depth)
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as error:  # the reader refuses control characters before any parsing
        raise _yaml_error(error, what, origin) from None
    loader.max_depth, loader.max_nodes = max_depth, max_nodes
    try:
        value = loader.get_single_data()
    except yaml.YAMLError as error:
        raise _yaml_error(error, what, origin) from None
    except (ValueError, OverflowError, RecursionError, TypeError) as error:  # e.g. an int of 5,000 digits
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidRequest(
            [FieldError("", f"{origin} holds a value that cannot be read: {message[:200]}")], what
        ) from None
    finally:
        loader.dispose()
    check_value(value, what=what, max_depth=max_depth, max_nodes=max_nodes)
    return value


# ------------------------------------------------------------------------------------------ JSON


def load_json(
    text: str,
    *,
    what: str = "request",
    origin: str = "the text",
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """One JSON document; ``Infinity``/``NaN`` and out-of-range values are refused naming the field."""
    try:
        value = json.loads(text, parse_constant=float)
    except RecursionError:
        raise InvalidRequest([FieldError("", f"the document nests deeper than {max_depth} levels")], what) from None
    except json.JSONDecodeError as error:
        raise InvalidRequest(
            [FieldError(f"line {error.lineno}, column {error.colno}", f"{origin} is not valid JSON: {error.msg}")], what
        ) from None
    except ValueError as error:  # an integer of more than 4,300 digits
        raise InvalidRequest([FieldError("", f"{origin} holds a number that cannot be read: {error}")], what) from None
    check_value(value, what=what, max_depth=max_depth, max_nodes=max_nodes)
    return value


def _decode(source: str | bytes, what: str, max_bytes: int) -> str:
    if isinstance(source, bytes):
        if len(source) > max_bytes:
            raise InvalidRequest([FieldError("", f"the document is larger than {max_bytes} bytes")], what)
        try:
            return source.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidRequest(
                [FieldError(f"byte {error.start}", f"the document is not UTF-8 text ({error.reason})")], what
            ) from None
    if len(source) > max_bytes or len(source.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidRequest([FieldError("", f"the document is larger than {max_bytes} bytes")], what)
    return source


def load_text(
    source: str | bytes,
    *,
    what: str = "request",
    origin: str = "the text",
    max_bytes: int = MAX_DOCUMENT_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """JSON if it parses as JSON, else YAML; every limit above applies to both.

    A document that looks like JSON (starts with ``{`` or ``[``) and is refused by a limit is not
    retried as YAML: the limit's message is the useful one.
    """
    text = _decode(source, what, max_bytes)
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped[:1] in ("{", "["):
        try:
            return load_json(stripped, what=what, origin=origin, max_depth=max_depth, max_nodes=max_nodes)
        except InvalidRequest as error:
            if not error.errors or "is not valid JSON" not in error.errors[0].message:
                raise
    return load_yaml(text, what=what, origin=origin, max_depth=max_depth, max_nodes=max_nodes)
