"""``JupyterHubExecutor`` on its own against a real hub (tests/hub_fixture.py): a run starts a named
server with the profile's user options, puts the notebook and data in it, reports AVAILABLE with a
link that opens the notebook in JupyterLab, and at the slot's end (or on cancel) fetches the saved
notebook and stops the server. The runner is replaced by a recording ``RunReport``; the whole
platform path is in test_jupyterhub_platform.py."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import nbformat
import pytest
from hub_fixture import LiveHub, executor_options, live_hub_fixture  # noqa: F401 - the live_hub fixture
from pydantic import ValidationError

from jupyter_server_extension.hosted.calendar import Need
from jupyter_server_extension.hosted.executors.base import ExecutorContext, RunReport, RunSpec
from jupyter_server_extension.hosted.executors.jupyterhub.client import HubClient
from jupyter_server_extension.hosted.executors.jupyterhub.executor import (
    JupyterHubExecutor,
    JupyterHubOptions,
    _inside,
    server_name,
)
from jupyter_server_extension.hosted.options import HostedOptions

pytestmark = pytest.mark.timeout(300)


class Recorder(RunReport):
    """A RunReport that remembers what the executor said."""

    def __init__(self) -> None:
        self.handles: list[str] = []
        self.messages: list[str] = []
        self.connectors: list[tuple[str, str | None]] = []
        self.became_available = asyncio.Event()

    async def handle(self, text: str) -> None:
        self.handles.append(text)

    async def available(self, url: str, title: str | None = None) -> None:
        self.connectors.append((url, title))
        self.became_available.set()

    async def progress(self, text: str) -> None:
        self.messages.append(text)


def make_executor(hub: LiveHub, tmp_path: Path, **overrides: object) -> JupyterHubExecutor:
    options = JupyterHubOptions.model_validate(executor_options(hub, **overrides))
    context = ExecutorContext(
        platform="hubby",
        options=HostedOptions.model_construct(),
        workdir=tmp_path / "platform",
        log=logging.getLogger("execplanner.test.hub"),
        secrets_dir=tmp_path / "secrets",
    )
    return JupyterHubExecutor(options, context)


def make_spec(tmp_path: Path, session: str, seconds: float, user: str = "ada", cores: int = 1) -> RunSpec:
    folder = tmp_path / session
    work = folder / "work"
    work.mkdir(parents=True)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")])
    nbformat.write(notebook, work / "analysis.ipynb")
    (work / "stars.csv").write_text("ra,dec\n1,2\n")
    (work / "inputs").mkdir()
    (work / "inputs" / "more.txt").write_text("more\n")
    now = datetime.now(timezone.utc)
    return RunSpec(
        session=session,
        kind="jupyter-notebook",
        entry=work / "analysis.ipynb",
        workdir=work,
        results=folder / "results",
        cores=cores,
        memory_gib=1,
        deadline=now + timedelta(seconds=seconds),
        user=user,
        start=now,
    )


def need_of(cores: int, memory: int) -> Need:
    return Need(
        cores=cores,
        memory=memory,
        storage=0,
        cores_max=cores,
        memory_max=memory,
        storage_max=0,
        duration=60,
        storage_duration=60,
    )


async def fetch(url: str, token: str | None = None, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.get(url, headers=headers, **kwargs)  # type: ignore[arg-type]


async def user_token(hub: LiveHub, user: str) -> str:
    """A token of ``user`` with the user's own scopes (as the user would make on the hub's token page)."""
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{hub.url}hub/api/users/{user}/tokens",
            headers={"Authorization": f"token {hub.token}"},
            json={"note": "test", "expires_in": 600, "scopes": [f"access:servers!user={user}"]},
        )
    answer.raise_for_status()
    return str(answer.json()["token"])


@pytest.mark.asyncio
async def test_session_is_available_then_saved_notebook_comes_back(
    live_hub: LiveHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    executor = make_executor(live_hub, tmp_path)
    session = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    spec = make_spec(tmp_path, session, seconds=18, cores=2)
    report = Recorder()
    run = asyncio.ensure_future(executor.run(spec, asyncio.Event(), report))
    try:
        await asyncio.wait_for(report.became_available.wait(), timeout=120)
        server = server_name(session)
        assert report.handles[0] == f"ada/{server}" and report.handles[1].startswith(f"ada/{server}/")
        url, title = report.connectors[0]
        assert url == f"{live_hub.url}user/ada/{server}/lab/tree/execplanner/{session}/analysis.ipynb"
        assert title and "hubby" in title
        # the profile's user options went to the hub (2 cores -> the 'large' profile)
        assert live_hub.servers("ada")[server]["user_options"] == {"profile": "large"}
        assert any("large profile" in message for message in report.messages)

        # the connector opens JupyterLab for the user (with the user's token), and the files are there
        token = await user_token(live_hub, "ada")
        page = await fetch(url, token)
        assert page.status_code == 200 and "JupyterLab" in page.text
        contents = await fetch(f"{live_hub.url}user/ada/{server}/api/contents/execplanner/{session}", token)
        names = {entry["name"] for entry in contents.json()["content"]}
        assert names == {"analysis.ipynb", "stars.csv", "inputs"}
        # without a login the connector sends the browser to the hub's login, it does not open
        anonymous = await fetch(url)
        assert anonymous.status_code in (302, 303) and "/hub/" in anonymous.headers["location"]

        # the hub token is not in the single-user server's environment
        pid = live_hub.server_pid("ada", server)
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert live_hub.token.encode() not in environ and b"JUPYTERHUB_API_TOKEN" in environ

        # the user saves the notebook and writes a new file
        saved = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("my results: 42")])
        async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"token {token}"}) as client:
            base = f"{live_hub.url}user/ada/{server}/api/contents/execplanner/{session}"
            answer = await client.put(f"{base}/analysis.ipynb", json={"type": "notebook", "content": saved})
            assert answer.status_code == 200
            answer = await client.put(f"{base}/summary.txt", json={"type": "file", "format": "text", "content": "42"})
            assert answer.status_code == 201

        outcome = await asyncio.wait_for(run, timeout=120)
        assert outcome.status == "completed", outcome.message
        assert "slot ended" in outcome.message
        assert live_hub.wait_gone("ada", server)
        assert server not in live_hub.servers("ada")  # removed, not only stopped
        back = nbformat.read(spec.results / "analysis.ipynb", as_version=4)
        assert back.cells[0].source == "my results: 42"
        assert (spec.results / "summary.txt").read_text() == "42"
        assert not (spec.results / "stars.csv").exists()  # inputs brought in unchanged are not results
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await executor.aclose()
    everything = caplog.text + json.dumps(report.__dict__, default=str)
    assert live_hub.token not in everything


@pytest.mark.asyncio
async def test_cancel_stops_the_server(live_hub: LiveHub, tmp_path: Path):
    executor = make_executor(live_hub, tmp_path)
    session = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"
    spec = make_spec(tmp_path, session, seconds=600)
    report, stop = Recorder(), asyncio.Event()
    run = asyncio.ensure_future(executor.run(spec, stop, report))
    try:
        await asyncio.wait_for(report.became_available.wait(), timeout=120)
        server = server_name(session)
        assert live_hub.servers("ada")[server]["ready"]
        stop.set()
        outcome = await asyncio.wait_for(run, timeout=120)
        assert outcome.status == "cancelled"
        assert server not in live_hub.servers("ada")
        assert (spec.results / "analysis.ipynb").is_file()  # the notebook is kept on cancel too
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await executor.aclose()


@pytest.mark.asyncio
async def test_adopt_keeps_a_running_server_to_the_end(live_hub: LiveHub, tmp_path: Path):
    executor = make_executor(live_hub, tmp_path)
    session = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f"
    server = server_name(session)
    spec = make_spec(tmp_path, session, seconds=8)
    hub = HubClient(live_hub.url, live_hub.token)
    try:  # an earlier platform server started this one, then died
        await hub.start_server("ada", server, {"profile": "small"})
        await hub.wait_ready("ada", server, timeout=90)
        earlier = await hub.create_server_token("ada", server, expires_in=600, note="the earlier server's")
        report = Recorder()
        outcome = await executor.adopt(spec, f"ada/{server}/{earlier.id}", asyncio.Event(), report)
        assert outcome.status == "completed", outcome.message
        # the earlier server died before the files were in: the adopting one puts them in, says AVAILABLE
        assert report.connectors[0][0].endswith(f"/lab/tree/execplanner/{session}/analysis.ipynb")
        assert (live_hub.home("ada") / "execplanner" / session / "stars.csv").is_file()
        assert server not in live_hub.servers("ada")
        assert (await fetch(f"{live_hub.url}hub/api/user", earlier.value)).status_code == 403  # revoked

        gone = await executor.adopt(spec, f"ada/{server}", asyncio.Event(), Recorder())
        assert gone.status == "failed" and "stopped" in gone.message
        assert (await executor.adopt(spec, "garbage", asyncio.Event(), Recorder())).status == "failed"
    finally:
        await hub.stop_server("ada", server)
        await hub.aclose()
        await executor.aclose()


@pytest.mark.asyncio
async def test_refusals_and_rounding_to_a_profile(live_hub: LiveHub, tmp_path: Path):
    executor = make_executor(live_hub, tmp_path, users={"ada@example.org": "ada", "mallory": "mallory"})
    try:
        need = need_of(1, 1)
        assert await executor.refusals(need, "ada") == []
        assert await executor.refusals(need, "ada@example.org") == []  # mapped to the hub user ada
        (no_account,) = await executor.refusals(need, "nobody")
        assert "no user 'nobody'" in no_account
        (mapped_missing,) = await executor.refusals(need, "mallory")
        assert "no user 'mallory'" in mapped_missing
        assert "'owner'" in (await executor.refusals(need, None))[0]

        big = need_of(3, 1)
        (too_big,) = await executor.refusals(big, "ada")
        assert "largest server profile here, large, has 2 core(s) and 2 GiB" in too_big

        fitted = executor.fit(need_of(2, 1))
        assert (fitted.cores, fitted.cores_max, fitted.memory, fitted.memory_max) == (2, 2, 2, 2)
        assert executor.fit(need).cores == 1 and executor.fit(need).memory == 1
        assert executor.fit(big) == big
    finally:
        await executor.aclose()

    listed = make_executor(live_hub, tmp_path, users={"ada@example.org": "ada"}, only_listed_users=True)
    try:
        need = need_of(1, 1)
        assert "no account" in (await listed.refusals(need, "ada"))[0]
        assert await listed.refusals(need, "ada@example.org") == []
    finally:
        await listed.aclose()

    tight = make_executor(live_hub, tmp_path)
    tight.context.options = HostedOptions.model_construct(cores=1, memory=1)
    try:  # the hub's profile is larger than what the provider books out for the hub
        (reason,) = await tight.refusals(need_of(2, 1), "ada")
        assert "smallest server profile that fits, large" in reason and "at most 1 core(s)" in reason
    finally:
        await tight.aclose()

    personal = make_executor(live_hub, tmp_path, owner="grace")
    try:  # a personal Jupyter server: the caller has no name, the owner is the hub user grace
        assert personal.hub_user(None) == "grace"
        assert await personal.refusals(need_of(1, 1), None) == []
    finally:
        await personal.aclose()


def test_options_name_the_field(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("t" * 32)
    good = {
        "url": "http://127.0.0.1:8000",
        "token_file": str(token),
        "profiles": [{"name": "s", "cores": 1, "memory": 1}],
    }
    options = JupyterHubOptions.model_validate(good)
    assert options.url == "http://127.0.0.1:8000/"
    for change, field in (
        ({"url": "ftp://hub"}, "url"),
        ({"url": "http://hub/?token=x"}, "url"),
        ({"token_file": str(tmp_path / "missing")}, "token_file"),
        ({"profiles": []}, "profiles"),
        ({"profiles": [{"name": "s", "cores": 0, "memory": 1}]}, "profiles"),
        ({"profiles": [{"name": "s", "cores": 1, "memory": 1}] * 2}, None),
        ({"folder": "../elsewhere"}, "folder"),
        ({"users": {"ada": "a/b"}}, "users"),
        ({"owner": ""}, "owner"),
        ({"surprise": 1}, "surprise"),
    ):
        with pytest.raises(ValidationError) as error:
            JupyterHubOptions.model_validate({**good, **change})
        if field is not None:
            assert error.value.errors()[0]["loc"][0] == field
    assert "t" * 32 not in repr(options)


def test_server_names_are_valid_hub_names():
    name = server_name("0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D")
    assert name == "ep-0a1b2c3d4e5f4a6b8c7d9e0f" and len(name) <= 30


def test_listed_paths_from_the_users_server_stay_in_the_session_folder():
    """The listing comes from a server the user controls: only plain paths inside the folder count."""
    folder = "execplanner/abc"
    assert _inside("execplanner/abc/analysis.ipynb", folder) == "analysis.ipynb"
    assert _inside("execplanner/abc/out/plot.png", folder) == "out/plot.png"
    for hostile in (
        "execplanner/abc",
        "execplanner/abcd/x",
        "execplanner/abc/../../etc/passwd",
        "/etc/passwd",
        "execplanner/abc/a\\b",
        "execplanner/abc/\x00",
        None,
        42,
        "other/abc/x",
    ):
        assert _inside(hostile, folder) is None, hostile


@pytest.mark.asyncio
async def test_an_unreachable_hub_is_an_error_not_a_no(tmp_path: Path):
    from jupyter_live import free_port

    from execplanner_widgets.core.platform import PlatformError

    token = tmp_path / "token"
    token.write_text("secret-hub-token-value\n")
    options = JupyterHubOptions.model_validate(
        {
            "url": f"http://127.0.0.1:{free_port()}/",
            "token_file": str(token),
            "profiles": [{"name": "s", "cores": 1, "memory": 1}],
        }
    )
    context = ExecutorContext("hubby", HostedOptions.model_construct(), tmp_path, logging.getLogger("t"), tmp_path)
    executor = JupyterHubExecutor(options, context)
    try:
        with pytest.raises(PlatformError, match="cannot be reached") as error:
            await executor.refusals(need_of(1, 1), "ada")
        assert "secret-hub-token-value" not in str(error.value)
    finally:
        await executor.aclose()


def test_hosted_options_name_the_hub_field(tmp_path: Path):
    """The ``jupyterhub:`` block is validated by the executor's Options; errors name ``jupyterhub.field``."""
    token = tmp_path / "token"
    token.write_text("t" * 32)
    block = {
        "url": "http://127.0.0.1:8000/",
        "token_file": str(token),
        "profiles": [{"name": "s", "cores": 1, "memory": 1}],
    }
    options = HostedOptions.model_validate({"executor": "jupyterhub", "cores": 4, "memory": 8, "jupyterhub": block})
    assert isinstance(options.executor_options, JupyterHubOptions)
    bad = {**block, "profiles": [{"name": "s", "cores": "many", "memory": 1}], "token_file": str(tmp_path / "none")}
    with pytest.raises(ValidationError) as error:
        HostedOptions.model_validate({"executor": "jupyterhub", "jupyterhub": bad})
    locations = {tuple(item["loc"]) for item in error.value.errors()}
    assert ("jupyterhub", "token_file") in locations and ("jupyterhub", "profiles", 0, "cores") in locations


def test_the_example_platforms_file_is_valid(tmp_path: Path):
    """examples/platforms-jupyterhub.yaml, with its token file put somewhere that exists."""
    import yaml

    example = Path(__file__).resolve().parents[1] / "examples" / "platforms-jupyterhub.yaml"
    document = yaml.safe_load(example.read_text())
    token = tmp_path / "hub-token"
    token.write_text("t" * 32)
    (entry,) = document["platforms"]
    entry["hosted"]["jupyterhub"]["token_file"] = str(token)
    options = HostedOptions.model_validate(entry["hosted"])
    hub = options.executor_options
    assert isinstance(hub, JupyterHubOptions) and [profile.name for profile in hub.profiles] == [
        "small",
        "medium",
        "large",
    ]
    assert options.cores >= hub.profiles[-1].cores and options.memory >= hub.profiles[-1].memory
