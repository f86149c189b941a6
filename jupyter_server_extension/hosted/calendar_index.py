"""An incremental booking calendar: loaded once, changed hold by hold, asked in O(log n + B) per probe.

:mod:`.calendar` rebuilds and re-sorts a :class:`~.calendar.Profile` from every hold on every
question, which costs O(n log n) per question: 2.4 s at 100,000 bookings. Here the usage of each
resource is kept as a step function that changes in place when a hold is added or removed, so a
question only pays for the time it looks at.

How (per resource, :class:`Steps`):

* usage is stored as *deltas* at breakpoints (``+amount`` where a hold starts, ``-amount`` where it
  ends); usage at ``t`` is the sum of the deltas at or before ``t``. Adding a hold is two point
  updates, so no lazy propagation is needed;
* the sorted breakpoints are cut into blocks of at most ``2 * BLOCK`` (a new breakpoint is a list
  insert into one small block, not a shift of the whole calendar), and a segment tree over the
  blocks keeps, per node, the sum of its deltas and the highest running sum inside it. That answers
  "the most in use over [a, b)" and "the last instant in [a, b) where more than L is in use" in
  O(log(n / BLOCK) + BLOCK) steps.

The first fit of a request (:func:`search`) jumps instead of sweeping: if the window ``[t, t + d)``
holds a blocked stretch (more in use than ``capacity - minimum``), no start before that stretch ends
can fit, so the next candidate is the end of the *last* blocked stretch in the window. Every blocked
stretch met after that lies beyond ``t + d``, so two jumps advance the start by at least ``d``: a
search costs O((span searched / duration + 1) x (log n + BLOCK)), whatever the number of bookings
outside that span, and finds exactly the start the sweep of :func:`.calendar.find_slots` finds
(tests compare the two, and a brute force, on random calendars).

:class:`BookingCalendar` is what a hosted platform keeps: the platform's usage, each user's usage
(for allocations), entries by key (a session's holds, replaced or removed as it changes), offers
that lapse at their expiry time, and an *overlay* of holds an executor reports per question
(``external_holds``: Slurm jobs of other users) applied as a difference with the previous overlay, so
1,000 unchanged Slurm jobs cost a set comparison, not 1,000 updates. Like :mod:`.calendar`, this is
pure Python with no I/O, and times are seconds since the epoch.
"""

from __future__ import annotations

import heapq
import threading
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from .calendar import Capacity, Hold, Need, Slot

__all__ = ["BLOCK", "BookingCalendar", "Steps", "Usage", "search"]

#: Target block size: blocks hold BLOCK..2*BLOCK breakpoints (a split halves one that grows past).
BLOCK = 48
_NONE = float("-inf")


