"""The proxy REST API under ``{base_url}execplanner/api/``.

========  ======================================  ==================================================
method    path                                    what
========  ======================================  ==================================================
GET       ``platforms``                           the configured platforms (name, title, kind, limits)
GET       ``platforms/{name}``                    one platform
POST      ``offers``                              ask every platform (``?platform=`` selects); one
                                                  :class:`PlatformResult` per platform
POST      ``offers/stream``                       the same, each result sent as it arrives (NDJSON,
                                                  or SSE with ``?format=sse`` / ``Accept``)
GET       ``platforms/{name}/sessions/{uuid}``    an offer or session
POST      ``platforms/{name}/sessions/{uuid}``    accept / reject / cancel (ExecutionBroker update or
                                                  ``{"phase": "ACCEPTED"}``)
GET       ``platforms/{name}/jobs/{id}``          follow the run (UWS state for hosted platforms)
GET       ``platforms/{name}/calendar?hours=24``  the booking calendar (hosted platforms)
GET       ``platforms/{name}/sessions/{uuid}/log``  the last lines of a hosted run's stdout and stderr
                                                  (``?tail=30``, at most 500)
GET       ``bookings``                            the caller's bookings on every platform, each
                                                  session as its platform reports it now
GET       ``openapi.json``                        the OpenAPI 3.1 description
========  ======================================  ==================================================

This is a proxy, so the rules are strict: requests name platforms, never URLs, and a name that is not
in the configuration is a 404 before anything is contacted; identifiers are checked before they reach
a platform; every answer is JSON (or YAML when asked for), never HTML; a platform that fails, hangs or
answers garbage becomes an ERROR result or a 502/504 naming the platform, never a 500.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.decorator import authorized
from tornado import web
from tornado.iostream import StreamClosedError

from execplanner_widgets.core.collector import collector_held
from execplanner_widgets.core.jobs import follow_job
from execplanner_widgets.core.ledger import BookingLedger
from execplanner_widgets.core.platform import Platform, PlatformError
from execplanner_widgets.model import InvalidRequest, parse_request, utcnow
from execplanner_widgets.model.errors import FieldError
from execplanner_widgets.model.identifiers import check_identifier

from .base import ApiError, ExecPlannerHandler
from .models import parse_session_update
from .openapi import openapi_document
from .streaming import choose_stream_format

if TYPE_CHECKING:
    from execplanner_widgets.model import ExecutionRequest

__all__ = ["API_HANDLERS", "API_PREFIX"]

API_PREFIX = "execplanner/api"

T = TypeVar("T")


class ProxyHandler(ExecPlannerHandler):
    """What the proxy routes share: limits from the extension's configuration, and platform calls
    that end in a JSON answer whatever the platform does."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("X-Content-Type-Options", "nosniff")  # JSON stays JSON, whatever a platform wrote
        self.set_header("Cache-Control", "no-store")

    @property
    def max_body_bytes(self) -> int:
        return int(getattr(self.extensionapp, "max_body_bytes", 1024 * 1024))

    def collector_hold(self) -> float:
        """How long the collector may wait while this question's answers are relayed
        (``ExecPlanner.hold_collector_seconds``; see :func:`~execplanner_widgets.core.collector.collector_held`)."""
        return float(getattr(self.extensionapp, "hold_collector_seconds", 1.0))

    def read_body(self) -> dict[str, Any]:
        """The body as a mapping, refused with 413 above the configured size."""
        return self.read_document(max_bytes=self.max_body_bytes)

    def read_request(self) -> ExecutionRequest:
        """The execution request in the body, in any dialect ``parse_request`` reads (400 naming the field)."""
        return parse_request(self.read_body())

    def selected_platforms(self) -> list[str] | None:
        """``?platform=a&platform=b`` or ``?platform=a,b`` (answered in configuration order); None means all.

        Each name is looked up now, so an unknown name is a 404 before any platform is asked.
        """
        # exact names: tornado turns control characters into spaces, so nothing is stripped here
        names = [
            name for value in self.get_query_arguments("platform", strip=False) for name in value.split(",") if name
        ]
        if not names:
            return None
        for name in names:
            self.federation.get(name)
        wanted = set(names)
        return [platform.name for platform in self.federation if platform.name in wanted]  # configuration order

    def send_each_write_at_once(self) -> None:
        """For answers written piece by piece as platforms answer: each piece leaves at once, not
        held back by Nagle's algorithm until the client acknowledges the previous one (up to 40 ms
        per piece with delayed acknowledgements). Tornado turns it back on when the answer ends."""
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            stream.set_nodelay(True)

    def platform(self, name: str) -> Platform:
        """The configured platform ``name`` (404 JSON naming the field otherwise)."""
        return self.federation.get(name)

    async def call_platform(self, platform: Platform, call: Awaitable[T]) -> T:
        """Await a platform's answer under its timeout; failures become 502/504 naming the platform."""
        timeout = self.federation.timeout_for(platform)
        try:
            return await asyncio.wait_for(call, timeout)
        except asyncio.TimeoutError:
            raise ApiError(
                504, f"{platform.title} did not answer within {timeout:g} s", platform=platform.name
            ) from None
        except (PlatformError, InvalidRequest, ApiError):
            raise
        except Exception as error:  # a plugin's bug: say which platform failed, keep the details in the log
            self.log.exception("ExecPlanner: platform %s failed", platform.name)
            raise ApiError(502, f"{platform.title} failed ({type(error).__name__})", platform=platform.name) from None


