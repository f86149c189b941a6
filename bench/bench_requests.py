"""Row 2 of issue 12: ExecutionBroker ``POST requests`` throughput against the same server's own
``GET api/status``, on one real ``jupyter server`` (goal: at least 30 %).

Both are measured in this run with the same client threads (keep-alive sessions) for the same
time, so the ratio says how much heavier an offer is than the lightest authenticated route of the
server, whatever the machine's load. The hosted platform has room for everything asked (a
1-core, 1-minute request; a short offer lifetime), so every answer is YES with one offer.

Usage: ``python bench/bench_requests.py [--clients 8] [--seconds 6]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import ROOT, figure, hosted_entry, jupyter_server, ms, percentile, write_platforms
from _load import checked, hammer

SCRIPT = ROOT / "tests" / "data" / "hosted" / "sum_numbers.py"


def request_in(root: Path, cores: int = 1, duration: str = "PT1M", start: str | None = None) -> dict:
    """A request for a script inside the server's root (where local files may come from)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / SCRIPT.name).write_bytes(SCRIPT.read_bytes())
    requested = {"duration": duration, **({"start": start} if start else {})}
    return {
        "executable": {"kind": "python-script", "location": str(root / SCRIPT.name)},
        "compute": {"cores": {"min": cores}, "memory": {"min": 1}},
        "schedule": {"requested": requested},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "server"
        entry = hosted_entry(
            "bench", cores=100_000, memory=100_000, offers=1, offer_ttl="PT20S", horizon="P2D", local_roots=[str(root)]
        )
        platforms = write_platforms(Path(scratch) / "platforms.yaml", [entry])
        request = request_in(root)
        with jupyter_server(root, platforms) as server:
            headers = {"Authorization": f"token {server.token}"}
            status_url = server.url + "api/status"
            requests_url = server.url + "execplanner/platforms/bench/requests"

            def status(session, _client):  # type: ignore[no-untyped-def]
                checked(session.get(status_url, headers=headers, timeout=60))

            def offer(session, _client):  # type: ignore[no-untyped-def]
                answer = checked(session.post(requests_url, json=request, headers=headers, timeout=60)).json()
                if answer.get("result") != "YES":
                    raise RuntimeError(f"not YES: {answer}")

            hammer(args.clients, 1.0, offer)  # warm up: the platform starts, the calendar loads
            hammer(args.clients, 1.0, status)
            gets, get_time, get_latencies, get_errors = hammer(args.clients, args.seconds, status)
            posts, post_time, post_latencies, post_errors = hammer(args.clients, args.seconds, offer)
    get_rate, post_rate = gets / get_time, posts / post_time
    print(
        f"   GET api/status: {get_rate:.0f} req/s (p50 {ms(percentile(get_latencies, 0.5))}); "
        f"POST requests: {post_rate:.0f} req/s (p50 {ms(percentile(post_latencies, 0.5))}, "
        f"p99 {ms(percentile(post_latencies, 0.99))}); {args.clients} clients, {args.seconds:g} s each; "
        f"errors {len(get_errors)} + {len(post_errors)} {(get_errors + post_errors)[:2]}"
    )
    ratio = post_rate / get_rate
    figure(
        "POST requests / GET api/status throughput",
        f"{ratio * 100:.1f} % ({post_rate:.0f} vs {get_rate:.0f} req/s)",
        ">= 30 %",
        ratio >= 0.30,
    )


if __name__ == "__main__":
    main()
