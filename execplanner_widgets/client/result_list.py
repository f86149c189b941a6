"""Reading the proxy's answer to ``POST offers`` (a JSON list of results) while it arrives.

The proxy writes the list as platforms answer, one result per line::

    [
    {"platform": "a", ...},
    {"platform": "b", ...}
    ]

so each result is read as soon as its line is whole, by the model straight from its bytes: for
1,000 platforms, parsing each result into Python objects first and validating those again was a
tenth of the kernel's work. A list laid out any other way (another server, pretty-printed, a proxy
that re-encodes JSON) is read item by item with :class:`json.JSONDecoder`; which way is decided
by the list's first line. Either way, anything that is not a JSON list of objects raises the
error the caller gives.
"""

from __future__ import annotations

import codecs
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import ValidationError

from ..core.collector import collect_young
from ..model.results import PlatformResult

__all__ = ["read_results"]


def read_results(chunks: Iterable[bytes], not_json: Exception) -> Iterator[PlatformResult]:
    """The results in the list whose bytes arrive in ``chunks``, each as soon as it is whole."""
    chunks = iter(chunks)
    head = bytearray()
    layout = None
    for chunk in chunks:
        head += chunk
        layout = _layout(head)
        if layout is not None:
            break
    rest = itertools.chain([bytes(head)], chunks)
    if layout == "lines":
        yield from _lines(rest, not_json)
    else:
        for item in _items(rest, not_json):
            yield PlatformResult.model_validate(item)


def _layout(head: bytes | bytearray) -> str | None:
    """``"lines"`` when the list opens as the proxy writes it (``[``, then a line that is a whole
    object or the end), ``"any"`` when it does not, None while the first line is not whole yet."""
    if not b"[\n".startswith(bytes(head[:2])):
        return "any"
    start = 2
    while (end := head.find(b"\n", start)) >= 0:
        line = bytes(head[start:end]).strip()
        if line:
            whole = line == b"]" or (line.startswith(b"{") and line.rstrip(b",").endswith(b"}"))
            return "lines" if whole else "any"  # "{" alone: the list is pretty-printed
        start = end + 1
    return None


def _lines(chunks: Iterable[bytes], not_json: Exception) -> Iterator[PlatformResult]:
    """One result per line between a ``[`` line and a ``]`` line; blank lines are whitespace."""
    expect = "["  # then "item" (after "," or "["), "item or ]" (after "["), "]" (after an item), "end"
    pending = bytearray()
    for chunk in itertools.chain(chunks, [b"\n"]):  # the last line may come without its line break
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            line = bytes(pending[start:end]).strip()
            start = end + 1
            if not line:
                continue
            if expect == "[":
                if line != b"[":
                    raise not_json
                expect = "item or ]"
            elif line == b"]" and expect in ("item or ]", "]"):
                expect = "end"
            elif expect in ("item", "item or ]"):
                more = line.endswith(b",")
                yield _result(line[:-1] if more else line, not_json)
                expect = "item" if more else "]"
            else:
                raise not_json
        del pending[:start]
        collect_young()  # while the next chunk is on its way (see core.collector)
    if expect != "end" or pending.strip():
        raise not_json


def _result(line: bytes, not_json: Exception) -> PlatformResult:
    try:
        return PlatformResult.model_validate_json(line)
    except ValidationError as error:
        if any(problem["type"] == "json_invalid" for problem in error.errors()):
            raise not_json from None
        raise


def _items(chunks: Iterable[bytes], not_json: Exception) -> Iterator[Any]:
    """The items of a JSON list laid out in any way, each as soon as it has arrived whole."""
    decoder = json.JSONDecoder()
    text = codecs.getincrementaldecoder("utf-8")()
    buffer, position, expect = "", 0, "["  # expect: "[" then "item" / "," / "]"
    try:
        for chunk in chunks:
            buffer = buffer[position:] + text.decode(chunk)
            position = 0
            while True:
                position = _skip_space(buffer, position)
                if position >= len(buffer):
                    break
                char = buffer[position]
                if expect == "[":
                    if char != "[":
                        raise not_json
                    position, expect = position + 1, "item or ]"
                elif expect == "," and char == ",":
                    position, expect = position + 1, "item"
                elif expect in (",", "item or ]") and char == "]":
                    position, expect = position + 1, "end"
                elif expect in ("item", "item or ]") and char == "{":
                    try:
                        item, position = decoder.raw_decode(buffer, position)
                    except ValueError:
                        break  # not whole yet: wait for more
                    expect = ","
                    yield item
                else:
                    raise not_json
        text.decode(b"", final=True)
    except UnicodeDecodeError:
        raise not_json from None
    if expect != "end" or _skip_space(buffer, position) < len(buffer):
        raise not_json


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position
