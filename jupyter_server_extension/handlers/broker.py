"""IVOA ExecutionBroker v1.0 routes of hosted platforms, under ``{base_url}execplanner/platforms/{name}/``.

=========================================  =============  ==============================================
route (after ``.../platforms/{name}/``)    methods        what
=========================================  =============  ==============================================
(the platform itself)                      GET            description, limits and links
``requests``                               POST           an execution request -> offer set (YES/NO)
``offersets/{uuid}``                       GET            the offer set as it is now
``sessions/{uuid}``                        GET, POST      the session; POST an update (accept/reject/cancel)
``sessions/{uuid}/results/{id}``           GET            download a result
``direct``                                 POST           book the earliest offer at once -> session
=========================================  =============  ==============================================

Bodies are JSON or YAML in (by Content-Type) and out (by Accept); requests may be in any dialect
``parse_request`` reads. The UWS view of the same sessions is :mod:`.uws`.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.decorator import authorized
from pydantic import TypeAdapter, ValidationError
from tornado import web

from execplanner_widgets.model import InvalidRequest, UpdateModel
from execplanner_widgets.model.errors import FieldError, from_validation_error
from jupyter_server_extension.hosted.platform import HostedPlatform, RequestRefused
from jupyter_server_extension.hosted.staging import safe_name

from .hosted import PLATFORM_ROUTE as _PLATFORM
from .hosted import HostedHandler

__all__ = ["BROKER_HANDLERS", "ResultHandler"]

_UPDATE = TypeAdapter(UpdateModel)


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


class RequestsHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        request = self.read_request()
        response = await platform.offers(request, user=self.username)
        self.write_document(response.to_wire())


class OfferSetHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        response = await self.hosted(name).offerset(uuid, user=self.username)
        self.write_document(response.to_wire())


class SessionHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def get(self, name: str, uuid: str) -> None:
        session = await self.hosted(name).session(uuid, user=self.username)
        self.write_document(session.to_wire())

    @web.authenticated
    @authorized
    async def post(self, name: str, uuid: str) -> None:
        platform = self.hosted(name)
        document = self.read_document()
        try:
            update = _UPDATE.validate_python(document)
        except ValidationError as error:
            raise _update_error(error) from None
        session = await platform.update_session(uuid, update, user=self.username)
        self.write_document(session.to_wire())


class DirectHandler(HostedHandler):
    @web.authenticated
    @authorized
    async def post(self, name: str) -> None:
        platform = self.hosted(name)
        request = self.read_request()
        try:
            session = await platform.direct(request, user=self.username)
        except RequestRefused as refused:
            self.write_refusal(refused)
            return
        self.write_document(session.to_wire())

    def write_refusal(self, refused: RequestRefused) -> None:
        """400 with the reasons, shaped as a REJECTED session (the ExecutionBroker answer for
        ``POST direct``) plus the usual ``message``."""
        self.write_document(
            {
                "message": str(refused),
                "reasons": refused.reasons,
                "offerset": refused.offerset,
                "phase": "REJECTED",
                "meta": {"messages": [{"level": "WARN", "message": reason} for reason in refused.reasons]},
            },
            400,
        )


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
    (_PLATFORM + r"/requests/?", RequestsHandler),
    (_PLATFORM + r"/offersets/(?P<uuid>[^/]+)/?", OfferSetHandler),
    (_PLATFORM + r"/sessions/(?P<uuid>[^/]+)/results/(?P<result>.+)", ResultHandler),
    (_PLATFORM + r"/sessions/(?P<uuid>[^/]+)/?", SessionHandler),
    (_PLATFORM + r"/direct/?", DirectHandler),
]
