"""A small keep-alive HTTP/1.1 client on asyncio, for asking many remote platforms at once.

Why not httpx here: a federation asks hundreds of platforms in one breath, and httpx (httpcore,
h11, anyio, all pure Python) costs about 1.5 ms of CPU per request on the machines this runs on;
for 1,000 platforms that is longer than the platforms take to answer. This client costs a few
tens of microseconds per request, and one pool per event loop keeps the connections of every
platform of an origin alive between questions, instead of a client (and a pool) per platform.

It does only what :class:`~execplanner_widgets.platforms.broker.BrokerPlatform` needs, and does it
strictly:

* HTTP/1.1, one request at a time per connection (no pipelining); answers framed by
  ``Content-Length``, ``chunked`` or the end of the connection; 1xx interim answers skipped;
* the body is read up to ``max_body`` bytes and never buffered beyond that (a declared length
  over the limit is refused before reading; a chunked or unframed one as soon as it passes it);
  the header is limited to 64 KiB, and reading stops while the caller has not consumed what came;
* no redirects (the caller decides what to follow), no cookies, no compression
  (``Accept-Encoding: identity``), nothing from the environment (no proxies, no ``.netrc``);
* TLS with the caller's :class:`ssl.SSLContext` (one shared context, hostname checked by it);
* a connection is reused only after a complete, well-framed answer that did not ask to close;
  one that fails halfway is closed. When the caller gives up (a stream its reader left, a
  timeout) before any byte of the answer came, the answer is still read, without parsing its
  body, and the connection kept if it comes whole in time (else closed): leaving a stream of
  1,000 answers does not cost 1,000 new connections at the next question. A request on a reused
  connection that the server closed before answering a single byte is sent once more on a new
  connection (the server dropped an idle keep-alive connection just as it was reused).
* timeouts are checked by one watchman timer per pool (every :data:`WATCH_SECONDS`), not by a
  timer per wait.
"""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import quote, urlsplit

__all__ = [
    "BodyTooLarge",
    "ConnectFailed",
    "HTTPError",
    "Origin",
    "Pool",
    "ProtocolError",
    "Response",
    "Timeout",
    "encode_headers",
    "pool",
]

MAX_HEAD_BYTES = 64 * 1024
MAX_IDLE_PER_ORIGIN = 2048
IDLE_SECONDS = 30.0
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 5.0
READ_AHEAD = 256 * 1024  # stop reading from the socket while this much waits unconsumed
WATCH_SECONDS = 0.25  # how often waits are checked against their timeout

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: [^\r\n]*)?")
_HEADER_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# what may appear unescaped in a request target (RFC 3986 pchar, '/', '?' and an existing '%XX')
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


class HTTPError(Exception):
    """Talking to the server failed (not an HTTP error status: those are answers)."""


class ConnectFailed(HTTPError):
    """No connection: refused, unreachable, unknown host, or the TLS handshake failed."""


class Timeout(HTTPError):
    """The server did not connect or answer in time."""


class ProtocolError(HTTPError):
    """The server broke HTTP/1.1: a malformed answer, or a connection closed halfway."""


