"""``parse_request`` reads every dialect of the ExecutionPlanner idea into one ExecutionRequest."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from execplanner_widgets import ExecutionRequest, InvalidRequest, parse_request
from execplanner_widgets.model import (
    DockerContainer,
    ExecutionSession,
    JupyterNotebook,
    OfferSetResponse,
    RucioDataResource,
    SimpleDataResource,
    detect_dialect,
    kind_uri,
    parse_instant,
)
from execplanner_widgets.model.answer_dialects import (
    absolute_urls,
    add_extension_notes,
    lease_status,
    read_answer,
    write_offerset,
    write_request,
    write_session,
    write_update,
)
from execplanner_widgets.model.broker_xml import ROOT_OFFERSET, ROOT_REQUEST, ROOT_SESSION, from_xml, to_xml
from execplanner_widgets.model.components import GenericExecutable
from execplanner_widgets.model.dialects import (
    PROTOTYPE_2025,
    kind_from_2025,
    normalise_update,
    parse_request_dialect,
)

NOTEBOOK = kind_uri("executable", "jupyter-notebook")
DOCKER = kind_uri("executable", "docker-container")


def roundtrip_is_stable(request: ExecutionRequest) -> None:
    first = request.to_broker()
    again = parse_request(first)
    assert again.to_broker() == first
    assert parse_request(json.dumps(first)).to_broker() == first
    assert parse_request(yaml.safe_dump(first)).to_broker() == first


# ------------------------------------------------------------------------------ ExecutionBroker


BROKER_2026 = {
    "executable": {
        "kind": NOTEBOOK,
        "meta": {"name": "clustering", "description": "HDBSCAN clustering"},
        "location": "https://example.org/hdbscan.ipynb",
    },
    "compute": {
        "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml",
        "cores": {"min": 4, "max": 8},
        "memory": {"min": 8, "max": 16},
    },
    "storage": [
        {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/storage/simple-storage-resource.yaml",
            "size": {"min": 20},
            "schedule": {"available": {"duration": "PT4H"}},
        }
    ],
    "data": [
        {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/simple-data-resource.yaml",
            "meta": {"name": "images"},
            "location": "https://example.org/images.tar",
        },
        {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/S3-data-resource.yaml",
            "meta": {"name": "catalogue"},
            "endpoint": "https://s3.example.org",
            "bucket": "gaia-dr3",
            "object": "source.parquet",
        },
    ],
    "schedule": {"requested": {"duration": "PT2H", "start": "2026-11-25T05:14:00Z/PT0S"}},
}


def test_broker_2026_document():
    request = parse_request(BROKER_2026)
    assert isinstance(request.executable, JupyterNotebook)
    assert request.executable.location.endswith("hdbscan.ipynb")
    assert (request.compute.cores.min, request.compute.cores.max) == (4, 8)
    assert request.compute.memory.max == 16
    assert request.storage[0].lifetime == timedelta(hours=4)
    assert [item.location_hint for item in request.data] == [
        "https://example.org/images.tar",
        "s3://gaia-dr3/source.parquet at https://s3.example.org",
    ]
    assert request.duration == timedelta(hours=2)
    assert request.earliest_start.isoformat() == "2026-11-25T05:14:00+00:00"
    assert detect_dialect(BROKER_2026) == "broker"
    roundtrip_is_stable(request)
    # the wire form keeps the broker's own spelling
    wire = request.to_broker()
    assert wire["schedule"]["requested"]["start"] == "2026-11-25T05:14:00Z/PT0S"
    assert wire["compute"]["memory"] == {"min": 8, "max": 16}


def test_broker_2025_kind_uris_and_short_names_normalise():
    document = {
        "executable": {
            "kind": "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/executable/docker-container-1.0",
            "image": {"locations": ["docker.io/example:1.0"]},
        },
        "compute": {
            "kind": "https://www.purl.org/ivoa.net/EB/schema/v1.0/types/compute/simple-compute-resource-1.0",
            "cores": {"min": 2},
        },
    }
    request = parse_request(document)
    assert isinstance(request.executable, DockerContainer)
    assert request.executable.kind == DOCKER
    assert request.compute.kind == kind_uri("compute", "simple-compute-resource")
    short = parse_request({"executable": {"kind": "docker-container", "image": "docker.io/example:1.0"}})
    assert short.executable.image.locations == ["docker.io/example:1.0"]


def test_units_in_broker_documents():
    request = parse_request(
        {
            "executable": {"kind": "jupyter-notebook"},
            "compute": {"cores": 4, "memory": {"min": "512Mi", "max": "8G"}},
            "storage": {"size": {"min": "1.5T"}},
            "schedule": {"requested": {"duration": "9h30m"}},
        }
    )
    assert request.compute.cores.min == 4  # a bare number is a minimum
    assert (request.compute.memory.min, request.compute.memory.max) == (1, 8)
    assert request.storage[0].size.min == 1397
    assert request.to_broker()["schedule"]["requested"]["duration"] == "PT9H30M"


def test_memory_with_units_field_as_in_minmaxcomputelong():
    request = parse_request(
        {"executable": {"kind": "jupyter-notebook"}, "compute": {"memory": {"min": 4096, "units": "MiB"}}}
    )
    assert request.compute.memory.min == 4
    assert "units" not in request.to_broker()["compute"]["memory"]


def test_unknown_kinds_are_kept_for_the_platform_to_judge():
    document = {"executable": {"kind": "uri://kubernetes-helm", "chart": "https://example.org/helm.chart"}}
    request = parse_request(document)
    assert isinstance(request.executable, GenericExecutable)
    assert request.executable.kind == "uri://kubernetes-helm"
    assert request.to_broker()["executable"]["chart"] == "https://example.org/helm.chart"
    roundtrip_is_stable(request)


def test_unknown_fields_survive_a_round_trip():
    document = json.loads(json.dumps(BROKER_2026))
    document["executable"]["future-field"] = {"x": 1}
    document["compute"]["gpus"] = {"min": 1}
    wire = parse_request(document).to_broker()
    assert wire["executable"]["future-field"] == {"x": 1}
    assert wire["compute"]["gpus"] == {"min": 1}


# ------------------------------------------------------------------------------------ 2021 note


def test_2021_note_gaia_example_from_the_seeds():
    text = """
    {
      "tasktype": "uri://jupyter-notebook",
      "taskinfo": {"notebook": "https://example.org/ml.ipynb"},
      "resources": {"mincores": 220, "maxcores": 240, "minmemory": "360G", "maxmemory": "400G",
                    "minduration": "9h", "maxduration": "9h30m"}
    }
    """
    request = parse_request(text)
    assert detect_dialect(json.loads(text)) == "note-2021"
    assert request.executable.kind == NOTEBOOK
    assert request.executable.location == "https://example.org/ml.ipynb"
    assert (request.compute.cores.min, request.compute.cores.max) == (220, 240)
    assert (request.compute.memory.min, request.compute.memory.max) == (336, 373)
    assert request.duration == timedelta(hours=9)
    roundtrip_is_stable(request)


def test_2021_note_yaml_as_on_the_slides():
    # the slides write the resources block without quotes: YAML reads it
    text = """