class Steps:
    """One resource's usage over time, as deltas at breakpoints in blocks under a segment tree."""

    __slots__ = ("keys", "deltas", "sums", "highs", "firsts", "size", "tsum", "tmax")

    def __init__(self, deltas: Iterable[tuple[float, int]] = ()) -> None:
        merged: dict[float, int] = {}
        for time, delta in deltas:
            merged[time] = merged.get(time, 0) + delta
        items = sorted((time, delta) for time, delta in merged.items() if delta)
        self.keys: list[list[float]] = []
        self.deltas: list[list[int]] = []
        for index in range(0, len(items), BLOCK):
            chunk = items[index : index + BLOCK]
            self.keys.append([time for time, _ in chunk])
            self.deltas.append([delta for _, delta in chunk])
        summaries = [_summary(deltas) for deltas in self.deltas]
        self.sums = [total for total, _ in summaries]
        self.highs = [high for _, high in summaries]
        self._rebuild()

    # ------------------------------------------------------------------------ structure

    def _rebuild(self) -> None:
        """Drop empty blocks, set the block boundaries and rebuild the tree: O(blocks), after a
        split or a bulk load (block summaries are kept, not recomputed)."""
        kept = [index for index, keys in enumerate(self.keys) if keys]
        if len(kept) != len(self.keys):
            self.keys = [self.keys[index] for index in kept]
            self.deltas = [self.deltas[index] for index in kept]
            self.sums = [self.sums[index] for index in kept]
            self.highs = [self.highs[index] for index in kept]
        if not self.keys:
            self.keys, self.deltas, self.sums, self.highs = [[]], [[]], [0], [_NONE]
        # block b holds the times in [firsts[b], firsts[b + 1]); the first block everything before
        self.firsts = [_NONE] + [keys[0] for keys in self.keys[1:]]
        size = 1
        while size < len(self.keys):
            size *= 2
        self.size = size
        self.tsum = [0] * size + self.sums + [0] * (size - len(self.sums))
        self.tmax: list[float] = [_NONE] * size + self.highs + [_NONE] * (size - len(self.highs))
        tsum, tmax = self.tsum, self.tmax
        for node in range(size - 1, 0, -1):
            left = 2 * node
            tsum[node] = tsum[left] + tsum[left + 1]
            tmax[node] = max(tmax[left], tsum[left] + tmax[left + 1])

    def _update(self, block: int) -> None:
        total, high = _summary(self.deltas[block])
        self.sums[block], self.highs[block] = total, high
        node = self.size + block
        tsum, tmax = self.tsum, self.tmax
        tsum[node], tmax[node] = total, high
        node //= 2
        while node:
            left = 2 * node
            tsum[node] = tsum[left] + tsum[left + 1]
            tmax[node] = max(tmax[left], tsum[left] + tmax[left + 1])
            node //= 2

    def _block(self, time: float) -> int:
        """The block whose range holds ``time`` (empty blocks keep their place until a rebuild)."""
        return bisect_right(self.firsts, time) - 1

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.keys)

    def add(self, time: float, delta: int) -> None:
        """Add ``delta`` at ``time`` (usage from ``time`` on changes by ``delta``)."""
        if not delta:
            return
        block = self._block(time)
        keys, deltas = self.keys[block], self.deltas[block]
        index = bisect_left(keys, time)
        if index < len(keys) and keys[index] == time:
            value = deltas[index] + delta
            if value:
                deltas[index] = value
            else:
                del keys[index]
                del deltas[index]
        else:
            keys.insert(index, time)
            deltas.insert(index, delta)
            if len(keys) > 2 * BLOCK:
                half = len(keys) // 2
                self.keys[block + 1 : block + 1] = [keys[half:]]
                self.deltas[block + 1 : block + 1] = [deltas[half:]]
                del keys[half:]
                del deltas[half:]
                self.sums[block : block + 1] = [0, 0]
                self.highs[block : block + 1] = [_NONE, _NONE]
                for part in (block, block + 1):
                    self.sums[part], self.highs[part] = _summary(self.deltas[part])
                self._rebuild()
                return
        self._update(block)

    # -------------------------------------------------------------------------- queries

    def _prefix(self, block: int) -> int:
        """The sum of every delta in blocks before ``block``: usage where that block begins."""
        total = 0
        low, high = self.size, self.size + block
        tsum = self.tsum
        while low < high:
            if low & 1:
                total += tsum[low]
                low += 1
            if high & 1:
                high -= 1
                total += tsum[high]
            low //= 2
            high //= 2
        return total

    def at(self, time: float) -> int:
        """Usage in effect at ``time``."""
        block = self._block(time)
        keys = self.keys[block]
        return self._prefix(block) + sum(self.deltas[block][: bisect_right(keys, time)])

    def peak(self, start: float, end: float) -> int:
        """The most in use at any instant of ``[start, end)`` (0 for an empty interval before any hold)."""
        if end <= start:
            return 0
        first, last = self._block(start), self._block(end)
        keys, deltas = self.keys[first], self.deltas[first]
        running = self._prefix(first)
        index = bisect_right(keys, start)
        running += sum(deltas[:index])
        best = running
        stop = bisect_left(keys, end) if first == last else len(keys)
        for position in range(index, stop):
            running += deltas[position]
            if running > best:
                best = running
        if first == last:
            return best
        # whole blocks between, left to right, as (sum, highest running sum) pairs
        for node in self._nodes(first + 1, last):
            if running + self.tmax[node] > best:
                best = running + self.tmax[node]
            running += self.tsum[node]
        keys, deltas = self.keys[last], self.deltas[last]
        for position in range(bisect_left(keys, end)):
            running += deltas[position]
            if running > best:
                best = running
        return best

    def _nodes(self, low: int, high: int) -> list[int]:
        """Tree nodes covering blocks ``[low, high)``, left to right."""
        left: list[int] = []
        right: list[int] = []
        low += self.size
        high += self.size
        while low < high:
            if low & 1:
                left.append(low)
                low += 1
            if high & 1:
                high -= 1
                right.append(high)
            low //= 2
            high //= 2
        return left + right[::-1]

    def _next_key(self, block: int, index: int) -> float:
        """The breakpoint after position ``index`` of ``block`` (``inf`` if none)."""
        keys = self.keys[block]
        if index + 1 < len(keys):
            return keys[index + 1]
        for later in range(block + 1, len(self.keys)):
            if self.keys[later]:
                return self.keys[later][0]
        return float("inf")

    def _last_in_block(self, block: int, running: int, low: int, high: int, limit: int) -> int:
        """The last position in ``[low, high)`` of ``block`` whose running usage exceeds ``limit``
        (``running`` is the usage before position ``low``), or -1."""
        deltas = self.deltas[block]
        found = -1
        for position in range(low, high):
            running += deltas[position]
            if running > limit:
                found = position
        return found

    def _last_block(
        self, node: int, node_low: int, node_high: int, low: int, high: int, offset: int, limit: int
    ) -> tuple[int, int]:
        """The last block in ``[low, high)`` under ``node`` where usage exceeds ``limit``, with the
        usage where it begins; ``(-1, 0)`` if none. ``offset`` is the usage where ``node`` begins."""
        if node_high <= low or high <= node_low:
            return -1, 0
        inside = low <= node_low and node_high <= high
        if inside and offset + self.tmax[node] <= limit:
            return -1, 0
        if node >= self.size:
            return node - self.size, offset
        middle = (node_low + node_high) // 2
        right = self._last_block(2 * node + 1, middle, node_high, low, high, offset + self.tsum[2 * node], limit)
        if right[0] >= 0:
            return right
        return self._last_block(2 * node, node_low, middle, low, high, offset, limit)

    def release_after_last_above(self, start: float, end: float, limit: int) -> float | None:
        """Where the last stretch of ``[start, end)`` with more than ``limit`` in use ends, or None.

        No window that contains any of that stretch fits, so the next candidate start is there.
        """
        first, last = self._block(start), self._block(end)
        # breakpoints strictly inside (start, end), scanned from the right: the last block first
        if last > first:
            keys = self.keys[last]
            stop = bisect_left(keys, end)
            if stop:
                position = self._last_in_block(last, self._prefix(last), 0, stop, limit)
                if position >= 0:
                    return self._next_key(last, position)
            if last > first + 1:
                block, offset = self._last_block(1, 0, self.size, first + 1, last, self._prefix(0), limit)
                if block >= 0:
                    position = self._last_in_block(block, offset, 0, len(self.keys[block]), limit)
                    return self._next_key(block, position)
        keys, deltas = self.keys[first], self.deltas[first]
        index = bisect_right(keys, start)
        running = self._prefix(first) + sum(deltas[:index])
        stop = bisect_left(keys, end) if first == last else len(keys)
        position = self._last_in_block(first, running, index, stop, limit)
        if position >= 0:
            return self._next_key(first, position)
        if running > limit:  # the stretch in effect at ``start`` itself
            return self._next_key(first, index - 1)
        return None

    def next_drop(self, after: float) -> float:
        """The first breakpoint after ``after`` where usage drops (``inf`` if none): a release."""
        block = self._block(after)
        index = bisect_right(self.keys[block], after)
        while block < len(self.keys):
            deltas = self.deltas[block]
            for position in range(index, len(deltas)):
                if deltas[position] < 0:
                    return self.keys[block][position]
            block += 1
            index = 0
        return float("inf")

    def breakpoints(self, start: float, end: float) -> list[float]:
        """Breakpoints in ``(start, end)``, in order (for drawing the calendar)."""
        found: list[float] = []
        for block in range(self._block(start), self._block(end) + 1):
            keys = self.keys[block]
            found.extend(keys[bisect_right(keys, start) : bisect_left(keys, end)])
        return found


