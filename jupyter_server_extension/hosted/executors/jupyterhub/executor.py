"""``JupyterHubExecutor``: a booked session is a named notebook server on a JupyterHub.

.. code-block:: yaml

    hosted:
      executor: jupyterhub
      cores: 64            # what the provider gives the hub for booked sessions
      memory: 256
      jupyterhub:
        url: https://hub.example.org/          # where this server reaches the hub (API and servers)
        token_file: /etc/execplanner/hub-token  # a service token: read:users, servers, tokens
        profiles:
          - {name: small, cores: 2, memory: 4, user_options: {profile: small}}
          - {name: large, cores: 16, memory: 64, user_options: {profile: large}}
        users: {alice@example.org: alice}      # caller -> hub user (others keep their name)
        owner: alice                           # the owner of a personal Jupyter server (no caller name)

At the booked start the caller's hub user gets a named server (``ep-`` and the session's id) started
with the profile's ``user_options``; the notebook and the staged data go into a folder of that
server through its Contents API; the session becomes AVAILABLE with a link that opens the notebook
in JupyterLab. When the slot ends, or on cancel, the notebook the user saved (and any file they
added to the folder) comes back as a result and the server is stopped and removed.

The hub token is read from ``token_file`` when the executor starts and used only for the hub's
REST API (see :mod:`.client`); the single-user server is reached with a token the hub issues for the
user, limited to that one server and expiring with the slot.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from execplanner_widgets.model.types import Duration, GiB

from ..base import Executor, ExecutorContext, RunOutcome, RunReport, RunSpec
from .client import HubClient, HubError, ServerToken

if TYPE_CHECKING:
    from ...calendar import Need

__all__ = ["HubProfile", "JupyterHubExecutor", "JupyterHubOptions", "server_name"]

#: Kinds a hub session opens: a notebook, or a script in the editor.
HUB_KINDS = ("jupyter-notebook", "python-script")
#: Most files (besides the notebook) fetched back from the session folder as results.
MAX_RESULT_FILES = 200
#: Longest time spent copying results back before the server is stopped anyway.
FETCH_TIMEOUT = 120.0


def server_name(session: str) -> str:
    """The named server of a session: a valid JupyterHub server name (lowercase, at most 30 characters)."""
    return "ep-" + session.replace("-", "").lower()[:24]


class HubProfile(BaseModel):
    """One size of server the hub offers; requests are rounded up to the smallest that fits."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40, description="Shown in messages (small, large, gpu ...)")
    cores: int = Field(ge=1, description="Cores a server of this profile has")
    memory: GiB = Field(description="Memory (GiB) a server of this profile has")
    user_options: dict[str, Any] = Field(
        default_factory=dict, description="Sent as the server's user_options (what the hub's spawner understands)"
    )

    @field_validator("memory")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("a profile needs at least 1 GiB of memory")
        return value


