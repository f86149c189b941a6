"""The two streaming formats of ``POST offers/stream``: newline-delimited JSON and server-sent events.

A stream carries one :class:`PlatformResult` per platform, in the order the answers arrive, so a user
interface can fill in as platforms answer. Both formats are JSON inside: a platform's text is never
written as HTML. NDJSON (``application/x-ndjson``) is one result per line and suits programs (the
kernel client reads it); SSE (``text/event-stream``) suits a browser's ``fetch`` reader, with an
``event: result`` per platform and a final ``event: end`` carrying the count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["NDJSON", "SSE", "StreamFormat", "choose_stream_format"]


@dataclass(frozen=True)
class StreamFormat:
    """How one stream format frames its items."""

    name: str
    content_type: str

    def item(self, document: bytes) -> bytes:
        """One platform's result (its JSON, which has no line break), framed."""
        if self.name == "sse":
            return b"event: result\ndata: " + document + b"\n\n"
        return document + b"\n"

    def end(self, count: int) -> bytes:
        """The end of the stream: SSE says so explicitly (NDJSON ends with the response)."""
        if self.name == "sse":
            return f"event: end\ndata: {json.dumps({'count': count})}\n\n".encode()
        return b""

    def comment(self) -> bytes:
        """Something to send at once, so that proxies open the stream before the first answer."""
        return b": stream open\n\n" if self.name == "sse" else b""


NDJSON = StreamFormat("ndjson", "application/x-ndjson")
SSE = StreamFormat("sse", "text/event-stream")


def choose_stream_format(accept: str, requested: str | None = None) -> StreamFormat:
    """SSE when asked for (``?format=sse`` or ``Accept: text/event-stream``), else NDJSON."""
    if requested:
        wanted = requested.strip().lower()
        if wanted in ("sse", "event-stream", "text/event-stream"):
            return SSE
        if wanted in ("ndjson", "jsonl", "application/x-ndjson"):
            return NDJSON
        raise ValueError(f"unknown stream format {requested!r}; use 'ndjson' or 'sse'")
    return SSE if "text/event-stream" in (accept or "").lower() else NDJSON