def _summary(deltas: list[int]) -> tuple[int, float]:
    running, best = 0, _NONE
    for delta in deltas:
        running += delta
        if running > best:
            best = running
    return running, best


class Usage:
    """Cores, memory and storage over time: three :class:`Steps` changed together by holds."""

    __slots__ = ("steps",)

    def __init__(self, holds: Iterable[Hold] = ()) -> None:
        events: tuple[list[tuple[float, int]], ...] = ([], [], [])
        for hold in holds:
            if hold.end > hold.start:
                for series, amount in zip(events, hold.amounts(), strict=True):
                    if amount:
                        series.append((hold.start, amount))
                        series.append((hold.end, -amount))
        self.steps = tuple(Steps(series) for series in events)

    def add(self, hold: Hold, sign: int = 1) -> None:
        if hold.end <= hold.start:
            return
        for steps, amount in zip(self.steps, hold.amounts(), strict=True):
            if amount:
                steps.add(hold.start, sign * amount)
                steps.add(hold.end, -sign * amount)

    def remove(self, hold: Hold) -> None:
        self.add(hold, -1)

    def peak(self, start: float, end: float) -> tuple[int, int, int]:
        return tuple(steps.peak(start, end) for steps in self.steps)  # type: ignore[return-value]

    def empty(self) -> bool:
        return all(len(steps) == 0 for steps in self.steps)


