"""The JupyterHub REST client against a real hub (tests/hub_fixture.py): users, named servers with
user options, server tokens limited to one server, files in and out through the Contents API, and
the hub token staying with the hub."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from hub_fixture import LiveHub, live_hub_fixture  # noqa: F401 - the live_hub fixture

from jupyter_server_extension.hosted.executors.jupyterhub import client as client_module
from jupyter_server_extension.hosted.executors.jupyterhub.client import HubClient, HubError, contents_path

pytestmark = pytest.mark.timeout(300)


async def status_with(url: str, token: str | None) -> int:
    """The status of a GET of ``url`` with ``token`` (no redirects followed)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(url, headers=headers)).status_code


@pytest.mark.asyncio
async def test_users_servers_tokens_and_files(live_hub: LiveHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    hub = HubClient(live_hub.url, live_hub.token)
    try:
        assert (await hub.version()) >= (4,)
        assert (await hub.user("ada"))["name"] == "ada"
        assert await hub.user("nobody-here") is None

        await hub.start_server("ada", "client-files", {"profile": "small"}, display_name="a test session")
        status = await hub.wait_ready("ada", "client-files", timeout=90)
        assert status.ready and status.user_options == {"profile": "small"}
        token = await hub.create_server_token("ada", "client-files", expires_in=600, note="test")
        assert token.value not in repr(token)
        await hub.wait_server_answers("ada", "client-files", token, timeout=30)

        # a small file in one PUT, a larger one in chunks (the chunk size is made tiny here)
        small = tmp_path / "nb.ipynb"
        small.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        big = tmp_path / "data.bin"
        big.write_bytes(bytes(range(256)) * 40)  # 10 240 bytes
        monkeypatch.setattr(client_module, "CHUNK_SIZE", 1000)
        await hub.make_directory("ada", "client-files", token, "session one/inputs")
        await hub.upload("ada", "client-files", token, "session one/nb.ipynb", small)
        await hub.upload("ada", "client-files", token, "session one/inputs/data.bin", big)
        assert (live_hub.home("ada") / "session one" / "inputs" / "data.bin").read_bytes() == big.read_bytes()
        names = {entry["name"] for entry in await hub.listing("ada", "client-files", token, "session one")}
        assert names == {"nb.ipynb", "inputs"}
        assert await hub.listing("ada", "client-files", token, "not there") == []

        back = tmp_path / "back" / "data.bin"
        assert await hub.download("ada", "client-files", token, "session one/inputs/data.bin", back, 1 << 20) == 10240
        assert back.read_bytes() == big.read_bytes()
        assert await hub.download("ada", "client-files", token, "session one/missing", back, 1 << 20) is None
        with pytest.raises(HubError, match="larger than"):
            await hub.download("ada", "client-files", token, "session one/inputs/data.bin", tmp_path / "cut", 100)
        assert not (tmp_path / "cut").exists()

        # the server token opens this server only; the hub token does not open it
        url = hub.server_url("ada", "client-files") + "api/contents/session%20one"
        assert await status_with(url, token.value) == 200
        assert await status_with(url, None) in (302, 403)
        assert await status_with(url, live_hub.token) == 403
        other = await hub.create_server_token("grace", "none", expires_in=600, note="test")
        assert await status_with(url, other.value) == 403

        # the hub token never reaches the single-user server's process
        pid = live_hub.server_pid("ada", "client-files")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert live_hub.token.encode() not in environ

        # revoked at the hub (a running server may still honour it from its cache for a few minutes;
        # the executor stops the server at the same time, which is what ends access)
        whoami = live_hub.url + "hub/api/user"
        assert await status_with(whoami, token.value) == 200
        await hub.revoke_token("ada", token)
        assert await status_with(whoami, token.value) == 403
        await hub.revoke_token("grace", other)

        await hub.stop_server("ada", "client-files")
        assert await hub.server("ada", "client-files") is None
        await hub.stop_server("ada", "client-files")  # stopping twice is fine
    finally:
        await hub.stop_server("ada", "client-files")
        await hub.aclose()


@pytest.mark.asyncio
async def test_hub_errors_name_no_token(live_hub: LiveHub):
    hub = HubClient(live_hub.url, live_hub.token)
    try:
        with pytest.raises(HubError) as error:
            await hub.start_server("nobody-here", "x1", {})
        assert error.value.status == 404 and live_hub.token not in str(error.value)
        with pytest.raises(HubError, match="Invalid server_name|400"):
            await hub.start_server("ada", "Not_A_Slug", {})
        with pytest.raises(HubError, match="outside the hub's API"):
            await hub._hub.get("http://127.0.0.1:9/elsewhere")
        with pytest.raises(HubError, match="relative"):
            await hub._call("GET", "http://127.0.0.1:9/elsewhere")
        assert live_hub.token not in repr(hub) and live_hub.token not in repr(hub._hub.auth)
    finally:
        await hub.aclose()

    wrong = HubClient(live_hub.url, "not-the-token")
    try:
        with pytest.raises(HubError) as error:
            await wrong.user("ada")
        assert error.value.status == 403
    finally:
        await wrong.aclose()

    unreachable = HubClient("http://127.0.0.1:9/", live_hub.token)
    try:
        with pytest.raises(HubError, match="cannot be reached") as error:
            await unreachable.user("ada")
        assert live_hub.token not in str(error.value)
    finally:
        await unreachable.aclose()


def test_contents_paths_stay_inside():
    assert contents_path("a b/c#d.ipynb") == "a%20b/c%23d.ipynb"
    assert contents_path("/x/./y") == "x/y"
    with pytest.raises(ValueError):
        contents_path("x/../../etc/passwd")


def test_hub_auth_only_for_its_prefix():
    auth = client_module._HubAuth("secret-token", "http://hub.example/hub/api/")
    flow = auth.auth_flow(httpx.Request("GET", "http://hub.example/hub/api/users/ada"))
    assert next(flow).headers["Authorization"] == "token secret-token"
    with pytest.raises(HubError):
        next(auth.auth_flow(httpx.Request("GET", "http://hub.example/user/ada/x/api/contents")))
    with pytest.raises(HubError):
        next(auth.auth_flow(httpx.Request("GET", "http://hub.example.evil/hub/api/users")))
