"""The kernel-side ``Planner`` in server mode, against a real ``jupyter server`` subprocess with the
extension: found through $EXECPLANNER_URL, JupyterHub's environment and the runtime files (also from
inside a real kernel the server started), with the server's errors reaching the user as exceptions."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from brokers import answer_yes, hang, run_broker, static_entry, write_platforms
from jupyter_client import BlockingKernelClient
from jupyter_live import no_discovery_hints, run_jupyter_server

from execplanner_widgets import InvalidRequest, Planner, PlannerError
from execplanner_widgets.client import PlannerTimeout

REQUEST = {
    "executable": {"kind": "jupyter-notebook", "location": "analysis.ipynb"},
    "compute": {"cores": {"min": 2}, "memory": {"min": 4}},
    "schedule": {"requested": {"duration": "PT1H"}},
}
HANG_TIMEOUT = 2.0

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def brokers():
    with run_broker(answer_yes(offers=2, run_for=0.5)) as remote, run_broker(hang()) as stuck:
        yield {"remote": remote, "stuck": stuck}


@pytest.fixture(scope="module")
def platforms_file(tmp_path_factory, brokers):
    folder = tmp_path_factory.mktemp("platforms")
    return write_platforms(
        folder / "platforms.yaml",
        [
            static_entry("big", title="Big static platform"),
            static_entry("small", title="Small static platform", cores=1, memory=2),
            brokers["remote"].entry("remote"),
            brokers["stuck"].entry("stuck", timeout=HANG_TIMEOUT),
        ],
        timeout=10,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory, platforms_file):
    with run_jupyter_server(tmp_path_factory.mktemp("server"), platforms_file) as live:
        yield live


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No discovery hint from the test runner's own environment."""
    return no_discovery_hints(monkeypatch, tmp_path)


@pytest.fixture
def planner(server, clean_env):
    clean_env.setenv("EXECPLANNER_URL", server.url)
    clean_env.setenv("EXECPLANNER_TOKEN", server.token)
    with Planner() as client:
        yield client


# ------------------------------------------------------------------------------------ discovery


def test_env_vars_select_server_mode(planner, server):
    assert planner.mode == "server"
    assert planner.server_url == server.url
    assert "server mode" in planner.describe_mode() and "$EXECPLANNER_URL" in planner.describe_mode()
    assert [p.name for p in planner.platforms()] == ["big", "small", "remote", "stuck"]


def test_api_url_in_env_var_is_accepted(server, clean_env):
    clean_env.setenv("EXECPLANNER_URL", server.url + "execplanner/api")
    clean_env.setenv("EXECPLANNER_TOKEN", server.token)
    with Planner() as client:
        assert client.mode == "server" and client.server_url == server.url


def test_runtime_files_find_the_server_this_kernel_belongs_to(server, clean_env):
    clean_env.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
    clean_env.setenv("JPY_PARENT_PID", str(server.pid))
    with Planner() as client:
        assert client.mode == "server" and client.server_url == server.url
        assert f"runtime file of server pid {server.pid}" in client.describe_mode()


def test_runtime_files_of_another_server_are_not_used(server, clean_env):
    clean_env.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))  # the server is running, but not ours
    with Planner() as client:
        assert client.mode == "local"
        assert "none of them this kernel's" in client.describe_mode()


def test_runtime_files_match_by_kernel_id(server, clean_env):
    """A kernel started by the server but not its child (e.g. through a provisioner) is matched by id."""
    kernel = server.post("api/kernels", json={"name": "python3"}).json()
    try:
        connection_file = server.runtime_dir / f"kernel-{kernel['id']}.json"
        clean_env.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
        import ipykernel.connect

        clean_env.setattr(ipykernel.connect, "get_connection_file", lambda: str(connection_file))
        with Planner() as client:
            assert client.mode == "server"
            assert f"lists kernel {kernel['id'][:8]}" in client.describe_mode()
    finally:
        delete(server, f"api/kernels/{kernel['id']}")


