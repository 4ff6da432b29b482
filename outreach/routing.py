"""Which transport each (channel, target) uses, and why: the dispatcher's map.

A platform channel's target goes to the platform when its token is set, else
to the outbox; `why` says which, in words for `config check`, `send`, `report`
and `doctor`. Built in `channels/` (which knows the platforms) and handed to
the core, which only follows it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from outreach.channel import Channel, Markup, Rate

RouteKey = tuple[str, str]  # (channel, target)


@dataclass(frozen=True)
class Route:
    """The transport for one target of one channel."""

    channel: str
    target: str
    transport: Channel
    why: str  # e.g. "token in OUTREACH_FACEBOOK_PAGE_TOKEN" or "no token in ...: written to the outbox"
    to_platform: bool = False  # True when messages reach the platform itself, not the outbox standing in

    @property
    def label(self) -> str:
        """The target as people read it; a channel of subscribers has one route for all of them."""
        return "subscribers" if self.target == "*" else self.target

    def __str__(self) -> str:
        return f"{self.channel} → {self.label}: via {self.transport.name} ({self.why})"


@dataclass
class Routing:
    """Every configured target's route, and what the dispatcher needs per channel."""

    routes: Mapping[RouteKey, Route]
    markups: Mapping[str, Markup]  # how each channel's texts are marked up (its spec's)
    rates: Mapping[str, Rate]  # how fast each platform takes messages (its spec's, as configured)
    transports: list[Channel] = field(default_factory=list)  # to close, once each

    def __iter__(self) -> Iterator[Route]:
        return iter(self.routes.values())

    def get(self, channel: str, target: str) -> Route | None:
        """The route of a target, or None when the config no longer has it."""
        return self.routes.get((channel, target))

    async def close(self) -> None:
        """Close every transport's connections (call inside the loop that used them)."""
        for transport in self.transports:
            await transport.close()
