"""Sleeps far longer than its booked slot, writing its PID first so a test can check it was stopped."""

import os
import time

with open(os.path.join(os.environ["EXECPLANNER_OUTPUTS"], "pid.txt"), "w") as handle:
    handle.write(str(os.getpid()))
print("sleeping", flush=True)
time.sleep(60)
print("woke up: the slot was not enforced")