def test_jupyterhub_environment(server, clean_env):
    clean_env.setenv("JUPYTER_RUNTIME_DIR", str(server.runtime_dir))
    clean_env.setenv("JUPYTERHUB_SERVICE_PREFIX", "/jupyter/user/ada/")
    clean_env.setenv("JUPYTERHUB_API_TOKEN", server.token)
    with Planner() as client:
        assert client.mode == "server" and "JUPYTERHUB_SERVICE_PREFIX" in client.describe_mode()
    clean_env.setenv("JUPYTERHUB_SERVICE_URL", server.url.replace("127.0.0.1", "0.0.0.0"))
    with Planner() as client:
        assert client.mode == "server" and client.server_url == server.url


def test_wrong_token_or_missing_extension_falls_back_to_local_and_says_why(server, clean_env):
    clean_env.setenv("EXECPLANNER_URL", server.url)
    clean_env.setenv("EXECPLANNER_TOKEN", "wrong")
    with pytest.warns(UserWarning, match="EXECPLANNER_URL"), Planner() as client:
        assert client.mode == "local" and "refused the token" in client.describe_mode()
    with pytest.raises(PlannerError, match="refused the token"):
        Planner(url=server.url, token="wrong")
    with pytest.raises(PlannerError, match="does not run the ExecPlanner extension"):
        Planner(url=server.url + "nothing/here/", token=server.token)
    with pytest.raises(PlannerError, match="no Jupyter server"):
        Planner(mode="server")


def test_the_client_inside_a_real_kernel_finds_its_server(server):
    """A kernel started by the server runs ``Planner()`` and ends up in server mode, by itself."""
    kernel = server.post("api/kernels", json={"name": "python3"}).json()
    client = BlockingKernelClient(connection_file=str(server.runtime_dir / f"kernel-{kernel['id']}.json"))
    client.load_connection_file()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        code = (
            "from execplanner_widgets import Planner\n"
            "p = Planner()\n"
            "r = p.offers({'executable': {'kind': 'jupyter-notebook', 'location': 'a.ipynb'}}, platforms=['big'])\n"
            "s = p.accept(r[0].offers[0])\n"
            "print(p.mode, r[0].status, s.phase, sep='|')\n"
            "print(p.describe_mode())\n"
        )
        output: list[str] = []

        def collect(message):
            if message["msg_type"] == "stream":
                output.append(message["content"]["text"])
            elif message["msg_type"] == "error":
                output.append("\n".join(message["content"]["traceback"]))

        reply = client.execute_interactive(code, timeout=90, output_hook=collect)
        text = "".join(output)
        assert reply["content"]["status"] == "ok", text
        assert text.splitlines()[0] == "server|YES|ACCEPTED", text
        assert f"runtime file of server pid {server.pid}" in text
    finally:
        client.stop_channels()
        delete(server, f"api/kernels/{kernel['id']}")


def delete(server, path):
    httpx.delete(server.url + path, headers={"Authorization": f"token {server.token}"}, timeout=30)


# --------------------------------------------------------------------------------------- the API


def test_offers_accept_reject_session_job_and_wait(planner, brokers):
    results = planner.offers(REQUEST, platforms=["big", "small", "remote"])
    assert [(r.platform, r.status) for r in results] == [("big", "YES"), ("small", "NO"), ("remote", "YES")]
    assert any("cores" in reason for reason in results[1].reasons)
    first, second = results[2].offers
    assert planner.reject(second).phase == "REJECTED"  # the planner remembers which platform it came from
    accepted = planner.accept(first)
    assert accepted.phase == "ACCEPTED"
    assert planner.session(first.uuid).uuid == first.uuid
    finished = planner.wait(accepted, poll=0.1, timeout=30)
    assert finished.phase == "COMPLETED"
    job = planner.job(accepted)
    assert job.platform == "remote" and job.phase == "COMPLETED" and job.is_final
    posted = [r.json() for r in brokers["remote"].requests if r.method == "POST" and "/sessions/" in r.path]
    assert [update["value"] for update in posted[-2:]] == ["REJECTED", "ACCEPTED"]


def test_wait_times_out_with_the_phase_it_saw(planner):
    offer = planner.offers(REQUEST, platforms="big")[0].offers[0]
    session = planner.accept(offer)
    started = time.monotonic()
    with pytest.raises(PlannerTimeout, match="still ACCEPTED"):
        planner.wait(session, timeout=0.3, poll=0.1)
    assert time.monotonic() - started < 10
    assert planner.wait(session, until="ACCEPTED", timeout=5).phase == "ACCEPTED"
    assert planner.cancel(session).phase == "CANCELLED"
    assert planner.wait(session, until=lambda s: s.phase == "RUNNING", timeout=5).phase == "CANCELLED"  # final ends it


