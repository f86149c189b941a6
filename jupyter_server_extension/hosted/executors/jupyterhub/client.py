"""A small async client for the JupyterHub REST API and a single-user server's Contents API.

Two kinds of credentials meet here, and they must never cross:

- the **hub token** (the provider's service token, read from a file) goes only to ``{api_url}hub/api/``:
  its own ``httpx`` client has the token in its headers, ``follow_redirects`` off, and every request
  path is checked to stay under that prefix. It is never sent to a single-user server, because that
  server runs under the user's control (its config lives in the user's home), so whatever reaches it
  reaches user code.
- a **server token**: a token the hub issues *for the user*, limited to one named server
  (``access:servers!server=user/name``) and expiring with the slot. Uploads, downloads and the
  connector use it; the executor revokes it when the session ends.

Neither token is put in a log message, an exception text or a ``repr``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["CHUNK_SIZE", "HubClient", "HubError", "ServerStatus", "ServerToken", "contents_path"]

#: Files larger than this go to the Contents API in chunks (jupyter-server's large file manager).
CHUNK_SIZE = 8 * 1024 * 1024
#: Largest folder listing read from a single-user server (which the user controls).
LISTING_LIMIT = 4 * 1024 * 1024


class HubError(Exception):
    """The hub or a single-user server answered something unexpected; the text says what, never a token."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ServerToken:
    """A token the hub issued for a user, limited to one server. ``repr`` hides the secret."""

    id: str
    value: str = field(repr=False)


@dataclass(frozen=True)
class ServerStatus:
    """What the hub says about one named server."""

    ready: bool
    pending: str | None
    url: str | None
    user_options: dict[str, Any]
    state: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.ready or bool(self.pending)


def contents_path(path: str) -> str:
    """A relative path inside a server as it goes in a Contents API URL (each part quoted, no ``..``)."""
    parts = [part for part in PurePosixPath(path).parts if part not in ("", "/", ".")]
    if any(part == ".." for part in parts):
        raise ValueError(f"path {path!r} leaves the server's root")
    return "/".join(quote(part, safe="") for part in parts)


class _HubAuth(httpx.Auth):
    """Adds the hub token only to requests for the hub's API prefix (never to anything else)."""

    def __init__(self, token: str, prefix: str) -> None:
        self._token = token
        self._prefix = prefix

    def auth_flow(self, request: httpx.Request) -> Any:
        if not str(request.url).startswith(self._prefix):
            raise HubError("refusing to send the hub token outside the hub's API")
        request.headers["Authorization"] = f"token {self._token}"
        yield request

    def __repr__(self) -> str:
        return "<hub token>"


