"""What the benchmark scripts share: the figure line, percentiles, a real jupyter server, PostgreSQL.

Every script prints its figures as ``<figure>: <value> (goal <goal>) load: <1-min loadavg>`` so
``bench/run_all`` and a reader see at once how far from the goal a figure is and how busy the
machine was. Figures are ratios or times measured within one run (the machines here are shared
and noisy); nothing here is a pass/fail test.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def load() -> str:
    """The 1-minute load average (the machine's business while the figure was measured)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def figure(name: str, value: str, goal: str, met: bool | None = None) -> None:
    """Print one figure line; ``met`` adds ``[met]`` / ``[NOT met]`` when the goal is a threshold."""
    verdict = "" if met is None else (" [met]" if met else " [NOT met]")
    print(f"{name}: {value} (goal {goal}) load: {load()}{verdict}", flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile by nearest rank (p99 of 100 values is the 99th)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def hosted_entry(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "title": f"{name} (benchmark)", "hosted": options}


def write_platforms(path: Path, entries: list[dict[str, Any]]) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"platforms": entries}))
    return path


@contextmanager
def jupyter_server(root: Path, platforms_file: Path, **kwargs: Any) -> Iterator[Any]:
    """A real ``jupyter server`` on 127.0.0.1 with the extension (tests/jupyter_live.py)."""
    from jupyter_live import run_jupyter_server

    with run_jupyter_server(root, platforms_file, **kwargs) as server:
        yield server


@contextmanager
def postgres() -> Iterator[str | None]:
    """A throw-away PostgreSQL on 127.0.0.1 (the tests' ``postgres_server``); None if unavailable."""
    from postgres_server import PostgresUnavailable, throwaway_postgres

    with ExitStack() as stack:
        try:
            url: str | None = stack.enter_context(throwaway_postgres(max_connections=200))
        except PostgresUnavailable:
            url = None
        yield url
