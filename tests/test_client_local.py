"""The kernel-side ``Planner`` in local mode: no server reachable, so the same federation runs in this
process on a private event loop (also when the caller already runs an asyncio loop, as a kernel does)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
from brokers import answer_yes, hang, run_broker, static_entry, write_platforms
from jupyter_live import no_discovery_hints

from execplanner_widgets import InvalidRequest, Planner, PlannerError
from execplanner_widgets.client import PlannerTimeout

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 2}}}
HANG_TIMEOUT = 1.5


@pytest.fixture
def no_server(monkeypatch, tmp_path):
    """An environment where no Jupyter server can be found."""
    return no_discovery_hints(monkeypatch, tmp_path)


@pytest.fixture
def brokers():
    with run_broker(answer_yes(offers=2, run_for=0.3)) as remote, run_broker(hang()) as stuck:
        yield {"remote": remote, "stuck": stuck}


@pytest.fixture
def platforms_file(tmp_path, brokers):
    return write_platforms(
        tmp_path / "platforms.yaml",
        [
            static_entry("big"),
            static_entry("small", cores=1),
            brokers["remote"].entry("remote"),
            brokers["stuck"].entry("stuck", timeout=HANG_TIMEOUT),
        ],
    )


@pytest.fixture
def planner(no_server, platforms_file):
    no_server.setenv("EXECPLANNER_PLATFORMS", str(platforms_file))
    with Planner() as client:
        yield client


def test_no_server_means_local_mode_and_it_says_so(planner, platforms_file):
    assert planner.mode == "local" and planner.server_url is None
    line = planner.describe_mode()
    assert line.startswith("local mode: 4 platform(s) from " + str(platforms_file))
    assert "no running Jupyter server of this kernel" in line and "\n" not in line
    assert [p.name for p in planner.platforms()] == ["big", "small", "remote", "stuck"]


def test_the_demo_federation_when_nothing_is_configured(no_server):
    with Planner() as client:
        assert client.mode == "local" and "built-in demo federation" in client.describe_mode()
        assert client.platforms()


def test_forced_local_mode_and_bad_arguments(no_server, platforms_file):
    no_server.setenv("EXECPLANNER_MODE", "local")
    with Planner(platforms_file) as client:
        assert "local mode was asked for" in client.describe_mode()
    with pytest.raises(ValueError, match="mode must be"):
        Planner(mode="remote")
    with pytest.raises(ValueError, match="url is for server mode"):
        Planner(mode="local", url="http://127.0.0.1:1/")
    with pytest.raises(PlannerError, match="not reachable"):
        Planner(url="http://127.0.0.1:1/", token="x")


def test_offers_accept_and_wait_on_a_remote_broker(planner):
    results = planner.offers(REQUEST)
    assert [(r.platform, r.status) for r in results] == [
        ("big", "YES"),
        ("small", "NO"),
        ("remote", "YES"),
        ("stuck", "ERROR"),
    ]
    assert "timeout" in results[3].error and results[3].elapsed >= HANG_TIMEOUT * 0.9
    first, second = results[2].offers
    assert planner.reject(second).phase == "REJECTED"
    session = planner.accept(first)
    assert planner.wait(session, poll=0.05, timeout=30).phase == "COMPLETED"
    job = planner.job(session)
    assert (job.platform, job.phase, job.is_final) == ("remote", "COMPLETED", True)


def test_stream_in_local_mode_and_leaving_it_early(planner):
    names = [result.platform for result in planner.stream_offers(REQUEST)]
    assert sorted(names) == ["big", "remote", "small", "stuck"] and names[-1] == "stuck"
    started = time.monotonic()
    stream = planner.stream_offers(REQUEST, platforms=["big", "stuck"])
    assert next(stream).platform == "big"
    stream.close()  # the user stops reading: the producer is cancelled, nothing is left running
    assert time.monotonic() - started < HANG_TIMEOUT
    assert planner.offers(REQUEST, platforms="big")[0].status == "YES"  # the loop is still fine


def test_errors_match_server_mode(planner):
    with pytest.raises(PlannerError) as unknown:
        planner.offers(REQUEST, platforms=["ghost"])
    assert (unknown.value.status, unknown.value.field) == (404, "platform")
    with pytest.raises(PlannerError) as unknown_stream:
        planner.stream_offers(REQUEST, platforms=["ghost"])
    assert unknown_stream.value.status == 404
    with pytest.raises(InvalidRequest) as invalid:
        planner.offers({"compute": {"cores": {"min": 1}}})
    assert invalid.value.errors[0].field == "executable"
    offer = planner.offers(REQUEST, platforms="big")[0].offers[0]
    planner.accept(offer)
    with pytest.raises(PlannerError) as conflict:
        planner.reject(offer)
    assert conflict.value.status == 409
    with pytest.raises(PlannerError, match="which platform"):
        planner.cancel("0f8fad5b-d9cb-469f-a165-70867728950e")
    with pytest.raises(PlannerError) as missing:
        planner.session("0f8fad5b-d9cb-469f-a165-70867728950e", platform="big")
    assert missing.value.status == 404
    with pytest.raises(InvalidRequest):
        planner.job("../x", platform="big")
    with pytest.raises(ValueError, match="until must name session phases"):
        planner.wait(offer, until="SOON", timeout=1)
    with pytest.raises(PlannerTimeout):
        planner.wait(offer, timeout=0.2, poll=0.05)


def test_works_while_an_event_loop_runs_in_this_thread(planner):
    """A kernel runs an asyncio loop in its main thread; the client must not need that loop."""

    async def cell() -> list[str]:
        results = planner.offers(REQUEST, platforms=["big", "small"])
        streamed = [r.platform for r in planner.stream_offers(REQUEST, platforms=["big"])]
        session = planner.accept(results[0].offers[0])
        return [r.status for r in results] + streamed + [str(session.phase)]

    assert asyncio.run(cell()) == ["YES", "NO", "big", "ACCEPTED"]


def test_close_stops_the_private_loop(no_server, platforms_file):
    before = {thread.ident for thread in threading.enumerate() if thread.name == "execplanner-local"}
    client = Planner(platforms_file)
    assert client.offers(REQUEST, platforms="big")[0].status == "YES"
    client.close()
    client.close()  # twice is fine
    after = {thread.ident for thread in threading.enumerate() if thread.name == "execplanner-local"}
    assert after <= before


def test_widget_hooks(planner, monkeypatch):
    app = planner.app()
    assert type(app).__name__ == "PlannerApp" and app.planner is planner
    assert "local mode" in planner._repr_html_()
    monkeypatch.setitem(sys.modules, "execplanner_widgets.widgets.app", None)
    with pytest.raises(ImportError, match="use the planner's methods"):
        planner.app()


def test_unusable_discovery_hints_are_reported_not_fatal(no_server, platforms_file):
    no_server.setenv("EXECPLANNER_PLATFORMS", str(platforms_file))
    no_server.setenv("EXECPLANNER_URL", "not a url")
    with pytest.warns(UserWarning, match="running in-process"), Planner() as client:
        assert client.mode == "local"
        assert "$EXECPLANNER_URL: expected the Jupyter server's http(s) URL" in client.describe_mode()
    no_server.delenv("EXECPLANNER_URL")
    no_server.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    no_server.setenv("JUPYTERHUB_API_TOKEN", "secret")
    with Planner() as client:
        assert (
            client.mode == "local"
            and "no running server has the JupyterHub prefix /user/ada/" in client.describe_mode()
        )
        assert "secret" not in client.describe_mode()


def test_a_platforms_file_with_server_mode_is_refused_not_ignored(tmp_path):
    from execplanner_widgets.client import Planner

    path = tmp_path / "platforms.yaml"
    path.write_text("platforms:\n  - {name: a, static: {}}\n")
    with pytest.raises(ValueError, match="a platforms file is for local mode"):
        Planner(path, mode="server")
    with pytest.raises(ValueError, match="a platforms file is for local mode"):
        Planner(path, url="http://127.0.0.1:9/")


def test_offers_are_read_with_the_collector_paused_and_it_runs_again_after(planner, monkeypatch):
    import gc

    from execplanner_widgets.platforms.static import StaticPlatform

    seen: list[bool] = []
    offers = StaticPlatform.offers

    async def recording(self, request, *, user=None):
        seen.append(gc.isenabled())  # on the planner's loop thread, while the caller waits
        return await offers(self, request, user=user)

    monkeypatch.setattr(StaticPlatform, "offers", recording)
    assert gc.isenabled()
    results = planner.offers(REQUEST)
    assert {result.platform for result in results if result.status == "YES"} >= {"big", "remote"}
    assert seen == [False, False]  # both static platforms
    assert gc.isenabled()
