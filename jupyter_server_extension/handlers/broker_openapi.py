"""The OpenAPI 3.1 description of one hosted platform's ExecutionBroker routes, served at
``{base_url}execplanner/platforms/{name}/openapi.json``.

The IVOA ExecutionBroker v1.0 schema has no error responses yet ("TODO Errors return error codes and
ErrorResponse"). This document says what these routes answer when something is wrong: every error is
``ErrorBody`` (``message``, and ``field`` when one field is at fault), a body that stays stable. The
answers' schemas come from the pydantic models the routes really use, as in the proxy API's document
(:mod:`.openapi`); ``POST direct`` answers its 400 as a REJECTED session, as the standard says, with
``message`` added. Bodies and answers may be JSON, YAML or XML, and requests may be in any dialect.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from pydantic import BaseModel, RootModel
from tornado import web

from execplanner_widgets import __version__
from execplanner_widgets.model import ExecutionRequest, ExecutionSession, OfferSetResponse, UpdateModel
from execplanner_widgets.model.status import ErrorBody

from .broker_io import BrokerHandler
from .openapi import JUPYTER_TOKEN_SCHEME, ModelSchemas

__all__ = ["BrokerOpenApiHandler", "broker_openapi_document"]

MEDIA = ("application/json", "application/yaml", "application/xml")


class Update(RootModel[UpdateModel]):  # type: ignore[valid-type]
    """An ExecutionBroker update; ``path`` may be written ``phase`` or ``/phase``."""


class DirectRefusal(ExecutionSession):
    """The 400 of ``POST direct``: a REJECTED session whose messages say why, with ``message``."""

    message: str
    reasons: list[str] = []
    offerset: str | None = None


_MODELS: list[tuple[type[BaseModel], str]] = [
    (ExecutionRequest, "validation"),
    (Update, "validation"),
    (OfferSetResponse, "serialization"),
    (ExecutionSession, "serialization"),
    (DirectRefusal, "serialization"),
    (ErrorBody, "serialization"),
]

_MEANING = {
    400: "The body or a parameter is wrong (or, for XML, not plain well-formed UTF-8 XML); `field` names it",
    403: "Not authenticated, not authorized, or a cookie request without its XSRF token",
    404: "No hosted platform, offer set, session or result of that name for this user",
    409: "The change is not possible in the session's phase",
    413: "The body is larger than the server allows",
    415: "The body is not JSON, YAML or XML",
}


_SCHEMAS = ModelSchemas(_MODELS)
_ref = _SCHEMAS.ref


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {media: {"schema": schema} for media in MEDIA}


def _answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(_ref(model))}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"description": _MEANING[status], "content": {"application/json": {"schema": _ref(ErrorBody)}}}
        for status in statuses
    }


def _body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "description": description, "content": _content(schema)}


_UUID = {
    "name": "uuid",
    "in": "path",
    "required": True,
    "description": "An offer set or session identifier",
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$"},
}
_DIALECT = {
    "name": "dialect",
    "in": "query",
    "required": False,
    "description": "Answer in this dialect (older-dialect answers put it in their links)",
    "schema": {"type": "string", "enum": ["broker", "prototype-2025", "note-2021", "note-2022"]},
}


def _paths() -> dict[str, Any]:
    request = _body(
        "An ExecutionRequest, or the same task in an older dialect (the 2025 prototype's, the 2021 or "
        "2022 ExecutionPlanner note's, an OSSR record); the answer is in the same dialect",
        {"anyOf": [_ref(ExecutionRequest, "validation"), {"type": "object"}]},
    )
    offers = {
        "requestBody": request,
        "responses": {
            "200": _answer(OfferSetResponse, "YES with offers, or NO with reasons"),
            **_errors(400, 403, 404, 413, 415),
        },
    }
    return {
        "/requests": {"post": {"operationId": "ExecutionRequest", "summary": "Ask for offers", **offers}},
        "/offersets": {
            "post": {
                "operationId": "OfferSetRequest",
                "summary": "The same as POST requests (its name until June 2026)",
                **offers,
            }
        },
        "/offersets/{uuid}": {
            "get": {
                "operationId": "OfferSetSelect",
                "parameters": [_UUID, _DIALECT],
                "responses": {"200": _answer(OfferSetResponse, "The offer set as it is now"), **_errors(400, 403, 404)},
            }
        },
        "/sessions/{uuid}": {
            "get": {
                "operationId": "SessionSelect",
                "parameters": [_UUID, _DIALECT],
                "responses": {"200": _answer(ExecutionSession, "The session"), **_errors(400, 403, 404)},
            },
            "post": {
                "operationId": "SessionUpdate",
                "parameters": [_UUID, _DIALECT],
                "requestBody": _body(
                    "An update (accept, reject or cancel with path `phase`), also in the prototype's form or "
                    "as a 2022 lease sent back with `status: ACCEPTED`",
                    {"anyOf": [_ref(Update, "validation"), {"type": "object"}]},
                ),
                "responses": {
                    "200": _answer(ExecutionSession, "The updated session"),
                    **_errors(400, 403, 404, 409, 413, 415),
                },
            },
        },
        "/direct": {
            "post": {
                "operationId": "DirectExecution",
                "requestBody": request,
                "responses": {
                    "200": _answer(ExecutionSession, "The earliest offer, booked"),
                    "400": {
                        "description": "Refused: a REJECTED session whose messages say why (or a malformed body, as ErrorBody)",
                        "content": _content({"anyOf": [_ref(DirectRefusal), _ref(ErrorBody)]}),
                    },
                    **_errors(403, 404, 413, 415),
                },
            }
        },
        "/accepts": {
            "get": {
                "operationId": "Accepts2021",
                "summary": "The 2021 ExecutionPlanner note: can this platform run that task type?",
                "parameters": [
                    {
                        "name": "tasktype",
                        "in": "query",
                        "required": True,
                        "description": "A task type, e.g. uri://jupyter-notebook",
                        "schema": {"type": "string", "minLength": 1},
                    }
                ],
                "responses": {"200": _note_2021("YES or NO in the note's form"), **_errors(400, 403, 404)},
            }
        },
        "/accept": {
            "post": {
                "operationId": "Accept2021",
                "summary": "The 2021 ExecutionPlanner note: can this platform run this task? (nothing is booked)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": _FORM_2021},
                        "application/x-www-form-urlencoded": {"schema": _FORM_2021},
                    },
                },
                "responses": {
                    "200": _note_2021("YES with the offers, or NO with reasons"),
                    **_errors(400, 403, 404, 413, 415),
                },
            }
        },
    }


_FORM_2021 = {
    "type": "object",
    "required": ["tasktype"],
    "properties": {
        "tasktype": {"type": "string", "description": "The task type, e.g. uri://jupyter-notebook"},
        "taskinfo": {"type": "string", "description": "JSON or YAML: where the task is (notebook, image ...)"},
        "resources": {"type": "string", "description": "JSON or YAML: mincores, maxcores, minmemory ..."},
    },
}


def _note_2021(description: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["reponseword"],
        "properties": {
            "reponseword": {"type": "string", "enum": ["YES", "NO"], "description": "spelled as in the note"},
            "servicetype": {"type": "string"},
            "serviceinfo": {"type": "object"},
            "resources": {"type": "object"},
            "messages": {"type": "array", "items": {"type": "string"}},
        },
    }
    return {"description": description, "content": _content(schema)}


@lru_cache(maxsize=1)
def _document_without_server() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ExecutionBroker v1.0 routes of a hosted platform",
            "version": __version__,
            "summary": "IVOA ExecutionBroker v1.0, with its error answers documented",
            "description": "The routes of one hosted platform of this Jupyter server. Answers carry absolute "
            "URLs; bodies and answers may be JSON, YAML or XML. Every route needs Jupyter authentication.",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"jupyterToken": []}],
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS.components(),
            "securitySchemes": {"jupyterToken": JUPYTER_TOKEN_SCHEME},
        },
    }


def broker_openapi_document(platform_url: str) -> dict[str, Any]:
    """The document, with ``platform_url`` (``.../execplanner/platforms/{name}``) as its server."""
    document = copy.deepcopy(_document_without_server())
    document["servers"] = [{"url": platform_url.rstrip("/"), "description": "this hosted platform"}]
    return document


class BrokerOpenApiHandler(BrokerHandler):
    """``GET {name}/openapi.json``: this document, for the hosted platform ``name``."""

    @web.authenticated
    @authorized
    async def get(self, name: str) -> None:
        self.hosted(name)  # 404 unless it is a hosted platform
        path = url_path_join(self.base_url, "execplanner", "platforms", name)
        self.write_media(broker_openapi_document(self.public_base().rstrip("/") + path), "openapi")