class PlatformsHandler(ProxyHandler):
    """``GET platforms``: who can be asked."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_document(
            [description.model_dump(mode="json", exclude_none=True) for description in self.federation.describe()]
        )


class PlatformHandler(ProxyHandler):
    """``GET platforms/{name}``: one platform's description."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.write_document(self.platform(name).describe().model_dump(mode="json", exclude_none=True))


class OffersHandler(ProxyHandler):
    """``POST offers``: every platform's answer at once, in configuration order.

    The JSON list is written as it fills: each answer is serialised when it arrives, and sent as
    soon as every platform before it in the configuration has answered, so that neither the server
    (serialising) nor the client (reading) has to do all the work after the last answer. The
    document is the list of every result's wire form, each written once, by pydantic's serialiser,
    on a line of its own (so that a reader can take each result as its line ends). A client that
    leaves stops the questions."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        request = self.read_request()
        selection = self.selected_platforms()
        if self.wants_yaml():
            results = await self.federation.offers(request, user=self.username, platforms=selection)
            self.write_document([result.to_wire() for result in results])
            return
        names = selection if selection is not None else [platform.name for platform in self.federation]
        position = {name: index for index, name in enumerate(names)}
        self.set_status(200)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.send_each_write_at_once()
        arrived: dict[int, bytes] = {}
        sent = 0
        batches = self.federation.stream_offer_batches(request, user=self.username, platforms=selection)
        async with collector_held(self.collector_hold()):
            try:
                self.write(b"[\n")
                async for batch in batches:
                    for result in batch:
                        arrived[position[result.platform]] = result.to_wire_json()
                    if sent not in arrived:
                        continue  # an earlier platform is still to answer
                    while sent in arrived:
                        self.write(arrived.pop(sent) if sent == 0 else b",\n" + arrived.pop(sent))
                        sent += 1
                    await self.flush()
                self.write(b"\n]\n")
            except StreamClosedError:
                self.log.debug("ExecPlanner: the client left POST offers after %d result(s)", sent)
                return
            finally:
                await batches.aclose()
            await self.finish(set_content_type="application/json; charset=UTF-8")


class OffersStreamHandler(ProxyHandler):
    """``POST offers/stream``: each platform's answer as soon as it arrives.

    Everything that can be wrong with the request is checked before the first byte is sent, so
    errors are still ordinary 4xx JSON answers; after that, every platform's outcome (a hang, a
    garbage answer) is a result in the stream, never a broken response.
    """

    @web.authenticated
    @authorized
    async def post(self) -> None:
        try:
            stream_format = choose_stream_format(
                self.request.headers.get("Accept", ""), self.get_query_argument("format", None)
            )
        except ValueError as error:
            raise InvalidRequest([FieldError("format", str(error))]) from None
        request = self.read_request()
        selection = self.selected_platforms()
        content_type = f"{stream_format.content_type}; charset=UTF-8"
        self.set_status(200)
        self.set_header("Content-Type", content_type)
        self.set_header("X-Accel-Buffering", "no")  # let reverse proxies (JupyterHub's) pass each item on at once
        self.send_each_write_at_once()
        batches = self.federation.stream_offer_batches(request, user=self.username, platforms=selection)
        count = 0
        async with collector_held(self.collector_hold()):
            try:
                opener = stream_format.comment()
                if opener:
                    self.write(opener)
                await self.flush()
                async for batch in batches:  # the answers that came together leave together
                    for result in batch:
                        self.write(stream_format.item(result.to_wire_json()))
                        count += 1
                        if count == 1:  # the first answer leaves before the others of its batch are serialised
                            await self.flush()
                    await self.flush()
                self.write(stream_format.end(count))
            except StreamClosedError:
                self.log.debug("ExecPlanner: the client left the offers stream after %d result(s)", count)
                return
            finally:
                await batches.aclose()
            await self.finish(set_content_type=content_type)


class SessionHandler(ProxyHandler):
    """``GET/POST platforms/{name}/sessions/{uuid}``: read, accept, reject or cancel."""

    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        platform = self.platform(name)
        check_identifier(uuid, "uuid")
        session = await self.call_platform(platform, platform.session(uuid, user=self.username))
        self.write_document(session.to_wire())

    @web.authenticated
    @authorized
    async def post(self, name: str, uuid: str) -> None:
        platform = self.platform(name)
        check_identifier(uuid, "uuid")
        update = parse_session_update(self.read_body())
        session = await self.call_platform(platform, platform.update_session(uuid, update, user=self.username))
        self.log.info(
            "ExecPlanner: %s set %s of %s/%s to %s",
            self.username,
            update.path,
            name,
            uuid,
            getattr(update, "value", "?"),
        )
        if str(getattr(update, "value", "")).upper() == "ACCEPTED" and session.uuid:
            try:
                ledger_of(self).add(self.username, name, session.uuid, utcnow().isoformat())
            except OSError:  # the booking stands; only the list of bookings misses it
                self.log.warning("ExecPlanner: could not note the booking %s/%s in the ledger", name, session.uuid)
        self.write_document(session.to_wire())


def tail_of(path: Path, lines: int, max_bytes: int = 64 * 1024) -> str | None:
    """The last ``lines`` lines of ``path`` (reading at most its last ``max_bytes``), or None if it
    is not a regular file. Never follows a symbolic link: user code owns the results folder and
    could put a link to another file where its output was."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as handle:
        facts = os.fstat(handle.fileno())
        if not stat.S_ISREG(facts.st_mode):
            return None
        size = facts.st_size
        handle.seek(max(0, size - max_bytes))
        data = handle.read(max_bytes)
    text = data.decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