class BodyTooLarge(HTTPError):
    """The answer is longer than the caller allows; ``declared`` is its Content-Length, if it gave one."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        super().__init__(f"the answer is longer than {limit} bytes")
        self.limit = limit
        self.declared = declared


class Origin(NamedTuple):
    """Where connections go: (scheme, host, port). Connections are shared per origin and TLS context."""

    scheme: str
    host: str
    port: int


@dataclass(slots=True)
class Response:
    """A whole answer: status, headers (names in lower case; repeated fields joined by ``, ``), body."""

    status: int
    headers: dict[str, str]
    body: bytes


class _Connection(asyncio.Protocol):
    """One socket: what arrived (``buffer``), whether the server closed, and a waiter woken by news."""

    def __init__(self, pool: Pool, key: tuple[Origin, int]) -> None:
        self.pool = pool
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.deadline = 0.0  # when the current wait times out (loop time)
        self.idle_since = 0.0
        self.received = 0  # bytes received since the last request was sent
        self.drain_for: tuple[str, int] | None = None  # (method, max_body) of an answer read only to be dropped

    # ---------------------------------------------------------------- asyncio.Protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.received += len(data)
        if self.drain_for is not None:
            self._drain()
            return
        if len(self.buffer) > READ_AHEAD and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            self.pool._waiting.discard(self)
            if not waiter.done():
                waiter.set_result(None)

    # ---------------------------------------------------------------------------- for readers

    def more(self, timeout: float) -> asyncio.Future[None]:
        """To await: done when more bytes arrive or the server closes; :class:`Timeout` after
        ``timeout`` s (checked by the pool's watchman, so up to :data:`WATCH_SECONDS` later). A plain
        future, not a coroutine: a fan-out waits on 1,000 of these at once."""
        if self.closed:
            raise ProtocolError("the server closed the connection in the middle of the answer")
        transport = self.transport
        if self.paused and transport is not None:
            self.paused = False
            transport.resume_reading()
        pool = self.pool
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        self.deadline = loop.time() + timeout
        pool._waiting.add(self)
        if pool._watch is None:
            pool._watch = loop.call_later(WATCH_SECONDS, pool._check_deadlines)
        return waiter

    def _drain(self) -> None:
        """Read and drop the answer its caller gave up on; once it is whole (and framed by a
        Content-Length, within the limit, allowing another request), back to the pool. Anything
        else closes the connection."""
        assert self.drain_for is not None
        method, max_body = self.drain_for
        buffer = self.buffer
        start = 0
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end < 0:
                if len(buffer) - start > MAX_HEAD_BYTES:
                    self.close()
                return
            try:
                status, minor, headers = _parse_head(bytes(buffer[start:end]))
            except ProtocolError:
                self.close()
                return
            start = end + 4
            if not 100 <= status < 200 or status == 101:
                break
        keep = status != 101 and minor == 1 and "close" not in headers.get("connection", "").lower()
        length: int | None = 0
        if method != "HEAD" and status not in (204, 304):
            declared = headers.get("content-length")
            length = None if "transfer-encoding" in headers or declared is None else _content_length(declared)
        if not keep or length is None or length > max_body:
            self.close()
            return
        if len(buffer) < start + length:
            return  # more to come
        if len(buffer) > start + length:
            self.close()  # more than one answer: something is wrong
            return
        buffer.clear()
        self.drain_for = None
        self.pool._done(self, True)

    def close(self) -> None:
        self.closed = True
        self.pool._waiting.discard(self)
        if self.transport is not None:
            try:
                self.transport.close()
            except RuntimeError:  # its loop is closed (a coroutine collected late): the socket goes with it
                pass


class Pool:
    """Keep-alive connections of one event loop, shared by every platform; see :func:`pool`."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Origin, int], list[_Connection]] = {}
        self._contexts: dict[int, ssl.SSLContext] = {}
        self._waiting: set[_Connection] = set()
        self._draining: set[_Connection] = set()
        self._watch: asyncio.TimerHandle | None = None

    def _check_deadlines(self) -> None:
        """The watchman: time out the waits that are past their deadline (one timer for every wait,
        instead of a timer per wait: a fan-out to 1,000 platforms would set and cancel 1,000)."""
        self._watch = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in list(self._waiting):
            waiter = connection.waiter
            if waiter is None or waiter.done():  # its reader was cancelled
                connection.waiter = None
                self._waiting.discard(connection)
            elif connection.deadline <= now:
                connection.waiter = None
                self._waiting.discard(connection)
                waiter.set_exception(Timeout("the server did not answer in time"))
        for connection in list(self._draining):
            if connection.drain_for is None or connection.closed:
                self._draining.discard(connection)
            elif connection.deadline <= now:
                self._draining.discard(connection)
                connection.close()
        if self._waiting or self._draining:
            self._watch = loop.call_later(WATCH_SECONDS, self._check_deadlines)

    def _drain_or_close(self, connection: _Connection, method: str, max_body: int, timeout: float) -> None:
        """The caller gave up waiting (a stream its reader left, a platform's timeout): read the
        answer as it comes and keep the connection if it comes whole and in time, instead of closing
        it and making a new one for the next question. Only when nothing of the answer has been
        consumed yet (reading starts over from its first byte); else the connection is closed."""
        connection.waiter = None
        self._waiting.discard(connection)
        if connection.closed or connection.received != len(connection.buffer):
            connection.close()
            return
        loop = asyncio.get_running_loop()
        if connection.paused and connection.transport is not None:
            connection.paused = False
            connection.transport.resume_reading()
        connection.drain_for = (method, max_body)
        connection.deadline = loop.time() + timeout
        self._draining.add(connection)
        if self._watch is None:
            self._watch = loop.call_later(WATCH_SECONDS, self._check_deadlines)
        connection._drain()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: bytes = b"",
        body: bytes | None = None,
        max_body: int,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> Response:
        """Send one request and read the whole answer (at most ``max_body`` bytes of body).

        ``headers`` comes from :func:`encode_headers`. ``read_timeout`` bounds every wait for the
        server (answering may take longer in total, as long as it never stalls for that long)."""
        origin, target = _split(url)
        key = (origin, id(tls) if origin.scheme == "https" else 0)
        if origin.scheme == "https":
            if tls is None:
                raise ValueError("an https URL needs a TLS context")
            self._contexts[id(tls)] = tls  # keep it alive while connections keyed by its id exist
        head = f"{method} {target} HTTP/1.1\r\nHost: {_host_header(origin)}\r\n".encode("latin-1") + headers
        if body is None:
            message = head + b"\r\n"
        else:
            message = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        retried = False
        while True:
            connection = None if retried else self._reusable(key)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(key, tls, connect_timeout)
            connection.received = 0
            try:
                assert connection.transport is not None
                connection.transport.write(message)
                await connection.more(read_timeout)
                whole = _whole(connection, method, max_body)  # the usual case: all of it in one go
                response, keep = whole or await _read_response(connection, method, max_body, read_timeout)
            except ProtocolError:
                dropped = connection.closed and not connection.received  # closed by the server, nothing said
                connection.close()
                if reused and dropped and not retried:
                    retried = True
                    continue  # an idle connection the server had just closed: once more, on a new one
                raise
            except asyncio.CancelledError:
                self._drain_or_close(connection, method, max_body, read_timeout)
                raise
            except BaseException:  # failed halfway: the connection is in an unknown state
                connection.close()
                raise
            self._done(connection, keep)
            return response

    def _done(self, connection: _Connection, keep: bool) -> None:
        """Back to the pool after a complete answer that allows it; else closed."""
        if not keep or connection.buffer or connection.closed:
            connection.close()
            return
        if connection.paused and connection.transport is not None:
            connection.paused = False
            connection.transport.resume_reading()
        stack = self._idle.setdefault(connection.key, [])
        if len(stack) >= MAX_IDLE_PER_ORIGIN:
            connection.close()
            return
        now = connection.idle_since = asyncio.get_running_loop().time()
        if stack and now - stack[0].idle_since >= IDLE_SECONDS:  # the oldest, unused since a bigger burst
            stack.pop(0).close()
        stack.append(connection)

    def _reusable(self, key: tuple[Origin, int]) -> _Connection | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        now = asyncio.get_running_loop().time()
        while stack:
            connection = stack.pop()  # the most recently used: the least likely to have been dropped
            if not connection.closed and now - connection.idle_since < IDLE_SECONDS and not connection.buffer:
                return connection
            connection.close()
        return None

    async def _connect(self, key: tuple[Origin, int], tls: ssl.SSLContext | None, timeout: float) -> _Connection:
        origin = key[0]
        loop = asyncio.get_running_loop()
        connection = _Connection(self, key)
        secure = origin.scheme == "https"
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: connection,
                    origin.host,
                    origin.port,
                    ssl=tls if secure else None,
                    server_hostname=origin.host if secure else None,
                ),
                timeout,
            )
        except asyncio.TimeoutError:
            raise Timeout(f"could not connect to {origin.host}:{origin.port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError, UnicodeError) as error:
            raise ConnectFailed(f"cannot connect to {origin.host}:{origin.port}: {error}") from None
        return connection

    def idle(self, origin: Origin | None = None) -> int:
        """How many open connections wait to be reused (to ``origin`` only, if given)."""
        return sum(
            1
            for key, stack in self._idle.items()
            if origin is None or key[0] == origin
            for connection in stack
            if not connection.closed
        )

    def close_idle(self, origin: Origin | None = None) -> None:
        """Close the idle connections (to ``origin`` only, if given); busy ones are kept until done."""
        for key in list(self._idle):
            if origin is None or key[0] == origin:
                for connection in self._idle.pop(key):
                    connection.close()


_POOLS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()
_last: tuple[weakref.ref[asyncio.AbstractEventLoop], Pool] | None = None


def pool() -> Pool:
    """The running event loop's pool (connections belong to one loop, so each loop has its own)."""
    global _last
    loop = asyncio.get_running_loop()
    last = _last
    if last is not None and last[0]() is loop:
        return last[1]
    found = _POOLS.get(loop)
    if found is None:
        found = _POOLS[loop] = Pool()
    _last = (weakref.ref(loop), found)
    return found


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Request headers as sent (build them once and reuse them). Refuses a name or value that would
    break the request (a line break in a token, say); Host, Content-Length and the encoding are
    this client's own."""
    lines = []
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name.encode("latin-1", "replace")) or _BAD_VALUE.search(value):
            raise ValueError(f"refusing to send a malformed header {name[:40]!r}")
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection", "accept-encoding"):
            raise ValueError(f"the header {name} is set by the client")
        lines.append(f"{name}: {value}\r\n")
    lines.append("Accept-Encoding: identity\r\n")
    return "".join(lines).encode("latin-1")