def search(
    constraints: Sequence[tuple[Usage, Capacity]],
    need: Need,
    earliest: float,
    latest: float,
    count: int,
) -> list[Slot]:
    """Up to ``count`` slots with increasing starts in ``[earliest, latest]``, as :func:`.calendar.find_slots`.

    Each slot found is held in every constraint before the next is searched (sibling offers hold
    capacity together), and those holds are taken away again before returning: the caller records
    the offers, and the calendar learns them from there.
    """
    slots: list[Slot] = []
    held: list[tuple[Usage, Hold]] = []
    try:
        start, strictly_after = earliest, False
        while len(slots) < count and start <= latest:
            slot = _first_fit(constraints, need, start, latest, strictly_after)
            if slot is None:
                break
            slots.append(slot)
            for usage, _ in constraints:
                for hold in slot.holds(need):
                    usage.add(hold)
                    held.append((usage, hold))
            start, strictly_after = slot.start, True
    finally:
        for usage, hold in reversed(held):
            usage.remove(hold)
    return slots


def _first_fit(
    constraints: Sequence[tuple[Usage, Capacity]], need: Need, earliest: float, latest: float, strictly_after: bool
) -> Slot | None:
    minimums, maxima, windows = need.minimums(), need.maxima(), need.windows()
    tracked: list[tuple[Steps, int, float]] = []  # (steps, most that may be in use, window length)
    for usage, capacity in constraints:
        for index, limit in enumerate(capacity.limits()):
            if limit is None or maxima[index] == 0:
                continue
            if limit < minimums[index]:
                return None
            tracked.append((usage.steps[index], limit - minimums[index], windows[index]))
    if strictly_after:
        # after a slot, the sweep's candidates are the instants where some usage drops
        start = min(steps.next_drop(earliest) for usage, _ in constraints for steps in usage.steps)
    else:
        start = earliest
    while start <= latest:
        moved = False
        for steps, allowed, length in tracked:
            release = steps.release_after_last_above(start, start + length, allowed)
            if release is not None:
                start = release
                moved = True
        if not moved:
            free = list(maxima)
            for usage, capacity in constraints:
                for index, limit in enumerate(capacity.limits()):
                    if limit is None or maxima[index] == 0:
                        continue
                    available = limit - usage.steps[index].peak(start, start + windows[index])
                    free[index] = min(free[index], available)
            return Slot(start, free[0], free[1], free[2])
    return None