class HubClient:
    """Talks to one JupyterHub: users, named servers, user tokens, and files in a server.

    ``url`` is where this process reaches the hub (its proxy, ending in ``/``; the hub API is at
    ``{url}hub/api/`` and servers at ``{url}user/...``). The token is used for the hub API only.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        if not url.endswith("/"):
            url += "/"
        self.url = url
        self.api = url + "hub/api/"
        self._hub = httpx.AsyncClient(
            base_url=self.api, auth=_HubAuth(token, self.api), timeout=timeout, follow_redirects=False
        )
        self._servers = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._version: tuple[int, ...] | None = None

    def __repr__(self) -> str:
        return f"HubClient({self.url!r})"

    async def aclose(self) -> None:
        await self._hub.aclose()
        await self._servers.aclose()

    # ------------------------------------------------------------------------------- hub API

    async def _call(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        if path.startswith("/") or "://" in path:
            raise HubError("hub API paths are relative to the hub's API")
        try:
            response = await self._hub.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise HubError(f"the hub at {self.url} cannot be reached: {type(error).__name__}") from None
        if response.status_code not in ok:
            raise HubError(
                f"the hub answered {response.status_code} to {method} {path.split('?')[0]}: {_hub_message(response)}",
                response.status_code,
            )
        return response

    async def version(self) -> tuple[int, ...]:
        """The hub's version (``GET /hub/api/``), which decides how a server start is written."""
        if self._version is None:
            text = str((await self._call("GET", "")).json().get("version", "0"))
            numbers = []
            for part in text.split("."):
                digits = "".join(ch for ch in part if ch.isdigit())
                if not digits:
                    break
                numbers.append(int(digits))
            self._version = tuple(numbers) or (0,)
        return self._version

    async def user(self, name: str) -> dict[str, Any] | None:
        """The hub's user model, or ``None`` if the hub has no such user."""
        response = await self._call("GET", f"users/{quote(name, safe='')}", ok=(200, 404))
        return None if response.status_code == 404 else response.json()

    async def server(self, user: str, server: str) -> ServerStatus | None:
        """One named server of ``user`` as the hub sees it, or ``None`` when it has none by that name."""
        model = await self.user(user)
        if model is None:
            raise HubError(f"the hub has no user {user!r}", 404)
        entry = (model.get("servers") or {}).get(server)
        if not entry:
            return None
        return ServerStatus(
            ready=bool(entry.get("ready")),
            pending=entry.get("pending"),
            url=entry.get("url"),
            user_options=dict(entry.get("user_options") or {}),
            state=entry.get("state"),
        )

    async def start_server(
        self, user: str, server: str, user_options: dict[str, Any], display_name: str | None = None
    ) -> None:
        """Ask the hub to start ``user``'s named ``server`` with ``user_options`` (the profile's)."""
        if await self.version() >= (6,):
            body: dict[str, Any] = {"user_options": user_options}
            if display_name:
                body["display_name"] = display_name[:100]
        else:  # before 6.0 the body *is* the user options
            body = user_options
        await self._call("POST", _server_path(user, server), json=body, ok=(201, 202))

    async def wait_ready(self, user: str, server: str, timeout: float, poll: float = 0.5) -> ServerStatus:
        """Poll until the server is ready; raise :class:`HubError` when it failed or took too long."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.server(user, server)
            if status is not None and status.ready:
                return status
            if status is None or not status.pending:
                raise HubError(f"the hub could not start the server {server!r} for {user!r}")
            if time.monotonic() > deadline:
                raise HubError(f"the server {server!r} for {user!r} did not start within {timeout:g} s")
            await asyncio.sleep(poll)

    async def stop_server(self, user: str, server: str, *, remove: bool = True, timeout: float = 60.0) -> None:
        """Stop (and by default delete) a named server; wait until the hub says it is gone."""
        response = await self._call("DELETE", _server_path(user, server), json={"remove": remove}, ok=(202, 204, 404))
        if response.status_code == 404:
            return
        deadline = time.monotonic() + timeout
        while True:
            status = await self.server(user, server)
            if status is None or not status.active:
                if remove and status is not None:  # stopped; delete the stopped server's entry too
                    await self._call("DELETE", _server_path(user, server), json={"remove": True}, ok=(202, 204, 404))
                return
            if time.monotonic() > deadline:
                raise HubError(f"the server {server!r} for {user!r} did not stop within {timeout:g} s")
            await asyncio.sleep(0.5)

    async def create_server_token(self, user: str, server: str, expires_in: int, note: str) -> ServerToken:
        """A token for ``user`` that opens only ``server`` and expires after ``expires_in`` seconds."""
        body = {
            "note": note[:200],
            "expires_in": max(60, int(expires_in)),
            "scopes": [f"access:servers!server={user}/{server}"],
        }
        response = await self._call("POST", f"users/{quote(user, safe='')}/tokens", json=body, ok=(200, 201))
        data = response.json()
        return ServerToken(str(data["id"]), str(data["token"]))

    async def revoke_token(self, user: str, token: ServerToken) -> None:
        await self._call(
            "DELETE", f"users/{quote(user, safe='')}/tokens/{quote(token.id, safe='')}", ok=(204, 200, 404)
        )

    # ------------------------------------------------------------------- single-user server

    def server_url(self, user: str, server: str) -> str:
        """Base URL of a named server behind the hub's proxy (ending in ``/``)."""
        return f"{self.url}user/{quote(user, safe='')}/{quote(server, safe='')}/"

    async def _server_call(
        self, method: str, url: str, token: ServerToken, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"token {token.value}"}
        try:
            response = await self._servers.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise HubError(f"the notebook server cannot be reached: {type(error).__name__}") from None
        if response.status_code not in ok:
            raise HubError(
                f"the notebook server answered {response.status_code} to {method} {_path_only(url)}",
                response.status_code,
            )
        return response

    async def wait_server_answers(self, user: str, server: str, token: ServerToken, timeout: float) -> None:
        """Wait until the server answers through the proxy (the route may lag the hub's 'ready')."""
        deadline = time.monotonic() + timeout
        url = self.server_url(user, server) + "api/status"
        while True:
            try:
                await self._server_call("GET", url, token)
                return
            except HubError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.3)

    async def make_directory(self, user: str, server: str, token: ServerToken, path: str) -> None:
        """Create a folder (and its parents) in the server."""
        parts = contents_path(path).split("/")
        base = self.server_url(user, server) + "api/contents/"
        for depth in range(1, len(parts) + 1):
            await self._server_call(
                "PUT", base + "/".join(parts[:depth]), token, json={"type": "directory"}, ok=(200, 201)
            )

    async def upload(self, user: str, server: str, token: ServerToken, path: str, source: Path) -> None:
        """Put a local file into the server at ``path`` (in chunks when it is large)."""
        url = self.server_url(user, server) + "api/contents/" + contents_path(path)
        size = source.stat().st_size
        name = PurePosixPath(path).name
        if size <= CHUNK_SIZE:
            content = base64.b64encode(await asyncio.to_thread(source.read_bytes)).decode("ascii")
            body = {"type": "file", "format": "base64", "name": name, "content": content}
            await self._server_call("PUT", url, token, json=body, ok=(200, 201))
            return
        number = 0
        async for chunk, last in _chunks(source):
            number += 1
            body = {
                "type": "file",
                "format": "base64",
                "name": name,
                "chunk": -1 if last else number,
                "content": base64.b64encode(chunk).decode("ascii"),
            }
            await self._server_call("PUT", url, token, json=body, ok=(200, 201))

    async def listing(self, user: str, server: str, token: ServerToken, path: str) -> list[dict[str, Any]]:
        """The entries of a folder in the server (name, path, type, size), or ``[]`` when it is gone.

        The answer comes from a server the user controls: it is read up to :data:`LISTING_LIMIT` bytes."""
        url = self.server_url(user, server) + "api/contents/" + contents_path(path)
        headers = {"Authorization": f"token {token.value}"}
        try:
            async with self._servers.stream("GET", url, headers=headers, params={"content": "1"}) as response:
                if response.status_code == 404:
                    return []
                if response.status_code != 200:
                    raise HubError(
                        f"the notebook server answered {response.status_code} to GET {_path_only(url)}",
                        response.status_code,
                    )
                body = bytearray()
                async for block in response.aiter_bytes():
                    body += block
                    if len(body) > LISTING_LIMIT:
                        raise HubError(f"the listing of {path} is larger than {LISTING_LIMIT} bytes")
        except httpx.HTTPError as error:
            raise HubError(f"the notebook server cannot be reached: {type(error).__name__}") from None
        try:
            model = json.loads(bytes(body))
        except ValueError:
            raise HubError(f"the listing of {path} is not JSON") from None
        if (
            not isinstance(model, dict)
            or model.get("type") != "directory"
            or not isinstance(model.get("content"), list)
        ):
            return []
        return [entry for entry in model["content"] if isinstance(entry, dict)]

    async def download(
        self, user: str, server: str, token: ServerToken, path: str, target: Path, limit: int
    ) -> int | None:
        """Stream a file from the server to ``target`` (at most ``limit`` bytes); ``None`` if it is not there."""
        url = self.server_url(user, server) + "files/" + contents_path(path)
        headers = {"Authorization": f"token {token.value}"}
        try:
            async with self._servers.stream("GET", url, headers=headers) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise HubError(
                        f"the notebook server answered {response.status_code} to GET {_path_only(url)}",
                        response.status_code,
                    )
                return await _save(response, target, limit, path)
        except httpx.HTTPError as error:
            raise HubError(f"the notebook server cannot be reached: {type(error).__name__}") from None