# ---------------------------------------------------------------------------------- the wire


def origin_and_target(url: str) -> tuple[Origin, str]:
    """(origin, request target) of an absolute http(s) URL; raises ValueError for anything else."""
    return _split(url)


@functools.lru_cache(maxsize=4096)
def _split(url: str) -> tuple[Origin, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url[:200]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("refusing a URL with credentials in it")
    port = parts.port or (443 if scheme == "https" else 80)  # ValueError for a bad port
    target = quote(parts.path or "/", safe=_PATH_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_QUERY_SAFE)
    return Origin(scheme, parts.hostname.lower(), port), target


def _host_header(origin: Origin) -> str:
    host = origin.host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    elif not host.isascii():
        host = host.encode("idna").decode("ascii")
    default = 443 if origin.scheme == "https" else 80
    return host if origin.port == default else f"{host}:{origin.port}"


async def _read_response(connection: _Connection, method: str, max_body: int, timeout: float) -> tuple[Response, bool]:
    """The answer on ``connection``, and whether the connection may carry another request."""
    buffer = connection.buffer
    while True:
        end = buffer.find(b"\r\n\r\n")
        while end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ProtocolError(f"the answer's header is longer than {MAX_HEAD_BYTES} bytes")
            if connection.closed:
                raise ProtocolError("the server closed the connection before answering")
            await connection.more(timeout)
            end = buffer.find(b"\r\n\r\n")
        if end > MAX_HEAD_BYTES:
            raise ProtocolError(f"the answer's header is longer than {MAX_HEAD_BYTES} bytes")
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        status, minor, headers = _parse_head(head)
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError("the server switched protocols")
            continue  # 100 Continue, 103 Early Hints: the real answer follows
        break
    keep = minor == 1 and "close" not in headers.get("connection", "").lower()
    if method == "HEAD" or status in (204, 304):
        return Response(status, headers, b""), keep
    encoding = headers.get("transfer-encoding")
    if encoding is not None:
        if encoding.lower().rsplit(",", 1)[-1].strip() != "chunked":
            return Response(status, headers, await _read_to_end(connection, max_body, timeout)), False
        body = await _read_chunked(connection, max_body, timeout)
        return Response(status, headers, body), keep and "content-length" not in headers
    declared = headers.get("content-length")
    if declared is None:
        return Response(status, headers, await _read_to_end(connection, max_body, timeout)), False
    length = _content_length(declared)
    if length is None:
        raise ProtocolError(f"the answer has an invalid Content-Length {declared[:40]!r}")
    if length > max_body:
        raise BodyTooLarge(max_body, length)
    while len(buffer) < length:
        await connection.more(timeout)
    body = bytes(buffer[:length])
    del buffer[:length]
    return Response(status, headers, body), keep


def _whole(connection: _Connection, method: str, max_body: int) -> tuple[Response, bool] | None:
    """The answer, if it has come whole and is framed the simple way (a final status, then
    Content-Length or no body); None otherwise, consuming nothing, and :func:`_read_response` reads
    it from the same bytes (interim answers, chunks, a body still on its way, errors)."""
    buffer = connection.buffer
    end = buffer.find(b"\r\n\r\n")
    if end < 0 or end > MAX_HEAD_BYTES:
        return None
    status, minor, headers = _parse_head(bytes(buffer[:end]))
    if status < 200 or "transfer-encoding" in headers:
        return None
    length: int | None = 0
    if method != "HEAD" and status not in (204, 304):
        declared = headers.get("content-length")
        length = None if declared is None else _content_length(declared)
        if length is None or length > max_body:
            return None
    start = end + 4
    if len(buffer) < start + length:
        return None
    body = bytes(buffer[start : start + length])
    del buffer[: start + length]
    keep = minor == 1 and "close" not in headers.get("connection", "").lower()
    return Response(status, headers, body), keep


def _content_length(declared: str) -> int | None:
    """The length a Content-Length field gives (repeated equal values allowed), or None if invalid."""
    values = {value.strip() for value in declared.split(",")}
    value = values.pop() if len(values) == 1 else ""
    return int(value) if value.isascii() and value.isdigit() else None


def _parse_head(head: bytes) -> tuple[int, int, dict[str, str]]:
    lines = head.split(b"\r\n")
    matched = _STATUS_LINE.fullmatch(lines[0])
    if matched is None:
        raise ProtocolError(f"the answer does not start with an HTTP/1.x status line: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _HEADER_NAME.fullmatch(name):
            raise ProtocolError(f"the answer has a malformed header line {line[:60]!r}")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return int(matched.group(2)), int(matched.group(1)), headers


async def _read_chunked(connection: _Connection, max_body: int, timeout: float) -> bytes:
    buffer = connection.buffer
    parts: list[bytes] = []
    size = 0
    while True:
        end = buffer.find(b"\r\n")
        while end < 0:
            if len(buffer) > 1024:
                raise ProtocolError("the answer has a malformed chunk size line")
            await connection.more(timeout)
            end = buffer.find(b"\r\n")
        matched = _CHUNK_SIZE.fullmatch(bytes(buffer[:end]))
        if matched is None:
            raise ProtocolError(f"the answer has a malformed chunk size {bytes(buffer[:end])[:40]!r}")
        chunk = int(matched.group(1), 16)
        del buffer[: end + 2]
        if chunk == 0:
            break
        size += chunk
        if size > max_body:
            raise BodyTooLarge(max_body)
        while len(buffer) < chunk + 2:
            await connection.more(timeout)
        if buffer[chunk : chunk + 2] != b"\r\n":
            raise ProtocolError("a chunk of the answer is longer than it said")
        parts.append(bytes(buffer[:chunk]))
        del buffer[: chunk + 2]
    # the trailer section (usually empty), up to the blank line that ends the message
    while True:
        if buffer[:2] == b"\r\n":
            del buffer[:2]
            break
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            del buffer[: end + 4]
            break
        if len(buffer) > MAX_HEAD_BYTES:
            raise ProtocolError(f"the answer's trailer is longer than {MAX_HEAD_BYTES} bytes")
        await connection.more(timeout)
    return b"".join(parts)


async def _read_to_end(connection: _Connection, max_body: int, timeout: float) -> bytes:
    """A body that ends when the server closes the connection."""
    buffer = connection.buffer
    while not connection.closed:
        if len(buffer) > max_body:
            raise BodyTooLarge(max_body)
        await connection.more(timeout)
    if len(buffer) > max_body:
        raise BodyTooLarge(max_body)
    body = bytes(buffer)
    buffer.clear()
    return body
