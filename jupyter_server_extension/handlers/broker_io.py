"""How the ExecutionBroker routes read bodies and write answers: media types, dialects, absolute URLs.

The v1.0 schema lists ``application/json``, ``application/yaml`` and ``application/xml`` for every
request and answer. :class:`BrokerHandler` reads a body in any of them (by ``Content-Type``; XML with
the mapping of :mod:`execplanner_widgets.model.broker_xml`), and answers in the one the client's
``Accept`` prefers (JSON when it names none we speak). The answer is written in the dialect the
client spoke (:mod:`execplanner_widgets.model.answer_dialects`): the dialect of its request body, of
its update, or the ``?dialect=`` that older-dialect answers put in their links. Every URL in an answer
is absolute (``ComponentMetadata.url`` is ``format: uri``): from the platform's configured
``public_url``, else from the scheme and host the client used. Executable kinds that are this
project's extension are said to be so in each offer's messages.

Errors keep the body every ExecPlanner route answers, ``{"message": ..., "field": ...}`` as JSON
(the standard has no error schema yet); they are documented in the project's OpenAPI.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

from execplanner_widgets.model import ExecutionRequest, InvalidRequest
from execplanner_widgets.model.answer_dialects import (
    ANSWER_DIALECTS,
    absolute_urls,
    add_extension_notes,
    write_offerset,
    write_session,
)
from execplanner_widgets.model.broker_xml import ROOT_OFFERSET, ROOT_SESSION, from_xml, to_xml
from execplanner_widgets.model.dialects import (
    BROKER,
    MAX_DOCUMENT_BYTES,
    load_document,
    parse_request_dialect,
)
from execplanner_widgets.model.errors import FieldError

from .base import JSON_TYPES, YAML_TYPES, ApiError
from .hosted import FORM_TYPES, HostedHandler

__all__ = ["BrokerHandler", "Media", "XML_TYPES", "preferred_media"]

XML_TYPES = ("application/xml", "text/xml")
Media = Literal["json", "yaml", "xml"]
_MEDIA_TYPES: dict[str, Media] = {
    **{name: "json" for name in (*JSON_TYPES, "application/*", "*/*")},
    **{name: "yaml" for name in YAML_TYPES},
    **{name: "xml" for name in XML_TYPES},
}
_CONTENT_TYPES: dict[Media, str] = {
    "json": "application/json; charset=UTF-8",
    "yaml": "application/yaml; charset=UTF-8",
    "xml": "application/xml; charset=UTF-8",
}


def preferred_media(accept: str) -> Media:
    """The media type to answer in, from an ``Accept`` header (quality values respected; the first
    listed wins a tie; JSON when nothing we speak is listed)."""
    best: tuple[float, int, Media] | None = None
    for position, item in enumerate(accept.split(",")):
        parts = [part.strip() for part in item.split(";")]
        media = _MEDIA_TYPES.get(parts[0].lower())
        if media is None:
            continue
        quality = 1.0
        for parameter in parts[1:]:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        candidate = (quality, -position, media)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return best[2] if best else "json"


class BrokerHandler(HostedHandler):
    """Base of the ExecutionBroker routes: bodies in JSON, YAML or XML; answers negotiated."""

    # ------------------------------------------------------------------------------ input

    def content_type(self) -> str:
        return self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()

    def read_broker_document(self) -> dict[str, Any]:
        """The body as a mapping: JSON or YAML (as every route reads them) or XML."""
        if self.content_type() not in XML_TYPES:
            return self.read_document()
        body = self.request.body or b""
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ApiError(413, f"the body is larger than {MAX_DOCUMENT_BYTES} bytes")
        if not body.strip():
            raise ApiError(400, "the request has no body; send a JSON, YAML or XML document")
        return from_xml(body)[1]

    def read_broker_request(self) -> tuple[ExecutionRequest, str]:
        """An execution request in any dialect and media type (or a ``REQUEST`` form field), and
        the dialect it was written in."""
        if self.content_type() in FORM_TYPES:
            text = self.uws_value("REQUEST")
            if not text:
                raise ApiError(
                    400,
                    "send the task description as a JSON, YAML or XML body, or in a REQUEST form field",
                    field="REQUEST",
                )
            return parse_request_dialect(text)
        return parse_request_dialect(self.read_broker_document())

    def read_2021_form(self) -> ExecutionRequest:
        """The 2021 note's multipart (or urlencoded) ``POST accept``: ``tasktype``, ``taskinfo`` and
        ``resources`` as fields or file parts (JSON or YAML text), or the whole task in ``task``."""
        fields: dict[str, str] = {}
        for key, values in self.request.body_arguments.items():
            if values:
                fields[key.lower()] = values[-1].decode("utf-8", "replace")
        for key, files in self.request.files.items():
            if files:
                fields.setdefault(key.lower(), files[-1]["body"].decode("utf-8", "replace"))
        if "task" in fields:
            return parse_request_dialect(fields["task"])[0]
        if not fields.get("tasktype"):
            raise InvalidRequest([FieldError("tasktype", "send the task type, e.g. tasktype=uri://jupyter-notebook")])
        document: dict[str, Any] = {"tasktype": fields["tasktype"].strip()}
        for key in ("taskinfo", "resources"):
            if fields.get(key, "").strip():
                try:
                    document[key] = load_document(fields[key], what=key)
                except InvalidRequest as error:
                    raise InvalidRequest([FieldError(key, item.message) for item in error.errors]) from None
        return parse_request_dialect(document)[0]

    def asked_dialect(self, default: str = BROKER) -> str:
        """``?dialect=`` (as older-dialect answers write their links), else ``default``."""
        value = self.get_query_argument("dialect", None)
        if value is None:
            return default
        if value not in ANSWER_DIALECTS:
            raise ApiError(400, f"unknown dialect {value!r}; use one of {', '.join(ANSWER_DIALECTS)}", field="dialect")
        return value

    # ----------------------------------------------------------------------------- output

    def public_base(self) -> str:
        """``scheme://host/`` as the client reached us (the platform's ``public_url``, when it is
        configured, already makes its links absolute)."""
        return f"{self.request.protocol}://{self.request.host}/"

    def write_broker(
        self, document: dict[str, Any], what: Literal["offerset", "session"], dialect: str, status: int = 200
    ) -> None:
        """A v1.0 offer set or session, with absolute URLs and extension notes, in ``dialect`` and the
        media type the client asked for."""
        document = add_extension_notes(absolute_urls(document, self.public_base()))
        if what == "offerset":
            written = write_offerset(document, dialect)
        else:
            written = write_session(document, dialect)
        self.write_media(written, ROOT_OFFERSET if what == "offerset" else ROOT_SESSION, status)

    def write_media(self, document: dict[str, Any], root: str, status: int = 200) -> None:
        media = preferred_media(self.request.headers.get("Accept", ""))
        self.set_status(status)
        if media == "yaml":
            body: str | bytes = yaml.safe_dump(document, sort_keys=False)
        elif media == "xml":
            body = to_xml(document, root)
        else:
            body = json.dumps(document)
        self.finish(body, set_content_type=_CONTENT_TYPES[media])

    def write_2021(self, document: dict[str, Any], status: int = 200) -> None:
        """An answer in the 2021 note's form (JSON unless the client asks for YAML or XML)."""
        self.write_media(document, "response", status)
