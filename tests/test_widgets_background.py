"""The background helpers behind the widgets: one job at a time, failures reported, loops that stop."""

from __future__ import annotations

import threading

from widget_support import WAIT, wait_for

from execplanner_widgets.widgets.background import Repeater, Worker


def test_a_worker_runs_one_job_at_a_time_and_reports_failures():
    release = threading.Event()
    failures: list[BaseException] = []
    worker = Worker("test-worker", on_error=failures.append)
    assert worker.start(release.wait, WAIT) is True
    assert worker.busy and worker.start(lambda: None) is False  # the first job still runs
    assert worker.wait(0.05) is False
    release.set()
    assert worker.wait(WAIT) is True and not worker.busy
    assert worker.start(lambda: 1 / 0) is True
    assert worker.wait(WAIT)
    assert len(failures) == 1 and isinstance(failures[0], ZeroDivisionError)


def test_a_repeater_changes_pace_survives_a_failed_step_and_stops():
    calls: list[int] = []

    def step():
        calls.append(len(calls))
        if len(calls) == 2:
            raise ConnectionError("a network hiccup")
        return 0.01 if len(calls) < 5 else False

    loop = Repeater("test-loop", step, interval=0.01)
    loop.start()
    wait_for(lambda: not loop.running, WAIT, "the loop to end by itself")
    assert len(calls) == 5  # the failed second step did not end the loop; False did


def test_a_stopped_repeater_can_start_again_at_once():
    ticks = threading.Semaphore(0)
    loop = Repeater("test-restart", lambda: ticks.release() or True, interval=0.01)
    loop.start()
    assert ticks.acquire(timeout=WAIT)
    loop.stop(timeout=0)  # asked to stop, perhaps not yet stopped
    loop.start()  # a new loop, not the one that is ending
    for _ in range(3):
        assert ticks.acquire(timeout=WAIT)
    assert loop.stop(timeout=WAIT) and not loop.running
