"""OSSR records: codemeta.json with the executables extension and Zenodo-style records, read from a
folder, a file, a dict or a URL served on 127.0.0.1; every entry becomes an ExecutionRequest."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from brokers import Reply, hang, run_broker
from widget_support import DATA

from execplanner_widgets.model import DockerContainer, InvalidRequest, JupyterNotebook, PythonScript
from execplanner_widgets.model.kinds import kind_uri
from execplanner_widgets.ossr import ExecutableEntry, OssrRecord, RecordError, read_record

AGNPY = DATA / "agnpy"


def serve_files(folder: Path):
    """A behaviour for brokers.run_broker that serves ``folder`` below ``/broker/``."""

    def behave(recorded, broker):
        name = recorded.path.split("?", 1)[0].removeprefix("/broker/")
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents or not path.is_file():
            return Reply.json({"message": "not found"}, 404)
        return Reply(200, path.read_bytes(), {"Content-Type": "application/json"})

    return behave


# ------------------------------------------------------------------------------------- codemeta


def test_codemeta_folder_lists_every_executable_with_name_kind_and_description():
    record = read_record(AGNPY)
    assert isinstance(record, OssrRecord)
    assert record.format == "codemeta"
    assert record.title == "agnpy"
    assert record.version == "0.4.0"
    assert record.identifier == "https://doi.org/10.5281/zenodo.4055175"
    assert record.source == str((AGNPY / "codemeta.json").resolve())
    assert [entry.name for entry in record] == ["External Compton tutorial", "Demo container", "Synchrotron fit script"]
    assert [entry.short_kind for entry in record] == ["jupyter-notebook", "docker-container", "python-script"]
    assert record.entries[1].kind == kind_uri("executable", "docker-container")  # purl:docker-container
    assert "Docker container" in record.entries[1].description


def test_relative_notebook_and_script_locations_resolve_against_the_record_folder():
    record = read_record(AGNPY / "codemeta.json")
    notebook, container, script = record.entries
    assert notebook.location == str(AGNPY.resolve() / "tutorials" / "ec.ipynb")
    assert Path(notebook.location).is_file()
    assert Path(script.location).is_file()
    assert container.location == "docker.io/example/agnpy:0.4.0"  # an image reference is not a path


def test_requirements_in_2022_note_form_become_the_request():
    request = read_record(AGNPY).entry("External Compton tutorial").to_request()
    assert isinstance(request.executable, JupyterNotebook)
    assert request.executable.name == "External Compton tutorial"
    assert request.executable.location.endswith("tutorials/ec.ipynb")
    assert (request.compute.cores.min, request.compute.cores.max) == (2, 4)
    assert request.compute.memory.min == 4
    assert request.storage[0].size.min == 20
    assert request.storage[0].lifetime == timedelta(hours=4)
    assert request.duration == timedelta(hours=1)
    assert [item.name for item in request.data] == ["images", "calibration"]
    assert [item.name for item in request.missing_data()] == ["images"]  # calibration is optional


def test_requirements_in_execution_broker_form_become_the_request():
    record = read_record(AGNPY)
    container = record.entry("Demo container").to_request()
    assert isinstance(container.executable, DockerContainer)
    assert container.executable.image.locations == ["docker.io/example/agnpy:0.4.0"]
    assert (container.min_cores, container.min_memory) == (4, 8)
    assert container.duration == timedelta(hours=2)
    script = record.entry(2).to_request()
    assert isinstance(script.executable, PythonScript)
    assert script.executable.arguments == ["--quick"]
    assert script.duration == timedelta(minutes=30)


def test_an_entry_written_wholly_in_execution_broker_form():
    record = read_record(
        {
            "@type": "SoftwareSourceCode",
            "executables": [
                {
                    "name": "Broker form",
                    "description": "everything as ExecutionBroker writes it",
                    "type": "jupyter-notebook",
                    "executable": {"location": "nb/analysis.ipynb"},
                    "compute": {"cores": {"min": 2}},
                }
            ],
        },
        base="/srv/record",
    )
    request = record.entries[0].to_request()
    assert request.executable.location == "/srv/record/nb/analysis.ipynb"
    assert request.executable.name == "Broker form"
    assert request.min_cores == 2


def test_dict_records_keep_relative_locations_unless_given_a_base():
    document = json.loads((AGNPY / "codemeta.json").read_text())
    assert read_record(document).entries[0].location == "tutorials/ec.ipynb"
    assert read_record(document, base="/data/agnpy").entries[0].location == "/data/agnpy/tutorials/ec.ipynb"
    assert read_record(document, base="https://example.org/records/agnpy").entries[0].location == (
        "https://example.org/records/agnpy/tutorials/ec.ipynb"
    )
    absolute = {
        "@type": "SoftwareSourceCode",
        "executables": [{"name": "a", "type": "notebook", "content": {"location": "https://host/x.ipynb"}}],
    }
    assert read_record(absolute, base="/elsewhere").entries[0].location == "https://host/x.ipynb"


def test_an_invalid_requirement_is_explained_when_the_entry_is_used():
    entry = ExecutableEntry(
        name="greedy", type="jupyter-notebook", **{"compute-resources": [{"mincores": 2, "minmemory": "8 gigs"}]}
    )
    with pytest.raises(InvalidRequest) as caught:
        entry.to_request()
    assert caught.value.errors[0].field == "compute-resources[0].minmemory"
    assert "gigs" in caught.value.errors[0].message


def test_bad_entries_are_named_by_position_and_field():
    with pytest.raises(RecordError) as caught:
        read_record(DATA / "bad-entries.json")
    fields = {error.field for error in caught.value.errors}
    assert {"executables[1].name", "executables[1].type", "executables[2]"} <= fields
    assert "OSSR record" in str(caught.value)


def test_things_that_are_not_records_are_refused_with_a_reason(tmp_path):
    with pytest.raises(RecordError, match="neither a codemeta.json"):
        read_record({"hello": "world"})
    with pytest.raises(RecordError, match="no such file"):
        read_record(tmp_path / "missing.json")
    with pytest.raises(RecordError, match="no such file"):
        read_record(tmp_path)  # a folder without codemeta.json
    text = tmp_path / "notes.json"
    text.write_text("just some words", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="mapping"):
        read_record(text)
    with pytest.raises(RecordError, match="expected a path"):
        read_record(42)


def test_entries_are_found_by_name_or_position():
    record = read_record(AGNPY)
    assert record.entry("Demo container") is record.entries[1]
    with pytest.raises(KeyError, match="External Compton tutorial"):
        record.entry("no such thing")
    with pytest.raises(IndexError):
        record.entry(7)


# --------------------------------------------------------------------------------------- zenodo


def test_zenodo_record_with_the_extension_links_record_files():
    record = read_record(DATA / "zenodo-record.json")
    assert record.format == "zenodo"
    assert record.title.startswith("agnpy")
    assert record.identifier == "https://doi.org/10.5281/zenodo.4055175"
    assert record.description == (
        "agnpy is a python package modelling the radiative processes of jetted AGN. It comes with tutorials & a container."
    )
    tutorial, notes = record.entries
    assert tutorial.short_kind == "jupyter-notebook"  # the 2022 note's task-type URI
    assert tutorial.location == "https://zenodo.org/api/records/4055175/files/synchrotron.ipynb/content"
    assert notes.location == str(DATA.resolve() / "notes" / "local.ipynb")
    request = tutorial.to_request()
    assert request.executable.location == tutorial.location
    assert request.duration == timedelta(minutes=30)


def test_zenodo_record_without_the_extension_offers_its_notebooks():
    record = read_record(DATA / "zenodo-notebooks.json")
    assert [entry.name for entry in record] == ["hdbscan", "proper-motions"]
    assert all(entry.short_kind == "jupyter-notebook" for entry in record)
    assert record.entries[0].location == "https://zenodo.org/api/records/7000001/files/hdbscan.ipynb/content"
    assert record.entries[1].location == str(DATA.resolve() / "notebooks" / "proper-motions.ipynb")
    assert "Gaia DR3 clustering notebooks" in record.entries[0].description
    assert record.entries[0].to_request().executable.location.startswith("https://zenodo.org/")


# ----------------------------------------------------------------------------------------- http


def test_a_record_read_over_http_resolves_locations_against_its_url():
    with run_broker(serve_files(AGNPY)) as server:
        record = read_record(f"{server.url}codemeta.json")
        assert record.source == f"{server.url}codemeta.json"
        assert record.entries[0].location == f"{server.url}tutorials/ec.ipynb"
        assert server.requests[0].headers.get("Accept") == "application/json"


def test_http_failures_are_explained_not_raised_as_tracebacks():
    with run_broker(serve_files(AGNPY)) as server:
        with pytest.raises(RecordError, match="HTTP 404"):
            read_record(f"{server.url}missing.json")
    big = b"{" + b" " * 5000 + b"}"
    with run_broker(lambda recorded, broker: Reply(200, big, {"Content-Type": "application/json"})) as server:
        with pytest.raises(RecordError, match="more than the 1000 bytes"):
            read_record(server.url, max_bytes=1000)
    with run_broker(
        lambda recorded, broker: Reply(200, big, {"Content-Type": "application/json"}, chunked=True)
    ) as server:
        with pytest.raises(RecordError, match="larger than the 1000 bytes"):
            read_record(server.url, max_bytes=1000)
    with run_broker(hang()) as server:
        with pytest.raises(RecordError, match="did not answer within 0.3 s"):
            read_record(server.url, timeout=0.3)
        closed_port = server.port
    with pytest.raises(RecordError, match="cannot read"):
        read_record(f"http://127.0.0.1:{closed_port}/codemeta.json", timeout=2)
