"""Fuzzing both APIs the server speaks, from their OpenAPI documents, against a real Jupyter server.

Schemathesis generates requests (valid ones and deliberately invalid ones) for every operation of
the proxy REST API (the document the server serves at ``execplanner/api/openapi.json``) and of the
ExecutionBroker routes of a hosted platform (the document the server serves, or else the IVOA
ExecutionBroker v1.0 reference document pointed at the platform's routes). The budget is fixed
(``EXECPLANNER_FUZZ_REQUESTS``, default 5,000 requests in all) and generation is derandomized, so CI
runs the same requests every time, in a few minutes on two cores.

Done when: no answer is a 5xx, and the server's log holds no traceback.

Schemathesis sends each case itself (``case.call``), with ``requests``, its only HTTP transport, and
raises ``requests``' exceptions: that is the one place the tests meet ``requests``, which schemathesis
brings along. Everything else here talks to the server with ``httpx``.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests  # only for the exceptions schemathesis's transport raises (see above)
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from jupyter_live import LiveServer, run_jupyter_server

BUDGET = int(os.environ.get("EXECPLANNER_FUZZ_REQUESTS", "5000"))
#: Requests per operation in the first round, and what counts as cheap to generate (seconds per request).
FIRST_ROUND = max(10, BUDGET // 40)
CHEAP_SECONDS = 0.04
HERE = Path(__file__).resolve().parent
REFERENCES = [HERE / "data" / "reference", HERE.parents[1] / "shared" / "reference"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("fuzz")
    inputs = root / "inputs"  # nothing is in it: a fuzzed request that is accepted has nothing to run
    inputs.mkdir()
    hosted = {"cores": 4, "memory": 8, "storage": 10, "offers": 2, "local_roots": [str(inputs)]}
    platforms = root / "platforms.yaml"
    platforms.write_text(
        yaml.safe_dump({"timeout": 10, "platforms": [{"name": "hosted", "title": "Hosted", "hosted": hosted}]})
    )
    with run_jupyter_server(root / "server", platforms) as live:
        yield live


def _broker_document(server: LiveServer) -> tuple[Any, str]:
    """The ExecutionBroker OpenAPI document: the server's own if it serves one, else the reference."""
    base = server.url + "execplanner/platforms/hosted"
    for path in ("execplanner/platforms/hosted/openapi.json", "execplanner/platforms/openapi.json"):
        answer = server.get(path)
        if answer.status_code == 200 and answer.headers.get("Content-Type", "").startswith("application/json"):
            return schemathesis.openapi.from_dict(answer.json()), base
    for folder in REFERENCES:
        document = folder / "execution-broker-v1.0" / "execution-broker.yaml"
        if document.is_file():
            return schemathesis.openapi.from_path(document), base
    pytest.fail("no ExecutionBroker OpenAPI document: neither served nor in the reference folders")


def _proxy_document(server: LiveServer) -> tuple[Any, str]:
    answer = server.get("execplanner/api/openapi.json")
    assert answer.status_code == 200, answer.text
    document = answer.json()
    base = server.url + "execplanner/api"
    document["servers"] = [{"url": base}]
    return schemathesis.openapi.from_dict(document), base


def _operations(schema: Any) -> list[Any]:
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation is not None:
            found.append(operation)
    return found


def _fuzz(
    operation: Any, base: str, headers: dict[str, str], examples: int, round_: int, seen: Counter, failures: list
) -> None:
    from schemathesis import GenerationMode

    strategies = [
        operation.as_strategy(generation_mode=mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    ]

    @seed(20261206 + round_)  # fixed seeds: the same requests in every CI run
    @settings(
        max_examples=examples,
        derandomize=False,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(*strategies))
    def run(case: Any) -> None:
        try:
            response = case.call(base_url=base, headers=headers, timeout=30, allow_redirects=False)
        except requests.RequestException as error:  # a request schemathesis's transport cannot even send
            seen["unsendable"] += 1
            if "Connection" in type(error).__name__:
                failures.append((operation.label, "connection error", str(error)[:200]))
            return
        seen["requests"] += 1
        seen[f"{response.status_code // 100}xx"] += 1
        if response.status_code >= 500:
            failures.append((operation.label, response.status_code, response.text[:300]))

    run()


@pytest.mark.timeout(900)  # a few minutes on two idle cores; a busy machine may need more
def test_fuzzing_both_openapi_documents_gives_no_5xx_and_no_traceback(server: LiveServer) -> None:
    schemas = [_proxy_document(server), _broker_document(server)]
    operations = [(operation, base) for schema, base in schemas for operation in _operations(schema)]
    assert len(operations) >= 8, [operation.label for operation, _ in operations]
    headers = {"Authorization": f"token {server.token}"}
    seen: Counter = Counter()
    failures: list = []
    started = time.monotonic()
    # round 0: every operation gets FIRST_ROUND requests; the rest of the budget goes to operations
    # that are cheap to generate (a full ExecutionRequest body takes ~0.1 s to draw, a path id ~5 ms)
    # and still produce new requests, so the whole run stays within a few minutes
    productive = []
    for operation, base in operations:
        before, clock = seen["requests"], time.monotonic()
        _fuzz(operation, base, headers, FIRST_ROUND, 0, seen, failures)
        sent, spent = seen["requests"] - before, time.monotonic() - clock
        print(f"round 0: {operation.label}: {sent} requests in {spent:.1f} s")
        if sent >= FIRST_ROUND * 0.8 and spent / max(1, sent) < CHEAP_SECONDS:
            productive.append((operation, base))
    for round_ in range(1, 6):
        missing = BUDGET - seen["requests"]
        if missing <= 0 or not productive:
            break
        examples = max(1, math.ceil(missing / len(productive)))
        still = []
        for operation, base in productive:
            before = seen["requests"]
            _fuzz(operation, base, headers, examples, round_, seen, failures)
            sent = seen["requests"] - before
            print(f"round {round_}: {operation.label}: {sent} requests")
            if sent >= examples * 0.8:
                still.append((operation, base))
        productive = still
    elapsed = time.monotonic() - started
    log = server.log()
    tracebacks = log.count("Traceback (most recent call last)")
    print(f"fuzzing: {seen['requests']} requests in {elapsed:.0f} s over {len(operations)} operations; "
          f"{dict(seen)}; {len(failures)} 5xx; {tracebacks} tracebacks in the log")  # fmt: skip
    assert server.get("api/status").status_code == 200
    assert failures == [], failures[:10]
    assert tracebacks == 0, log[log.find("Traceback") - 500 :][:4000]
    assert seen["requests"] >= BUDGET * 0.9, f"only {seen['requests']} requests were sent (budget {BUDGET})"
