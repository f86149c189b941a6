"""The extension is enabled by installing the package, in a regular and in an editable install alike:
both wheels carry the server config file that turns it on (hatchling's ``shared-data``, which its
editable wheels honour too), and Jupyter then lists it enabled and OK and serves the API.

The tests build both wheels from a copy of the checkout, as pip would. ``jupyter server extension list`` reads only the user, sys-prefix and system config folders (not
``JUPYTER_CONFIG_PATH``), so the listing test points ``JUPYTER_CONFIG_DIR`` at the wheel's
``etc/jupyter``; the server test puts that folder on ``JUPYTER_CONFIG_PATH``, as an install would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from jupyter_live import run_jupyter_server

from execplanner_widgets.core.config import demo_platforms_path, load_platforms_file

ROOT = Path(__file__).resolve().parents[1]
CONFIG_IN_WHEEL = "data/etc/jupyter/jupyter_server_config.d/execplanner_widgets.json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A copy of the checkout (so that the builds leave nothing in the working tree)."""
    copy = tmp_path_factory.mktemp("source") / "execplanner-widgets"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".pytest_cache",
            "node_modules",
            ".execplanner",
            ".*_cache",
        ),
    )
    return copy


@pytest.fixture(scope="module", params=["regular", "editable"])
def wheel(request, source, tmp_path_factory) -> Path:
    """The wheel ``pip install .`` installs, or the one ``pip install -e .`` installs (PEP 660)."""
    dist = tmp_path_factory.mktemp("dist")
    if request.param == "regular":
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(source)]
    else:  # what pip asks the build backend for on `pip install -e .`
        command = [sys.executable, "-c", f"from hatchling.build import build_editable; build_editable({str(dist)!r})"]
    built = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=source)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (found,) = dist.glob("execplanner_widgets-*.whl")
    return found


@pytest.fixture(scope="module")
def installed_config(wheel, tmp_path_factory) -> Path:
    """The wheel's ``etc/jupyter`` folder, extracted as an install would place it."""
    target = tmp_path_factory.mktemp("etc") / "jupyter"
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [
            n
            for n in archive.namelist()
            if re.match(r"execplanner_widgets-[^/]+\.data/" + re.escape(CONFIG_IN_WHEEL) + "$", n)
        ]
        destination = target / "jupyter_server_config.d" / "execplanner_widgets.json"
        destination.parent.mkdir(parents=True)
        destination.write_bytes(archive.read(name))
    return target


@pytest.mark.slow
def test_the_wheel_installs_the_config_that_enables_the_extension(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        matches = [
            n for n in names if n.endswith(CONFIG_IN_WHEEL) and n.startswith("execplanner_widgets-") and ".data/" in n
        ]
        assert len(matches) == 1, [n for n in names if ".data/" in n]
        assert json.loads(archive.read(matches[0])) == {
            "ServerApp": {"jpserver_extensions": {"jupyter_server_extension": True}}
        }
        if any(name.endswith(".pth") for name in names):  # editable: the sources stay in the checkout
            assert not any(name.startswith(("execplanner_widgets/", "jupyter_server_extension/")) for name in names), (
                names
            )
        else:
            assert "jupyter_server_extension/handlers/api.py" in names
            assert "execplanner_widgets/client/planner.py" in names


@pytest.mark.slow
def test_jupyter_lists_the_extension_enabled_and_ok(installed_config, tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER")}
    env.update(
        JUPYTER_CONFIG_DIR=str(installed_config),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
    )
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    text = ANSI.sub("", listing.stdout + listing.stderr)
    assert listing.returncode == 0, text
    section = text.split(f"Config dir: {installed_config}", 1)[1].split("Config dir:", 1)[0]
    assert "jupyter_server_extension enabled" in section, text
    assert re.search(r"jupyter_server_extension \S* ?OK", section), section


@pytest.mark.slow
@pytest.mark.parametrize("wheel", ["regular"], indirect=True)  # the editable wheel's config is the same file
def test_a_server_with_the_installed_config_serves_the_api(installed_config, tmp_path):
    with run_jupyter_server(tmp_path / "server", None, enable_extension=False, config_path=installed_config) as server:
        answer = server.get("execplanner/api/platforms")
        assert answer.status_code == 200, server.log()[-2000:]
        demo = [entry.name for entry in load_platforms_file(demo_platforms_path()).platforms]
        assert [item["name"] for item in answer.json()] == demo  # no platforms file: the built-in demo
    control = {"ServerApp": {"jpserver_extensions": {"jupyter_server_extension": False}}}
    with run_jupyter_server(tmp_path / "plain", None, enable_extension=False, extra_config=control) as server:
        assert server.get("execplanner/api/platforms").status_code == 404  # control: switched off, no API


@pytest.mark.slow
def test_this_environment_has_the_extension_enabled_by_its_install(tmp_path):
    """The install that runs these tests (``pip install -e ".[test]"``, the README's command) put the
    config into this environment's ``etc/jupyter``: Jupyter lists the extension enabled and OK there."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER")}
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "user"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
    )
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    text = ANSI.sub("", listing.stdout + listing.stderr)
    prefix_config = Path(sys.prefix) / "etc" / "jupyter"
    assert (prefix_config / "jupyter_server_config.d" / "execplanner_widgets.json").is_file(), text
    section = text.split(f"Config dir: {prefix_config}", 1)[1].split("Config dir:", 1)[0]
    assert "jupyter_server_extension enabled" in section, text
    assert re.search(r"jupyter_server_extension \S* ?OK", section), section
