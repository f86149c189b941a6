"""The extension's traitlets: per-platform and overall timeouts, size limits, and refused values."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
from brokers import hang, run_broker, static_entry, write_platforms
from traitlets import TraitError

from jupyter_server_extension.app import ExecPlanner

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}}


@pytest.fixture
def stuck():
    with run_broker(hang()) as one, run_broker(hang()) as two:
        yield one, two


@pytest.fixture
def jp_server_config(tmp_path, stuck):
    platforms = write_platforms(
        tmp_path / "platforms.yaml",
        [
            static_entry("local"),
            stuck[0].entry("slow", timeout=30),  # the file's own timeout, capped by the overall one
            stuck[1].entry("quick", max_answer_bytes=5000),  # its own answer limit is kept
        ],
    )
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {
            "platforms_file": str(platforms),
            "data_dir": str(tmp_path / "data"),
            "timeout": 20,
            "overall_timeout": 1.5,
            "platform_timeouts": {"quick": 0.5, "ghost": 3},
            "max_answer_bytes": 70_000,
        },
    }


async def _ask_for_offers(jp_fetch):
    """The federation's answers to ``REQUEST`` (POST execplanner/api/offers)."""
    return await jp_fetch(
        "execplanner",
        "api",
        "offers",
        method="POST",
        body=json.dumps(REQUEST),
        headers={"Content-Type": "application/json"},
    )


def _extension(serverapp) -> ExecPlanner:
    return serverapp.extension_manager.extension_points["execplanner"].app


async def test_timeouts_and_limits_are_applied(jp_serverapp, jp_fetch):
    federation = _extension(jp_serverapp).federation
    assert federation.timeout == 1.5  # the traitlet (20), capped by overall_timeout
    assert federation.timeouts == {"local": 1.5, "slow": 1.5, "quick": 0.5}
    by_name = {platform.name: platform for platform in federation}
    assert by_name["slow"].options.max_answer_bytes == 70_000
    assert by_name["quick"].options.max_answer_bytes == 5000
    response = await _ask_for_offers(jp_fetch)
    results = {result["platform"]: result for result in json.loads(response.body)}
    assert results["local"]["status"] == "YES"
    assert results["quick"]["status"] == "ERROR" and "0.5 s" in results["quick"]["error"]
    assert results["slow"]["status"] == "ERROR" and "1.5 s" in results["slow"]["error"]
    assert 1.3 < results["slow"]["elapsed"] < 10


def test_bad_values_are_refused_with_the_trait_named():
    app = ExecPlanner()
    for trait, value in (("timeout", 0), ("overall_timeout", -1), ("max_body_bytes", 0), ("max_answer_bytes", -5)):
        with pytest.raises(TraitError, match=f"ExecPlanner.{trait} must be a positive number"):
            setattr(app, trait, value)
    with pytest.raises(TraitError, match="check quick"):
        app.platform_timeouts = {"quick": 0, "fine": 2}
    with pytest.raises(TraitError, match="ExecPlanner.hold_collector_seconds must be 0 or more seconds"):
        app.hold_collector_seconds = -0.5
    app.hold_collector_seconds = 0  # never hold it: allowed


async def test_the_collector_waits_while_answers_are_relayed_but_no_longer_than_the_hold(jp_serverapp, jp_fetch):
    """``hold_collector_seconds`` (1 s by default): while POST offers waits for its answers (here
    1.5 s, for the stuck platforms' timeout) the collector is paused for the first second only, and
    runs again once the answer has left."""
    was = gc.isenabled()
    gc.enable()
    try:
        seen: dict[float, bool] = {}

        async def watch() -> None:
            started = asyncio.get_running_loop().time()
            for at in (0.3, 1.3):
                await asyncio.sleep(started + at - asyncio.get_running_loop().time())
                seen[at] = gc.isenabled()

        watcher = asyncio.ensure_future(watch())
        response = await _ask_for_offers(jp_fetch)
        await watcher
        assert len(json.loads(response.body)) == 3
        assert seen == {0.3: False, 1.3: True}
        assert gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()


async def test_unknown_platform_timeout_names_are_warned_about(jp_serverapp, caplog):
    caplog.set_level(logging.WARNING)
    _extension(jp_serverapp)._apply_timeouts()
    assert "'ghost', which is not a configured platform" in caplog.text


async def test_startup_objects_are_frozen_out_of_garbage_collection_until_the_extension_stops(jp_serverapp):
    """``freeze_startup_objects`` (on by default): once the server's loop runs, what survived start-up
    is moved out of the collector's sight (``gc.freeze``); stopping the extension gives it back."""
    extension = _extension(jp_serverapp)
    assert extension.freeze_startup_objects
    for _ in range(50):  # the freeze is a callback on the server's loop
        if extension._froze:
            break
        await asyncio.sleep(0.01)
    assert extension._froze and gc.get_freeze_count() > 1000
    await extension.stop_extension()
    assert not extension._froze and gc.get_freeze_count() == 0
