"""Row 5 of issue 12: kernel-side time to build the planner app for an OSSR record of 1,000
executables, and for ``OfferBrowser`` to show 500 offers (goal: <= 300 ms each).

The record is a Zenodo-style record (read by :func:`read_record`, as from a DOI) listing 1,000
notebooks. The app is built with a real local-mode ``Planner`` over one static platform. For the
offers, the browser's planner yields 50 ready answers of 10 offers each from its stream, so the
figure is the widget's own work (adding answers, sorting, drawing the table), not the platforms'
latency: that is measured in bench_fanout_scale.py. Both are timed in this process (the kernel);
the browser's rendering is not measured here.

Usage: ``python bench/bench_widgets.py [--executables 1000] [--offers 500] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _common import figure, ms, write_platforms

from execplanner_widgets.model import OfferSetResponse, PlatformResult, parse_request

SESSION_KIND = (
    "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/session/scheduled-execution-session.yaml"
)
COMPUTE_KIND = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds/compute/simple-compute-resource.yaml"
REQUEST = {
    "executable": {"kind": "jupyter-notebook", "location": "https://example.org/a.ipynb"},
    "compute": {"cores": {"min": 1}},
}


def record_file(folder: Path, count: int) -> Path:
    entries = {
        f"notebooks/analysis-{index:04d}.ipynb": {
            "key": f"notebooks/analysis-{index:04d}.ipynb",
            "links": {"content": f"https://zenodo.org/api/records/7000001/files/analysis-{index:04d}.ipynb/content"},
        }
        for index in range(count)
    }
    document = {
        "id": 7000001,
        "doi": "10.5281/zenodo.7000001",
        "metadata": {"title": f"{count} notebooks", "description": "A large record."},
        "files": {"enabled": True, "entries": entries},
    }
    path = folder / "record.json"
    path.write_text(json.dumps(document))
    return path


def answers(platforms: int, per_platform: int) -> list[PlatformResult]:
    now = datetime.now(timezone.utc).replace(microsecond=0)
    iso = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    results = []
    for index in range(platforms):
        offers = [
            {
                "kind": SESSION_KIND,
                "meta": {"uuid": str(uuid.uuid4()), "name": "offer", "created": iso(now)},
                "phase": "OFFERED",
                "expires": iso(now + timedelta(minutes=30)),
                "executable": REQUEST["executable"],
                "compute": {"kind": COMPUTE_KIND, "cores": {"min": 2, "max": 2}, "memory": {"min": 4, "max": 4}},
                "schedule": {
                    "available": {"start": f"{iso(now + timedelta(hours=offer + index % 7))}/PT0S", "duration": "PT1H"}
                },
            }
            for offer in range(per_platform)
        ]
        response = OfferSetResponse.model_validate(
            {"result": "YES", "meta": {"uuid": str(uuid.uuid4())}, "offers": offers}
        )
        results.append(
            PlatformResult(
                platform=f"p{index}", title=f"Platform {index}", status="YES", response=response, elapsed=0.2
            )
        )
    return results


class ReadyPlanner:
    """A planner whose platforms have already answered: the browser's own cost is what is timed."""

    def __init__(self, results: list[PlatformResult]) -> None:
        self.results = results

    def platforms(self) -> list[Any]:
        from types import SimpleNamespace

        return [SimpleNamespace(name=result.platform, title=result.title) for result in self.results]

    def stream_offers(self, request: Any, **_: Any) -> Any:
        return iter(self.results)

    def calendar(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no calendars in this benchmark")

    def reject(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executables", type=int, default=1000)
    parser.add_argument("--offers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from execplanner_widgets import Planner
    from execplanner_widgets.ossr import read_record
    from execplanner_widgets.widgets import PlannerApp
    from execplanner_widgets.widgets.offers import OfferBrowser

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        path = record_file(folder, args.executables)
        platforms = write_platforms(
            folder / "platforms.yaml",
            [{"name": "static", "title": "A static platform", "static": {"accepts": ["jupyter-notebook"], "cores": 8}}],
        )
        with Planner(platforms, mode="local", data_dir=folder / "state") as planner:
            PlannerApp(planner, record=read_record(path)).close()  # warm up imports and caches
            builds = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                record = read_record(path)
                app = PlannerApp(planner, record=record)
                builds.append(time.perf_counter() - started)
                app.close()
        build = statistics.median(builds)
        print(f"   {len(record)} executables in the record; app built in {', '.join(ms(t) for t in builds)}")
        figure(
            f"planner app for an OSSR record of {args.executables:,} executables",
            ms(build),
            "<= 300 ms",
            build <= 0.300,
        )

        per_platform = 10
        results = answers(max(1, args.offers // per_platform), per_platform)
        request = parse_request(REQUEST)
        shows = []
        for _ in range(args.rounds):
            browser = OfferBrowser(ReadyPlanner(results), request, release_others=False)
            started = time.perf_counter()
            browser.find()
            if not browser.wait(120):
                raise RuntimeError("the offer browser did not finish")
            shows.append(time.perf_counter() - started)
            offers = sum(len(result.offers) for result in browser.results)
            browser.close()
            del browser
            gc.collect()  # widgets closed now, not at interpreter exit
        show = statistics.median(shows)
        print(f"   {offers} offers from {len(results)} answers shown in {', '.join(ms(t) for t in shows)}")
        figure(f"OfferBrowser with {offers} offers", ms(show), "<= 300 ms", show <= 0.300)


if __name__ == "__main__":
    main()
