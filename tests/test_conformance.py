"""Every answer of the hosted ExecutionBroker routes is valid against the ExecutionBroker v1.0 schema.

A real Jupyter server (pytest-jupyter) answers YES, NO, an offer set read again, sessions in each
phase an update or the run moves them through (REJECTED, ACCEPTED, ... COMPLETED, CANCELLED), ``POST
direct`` (200 and 400) and errors. Each answer is checked with an off-the-shelf validator: jsonschema
(Draft 2020-12, the schema dialect of OpenAPI 3.1) over the reference schema files as they are,
resolved with ``referencing``, formats checked (``uri``, ``uuid``, ``date-time``), and the OpenAPI
``discriminator`` mappings enforced: a component whose ``kind`` is in a mapping must be valid
against the mapped schema, and a ``kind`` outside the mapping fails unless the test names it as an
extension of this project (``python-script``, which the answer must then say in a message). Error
answers, for which the standard has no schema yet, are checked against the ``ErrorBody`` schema of the
project's own OpenAPI document.
"""

from __future__ import annotations

import copy
import json
import os
import posixpath
from collections.abc import Iterable
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema
import pytest
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from test_hosted_support import DATA, eventually, extension_config, request_document, write_platforms
from tornado.httpclient import HTTPClientError

from execplanner_widgets.model import format_instant, kind_uri, utcnow

SCHEMA_FOLDER = "execution-broker-v1.0"
PYTHON_SCRIPT = kind_uri("executable", "python-script")
JSON = {"Content-Type": "application/json"}
ACCEPT = {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}


# ------------------------------------------------------------------------------ the validator


def _documents(folder: Path) -> dict[str, Any]:
    """Every YAML file of the schema, by its ``file:`` URI (the base of its relative ``$ref``s)."""
    return {path.resolve().as_uri(): yaml.safe_load(path.read_text()) for path in sorted(folder.rglob("*.yaml"))}


def _split(ref: str, base: str) -> tuple[str, str]:
    absolute = urljoin(base, ref)
    uri, _, pointer = absolute.partition("#")
    return uri, pointer


def _relative(target_uri: str, pointer: str, base: str) -> str:
    """A ``$ref`` to ``target_uri#pointer`` written relative to the document at ``base``."""
    if target_uri == base:
        return f"#{pointer}"
    relative = posixpath.relpath(target_uri.removeprefix("file://"), posixpath.dirname(base.removeprefix("file://")))
    return f"{relative}#{pointer}"


def _enforce_discriminators(documents: dict[str, Any], extensions: Iterable[str]) -> dict[str, Any]:
    """JSON Schema does not read OpenAPI's ``discriminator``; make it binding.

    For each abstract schema with a ``discriminator.mapping``, add ``{Name}Dispatch``: the abstract
    schema itself, ``kind`` required and one of the mapping's keys (or a named extension), and for
    each key ``if kind == key then`` the mapped schema. Every ``$ref`` to the abstract schema is
    pointed at the dispatch instead, except the ``allOf`` references by which the mapped schemas
    inherit from it (which would otherwise loop).
    """
    documents = copy.deepcopy(documents)
    extensions = list(extensions)
    abstract: dict[tuple[str, str], str] = {}
    for uri, document in documents.items():
        schemas = (document.get("components") or {}).get("schemas") or {}
        for name, schema in list(schemas.items()):
            mapping = (schema.get("discriminator") or {}).get("mapping")
            if not mapping:
                continue
            field = schema["discriminator"]["propertyName"]
            schemas[f"{name}Dispatch"] = {
                "allOf": [
                    {"$ref": f"#/components/schemas/{name}"},
                    {"required": [field], "properties": {field: {"enum": [*mapping, *extensions]}}},
                    *[
                        {"if": {"properties": {field: {"const": key}}}, "then": {"$ref": target}}
                        for key, target in mapping.items()
                    ],
                ]
            }
            abstract[(uri, f"/components/schemas/{name}")] = f"/components/schemas/{name}Dispatch"

    def rewrite(node: Any, base: str, in_all_of: bool = False) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not in_all_of:
                target = _split(ref, base)
                if target in abstract:
                    node["$ref"] = _relative(target[0], abstract[target], base)
            for key, value in node.items():
                if key == "allOf" and isinstance(value, list):
                    for item in value:
                        rewrite(item, base, in_all_of=True)
                elif key != "$ref":
                    rewrite(value, base)
        elif isinstance(node, list):
            for item in node:
                rewrite(item, base)

    for uri, document in documents.items():
        for name, schema in ((document.get("components") or {}).get("schemas") or {}).items():
            if not name.endswith("Dispatch"):
                rewrite(schema, uri)
    return documents


