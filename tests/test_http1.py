"""The keep-alive HTTP/1.1 client of the broker platforms (platforms/http1.py) against real servers
on 127.0.0.1 that answer exactly the bytes each test writes: framing, limits, timeouts, reuse of
connections, and the refusal of malformed answers and headers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from execplanner_widgets.platforms import http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = http1.encode_headers({"Accept": "application/json"})


class Server:
    """An asyncio TCP server on 127.0.0.1 running ``handler`` per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        http1.pool().close_idle()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/x/requests"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def answering(*answers: bytes, then_close: bool = False) -> Handler:
    """Answer each request on a connection with the next of ``answers`` (the last one repeats)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = 0
        while True:
            await read_request(reader)
            writer.write(answers[min(index, len(answers) - 1)])
            await writer.drain()
            index += 1
            if then_close:
                return

    return handler


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def run(coroutine: Awaitable[object]) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def get(url: str, *, max_body: int = 1000, read_timeout: float = 5.0, body: bytes | None = None):
    return await http1.pool().request(
        "POST" if body is not None else "GET",
        url,
        headers=HEADERS,
        body=body,
        max_body=max_body,
        read_timeout=read_timeout,
    )


def test_keep_alive_reuses_one_connection_and_sends_a_plain_request():
    seen: list[bytes] = []

    async def handler(reader, writer):
        while True:
            seen.append(await read_request(reader))
            writer.write(ok(b'{"a": 1}'))

    async def scenario():
        async with Server(handler) as server:
            for _ in range(3):
                answer = await get(server.url, body=b'{"q": 1}')
                assert (answer.status, answer.body, answer.headers["content-type"]) == (
                    200,
                    b'{"a": 1}',
                    "application/json",
                )
            return server.connections

    assert run(scenario()) == 1
    first = seen[0].decode("latin-1")
    assert first.startswith("POST /x/requests HTTP/1.1\r\nHost: 127.0.0.1:")
    assert "Accept: application/json\r\n" in first and "Accept-Encoding: identity\r\n" in first
    assert first.endswith('Content-Length: 8\r\n\r\n{"q": 1}')


def test_chunked_answers_are_joined_and_limited_while_reading():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\nTrailer: 1\r\n\r\n"
    )

    async def scenario():
        async with Server(answering(chunked)) as server:
            answer = await get(server.url)
            assert answer.body == b"abcdefg"
            with pytest.raises(http1.BodyTooLarge) as caught:
                await get(server.url, max_body=5)
            assert caught.value.declared is None and caught.value.limit == 5

    run(scenario())


def test_a_declared_length_over_the_limit_is_refused_before_reading_it():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n" + b"x" * 1000)
        await writer.drain()
        await asyncio.sleep(5)  # the rest never comes: the client must not wait for it

    async def scenario():
        async with Server(handler) as server:
            with pytest.raises(http1.BodyTooLarge) as caught:
                await asyncio.wait_for(get(server.url), 3)
            assert caught.value.declared == 10_000_000

    run(scenario())


def test_an_answer_that_ends_with_the_connection_is_read_to_the_end_and_limited():
    async def scenario():
        async with Server(answering(b"HTTP/1.1 200 OK\r\n\r\nall of it", then_close=True)) as server:
            assert (await get(server.url)).body == b"all of it"
            with pytest.raises(http1.BodyTooLarge):
                await get(server.url, max_body=3)
            return server.connections

    assert run(scenario()) == 2  # never reused: its end was the end of the connection


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad header line\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: value\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_malformed_answers_are_protocol_errors(answer):
    async def scenario():
        async with Server(answering(answer, then_close=True)) as server:
            with pytest.raises(http1.ProtocolError):
                await get(server.url)

    run(scenario())


def test_interim_answers_are_skipped_and_connection_close_is_honoured():
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"{}", b"Connection: close\r\n")

    async def scenario():
        async with Server(answering(answer)) as server:
            assert (await get(server.url)).body == b"{}"
            assert (await get(server.url)).body == b"{}"
            return server.connections

    assert run(scenario()) == 2


def test_a_server_that_does_not_answer_times_out():
    async def handler(reader, writer):
        await read_request(reader)
        await asyncio.sleep(10)

    async def scenario():
        async with Server(handler) as server:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(http1.Timeout):
                await get(server.url, read_timeout=0.3)
            assert 0.25 <= loop.time() - started < 0.3 + 2 * http1.WATCH_SECONDS + 0.5

    run(scenario())


def test_a_refused_connection_is_connect_failed():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(http1.ConnectFailed):
        run(get(f"http://127.0.0.1:{port}/"))


def test_an_idle_connection_the_server_dropped_is_replaced():
    """The server closes each connection after answering, without saying so: the next request
    finds the pooled connection closed (or it closes under it) and goes out on a new one."""

    async def scenario():
        async with Server(answering(ok(b"{}"), then_close=True)) as server:
            for _ in range(3):
                assert (await get(server.url)).body == b"{}"
            return server.connections

    assert run(scenario()) == 3


def test_an_abandoned_request_is_drained_and_its_connection_kept():
    async def handler(reader, writer):
        while True:
            await read_request(reader)
            await asyncio.sleep(0.2)
            writer.write(ok(b'{"late": true}'))

    async def scenario():
        async with Server(handler) as server:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(get(server.url), 0.05)
            assert http1.pool().idle() == 0  # still waiting for the answer nobody wants
            for _ in range(200):  # the answer comes (after 0.2 s) and is dropped; the connection goes back
                if http1.pool().idle():
                    break
                await asyncio.sleep(0.05)
            assert http1.pool().idle() == 1
            assert (await get(server.url)).body == b'{"late": true}'
            return server.connections

    assert run(scenario()) == 1


def test_headers_that_would_break_the_request_are_refused():
    with pytest.raises(ValueError):
        http1.encode_headers({"Authorization": "Bearer abc\r\nX-Evil: 1"})
    with pytest.raises(ValueError):
        http1.encode_headers({"Bad Name": "x"})
    with pytest.raises(ValueError):
        http1.encode_headers({"Host": "elsewhere.example.org"})
    with pytest.raises(ValueError):
        run(get("ftp://127.0.0.1/"))
    with pytest.raises(ValueError):
        run(get("http://user:pw@127.0.0.1/"))


def test_targets_are_escaped_not_sent_raw():
    origin, target = http1.origin_and_target("http://Example.ORG:8080/a b/%41?q=a b#frag")
    assert origin == http1.Origin("http", "example.org", 8080)
    assert target == "/a%20b/%41?q=a%20b"


# ------------------------------------------------------------------------------------------ TLS


def _self_signed(folder) -> tuple[str, str]:
    """A certificate for 127.0.0.1, signed by itself (cryptography comes with the test extras)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_tls_is_verified_with_the_context_given_and_connections_are_kept(tmp_path):
    import ssl

    cert, key = _self_signed(tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    answer = ok(b'{"result": "NO", "meta": {"messages": [{"message": "busy"}]}}')

    async def scenario():
        connections = 0

        async def serve(reader, writer):
            nonlocal connections
            connections += 1
            try:
                await answering(answer)(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_side)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/broker/"
        try:
            trusting = ssl.create_default_context(cafile=cert)
            for _ in range(2):
                got = await http1.pool().request("GET", url, headers=HEADERS, max_body=1000, tls=trusting)
                assert got.status == 200 and b"busy" in got.body
            assert connections == 1

            with pytest.raises(http1.ConnectFailed):  # the system's trust store does not know this certificate
                await http1.pool().request("GET", url, headers=HEADERS, max_body=1000, tls=ssl.create_default_context())

            from execplanner_widgets.core.platform import PlatformContext, PlatformError
            from execplanner_widgets.model import parse_request
            from execplanner_widgets.platforms.broker import BrokerPlatform

            request = parse_request({"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}})
            checked = BrokerPlatform.from_config("tls", None, {"url": url}, PlatformContext(data_dir=tmp_path))
            with pytest.raises(PlatformError, match="cannot connect"):
                await checked.offers(request)
            unchecked = BrokerPlatform.from_config(
                "tls", None, {"url": url, "verify": False}, PlatformContext(data_dir=tmp_path)
            )
            assert (await unchecked.offers(request)).reasons == ["busy"]
        finally:
            http1.pool().close_idle()
            server.close()

    run(scenario())
