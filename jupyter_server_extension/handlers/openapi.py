"""The OpenAPI 3.1 description of the proxy API, served at ``{base_url}execplanner/api/openapi.json``.

Schemas come from the pydantic models the handlers really use (request bodies in validation mode,
answers in serialization mode), so the description cannot drift from the code; only the paths are
written here. JSON Schema 2020-12 is OpenAPI 3.1's schema dialect, which is what pydantic emits.
"""

from __future__ import annotations

import copy
from functools import cached_property, lru_cache
from typing import Any

from pydantic import BaseModel, RootModel
from pydantic.json_schema import models_json_schema

from execplanner_widgets import __version__
from execplanner_widgets.model import ExecutionRequest, ExecutionSession, UpdateModel
from execplanner_widgets.model.platform import Calendar, PlatformDescription
from execplanner_widgets.model.results import PlatformResult
from execplanner_widgets.model.status import ErrorBody, JobStatus

from .models import PhaseChange

__all__ = ["JUPYTER_TOKEN_SCHEME", "ModelSchemas", "openapi_document"]

#: How every ExecPlanner route is authenticated with a token (both OpenAPI documents name it).
JUPYTER_TOKEN_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "Authorization",
    "description": "`token <Jupyter server token>`",
}

REF = "#/components/schemas/{model}"


class SessionUpdate(RootModel[UpdateModel | PhaseChange]):  # type: ignore[valid-type]
    """The body of ``POST platforms/{name}/sessions/{uuid}``: an ExecutionBroker update, or ``{"phase": ...}``."""


class PlatformList(RootModel[list[PlatformDescription]]):
    """The configured platforms, in configuration order."""


class ResultList(RootModel[list[PlatformResult]]):
    """One result per platform asked, in configuration order."""


_MODELS: list[tuple[type[BaseModel], str]] = [
    (ExecutionRequest, "validation"),
    (SessionUpdate, "validation"),
    (PlatformList, "serialization"),
    (PlatformDescription, "serialization"),
    (ResultList, "serialization"),
    (PlatformResult, "serialization"),
    (ExecutionSession, "serialization"),
    (JobStatus, "serialization"),
    (Calendar, "serialization"),
    (ErrorBody, "serialization"),
]


def _any_of(schema: Any) -> Any:
    """``oneOf`` -> ``anyOf``, recursively.

    The model's unions (executable and data kinds) are resolved by a discriminator function that
    tries the known kinds before the catch-all ``Generic...`` model, which pydantic can only render
    as ``oneOf``; a notebook also matches the catch-all, so ``oneOf`` would wrongly refuse it.
    """
    if isinstance(schema, dict):
        return {("anyOf" if key == "oneOf" else key): _any_of(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_any_of(item) for item in schema]
    return schema


class ModelSchemas:
    """The JSON Schemas of the pydantic models an OpenAPI document names, as its components: built
    once, on first use (both API documents use this; each lists its own models)."""

    def __init__(self, models: list[tuple[type[BaseModel], str]]) -> None:
        self._models = models

    @cached_property
    def _built(self) -> tuple[dict[tuple[Any, str], dict[str, Any]], dict[str, Any]]:
        refs, document = models_json_schema(self._models, ref_template=REF)  # type: ignore[arg-type]
        return refs, _any_of(document.get("$defs", {}))

    def ref(self, model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        """A ``$ref`` to ``model``'s schema (a copy the caller may change)."""
        return dict(self._built[0][(model, mode)])

    def components(self) -> dict[str, Any]:
        """Every schema, for ``components.schemas``."""
        return self._built[1]


_SCHEMAS = ModelSchemas(_MODELS)
_ref = _SCHEMAS.ref


def _json(model: type[BaseModel], description: str, mode: str = "serialization") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model, mode)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    meaning = {
        400: "The body or a parameter is wrong; `field` names it",
        403: "Not authenticated, not authorized, or a cookie request without its XSRF token",
        404: "No platform, offer, session or job of that name",
        409: "The change is not possible in the session's phase",
        413: "The body is larger than the server allows",
        415: "The body is neither JSON nor YAML",
        502: "The platform failed or answered something invalid",
        504: "The platform did not answer in time",
    }
    return {str(status): _json(ErrorBody, meaning[status]) for status in statuses}


def _parameter(name: str, description: str, *, where: str = "path", **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }


_NAME = _parameter("name", "A platform name from `GET platforms` (never a URL)", pattern="^[a-z0-9][a-z0-9_-]{0,62}$")
_UUID = _parameter("uuid", "An offer or session identifier", pattern="^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_JOB = _parameter(
    "id",
    "A job identifier (the session uuid for platforms without UWS jobs)",
    pattern="^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$",
)
_SELECT = {
    **_parameter(
        "platform", "Ask only these platforms (repeat the parameter, or separate names with commas)", where="query"
    ),
    "schema": {"type": "array", "items": {"type": "string"}},
    "explode": True,
}


def _request_body() -> dict[str, Any]:
    schema = {
        "description": "An ExecutionBroker v1.0 ExecutionRequest, or the same task in an older dialect "
        "(the 2021 or 2022 ExecutionPlanner note, an OSSR record)",
        "anyOf": [_ref(ExecutionRequest, "validation"), {"type": "object"}],
    }
    return {
        "required": True,
        "content": {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}},
    }