@lru_cache(maxsize=4)
def broker_validators(folder: str, extensions: tuple[str, ...] = ()) -> dict[str, jsonschema.Draft202012Validator]:
    """Validators for the answers: ``OfferSetResponse``, ``AbstractExecutionSession``, ``ExecutionRequest``
    and ``AbstractUpdate``, with discriminators enforced and formats checked."""
    documents = _enforce_discriminators(_documents(Path(folder)), extensions)
    registry: Registry = Registry().with_resources(
        (uri, Resource.from_contents(document, default_specification=DRAFT202012))
        for uri, document in documents.items()
    )
    components = (Path(folder) / "components.yaml").resolve().as_uri()
    names = {
        "offerset": "OfferSetResponse",
        "session": "AbstractExecutionSessionDispatch",
        "request": "ExecutionRequest",
        "update": "AbstractUpdateDispatch",
    }
    return {
        what: jsonschema.Draft202012Validator(
            {"$ref": f"{components}#/components/schemas/{name}"},
            registry=registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
        for what, name in names.items()
    }


def problems(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    """Every error, with the place in the document where it is."""
    found = []
    for error in validator.iter_errors(document):
        leaves = error.context or [error]
        for leaf in leaves:
            found.append(f"{'/'.join(map(str, leaf.absolute_path)) or '(root)'}: {leaf.message}")
    return list(dict.fromkeys(found))


def assert_conforms(validators: dict[str, Any], what: str, document: Any) -> None:
    errors = problems(validators[what], document)
    assert not errors, f"{what} does not conform to ExecutionBroker v1.0:\n" + "\n".join(errors[:20])


@pytest.fixture
def schema_folder(reference_dir: Path) -> str:
    folder = reference_dir / SCHEMA_FOLDER
    if not folder.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"the ExecutionBroker schema is missing in CI: {folder}")
        pytest.skip(f"no ExecutionBroker schema at {folder}")
    return str(folder)


@pytest.fixture
def validators(schema_folder: str) -> dict[str, jsonschema.Draft202012Validator]:
    return broker_validators(schema_folder)


def test_the_validator_is_strict_where_it_must_be(validators, schema_folder):
    """The checks this module relies on really run: relative URLs, bad uuids, unknown and mismatched
    kinds and wrong phase names are all refused."""
    offer = {
        "kind": kind_uri("session", "scheduled-execution-session"),
        "meta": {"uuid": "8c0f3a4e-1b2d-4c5e-9f60-7a8b9c0d1e2f", "url": "http://127.0.0.1/sessions/8c0f"},
        "phase": "OFFERED",
        "executable": {"kind": kind_uri("executable", "jupyter-notebook"), "location": "https://x/a.ipynb"},
        "compute": {"kind": kind_uri("compute", "simple-compute-resource"), "cores": {"min": 1, "max": 2}},
    }
    assert_conforms(validators, "session", offer)
    bad = [
        ("meta", "url", "/execplanner/platforms/gaia/sessions/8c0f"),
        ("meta", "uuid", "not-a-uuid"),
        ("executable", "kind", PYTHON_SCRIPT),
        ("executable", "kind", kind_uri("data", "simple-data-resource")),
        ("compute", "cores", {"min": "many"}),
        (None, "phase", "FINISHED"),
        (None, "kind", "https://example.org/another-session"),
    ]
    for block, key, value in bad:
        broken = copy.deepcopy(offer)
        (broken[block] if block else broken)[key] = value
        assert problems(validators["session"], broken), (block, key, value)
    extended = broker_validators(schema_folder, (PYTHON_SCRIPT,))
    script = copy.deepcopy(offer)
    script["executable"] = {"kind": PYTHON_SCRIPT, "location": "sum.py"}
    assert not problems(extended["session"], script)
    assert problems(validators["offerset"], {"result": "MAYBE"})


# ------------------------------------------------------------------------------- the server


@pytest.fixture
def jp_server_config(tmp_path):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            {
                "name": "gaia",
                "title": "Gaia data mining platform",
                "hosted": {"cores": 4, "memory": 8, "storage": 20, "offers": 2, "offer_ttl": "PT2M"},
            }
        ],
    )
    return extension_config(platforms, tmp_path / "state")


async def call(jp_fetch, *path: str, method: str = "GET", body: Any = None, **kwargs: Any) -> Any:
    headers = dict(JSON) if body is not None else {}
    if body is not None and not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return await jp_fetch(
        "execplanner", "platforms", "gaia", *path, method=method, body=body, headers=headers, **kwargs
    )


async def answer(jp_fetch, *path: str, **kwargs: Any) -> dict[str, Any]:
    return json.loads((await call(jp_fetch, *path, **kwargs)).body)


