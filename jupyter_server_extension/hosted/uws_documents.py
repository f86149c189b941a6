"""IVOA UWS 1.1 documents: job and job-list models, as XML or JSON (no database here).

Each accepted ExecutionBroker session is also a UWS job, with the session's UUID as job id. The
XML follows ``UWS.xsd`` (namespace ``http://www.ivoa.net/xml/UWS/v1.0``, ``version="1.1"``) with
elements in the schema's order and ``xsi:nil`` where a value is unknown; JSON uses the same
names (``jobId``, ``phase``, ``executionDuration`` ...).

The phase mapping (ExecutionBroker session phase -> UWS phase) is
:mod:`execplanner_widgets.model.phases`; rows become these documents in :mod:`.jobs`.

A job is never PENDING or HELD: ``POST jobs`` books the earliest offer at once (the seeds'
"executeThis"), as if ``PHASE=RUN`` had been sent with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from lxml import etree
from pydantic import BaseModel, Field

from execplanner_widgets.model import format_instant
from execplanner_widgets.model.phases import UwsPhase

__all__ = [
    "UWS_NS",
    "UwsError",
    "UwsJob",
    "UwsJobRef",
    "UwsParameter",
    "UwsPhase",
    "UwsResult",
    "job_list_json",
    "job_list_xml",
    "parameters_json",
    "parameters_xml",
    "results_json",
    "results_xml",
]

UWS_NS = "http://www.ivoa.net/xml/UWS/v1.0"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
INFO_NS = "urn:execplanner:hosted"
UWS_VERSION = "1.1"
_NSMAP = {"uws": UWS_NS, "xlink": XLINK_NS, "xsi": XSI_NS}


class UwsParameter(BaseModel):
    """One ``uws:parameter``: a value, or a URL to it when ``by_reference``."""

    id: str
    value: str
    by_reference: bool = False


class UwsResult(BaseModel):
    """One ``uws:result``: an id, a link to download it, its size and type."""

    id: str
    href: str
    size: int | None = None
    mime_type: str | None = None


class UwsError(BaseModel):
    """``uws:errorSummary``; the full text is at ``jobs/{id}/error``."""

    type: Literal["transient", "fatal"] = "fatal"
    message: str
    has_detail: bool = True


class UwsJobRef(BaseModel):
    """One ``uws:jobref`` of the job list."""

    id: str
    href: str | None = None
    phase: UwsPhase
    run_id: str | None = None
    owner_id: str | None = None
    creation_time: datetime | None = None


class UwsJob(BaseModel):
    """A UWS 1.1 ``JobSummary``."""

    job_id: str
    run_id: str | None = None
    owner_id: str | None = None
    phase: UwsPhase
    quote: datetime | None = None
    creation_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    execution_duration: int = Field(ge=0, description="Seconds the job may run; 0 means unlimited")
    destruction: datetime | None = None
    parameters: list[UwsParameter] = Field(default_factory=list)
    results: list[UwsResult] = Field(default_factory=list)
    error_summary: UwsError | None = None
    messages: list[dict[str, Any]] = Field(default_factory=list, description="The session's history, in jobInfo")

    # ------------------------------------------------------------------------------- XML

    def to_element(self) -> etree._Element:
        root = etree.Element(_uws("job"), nsmap=_NSMAP)
        root.set("version", UWS_VERSION)
        _text(root, "jobId", self.job_id)
        if self.run_id is not None:
            _text(root, "runId", self.run_id)
        _nillable(root, "ownerId", self.owner_id)
        _text(root, "phase", self.phase.value)
        _nillable(root, "quote", _instant(self.quote))
        if self.creation_time is not None:
            _text(root, "creationTime", _instant(self.creation_time))
        _nillable(root, "startTime", _instant(self.start_time))
        _nillable(root, "endTime", _instant(self.end_time))
        _text(root, "executionDuration", str(self.execution_duration))
        _nillable(root, "destruction", _instant(self.destruction))
        root.append(parameters_element(self.parameters))
        root.append(results_element(self.results))
        if self.error_summary is not None:
            summary = etree.SubElement(root, _uws("errorSummary"))
            summary.set("type", xml_text(self.error_summary.type))
            summary.set("hasDetail", "true" if self.error_summary.has_detail else "false")
            _text(summary, "message", self.error_summary.message)
        if self.messages:
            info = etree.SubElement(root, _uws("jobInfo"))
            history = etree.SubElement(info, f"{{{INFO_NS}}}messages", nsmap={"ep": INFO_NS})
            for item in self.messages:
                message = etree.SubElement(history, f"{{{INFO_NS}}}message")
                for key in ("time", "level", "phase"):
                    if item.get(key):
                        message.set(key, xml_text(str(item[key])))
                message.text = xml_text(item.get("message") or "")
        return root

    def to_xml(self) -> bytes:
        return _serialise(self.to_element())

    # ------------------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "version": UWS_VERSION,
            "jobId": self.job_id,
            "runId": self.run_id,
            "ownerId": self.owner_id,
            "phase": self.phase.value,
            "quote": _instant(self.quote),
            "creationTime": _instant(self.creation_time),
            "startTime": _instant(self.start_time),
            "endTime": _instant(self.end_time),
            "executionDuration": self.execution_duration,
            "destruction": _instant(self.destruction),
            "parameters": [{"id": p.id, "value": p.value, "byReference": p.by_reference} for p in self.parameters],
            "results": [_result_json(result) for result in self.results],
        }
        if self.error_summary is not None:
            document["errorSummary"] = {
                "type": self.error_summary.type,
                "hasDetail": self.error_summary.has_detail,
                "message": self.error_summary.message,
            }
        if self.messages:
            document["jobInfo"] = {"messages": self.messages}
        return document


#: ANSI terminal sequences (a failed notebook's traceback is coloured) and what XML 1.0 cannot hold.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str | None) -> str:
    """``value`` as XML 1.0 can carry it: colour codes removed, other control characters (and lone
    surrogates) written as ``\\xNN`` so the text stays readable and the document valid."""
    if value is None:
        return ""
    text = _ANSI.sub("", str(value))
    return _NOT_XML.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def _uws(name: str) -> str:
    return f"{{{UWS_NS}}}{name}"


def _text(parent: etree._Element, name: str, value: str) -> etree._Element:
    element = etree.SubElement(parent, _uws(name))
    element.text = xml_text(value)
    return element


def _nillable(parent: etree._Element, name: str, value: str | None) -> None:
    element = etree.SubElement(parent, _uws(name))
    if value is None:
        element.set(f"{{{XSI_NS}}}nil", "true")
    else:
        element.text = xml_text(value)


def _instant(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


def _serialise(element: etree._Element) -> bytes:
    return etree.tostring(element, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _result_json(result: UwsResult) -> dict[str, Any]:
    return {"id": result.id, "href": result.href, "size": result.size, "mime-type": result.mime_type}


def parameters_element(parameters: Iterable[UwsParameter]) -> etree._Element:
    """``uws:parameters`` (the body of ``jobs/{id}/parameters``)."""
    element = etree.Element(_uws("parameters"), nsmap=_NSMAP)
    for parameter in parameters:
        item = etree.SubElement(element, _uws("parameter"))
        item.set("id", xml_text(parameter.id))
        if parameter.by_reference:
            item.set("byReference", "true")
        item.text = xml_text(parameter.value)
    return element


def results_element(results: Iterable[UwsResult]) -> etree._Element:
    """``uws:results`` (the body of ``jobs/{id}/results``)."""
    element = etree.Element(_uws("results"), nsmap=_NSMAP)
    for result in results:
        item = etree.SubElement(element, _uws("result"))
        item.set("id", xml_text(result.id))
        item.set(f"{{{XLINK_NS}}}type", "simple")
        item.set(f"{{{XLINK_NS}}}href", xml_text(result.href))
        if result.size is not None:
            item.set("size", str(result.size))
        if result.mime_type:
            item.set("mime-type", xml_text(result.mime_type))
    return element


def parameters_xml(parameters: Iterable[UwsParameter]) -> bytes:
    return _serialise(parameters_element(parameters))


def results_xml(results: Iterable[UwsResult]) -> bytes:
    return _serialise(results_element(results))


def parameters_json(parameters: Iterable[UwsParameter]) -> dict[str, Any]:
    return {"parameters": [{"id": p.id, "value": p.value, "byReference": p.by_reference} for p in parameters]}


def results_json(results: Iterable[UwsResult]) -> dict[str, Any]:
    return {"results": [_result_json(result) for result in results]}


def job_list_xml(refs: Iterable[UwsJobRef]) -> bytes:
    """``uws:jobs`` with one ``uws:jobref`` per job."""
    root = etree.Element(_uws("jobs"), nsmap=_NSMAP)
    root.set("version", UWS_VERSION)
    for ref in refs:
        item = etree.SubElement(root, _uws("jobref"))
        item.set("id", xml_text(ref.id))
        if ref.href:
            item.set(f"{{{XLINK_NS}}}type", "simple")
            item.set(f"{{{XLINK_NS}}}href", xml_text(ref.href))
        _text(item, "phase", ref.phase.value)
        if ref.run_id is not None:
            _text(item, "runId", ref.run_id)
        _nillable(item, "ownerId", ref.owner_id)
        if ref.creation_time is not None:
            _text(item, "creationTime", _instant(ref.creation_time) or "")
    return _serialise(root)


def job_list_json(refs: Iterable[UwsJobRef]) -> dict[str, Any]:
    return {
        "version": UWS_VERSION,
        "jobs": [
            {
                "id": ref.id,
                "href": ref.href,
                "phase": ref.phase.value,
                "runId": ref.run_id,
                "ownerId": ref.owner_id,
                "creationTime": _instant(ref.creation_time),
            }
            for ref in refs
        ],
    }
