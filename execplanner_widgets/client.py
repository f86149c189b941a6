"""``Planner``: the one entry point in a notebook, through the Jupyter server's proxy or in-process.

::

    from execplanner_widgets import Planner
    planner = Planner()                  # finds the server this kernel belongs to, else runs locally
    planner.describe_mode()              # says which, and why
    results = planner.offers("task.yaml")
    session = planner.accept(results[0].offers[0])
    planner.wait(session)

**Server mode** calls the ExecPlanner proxy (``{base_url}execplanner/api/``) of the Jupyter server with
``requests``: the server holds the platform list and the credentials and can reach platforms the
kernel may not. The server is found in this order:

1. ``Planner(url=..., token=...)``;
2. ``$EXECPLANNER_URL`` (the server's base URL) and ``$EXECPLANNER_TOKEN``;
3. JupyterHub's environment: ``$JUPYTERHUB_SERVICE_URL`` (or the running server whose base URL is
   ``$JUPYTERHUB_SERVICE_PREFIX``) with ``$JUPYTERHUB_API_TOKEN``;
4. the Jupyter runtime files of running servers (``jupyter_server.serverapp.list_running_servers``),
   keeping the one this kernel belongs to: its pid is ``$JPY_PARENT_PID`` or this process's parent,
   or it lists this kernel's id (from ``ipykernel.get_connection_file()``).

Each candidate is probed with ``GET {base}execplanner/api/platforms``; the first that answers is used.

**Local mode** runs the same :class:`~execplanner_widgets.planner.Federation` in this process, from
the same platforms file (``platforms_file=``, else ``$EXECPLANNER_PLATFORMS``, else the built-in demo)
on a private event loop in a background thread: a kernel already runs an asyncio loop in its main
thread, so nothing here calls ``asyncio.run`` there. It is used when no server is reachable (plain
Python, CI, Zeppelin, VS Code), when ``mode="local"`` or ``$EXECPLANNER_MODE=local``, or when a
``platforms_file`` is given (the server cannot be told to use another file).

Both modes answer alike: the same models, and the same exceptions (:class:`PlannerError` with the
server's message, :class:`~execplanner_widgets.model.InvalidRequest` for a bad request).
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urljoin, urlsplit

from .model import (
    ExecutionSession,
    FieldError,
    InvalidRequest,
    ResultItem,
    SessionPhase,
    parse_request,
    utcnow,
)
from .planner import PlatformList, PlatformResult, ResultList
from .platforms.base import Calendar, PlatformDescription

if TYPE_CHECKING:
    import requests

    from jupyter_server_extension.handlers.models import JobStatus

    from .planner import Federation

__all__ = ["Planner", "PlannerError", "PlannerTimeout", "ServerInfo", "discover_server"]

API_PATH = "execplanner/api/"
PROBE_TIMEOUT = 3.0
DEFAULT_TIMEOUT = 120.0

T = TypeVar("T")
Mode = Literal["server", "local"]


class PlannerError(RuntimeError):
    """The planner or a platform could not do what was asked; the message says why.

    ``status`` is the HTTP-style status (404 unknown platform or session, 409 not possible in this
    phase, 502 the platform failed, 504 it did not answer in time), ``field`` the request field at
    fault where there is one, ``platform`` the platform concerned.
    """

    def __init__(self, message: str, *, status: int | None = None, field: str | None = None, platform: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.platform = platform


class PlannerTimeout(PlannerError, TimeoutError):
    """``wait`` ran out of time before the session reached the phase it was waiting for."""


# ------------------------------------------------------------------------------------ discovery


@dataclass
class ServerInfo:
    """A Jupyter server that may run the ExecPlanner proxy, and how it was found."""

    url: str
    token: str | None
    source: str
    platforms: int | None = field(default=None, compare=False)

    @property
    def api_url(self) -> str:
        return self.url + API_PATH


def _base_url(url: str) -> str:
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
        return ServerInfo(_base_url(str(url)), token, source)
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


def _lists_kernel(server: ServerInfo, kernel_id: str, http: requests.Session) -> bool:
    try:
        answer = http.get(server.url + "api/kernels", headers=_auth(server.token), timeout=PROBE_TIMEOUT)
        return answer.ok and any(item.get("id") == kernel_id for item in answer.json())
    except Exception:  # an unreachable or foreign server simply does not match
        return False


def _runtime_servers(servers: list[dict[str, Any]], http: requests.Session, notes: list[str]) -> list[ServerInfo]:
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


def _auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"token {token}"} if token else {}


def _probe(server: ServerInfo, http: requests.Session) -> str | None:
    """None if the server answers as an ExecPlanner proxy, else why not."""
    import requests

    try:
        answer = http.get(server.api_url + "platforms", headers=_auth(server.token), timeout=PROBE_TIMEOUT)
    except requests.RequestException as error:
        return f"{server.url} ({server.source}) is not reachable: {type(error).__name__}"
    if answer.status_code == 403:
        return f"{server.url} ({server.source}) refused the token"
    if answer.status_code == 404:
        return f"{server.url} ({server.source}) does not run the ExecPlanner extension"
    if answer.status_code != 200:
        return f"{server.url} ({server.source}) answered HTTP {answer.status_code}"
    try:
        server.platforms = len(answer.json())
    except (ValueError, TypeError):
        return f"{server.url} ({server.source}) did not answer JSON"
    return None


def discover_server(http: requests.Session | None = None) -> tuple[ServerInfo | None, list[str]]:
    """The ExecPlanner proxy this kernel should use, and notes on every candidate that was not used."""
    http = http or _new_http()
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
        problem = _probe(server, http)
        if problem is None:
            return server, notes
        notes.append(problem)
    return None, notes


def _new_http() -> requests.Session:
    import requests

    http = requests.Session()
    http.trust_env = False  # the proxy is this kernel's own server: no HTTP proxies, no .netrc credentials
    http.headers["User-Agent"] = "execplanner-widgets client"
    return http


# ------------------------------------------------------------------------------------- backends


def _error_from_document(status: int, document: Any, fallback: str) -> Exception:
    """The exception for an error answer: InvalidRequest for a bad request, else PlannerError."""
    if not isinstance(document, dict) or not isinstance(document.get("message"), str):
        return PlannerError(fallback, status=status)
    errors = document.get("errors")
    if status == 400 and isinstance(errors, list) and errors:
        fields = [FieldError(str(item.get("field") or ""), str(item.get("message") or "")) for item in errors if isinstance(item, dict)]
        if fields:
            return InvalidRequest(fields)
    field = document.get("field") if isinstance(document.get("field"), str) else None
    platform = document.get("platform") if isinstance(document.get("platform"), str) else None
    return PlannerError(document["message"], status=status, field=field, platform=platform)


def _raise_for_status(answer: requests.Response, fallback: str) -> None:
    """A 4xx/5xx answer as the exception its JSON body describes (``fallback`` when it has none)."""
    if answer.status_code < 400:
        return
    try:
        document = answer.json()
    except ValueError:
        document = None
    raise _error_from_document(answer.status_code, document, fallback)


class _ServerBackend:
    """Calls the proxy with ``requests``."""

    mode: Mode = "server"

    def __init__(self, server: ServerInfo, http: requests.Session, timeout: float) -> None:
        self.server = server
        self.http = http
        self.timeout = timeout

    def _send(self, method: str, path: str, *, body: Any = None, params: Any = None, stream: bool = False, accept: str = "application/json") -> requests.Response:
        import requests

        headers = {**_auth(self.server.token), "Accept": accept}
        try:
            answer = self.http.request(
                method, self.server.api_url + path, json=body, params=params, headers=headers,
                timeout=(PROBE_TIMEOUT * 2, self.timeout), stream=stream,
            )
        except requests.Timeout:
            raise PlannerError(f"the Jupyter server at {self.server.url} did not answer within {self.timeout:g} s", status=504) from None
        except requests.RequestException as error:
            raise PlannerError(f"cannot reach the Jupyter server at {self.server.url}: {type(error).__name__}") from None
        _raise_for_status(answer, f"HTTP {answer.status_code} from {self.server.url}")
        return answer

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._send(method, path, **kwargs)
        try:
            return answer.json()
        except ValueError:
            raise PlannerError(f"the Jupyter server at {self.server.url} answered something that is not JSON", status=502) from None

    def platforms(self) -> list[PlatformDescription]:
        return [PlatformDescription.model_validate(item) for item in self._json("GET", "platforms")]

    def offers(self, request: dict[str, Any], platforms: list[str] | None) -> list[PlatformResult]:
        params = {"platform": platforms} if platforms else None
        return [PlatformResult.model_validate(item) for item in self._json("POST", "offers", body=request, params=params)]

    def stream_offers(self, request: dict[str, Any], platforms: list[str] | None) -> Iterator[PlatformResult]:
        params = {"platform": platforms} if platforms else None
        # sent now, so that a bad request fails at the call, as in local mode; read as it arrives
        answer = self._send("POST", "offers/stream", body=request, params=params, stream=True, accept="application/x-ndjson")
        return self._results(answer)

    def _results(self, answer: requests.Response) -> Iterator[PlatformResult]:
        import requests

        with answer:
            try:
                for line in answer.iter_lines(chunk_size=None):
                    if line.strip():
                        yield PlatformResult.model_validate(json.loads(line))
            except requests.RequestException as error:
                raise PlannerError(f"the offers stream from {self.server.url} broke off: {type(error).__name__}") from None

    def calendar(self, platform: str, hours: float) -> Calendar:
        return Calendar.model_validate(self._json("GET", f"platforms/{_segment(platform)}/calendar", params={"hours": hours}))

    def _absolute(self, results: list[ResultItem]) -> None:
        """Result links from the server are server-relative; make them usable from the kernel."""
        for item in results:
            if item.url and not urlsplit(item.url).scheme:
                item.url = urljoin(self.server.url, item.url)

    def _session(self, document: Any) -> ExecutionSession:
        session = ExecutionSession.model_validate(document)
        self._absolute(session.results)
        return session

    def session(self, platform: str, uuid: str) -> ExecutionSession:
        return self._session(self._json("GET", f"platforms/{_segment(platform)}/sessions/{_segment(uuid)}"))

    def update(self, platform: str, uuid: str, phase: SessionPhase) -> ExecutionSession:
        body = {"kind": "uri:enum-value-update", "path": "phase", "value": str(phase)}
        return self._session(self._json("POST", f"platforms/{_segment(platform)}/sessions/{_segment(uuid)}", body=body))

    def job(self, platform: str, job_id: str) -> JobStatus:
        from jupyter_server_extension.handlers.models import JobStatus

        status = JobStatus.model_validate(self._json("GET", f"platforms/{_segment(platform)}/jobs/{_segment(job_id)}"))
        self._absolute(status.results)
        if status.session is not None:
            self._absolute(status.session.results)
        return status

    def describe(self) -> str:
        count = f", {self.server.platforms} platform(s)" if self.server.platforms is not None else ""
        return f"server mode: the ExecPlanner proxy of the Jupyter server at {self.server.url} (found via {self.server.source}{count})"

    def fetch(self, url: str, target: Path) -> Path:
        """Stream a result from the server to ``target``; the token goes only to the server's origin."""
        import requests

        absolute = urljoin(self.server.url, url)
        same_origin = _origin(absolute) == _origin(self.server.url)
        if not same_origin:
            raise PlannerError(f"refusing to download {absolute}: results come from the Jupyter server at {self.server.url}")
        try:
            with self.http.get(absolute, headers=_auth(self.server.token), stream=True, timeout=(PROBE_TIMEOUT * 2, self.timeout)) as answer:
                _raise_for_status(answer, f"HTTP {answer.status_code} downloading {absolute}")
                with open(target, "wb") as handle:
                    for chunk in answer.iter_content(chunk_size=1024 * 1024):
                        handle.write(chunk)
        except requests.RequestException as error:
            raise PlannerError(f"cannot download {absolute}: {type(error).__name__}") from None
        return target

    def close(self) -> None:
        self.http.close()


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


