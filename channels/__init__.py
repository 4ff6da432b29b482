"""Platform adapters, one module each, and the registry of their specs.

Adding a platform is one module (its `SPEC`: limits, rate, settings, token
variable, factory) and one line in `SPECS`. The core never imports this package:
`cli.py` hands what it needs (settings models, limits, the routing) to the core.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from channels import facebook, telegram
from channels.outbox import OutboxChannel
from outreach.channel import Channel, ChannelLimits, ChannelSpec
from outreach.channel_config import ChannelSettings, Target
from outreach.config import Settings
from outreach.routing import Route, Routing

SPECS: dict[str, ChannelSpec] = {spec.name: spec for spec in (facebook.SPEC, telegram.SPEC)}
SETTINGS_MODELS: dict[str, type[ChannelSettings]] = {name: spec.settings for name, spec in SPECS.items()}
LIMITS: dict[str, ChannelLimits] = {name: spec.limits for name, spec in SPECS.items()}


def token_variable(spec: ChannelSpec, target: Target) -> str:
    """The environment variable that holds a target's token: its own, else the platform's."""
    return target.token_env or spec.secrets[0]


def variable_for(channel: str, target: Target) -> str:
    """The token variable of a target of a channel named in the registry."""
    return token_variable(SPECS[channel], target)


def build_routing(settings: Settings) -> Routing:
    """Each enabled target's transport: its platform when its token is set, else the outbox."""
    outbox = OutboxChannel(settings.schedule.channels.outbox.dir)
    routes: dict[tuple[str, str], Route] = {}
    transports: list[Channel] = [outbox]
    enabled = settings.schedule.channels.enabled()
    for name, configured in enabled.items():
        spec = SPECS[name]
        tokens: dict[str, SecretStr] = {}
        reasons: dict[str, str] = {}
        for target in configured.targets:
            variable = token_variable(spec, target)
            token = settings.secrets.get(variable)
            if token is not None:
                tokens[target.id] = token
                reasons[target.id] = f"token in {variable}"
            else:
                reasons[target.id] = f"no token in {variable}"
        platform = spec.build(configured, tokens) if tokens else None
        if platform is not None:
            transports.append(platform)
        for target in configured.targets:
            transport: Channel = platform if platform is not None and target.id in tokens else outbox
            why = f"{reasons[target.id]}: {transport.where}"
            routes[(name, target.id)] = Route(name, target.id, transport, why)
    return Routing(
        routes=routes,
        markups={name: SPECS[name].limits.markup for name in enabled},
        rates={name: SPECS[name].rate.overridden(configured.rate) for name, configured in enabled.items()},
        transports=transports,
    )


def routes_by_channel(routing: Routing) -> Mapping[str, list[Route]]:
    """The routes grouped by channel, in config order (for listings)."""
    grouped: dict[str, list[Route]] = {}
    for route in routing:
        grouped.setdefault(route.channel, []).append(route)
    return grouped
