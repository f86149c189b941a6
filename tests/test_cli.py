"""The ``execplanner`` command line, run in-process and as a real subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import yaml

from execplanner_widgets.cli import main

PLATFORMS = """
platforms:
  - name: small
    title: Small platform
    static: {cores: 4, memory: 8}
  - name: cloud
    title: Cloud with flavours
    static:
      accepts: [docker-container]
      flavours: [{name: m1.large, cores: 4, memory: 8}, {name: m1.xlarge, cores: 8, memory: 16}]
"""


def files(tmp_path):
    platforms = tmp_path / "platforms.yaml"
    platforms.write_text(PLATFORMS)
    request = tmp_path / "request.yaml"
    request.write_text(
        yaml.safe_dump(
            {
                "tasktype": "uri://docker-container",
                "taskinfo": {"image": "x"},
                "resources": {"mincores": 6, "minmemory": "8G"},
            }
        )
    )
    return platforms, request


def run(*argv):
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def test_offers_table_shows_yes_and_no_with_reasons(tmp_path):
    platforms, request = files(tmp_path)
    status, text = run("offers", str(request), "--platforms", str(platforms), "--data-dir", str(tmp_path))
    assert status == 0
    lines = text.splitlines()
    assert lines[0] == "Request: docker-container, 6 cores, 8 GiB memory"
    assert any(line.startswith("small     NO") for line in lines)
    assert "    - needs 6 cores; this platform has at most 4 cores" in lines
    cloud = next(line for line in lines if line.startswith("cloud"))
    assert cloud.split()[1:2] == ["YES"] and " 8 " in cloud and "16 GiB" in cloud
    assert lines[-1] == "1 of 2 platform(s) said YES."


def test_offers_as_json(tmp_path):
    platforms, request = files(tmp_path)
    status, text = run("offers", str(request), "--platforms", str(platforms), "--json", "--data-dir", str(tmp_path))
    results = json.loads(text)
    assert [(r["platform"], r["status"]) for r in results] == [("small", "NO"), ("cloud", "YES")]
    assert results[1]["response"]["offers"][0]["compute"]["cores"] == {"min": 6, "max": 8}


def test_platforms_listing_and_schema(tmp_path):
    platforms, _ = files(tmp_path)
    status, text = run("platforms", "--platforms", str(platforms), "--data-dir", str(tmp_path))
    assert status == 0 and "small" in text and "docker-container" in text
    status, text = run("schema")
    schemas = json.loads(text)
    assert set(schemas) == {"request", "response", "session", "update"}
    assert "executable" in schemas["request"]["properties"]
    assert schemas["response"]["properties"]["result"]["enum"] == ["YES", "NO"]


def test_parse_prints_the_broker_document(tmp_path):
    _, request = files(tmp_path)
    status, text = run("parse", str(request))
    document = json.loads(text)
    assert document["compute"]["memory"] == {"min": 8}
    assert document["executable"]["kind"].endswith("/executable/docker-container.yaml")


def test_bad_request_exits_1_with_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"executable": {"kind": "jupyter-notebook"}, "compute": {"memory": {"min": "8 gigs"}}}))
    status, _ = run("offers", str(bad))
    assert status == 1
    assert "compute.memory.min: unknown size unit 'gigs'" in capsys.readouterr().err


def test_unknown_platform_with_only(tmp_path, capsys):
    platforms, request = files(tmp_path)
    status, _ = run(
        "offers", str(request), "--platforms", str(platforms), "--only", "nowhere", "--data-dir", str(tmp_path)
    )
    assert status == 1
    assert "no platform named 'nowhere'" in capsys.readouterr().err


def test_installed_console_script_runs(tmp_path):
    platforms, request = files(tmp_path)
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "execplanner_widgets.cli",
            "offers",
            str(request),
            "--platforms",
            str(platforms),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "1 of 2 platform(s) said YES." in completed.stdout
