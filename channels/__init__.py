"""Platform adapters, one module each, behind `outreach.channel.Channel`.

`ADAPTERS` maps a channel name to a factory that returns an adapter, or None
when the platform's token is not set; such channels write to the outbox instead.
Facebook and Telegram adapters register here when they land.
"""

from __future__ import annotations

from collections.abc import Callable

from channels.outbox import OutboxChannel
from outreach.channel import Channel
from outreach.config import Settings

ADAPTERS: dict[str, Callable[[Settings], Channel | None]] = {}


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The transport each enabled channel uses: its adapter, or the outbox."""
    outbox = OutboxChannel(settings.schedule.channels.outbox.dir)
    chosen: dict[str, Channel] = {}
    for name in settings.schedule.channels.enabled():
        factory = ADAPTERS.get(name)
        chosen[name] = (factory(settings) if factory else None) or outbox
    return chosen
