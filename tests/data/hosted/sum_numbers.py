"""Sum the numbers in numbers.csv (staged next to this script) and write the total as an output."""

import csv
import os
import sys

with open("numbers.csv", newline="") as handle:
    total = sum(int(row["value"]) for row in csv.DictReader(handle))
label = sys.argv[1] if len(sys.argv) > 1 else "total"
print(f"{label}={total}")
print("cpus", sorted(os.sched_getaffinity(0)))
with open(os.path.join(os.environ["EXECPLANNER_OUTPUTS"], "total.txt"), "w") as handle:
    handle.write(f"{total}\n")
