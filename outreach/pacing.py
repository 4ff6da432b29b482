"""Sending at each platform's allowed rate: across a token, and into each target.

A broadcast has to run at the platform's limit, not under it (DESIGN §7), and
never over it: a 429 costs the whole token a pause. Platforms count messages in
a moving window ("30 a second", "20 a minute into one group"), so that is what
is kept here: at most `burst` messages in any `burst / per_second` seconds.

Written here rather than taken from a library: aiolimiter (python-telegram-bot's)
is a leaky bucket, which lets up to twice the burst through in the first window
and, with a small burst, never makes up a late wake-up; `limits` keeps whole-second
windows only and cannot move a slot to the moment its send really starts. A slot
is taken before the delivery is claimed (so a cancelled campaign sends nothing
more), stamped when the send starts, and moved when its answer comes to the
latest moment the platform can have counted it: the answer's time less the
fastest round trip seen lately (`RoundTrips`). A fixed network delay shifts every
arrival alike and costs nothing; a request that reached the platform late (a
busy machine, a queue on the way) is counted late here too, so the window never
runs ahead of the platform's: a 429 costs a whole bot a second or more.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

from outreach.channel import Rate

MARGIN = 0.01  # seconds: what the estimate of a send's arrival may miss by (1 % of a one-second window)


class Slot:
    """One send's place in one or more windows; `stamp()` when the send starts."""

    def __init__(self) -> None:
        self.at = asyncio.get_running_loop().time()

    def stamp(self, at: float | None = None) -> None:
        """Count the send from now (its start), or from `at` when that is later: later is always safe."""
        now = asyncio.get_running_loop().time()
        self.at = max(self.at, now if at is None else min(at, now))


class MovingWindow:
    """At most `limit` sends in any `period` seconds."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self._slots: deque[Slot] = deque()

    def fits(self) -> bool:
        """Whether one more send fits now."""
        if len(self._slots) < self.limit:
            return True
        return asyncio.get_running_loop().time() >= self._slots[0].at + self.period + MARGIN

    async def take(self, slot: Slot) -> None:
        """Wait until one more send fits, then count `slot` in."""
        loop = asyncio.get_running_loop()
        while len(self._slots) >= self.limit:
            ready = self._slots[0].at + self.period + MARGIN
            if loop.time() >= ready:
                break
            await asyncio.sleep(ready - loop.time())
        self.add(slot)

    def add(self, slot: Slot) -> None:
        """Count `slot` in (it fits: see `fits`)."""
        if len(self._slots) >= self.limit:
            self._slots.popleft()
        slot.at = max(slot.at, asyncio.get_running_loop().time())
        self._slots.append(slot)


class RoundTrips:
    """The fastest round trip per channel over the last minute or two: the part of any answer's
    delay that is the network's fixed cost, not a request arriving late."""

    HORIZON = 60.0  # seconds a minimum is trusted: the network may change

    def __init__(self) -> None:
        self._now: dict[str, tuple[float, float]] = {}  # channel -> (this period's start, its fastest)
        self._before: dict[str, float] = {}  # the fastest of the period before

    def seen(self, channel: str, seconds: float) -> None:
        """One send's round trip."""
        clock = asyncio.get_running_loop().time()
        started, fastest = self._now.get(channel, (clock, seconds))
        if clock - started > self.HORIZON:
            self._before[channel] = fastest
            started, fastest = clock, seconds
        self._now[channel] = (started, min(fastest, seconds))

    def fastest(self, channel: str) -> float:
        """The fastest round trip lately (0 before any answer)."""
        now = self._now.get(channel)
        if now is None:
            return 0.0
        return min(now[1], self._before.get(channel, now[1]))


def window(per_second: float, burst: int) -> MovingWindow:
    """`burst` sends in any `burst / per_second` seconds."""
    return MovingWindow(burst, burst / per_second)


class Pacer:
    """Hands out slots within a channel's windows: its token's, and each target's."""

    def __init__(self, rates: Mapping[str, Rate]) -> None:
        self._rates = rates
        self._overall = {name: window(rate.per_second, rate.burst) for name, rate in rates.items()}
        self._targets: dict[tuple[str, str], MovingWindow] = {}

    async def wait(self, channel: str, target: str) -> Slot:
        """Return a slot when one more send to this target fits in both windows; stamp it when sending."""
        slot = Slot()
        rate = self._rates.get(channel)
        if rate is None:  # the outbox, or a channel without a published rate
            return slot
        if rate.per_target_per_second is not None:
            key = (channel, target)
            if key not in self._targets:
                self._targets[key] = window(rate.per_target_per_second, rate.per_target_burst)
            await self._targets[key].take(slot)
        await self._overall[channel].take(slot)
        return slot

    def free(self, channel: str, target: str) -> Slot | None:
        """A slot if one more send to this target fits in both windows now, without waiting; else None."""
        windows = [self._targets.get((channel, target)), self._overall.get(channel)]
        if not all(each is None or each.fits() for each in windows):
            return None
        slot = Slot()
        for each in windows:
            if each is not None:
                each.add(slot)
        return slot
