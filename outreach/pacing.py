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
more) and stamped when the send starts: the window counts real send times.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping

from outreach.channel import Rate

MARGIN = 0.002  # seconds: a send's start may trail its stamp by scheduling jitter
# A send reaches the platform a little after its stamp, later still when the loop is busy with
# hundreds a second; the platform's window counts arrivals. This share of the period is kept free.
SLACK = 0.02


class Slot:
    """One send's place in one or more windows; `stamp()` when the send starts."""

    def __init__(self) -> None:
        self.at = asyncio.get_running_loop().time()

    def stamp(self) -> None:
        """The send starts now: count it from now (later is always safe)."""
        self.at = asyncio.get_running_loop().time()


class MovingWindow:
    """At most `limit` sends in any `period` seconds."""

    def __init__(self, limit: int, period: float) -> None:
        self.limit, self.period = limit, period
        self.margin = max(MARGIN, SLACK * period)  # 20 ms in a second: 2 % under the limit, never over it
        self._slots: deque[Slot] = deque()

    def fits(self) -> bool:
        """Whether one more send fits now."""
        if len(self._slots) < self.limit:
            return True
        return asyncio.get_running_loop().time() >= self._slots[0].at + self.period + self.margin

    async def take(self, slot: Slot) -> None:
        """Wait until one more send fits, then count `slot` in."""
        loop = asyncio.get_running_loop()
        while len(self._slots) >= self.limit:
            ready = self._slots[0].at + self.period + self.margin
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
