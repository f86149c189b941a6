"""Find moving groups in proper-motion space with k-means (after D. Crake's HDBSCAN clustering, 2022).

On the Gaia Data Mining Platform this analysis runs on billions of stars for hours. Here it runs on the
sample in this record, in seconds, so the booking story can be followed to the end.

    python clustering.py [--input gaia-sample.csv] [--groups 4] [--output clusters.csv]

The output goes to the ``outputs/`` folder (``$EXECPLANNER_OUTPUTS`` on a hosted platform, whose files
become the session's downloadable results).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import random
import statistics
from pathlib import Path


def read(path: str) -> list[tuple[float, float]]:
    with open(path, newline="") as handle:
        return [(float(row["pmra"]), float(row["pmdec"])) for row in csv.DictReader(handle) if float(row["parallax"]) > 1.0]


def kmeans(points: list[tuple[float, float]], k: int, rounds: int = 50, seed: int = 1) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    centres = rng.sample(points, k)
    for _ in range(rounds):
        groups: list[list[tuple[float, float]]] = [[] for _ in centres]
        for point in points:
            nearest = min(range(len(centres)), key=lambda i: math.dist(point, centres[i]))
            groups[nearest].append(point)
        moved = [
            (statistics.fmean(p[0] for p in group), statistics.fmean(p[1] for p in group)) if group else centre
            for group, centre in zip(groups, centres)
        ]
        if moved == centres:
            break
        centres = moved
    return centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", default="gaia-sample.csv")
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--output", default="clusters.csv")
    args = parser.parse_args()
    points = read(args.input)
    centres = kmeans(points, args.groups)
    outputs = Path(os.environ.get("EXECPLANNER_OUTPUTS", "outputs"))
    outputs.mkdir(parents=True, exist_ok=True)
    with open(outputs / args.output, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["pmra", "pmdec"])
        writer.writerows((round(a, 2), round(b, 2)) for a, b in centres)
    print(f"{len(points)} nearby stars, {len(centres)} groups written to {outputs / args.output}")
    for pmra, pmdec in sorted(centres):
        print(f"  group at pmra {pmra:+7.1f}, pmdec {pmdec:+7.1f} mas/yr")


if __name__ == "__main__":
    main()