def _paths() -> dict[str, Any]:
    result_item = _ref(PlatformResult)
    return {
        "/platforms": {
            "get": {
                "operationId": "listPlatforms",
                "summary": "The configured platforms: name, title, kind, what each accepts and its limits",
                "responses": {"200": _json(PlatformList, "The platforms, in configuration order"), **_errors(403)},
            }
        },
        "/platforms/{name}": {
            "parameters": [_NAME],
            "get": {
                "operationId": "getPlatform",
                "summary": "One platform's description",
                "responses": {"200": _json(PlatformDescription, "The platform"), **_errors(403, 404)},
            },
        },
        "/offers": {
            "post": {
                "operationId": "askForOffers",
                "summary": "Ask every platform (or the selected ones) at once; one result per platform",
                "parameters": [_SELECT],
                "requestBody": _request_body(),
                "responses": {
                    "200": _json(ResultList, "YES with offers, NO with reasons or ERROR with a cause, per platform"),
                    **_errors(400, 403, 404, 413, 415),
                },
            }
        },
        "/offers/stream": {
            "post": {
                "operationId": "streamOffers",
                "summary": "The same question; each platform's result is sent as soon as it arrives",
                "parameters": [
                    _SELECT,
                    {
                        **_parameter(
                            "format",
                            "ndjson (default) or sse; `Accept: text/event-stream` also selects sse",
                            where="query",
                        ),
                        "schema": {"type": "string", "enum": ["ndjson", "sse"]},
                    },
                ],
                "requestBody": _request_body(),
                "responses": {
                    "200": {
                        "description": "One PlatformResult per platform in order of arrival: a JSON document per "
                        "line (application/x-ndjson), or an `event: result` per platform and a final "
                        "`event: end` (text/event-stream)",
                        "content": {
                            "application/x-ndjson": {"schema": result_item},
                            "text/event-stream": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 403, 404, 413, 415),
                },
            }
        },
        "/platforms/{name}/sessions/{uuid}": {
            "parameters": [_NAME, _UUID],
            "get": {
                "operationId": "getSession",
                "summary": "An offer or session as the platform sees it now",
                "responses": {
                    "200": _json(ExecutionSession, "The offer or session"),
                    **_errors(400, 403, 404, 502, 504),
                },
            },
            "post": {
                "operationId": "updateSession",
                "summary": "Accept or reject an offer, or cancel a session",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(SessionUpdate, "validation")}},
                },
                "responses": {
                    "200": _json(ExecutionSession, "The session after the change"),
                    **_errors(400, 403, 404, 409, 413, 415, 502, 504),
                },
            },
        },
        "/platforms/{name}/jobs/{id}": {
            "parameters": [_NAME, _JOB],
            "get": {
                "operationId": "followJob",
                "summary": "Where an accepted session's run stands (UWS state for hosted platforms)",
                "responses": {"200": _json(JobStatus, "The job"), **_errors(400, 403, 404, 502, 504)},
            },
        },
        "/platforms/{name}/calendar": {
            "parameters": [
                _NAME,
                {
                    **_parameter("hours", "How many hours ahead, from now (default 24, at most 336)", where="query"),
                    "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 336},
                },
            ],
            "get": {
                "operationId": "getCalendar",
                "summary": "The platform's booking calendar: capacity and what is taken, step by step",
                "responses": {"200": _json(Calendar, "The calendar"), **_errors(400, 403, 404, 502, 504)},
            },
        },
        "/platforms/{name}/sessions/{uuid}/log": {
            "parameters": [
                _NAME,
                _UUID,
                {
                    **_parameter("tail", "How many lines from the end (default 30, at most 500)", where="query"),
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                },
            ],
            "get": {
                "operationId": "getSessionLog",
                "summary": "The last lines of a hosted run's stdout and stderr (the session's owner only)",
                "responses": {
                    "200": {
                        "description": "The output so far",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "uuid": {"type": "string"},
                                        "phase": {"type": "string"},
                                        "tail": {"type": "integer"},
                                        "stdout": {"type": "string"},
                                        "stderr": {"type": "string"},
                                    },
                                }
                            }
                        },
                    },
                    **_errors(400, 403, 404, 502, 504),
                },
            },
        },
        "/bookings": {
            "get": {
                "operationId": "listBookings",
                "summary": "The caller's bookings on every platform, newest first, each session as its platform reports it now",
                "responses": {
                    "200": {
                        "description": "One entry per booking made through this server; `error` instead of `session` when "
                        "the platform cannot say",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["platform", "uuid"],
                                        "properties": {
                                            "platform": {"type": "string"},
                                            "title": {"type": "string"},
                                            "uuid": {"type": "string"},
                                            "booked": {"type": "string", "format": "date-time"},
                                            "session": _ref(ExecutionSession),
                                            "error": {"type": "string"},
                                        },
                                    },
                                }
                            }
                        },
                    },
                    **_errors(403),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "summary": "This description",
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(403),
                },
            }
        },
    }


@lru_cache(maxsize=1)
def _document_without_server() -> dict[str, Any]:
    schemas = _SCHEMAS.components()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ExecPlanner proxy",
            "version": __version__,
            "summary": "Ask every configured compute platform 'can I do this?' and 'when can I do this?'",
            "description": "Runs inside a Jupyter server. Requests name platforms from `GET platforms`, "
            "never URLs; the server contacts only the platforms in its configuration and keeps their "
            "credentials. Every route needs Jupyter authentication; cookie-authenticated POSTs need the "
            "XSRF token (`X-XSRFToken` header or `_xsrf` argument).",
        },
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "security": [{"jupyterToken": []}, {"jupyterCookie": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "jupyterToken": JUPYTER_TOKEN_SCHEME,
                "jupyterCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "username-{host}-{port}",
                    "description": "The Jupyter login cookie (browser sessions)",
                },
            },
        },
    }


def openapi_document(api_url: str) -> dict[str, Any]:
    """The OpenAPI document, with ``api_url`` (e.g. ``/user/alice/execplanner/api``) as its server."""
    document = copy.deepcopy(_document_without_server())
    document["servers"] = [{"url": api_url.rstrip("/") or "/", "description": "this Jupyter server"}]
    return document