async def error(jp_fetch, *path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as caught:
        await call(jp_fetch, *path, **kwargs)
    return caught.value.code, json.loads(caught.value.response.body)


def later(hours: float = 1) -> str:
    return f"{format_instant(utcnow() + timedelta(hours=hours))}/PT12H"


def notebook(**kwargs: Any) -> dict[str, Any]:
    """The test notebook and the table it sums."""
    return request_document(DATA / "sum_numbers.ipynb", kind="jupyter-notebook", data=[DATA / "numbers.csv"], **kwargs)


async def test_yes_no_and_offer_sets_conform(jp_fetch, validators):
    yes = await answer(jp_fetch, "requests", method="POST", body=notebook(start=later()))
    assert yes["result"] == "YES" and len(yes["offers"]) == 2
    assert_conforms(validators, "offerset", yes)
    no = await answer(jp_fetch, "requests", method="POST", body=notebook(cores=64))
    assert no["result"] == "NO" and no["meta"]["messages"]
    assert_conforms(validators, "offerset", no)
    again = await answer(jp_fetch, "offersets", yes["meta"]["uuid"])
    assert_conforms(validators, "offerset", again)
    for offer in yes["offers"]:
        assert_conforms(validators, "session", await answer(jp_fetch, "sessions", offer["meta"]["uuid"]))


async def test_every_phase_a_session_goes_through_conforms(jp_fetch, validators):
    """REJECTED, ACCEPTED (its sibling REJECTED with it), each phase of the run up to COMPLETED, and a
    CANCELLED booking: every session document on the way is valid."""
    offers = (await answer(jp_fetch, "requests", method="POST", body=notebook(duration="PT2M")))["offers"]
    first, second = (offer["meta"]["uuid"] for offer in offers)
    seen: dict[str, dict[str, Any]] = {}
    rejected = await answer(jp_fetch, "sessions", second, method="POST", body={**ACCEPT, "value": "REJECTED"})
    seen[rejected["phase"]] = rejected
    accepted = await answer(jp_fetch, "sessions", first, method="POST", body=ACCEPT)
    seen[accepted["phase"]] = accepted

    async def finished() -> dict[str, Any] | None:
        session = await answer(jp_fetch, "sessions", first)
        seen.setdefault(session["phase"], session)
        return session if session["phase"] in ("COMPLETED", "FAILED") else None

    done = await eventually(finished, 120, interval=0.1)
    assert done["phase"] == "COMPLETED", [item.get("message") for item in done["meta"]["messages"]]
    assert {"REJECTED", "ACCEPTED", "COMPLETED"} <= set(seen)
    for session in seen.values():
        assert_conforms(validators, "session", session)

    later_set = await answer(jp_fetch, "requests", method="POST", body=notebook(start=later(3)))
    booked = later_set["offers"][0]["meta"]["uuid"]
    await call(jp_fetch, "sessions", booked, method="POST", body=ACCEPT)
    cancelled = await answer(jp_fetch, "sessions", booked, method="POST", body={**ACCEPT, "value": "CANCELLED"})
    assert cancelled["phase"] == "CANCELLED"
    assert_conforms(validators, "session", cancelled)
    assert_conforms(validators, "offerset", await answer(jp_fetch, "offersets", later_set["meta"]["uuid"]))


async def test_direct_answers_conform_both_ways(jp_fetch, validators):
    session = await answer(jp_fetch, "direct", method="POST", body=notebook(start=later()))
    assert session["phase"] == "ACCEPTED"
    assert_conforms(validators, "session", session)
    code, refused = await error(jp_fetch, "direct", method="POST", body=notebook(cores=64))
    assert code == 400 and refused["phase"] == "REJECTED" and refused["message"]
    assert_conforms(validators, "session", refused)


async def test_python_script_offers_say_they_are_an_extension(jp_fetch, validators, schema_folder):
    script = request_document(DATA / "sum_numbers.py", start=later())
    offerset = await answer(jp_fetch, "requests", method="POST", body=script)
    assert offerset["result"] == "YES"
    assert problems(validators["offerset"], offerset)  # not in the standard's mapping, and so refused
    assert_conforms(broker_validators(schema_folder, (PYTHON_SCRIPT,)), "offerset", offerset)
    for offer in offerset["offers"]:
        assert any("extension" in item.get("message", "") for item in offer["meta"]["messages"]), offer["meta"]


async def test_error_answers_keep_the_documented_body(jp_fetch):
    """The project's OpenAPI document of these routes (served at ``{name}/openapi.json``) gives every
    operation its error answers as ``ErrorBody``; real errors are valid against it."""
    document = await answer(jp_fetch, "openapi.json")
    assert document["openapi"] == "3.1.0" and document["servers"][0]["url"].endswith("/execplanner/platforms/gaia")
    assert {"/requests", "/offersets", "/offersets/{uuid}", "/sessions/{uuid}", "/direct"} <= set(document["paths"])
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status in ("400", "403", "404"):
                assert status in operation["responses"], (path, method, status)
            assert "ErrorBody" in json.dumps(operation["responses"]["404"]), (path, method)
    checker = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/ErrorBody", "components": document["components"]}
    )
    offer = (await answer(jp_fetch, "requests", method="POST", body=notebook(start=later())))["offers"][0]
    cases = [
        (("requests",), {"method": "POST", "body": b"{not json"}, 400),
        (("requests",), {"method": "POST", "body": {"compute": {"cores": {"min": 1}}}}, 400),
        (("sessions", offer["meta"]["uuid"]), {"method": "POST", "body": {**ACCEPT, "value": "RUNNING"}}, 400),
        (("sessions", "0b7e2d8c-5f1a-4c3e-9a61-2f4d8e6b1c01"), {}, 404),
    ]
    for path, kwargs, status in cases:
        code, body = await error(jp_fetch, *path, **kwargs)
        assert code == status, (path, body)
        assert not list(checker.iter_errors(body)), body
        assert isinstance(body["message"], str) and body["message"]
