"""A real JupyterHub on 127.0.0.1 for tests: ``DummyAuthenticator`` (one shared password),
``SimpleLocalProcessSpawner`` starting ``jupyterhub-singleuser`` (JupyterLab) from this venv, named
servers, and a service token with the scopes the ``jupyterhub`` executor needs.

::

    with run_hub(tmp_path, users=["ada", "grace"]) as hub:
        hub.url, hub.token_file, hub.password, hub.home("ada"), hub.server_pid("ada", "srv")

or the pytest fixture ``live_hub`` (import ``live_hub_fixture`` to use it): one hub for the whole
run, so tests use distinct server names. Everything lives in the temporary folder: the hub's database, cookie secret, the
users' home folders, the logs. Hub, proxy and proxy API each get a free port. The hub and every
single-user server it started are stopped when the block ends.

Where ``jupyterhub`` or ``configurable-http-proxy`` is missing the fixture skips, except in CI
(``CI=true``) or with ``EXECPLANNER_REQUIRE_HUB=1``: there a missing piece fails, so a broken CI
image cannot turn these tests into silent skips.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from jupyter_live import free_port

__all__ = [
    "LiveHub",
    "executor_options",
    "hub_missing",
    "hub_platform_entry",
    "live_hub_fixture",
    "require_hub",
    "run_hub",
]

START_TIMEOUT = 90.0
VENV_BIN = Path(sys.executable).parent
#: Scopes of the executor's service token: look users up, start and stop their servers, issue
#: server tokens for them. Nothing else (no admin:users, no server state, no shutdown).
EXECUTOR_SCOPES = ["read:users", "servers", "tokens"]
#: JupyterLab user settings written into each user's home.
LAB_SETTINGS = {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}
#: Scopes of the tests' own inspection token (server state holds the single-user server's pid).
INSPECTOR_SCOPES = ["read:users", "admin:server_state", "read:servers", "admin:users"]


def hub_missing() -> list[str]:
    """What this machine lacks to run a hub (empty when everything is there)."""
    missing = []
    if not (VENV_BIN / "jupyterhub").exists() and shutil.which("jupyterhub") is None:
        missing.append("jupyterhub (pip install jupyterhub)")
    if not (VENV_BIN / "jupyterhub-singleuser").exists() and shutil.which("jupyterhub-singleuser") is None:
        missing.append("jupyterhub-singleuser (pip install jupyterhub)")
    if shutil.which("configurable-http-proxy") is None:
        missing.append("configurable-http-proxy (npm install -g configurable-http-proxy)")
    return missing


def require_hub() -> None:
    """Skip without a hub; fail instead in CI."""
    missing = hub_missing()
    if not missing:
        return
    reason = "JupyterHub tests need " + "; ".join(missing)
    if os.environ.get("CI", "").lower() == "true" or os.environ.get("EXECPLANNER_REQUIRE_HUB") == "1":
        pytest.fail(reason + " (required here: CI=true or EXECPLANNER_REQUIRE_HUB=1)")
    pytest.skip(reason)


def _binary(name: str) -> str:
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else str(shutil.which(name))


@dataclass
class LiveHub:
    """A running hub. ``token`` is the executor's service token (also in ``token_file``);
    ``inspector_token`` is for the tests' own looks (server state, pids)."""

    url: str  # public URL (the proxy), ending with '/'
    root: Path
    token_file: Path
    token: str = field(repr=False)
    inspector_token: str = field(repr=False)
    password: str = field(repr=False)
    users: list[str]
    pid: int
    log_path: Path
    #: the login sessions handed out; closed when the hub stops
    sessions: list[httpx.Client] = field(default_factory=list, repr=False)

    def home(self, user: str) -> Path:
        """The user's home folder: the root of each of their servers' file browser."""
        return self.root / "home" / user

    def api(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> httpx.Response:
        """A hub API call with the inspector token (or ``token``); redirects are followed."""
        headers = {"Authorization": f"token {token or self.inspector_token}"}
        kwargs.setdefault("follow_redirects", True)
        return httpx.request(method, self.url + "hub/api/" + path, headers=headers, timeout=30, **kwargs)

    def servers(self, user: str) -> dict[str, Any]:
        """The user's servers as the hub reports them, with their state."""
        response = self.api("GET", f"users/{user}")
        response.raise_for_status()
        return response.json().get("servers") or {}

    def server_pid(self, user: str, server: str) -> int | None:
        """The pid of a running single-user server (from the spawner's state)."""
        entry = self.servers(user).get(server) or {}
        return (entry.get("state") or {}).get("pid")

    def wait_gone(self, user: str, server: str, timeout: float = 30.0) -> bool:
        """Wait until the hub no longer lists ``server`` as running (or at all)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.servers(user).get(server)
            if not entry or not (entry.get("ready") or entry.get("pending")):
                return True
            time.sleep(0.3)
        return False

    def login(self, user: str) -> httpx.Client:
        """A browser-like session logged in to the hub as ``user`` (form login, cookies, redirects
        followed as a browser would). It is closed when the hub stops."""
        session = httpx.Client(follow_redirects=True, timeout=30)
        self.sessions.append(session)
        page = session.get(self.url + "hub/login")
        page.raise_for_status()
        xsrf = session.cookies.get("_xsrf", "")
        answer = session.post(
            self.url + "hub/login",
            data={"username": user, "password": self.password, "_xsrf": xsrf},
            follow_redirects=False,
        )
        if answer.status_code not in (302, 303):
            raise RuntimeError(f"login as {user} failed: {answer.status_code}")
        return session

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _config(root: Path, ports: dict[str, int], users: list[str], tokens: dict[str, str], password: str) -> str:
    """The hub's ``jupyterhub_config.py`` (values go in as JSON literals, never as code)."""
    singleuser = [_binary("jupyterhub-singleuser")]
    args = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    # this venv enables the ExecPlanner extension for every Jupyter server; a hub session does not need
    # it, and without it a single-user server starts in half the time
    args.append("--ServerApp.jpserver_extensions=jupyter_server_extension=False")
    # no news or update checks in JupyterLab (the network is closed; a browser test sees no pop-up)
    args.append("--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate")
    values = {
        "port": ports["proxy"],
        "hub_port": ports["hub"],
        "api_url": f"http://127.0.0.1:{ports['api']}",
        "proxy_command": [_binary("configurable-http-proxy")],
        "db_url": f"sqlite:///{root / 'jupyterhub.sqlite'}",
        "cookie_secret_file": str(root / "jupyterhub_cookie_secret"),
        "pid_file": str(root / "jupyterhub.pid"),
        "proxy_pid_file": str(root / "proxy.pid"),
        "home": str(root / "home" / "{username}"),
        "cmd": singleuser,
        "args": args,
        "users": users,
        "password": password,
        "services": [
            {"name": "execplanner", "api_token": tokens["executor"]},
            {"name": "inspector", "api_token": tokens["inspector"]},
        ],
        "roles": [
            {"name": "execplanner", "scopes": EXECUTOR_SCOPES, "services": ["execplanner"]},
            {"name": "inspector", "scopes": INSPECTOR_SCOPES, "services": ["inspector"]},
        ],
    }
    return f"""# written by tests/hub_fixture.py
import json
v = json.loads({json.dumps(json.dumps(values))})
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = v["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = v["hub_port"]
c.ConfigurableHTTPProxy.api_url = v["api_url"]
c.ConfigurableHTTPProxy.command = v["proxy_command"]
c.ConfigurableHTTPProxy.pid_file = v["proxy_pid_file"]
c.ConfigurableHTTPProxy.should_start = True
c.JupyterHub.db_url = v["db_url"]
c.JupyterHub.cookie_secret_file = v["cookie_secret_file"]
c.JupyterHub.pid_file = v["pid_file"]
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = v["password"]
c.Authenticator.allowed_users = set(v["users"])
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = v["home"]
c.Spawner.cmd = v["cmd"]
c.Spawner.args = v["args"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.env_keep = ["PATH", "LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 0
c.JupyterHub.services = v["services"]
c.JupyterHub.load_roles = v["roles"]
c.JupyterHub.last_activity_interval = 3600
"""


def _environment(root: Path) -> dict[str, str]:
    """The hub's environment: nothing of the test runner's Jupyter, ExecPlanner or hub settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "EXECPLANNER", "JPY_", "CONFIGPROXY"))
    }
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    for name in ("config", "data", "runtime"):
        (root / "jupyter" / name).mkdir(parents=True, exist_ok=True)
    env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(16)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@contextmanager
def run_hub(root: Path, users: list[str] | None = None) -> Iterator[LiveHub]:
    """Start a hub in ``root`` with ``users`` (default ada and grace); stop it and its servers at the end."""
    users = list(users or ["ada", "grace"])
    root.mkdir(parents=True, exist_ok=True)
    (root / "home").mkdir(exist_ok=True)
    for user in users:  # JupyterLab settings in each home: no news, no update checks, no toasts
        settings = root / "home" / user / ".jupyter" / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True, exist_ok=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps(LAB_SETTINGS))
    ports = {"proxy": free_port(), "hub": free_port(), "api": free_port()}
    while len(set(ports.values())) < 3:
        ports["api"] = free_port()
    tokens = {"executor": secrets.token_hex(24), "inspector": secrets.token_hex(24)}
    password = secrets.token_urlsafe(12)
    secrets_dir = root / "secrets"
    secrets_dir.mkdir(mode=0o700, exist_ok=True)
    token_file = secrets_dir / "hub-token"
    token_file.write_text(tokens["executor"] + "\n")
    token_file.chmod(0o600)
    config = root / "jupyterhub_config.py"
    config.write_text(_config(root, ports, users, tokens, password))
    log_path = root / "jupyterhub.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [_binary("jupyterhub"), "-f", str(config)],
            cwd=root,
            env=_environment(root),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    hub = LiveHub(
        url=f"http://127.0.0.1:{ports['proxy']}/",
        root=root,
        token_file=token_file,
        token=tokens["executor"],
        inspector_token=tokens["inspector"],
        password=password,
        users=users,
        pid=process.pid,
        log_path=log_path,
    )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited with {process.returncode}:\n{hub.log()[-4000:]}")
            try:
                if hub.api("GET", "").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyterhub did not start within {START_TIMEOUT:g} s:\n{hub.log()[-4000:]}")
            time.sleep(0.3)
        for user in users:  # make the users known to the hub (allowed_users alone adds them at start)
            if hub.api("GET", f"users/{user}").status_code == 404:
                hub.api("POST", f"users/{user}").raise_for_status()
        _track_servers(hub, started)
        yield hub
    finally:
        try:
            _track_servers(hub, started)
        except (httpx.HTTPError, ValueError) as error:  # the hub may already be gone
            print(f"hub_fixture: could not list the servers before stopping the hub: {error}", file=sys.stderr)
        for session in hub.sessions:
            session.close()
        _stop(process)
        for pid in started:  # a single-user server the hub failed to stop
            _kill(pid)
        proxy_pid = _read_pid(root / "proxy.pid")
        if proxy_pid:
            _kill(proxy_pid)


def _track_servers(hub: LiveHub, pids: set[int]) -> None:
    for user in hub.users:
        for entry in hub.servers(user).values():
            pid = (entry.get("state") or {}).get("pid")
            if pid:
                pids.add(int(pid))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _kill(pid: int) -> None:
    """Stop ``pid`` if it is still a hub process of ours (a pid may have been reused since)."""
    try:
        process = psutil.Process(pid)
        if not any("jupyterhub" in part or "configurable-http-proxy" in part for part in process.cmdline()):
            return
        process.terminate()
        process.wait(timeout=10)
    except psutil.TimeoutExpired:
        process.kill()
    except (psutil.Error, PermissionError):
        pass


_shared: dict[str, Any] = {"hub": None, "context": None, "users": 0}


@pytest.fixture(scope="session", name="live_hub")
def live_hub_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveHub]:
    """One real hub for the whole test run (users ada and grace); tests use distinct server names.

    Every module that imports this fixture gets its own fixture definition; they share one hub,
    started by the first and stopped when the last is torn down."""
    require_hub()
    if _shared["hub"] is None:
        context = run_hub(tmp_path_factory.mktemp("hub"))
        _shared["hub"], _shared["context"] = context.__enter__(), context
    _shared["users"] += 1
    try:
        yield _shared["hub"]
    finally:
        _shared["users"] -= 1
        if _shared["users"] == 0:
            context, _shared["hub"], _shared["context"] = _shared["context"], None, None
            context.__exit__(None, None, None)


def executor_options(hub: LiveHub, **overrides: Any) -> dict[str, Any]:
    """The ``hosted.jupyterhub`` block for a platform backed by ``hub`` (two profiles, ada and grace)."""
    options: dict[str, Any] = {
        "url": hub.url,
        "token_file": str(hub.token_file),
        "profiles": [
            {"name": "small", "cores": 1, "memory": 1, "user_options": {"profile": "small"}},
            {"name": "large", "cores": 2, "memory": 2, "user_options": {"profile": "large"}},
        ],
    }
    options.update(overrides)
    return options


def hub_platform_entry(hub: LiveHub, name: str = "hub", *, owner: str | None = "ada", **hosted: Any) -> dict[str, Any]:
    """A platforms-file entry for a hosted platform backed by ``hub`` (for ``write_platforms``).

    ``owner`` is the hub user of a personal Jupyter server's owner (callers with one shared token
    have no name of their own). Extra keyword arguments go into ``hosted:`` (``cores``, ``offers`` ...).
    """
    jupyterhub = executor_options(hub)
    if owner is not None:
        jupyterhub["owner"] = owner
    return {
        "name": name,
        "title": "Notebook servers on a JupyterHub",
        "hosted": {"executor": "jupyterhub", "cores": 4, "memory": 8, **hosted, "jupyterhub": jupyterhub},
    }
