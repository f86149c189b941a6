"""Third-party platforms plug in through the ``execplanner.platforms`` entry point group."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

from execplanner_widgets.core.config import build_federation, default_context, load_platforms_file, platform_classes

PLUGIN = '''
from execplanner_widgets.core.platform import Platform
from execplanner_widgets.model import OfferSetResponse
from execplanner_widgets.model.platform import PlatformDescription


class QueuePlatform(Platform):
    """A batch queue that says YES to anything shorter than its wall time."""

    kind = "queue"

    def __init__(self, name, title, walltime):
        super().__init__(name, title)
        self.walltime = walltime

    @classmethod
    def from_config(cls, name, title, options, context):
        return cls(name, title, options["walltime"])

    async def offers(self, request, *, user=None):
        return OfferSetResponse(result="NO", meta={"messages": [{"message": f"queue {self.walltime} is full for {user}"}]})

    async def session(self, uuid, *, user=None):
        raise KeyError(uuid)

    async def update_session(self, uuid, update, *, user=None):
        raise KeyError(uuid)

    def describe(self):
        return PlatformDescription(name=self.name, title=self.title, kind=self.kind, limits={"walltime": self.walltime})
'''


def test_a_plugin_distribution_is_found_and_used(tmp_path, monkeypatch):
    package = tmp_path / "queue_plugin.py"
    package.write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "queue_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: queue-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[execplanner.platforms]\nqueue = queue_plugin:QueuePlatform\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert platform_classes()["queue"].__name__ == "QueuePlatform"
        config_path = tmp_path / "platforms.yaml"
        config_path.write_text("platforms:\n  - {name: batch, title: Batch queue, queue: {walltime: PT48H}}\n")
        federation = build_federation(load_platforms_file(config_path), default_context(tmp_path / "state"))
        (result,) = asyncio.run(federation.offers({"executable": {"kind": "docker-container"}}, user="alice"))
        assert (result.status, result.reasons) == ("NO", ["queue PT48H is full for alice"])
        assert federation.describe()[0].limits == {"walltime": "PT48H"}
    finally:
        sys.modules.pop("queue_plugin", None)


def test_built_in_kinds_are_always_there():
    classes = platform_classes()
    assert {"static", "broker", "hosted"} <= set(classes)


def test_a_kind_whose_extra_is_not_installed_names_the_extra(tmp_path):
    """In a base install the ``hosted`` kind cannot import SQLAlchemy: using it is a platforms-file
    error that says which extra to install (a fresh interpreter where ``import sqlalchemy`` fails)."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["sqlalchemy"] = None  # what a base install without the hosted extra looks like
        from execplanner_widgets.core.config import ConfigError, default_context, platform_classes
        try:
            platform_classes()["hosted"].from_config("x", None, {{}}, default_context({str(tmp_path)!r}))
        except ConfigError as error:
            print(error)
        """
    )
    answer = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    assert "failed to load" in answer.stdout and 'pip install "execplanner-widgets[hosted]"' in answer.stdout
