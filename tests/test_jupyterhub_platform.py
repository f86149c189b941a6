"""A hosted platform with ``executor: jupyterhub`` against a real hub (tests/hub_fixture.py), in
process: offers rounded up to a profile, NO for a caller without a hub account, a booking that waits
for its start and then becomes AVAILABLE with a connector that opens the notebook in JupyterLab,
the saved notebook back as a result when the slot ends, cancel stopping the server, and the hub
token in no answer, log or single-user server environment."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
import pytest_asyncio
from hub_fixture import LiveHub, executor_options, live_hub_fixture  # noqa: F401 - the live_hub fixture
from test_hosted_support import eventually, request_document

from execplanner_widgets.core.platform import PlatformContext
from execplanner_widgets.model import ExecutionSession, SessionPhase, format_instant, parse_request, utcnow
from jupyter_server_extension.hosted.documents import WEB_CONNECTOR
from jupyter_server_extension.hosted.executors.jupyterhub.executor import server_name
from jupyter_server_extension.hosted.platform import HostedPlatform
from jupyter_server_extension.hosted.store import events_of

pytestmark = pytest.mark.timeout(300)


def notebook_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "analysis.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    (folder / "stars.csv").write_text("ra,dec\n1,2\n")
    return path


def hub_request(folder: Path, **kwargs: Any) -> Any:
    path = notebook_file(folder)
    return parse_request(
        request_document(path, kind="jupyter-notebook", data=[folder / "stars.csv"], **kwargs)  # type: ignore[arg-type]
    )


@pytest_asyncio.fixture
async def hub_platform(live_hub: LiveHub, tmp_path: Path):
    options = {
        "executor": "jupyterhub",
        "cores": 4,
        "memory": 8,
        "offers": 2,
        "local_roots": [str(tmp_path)],
        "jupyterhub": executor_options(live_hub, users={"ada@example.org": "ada"}),
    }
    platform = HostedPlatform.from_config(
        "hubby", "Notebooks on a hub", options, PlatformContext(data_dir=tmp_path / "state")
    )
    try:
        yield platform
    finally:
        await platform.aclose()


def web_connector(session: ExecutionSession) -> Any:
    found = [item for item in session.connectors if item.kind == WEB_CONNECTOR]
    return found[0] if found else None


async def user_token(hub: LiveHub, user: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{hub.url}hub/api/users/{user}/tokens",
            headers={"Authorization": f"token {hub.token}"},
            json={"note": "test", "expires_in": 600, "scopes": [f"access:servers!user={user}"]},
        )
    answer.raise_for_status()
    return str(answer.json()["token"])


@pytest.mark.asyncio
async def test_no_without_a_hub_account_or_a_fitting_profile(hub_platform: HostedPlatform, tmp_path: Path):
    small = await hub_platform.offers(hub_request(tmp_path / "a", cores=1, memory=1), user="ada")
    assert small.result == "YES" and {(offer.cores, offer.memory) for offer in small.offers} == {(1, 1)}
    mapped = await hub_platform.offers(hub_request(tmp_path / "b"), user="ada@example.org")
    assert mapped.result == "YES"

    stranger = await hub_platform.offers(hub_request(tmp_path / "c"), user="nobody")
    assert stranger.result == "NO"
    assert any("no user 'nobody'" in reason for reason in stranger.reasons)
    too_big = await hub_platform.offers(hub_request(tmp_path / "d", cores=3), user="ada")
    assert too_big.result == "NO"
    assert any("largest server profile here, large" in reason for reason in too_big.reasons)


@pytest.mark.asyncio
async def test_offers_are_rounded_up_to_a_profile(hub_platform: HostedPlatform, tmp_path: Path):
    """2 cores and 1 GiB asked: the smallest profile that fits is 'large' (2 cores, 2 GiB), and that is
    what a server gets, so it is what is offered and booked."""
    rounded = await hub_platform.offers(hub_request(tmp_path / "b", cores=2, memory=1), user="ada")
    assert rounded.result == "YES" and {(offer.cores, offer.memory) for offer in rounded.offers} == {(2, 2)}


@pytest.mark.asyncio
async def test_booking_waits_then_is_available_then_the_saved_notebook_comes_back(
    hub_platform: HostedPlatform, live_hub: LiveHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    start = utcnow() + timedelta(seconds=6)
    request = hub_request(tmp_path / "nb", duration="PT20S", start=f"{format_instant(start)}/PT0S")
    answer = await hub_platform.offers(request, user="ada")
    assert answer.result == "YES", answer.reasons
    uuid = answer.offers[0].meta.uuid
    server = server_name(uuid)
    documents: list[str] = [answer.model_dump_json()]

    accepted = await hub_platform.accept(uuid, user="ada")
    assert web_connector(accepted) is None
    waiting = await eventually(lambda: _phase(hub_platform, uuid, {SessionPhase.WAITING}), timeout=20)
    documents.append(waiting.model_dump_json())
    assert server not in live_hub.servers("ada")  # nothing on the hub before the booked start

    available = await eventually(lambda: _phase(hub_platform, uuid, {SessionPhase.AVAILABLE}), timeout=120)
    documents.append(available.model_dump_json())
    connector = web_connector(available)
    assert connector.status == "AVAILABLE" and connector.protocol == "HTTP"
    assert connector.location == f"{live_hub.url}user/ada/{server}/lab/tree/execplanner/{uuid}/analysis.ipynb"
    assert any("available" in message.text for message in available.messages)
    with hub_platform.store.read() as db:  # the phases it went through: PREPARING -> AVAILABLE, never RUNNING
        history = [event.phase for event in events_of(db, [uuid])[uuid]]
    seen = [phase for index, phase in enumerate(history) if index == 0 or history[index - 1] != phase]
    assert seen[seen.index("PREPARING") :] == ["PREPARING", "AVAILABLE"], seen

    token = await user_token(live_hub, "ada")
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"token {token}"}) as client:
        page = await client.get(connector.location)
        assert page.status_code == 200 and "JupyterLab" in page.text
        folder = f"{live_hub.url}user/ada/{server}/api/contents/execplanner/{uuid}"
        listing = (await client.get(folder)).json()
        assert {entry["name"] for entry in listing["content"]} >= {"analysis.ipynb", "stars.csv"}
        saved = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("saved by ada")])
        put = await client.put(f"{folder}/analysis.ipynb", json={"type": "notebook", "content": saved})
        assert put.status_code == 200

    # as in a browser: ada signs in to the hub and the connector opens her notebook; grace's does not
    opened = await asyncio.to_thread(lambda: live_hub.login("ada").get(connector.location, timeout=30))
    assert opened.status_code == 200 and opened.url == connector.location and "JupyterLab" in opened.text
    refused = await asyncio.to_thread(lambda: live_hub.login("grace").get(connector.location, timeout=30))
    assert refused.status_code == 403

    pid = live_hub.server_pid("ada", server)
    assert live_hub.token.encode() not in Path(f"/proc/{pid}/environ").read_bytes()

    done = await eventually(lambda: _phase(hub_platform, uuid, {SessionPhase.COMPLETED}), timeout=120)
    documents.append(done.model_dump_json())
    assert [item for item in done.messages if "releasing" in item.text]
    assert web_connector(done).status == "FINISHED"
    assert live_hub.wait_gone("ada", server)
    result = next(item for item in done.results if item.id == "analysis.ipynb")
    path, _ = await hub_platform.result_file(uuid, result.id, user="ada")
    assert nbformat.read(path, as_version=4).cells[0].source == "saved by ada"

    everything = (
        caplog.text
        + "".join(documents)
        + json.dumps((await hub_platform.job(uuid, user="ada")).model_dump(mode="json"))
    )
    assert live_hub.token not in everything
    assert live_hub.token not in live_hub.log()  # nor in the hub's own log


@pytest.mark.asyncio
async def test_cancel_stops_the_server(hub_platform: HostedPlatform, live_hub: LiveHub, tmp_path: Path):
    answer = await hub_platform.offers(hub_request(tmp_path / "nb", duration="PT10M"), user="ada")
    uuid = answer.offers[0].meta.uuid
    server = server_name(uuid)
    await hub_platform.accept(uuid, user="ada")
    await eventually(lambda: _phase(hub_platform, uuid, {SessionPhase.AVAILABLE}), timeout=120)
    assert live_hub.servers("ada")[server]["ready"]
    await hub_platform.cancel(uuid, user="ada")
    cancelled = await eventually(lambda: _phase(hub_platform, uuid, {SessionPhase.CANCELLED}), timeout=120)
    assert web_connector(cancelled).status == "FINISHED"
    assert live_hub.wait_gone("ada", server)
    assert any(item.id == "analysis.ipynb" for item in cancelled.results)


async def _phase(platform: HostedPlatform, uuid: str, phases: set[SessionPhase]) -> ExecutionSession | None:
    session = await platform.session(uuid, user="ada")
    if session.phase is SessionPhase.FAILED and SessionPhase.FAILED not in phases:
        raise AssertionError(f"session failed: {[item.text for item in session.messages]}")
    return session if session.phase in phases else None