class SessionLogHandler(ProxyHandler):
    """``GET platforms/{name}/sessions/{uuid}/log?tail=30``: the end of a run's output, for the job view.

    Only for platforms that keep a session folder (hosted ones); only the session's owner (the
    platform's own check, as for reading the session); the files are read without following links,
    at most 64 KiB from their end."""

    MAX_TAIL = 500

    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        platform = self.platform(name)
        check_identifier(uuid, "uuid")
        text = self.get_query_argument("tail", "30")
        if not text.isdigit() or not 1 <= int(text) <= self.MAX_TAIL:
            raise ApiError(400, f"tail must be a whole number of lines from 1 to {self.MAX_TAIL}", field="tail")
        session_dir = getattr(platform, "session_dir", None)
        if session_dir is None:
            raise ApiError(404, f"{platform.title} does not serve the output of its runs", platform=name)
        session = await self.call_platform(platform, platform.session(uuid, user=self.username))  # the owner check
        base = Path(session_dir(uuid)).resolve()
        folder = (base / "results").resolve()
        if not folder.is_relative_to(base):  # the run replaced its results folder with a link
            raise ApiError(404, f"session {uuid} has no output to show", platform=name)
        stdout, stderr = await asyncio.gather(
            asyncio.to_thread(tail_of, folder / "stdout.txt", int(text)),
            asyncio.to_thread(tail_of, folder / "stderr.txt", int(text)),
        )
        self.write_document(
            {
                "uuid": uuid,
                "phase": str(session.phase),
                "tail": int(text),
                "stdout": stdout or "",
                "stderr": stderr or "",
            }
        )


def ledger_of(handler: ExecPlannerHandler) -> BookingLedger:
    return BookingLedger(getattr(handler.extensionapp, "data_dir", "."))