@dataclass
class _Entry:
    holds: tuple[Hold, ...]
    owner: Hashable
    expires: float | None


@dataclass
class BookingCalendar:
    """What one hosted platform holds, kept in memory: platform usage, per-user usage, entries by key.

    Thread-safe through one lock (:attr:`lock`); a search holds it for its whole length, so holds
    found for sibling offers are never seen by another question.
    """

    usage: Usage = field(default_factory=Usage)
    owners: dict[Hashable, Usage] = field(default_factory=dict)
    entries: dict[Hashable, _Entry] = field(default_factory=dict)
    overlay: Counter[Hold] = field(default_factory=Counter)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _expiry: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _ends: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _sequence: int = 0

    @classmethod
    def load(cls, entries: Iterable[tuple[Hashable, Sequence[Hold], str | None, float | None]]) -> BookingCalendar:
        """Build from rows (key, holds, owner, expires) in one sort per resource (after a restart)."""
        calendar = cls()
        every: list[Hold] = []
        for key, holds, owner, expires in entries:
            entry = _Entry(tuple(holds), owner, expires)
            calendar.entries[key] = entry
            every.extend(entry.holds)
            calendar._schedule(key, entry)
        calendar.usage = Usage(every)
        return calendar

    def _schedule(self, key: Hashable, entry: _Entry) -> None:
        """Remember when ``key`` lapses (an offer) and when it is over (so the past is dropped)."""
        self._sequence += 1
        if len(self._ends) > 2 * len(self.entries) + 1024:  # replaced entries leave stale items: compact
            self._compact()
        if entry.expires is not None:
            heapq.heappush(self._expiry, (entry.expires, self._sequence, key))
        if entry.holds:
            heapq.heappush(self._ends, (max(hold.end for hold in entry.holds), self._sequence, key))

    def _compact(self) -> None:
        """Rebuild both heaps from the live entries (stale items of replaced entries are dropped)."""
        self._expiry = [
            (entry.expires, index, key)
            for index, (key, entry) in enumerate(self.entries.items())
            if entry.expires is not None
        ]
        self._ends = [
            (max(hold.end for hold in entry.holds), index, key)
            for index, (key, entry) in enumerate(self.entries.items())
            if entry.holds
        ]
        heapq.heapify(self._expiry)
        heapq.heapify(self._ends)
        self._sequence = len(self.entries)

    def _owner(self, owner: Hashable) -> Usage:
        """``owner``'s usage, built from the entries the first time an allocation asks for it (most
        platforms have no allocations: a restart then loads one structure, not two)."""
        usage = self.owners.get(owner)
        if usage is None:
            mine = (hold for entry in self.entries.values() if entry.owner == owner for hold in entry.holds)
            usage = self.owners[owner] = Usage(mine)
        return usage

    def put(self, key: Hashable, holds: Sequence[Hold], owner: Hashable = None, expires: float | None = None) -> None:
        """Set what ``key`` (a session, a reservation) holds, replacing what it held before."""
        with self.lock:
            self.discard(key)
            entry = _Entry(tuple(holds), owner, expires)
            self.entries[key] = entry
            mine = self.owners.get(owner)  # kept up to date only once built
            for hold in entry.holds:
                self.usage.add(hold)
                if mine is not None:
                    mine.add(hold)
            self._schedule(key, entry)

    def discard(self, key: Hashable) -> None:
        """Forget what ``key`` held (rejected, expired, cancelled, ended); harmless if unknown."""
        with self.lock:
            entry = self.entries.pop(key, None)
            if entry is None:
                return
            mine = self.owners.get(entry.owner)
            for hold in entry.holds:
                self.usage.remove(hold)
                if mine is not None:
                    mine.remove(hold)
            if mine is not None and mine.empty():
                self.owners.pop(entry.owner, None)

    def expire(self, now: float) -> int:
        """Drop the offers whose expiry time has come (an offer holds while ``expires > now``), and
        entries wholly in the past (no question looks there; a long-running server stays small)."""
        dropped = 0
        with self.lock:
            while self._expiry and self._expiry[0][0] <= now:
                expires, _, key = heapq.heappop(self._expiry)
                entry = self.entries.get(key)
                if entry is not None and entry.expires == expires:
                    self.discard(key)
                    dropped += 1
            while self._ends and self._ends[0][0] <= now:
                end, _, key = heapq.heappop(self._ends)
                entry = self.entries.get(key)
                if entry is not None and entry.holds and max(hold.end for hold in entry.holds) == end:
                    self.discard(key)
        return dropped

    def set_overlay(self, holds: Iterable[Hold]) -> int:
        """Make the executor's load (``external_holds``) exactly ``holds``; return how many holds changed.

        Applied as the difference with the previous overlay, so a set that barely changes between
        questions costs a comparison, not a rebuild.
        """
        wanted = Counter(hold for hold in holds if hold.end > hold.start)
        with self.lock:
            gone = self.overlay - wanted
            new = wanted - self.overlay
            for hold, times in gone.items():
                for _ in range(times):
                    self.usage.remove(hold)
            for hold, times in new.items():
                for _ in range(times):
                    self.usage.add(hold)
            self.overlay = wanted
            return sum(gone.values()) + sum(new.values())

    def find_slots(
        self,
        need: Need,
        capacity: Capacity,
        earliest: float,
        latest: float,
        count: int,
        *,
        owner: str | None = None,
        allocation: Capacity | None = None,
        now: float | None = None,
    ) -> list[Slot]:
        """Up to ``count`` fits on the platform (and within ``owner``'s ``allocation``, if any)."""
        with self.lock:
            if now is not None:
                self.expire(now)
            constraints: list[tuple[Usage, Capacity]] = [(self.usage, capacity)]
            if allocation is not None:
                constraints.append((self._owner(owner), allocation))
            try:
                return search(constraints, need, earliest, latest, count)
            finally:
                if allocation is not None and self._owner(owner).empty():
                    self.owners.pop(owner, None)

    def peak(
        self, start: float, end: float, owner: str | None = None, *, by_owner: bool = False
    ) -> tuple[int, int, int]:
        """The most of each resource held at any instant of ``[start, end)``."""
        with self.lock:
            return (self._owner(owner) if by_owner else self.usage).peak(start, end)

    def peak_without(
        self, key: Hashable, start: float, end: float, owner: str | None = None, *, by_owner: bool = False
    ) -> tuple[int, int, int]:
        """:meth:`peak` as if ``key`` held nothing: what everything else holds where ``key`` would
        go (the check before booking an offer that already holds its own slot)."""
        with self.lock:
            usage = self._owner(owner) if by_owner else self.usage
            entry = self.entries.get(key)
            mine = entry.holds if entry is not None and (not by_owner or entry.owner == owner) else ()
            for hold in mine:
                usage.remove(hold)
            try:
                return usage.peak(start, end)
            finally:
                for hold in mine:
                    usage.add(hold)
                if by_owner and usage.empty():
                    self.owners.pop(owner, None)
