"""Every proxy route needs Jupyter authentication, is authorized on resource ``execplanner``, and
refuses cookie-authenticated POSTs that lack the XSRF token; refused requests reach no platform."""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest
from brokers import answer_yes, run_broker, static_entry, write_platforms
from jupyter_server.auth.authorizer import Authorizer

REQUEST = {"executable": {"kind": "jupyter-notebook", "location": "a.ipynb"}, "compute": {"cores": {"min": 1}}}
SESSION = "0f8fad5b-d9cb-469f-a165-70867728950e"

#: (method, path under execplanner/api/, body) for every route, the JSON 404 included.
ROUTES = [
    ("GET", "platforms", None),
    ("GET", "platforms/remote", None),
    ("POST", "offers", REQUEST),
    ("POST", "offers/stream", REQUEST),
    ("POST", "offers/stream?format=sse", REQUEST),
    ("GET", f"platforms/remote/sessions/{SESSION}", None),
    ("POST", f"platforms/remote/sessions/{SESSION}", {"phase": "ACCEPTED"}),
    ("GET", f"platforms/remote/jobs/{SESSION}", None),
    ("GET", "openapi.json", None),
    ("GET", "no/such/route", None),
    ("POST", "no/such/route", REQUEST),
]
POST_ROUTES = [route for route in ROUTES if route[0] == "POST"]


class DenyExecPlanner(Authorizer):
    """Lets a user do everything except use the ExecPlanner proxy."""

    def is_authorized(self, handler, user, action, resource) -> bool:
        return resource != "execplanner"


@pytest.fixture
def remote():
    with run_broker(answer_yes()) as broker:
        yield broker


@pytest.fixture
def deny_execplanner() -> None:
    """Requesting this fixture runs the server with :class:`DenyExecPlanner` as its authorizer."""


@pytest.fixture
def jp_server_config(tmp_path, remote, request):
    platforms = write_platforms(tmp_path / "platforms.yaml", [static_entry("local"), remote.entry("remote")], timeout=5)
    config = {
        "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}},
        "ExecPlanner": {"platforms_file": str(platforms), "data_dir": str(tmp_path / "data")},
    }
    if "deny_execplanner" in request.fixturenames:
        config["ServerApp"]["authorizer_class"] = DenyExecPlanner
    return config


def _url(jp_base_url: str, path: str) -> str:
    return f"{jp_base_url}execplanner/api/{path}"


async def _send(http_server_client, jp_base_url, method, path, body, headers):
    return await http_server_client.fetch(
        _url(jp_base_url, path),
        method=method,
        body=json.dumps(body) if body is not None else None,
        headers={"Content-Type": "application/json", **headers},
        raise_error=False,
        follow_redirects=False,
        request_timeout=20,
    )


def _assert_refused(response, route) -> None:
    assert response.code == 403, (route, response.code, response.body[:200])
    assert response.headers["Content-Type"].startswith("application/json"), route
    assert "message" in json.loads(response.body)


async def _login(http_server_client, jp_base_url, token: str) -> tuple[str, str]:
    """Log in through the real login form; returns (Cookie header, XSRF token) of the browser session."""
    page = await http_server_client.fetch(f"{jp_base_url}login", raise_error=False)
    xsrf = next(
        re.match(r"_xsrf=([^;]+)", cookie).group(1)
        for cookie in page.headers.get_list("Set-Cookie")
        if cookie.startswith("_xsrf=")
    )
    answer = await http_server_client.fetch(
        f"{jp_base_url}login",
        method="POST",
        body=urlencode({"password": token, "_xsrf": xsrf}),
        headers={"Cookie": f"_xsrf={xsrf}"},
        follow_redirects=False,
        raise_error=False,
    )
    assert answer.code == 302, answer.code
    login = [c.split(";")[0] for c in answer.headers.get_list("Set-Cookie") if c.startswith("username-")]
    assert login, answer.headers.get_list("Set-Cookie")
    return f"_xsrf={xsrf}; {login[0]}", xsrf


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_unauthenticated_requests_are_refused(jp_serverapp, http_server_client, jp_base_url, remote, route):
    method, path, body = route
    response = await _send(http_server_client, jp_base_url, method, path, body, {})
    _assert_refused(response, route)
    wrong = await _send(http_server_client, jp_base_url, method, path, body, {"Authorization": "token not-the-token"})
    _assert_refused(wrong, route)
    assert remote.requests == []


async def test_cookie_requests_need_the_xsrf_token_on_every_post(
    jp_serverapp, http_server_client, jp_base_url, jp_auth_header, remote
):
    token = jp_auth_header["Authorization"].split()[1]
    cookie, xsrf = await _login(http_server_client, jp_base_url, token)
    # the login cookie is valid: a GET with it works
    listing = await _send(http_server_client, jp_base_url, "GET", "platforms", None, {"Cookie": cookie})
    assert listing.code == 200, listing.body
    for route in POST_ROUTES:
        method, path, body = route
        refused = await _send(http_server_client, jp_base_url, method, path, body, {"Cookie": cookie})
        _assert_refused(refused, route)
        # the XSRF cookie alone (without the header that proves same-origin JavaScript) is not enough
        also_refused = await _send(
            http_server_client, jp_base_url, method, path, body, {"Cookie": cookie, "X-XSRFToken": "forged"}
        )
        _assert_refused(also_refused, route)
    assert remote.requests == []
    # with the token in the header, as JupyterLab sends it, the same call goes through
    accepted = await _send(
        http_server_client,
        jp_base_url,
        "POST",
        "offers?platform=local",
        REQUEST,
        {"Cookie": cookie, "X-XSRFToken": xsrf},
    )
    assert accepted.code == 200 and json.loads(accepted.body)[0]["status"] == "YES"


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
async def test_every_route_is_authorized_on_resource_execplanner(
    deny_execplanner, jp_serverapp, http_server_client, jp_base_url, jp_auth_header, remote, route
):
    method, path, body = route
    response = await _send(http_server_client, jp_base_url, method, path, body, jp_auth_header)
    _assert_refused(response, route)
    assert "execplanner" in json.loads(response.body)["message"]
    # the same user may still use the rest of the server: the denial is the ExecPlanner resource's
    status = await http_server_client.fetch(f"{jp_base_url}api/status", headers=jp_auth_header, raise_error=False)
    assert status.code == 200
    assert remote.requests == []
