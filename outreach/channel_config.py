"""The `channels:` section of schedules.yaml: what every channel has, checked per platform.

The core knows no platform: each platform's spec (in `channels/`) brings a
settings model that extends `ChannelSettings`, and the CLI hands the models to
`load_settings`. A block whose name no spec claims is an error naming the known
ones, because a typo there would silently post nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Language = Literal["vi", "en"]
LANGUAGES: tuple[Language, ...] = ("vi", "en")
OUTBOX = "outbox"  # the block for the outbox, the transport of last resort


class Strict(BaseModel):
    """Unknown keys are typos more often than not: refuse them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(Strict):
    """A page or chat a channel posts to, the item languages it takes, and its token."""

    id: str = Field(min_length=1)
    name: str = ""
    languages: list[Language] = list(LANGUAGES)
    # Facebook issues one token per Page: a target may name its own variable,
    # else the platform's default variable holds the token.
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


class RateSettings(Strict):
    """Overrides of the platform's send rate (messages per second, and the burst allowed)."""

    per_second: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)
    per_target_per_second: float | None = Field(default=None, gt=0)
    per_target_burst: int | None = Field(default=None, ge=1)


class ChannelSettings(Strict):
    """Settings every platform channel has; a platform's spec may add its own."""

    enabled: bool = True
    targets: list[Target] = []
    template: str = "post"
    # Overrides the platform's own limit (e.g. to keep Facebook posts short).
    max_text: int | None = Field(default=None, ge=80)
    rate: RateSettings | None = None


class OutboxSettings(Strict):
    """Where messages are written when a target has no token."""

    dir: Path = Path("outbox")


class Channels(BaseModel):
    """The platform channels in use, by name, and the outbox."""

    model_config = ConfigDict(frozen=True)

    platforms: dict[str, ChannelSettings] = {}
    outbox: OutboxSettings = OutboxSettings()

    def enabled(self) -> dict[str, ChannelSettings]:
        """Platform channels that are configured and switched on, by name."""
        return {name: c for name, c in self.platforms.items() if c.enabled}


ChannelModels = Mapping[str, type[ChannelSettings]]
Problem = tuple[tuple[str | int, ...], str]


def validate_channels(raw: Any, models: ChannelModels) -> tuple[Channels, list[Problem]]:
    """The `channels:` block checked against each platform's model, with located problems."""
    if raw is None:
        return Channels(), []
    if not isinstance(raw, dict):
        return Channels(), [(("channels",), "must be a mapping of channel name to settings")]
    problems: list[Problem] = []
    platforms: dict[str, ChannelSettings] = {}
    outbox = OutboxSettings()
    for name, block in raw.items():
        model: type[BaseModel] | None = OutboxSettings if name == OUTBOX else models.get(name)
        if model is None:
            known = ", ".join([*sorted(models), OUTBOX])
            problems.append((("channels", name), f"unknown channel {name!r} (known: {known})"))
            continue
        try:
            settings = model.model_validate(block or {})
        except ValidationError as exc:
            problems.extend((("channels", name, *err["loc"]), err["msg"]) for err in exc.errors())
            continue
        if isinstance(settings, OutboxSettings):
            outbox = settings
        else:
            assert isinstance(settings, ChannelSettings)
            platforms[str(name)] = settings
    return Channels(platforms=platforms, outbox=outbox), problems
