"""The platforms file: clear errors that name the entry and field; the demo when none is given."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from execplanner_widgets.core.config import (
    ConfigError,
    build_federation,
    default_context,
    load_platforms_file,
    resolve_platforms_path,
)
from execplanner_widgets.platforms.broker import BrokerPlatform
from execplanner_widgets.platforms.static import StaticPlatform


def documented_example() -> str:
    """The platforms file shown in the config module's documentation (what users copy)."""
    import textwrap

    from execplanner_widgets.core import config

    block = config.__doc__.split(".. code-block:: yaml", 1)[1].split("\n\n")[1]
    return textwrap.dedent(block)


EXAMPLE = documented_example()


def write(tmp_path, text):
    path = tmp_path / "platforms.yaml"
    path.write_text(text)
    return path


def test_the_readme_example_builds(tmp_path, monkeypatch):
    monkeypatch.setenv("MUNICH_TOKEN", "secret-munich")
    config = load_platforms_file(write(tmp_path, EXAMPLE))
    federation = build_federation(config, default_context(tmp_path))
    cesga, munich = federation.platforms
    assert isinstance(cesga, StaticPlatform) and isinstance(munich, BrokerPlatform)
    assert munich.has_token and "secret" not in repr(munich)
    assert federation.timeout_for(munich) == 5
    assert [d.name for d in federation.describe()] == ["cesga", "munich"]


def test_demo_is_used_when_no_file_is_given(monkeypatch):
    monkeypatch.delenv("EXECPLANNER_PLATFORMS", raising=False)
    path, is_demo = resolve_platforms_path(None)
    assert is_demo and path.name == "platforms.yaml" and path.is_file()
    assert load_platforms_file(None).platforms


def test_a_base_install_gets_a_demo_it_can_build(tmp_path):
    """Without the ``hosted`` extra (a fresh interpreter where ``import sqlalchemy`` fails, as in
    ``pip install .``) the demo is the limits-only federation, and ``Planner()`` answers from it."""
    code = textwrap.dedent(
        f"""
        import os, sys
        sys.modules["sqlalchemy"] = None  # what a base install without the hosted extra looks like
        os.environ.pop("EXECPLANNER_PLATFORMS", None)
        os.environ.pop("EXECPLANNER_URL", None)
        os.environ["EXECPLANNER_DATA_DIR"] = {str(tmp_path)!r}
        from execplanner_widgets import Planner
        from execplanner_widgets.core.config import resolve_platforms_path
        print(resolve_platforms_path(None)[0].name)
        with Planner(mode="local") as planner:
            request = {{"executable": {{"kind": "jupyter-notebook", "location": "https://example.org/a.ipynb"}},
                       "compute": {{"cores": {{"min": 2}}}}}}
            print(" ".join(f"{{r.platform}}={{r.status}}" for r in planner.offers(request)))
        """
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr[-3000:]
    name, statuses = answer.stdout.split("\n")[:2]
    assert name == "platforms-base.yaml"
    assert statuses == "laptop=YES gaia-dmp=YES cesga=NO"


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, EXAMPLE)
    monkeypatch.setenv("EXECPLANNER_PLATFORMS", str(path))
    assert resolve_platforms_path(None) == (path, False)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("platforms:\n  - {name: Bad Name, static: {}}\n", "platforms[Bad Name].name", "URL-safe"),
        ("platforms:\n  - {name: a, title: A}\n", "platforms[a]", "exactly one kind key"),
        ("platforms:\n  - {name: a, static: {}, broker: {}}\n", "platforms[a]", "exactly one kind key"),
        ("platforms:\n  - {name: a, static: {}}\n  - {name: a, static: {}}\n", "platforms", "unique"),
        ("platforms: []\nextra: 1\n", "extra", "not allowed"),
        ("platforms:\n  - {name: a, timeout: -1, static: {}}\n", "platforms[a].timeout", "greater than 0"),
    ],
)
def test_file_errors_name_the_entry(tmp_path, text, field, words):
    with pytest.raises(ConfigError) as caught:
        load_platforms_file(write(tmp_path, text))
    fields = {error.field: error.message for error in caught.value.errors}
    assert field in fields, fields
    assert words in fields[field]


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("platforms:\n  - {name: a, static: {cores: lots}}\n", "platforms[a].static.cores", "integer"),
        ("platforms:\n  - {name: a, broker: {url: 'ftp://x'}}\n", "platforms[a].broker.url", "http(s) URL"),
        ("platforms:\n  - {name: a, broker: {url: 'https://u:p@x.org/'}}\n", "platforms[a].broker.url", "credentials"),
        ("platforms:\n  - {name: a, teleport: {}}\n", "platforms[a]", "unknown platform kind 'teleport'"),
    ],
)
def test_platform_option_errors_name_the_entry_and_option(tmp_path, text, field, words):
    config = load_platforms_file(write(tmp_path, text))
    with pytest.raises(ConfigError) as caught:
        build_federation(config, default_context(tmp_path))
    fields = {error.field: error.message for error in caught.value.errors}
    assert field in fields, fields
    assert words in fields[field]


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read platforms file"):
        load_platforms_file(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_platforms_file(write(tmp_path, "platforms: [\n"))


def test_the_readme_platforms_example_builds(tmp_path, monkeypatch):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### The platforms file", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("MUNICH_TOKEN", "secret")
    federation = build_federation(load_platforms_file(write(tmp_path, example)), default_context(tmp_path))
    assert [(d.name, d.kind) for d in federation.describe()] == [
        ("cesga", "static"),
        ("munich", "broker"),
        ("edinburgh", "hosted"),
    ]