class BookingsHandler(ProxyHandler):
    """``GET bookings``: the caller's bookings on every platform, newest first, each session read
    from its platform now (concurrently, under each platform's timeout); a platform that cannot say
    gives the entry an ``error`` instead of failing the list."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        entries = list(reversed(ledger_of(self).of(self.username)))

        async def read(entry: dict[str, str]) -> dict[str, Any]:
            answer: dict[str, Any] = {
                "platform": entry["platform"],
                "uuid": entry["uuid"],
                "booked": entry.get("booked"),
            }
            try:
                platform = self.platform(entry["platform"])
            except KeyError:  # a platform removed from the configuration since the booking
                answer["error"] = f"the platform {entry['platform']!r} is no longer configured"
                return answer
            answer["title"] = platform.title
            try:
                session = await self.call_platform(platform, platform.session(entry["uuid"], user=self.username))
            except (PlatformError, ApiError) as error:
                answer["error"] = str(getattr(error, "message", None) or error)
            else:
                answer["session"] = session.to_wire()
            return answer

        self.write_document(list(await asyncio.gather(*(read(entry) for entry in entries))))


class JobHandler(ProxyHandler):
    """``GET platforms/{name}/jobs/{id}``: where the run of an accepted session stands."""

    @web.authenticated
    @authorized
    async def get(self, name: str, job_id: str) -> None:
        platform = self.platform(name)
        timeout = self.federation.timeout_for(platform)
        status = await self.call_platform(platform, follow_job(platform, job_id, user=self.username, timeout=timeout))
        self.write_document(status.to_wire())


class CalendarHandler(ProxyHandler):
    """``GET platforms/{name}/calendar?hours=24``: what the platform has taken over the next hours."""

    MAX_HOURS = 24 * 14

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        platform = self.platform(name)
        text = self.get_query_argument("hours", "24")
        try:
            hours = float(text)
        except ValueError:
            raise ApiError(400, f"hours must be a number of hours, not {text[:20]!r}", field="hours") from None
        if not 0 < hours <= self.MAX_HOURS:
            raise ApiError(400, f"hours must be more than 0 and at most {self.MAX_HOURS}", field="hours")
        start = utcnow()
        calendar = await self.call_platform(
            platform, platform.calendar(start, start + timedelta(hours=hours), user=self.username)
        )
        self.write_document(calendar.model_dump(mode="json"))


class OpenApiHandler(ProxyHandler):
    """``GET openapi.json``: this API, described from the models it uses."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        api_url = self.base_url.rstrip("/") + "/" + API_PREFIX
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(openapi_document(api_url))


class NotFoundHandler(ProxyHandler):
    """Anything else under the API prefix: a JSON 404 (after authentication), never an HTML page.

    One decorated method per HTTP method, not one shared: ``@authorized`` remembers the action
    (read/write) of the first call in its closure, so a shared method would authorize a POST as a GET.
    """

    async def _not_found(self, path: str) -> None:
        raise ApiError(404, f"no such route: {API_PREFIX}/{path[:100]}; see {API_PREFIX}/openapi.json")

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._not_found(path)

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        await self._not_found(path)

    @web.authenticated
    @authorized
    async def put(self, path: str) -> None:
        await self._not_found(path)

    @web.authenticated
    @authorized
    async def patch(self, path: str) -> None:
        await self._not_found(path)

    @web.authenticated
    @authorized
    async def delete(self, path: str) -> None:
        await self._not_found(path)


_SEGMENT = r"[^/]+"  # anything up to the next '/': unknown or encoded names are answered 404, never followed

API_HANDLERS: list[tuple[str, type, dict[str, Any]] | tuple[str, type]] = [
    (rf"{API_PREFIX}/platforms/?", PlatformsHandler),
    (rf"{API_PREFIX}/platforms/(?P<name>{_SEGMENT})/?", PlatformHandler),
    (rf"{API_PREFIX}/offers/?", OffersHandler),
    (rf"{API_PREFIX}/offers/stream/?", OffersStreamHandler),
    (rf"{API_PREFIX}/platforms/(?P<name>{_SEGMENT})/sessions/(?P<uuid>{_SEGMENT})/?", SessionHandler),
    (rf"{API_PREFIX}/platforms/(?P<name>{_SEGMENT})/sessions/(?P<uuid>{_SEGMENT})/log/?", SessionLogHandler),
    (rf"{API_PREFIX}/platforms/(?P<name>{_SEGMENT})/jobs/(?P<job_id>{_SEGMENT})/?", JobHandler),
    (rf"{API_PREFIX}/platforms/(?P<name>{_SEGMENT})/calendar/?", CalendarHandler),
    (rf"{API_PREFIX}/bookings/?", BookingsHandler),
    (rf"{API_PREFIX}/openapi\.json", OpenApiHandler),
    (rf"{API_PREFIX}/(?P<path>.*)", NotFoundHandler),
]
