"""A real ``jupyter server`` subprocess with the ExecPlanner extension, for tests that need a server
in another process (the kernel client's server mode uses blocking ``httpx`` calls, which would stall a
server running on the test's own event loop).

::

    with run_jupyter_server(tmp_path, platforms_file) as server:
        server.url, server.token, server.pid, server.runtime_dir

The server listens on 127.0.0.1 under a non-root base URL, with its own config, data and runtime
folders under ``tmp_path`` (so runtime-file discovery sees only this server), and is stopped at the
end of the block. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = ["DISCOVERY_VARIABLES", "LiveServer", "free_port", "no_discovery_hints", "run_jupyter_server"]

START_TIMEOUT = 90.0

#: Environment variables through which the kernel client finds a server (or is told how to run).
DISCOVERY_VARIABLES = (
    "EXECPLANNER_URL",
    "EXECPLANNER_TOKEN",
    "EXECPLANNER_MODE",
    "EXECPLANNER_PLATFORMS",
    "JPY_PARENT_PID",
    "JUPYTERHUB_API_TOKEN",
    "JUPYTERHUB_SERVICE_PREFIX",
    "JUPYTERHUB_SERVICE_URL",
)


def no_discovery_hints(monkeypatch: Any, scratch: Path) -> Any:
    """Clear every discovery hint the test runner's environment may hold: no server is found unless
    a test sets one. Runtime files and local state go to folders under ``scratch``."""
    for name in DISCOVERY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(scratch / "empty-runtime"))
    monkeypatch.setenv("EXECPLANNER_DATA_DIR", str(scratch / "local-state"))
    return monkeypatch


@dataclass
class LiveServer:
    url: str  # base URL, ending with '/'
    token: str
    pid: int
    runtime_dir: Path
    log_path: Path
    env: dict[str, str]

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET with the server's token; redirects are followed unless ``follow_redirects=False``."""
        kwargs.setdefault("follow_redirects", True)
        return httpx.get(self.url + path, headers={"Authorization": f"token {self.token}"}, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        """POST with the server's token; redirects are followed unless ``follow_redirects=False``."""
        kwargs.setdefault("follow_redirects", True)
        return httpx.post(self.url + path, headers={"Authorization": f"token {self.token}"}, timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _jupyter_env(root: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JUPYTER", "EXECPLANNER", "JPY_"))}
    for name in ("config", "data", "runtime"):
        (root / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(root / "config"),
        JUPYTER_DATA_DIR=str(root / "data"),
        JUPYTER_RUNTIME_DIR=str(root / "runtime"),
        JUPYTER_CONFIG_PATH=str(root / "config"),
        PYTHONUNBUFFERED="1",
    )
    return env


@contextmanager
def run_jupyter_server(
    root: Path,
    platforms_file: Path | None,
    *,
    base_url: str = "/jupyter/user/ada/",
    extension_config: dict[str, Any] | None = None,
    enable_extension: bool = True,
    config_path: Path | None = None,
    app: str = "jupyter_server",
    extra_config: dict[str, dict[str, Any]] | None = None,
) -> Iterator[LiveServer]:
    """Start ``jupyter server``; stop it when the block ends.

    The extension is enabled in the server's own config unless ``enable_extension`` is False (then
    only what ``config_path``, a folder put on ``JUPYTER_CONFIG_PATH``, says enables it). ``app`` is
    the module run with ``python -m`` (``"jupyterlab"`` for the browser tests); ``extra_config`` adds
    or overrides traits, section by section (e.g. ``{"ServerApp": {"root_dir": ...}, "LabApp": {...}}``).
    """
    root.mkdir(parents=True, exist_ok=True)
    env = _jupyter_env(root)
    if config_path is not None:
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(config_path), env["JUPYTER_CONFIG_PATH"]])
    token = secrets.token_hex(16)
    port = free_port()
    planner_config: dict[str, Any] = {"data_dir": str(root / "state")}
    if platforms_file is not None:
        planner_config["platforms_file"] = str(platforms_file)
    planner_config.update(extension_config or {})
    config = {
        "ServerApp": {
            **({"jpserver_extensions": {"jupyter_server_extension": True}} if enable_extension else {}),
            "ip": "127.0.0.1",
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "base_url": base_url,
            "root_dir": str(root),
            "allow_root": True,  # CI containers run as root
        },
        "IdentityProvider": {"token": token},
        "ExecPlanner": planner_config,
    }
    for section, traits in (extra_config or {}).items():
        config[section] = {**config.get(section, {}), **traits}
    (root / "config" / "jupyter_server_config.json").write_text(json.dumps(config))
    log_path = root / "server.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", app],
            env=env,
            cwd=root,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LiveServer(f"http://127.0.0.1:{port}{base_url}", token, process.pid, root / "runtime", log_path, env)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {process.returncode}:\n{server.log()[-3000:]}")
            try:
                if server.get("api/status").status_code == 200 and any((root / "runtime").glob("jpserver-*.json")):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jupyter server did not start within {START_TIMEOUT:g} s:\n{server.log()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
