"""Platform adapters, one module each, and the registry of their specs.

Adding a platform is one module (its `SPEC`: limits, rate, settings, token
variable, factory) and one line in `SPECS`. The core never imports this package:
`cli.py` hands what it needs (settings models, limits, the routing) to the core.
"""

from __future__ import annotations

from pydantic import SecretStr

from channels import facebook, telegram, telegram_bot
from channels.outbox import OutboxChannel
from outreach.channel import Channel, ChannelLimits, ChannelSpec
from outreach.channel_config import ChannelSettings, Target
from outreach.config import ConfigError, Settings
from outreach.dispatch_store import EVERY_TARGET
from outreach.routing import Route, Routing

SPECS: dict[str, ChannelSpec] = {spec.name: spec for spec in (facebook.SPEC, telegram.SPEC, telegram_bot.SPEC)}
SETTINGS_MODELS: dict[str, type[ChannelSettings]] = {name: spec.settings for name, spec in SPECS.items()}
LIMITS: dict[str, ChannelLimits] = {name: spec.limits for name, spec in SPECS.items()}


def variable_for(channel: str, target: Target) -> str:
    """The token variable of a target of a channel named in the registry."""
    return SPECS[channel].variable_for(target)


def build_routing(settings: Settings) -> Routing:
    """Each enabled target's transport: its platform when its token is set, else the outbox."""
    outbox = OutboxChannel(settings.schedule.channels.outbox.dir)
    routes: dict[tuple[str, str], Route] = {}
    transports: list[Channel] = [outbox]
    enabled = settings.schedule.channels.enabled()
    for name, configured in enabled.items():
        spec = SPECS[name]
        if configured.audience == "subscribers":
            routes[(name, EVERY_TARGET)] = _subscriber_route(name, spec, configured, settings, outbox, transports)
            continue
        tokens: dict[str, SecretStr] = {}
        reasons: dict[str, str] = {}
        _check_tokens_apart(name, spec, configured.targets, settings)
        for target in configured.targets:
            variable = spec.variable_for(target)
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
            to_platform = platform is not None and target.id in tokens
            transport: Channel = platform if platform is not None and to_platform else outbox
            why = f"{reasons[target.id]}: {transport.where}"
            routes[(name, target.id)] = Route(name, target.id, transport, why, to_platform)
    return Routing(
        routes=routes,
        markups={name: SPECS[name].limits.markup for name in enabled},
        rates={name: SPECS[name].rate.overridden(configured.rate) for name, configured in enabled.items()},
        transports=transports,
    )


def _subscriber_route(
    name: str,
    spec: ChannelSpec,
    configured: ChannelSettings,
    settings: Settings,
    outbox: OutboxChannel,
    transports: list[Channel],
) -> Route:
    """A channel of subscribers has one route for all of them: its bot, or the outbox without a token."""
    variable = getattr(configured, "token_env", None) or spec.secrets[0]
    token = settings.secrets.get(variable)
    if token is None:
        return Route(name, EVERY_TARGET, outbox, f"no token in {variable}: {outbox.where}", False)
    platform = spec.build(configured, {EVERY_TARGET: token})
    transports.append(platform)
    return Route(name, EVERY_TARGET, platform, f"token in {variable}: {platform.where}", True)


def _check_tokens_apart(channel: str, spec: ChannelSpec, targets: list[Target], settings: Settings) -> None:
    """Where a token serves one target only, two targets on one variable would post with the wrong one."""
    if not spec.token_per_target:
        return
    readers: dict[str, list[str]] = {}
    for target in targets:
        readers.setdefault(spec.variable_for(target), []).append(target.id)
    shared = {variable: ids for variable, ids in readers.items() if len(ids) > 1}
    if shared:
        problems = [
            f"{settings.config_path}: channels.{channel}: targets {', '.join(ids)} all read their token from "
            f"{variable}, but a {channel} token works for one target only: give each its own token_env"
            for variable, ids in shared.items()
        ]
        raise ConfigError(problems)
