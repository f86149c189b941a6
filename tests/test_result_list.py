"""The kernel reads the proxy's list of results while it arrives: one result per line as the proxy
writes it, any other JSON layout item by item, and anything else is refused with the caller's error."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from execplanner_widgets.client.result_list import read_results
from execplanner_widgets.model import OfferSetResponse
from execplanner_widgets.model.results import PlatformResult

NOT_JSON = ValueError("not JSON")


def results() -> list[PlatformResult]:
    yes = OfferSetResponse.model_validate(
        {
            "result": "YES",
            "offers": [
                {
                    "kind": "scheduled-execution-session",
                    "meta": {"uuid": "o-1", "created": "2026-12-07T10:00:00Z"},
                    "schedule": {"available": {"start": "2026-12-07T11:00:00Z/PT0S", "duration": "PT1H"}},
                    "compute": {"cores": {"min": 2, "max": 2}},
                }
            ],
        }
    )
    return [
        PlatformResult(platform="a", title="A, with \\n and é", status="YES", response=yes, elapsed=0.2),
        PlatformResult(platform="b", title="B", status="NO", response=OfferSetResponse(result="NO"), elapsed=0.1),
        PlatformResult(platform="c", title="C", status="ERROR", error="no answer within 5 s", elapsed=5.0),
    ]


def as_the_proxy_writes(items: list[PlatformResult]) -> bytes:
    return b"[\n" + b",\n".join(item.to_wire_json() for item in items) + b"\n]\n"


def read(*chunks: bytes) -> list[PlatformResult]:
    return list(read_results(iter(chunks), NOT_JSON))


def test_one_result_per_line_whatever_the_chunks(monkeypatch):
    from execplanner_widgets.client import result_list

    def item_by_item(chunks, not_json):
        raise AssertionError("the proxy's layout is read line by line")
        yield

    monkeypatch.setattr(result_list, "_items", item_by_item)
    expected = results()
    body = as_the_proxy_writes(expected)
    for cut in range(len(body) + 1):
        assert read(body[:cut], body[cut:]) == expected
    assert read(*(body[i : i + 1] for i in range(len(body)))) == expected  # a byte at a time


def test_any_other_json_layout_is_read_item_by_item():
    expected = results()
    compact = json.dumps([item.to_wire() for item in expected]).encode()
    pretty = json.dumps([item.to_wire() for item in expected], indent=2).encode()
    flush_left = json.dumps([item.to_wire() for item in expected], indent=0).encode()
    for body in (compact, pretty, flush_left, b"  " + compact):
        assert read(body[:7], body[7:]) == expected
    assert read(b"[]") == [] and read(b"[\n]\n") == [] and read(b"[\n\n]") == []


def test_each_result_comes_as_soon_as_its_line_is_whole():
    first, second = (item.to_wire_json() for item in results()[:2])
    sent: list[str] = []

    def chunks():
        sent.append("first")
        yield b"[\n" + first + b",\n"
        sent.append("second")
        yield second + b"\n]\n"

    reader = read_results(chunks(), NOT_JSON)
    assert next(reader).platform == "a" and sent == ["first"]
    assert next(reader).platform == "b" and sent == ["first", "second"]


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[\n",  # never closed
        b'[\n{"platform": "a"\n]\n',  # a line that is not JSON
        b"[\n" + results()[2].to_wire_json() + b",\n]\n",  # a comma and no next result
        b"[\n" + results()[2].to_wire_json() + b"\n" + results()[2].to_wire_json() + b"\n]\n",  # no comma
        b"[\n]\n]\n",  # something after the end
        b"[\n]\nmore",
        b"{}",
        b"[" + results()[2].to_wire_json() + b" " + results()[2].to_wire_json() + b"]",
        b"[\xff]",
    ],
)
def test_what_is_not_a_json_list_of_results_is_the_callers_error(body):
    with pytest.raises(ValueError) as caught:
        read(body)
    assert caught.value is NOT_JSON


def test_a_json_result_the_model_refuses_is_a_validation_error_in_both_layouts():
    for body in (b'[\n{"platform": "a", "status": "MAYBE"}\n]\n', b'[{"platform": "a", "status": "MAYBE"}]'):
        with pytest.raises(ValidationError):
            read(body)