class _EventLoopThread:
    """A private asyncio loop in a daemon thread: coroutines from synchronous code, kernel or not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="execplanner-local", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def iterate(self, make_stream: Callable[[], AsyncIterator[T]]) -> Iterator[T]:
        """Items of an async iterator, as they arrive; leaving early cancels the producer."""
        items: queue.Queue[tuple[str, Any]] = queue.Queue()

        async def pump() -> None:
            stream = make_stream()
            try:
                async for item in stream:
                    items.put(("item", item))
            except BaseException as error:  # handed to the consumer, which re-raises it
                items.put(("error", error))
                if isinstance(error, asyncio.CancelledError):
                    raise
            else:
                items.put(("end", None))
            finally:
                await stream.aclose()  # type: ignore[attr-defined]

        future = asyncio.run_coroutine_threadsafe(pump(), self.loop)
        try:
            while True:
                kind, value = items.get()
                if kind == "item":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            future.cancel()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


def _close_local(federation: Federation, runner: _EventLoopThread) -> None:
    """Close the platforms, then the loop (also run by a finalizer when a Planner is forgotten)."""
    if runner.loop.is_closed() or not runner.thread.is_alive():
        return
    try:
        runner.run(federation.aclose(), timeout=10)
    except Exception:  # closing must not raise at interpreter exit
        pass
    runner.close()


class _LocalBackend:
    """The same federation the server would run, in this process."""

    mode: Mode = "local"

    def __init__(self, platforms_file: str | os.PathLike[str] | None, data_dir: str | os.PathLike[str] | None, user: str | None, reason: str) -> None:
        from .config import build_federation, default_context, load_platforms_file, resolve_platforms_path

        path, is_demo = resolve_platforms_path(platforms_file)
        config = load_platforms_file(path)
        context = default_context(data_dir)
        context.config_dir = path.parent
        self.federation = build_federation(config, context)
        self.source = "the built-in demo federation" if is_demo else str(path)
        self.user = user if user is not None else _local_user()
        self.reason = reason
        self.runner = _EventLoopThread()
        self._finalizer = weakref.finalize(self, _close_local, self.federation, self.runner)
        try:
            self.runner.run(self.federation.start(), timeout=60)
        except BaseException:
            self.close()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T], platform: str | None = None) -> T:
        from .planner import UnknownPlatform
        from .platforms.base import PlatformError

        try:
            return self.runner.run(coroutine)
        except UnknownPlatform as error:
            raise PlannerError(str(error), status=404, field="platform", platform=error.name) from None
        except PlatformError as error:
            raise PlannerError(str(error), status=error.status, platform=platform) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise PlannerError(f"{platform or 'the platform'} did not answer in time", status=504, platform=platform) from None

    def _timed(self, platform: str, make: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        async def call() -> T:
            target = self.federation.get(platform)
            return await asyncio.wait_for(make(target), self.federation.timeout_for(target))

        return self._call(call(), platform)

    def platforms(self) -> list[PlatformDescription]:
        return self.federation.describe()

    def offers(self, request: dict[str, Any], platforms: list[str] | None) -> list[PlatformResult]:
        return self._call(self.federation.offers(request, user=self.user, platforms=platforms))

    def stream_offers(self, request: dict[str, Any], platforms: list[str] | None) -> Iterator[PlatformResult]:
        for name in platforms or []:
            self._call(_lookup(self.federation, name))  # unknown names fail before the stream starts
        return self.runner.iterate(lambda: self.federation.stream_offers(request, user=self.user, platforms=platforms))

    def session(self, platform: str, uuid: str) -> ExecutionSession:
        from jupyter_server_extension.handlers.models import check_identifier

        check_identifier(uuid, "uuid")
        return self._timed(platform, lambda target: target.session(uuid, user=self.user))

    def update(self, platform: str, uuid: str, phase: SessionPhase) -> ExecutionSession:
        from jupyter_server_extension.handlers.models import check_identifier

        from .model import phase_update

        check_identifier(uuid, "uuid")
        return self._timed(platform, lambda target: target.update_session(uuid, phase_update(phase), user=self.user))

    def job(self, platform: str, job_id: str) -> JobStatus:
        from jupyter_server_extension.handlers.jobs import follow_job

        return self._timed(
            platform, lambda target: follow_job(target, job_id, user=self.user, timeout=self.federation.timeout_for(target))
        )

    def describe(self) -> str:
        return f"local mode: {len(self.federation)} platform(s) from {self.source}, asked from this process ({self.reason})"

    def calendar(self, platform: str, hours: float) -> Calendar:
        async def read() -> Calendar:
            target = self.federation.get(platform)
            start = utcnow()
            return await target.calendar(start, start + timedelta(hours=hours), user=self.user)

        return self._call(read(), platform)

    def fetch(self, url: str, target: Path) -> Path:
        """Copy a result that a hosted platform in this process wrote (a ``file://`` URL)."""
        import shutil
        from urllib.parse import unquote

        parts = urlsplit(url)
        if parts.scheme != "file":
            raise PlannerError(f"in local mode results are files on this machine; cannot fetch {url}")
        shutil.copyfile(unquote(parts.path), target)
        return target

    def close(self) -> None:
        self._finalizer()


async def _lookup(federation: Federation, name: str) -> None:
    federation.get(name)


def _local_user() -> str | None:
    """Who is asking, in local mode: the login name (the server would use the Jupyter identity)."""
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # no login name in some containers
        return None


# -------------------------------------------------------------------------------------- Planner


def _uuid_of(item: Any, what: str) -> str:
    if isinstance(item, ExecutionSession):
        uuid = item.uuid
    elif isinstance(item, dict):
        uuid = (item.get("meta") or {}).get("uuid") or item.get("uuid")
    elif isinstance(item, str):
        uuid = item
    else:
        raise TypeError(f"expected an {what} (ExecutionSession), its document or its uuid, got {type(item).__name__}")
    if not uuid:
        raise PlannerError(f"this {what} has no uuid (meta.uuid); it did not come from a platform")
    return str(uuid)


def _stop_condition(until: Any) -> Callable[[ExecutionSession], bool]:
    """When ``wait`` stops: at ``until`` (phases or a test), and always at a final phase, since
    nothing changes after that and waiting on would only run into the timeout."""
    if until is None:
        return lambda session: session.is_final
    if callable(until):
        return lambda session: bool(until(session)) or session.is_final
    try:
        phases = [until] if isinstance(until, (str, SessionPhase)) else list(until)
        wanted = {SessionPhase(str(phase).upper()) for phase in phases}
    except ValueError:
        names = ", ".join(SessionPhase.__members__)
        raise ValueError(f"until must name session phases ({names}) or be a function of the session") from None
    return lambda session: session.phase in wanted or session.is_final


class Planner:
    """Ask every platform "can I do this?" and "when?", book an offer, follow the session.

    Parameters
    ----------
    platforms_file:
        The platforms file for local mode (giving one selects local mode unless ``mode="server"``).
    url, token:
        The Jupyter server to use (skips discovery); ``token`` defaults to ``$EXECPLANNER_TOKEN``.
    mode:
        ``"auto"`` (the default: ``$EXECPLANNER_MODE`` may say ``local`` or ``server``; a ``url``
        means ``"server"``), ``"server"`` (fail if no server is reachable) or ``"local"``.
    timeout:
        Seconds to wait for the server's answer in server mode.
    data_dir:
        Where hosted platforms keep state in local mode (default ``$EXECPLANNER_DATA_DIR`` or the
        Jupyter data folder).
    user:
        Who is asking in local mode (default: the login name). In server mode the server uses the
        Jupyter identity of the token.
    """

    def __init__(
        self,
        platforms_file: str | os.PathLike[str] | None = None,
        *,
        url: str | None = None,
        token: str | None = None,
        mode: Literal["auto", "server", "local"] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        data_dir: str | os.PathLike[str] | None = None,
        user: str | None = None,
    ) -> None:
        if mode is None:  # an explicit url means that server; else $EXECPLANNER_MODE may choose
            mode = "server" if url is not None else os.environ.get("EXECPLANNER_MODE") or "auto"  # type: ignore[assignment]
        chosen = str(mode).lower()
        if chosen not in ("auto", "server", "local"):
            raise ValueError(f"mode must be 'auto', 'server' or 'local', not {chosen!r}")
        if chosen == "local" and url:
            raise ValueError("a url is for server mode; leave it out for mode='local'")
        if platforms_file is not None and (chosen == "server" or url is not None):
            raise ValueError(
                "a platforms file is for local mode; a server uses its own (c.ExecPlanner.platforms_file). "
                "Leave out platforms_file, or use mode='local'"
            )
        self._origins: dict[str, str] = {}
        self._lock = threading.Lock()
        self._backend: _ServerBackend | _LocalBackend
        if chosen == "auto" and platforms_file is not None and url is None:
            chosen, reason = "local", "a platforms file was given"
        elif chosen == "local":
            reason = "local mode was asked for"
        else:
            reason = ""
        if chosen != "local":
            http = _new_http()
            if url is not None:
                server: ServerInfo | None = ServerInfo(_base_url(url), token or os.environ.get("EXECPLANNER_TOKEN") or None, "url=")
                problem = _probe(server, http)
                if problem is not None:
                    http.close()
                    raise PlannerError(f"cannot use the ExecPlanner proxy: {problem}")
                notes: list[str] = []
            else:
                server, notes = discover_server(http)
            if server is not None:
                self._backend = _ServerBackend(server, http, timeout)
                return
            http.close()
            if chosen == "server":
                raise PlannerError("no Jupyter server with the ExecPlanner extension was found: " + "; ".join(notes))
            if os.environ.get("EXECPLANNER_URL"):
                warnings.warn(f"$EXECPLANNER_URL is set but not usable ({'; '.join(notes)}); running in-process", stacklevel=2)
            reason = "no Jupyter server with the ExecPlanner extension: " + "; ".join(notes)
        self._backend = _LocalBackend(platforms_file, data_dir, user, reason)

    # ------------------------------------------------------------------------------ the mode

    @property
    def mode(self) -> Mode:
        """``"server"`` (through the Jupyter server's proxy) or ``"local"`` (in this process)."""
        return self._backend.mode

    @property
    def server_url(self) -> str | None:
        """The Jupyter server used in server mode."""
        return self._backend.server.url if isinstance(self._backend, _ServerBackend) else None

    def describe_mode(self) -> str:
        """One line: which mode, which server or platforms file, and why."""
        return self._backend.describe()

    def __repr__(self) -> str:
        backend = getattr(self, "_backend", None)
        return f"<Planner {backend.describe() if backend is not None else '(not started)'}>"

    # ------------------------------------------------------------------------------ questions

    def platforms(self) -> PlatformList:
        """The platforms that will be asked: name, title, kind, what each accepts, limits."""
        return PlatformList(self._backend.platforms())

    def _request(self, request: Any) -> dict[str, Any]:
        return parse_request(request).to_broker()  # files are read here, where the user's paths make sense

    def _remember(self, result: PlatformResult) -> PlatformResult:
        with self._lock:
            for offer in result.offers:
                if offer.uuid:
                    self._origins[offer.uuid] = result.platform
        return result

    def offers(self, request: Any, *, platforms: str | Iterable[str] | None = None) -> ResultList:
        """Every platform's answer (YES with offers, NO with reasons, ERROR with a cause), in
        configuration order, as a :class:`~execplanner_widgets.planner.ResultList` (a list that
        shows as a table). ``request`` is anything :func:`parse_request` reads: a dict, JSON or
        YAML text, a file path or an :class:`ExecutionRequest`."""
        document = self._request(request)
        return ResultList(self._remember(result) for result in self._backend.offers(document, _names(platforms)))

    def stream_offers(self, request: Any, *, platforms: str | Iterable[str] | None = None) -> Iterator[PlatformResult]:
        """The same answers, each as soon as its platform answers (a hanging platform comes last)."""
        document = self._request(request)
        stream = self._backend.stream_offers(document, _names(platforms))
        return (self._remember(result) for result in stream)

    # ------------------------------------------------------------------------------ sessions

    def _platform_of(self, uuid: str, platform: str | None, what: str) -> str:
        if platform:
            return platform
        with self._lock:
            known = self._origins.get(uuid)
        if known is None:
            raise PlannerError(
                f"I do not know which platform {what} {uuid} came from (it was not in an answer this planner "
                f"received); say it with platform='name'",
                status=404,
                field="platform",
            )
        return known

    def _session_call(self, item: Any, platform: str | None, what: str, call: Callable[[str, str], ExecutionSession]) -> ExecutionSession:
        uuid = _uuid_of(item, what)
        name = self._platform_of(uuid, platform, what)
        session = call(name, uuid)
        with self._lock:
            self._origins[uuid] = name
            if session.uuid:
                self._origins[session.uuid] = name
        return session

    def accept(self, offer: Any, *, platform: str | None = None) -> ExecutionSession:
        """Book ``offer`` (an offer from :meth:`offers`, or its uuid); the platform rejects its siblings."""
        return self._session_call(offer, platform, "offer", lambda name, uuid: self._backend.update(name, uuid, SessionPhase.ACCEPTED))

    def reject(self, offer: Any, *, platform: str | None = None) -> ExecutionSession:
        """Decline ``offer``, releasing what it held."""
        return self._session_call(offer, platform, "offer", lambda name, uuid: self._backend.update(name, uuid, SessionPhase.REJECTED))

    def cancel(self, session: Any, *, platform: str | None = None) -> ExecutionSession:
        """Stop a booked or running session."""
        return self._session_call(session, platform, "session", lambda name, uuid: self._backend.update(name, uuid, SessionPhase.CANCELLED))

    def session(self, session_or_uuid: Any, *, platform: str | None = None) -> ExecutionSession:
        """The offer or session as the platform sees it now."""
        return self._session_call(session_or_uuid, platform, "session", self._backend.session)

    def job(self, session_or_id: Any, *, platform: str | None = None) -> JobStatus:
        """Where an accepted session's run stands (with the UWS job for hosted platforms)."""
        job_id = _uuid_of(session_or_id, "session")
        return self._backend.job(self._platform_of(job_id, platform, "session"), job_id)

    def calendar(self, platform: str, *, hours: float = 24) -> Calendar:
        """``platform``'s booking calendar for the next ``hours``: what is booked, offered or
        reserved, step by step (shows as bars in a notebook). Hosted platforms keep one; others say
        they do not."""
        if not 0 < hours <= 24 * 14:
            raise ValueError(f"hours must be more than 0 and at most {24 * 14}, not {hours!r}")
        return self._backend.calendar(platform, hours)

    def download(self, result: Any, to: str | os.PathLike[str] = ".") -> Path:
        """Save a result of a session (a ``ResultItem`` from ``session.results``, or its URL) into
        the folder ``to``; returns the path of the file. Works alike in both modes."""
        url = result if isinstance(result, str) else getattr(result, "url", None)
        if not url:
            raise PlannerError("this result has no URL to download it from")
        name = getattr(result, "id", None) or Path(urlsplit(url).path).name or "result"
        folder = Path(to)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(str(name)).name
        return self._backend.fetch(url, target)

    def wait(
        self,
        session: Any,
        *,
        timeout: float | None = None,
        poll: float = 1.0,
        until: str | SessionPhase | Iterable[str | SessionPhase] | Callable[[ExecutionSession], bool] | None = None,
        platform: str | None = None,
    ) -> ExecutionSession:
        """Poll the session every ``poll`` seconds until it reaches a final phase, or earlier one of the
        phases in ``until`` (or ``until(session)`` is true); :class:`PlannerTimeout` after ``timeout`` s."""
        if poll <= 0:
            raise ValueError("poll must be a positive number of seconds")
        done = _stop_condition(until)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            current = self.session(session, platform=platform)
            if done(current):
                return current
            if deadline is not None and time.monotonic() + poll > deadline:
                raise PlannerTimeout(
                    f"session {current.uuid} is still {current.phase} after {timeout:g} s", status=504, platform=platform
                )
            time.sleep(poll)

    # -------------------------------------------------------------------------------- widgets

    def app(self, record: Any = None, *, basket: Any = None, **kwargs: Any) -> Any:
        """The planner app widget (executables, shopping list, resources, offers, jobs)."""
        PlannerApp = _widget("execplanner_widgets.widgets.app", "PlannerApp")
        return PlannerApp(planner=self, record=record, basket=basket, **kwargs)

    def show(self, *, sidebar: bool = False, **kwargs: Any) -> Any:
        """Show the app in the cell's output, or in JupyterLab's right sidebar; returns the app."""
        app = self.app(**kwargs)
        app.show(sidebar=sidebar)
        return app

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.app())

    def _repr_html_(self) -> str:
        planner_html = _widget("execplanner_widgets.html", "planner_html")
        return str(planner_html(self))

    # ------------------------------------------------------------------------------- closing

    def close(self) -> None:
        """Release connections (server mode) or stop the platforms and the private loop (local mode)."""
        self._backend.close()

    def __enter__(self) -> Planner:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _names(platforms: str | Iterable[str] | None) -> list[str] | None:
    if platforms is None:
        return None
    if isinstance(platforms, str):
        return [name for name in platforms.split(",") if name]
    return list(platforms)


def _widget(module: str, name: str) -> Any:
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as error:
        raise ImportError(
            f"the planner's widgets need {module} and ipywidgets ({error}); install execplanner-widgets with its "
            f"dependencies, or use the planner's methods (offers, accept, ...) without widgets"
        ) from error
