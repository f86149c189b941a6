"""``parse_request`` reads every dialect of the ExecutionPlanner idea into one ExecutionRequest."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import yaml

from execplanner_widgets import ExecutionRequest, InvalidRequest, parse_request
from execplanner_widgets.model import (
    DockerContainer,
    JupyterNotebook,
    RucioDataResource,
    SimpleDataResource,
    detect_dialect,
    kind_uri,
)
from execplanner_widgets.model.components import GenericExecutable

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
    request = parse_request({"executable": {"kind": "jupyter-notebook"}, "compute": {"memory": {"min": 4096, "units": "MiB"}}})
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
    assert set(errors) == {"compute.cores.min", "compute.memory.min", "storage[0].size.min", "schedule.requested.duration"}
    assert "greater than or equal to 0" in errors["compute.cores.min"]
    assert "expected a size" in errors["compute.memory.min"]
    assert "ISO 8601" in errors["schedule.requested.duration"]


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
