"""A client generated from the ExecutionBroker v1.0 schema at test time drives a hosted platform.

datamodel-code-generator turns the reference ``components.yaml`` into pydantic v2 models in a
temporary folder; the test then behaves like a third-party client that knows nothing of this
project: it builds its request with the generated ``ExecutionRequest``, reads every answer with the
generated models (which refuse a relative ``meta.url``, since the schema says ``format: uri``),
follows ``offers[0].meta.url`` as an absolute URL, accepts with the generated ``EnumValueUpdate`` and
polls the session until it is COMPLETED, on a real Jupyter server.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from test_hosted_support import DATA, eventually, extension_config, write_platforms
from tornado.httpclient import AsyncHTTPClient

SCHEMA_FOLDER = "execution-broker-v1.0"


def _generator() -> list[str]:
    found = shutil.which("datamodel-codegen") or str(Path(sys.executable).with_name("datamodel-codegen"))
    if not Path(found).exists():
        if os.environ.get("CI"):
            pytest.fail("datamodel-code-generator is part of the test extra and must be installed in CI")
        pytest.skip("datamodel-code-generator is not installed")
    return [found]


@pytest.fixture
def generated(reference_dir: Path, tmp_path: Path) -> Iterator[ModuleType]:
    """The schema's models, generated now into ``tmp_path`` and imported."""
    output = tmp_path / "eb_models.py"
    command = [
        *_generator(),
        "--input",
        str(reference_dir / SCHEMA_FOLDER / "components.yaml"),
        "--input-file-type",
        "openapi",
        "--output",
        str(output),
        "--output-model-type",
        "pydantic_v2.BaseModel",
    ]
    usage = subprocess.run([*_generator(), "--help"], capture_output=True, text=True, timeout=120, check=False).stdout
    if "--formatters" in usage:  # newer versions: no external formatter needed
        command += ["--formatters", "builtin"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and output.is_file(), done.stderr[-2000:]
    spec = importlib.util.spec_from_file_location("eb_models_generated", output)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the models' forward references through it
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture
def jp_server_config(tmp_path):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [{"name": "gaia", "hosted": {"cores": 2, "memory": 4, "storage": 10, "offers": 2, "offer_ttl": "PT2M"}}],
    )
    return extension_config(platforms, tmp_path / "state")


def test_the_generated_models_refuse_a_relative_url(generated):
    with pytest.raises(ValueError):
        generated.ComponentMetadata.model_validate({"url": "/execplanner/platforms/gaia/sessions/x"})
    assert str(generated.ComponentMetadata.model_validate({"url": "http://127.0.0.1/s/x"}).url)


async def test_offer_accept_completed_with_a_generated_client(generated, jp_fetch, jp_auth_header):
    request = generated.ExecutionRequest(
        executable=generated.JupyterNotebook(
            kind="https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml",
            location=str(DATA / "sum_numbers.ipynb"),
        ),
        compute=generated.SimpleComputeResource(
            kind="https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml",
            cores=generated.SimpleComputeCores(min=1, max=1),
            memory=generated.SimpleComputeMemory(min=1, max=1),
        ),
        data=[
            generated.SimpleDataResource(
                kind="https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/data/simple-data-resource.yaml",
                location=str(DATA / "numbers.csv"),
            )
        ],
        schedule=generated.RequestedScheduleBlock(requested=generated.RequestedScheduleItem(duration="PT2M")),
    )
    body = request.model_dump_json(by_alias=True, exclude_none=True)
    response = await jp_fetch(
        "execplanner",
        "platforms",
        "gaia",
        "requests",
        method="POST",
        body=body,
        headers={"Content-Type": "application/json"},
    )
    offerset = generated.OfferSetResponse.model_validate_json(response.body)
    assert offerset.result.value == "YES" and offerset.offers
    session_url = str(offerset.offers[0].meta.url)
    assert session_url.startswith("http://127.0.0.1:")

    client = AsyncHTTPClient()
    headers = {**jp_auth_header, "Content-Type": "application/json"}

    async def fetch(method: str = "GET", document: Any = None) -> Any:
        reply = await client.fetch(
            session_url,
            method=method,
            headers=headers,
            body=None if document is None else document.model_dump_json(exclude_none=True),
        )
        return generated.ScheduledExecutionSession.model_validate_json(reply.body)

    update = generated.EnumValueUpdate(kind="uri:enum-value-update", path="phase", value="ACCEPTED")
    accepted = await fetch("POST", update)
    assert accepted.phase.value == "ACCEPTED"

    async def completed() -> Any:
        session = await fetch()
        return session if session.phase.value in ("COMPLETED", "FAILED") else None

    session = await eventually(completed, 120)
    assert session.phase.value == "COMPLETED", json.dumps(session.model_dump(mode="json"))[:2000]


async def test_the_refusal_of_direct_reads_as_a_session_with_the_generated_models(generated, jp_fetch):
    from tornado.httpclient import HTTPClientError

    request = {
        "executable": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/executable/jupyter-notebook.yaml",
            "location": str(DATA / "sum_numbers.ipynb"),
        },
        "compute": {
            "kind": "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml",
            "cores": {"min": 64},
        },
    }
    body = generated.ExecutionRequest.model_validate(request).model_dump_json(by_alias=True, exclude_none=True)
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(
            "execplanner",
            "platforms",
            "gaia",
            "direct",
            method="POST",
            body=body,
            headers={"Content-Type": "application/json"},
        )
    assert caught.value.code == 400
    refused = generated.ScheduledExecutionSession.model_validate_json(caught.value.response.body)
    assert refused.phase.value == "REJECTED" and refused.meta.messages
