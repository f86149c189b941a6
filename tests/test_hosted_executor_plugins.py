"""An executor from a separate installed distribution is picked up from the platforms file, and the
booking service and runner call every hook of the plugin API at its moment.

The distribution is real (a ``.dist-info`` with an ``execplanner.executors`` entry point in a folder
on ``sys.path``, as pip would install it); nothing in the project names it. Its executor keeps a
ledger (a file in its secrets folder) of what it was asked, refuses users it does not know, reports
load of its own, and "runs" a session by writing a result.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from test_hosted_support import DATA, eventually, request_document, write_platforms

from execplanner_widgets.core.config import ConfigError, build_federation, load_platforms_file
from execplanner_widgets.core.platform import PlatformContext, SessionConflict
from execplanner_widgets.model import SessionPhase, parse_request, utcnow
from jupyter_server_extension.hosted.executors import executor_names
from jupyter_server_extension.hosted.store import SessionRow

PLUGIN = '''
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ConfigDict

from jupyter_server_extension.hosted.calendar import Hold, to_seconds
from jupyter_server_extension.hosted.executors import Executor, ExecutorRefused, RunOutcome


class LedgerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cores: int
    busy_hours: float = 0
    cores_per_user: int = 2


class LedgerExecutor(Executor):
    """Books slots in a ledger file; "runs" a session by writing who it ran for."""

    Options = LedgerOptions
    name = "ledger"

    def __init__(self, options, context):
        super().__init__(options, context)
        self.anchor = datetime.now(timezone.utc)

    def _note(self, *items):
        with open(self.context.secrets_dir / "ledger.log", "a") as handle:
            handle.write(" ".join(str(item) for item in items) + "\\n")

    def known_capacity(self):
        return self.options.cores, 4

    async def external_holds(self, low, high):
        if not self.options.busy_hours:
            return []
        end = self.anchor + timedelta(hours=self.options.busy_hours)
        return [Hold(to_seconds(self.anchor), to_seconds(end), cores=self.options.cores)]

    async def refusals(self, need, user):
        if need.cores > self.options.cores_per_user:
            return [f"the ledger gives {user} at most {self.options.cores_per_user} cores"]
        return []

    async def booked(self, slot):
        if slot.user == "mallory":
            raise ExecutorRefused("mallory has no account in the ledger")
        slot.handle = "reservation-" + slot.session[:8]
        self._note("booked", slot.handle, slot.user, slot.cores)

    async def released(self, slot):
        self._note("released", slot.handle)

    async def run(self, spec, stop, report):
        await report.handle("ledger-run-" + spec.session[:8])
        await report.progress("the ledger wrote it down")
        await report.available("http://127.0.0.1:9/ledger/" + spec.session[:8], "the ledger's view")
        spec.results.mkdir(parents=True, exist_ok=True)
        (spec.results / "ledger.txt").write_text(f"{spec.user} {spec.cores} {spec.start.isoformat()}")
        return RunOutcome("completed", "recorded in the ledger")
'''


@pytest.fixture
def ledger_distribution(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "ledger_executor.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "ledger_executor-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ledger-executor\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[execplanner.executors]\nledger = ledger_executor:LedgerExecutor\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("ledger_executor", None)


def _federation(tmp_path: Path, hosted: dict):
    path = write_platforms(tmp_path / "platforms.yaml", [{"name": "ledger", "title": "Ledger", "hosted": hosted}])
    return build_federation(load_platforms_file(path), PlatformContext(data_dir=tmp_path / "state"))


def test_the_plugin_is_installed_and_its_options_are_checked_under_its_name(ledger_distribution, tmp_path):
    assert "ledger" in executor_names()
    with pytest.raises(ConfigError) as error:
        _federation(tmp_path, {"executor": "ledger", "ledger": {"cores": "many", "colour": "red"}})
    assert {item.field for item in error.value.errors} == {
        "platforms[ledger].hosted.ledger.cores",
        "platforms[ledger].hosted.ledger.colour",
    }
    with pytest.raises(ConfigError, match="installed executors: .*ledger"):
        _federation(tmp_path, {"executor": "ledgers"})


@pytest.mark.asyncio
async def test_every_hook_of_the_plugin_is_called(ledger_distribution, tmp_path):
    federation = _federation(tmp_path, {"executor": "ledger", "ledger": {"cores": 6}, "offers": 1})
    (platform,) = list(federation)
    try:
        description = platform.describe()
        assert (description.limits["cores"], description.limits["memory"]) == (6, 4)  # known_capacity
        assert description.executor == "ledger"

        too_big = await platform.offers(parse_request(request_document(DATA / "sum_numbers.py", cores=3)), user="alice")
        assert too_big.result == "NO"
        assert "the ledger gives alice at most 2 cores" in too_big.reasons

        request = parse_request(request_document(DATA / "sum_numbers.py", cores=2))
        refused = await platform.offers(request, user="mallory")
        with pytest.raises(SessionConflict, match="mallory has no account in the ledger"):
            await platform.accept(refused.offers[0].meta.uuid, user="mallory")
        session = await platform.session(refused.offers[0].meta.uuid, user="mallory")
        assert session.phase is SessionPhase.REJECTED

        offer = (await platform.offers(request, user="alice")).offers[0]
        await platform.accept(offer.meta.uuid, user="alice")

        async def finished():
            found = await platform.session(offer.meta.uuid, user="alice")
            return found if found.is_final else None

        done = await eventually(finished, 60)
        assert done.phase is SessionPhase.COMPLETED, [m.text for m in done.messages]
        texts = [m.text for m in done.messages]
        assert "the ledger wrote it down" in texts
        view = f"http://127.0.0.1:9/ledger/{offer.meta.uuid[:8]}"
        assert f"available: the ledger's view at {view}" in texts
        assert "AVAILABLE" in [(m.values or {}).get("phase") for m in done.messages]
        assert any(c.location == view and c.status == "FINISHED" for c in done.connectors)
        result = next(item for item in done.results if item.id == "ledger.txt")
        assert result.url and Path(result.url.removeprefix("file://")).read_text().startswith("alice 2 ")
        with platform.store.read() as db:
            row = db.scalar(select(SessionRow).where(SessionRow.uuid == offer.meta.uuid))
            assert row.run_handle == f"ledger-run-{offer.meta.uuid[:8]}"
            assert row.slot_handle == f"reservation-{offer.meta.uuid[:8]}"
        ledger = platform.secrets_dir / "ledger.log"

        async def released():
            lines = ledger.read_text().splitlines()
            return lines if any(line.startswith("released") for line in lines) else None

        lines = await eventually(released, 30)
        handle = f"reservation-{offer.meta.uuid[:8]}"
        assert lines == [f"booked {handle} alice 2", f"released {handle}"]  # mallory's refusal booked nothing
    finally:
        await federation.aclose()


@pytest.mark.asyncio
async def test_load_the_engine_reports_is_in_the_calendar(ledger_distribution, tmp_path):
    federation = _federation(tmp_path, {"executor": "ledger", "ledger": {"cores": 6, "busy_hours": 1}, "offers": 1})
    (platform,) = list(federation)
    try:
        answer = await platform.offers(parse_request(request_document(DATA / "sum_numbers.py", cores=1)), user="ann")
        assert answer.result == "YES"
        start = answer.offers[0].schedule.available.start.start
        assert start >= utcnow() + timedelta(minutes=58)  # after the engine's own busy hour
        now = utcnow()
        calendar = await platform.calendar(now, now + timedelta(hours=2))
        half_hour = now + timedelta(minutes=30)
        (busy,) = [step for step in calendar.steps if step.start <= half_hour < step.end]
        assert busy.cores == 6  # the engine's own load, as the booking calendar shows it
        assert json.dumps(calendar.model_dump(mode="json"))  # a wire document as before
    finally:
        await asyncio.wait_for(federation.aclose(), 60)
