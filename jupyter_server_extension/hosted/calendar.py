"""The booking calendar: capacity over time, and the earliest start times at which a request fits.

"When can I do this?" is answered here. Everything that holds capacity (bookings, live offers,
the provider's reservations) is a :class:`Hold`: an interval with an amount of cores, memory and
storage. A :class:`Profile` turns holds into a step function of usage over time (sorted
breakpoints, one sort per question), and :func:`find_slots` sweeps it once, left to right, with
a sliding-window maximum per resource, so finding the first fit costs O(breakpoints passed), not
O(bookings x candidates) as a scan of every booking for every candidate start would.

The earliest fit always starts at the earliest allowed time or at an instant where some usage
drops (a hold ends): if a window fits and usage did not drop at its start, the window one step
earlier fits too. So those instants are the only candidates.

This module is pure Python with no I/O, so it is tested and benchmarked on its own. Times are
seconds since the epoch (floats), which keeps the inner loops cheap.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter

__all__ = [
    "Capacity",
    "Hold",
    "Need",
    "Profile",
    "Slot",
    "find_slots",
    "from_seconds",
    "session_holds",
    "to_seconds",
]

RESOURCES = ("cores", "memory", "storage")
_EPSILON = 1e-6


def to_seconds(value: datetime) -> float:
    """An aware datetime as seconds since the epoch."""
    return value.timestamp()


def from_seconds(value: float) -> datetime:
    """Seconds since the epoch as an aware UTC datetime (microseconds kept)."""
    return datetime.fromtimestamp(value, tz=timezone.utc)


@dataclass(frozen=True, slots=True)
class Hold:
    """Capacity taken from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: float
    end: float
    cores: int = 0
    memory: int = 0
    storage: int = 0

    def amounts(self) -> tuple[int, int, int]:
        return self.cores, self.memory, self.storage


def session_holds(
    start: datetime, compute_end: datetime, storage_end: datetime, cores: int, memory: int, storage: int
) -> list[Hold]:
    """What a session holds: cores and memory until ``compute_end``, storage until ``storage_end``
    (one hold when storage ends with the compute, else two)."""
    begin, compute_until, storage_until = to_seconds(start), to_seconds(compute_end), to_seconds(storage_end)
    if storage and storage_until > compute_until:
        return [Hold(begin, compute_until, cores, memory, 0), Hold(begin, storage_until, 0, 0, storage)]
    return [Hold(begin, compute_until, cores, memory, storage)]


@dataclass(frozen=True, slots=True)
class Capacity:
    """What a pool has. ``None`` means the resource is not limited (and not tracked)."""

    cores: int | None
    memory: int | None
    storage: int | None

    def limits(self) -> tuple[int | None, int | None, int | None]:
        return self.cores, self.memory, self.storage


@dataclass(frozen=True, slots=True)
class Need:
    """What a request must have (minimums), what it could use (maxima), and for how long.

    ``duration`` is how long compute (cores, memory) is held; ``storage_duration`` how long the
    storage is held, from the same start (its lifetime, at least ``duration``).
    """

    cores: int
    memory: int
    storage: int
    cores_max: int
    memory_max: int
    storage_max: int
    duration: float
    storage_duration: float

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ValueError("a booking needs a positive duration")
        if self.storage_duration < self.duration:
            object.__setattr__(self, "storage_duration", self.duration)
        for name in RESOURCES:
            if getattr(self, f"{name}_max") < getattr(self, name):
                object.__setattr__(self, f"{name}_max", getattr(self, name))

    def minimums(self) -> tuple[int, int, int]:
        return self.cores, self.memory, self.storage

    def maxima(self) -> tuple[int, int, int]:
        return self.cores_max, self.memory_max, self.storage_max

    def windows(self) -> tuple[float, float, float]:
        return self.duration, self.duration, self.storage_duration


@dataclass(frozen=True, slots=True)
class Slot:
    """One fit: a start time and the amounts offered there (at least the minimums)."""

    start: float
    cores: int
    memory: int
    storage: int

    def holds(self, need: Need) -> list[Hold]:
        """The holds this slot takes: compute for the duration, storage for its lifetime."""
        compute_end = self.start + need.duration
        storage_end = self.start + need.storage_duration
        if storage_end <= compute_end:
            return [Hold(self.start, compute_end, self.cores, self.memory, self.storage)]
        return [
            Hold(self.start, compute_end, self.cores, self.memory, 0),
            Hold(self.start, storage_end, 0, 0, self.storage),
        ]