class JupyterHubOptions(BaseModel):
    """``hosted: {executor: jupyterhub, jupyterhub: {...}}``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="The hub's URL as this server reaches it (its proxy; API at {url}hub/api/)")
    public_url: str | None = Field(
        default=None, description="The hub's URL as users open it, for connectors (default: url)"
    )
    token_file: Path = Field(description="File holding the hub API token (a service token; never logged or shown)")
    profiles: list[HubProfile] = Field(min_length=1, description="Server sizes; requests round up to one")
    users: dict[str, str] = Field(
        default_factory=dict, description="Caller (Jupyter identity) -> hub user name, where they differ"
    )
    owner: str | None = Field(
        default=None,
        description="Hub user of the owner of a personal Jupyter server (callers there have no name of their own)",
    )
    only_listed_users: bool = Field(
        default=False, description="Refuse callers missing from 'users' (else a caller keeps their own name)"
    )
    folder: str = Field(
        default="execplanner", description="Folder in the user's server under which each session gets its own folder"
    )
    start_timeout: Duration = Field(default=timedelta(minutes=5), description="Longest wait for a server to start")
    results_limit: GiB = Field(default=1, description="Most GiB fetched back from the session folder as results")

    @field_validator("url", "public_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip()
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", text):
            raise ValueError("must be an http(s) URL with no query or fragment, e.g. https://hub.example.org/")
        return text if text.endswith("/") else text + "/"

    @field_validator("token_file")
    @classmethod
    def _readable(cls, value: Path) -> Path:
        path = value.expanduser()
        if not path.is_file():
            raise ValueError(f"{path} is not a file (it must hold the hub's API token)")
        return path

    @field_validator("folder")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = PurePosixPath(value.strip("/")).parts
        if not parts or any(part in ("..", ".") for part in parts) or value.startswith("~"):
            raise ValueError("must be a folder inside the user's server, e.g. 'execplanner'")
        return "/".join(parts)

    @field_validator("users")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for caller, user in value.items():
            if not _valid_user(user):
                raise ValueError(f"the hub user for {caller!r} is not a valid user name")
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str | None) -> str | None:
        if value is not None and not _valid_user(value):
            raise ValueError("not a valid hub user name")
        return value

    @model_validator(mode="after")
    def _unique_profiles(self) -> JupyterHubOptions:
        names = [profile.name for profile in self.profiles]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"profile names must be unique; repeated: {', '.join(repeated)}")
        self.profiles.sort(key=lambda profile: (profile.cores, profile.memory))
        return self


@dataclass
class _Held:
    """What a run holds on the hub while it is being prepared: the server token (revoked at the end),
    and whether this platform server left the session to the next one instead of finishing it."""

    token: ServerToken | None = None
    detached: bool = False


class JupyterHubExecutor(Executor):
    """Booked interactive sessions as named servers on a JupyterHub."""

    Options = JupyterHubOptions
    name = "jupyterhub"
    #: a notebook server runs on in the hub; a clean shutdown leaves it to the next server (adopt)
    survives_restart = True
    #: the session stays PREPARING while the hub starts the server and the files go in; the run
    #: reports AVAILABLE when the notebook can be opened (a hub session is never "RUNNING")
    reports_phases = True

    def __init__(self, options: JupyterHubOptions, context: ExecutorContext) -> None:
        super().__init__(options, context)
        self.options: JupyterHubOptions = options
        self._client: HubClient | None = None
        self._lock = asyncio.Lock()

    # ----------------------------------------------------------------------- helpers

    async def hub(self) -> HubClient:
        """The hub client (the token is read from its file the first time)."""
        async with self._lock:
            if self._client is None:
                token = (await asyncio.to_thread(self.options.token_file.read_text)).strip()
                if not token:
                    from execplanner_widgets.core.platform import PlatformError

                    raise PlatformError(f"the hub token file of platform {self.context.platform} is empty")
                self._client = HubClient(self.options.url, token)
            return self._client

    def hub_user(self, caller: str | None) -> str | None:
        """The hub user a caller is, or ``None`` when the configuration gives them none."""
        if caller is None:
            return self.options.owner
        if caller in self.options.users:
            return self.options.users[caller]
        return None if self.options.only_listed_users else caller

    def profile_for(self, cores: int, memory: int) -> HubProfile | None:
        """The smallest profile with at least ``cores`` and ``memory`` GiB."""
        for profile in self.options.profiles:
            if profile.cores >= cores and profile.memory >= memory:
                return profile
        return None

    def fit(self, need: Need) -> Need:
        """``need`` rounded up to the smallest profile that fits: the amounts a hub server really has.
        Unchanged when no profile fits (:meth:`refusals` says NO then)."""
        from dataclasses import replace

        profile = self.profile_for(need.cores, need.memory)
        if profile is None:
            return need
        return replace(
            need, cores=profile.cores, cores_max=profile.cores, memory=profile.memory, memory_max=profile.memory
        )

    def connector_url(self, user: str, server: str, path: str) -> str:
        """The URL that opens ``path`` of the server in JupyterLab (the user logs in at the hub)."""
        base = self.options.public_url or self.options.url
        quoted = "/".join(quote(part, safe="") for part in PurePosixPath(path).parts)
        return f"{base}user/{quote(user, safe='')}/{quote(server, safe='')}/lab/tree/{quoted}"

    def session_folder(self, session: str) -> str:
        return f"{self.options.folder}/{session}"

    # ---------------------------------------------------------------------- answering

    def unsupported(self, kind: str) -> str | None:
        if kind in HUB_KINDS:
            return None
        return f"cannot run a {kind} executable: this JupyterHub opens notebooks and Python scripts in JupyterLab"

    async def refusals(self, need: Need, user: str | None) -> list[str]:
        reasons = []
        profile = self.profile_for(need.cores, need.memory)
        if profile is None:
            largest = self.options.profiles[-1]
            reasons.append(
                f"needs {need.cores} core(s) and {need.memory} GiB of memory; the largest server profile here, "
                f"{largest.name}, has {largest.cores} core(s) and {largest.memory} GiB"
            )
        else:
            hosted = self.context.options
            cores, memory = getattr(hosted, "cores", None), getattr(hosted, "memory", None)
            if (cores is not None and profile.cores > cores) or (memory is not None and profile.memory > memory):
                reasons.append(
                    f"the smallest server profile that fits, {profile.name}, has {profile.cores} core(s) and "
                    f"{profile.memory} GiB; this platform books out at most {cores} core(s) and {memory} GiB"
                )
        hub_user = self.hub_user(user)
        if hub_user is None:
            reasons.append(
                "this platform's JupyterHub has no account for you"
                + (
                    " (the provider sets 'owner' for a personal Jupyter server)"
                    if user is None
                    else "; ask the provider to add you"
                )
            )
            return reasons
        try:
            model = await (await self.hub()).user(hub_user)
        except HubError as error:
            from execplanner_widgets.core.platform import PlatformError

            raise PlatformError(f"{self.context.platform}: {error}") from None
        if model is None:
            reasons.append(f"this platform's JupyterHub has no user {hub_user!r}; ask the provider for an account")
        return reasons

    # ------------------------------------------------------------------------ running

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run(self, spec: RunSpec, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        user = self.hub_user(spec.user)
        if user is None:
            return RunOutcome("failed", "this platform's JupyterHub has no account for the session's owner")
        profile = self.profile_for(spec.cores, spec.memory_gib) or self.options.profiles[-1]
        server = server_name(spec.session)
        hub = await self.hub()
        await report.handle(f"{user}/{server}")

        async def start(held: _Held) -> str | RunOutcome:
            await report.progress(
                f"starting the notebook server {server} for hub user {user} with the {profile.name} profile "
                f"({profile.cores} core(s), {profile.memory} GiB)"
            )
            await hub.start_server(user, server, profile.user_options, display_name=f"session {spec.session}")
            if not await self._ready(hub, user, server, spec, stop):
                return RunOutcome("cancelled", "stopped on request while the notebook server was starting")
            held.token = await self._server_token(hub, user, server, spec)
            await report.handle(f"{user}/{server}/{held.token.id}")  # a later server revokes this token
            await hub.wait_server_answers(user, server, held.token, timeout=60)
            return await self._upload(hub, user, server, held.token, spec)

        return await self._serve(
            hub, user, server, spec, stop, report, start, "the JupyterHub could not start the session"
        )

    async def adopt(self, spec: RunSpec, handle: str, stop: asyncio.Event, report: RunReport) -> RunOutcome:
        """After a restart: a server that still runs is kept until the slot ends; else the run failed."""
        user, _, rest = handle.partition("/")
        server, _, earlier_token = rest.partition("/")
        if not user or not server:
            return RunOutcome("failed", "the server restarted and the session's notebook server is unknown")
        hub = await self.hub()
        if earlier_token:  # the token the earlier server used; its value died with that server
            try:
                await hub.revoke_token(user, ServerToken(earlier_token, ""))
            except HubError as error:
                self.context.log.warning(
                    "session %s: the earlier server token could not be revoked: %s", spec.session, error
                )

        async def take_over(held: _Held) -> str | RunOutcome:
            status = await hub.server(user, server)
            if status is None or not status.active:
                return RunOutcome("failed", "the notebook server stopped while this platform was restarting")
            # not ready: the earlier server died while the hub was starting it
            if not status.ready and not await self._ready(hub, user, server, spec, stop):
                return RunOutcome("cancelled", "stopped on request while the notebook server was starting")
            await report.progress(
                "the platform restarted; the notebook server still runs and stays until the slot ends"
            )
            held.token = await self._server_token(hub, user, server, spec)
            await report.handle(f"{user}/{server}/{held.token.id}")
            await hub.wait_server_answers(user, server, held.token, timeout=60)
            folder = self.session_folder(spec.session)
            if await hub.listing(user, server, held.token, folder):
                return f"{folder}/{spec.entry.name}"
            return await self._upload(hub, user, server, held.token, spec)  # the earlier server died before

        return await self._serve(
            hub,
            user,
            server,
            spec,
            stop,
            report,
            take_over,
            "the platform restarted and could not take the session over",
        )

    async def _serve(
        self,
        hub: HubClient,
        user: str,
        server: str,
        spec: RunSpec,
        stop: asyncio.Event,
        report: RunReport,
        prepare: Callable[[_Held], Awaitable[str | RunOutcome]],
        failure: str,
    ) -> RunOutcome:
        """Prepare the server (``prepare`` returns the notebook's path, or how the run ended), report it
        AVAILABLE and keep it to the slot's end. Whatever happens, the server is then finished (results
        fetched, stopped, token revoked), unless this platform shuts down and leaves it to the next one."""
        held = _Held()
        try:
            try:
                prepared = await prepare(held)
            except HubError as error:
                return RunOutcome("failed", f"{failure}: {error}")
            if isinstance(prepared, RunOutcome):
                return prepared
            await report.available(self.connector_url(user, server, prepared), f"JupyterLab on {self.context.platform}")
            assert held.token is not None  # prepare made one before the notebook's path
            return await self._attend(hub, user, server, held.token, spec, stop)
        except asyncio.CancelledError:
            held.detached = not stop.is_set()  # detached: this server shuts down, the next one adopts it
            raise
        finally:
            if not held.detached:
                await self._finish(hub, user, server, held.token, spec)

    async def _ready(self, hub: HubClient, user: str, server: str, spec: RunSpec, stop: asyncio.Event) -> bool:
        """Wait until the hub says the server is ready; ``False`` when stopped (or the slot ended) first."""
        ready = asyncio.ensure_future(hub.wait_ready(user, server, timeout=self.options.start_timeout.total_seconds()))
        return await _unless_stopped(ready, stop, spec.deadline)

    # -------------------------------------------------------------------------- steps

    async def _server_token(self, hub: HubClient, user: str, server: str, spec: RunSpec) -> ServerToken:
        seconds = (spec.deadline - datetime.now(timezone.utc)).total_seconds() + 300
        return await hub.create_server_token(user, server, int(seconds), f"execplanner session {spec.session}")

    async def _upload(self, hub: HubClient, user: str, server: str, token: ServerToken, spec: RunSpec) -> str:
        """Put the executable and the staged data into the session folder; return the notebook's path."""
        folder = self.session_folder(spec.session)
        await hub.make_directory(user, server, token, folder)
        entry_path = f"{folder}/{spec.entry.name}"
        for item in sorted(spec.workdir.rglob("*")):
            if item.is_symlink() or not item.is_file():
                continue  # storage links and folders stay on this platform
            relative = item.relative_to(spec.workdir).as_posix()
            if "/" in relative:
                await hub.make_directory(user, server, token, f"{folder}/{PurePosixPath(relative).parent}")
            await hub.upload(user, server, token, f"{folder}/{relative}", item)
        if not spec.entry.is_relative_to(spec.workdir):
            await hub.upload(user, server, token, entry_path, spec.entry)
        return entry_path

    async def _attend(
        self, hub: HubClient, user: str, server: str, token: ServerToken, spec: RunSpec, stop: asyncio.Event
    ) -> RunOutcome:
        """Wait for the slot's end or a stop, looking now and then whether the server still runs."""
        while True:
            left = (spec.deadline - datetime.now(timezone.utc)).total_seconds()
            if left <= 0:
                end = spec.deadline.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
                return RunOutcome("completed", f"the booked slot ended at {end}; the notebook server was stopped")
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(left, 30.0))
                return RunOutcome("cancelled", "stopped on request; the notebook server was stopped")
            except asyncio.TimeoutError:
                pass
            try:
                status = await hub.server(user, server)
            except HubError:
                continue  # the hub is briefly away: keep the session, look again later
            if status is None or not status.active:
                return RunOutcome("completed", "the notebook server was stopped on the hub before the slot ended")

    async def _finish(self, hub: HubClient, user: str, server: str, token: ServerToken | None, spec: RunSpec) -> None:
        """Fetch the saved notebook and new files, stop and remove the server, revoke the token.
        Runs also when the run was cancelled; every step is bounded and one failing does not skip the next."""
        log = self.context.log
        if token is not None:
            try:
                await asyncio.wait_for(self._fetch_results(hub, user, server, token, spec), timeout=FETCH_TIMEOUT)
            except Exception as error:  # the server is the user's: whatever it answers, the stop below happens
                log.warning("session %s: the saved notebook could not be fetched: %s", spec.session, error)
        try:
            await asyncio.wait_for(asyncio.shield(hub.stop_server(user, server)), timeout=90)
        except Exception as error:
            log.warning("session %s: the notebook server %s could not be stopped: %s", spec.session, server, error)
        if token is not None:
            try:
                await hub.revoke_token(user, token)
            except Exception as error:
                log.warning("session %s: the server token could not be revoked: %s", spec.session, error)

    async def _fetch_results(self, hub: HubClient, user: str, server: str, token: ServerToken, spec: RunSpec) -> None:
        """Copy the session folder's files back (the saved notebook first), within ``results_limit``.

        The listing comes from the user's own server, so every path in it is checked to lie in the
        session folder and every count is bounded."""
        folder = self.session_folder(spec.session)
        budget = self.options.results_limit * 1024**3
        pending, visited = [folder], 0
        files: list[tuple[str, int]] = []
        while pending and len(files) < MAX_RESULT_FILES and visited < MAX_RESULT_FILES:
            current = pending.pop(0)
            visited += 1
            for entry in await hub.listing(user, server, token, current):
                relative = _inside(entry.get("path"), folder) if isinstance(entry, dict) else None
                if relative is None or PurePosixPath(relative).name.startswith("."):
                    continue
                if entry.get("type") == "directory":
                    pending.append(f"{folder}/{relative}")
                elif entry.get("type") in ("file", "notebook"):
                    size = entry.get("size")
                    files.append((relative, size if isinstance(size, int) else -1))
        entry_name = spec.entry.name
        files.sort(key=lambda item: (item[0] != entry_name, item[0]))
        staged = {
            item.relative_to(spec.workdir).as_posix(): item.stat().st_size
            for item in spec.workdir.rglob("*")
            if item.is_file() and not item.is_symlink()
        }
        results = spec.results.resolve()
        for relative, size in files[:MAX_RESULT_FILES]:
            if relative != entry_name and staged.get(relative) == size:
                continue  # a data item as it was brought in: not a result
            target = spec.results / relative
            if not target.resolve().is_relative_to(results):
                continue
            written = await hub.download(user, server, token, f"{folder}/{relative}", target, budget)
            if written is not None:
                budget -= written
            if budget <= 0:
                break


def _inside(path: Any, folder: str) -> str | None:
    """``path`` relative to ``folder`` when it is a plain path inside it, else ``None``."""
    if not isinstance(path, str) or "\\" in path or "\x00" in path:
        return None
    parts = PurePosixPath(path).parts
    base = PurePosixPath(folder).parts
    if parts[: len(base)] != base or len(parts) == len(base) or any(part in ("..", ".", "/") for part in parts):
        return None
    return "/".join(parts[len(base) :])


def _valid_user(name: str) -> bool:
    return bool(name) and "/" not in name and len(name) <= 255 and name.strip() == name


async def _unless_stopped(work: asyncio.Future[Any], stop: asyncio.Event, deadline: datetime) -> bool:
    """Wait for ``work``; ``False`` (and ``work`` cancelled) when ``stop`` is set or the slot ends first."""
    stopper = asyncio.ensure_future(stop.wait())
    left = max(1.0, (deadline - datetime.now(timezone.utc)).total_seconds())
    try:
        done, _ = await asyncio.wait({work, stopper}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if work in done:
        work.result()  # raises what the work raised
        return True
    work.cancel()
    await asyncio.gather(work, return_exceptions=True)
    return False
