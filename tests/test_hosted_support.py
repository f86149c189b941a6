"""Helpers shared by the hosted-platform tests (no tests here): platforms files, requests, a local
HTTP file server for staging, the UWS schema, and bounded waiting."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

DATA = Path(__file__).resolve().parent / "data" / "hosted"


def request_document(
    location: str | Path,
    *,
    kind: str = "python-script",
    cores: int | dict[str, int] = 1,
    memory: int | dict[str, int] = 1,
    duration: str = "PT1M",
    data: list[str | Path] | None = None,
    storage: list[dict[str, Any]] | None = None,
    start: str | None = None,
    arguments: list[str] | None = None,
) -> dict[str, Any]:
    """An ExecutionBroker v1.0 request with short kind names, as a scientist would write it."""
    executable: dict[str, Any] = {"kind": kind, "location": str(location)}
    if arguments:
        executable["arguments"] = arguments
    document: dict[str, Any] = {
        "executable": executable,
        "compute": {
            "cores": cores if isinstance(cores, dict) else {"min": cores},
            "memory": memory if isinstance(memory, dict) else {"min": memory},
        },
        "schedule": {"requested": {"duration": duration}},
    }
    if start is not None:
        document["schedule"]["requested"]["start"] = start
    if data:
        document["data"] = [{"kind": "simple-data-resource", "location": str(item)} for item in data]
    if storage:
        document["storage"] = storage
    return document


def write_platforms(path: Path, platforms: list[dict[str, Any]]) -> Path:
    """A platforms file with these entries."""
    path.write_text(yaml.safe_dump({"timeout": 30, "platforms": platforms}, sort_keys=False), encoding="utf-8")
    return path


def extension_config(platforms_file: Path, data_dir: Path) -> dict[str, Any]:
    """pytest-jupyter server configuration that enables the extension on ``platforms_file``."""
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {"platforms_file": str(platforms_file), "data_dir": str(data_dir)},
    }


def uws_schema(reference_dir: Path) -> etree.XMLSchema:
    """UWS.xsd from the reference folder, with its XLink import resolved to a local file."""
    local_xlink = DATA / "xlink.xsd"

    class OfflineXlink(etree.Resolver):
        def resolve(self, url: str, pubid: str, context: Any) -> Any:
            if url and url.endswith("xlink.xsd"):
                return self.resolve_filename(str(local_xlink), context)
            return None

    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(OfflineXlink())
    return etree.XMLSchema(etree.parse(str(reference_dir / "uws-1.1" / "UWS.xsd"), parser))


def assert_valid_uws(schema: etree.XMLSchema, body: bytes) -> etree._ElementTree:
    document = etree.ElementTree(etree.fromstring(body))
    assert schema.validate(document), schema.error_log
    return document


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60.0, interval: float = 0.25) -> Any:
    """Await ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"not true within {timeout} s; last value: {last!r}")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def data_server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``tests/data/hosted`` (for staging downloads)."""
    handler = functools.partial(_QuietHandler, directory=str(DATA))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


from jupyter_server.auth.identity import IdentityProvider, User  # noqa: E402


class HeaderIdentityProvider(IdentityProvider):
    """Token authentication as usual, with the user named by an ``X-Test-User`` header.

    jupyter_server's own provider makes every token caller an anonymous "server owner"; this one
    lets tests act as several named people (allocations, ownership) on one real server.
    """

    async def get_user(self, handler: Any) -> User | None:  # type: ignore[override]
        user = super().get_user(handler)
        if hasattr(user, "__await__"):
            user = await user  # type: ignore[misc]
        if user is None:
            return None
        name = handler.request.headers.get("X-Test-User")
        return User(username=name, name=name, display_name=name) if name else user