def test_stream_yields_answers_as_they_arrive(planner):
    started = time.monotonic()
    arrivals = [
        (result.platform, result.status, time.monotonic() - started) for result in planner.stream_offers(REQUEST)
    ]
    names = [name for name, _, _ in arrivals]
    assert sorted(names) == ["big", "remote", "small", "stuck"]
    assert names[-1] == "stuck" and arrivals[-1][1] == "ERROR"
    assert all(moment < arrivals[-1][2] for _, _, moment in arrivals[:-1])  # the others did not wait for it


def test_server_errors_become_python_exceptions(planner):
    with pytest.raises(PlannerError) as unknown:
        planner.offers(REQUEST, platforms=["ghost"])
    assert unknown.value.status == 404 and unknown.value.field == "platform" and "ghost" in str(unknown.value)
    with pytest.raises(InvalidRequest) as invalid:
        planner.offers({"executable": {"kind": "jupyter-notebook"}, "compute": {"memory": {"min": "lots"}}})
    assert invalid.value.errors[0].field == "compute.memory.min"
    offer = planner.offers(REQUEST, platforms="big")[0].offers[0]
    planner.accept(offer)
    with pytest.raises(PlannerError) as conflict:
        planner.reject(offer)
    assert conflict.value.status == 409 and "ACCEPTED" in conflict.value.message
    with pytest.raises(PlannerError, match="which platform"):
        planner.accept("0f8fad5b-d9cb-469f-a165-70867728950e")
    with pytest.raises(PlannerError) as missing:
        planner.session("0f8fad5b-d9cb-469f-a165-70867728950e", platform="big")
    assert missing.value.status == 404
    with pytest.raises(InvalidRequest):
        planner.session("../../etc", platform="big")


def test_html_summary_and_app_delegate_to_the_widgets(planner):
    html = planner._repr_html_()
    assert "server mode" in html and "Big static platform" in html
    app = planner.app()
    assert type(app).__name__ == "PlannerApp" and app.planner is planner


def test_the_server_answers_match_local_mode(planner, platforms_file, clean_env, tmp_path):
    """Same platforms file, both modes: the same platforms and the same answers."""
    with Planner(platforms_file, mode="local", data_dir=tmp_path / "state") as local:
        assert local.mode == "local" and str(platforms_file) in local.describe_mode()
        assert [p.model_dump() for p in local.platforms()] == [p.model_dump() for p in planner.platforms()]
        request = {**REQUEST, "compute": {"cores": {"min": 2, "max": 4}, "memory": {"min": 4}}}
        mine = local.offers(request, platforms=["big", "small", "remote"])
        theirs = planner.offers(request, platforms=["big", "small", "remote"])
        assert [(r.platform, r.status, len(r.offers)) for r in mine] == [
            (r.platform, r.status, len(r.offers)) for r in theirs
        ]
        assert [r.reasons for r in mine][1] == [r.reasons for r in theirs][1]
        assert mine[0].offers[0].compute.to_wire() == theirs[0].offers[0].compute.to_wire()
        for client in (local, planner):
            with pytest.raises(PlannerError) as error:
                client.offers(REQUEST, platforms=["ghost"])
            assert (error.value.status, error.value.field) == (404, "platform")
        assert json.dumps(local.job(local.accept(mine[0].offers[0])).to_wire()["phase"]) == '"ACCEPTED"'


def test_offers_are_read_with_the_collector_paused_and_it_runs_again_after(server, clean_env, monkeypatch):
    import gc

    from execplanner_widgets.client import server as server_mode

    seen: list[bool] = []
    read_results = server_mode.read_results

    def recording(chunks, not_json):
        for result in read_results(chunks, not_json):
            seen.append(gc.isenabled())
            yield result

    monkeypatch.setattr(server_mode, "read_results", recording)
    with Planner(url=server.url, token=server.token) as planner:
        assert gc.isenabled()
        results = planner.offers(REQUEST, platforms=["big", "small"])
        assert [result.platform for result in results] == ["big", "small"]
        assert seen == [False, False]
        assert gc.isenabled()