def _server_path(user: str, server: str) -> str:
    return f"users/{quote(user, safe='')}/servers/{quote(server, safe='')}"


def _path_only(url: str) -> str:
    return url.split("?", 1)[0]


def _hub_message(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or response.reason_phrase)[:300]


async def _chunks(source: Path) -> AsyncIterator[tuple[bytes, bool]]:
    """(chunk, is_last) pairs of a file, read in a thread."""
    size = source.stat().st_size
    sent = 0
    handle = await asyncio.to_thread(source.open, "rb")
    try:
        while True:
            chunk = await asyncio.to_thread(handle.read, CHUNK_SIZE)
            sent += len(chunk)
            yield chunk, sent >= size or not chunk
            if sent >= size or not chunk:
                return
    finally:
        handle.close()


async def _save(response: httpx.Response, target: Path, limit: int, path: str) -> int:
    """Write a streamed answer to ``target`` in 1 MiB writes (in a thread); stop past ``limit`` bytes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = await asyncio.to_thread(target.open, "wb")
    written, buffer = 0, bytearray()
    try:
        async for block in response.aiter_bytes():
            written += len(block)
            if written > limit:
                raise HubError(f"{path} is larger than the {limit} bytes kept as a result")
            buffer += block
            if len(buffer) >= 1024 * 1024:
                await asyncio.to_thread(handle.write, bytes(buffer))
                buffer.clear()
        if buffer:
            await asyncio.to_thread(handle.write, bytes(buffer))
    except BaseException:
        handle.close()
        target.unlink(missing_ok=True)
        raise
    handle.close()
    return written
