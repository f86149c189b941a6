"""Row 6 of issue 12: how much the server's memory (RSS) grows over 10,000 mixed requests, and
whether it is flat after warm-up (goal: < 20 MB in all, flat after warm-up).

A real ``jupyter server`` serves one hosted platform and one static platform. Four client threads
send a fixed mix: ``GET api/status``, ``GET execplanner/api/platforms``, ``POST requests`` on the
hosted platform, ``GET offersets/{uuid}``, ``POST sessions/{uuid}`` (reject), the platform's calendar,
a federation ``POST execplanner/api/offers``, and one bad request (a 400). RSS is read (psutil) after
the first 10 % of the requests (the warm-up: imports, caches, pools) and every 10 % after that.
Growth = end - after warm-up; flatness = growth over the last half.

Usage: ``python bench/bench_rss.py [--requests 10000] [--clients 4]``
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import threading
from pathlib import Path

import psutil
import requests
from _common import figure, hosted_entry, jupyter_server, write_platforms
from _load import checked
from bench_requests import request_in

MB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument(
        "--skip",
        default="",
        help="leave out parts of the mix (to find what grows): " + "status,platforms,offers,calendar,federation,bad",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "server"
        hosted = hosted_entry(
            "bench", cores=100_000, memory=100_000, offers=2, offer_ttl="PT30S", horizon="P2D", local_roots=[str(root)]
        )
        static = {"name": "static", "title": "A static platform", "static": {"accepts": ["python-script"], "cores": 8}}
        platforms = write_platforms(Path(scratch) / "platforms.yaml", [hosted, static])
        request = request_in(root)
        with jupyter_server(root, platforms) as server:
            process = psutil.Process(server.pid)
            headers = {"Authorization": f"token {server.token}"}
            base = server.url
            broker = base + "execplanner/platforms/bench/"
            reject = {"kind": "uri:enum-value-update", "path": "phase", "value": "REJECTED"}

            def offers_flow(session: requests.Session) -> None:
                answer = checked(session.post(broker + "requests", json=request, headers=headers, timeout=60)).json()
                checked(session.get(broker + f"offersets/{answer['meta']['uuid']}", headers=headers, timeout=60))
                for offer in answer.get("offers", [])[:1]:
                    url = broker + f"sessions/{offer['meta']['uuid']}"
                    checked(session.post(url, json=reject, headers=headers, timeout=60))

            calls = {
                "status": lambda session: checked(session.get(base + "api/status", headers=headers, timeout=60)),
                "platforms": lambda session: checked(
                    session.get(base + "execplanner/api/platforms", headers=headers, timeout=60)
                ),
                "offers": offers_flow,  # three requests (four with the reject)
                "calendar": lambda session: checked(
                    session.get(base + "execplanner/api/platforms/bench/calendar?hours=6", headers=headers, timeout=60)
                ),
                "federation": lambda session: checked(
                    session.post(base + "execplanner/api/offers", json=request, headers=headers, timeout=60)
                ),
                "bad": lambda session: checked(
                    session.post(broker + "requests", json={"executable": {"kind": 7}}, headers=headers, timeout=60),
                    400,
                ),
            }
            chosen = [calls[name] for name in calls if name not in args.skip.split(",")]

            def mix(session: requests.Session) -> None:
                for call in chosen:
                    call(session)

            per_mix = len(chosen) + (3 if offers_flow in chosen else 0)  # requests per mix
            mixes = max(1, args.requests // per_mix)
            counter = itertools.count()
            samples: list[tuple[int, float]] = []
            lock = threading.Lock()
            step = max(1, mixes // 10)
            errors: list[str] = []

            def worker() -> None:
                with requests.Session() as session:
                    while (index := next(counter)) < mixes:
                        try:
                            mix(session)
                        except Exception as error:
                            errors.append(repr(error)[:200])
                        if (index + 1) % step == 0:
                            with lock:
                                samples.append(((index + 1) * per_mix, process.memory_info().rss / MB))

            threads = [threading.Thread(target=worker) for _ in range(args.clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(1800)
            samples.sort()
    warm, end = samples[0][1], samples[-1][1]
    middle = samples[len(samples) // 2][1]
    print("   RSS (MB) by requests: " + ", ".join(f"{count}: {rss:.1f}" for count, rss in samples))
    if errors:
        print(f"   {len(errors)} mixes failed, first: {errors[0]}")
    growth = end - warm
    figure(
        f"server RSS growth over {mixes * per_mix:,} mixed requests after warm-up",
        f"{growth:.1f} MB",
        "< 20 MB",
        growth < 20 and not errors,
    )
    figure("server RSS growth over the last half", f"{end - middle:.1f} MB", "flat (~0)")


if __name__ == "__main__":
    main()
