"""Finding the Jupyter server this kernel belongs to (env, JupyterHub, runtime files)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx


from .errors import PlannerError

API_PATH = "execplanner/api/"
PROBE_TIMEOUT = 3.0

#: How a planner reaches its platforms: through a Jupyter server, or in this process.
Mode = Literal["server", "local"]


@dataclass
class ServerInfo:
    """A Jupyter server that may run the ExecPlanner proxy, and how it was found."""

    url: str
    token: str | None
    source: str
    platforms: int | None = field(default=None, compare=False)
    #: The server's configuration error (it runs the extension, but its platforms file is broken): the
    #: planner uses this server anyway, so every call shows the error instead of quietly going local.
    config_error: str | None = field(default=None, compare=False)

    @property
    def api_url(self) -> str:
        return self.url + API_PATH


def base_url_of(url: str) -> str:
    """The server's base URL with one trailing slash (an ``.../execplanner/api/`` URL is cut back)."""
    url = url.strip()
    if not url.endswith("/"):
        url += "/"
    if url.endswith(API_PATH):
        url = url[: -len(API_PATH)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PlannerError(f"expected the Jupyter server's http(s) URL, such as 'http://127.0.0.1:8888/', got {url!r}")
    if parts.hostname in ("0.0.0.0", "::"):  # a bind-all address: the server is on this machine
        url = url.replace(parts.netloc, parts.netloc.replace(parts.hostname, "127.0.0.1"), 1)
    return url


def _candidate(url: Any, token: str | None, source: str, notes: list[str]) -> ServerInfo | None:
    """A server to probe, or None (with a note) when ``url`` is not a usable http(s) URL."""
    try:
        return ServerInfo(base_url_of(str(url)), token, source)
    except PlannerError as error:
        notes.append(f"{source}: {error}")
        return None


def _env_server(notes: list[str]) -> ServerInfo | None:
    url = os.environ.get("EXECPLANNER_URL")
    if not url:
        return None
    return _candidate(url, os.environ.get("EXECPLANNER_TOKEN") or None, "$EXECPLANNER_URL", notes)


def _running_servers() -> list[dict[str, Any]]:
    try:
        from jupyter_server.serverapp import list_running_servers
    except ImportError:  # plain Python without jupyter_server: no runtime files to read
        return []
    try:
        return list(list_running_servers())
    except OSError:
        return []


def _hub_server(servers: list[dict[str, Any]], notes: list[str]) -> ServerInfo | None:
    token = os.environ.get("JUPYTERHUB_API_TOKEN")
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not token or not prefix:
        return None
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if url:
        return _candidate(url, token, "JupyterHub ($JUPYTERHUB_SERVICE_URL)", notes)
    for info in servers:
        if info.get("base_url") == prefix and info.get("url"):
            return _candidate(info["url"], token, "JupyterHub ($JUPYTERHUB_SERVICE_PREFIX)", notes)
    notes.append(f"no running server has the JupyterHub prefix {prefix}")
    return None


def _this_kernel_id() -> str | None:
    """This kernel's id, from its connection file name (``kernel-<id>.json``); None outside a kernel."""
    try:
        from ipykernel.connect import get_connection_file

        name = Path(get_connection_file()).name
    except Exception:  # not inside a running kernel
        return None
    if name.startswith("kernel-") and name.endswith(".json"):
        return name[len("kernel-") : -len(".json")]
    return None


def _parent_pids() -> set[int]:
    """The pids of the server that may have started this kernel (jupyter_client sets JPY_PARENT_PID)."""
    pids = {os.getppid()}
    declared = os.environ.get("JPY_PARENT_PID", "")
    if declared.isdigit():
        pids.add(int(declared))
    return pids


def _lists_kernel(server: ServerInfo, kernel_id: str, http: httpx.Client) -> bool:
    try:
        answer = http.get(server.url + "api/kernels", headers=auth_header(server.token), timeout=PROBE_TIMEOUT)
        return answer.status_code < 400 and any(item.get("id") == kernel_id for item in answer.json())
    except Exception:  # an unreachable or foreign server simply does not match
        return False


def _runtime_servers(servers: list[dict[str, Any]], http: httpx.Client, notes: list[str]) -> list[ServerInfo]:
    """The running servers this kernel belongs to, best match first."""
    usable: list[tuple[dict[str, Any], ServerInfo]] = []
    for info in servers:
        if info.get("sock"):
            notes.append(f"server pid {info.get('pid')} listens on a Unix socket, which this client cannot use")
            continue
        if not info.get("token"):
            notes.append(f"server pid {info.get('pid')} has no token in its runtime file (password login only)")
            continue
        server = _candidate(info.get("url"), info["token"], f"runtime file of server pid {info.get('pid')}", notes)
        if server is not None:
            usable.append((info, server))
    parents = _parent_pids()
    by_pid = [server for info, server in usable if info.get("pid") in parents]
    if by_pid:
        return by_pid
    kernel_id = _this_kernel_id()
    if kernel_id:
        listed = [server for _, server in usable if _lists_kernel(server, kernel_id, http)]
        for server in listed:
            server.source += f" (lists kernel {kernel_id[:8]})"
        if listed:
            return listed
    if usable:
        notes.append(f"{len(usable)} running Jupyter server(s) found, none of them this kernel's")
    return []


def auth_header(token: str | None) -> dict[str, str]:
    return {"Authorization": f"token {token}"} if token else {}


def probe(server: ServerInfo, http: httpx.Client) -> str | None:
    """None if the server answers as an ExecPlanner proxy, else why not."""
    import httpx

    try:
        answer = http.get(server.api_url + "platforms", headers=auth_header(server.token), timeout=PROBE_TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL) as error:
        return f"{server.url} ({server.source}) is not reachable: {type(error).__name__}"
    if answer.status_code == 403:
        return f"{server.url} ({server.source}) refused the token"
    if answer.status_code == 404:
        return f"{server.url} ({server.source}) does not run the ExecPlanner extension"
    if answer.status_code == 503:  # the extension runs, its configuration does not: say so, do not go local
        try:
            message = str(answer.json().get("message") or "")
        except (ValueError, TypeError, AttributeError):
            message = ""
        server.platforms = 0
        server.config_error = message or f"{server.url} answered 503: its ExecPlanner configuration is broken"
        return None
    if answer.status_code != 200:
        return f"{server.url} ({server.source}) answered HTTP {answer.status_code}"
    try:
        server.platforms = len(answer.json())
    except (ValueError, TypeError):
        return f"{server.url} ({server.source}) did not answer JSON"
    return None


def discover_server(http: httpx.Client | None = None) -> tuple[ServerInfo | None, list[str]]:
    """The ExecPlanner proxy this kernel should use, and notes on every candidate that was not used."""
    http = http or new_http()
    notes: list[str] = []
    candidates: list[ServerInfo] = []
    from_env = _env_server(notes)
    if from_env is not None:
        candidates.append(from_env)
    servers = _running_servers()
    hub = _hub_server(servers, notes)
    if hub is not None:
        candidates.append(hub)
    candidates.extend(_runtime_servers(servers, http, notes))
    if not candidates:
        notes.append("no $EXECPLANNER_URL, no JupyterHub environment, no running Jupyter server of this kernel")
    for server in candidates:
        problem = probe(server, http)
        if problem is None:
            return server, notes
        notes.append(problem)
    return None, notes


def new_http() -> httpx.Client:
    """The HTTP client of one planner. The proxy is this kernel's own server: no HTTP proxies, no
    .netrc credentials (``trust_env=False``), and no redirects, so the token goes nowhere else."""
    import httpx

    return httpx.Client(trust_env=False, follow_redirects=False, headers={"User-Agent": "execplanner-widgets client"})


# ------------------------------------------------------------------------------------- backends