class Profile:
    """Usage of one pool over time: ``usage[r][i]`` holds on ``[times[i], times[i+1])``.

    Before the first breakpoint usage is zero; holds are half-open, so one ending at ``t`` and
    one starting at ``t`` never count together.
    """

    __slots__ = ("times", "usage")

    def __init__(self, times: list[float], usage: tuple[list[int], list[int], list[int]]) -> None:
        self.times = times
        self.usage = usage

    @classmethod
    def from_holds(cls, holds: Iterable[Hold]) -> Profile:
        """Build the step function with one sort of the hold boundaries."""
        valid = [hold for hold in holds if hold.end > hold.start]
        events = [(hold.start, hold.cores, hold.memory, hold.storage) for hold in valid]
        events.extend((hold.end, -hold.cores, -hold.memory, -hold.storage) for hold in valid)
        events.sort(key=itemgetter(0))
        times: list[float] = []
        cores: list[int] = []
        memory: list[int] = []
        storage: list[int] = []
        c = m = s = 0
        for time, dc, dm, ds in events:
            c += dc
            m += dm
            s += ds
            if times and times[-1] == time:
                cores[-1], memory[-1], storage[-1] = c, m, s
            else:
                times.append(time)
                cores.append(c)
                memory.append(m)
                storage.append(s)
        return cls(times, (cores, memory, storage))

    def __len__(self) -> int:
        return len(self.times)

    def _split(self, time: float) -> int:
        """The index of a breakpoint at ``time``, inserting one (same usage as before it) if needed."""
        index = bisect_left(self.times, time)
        if index < len(self.times) and self.times[index] == time:
            return index
        self.times.insert(index, time)
        for series in self.usage:
            series.insert(index, series[index - 1] if index > 0 else 0)
        return index

    def add(self, hold: Hold) -> None:
        """Count one more hold, in place (used for sibling offers while searching)."""
        if hold.end <= hold.start:
            return
        first = self._split(hold.start)
        last = self._split(hold.end)
        for series, amount in zip(self.usage, hold.amounts(), strict=True):
            if amount:
                for index in range(first, last):
                    series[index] += amount

    def peak(self, start: float, end: float) -> tuple[int, int, int]:
        """The most of each resource in use at any instant of ``[start, end)``."""
        if end <= start or not self.times:
            return 0, 0, 0
        first = max(bisect_right(self.times, start) - 1, 0)
        last = bisect_left(self.times, end)
        if last <= first:
            return 0, 0, 0
        return tuple(max(series[first:last]) for series in self.usage)  # type: ignore[return-value]

    def releases(self, after: float, until: float) -> Iterator[float]:
        """Instants in ``(after, until]`` at which some usage drops: the only later candidates."""
        times = self.times
        cores, memory, storage = self.usage
        index = bisect_right(times, after)
        while index < len(times) and times[index] <= until:
            if index == 0:
                index += 1
                continue
            previous = index - 1
            if cores[index] < cores[previous] or memory[index] < memory[previous] or storage[index] < storage[previous]:
                yield times[index]
            index += 1

    def busy_until(self) -> float | None:
        """When the last hold in the profile ends."""
        return self.times[-1] if self.times else None


class _WindowMax:
    """The maximum of a step function over ``[t, t + length)`` for increasing ``t``, in amortised O(1)."""

    __slots__ = ("times", "values", "length", "window", "right")

    def __init__(self, times: list[float], values: list[int], length: float, start: float) -> None:
        self.times = times
        self.values = values
        self.length = length
        self.window: deque[int] = deque()
        self.right = max(bisect_right(times, start) - 1, 0)

    def advance(self, at: float) -> int:
        times, values, window = self.times, self.values, self.window
        horizon = at + self.length
        count = len(times)
        right = self.right
        while right < count and times[right] < horizon:
            value = values[right]
            while window and values[window[-1]] <= value:
                window.pop()
            window.append(right)
            right += 1
        self.right = right
        while window and window[0] + 1 < count and times[window[0] + 1] <= at:
            window.popleft()
        return values[window[0]] if window else 0


def _candidates(profiles: Sequence[Profile], earliest: float, latest: float, strictly_after: bool) -> Iterator[float]:
    """``earliest`` (unless excluded), then every release instant of any profile, in order, once."""
    if not strictly_after:
        yield earliest
    previous = earliest
    for time in heapq.merge(*(profile.releases(earliest, latest) for profile in profiles)):
        if time > previous:
            previous = time
            yield time


def _first_fit(
    constraints: Sequence[tuple[Profile, Capacity]], need: Need, earliest: float, latest: float, strictly_after: bool
) -> Slot | None:
    minimums, maxima, windows = need.minimums(), need.maxima(), need.windows()
    tracked: list[tuple[int, int, _WindowMax]] = []  # (resource index, capacity, window)
    for profile, capacity in constraints:
        for index, limit in enumerate(capacity.limits()):
            if limit is None or maxima[index] == 0:
                continue
            tracked.append((index, limit, _WindowMax(profile.times, profile.usage[index], windows[index], earliest)))
    for start in _candidates([profile for profile, _ in constraints], earliest, latest, strictly_after):
        free = list(maxima)
        fits = True
        for index, limit, window in tracked:
            available = limit - window.advance(start)
            if available < minimums[index]:
                fits = False
                break
            if available < free[index]:
                free[index] = available
        if fits:
            return Slot(start, free[0], free[1], free[2])
    return None


def find_slots(
    constraints: Sequence[tuple[Profile, Capacity]],
    need: Need,
    earliest: float,
    latest: float,
    count: int,
) -> list[Slot]:
    """Up to ``count`` slots with distinct, increasing start times in ``[earliest, latest]``.

    Each slot meets ``need``'s minimums in every constraint (the platform's pool, and the user's
    allocation when there is one) for the whole duration, and offers up to the maxima. Each slot
    found is held before the next is searched, because sibling offers hold capacity together
    until one is accepted. The profiles are modified in place.
    """
    slots: list[Slot] = []
    start, strictly_after = earliest, False
    while len(slots) < count and start <= latest:
        slot = _first_fit(constraints, need, start, latest, strictly_after)
        if slot is None:
            break
        slots.append(slot)
        for profile, _ in constraints:
            for hold in slot.holds(need):
                profile.add(hold)
        start, strictly_after = slot.start, True
    return slots