tasktype: uri://docker-container
taskinfo:
  image: docker.io/example:1.0
resources:
  mincores: 8
  maxcores:
  minmemory: 8G
  maxmemory:
  minduration: 10m
  maxduration:
"""
    request = parse_request(text)
    assert isinstance(request.executable, DockerContainer)
    assert request.executable.image.locations == ["docker.io/example:1.0"]
    assert request.compute.cores.min == 8 and request.compute.cores.max is None
    assert request.compute.memory.min == 8
    assert request.duration == timedelta(minutes=10)


# ------------------------------------------------------------------------------------ 2022 note


def test_every_2022_reference_example_parses(reference_dir):
    files = sorted((reference_dir / "ep-note-2022" / "examples").rglob("*.json"))
    files.append(reference_dir / "ep-note-2022" / "data" / "executable-task-001.json")
    assert len(files) >= 9
    for path in files:
        request = parse_request(path)
        assert request.executable.kind, path
        roundtrip_is_stable(request)


def test_2022_jupyter_lease_keeps_the_start_date(reference_dir):
    path = reference_dir / "ep-note-2022" / "examples" / "jupyter-notebook" / "jupyter-notebook-001-02-request.json"
    request = parse_request(path)
    assert request.executable.kind == NOTEBOOK
    assert request.executable.meta.uuid == "9199ce61-8506-4742-ab2a-f5e405f55c8d"
    assert request.earliest_start.isoformat() == "2022-04-24T12:00:00+00:00"


def test_2022_template_is_a_shopping_list_and_located_version_is_not(reference_dir):
    folder = reference_dir / "ep-note-2022" / "examples" / "binder-notebook"
    template = parse_request(folder / "binder-notebook-002-01-complex-task-template.json")
    located = parse_request(folder / "binder-notebook-002-02-complex-task-located.json")
    missing = [item.description for item in template.missing_data()]
    assert missing == [
        "The raw images to be processed.",
        "The data to use for calibration.",
        "The calibration level to use (0 to 7)",  # a value the user still has to give
    ]
    assert located.missing_data() == []
    assert isinstance(located.data[0], SimpleDataResource)
    assert located.data[0].location == "http://staging.example.org/images"
    assert isinstance(located.data[1], RucioDataResource)
    assert located.data[1].location_hint == "cta-data:calibration-0078"
    # the binder kind is not one we know: it is kept for the platform to judge
    assert template.executable.kind == "https://purl.org/esap.escape.eu/task-type/binder-notebook"


def test_2022_task_with_volumes_storage_and_lifetimes(reference_dir):
    request = parse_request(reference_dir / "ep-note-2022" / "data" / "executable-task-001.json")
    assert request.executable.kind == "urn:example-task"
    assert request.executable.name == "Example task"
    assert request.duration == timedelta(hours=1)
    assert [item.size.min for item in request.storage] == [1024, 120]
    assert request.storage[1].lifetime == timedelta(days=7)
    assert request.data[0].location_hint == "s3://gaia-edr3"
    assert request.compute.volumes[0].path == "/input"


def test_2022_multiple_compute_resources_are_totalled():
    document = {
        "type": "uri://docker-container",
        "task": {"image": "x"},
        "compute-resources": [
            {"instances": 6, "mincores": 26, "minmemory": 43},
            {"mincores": 54, "minmemory": 86},
        ],
    }
    request = parse_request(document)
    assert request.compute.cores.min == 6 * 26 + 54
    assert request.compute.memory.min == 6 * 43 + 86


# ------------------------------------------------------------------------------------ OSSR entry


def test_ossr_executable_entry_from_the_seeds():
    entry = {
        "name": "Demo container",
        "type": "purl:docker-container",
        "description": "A Docker container with the library installed and ready to use",
        "content": {"image": "docker.io/example:1.0"},
        "data-resources": [{"uuid": "images", "description": "A collection of images to process", "required": True}],
        "compute-resources": [{"mincores": 4, "minmemory": 32}],
        "storage-resources": [{"minsize": 20, "minlifetime": "PT4H"}],
    }
    request = parse_request(entry)
    assert detect_dialect(entry) == "ossr"
    assert request.executable.kind == DOCKER
    assert request.executable.name == "Demo container"
    assert request.executable.image.locations == ["docker.io/example:1.0"]
    assert request.compute.cores.min == 4 and request.compute.memory.min == 32
    assert request.storage[0].lifetime == timedelta(hours=4)
    assert [item.name for item in request.missing_data()] == ["images"]
    roundtrip_is_stable(request)


# ------------------------------------------------------------------------------------ sources


def test_sources_text_bytes_path(tmp_path):
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(BROKER_2026))
    from_path = parse_request(path)
    assert parse_request(str(path)) == from_path
    assert parse_request(path.read_bytes()) == from_path
    assert parse_request(from_path) == from_path and parse_request(from_path) is not from_path


# ------------------------------------------------------------------------------------- errors


def errors_of(source) -> dict[str, str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(source)
    return {error.field: error.message for error in caught.value.errors}


def test_min_greater_than_max_names_the_field():
    errors = errors_of({"executable": {"kind": "jupyter-notebook"}, "compute": {"cores": {"min": 32, "max": 8}}})
    assert errors == {"compute.cores": "the minimum (32) is greater than the maximum (8)"}


def test_negative_and_unparseable_values_name_the_field():
    errors = errors_of(
        {
            "executable": {"kind": "jupyter-notebook"},
            "compute": {"cores": {"min": -2}, "memory": {"min": "eight"}},
            "storage": [{"size": {"min": "-5Gi"}}],
            "schedule": {"requested": {"duration": "soon"}},
        }
    )
    assert set(errors) == {
        "compute.cores.min",
        "compute.memory.min",
        "storage[0].size.min",
        "schedule.requested.duration",
    }
    assert "greater than or equal to 0" in errors["compute.cores.min"]
    assert "expected a size" in errors["compute.memory.min"]
    assert "ISO 8601" in errors["schedule.requested.duration"]


def test_ranges_read_whole_numbers_sizes_with_units_and_a_bare_minimum():
    compute = parse_request(
        {
            "executable": {"kind": "jupyter-notebook"},
            "compute": {"cores": {"min": "2", "max": 4.0}, "memory": {"min": 512, "max": 2048, "units": "MiB"}},
        }
    ).compute
    assert (compute.cores.min, compute.cores.max) == (2, 4)
    assert (compute.memory.min, compute.memory.max) == (1, 2)  # MiB rounded up to whole GiB
    assert "units" not in compute.memory.to_wire()
    bare = parse_request({"executable": {"kind": "jupyter-notebook"}, "compute": {"cores": 3, "memory": "8Gi"}})
    assert (bare.compute.cores.min, bare.compute.cores.max, bare.compute.memory.min) == (3, None, 8)


def test_range_problems_are_each_named_at_their_bound():
    errors = errors_of(
        {
            "executable": {"kind": "jupyter-notebook"},
            "compute": {"cores": {"min": 2.5, "max": True}, "memory": {"min": "32Gi", "max": "8Gi"}},
        }
    )
    assert errors == {
        "compute.cores.min": "expected a whole number of cores, got 2.5",
        "compute.cores.max": "expected a whole number of cores, got True",
        "compute.memory": "the minimum (32) is greater than the maximum (8)",
    }
    # a negative bound is the field's own problem, not an order between the two
    assert errors_of({"executable": {"kind": "jupyter-notebook"}, "compute": {"cores": {"min": 5, "max": -1}}}) == {
        "compute.cores.max": "Input should be greater than or equal to 0"
    }


def test_an_offer_set_reads_the_same_from_a_mapping_and_from_json_bytes():
    loose = {
        "result": "no",
        "messages": [{"level": "warning", "message": "the queue is full"}],
        "meta": {"uuid": "u-1", "messages": [{"message": "asked at 10:00"}]},
    }
    for answer in (OfferSetResponse.model_validate(loose), OfferSetResponse.model_validate_json(json.dumps(loose))):
        assert answer.result == "NO"
        assert answer.reasons == ["asked at 10:00", "the queue is full"]  # the schema's place first
        assert answer.messages[1].level == "WARN"
        assert answer.to_wire() == {
            "meta": {
                "uuid": "u-1",
                "messages": [{"message": "asked at 10:00"}, {"level": "WARN", "message": "the queue is full"}],
            },
            "result": "NO",
        }
    for document in ({"result": "YES"}, {"result": "YES", "offers": []}):
        with pytest.raises(ValueError, match="a YES answer must carry at least one offer"):
            OfferSetResponse.model_validate(document)
        with pytest.raises(ValueError, match="a YES answer must carry at least one offer"):
            OfferSetResponse.model_validate_json(json.dumps(document))


def test_the_wire_form_leaves_out_empty_lists_and_is_written_once():
    session = ExecutionSession.model_validate(
        {
            "kind": "scheduled-execution-session",
            "meta": {"uuid": "s-1", "messages": []},
            "executable": {"kind": "docker-container", "command": [], "environment": {}},
            "compute": {"cores": {"min": 0}},
            "storage": [],
            "future-field": [],  # unknown to this model: relayed as it came
        }
    )
    wire = session.to_wire()
    assert wire["meta"] == {"uuid": "s-1"}
    assert wire["executable"] == {"kind": kind_uri("executable", "docker-container")}
    assert wire["compute"]["cores"] == {"min": 0}  # a zero means something and stays
    assert "storage" not in wire and "results" not in wire and "connectors" not in wire
    assert wire["future-field"] == []
    assert json.loads(session.to_wire_json()) == wire
    assert session.storage == [] and session.executable.command == []  # in Python, nothing is missing


def test_a_request_needs_an_executable_with_a_kind():
    assert errors_of({"compute": {"cores": 2}}) == {
        "executable": "a request needs an executable (e.g. a notebook or container)"
    }
    assert "executable.kind" in errors_of({"executable": {"location": "x.ipynb"}})


@pytest.mark.parametrize("text", ["[1, 2]", "just words", "{", "", "null"])
def test_documents_that_are_not_mappings(text):
    with pytest.raises(InvalidRequest):
        parse_request(text)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(InvalidRequest, match="no such file"):
        parse_request(str(tmp_path / "nope.yaml"))


def test_error_dict_is_the_400_body():
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"executable": {"kind": "jupyter-notebook"}, "compute": {"memory": {"min": "8 gigs"}}})
    body = caught.value.to_dict()
    assert body["field"] == "compute.memory.min"
    assert body["message"].startswith("Invalid request: compute.memory.min:")
    assert body["errors"][0]["field"] == "compute.memory.min"


# ------------------------------------------------------------------------ the 2025 prototype

PROTOTYPE = Path(__file__).resolve().parent / "data" / "prototype"
COMPUTE = kind_uri("compute", "simple-compute-resource")


def test_prototype_2025_request_with_type_and_computer():
    request, dialect = parse_request_dialect(PROTOTYPE / "notebook-request.yaml")
    assert dialect == PROTOTYPE_2025
    assert request.executable.kind == NOTEBOOK and request.executable.meta.name == "proper-motions-notebook"
    assert request.compute.kind == COMPUTE and (request.compute.cores.min, request.compute.cores.max) == (1, 2)
    assert request.compute.meta.name == "proper-motions-computer"
    assert request.duration == timedelta(minutes=2)
    roundtrip_is_stable(request)


def test_prototype_2025_resources_block_and_plural_category_uris():
    request, dialect = parse_request_dialect(PROTOTYPE / "container-resources-request.yaml")
    assert dialect == PROTOTYPE_2025
    assert request.executable.kind == DOCKER
    assert request.executable.image.locations == ["registry.example.org/astro/cutouts:2.1"]
    assert request.compute.kind == COMPUTE and request.compute.cores.min == 2 and request.compute.memory.min == 4
    assert [item.kind for item in request.data] == [kind_uri("data", "simple-data-resource")]
    assert request.data[0].meta.name == "survey-tiles"


def test_prototype_2025_v1_uris_and_an_unknown_kind_is_kept():
    request, _ = parse_request_dialect(PROTOTYPE / "script-request.json")
    assert request.executable.kind == kind_uri("executable", "python-script")
    odd = "https://www.purl.org/ivoa.net/EB/schema/types/executable/quantum-circuit-1.0"
    assert kind_from_2025(odd, "executable") == odd
    assert parse_request({"executable": {"type": odd, "location": "x"}}).executable.kind == odd


def test_prototype_2025_two_computers_name_the_field():
    document = yaml.safe_load((PROTOTYPE / "container-resources-request.yaml").read_text())
    document["resources"]["compute"].append(document["resources"]["compute"][0])
    with pytest.raises(InvalidRequest) as caught:
        parse_request(document)
    assert caught.value.errors[0].field == "computer"


# --------------------------------------------------------------------------- the 2022 wrapper


def test_2022_requests_wrapper_holds_one_lease(reference_dir):
    lease = json.loads(
        (reference_dir / "ep-note-2022/examples/jupyter-notebook/jupyter-notebook-001-02-request.json").read_text()
    )
    request, dialect = parse_request_dialect({"requests": [lease]})
    assert dialect == "note-2022" and request.executable.kind == NOTEBOOK
    assert request.earliest_start is not None
    with pytest.raises(InvalidRequest) as caught:
        parse_request({"requests": [lease, lease]})
    assert caught.value.errors[0].field == "requests"


# ------------------------------------------------------------------------------------ updates


@pytest.mark.parametrize(
    "document, dialect",
    [
        ({"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}, "broker"),
        ({"kind": "uri:enum-value-update", "path": "/phase", "value": "ACCEPTED"}, "broker"),
        (json.loads((PROTOTYPE / "accept-update.json").read_text()), PROTOTYPE_2025),
        ({"status": "ACCEPTED", "type": "https://purl.org/ep.ivoa.net/definitions/executable-lease"}, "note-2022"),
    ],
)
def test_updates_in_every_dialect_become_v1(document, dialect):
    update, found = normalise_update(document)
    assert found == dialect
    assert update == {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}


def test_prototype_update_wrapper_and_a_lease_with_a_status_it_cannot_set():
    update, found = normalise_update(yaml.safe_load((PROTOTYPE / "reject-update.yaml").read_text()))
    assert (found, update["kind"], update["path"], update["value"]) == (
        PROTOTYPE_2025,
        "uri:enum-value-update",
        "phase",
        "REJECTED",
    )
    with pytest.raises(InvalidRequest) as caught:
        normalise_update({"status": "OFFERED", "uuid": "x"})
    assert caught.value.errors[0].field == "status"


# ---------------------------------------------------------------------- answers in each dialect


def _session(phase: str, uuid: str = "6c1f0a52-93d4-4b7e-8f20-7d5e3a9c4b11", **extra) -> dict:
    document = {
        "kind": kind_uri("session", "scheduled-execution-session"),
        "meta": {
            "uuid": uuid,
            "name": "gaia",
            "url": f"http://127.0.0.1:8888/execplanner/platforms/gaia/sessions/{uuid}",
            "created": "2026-03-02T09:15:00Z",
            "messages": [{"level": "INFO", "message": "offered from 09:21", "time": "2026-03-02T09:15:00Z"}],
        },
        "phase": phase,
        "executable": {"kind": NOTEBOOK, "location": "https://example.org/pm.ipynb", "meta": {"name": "pm"}},
        "compute": {"kind": COMPUTE, "cores": {"min": 2, "max": 2}, "memory": {"min": 4, "max": 4}},
        "data": [{"kind": kind_uri("data", "simple-data-resource"), "location": "https://example.org/a.csv"}],
        "schedule": {
            "preparing": {"start": "2026-03-02T09:20:00Z", "duration": "PT1M"},
            "available": {"start": "2026-03-02T09:21:00Z/PT0S", "duration": "PT1H"},
        },
        **extra,
    }
    if phase == "OFFERED":
        document["expires"] = "2026-03-02T10:15:00Z"
    return ExecutionSession.model_validate(document).to_wire()


def _offerset(*offers: dict, result: str = "YES", messages: list | None = None) -> dict:
    return OfferSetResponse.model_validate(
        {
            "result": result,
            "meta": {
                "uuid": "0b7e2d8c-5f1a-4c3e-9a61-2f4d8e6b1c01",
                "name": "gaia",
                "url": "http://127.0.0.1:8888/execplanner/platforms/gaia/offersets/0b7e2d8c-5f1a-4c3e-9a61-2f4d8e6b1c01",
                "messages": messages or [],
            },
            "offers": list(offers),
        }
    ).to_wire()


BOOKED = {
    "connectors": [
        {
            "kind": "http://www.ivoa.net/xml/UWS/v1.0",
            "status": "FINISHED",
            "protocol": "HTTP",
            "location": "http://127.0.0.1:8888/execplanner/platforms/gaia/jobs/6c1f",
        }
    ],
    "results": [
        {"id": "total.txt", "url": "http://127.0.0.1:8888/execplanner/platforms/gaia/sessions/6c1f/results/total.txt"}
    ],
}


def test_answers_in_the_2025_form_read_back_to_the_same_offers():
    offerset = _offerset(_session("OFFERED"), _session("OFFERED", uuid="7d2e"))
    written = write_offerset(offerset, PROTOTYPE_2025)
    offer = written["offers"][0]
    assert written["type"].endswith("/offerset/offerset-response-1.0") and written["href"].endswith(
        "?dialect=prototype-2025"
    )
    assert "kind" not in offer and "compute" not in offer and "meta" not in offer
    assert (
        offer["executable"]["type"] == "https://www.purl.org/ivoa.net/EB/schema/types/executable/jupyter-notebook-1.0"
    )
    assert (
        offer["computer"]["type"]
        == "https://www.purl.org/ivoa.net/EB/schema/types/computer/simple-compute-resource-1.0"
    )
    assert offer["schedule"]["offered"]["available"] == {"start": "2026-03-02T09:21:00Z", "duration": "PT1H"}
    back = OfferSetResponse.model_validate(read_answer(written))
    assert [item.meta.uuid for item in back.offers] == ["6c1f0a52-93d4-4b7e-8f20-7d5e3a9c4b11", "7d2e"]
    assert back.offers[0].executable.kind == NOTEBOOK and back.offers[0].cores == 2
    assert back.offers[0].start == parse_instant("2026-03-02T09:21:00Z")


def test_the_prototype_documents_of_this_project_read_as_v1():
    offerset = yaml.safe_load((PROTOTYPE / "offerset-response.yaml").read_text().replace("BASE", "http://h"))
    back = OfferSetResponse.model_validate(read_answer(offerset))
    assert back.result == "YES" and back.meta.url == "http://h/offersets/0b7e2d8c-5f1a-4c3e-9a61-2f4d8e6b1c01"
    assert back.offers[0].compute.kind == COMPUTE and back.offers[0].phase.value == "OFFERED"
    session = yaml.safe_load((PROTOTYPE / "session-response.yaml").read_text().replace("BASE", "http://h"))
    assert ExecutionSession.model_validate(read_answer(session)).phase.value == "ACCEPTED"


def test_2025_session_says_what_the_form_has_no_place_for():
    written = write_session(_session("COMPLETED", **BOOKED), PROTOTYPE_2025)
    assert "connectors" not in written and "results" not in written and written["phase"] == "COMPLETED"
    texts = " ".join(item["message"] for item in written["messages"])
    assert "jobs/6c1f" in texts and "results/total.txt" in texts


def test_2021_answers_yes_no_and_a_session():
    yes = write_offerset(_offerset(_session("OFFERED"), _session("OFFERED", uuid="7d2e")), "note-2021")
    assert yes["reponseword"] == "YES" and yes["servicetype"] and yes["serviceinfo"]["endpoint"]
    assert [item["uuid"] for item in yes["serviceinfo"]["offers"]] == ["6c1f0a52-93d4-4b7e-8f20-7d5e3a9c4b11", "7d2e"]
    assert yes["resources"] == {
        "mincores": 2,
        "maxcores": 2,
        "minmemory": "4Gi",
        "maxmemory": "4Gi",
        "minduration": "PT1H",
        "maxduration": "PT1H",
    }
    assert yes["serviceinfo"]["offers"][0]["endpoint"].endswith("?dialect=note-2021")
    no = write_offerset(
        _offerset(result="NO", messages=[{"level": "WARN", "message": "40 cores asked, 4 here"}]), "note-2021"
    )
    assert no == {"reponseword": "NO", "messages": ["40 cores asked, 4 here"]}
    done = write_session(_session("COMPLETED", **BOOKED), "note-2021")
    assert done["reponseword"] == "YES" and done["serviceinfo"]["phase"] == "COMPLETED"
    assert done["servicetype"] == "http://www.ivoa.net/xml/UWS/v1.0" and done["serviceinfo"]["endpoint"].endswith(
        "jobs/6c1f"
    )
    assert done["serviceinfo"]["results"] and any("no session phases" in text for text in done["messages"])
    assert write_session(_session("EXPIRED"), "note-2021")["reponseword"] == "NO"
    # what a 2021 client got back, it can send again
    assert parse_request(
        {"tasktype": "jupyter-notebook", "taskinfo": {"location": "x.ipynb"}, "resources": yes["resources"]}
    )


@pytest.mark.parametrize(
    "phase, status",
    [
        ("INITIAL", "REQUESTED"),
        ("OFFERED", "OFFERED"),
        ("REJECTED", "REJECTED"),
        ("EXPIRED", "EXPIRED"),
        *[(phase, "ACCEPTED") for phase in ("ACCEPTED", "WAITING", "PREPARING", "AVAILABLE", "RUNNING")],
        *[(phase, "ACCEPTED") for phase in ("RELEASING", "COMPLETED", "FAILED", "CANCELLED")],
    ],
)
def test_2022_lease_status_for_every_phase(phase, status):
    assert lease_status(phase) == status
    lease = write_session(_session(phase), "note-2022")
    assert lease["status"] == status
    said = " ".join(lease.get("messages", []))
    assert (phase in said and "no value" in said) == (status != phase)


def test_2022_leases_carry_dates_task_and_service_and_read_back(reference_dir):
    answer = write_offerset(_offerset(_session("OFFERED")), "note-2022")
    lease = answer["offers"][0]
    assert lease["type"] == "https://purl.org/ep.ivoa.net/definitions/executable-lease"
    assert (lease["startdate"], lease["enddate"], lease["expirydate"]) == (
        "2026-03-02T09:21:00Z",
        "2026-03-02T10:21:00Z",
        "2026-03-02T10:15:00Z",
    )
    assert lease["task"]["type"] == "https://purl.org/esap.escape.eu/task-type/jupyter-notebook"
    assert lease["task"]["task"] == {"notebook": "https://example.org/pm.ipynb"}
    again = parse_request(lease)  # a 2022 client may send the lease back as a request
    assert again.executable.kind == NOTEBOOK and again.min_cores == 2 and again.min_memory == 4
    assert again.earliest_start == parse_instant("2026-03-02T09:21:00Z")
    booked = write_session(_session("RUNNING", **BOOKED), "note-2022")
    assert booked["service"]["service"]["endpoint"].endswith("jobs/6c1f")
    no = write_offerset(_offerset(result="NO", messages=[{"level": "WARN", "message": "too big"}]), "note-2022")
    assert no["offers"] == [] and no["messages"][-1] == "too big" and no["messages"][0].startswith("NO")


def test_python_script_is_said_to_be_an_extension():
    session = _session("OFFERED")
    session["executable"]["kind"] = kind_uri("executable", "python-script")
    noted = add_extension_notes(_offerset(session))
    assert any("extension of this project" in item["message"] for item in noted["offers"][0]["meta"]["messages"])
    plain = add_extension_notes(_offerset(_session("OFFERED")))
    assert not any("extension" in item["message"] for item in plain["offers"][0]["meta"]["messages"])


# --------------------------------------------------------------------------------------- XML


def test_xml_requests_answers_and_updates_round_trip():
    request = parse_request(PROTOTYPE / "container-resources-request.yaml").to_broker()
    request["executable"]["environment"] = {"MODE": "fast", "1bad name": "x"}
    request["executable"]["command"] = ["cutout"]
    text = to_xml(request, ROOT_REQUEST)
    assert b'<executable kind="https://www.purl.org' in text and b'<entry name="1bad name">x</entry>' in text
    root, back = from_xml(text)
    assert root == ROOT_REQUEST and parse_request(back).to_broker() == parse_request(request).to_broker()

    offerset = _offerset(_session("OFFERED"), _session("OFFERED", uuid="7d2e"))
    text = to_xml(offerset, ROOT_OFFERSET)
    assert text.count(b"<execution ") == 2 and b"<offers>" in text and b"<message>" in text
    root, back = from_xml(text)
    assert root == ROOT_OFFERSET
    assert OfferSetResponse.model_validate(back).to_wire() == offerset

    session = _session("COMPLETED", **BOOKED)
    assert ExecutionSession.model_validate(from_xml(to_xml(session, ROOT_SESSION))[1]).to_wire() == session

    update = from_xml(b'<update kind="uri:enum-value-update"><path>phase</path><value>ACCEPTED</value></update>')[1]
    assert update == {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}


@pytest.mark.parametrize(
    "body",
    [
        b"<offers-request><executable>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><update>&e;</update>',
        b'<!DOCTYPE lol [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><update><path>&b;</path></update>',
        "<update>\u0000</update>".encode(),
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE u [<!ENTITY e "x">]><update>&e;</update>'.encode("utf-16"),
        b"<update>&undeclared;</update>",
    ],
)
def test_xml_that_is_broken_or_declares_entities_is_refused(body):
    with pytest.raises(InvalidRequest):
        from_xml(body)


def test_urls_become_absolute_against_the_public_base():
    session = _session("COMPLETED", **BOOKED)
    session["meta"]["url"] = "/jupyter/execplanner/platforms/gaia/sessions/6c1f"
    session["connectors"][0]["location"] = "/jupyter/execplanner/platforms/gaia/jobs/6c1f"
    session["results"][0]["url"] = "/jupyter/execplanner/platforms/gaia/sessions/6c1f/results/total.txt"
    offerset = _offerset(session)
    offerset["meta"]["url"] = "/jupyter/execplanner/platforms/gaia/offersets/0b7e"
    absolute_urls(offerset, "https://science.example.org")
    offer = offerset["offers"][0]
    assert offerset["meta"]["url"] == "https://science.example.org/jupyter/execplanner/platforms/gaia/offersets/0b7e"
    assert offer["meta"]["url"].startswith("https://science.example.org/jupyter/")
    assert offer["connectors"][0]["location"].startswith("https://science.example.org/jupyter/")
    assert offer["results"][0]["url"].startswith("https://science.example.org/jupyter/")
    already = _session("OFFERED")
    assert absolute_urls(copy.deepcopy(already), "https://elsewhere.example.org") == already


def test_requests_and_updates_go_out_in_the_prototype_form_and_read_back():
    request = parse_request(PROTOTYPE / "notebook-request.yaml").to_broker()
    written = write_request(request, PROTOTYPE_2025)
    assert "kind" not in written["executable"] and "compute" not in written
    assert written["computer"]["type"].endswith("/types/computer/simple-compute-resource-1.0")
    again, dialect = parse_request_dialect(written)
    assert dialect == PROTOTYPE_2025 and again.to_broker() == request
    assert write_request(request, "broker") == request
    update = {"kind": "uri:enum-value-update", "path": "phase", "value": "ACCEPTED"}
    assert write_update(update, PROTOTYPE_2025) == {
        "type": "uri:enum-value-update",
        "path": "phase",
        "value": "ACCEPTED",
    }
    assert normalise_update(write_update(update, PROTOTYPE_2025))[0] == update


def test_a_public_url_replaces_the_base_url_behind_a_proxy():
    offerset = _offerset(_session("OFFERED"))
    offerset["meta"]["url"] = "/user/alice/execplanner/platforms/gaia/offersets/0b7e"
    absolute_urls(offerset, "https://science.example.org/alice/", prefix="/user/alice/")
    assert offerset["meta"]["url"] == "https://science.example.org/alice/execplanner/platforms/gaia/offersets/0b7e"
    other = {"meta": {"url": "/elsewhere/x"}}
    assert absolute_urls(other, "https://h.example.org/p/", prefix="/user/alice/")["meta"]["url"] == (
        "https://h.example.org/elsewhere/x"
    )
    assert (
        absolute_urls({"meta": {"url": "//evil.example.org/x"}}, "https://h/")["meta"]["url"] == "//evil.example.org/x"
    )


def test_v1_documents_with_the_prototypes_kind_spellings_are_understood():
    document = {
        "executable": {
            "kind": "https://www.purl.org/ivoa.net/EB/schema/types/executables/docker-container-1.0",
            "image": {"locations": ["registry.example.org/a:1"]},
        },
        "compute": {
            "kind": "https://www.purl.org/ivoa.net/EB/schema/types/resources/compute/simple-compute-resource-1.0"
        },
        "data": [
            {"kind": "https://www.purl.org/ivoa.net/EB/schema/types/data/simple-data-resource-1.0", "location": "x"}
        ],
    }
    request, dialect = parse_request_dialect(document)
    assert dialect == "broker"
    assert (request.executable.kind, request.compute.kind, request.data[0].kind) == (
        DOCKER,
        COMPUTE,
        kind_uri("data", "simple-data-resource"),
    )


def test_xml_output_is_well_formed_whatever_the_strings_and_deep_input_is_refused():
    document = {"executable": {"kind": NOTEBOOK, "location": "a\x00b\x1bc", "1st": {"x\x07": "y"}}, "2nd": "top"}
    root, back = from_xml(to_xml(document, ROOT_REQUEST))
    assert back["executable"]["location"] == "a\ufffdb\ufffdc" and back["2nd"] == "top"
    deep = b"<update>" + b"<a>" * 200 + b"x" + b"</a>" * 200 + b"</update>"
    with pytest.raises(InvalidRequest):
        from_xml(deep)


@pytest.mark.parametrize("name", sorted(path.name for path in PROTOTYPE.glob("*-request.*")))
def test_every_prototype_request_here_reads_as_the_2025_dialect(name):
    request, dialect = parse_request_dialect(PROTOTYPE / name)
    assert dialect == PROTOTYPE_2025
    assert request.executable.kind.startswith("https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/")
    for item in request.data:
        assert item.kind.startswith("https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/")
    roundtrip_is_stable(request)
