"""Sending at each platform's allowed rate: across a token, and into each target.

A broadcast has to run at the platform's limit, not under it (DESIGN §7), and
never over it: a 429 costs the whole token a pause. `aiolimiter` gives a leaky
bucket per key; the dispatcher waits on the channel's bucket and the target's.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiolimiter import AsyncLimiter

from outreach.channel import Rate


def _limiter(per_second: float, burst: int) -> AsyncLimiter:
    # `burst` messages may go at once; then one every 1/per_second seconds.
    return AsyncLimiter(max_rate=burst, time_period=burst / per_second)


class Pacer:
    """Waits until a message may go to a channel's target at the channel's rate."""

    def __init__(self, rates: Mapping[str, Rate]) -> None:
        self._rates = rates
        self._overall = {name: _limiter(rate.per_second, rate.burst) for name, rate in rates.items()}
        self._targets: dict[tuple[str, str], AsyncLimiter] = {}

    async def wait(self, channel: str, target: str) -> None:
        """Return when one more message to this target is within both rates."""
        rate = self._rates.get(channel)
        if rate is None:  # the outbox, or a channel without a published rate
            return
        if rate.per_target_per_second is not None:
            key = (channel, target)
            if key not in self._targets:
                self._targets[key] = _limiter(rate.per_target_per_second, rate.per_target_burst)
            await self._targets[key].acquire()
        await self._overall[channel].acquire()
