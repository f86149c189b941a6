"""IVOA ExecutionBroker v1.0 routes of hosted platforms, under ``{base_url}execplanner/platforms/{name}/``.

=========================================  =============  ==============================================
route (after ``.../platforms/{name}/``)    methods        what
=========================================  =============  ==============================================
(the platform itself)                      GET            description, limits and links
``requests``                               POST           an execution request -> offer set (YES/NO)
``offersets``                              POST           the same (the schema's path until June 2026)
``offersets/{uuid}``                       GET            the offer set as it is now
``sessions/{uuid}``                        GET, POST      the session; POST an update (accept/reject/cancel)
``sessions/{uuid}/results/{id}``           GET            download a result
``direct``                                 POST           book the earliest offer at once -> session
``accepts?tasktype=``, ``accept``          GET, POST      the 2021 note's transport (:mod:`.note2021`)
``openapi.json``                           GET            these routes and their errors (:mod:`.broker_openapi`)
=========================================  =============  ==============================================

Bodies are JSON, YAML or XML in (by Content-Type) and out (by Accept); requests and updates may be
in any dialect, and answers are written in the client's (:mod:`.broker_io`), with absolute URLs.
The UWS view of the same sessions is :mod:`.uws`.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from pydantic import TypeAdapter, ValidationError
from tornado import web

from execplanner_widgets.model import InvalidRequest, UpdateModel, kind_uri
from execplanner_widgets.model.dialects import BROKER, normalise_update
from execplanner_widgets.model.errors import FieldError, from_validation_error
from jupyter_server_extension.hosted.platform import HostedPlatform, RequestRefused
from jupyter_server_extension.hosted.staging import safe_name

from .broker_io import BrokerHandler
from .broker_openapi import BrokerOpenApiHandler
from .hosted import PLATFORM_ROUTE as _PLATFORM
from .hosted import HostedHandler
from .note2021 import NOTE_2021_HANDLERS

__all__ = ["BROKER_HANDLERS", "ResultHandler"]

_UPDATE = TypeAdapter(UpdateModel)
SCHEDULED_SESSION = kind_uri("session", "scheduled-execution-session")


def _update_error(error: ValidationError) -> InvalidRequest:
    """A 400 for a bad update document, with field names as the client wrote them (``value``,
    not ``uri:enum-value-update.value``: the union's tag is not a field)."""
    converted = from_validation_error(error, what="update")
    fields = [
        FieldError(
            item.field.split(".", 1)[1] if item.field.startswith("uri:") and "." in item.field else item.field,
            item.message,
        )
        for item in converted.errors
    ]
    return InvalidRequest(fields, "update")


class PlatformHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        platform = self.hosted(name)
        await platform.start()
        await platform.capacity()
        self.write_document(platform.describe().model_dump(mode="json", exclude_none=True))


class RequestsHandler(BrokerHandler):
    """``POST requests`` (and ``POST offersets``, its name until June 2026, which the prototype uses)."""

    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        request, dialect = self.read_broker_request()
        response = await platform.offers(request, user=self.username)
        self.write_broker(response.to_wire(), "offerset", dialect)


class OfferSetHandler(BrokerHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        response = await self.hosted(name).offerset(uuid, user=self.username)
        self.write_broker(response.to_wire(), "offerset", self.asked_dialect())


class SessionHandler(BrokerHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        session = await self.hosted(name).session(uuid, user=self.username)
        self.write_broker(session.to_wire(), "session", self.asked_dialect())

    @web.authenticated
    @authorized
    async def post(self, name: str, uuid: str) -> None:
        """An update in any dialect: v1.0 (``path`` as ``phase`` or ``/phase``), the prototype's
        ``type:`` or ``{"update": ...}``, or a 2022 lease sent back with ``status: ACCEPTED``."""
        platform = self.hosted(name)
        document, dialect = normalise_update(self.read_broker_document())
        try:
            update = _UPDATE.validate_python(document)
        except ValidationError as error:
            raise _update_error(error) from None
        session = await platform.update_session(uuid, update, user=self.username)
        self.write_broker(session.to_wire(), "session", dialect if dialect != BROKER else self.asked_dialect())


class DirectHandler(BrokerHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        request, dialect = self.read_broker_request()
        try:
            session = await platform.direct(request, user=self.username)
        except RequestRefused as refused:
            self.write_refusal(refused, dialect)
            return
        self.write_broker(session.to_wire(), "session", dialect)

    def write_refusal(self, refused: RequestRefused, dialect: str) -> None:
        """400 with the reasons, as the schema has it for ``POST direct``: a REJECTED session (with
        its ``kind``), plus the usual ``message``, the ``reasons`` and the ``offerset`` asked."""
        document = {
            "kind": SCHEDULED_SESSION,
            "message": str(refused),
            "reasons": refused.reasons,
            "offerset": refused.offerset,
            "phase": "REJECTED",
            "meta": {"messages": [{"level": "WARN", "message": reason} for reason in refused.reasons]},
        }
        self.write_broker({k: v for k, v in document.items() if v is not None}, "session", dialect, 400)


class ResultHandler(HostedHandler):
    """Download one result file (the URL session documents point to)."""

    async def send_result(self, platform: HostedPlatform, uuid: str, result: str) -> None:
        path, mime = await platform.result_file(uuid, result, user=self.username)
        self.set_header("Content-Type", mime)
        self.set_header("Content-Disposition", f'attachment; filename="{safe_name(path.name, "result")}"')
        self.set_header("X-Content-Type-Options", "nosniff")
        with open(path, "rb") as handle:
            while chunk := handle.read(256 * 1024):
                self.write(chunk)
                await self.flush()
        self.finish(set_content_type=mime)

    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str, result: str) -> None:
        await self.send_result(self.hosted(name), uuid, result)


BROKER_HANDLERS: list[tuple[str, type, dict[str, Any]] | tuple[str, type]] = [
    (_PLATFORM + r"/?", PlatformHandler),
    (_PLATFORM + r"/openapi\.json", BrokerOpenApiHandler),
    (_PLATFORM + r"/requests/?", RequestsHandler),
    (_PLATFORM + r"/offersets/?", RequestsHandler),
    (_PLATFORM + r"/offersets/(?P<uuid>[^/]+)/?", OfferSetHandler),
    (_PLATFORM + r"/sessions/(?P<uuid>[^/]+)/results/(?P<result>.+)", ResultHandler),
    (_PLATFORM + r"/sessions/(?P<uuid>[^/]+)/?", SessionHandler),
    (_PLATFORM + r"/direct/?", DirectHandler),
    *NOTE_2021_HANDLERS,
]
