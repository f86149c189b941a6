"""``Planner``: the one API of the kernel client, the same in server and local mode."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ..model import (
    ExecutionSession,
    SessionPhase,
    parse_request,
)
from ..model.platform import Calendar, PlatformList
from ..model.results import PlatformResult, ResultList

if TYPE_CHECKING:
    from ..model.status import JobStatus


from .bookings import BookingList
from .discovery import Mode, ServerInfo, base_url_of, discover_server, new_http, probe
from .errors import PlannerError, PlannerTimeout
from .local import LocalBackend
from .server import ServerBackend

DEFAULT_TIMEOUT = 120.0


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
        self._backend: ServerBackend | LocalBackend
        if chosen == "auto" and platforms_file is not None and url is None:
            chosen, reason = "local", "a platforms file was given"
        elif chosen == "local":
            reason = "local mode was asked for"
        else:
            reason = ""
        if chosen != "local":
            http = new_http()
            if url is not None:
                server: ServerInfo | None = ServerInfo(
                    base_url_of(url), token or os.environ.get("EXECPLANNER_TOKEN") or None, "url="
                )
                problem = probe(server, http)
                if problem is not None:
                    http.close()
                    raise PlannerError(f"cannot use the ExecPlanner proxy: {problem}")
                notes: list[str] = []
            else:
                server, notes = discover_server(http)
            if server is not None:
                self._backend = ServerBackend(server, http, timeout)
                return
            http.close()
            if chosen == "server":
                raise PlannerError("no Jupyter server with the ExecPlanner extension was found: " + "; ".join(notes))
            if os.environ.get("EXECPLANNER_URL"):
                warnings.warn(
                    f"$EXECPLANNER_URL is set but not usable ({'; '.join(notes)}); running in-process", stacklevel=2
                )
            reason = "no Jupyter server with the ExecPlanner extension: " + "; ".join(notes)
        self._backend = LocalBackend(platforms_file, data_dir, user, reason)

    # ------------------------------------------------------------------------------ the mode

    @property
    def mode(self) -> Mode:
        """``"server"`` (through the Jupyter server's proxy) or ``"local"`` (in this process)."""
        return self._backend.mode

    @property
    def server_url(self) -> str | None:
        """The Jupyter server used in server mode."""
        return self._backend.server.url if isinstance(self._backend, ServerBackend) else None

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
        configuration order, as a :class:`~execplanner_widgets.model.results.ResultList` (a list that
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

    def _session_call(
        self, item: Any, platform: str | None, what: str, call: Callable[[str, str], ExecutionSession]
    ) -> ExecutionSession:
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
        return self._session_call(
            offer, platform, "offer", lambda name, uuid: self._backend.update(name, uuid, SessionPhase.ACCEPTED)
        )

    def reject(self, offer: Any, *, platform: str | None = None) -> ExecutionSession:
        """Decline ``offer``, releasing what it held."""
        return self._session_call(
            offer, platform, "offer", lambda name, uuid: self._backend.update(name, uuid, SessionPhase.REJECTED)
        )

    def cancel(self, session: Any, *, platform: str | None = None) -> ExecutionSession:
        """Stop a booked or running session."""
        return self._session_call(
            session, platform, "session", lambda name, uuid: self._backend.update(name, uuid, SessionPhase.CANCELLED)
        )

    def session(self, session_or_uuid: Any, *, platform: str | None = None) -> ExecutionSession:
        """The offer or session as the platform sees it now."""
        return self._session_call(session_or_uuid, platform, "session", self._backend.session)

    def log(self, session: Any, *, platform: str | None = None, tail: int = 30) -> str:
        """The last ``tail`` lines of a running (or finished) session's stdout, then its stderr, as its
        platform serves them (hosted platforms); other platforms raise :class:`PlannerError`."""
        if not 1 <= int(tail) <= 500:
            raise ValueError(f"tail must be from 1 to 500 lines, not {tail!r}")
        uuid = _uuid_of(session, "session")
        return self._backend.log(self._platform_of(uuid, platform, "session"), uuid, int(tail))

    def bookings(self) -> BookingList:
        """My bookings on every platform, newest first: each session as its platform reports it now
        (phase, start, end, connectors, results). In server mode the server keeps the list, so it
        survives kernel restarts and shows bookings made from other kernels."""
        entries = BookingList(self._backend.bookings())
        with self._lock:
            for entry in entries:
                self._origins.setdefault(entry.uuid, entry.platform)
        return entries

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
                    f"session {current.uuid} is still {current.phase} after {timeout:g} s",
                    status=504,
                    platform=platform,
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
