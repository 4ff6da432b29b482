"""The `channels:` section of schedules.yaml: what every channel has, checked per platform.

The core knows no platform: each platform's spec (in `channels/`) brings a
settings model that extends `ChannelSettings`, and the CLI hands the models to
`load_settings`. A block whose name no spec claims is an error naming the known
ones, because a typo there would silently post nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from outreach.windows import Pacing

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
    concurrency: int | None = Field(default=None, ge=1, le=1000)


class ChannelSettings(Strict):
    """Settings every platform channel has; a platform's spec may add its own."""

    # Who a campaign on the channel reaches: the targets listed here, or the channel's
    # subscribers (a bot: each chat that subscribed is a target of its own).
    audience: ClassVar[Literal["targets", "subscribers"]] = "targets"
    enabled: bool = True
    targets: list[Target] = []
    template: str = "post"
    # Overrides the platform's own limit (e.g. to keep Facebook posts short).
    max_text: int | None = Field(default=None, ge=80)
    rate: RateSettings | None = None
    # When posts may go out, in the install's time zone: "Mon-Fri 07:30-11:30, 13:30-17:00"; none: any time.
    windows: list[str] = []
    max_per_day: int | None = Field(default=None, ge=1)  # per target, per local day
    min_gap_minutes: float | None = Field(default=None, gt=0)  # between two posts on one target
    skip_holidays: bool = False  # no posts on Vietnam's public holidays (and `holidays.extra`)

    @field_validator("windows")
    @classmethod
    def _parse_windows(cls, value: list[str]) -> list[str]:
        from outreach.windows import parse_windows

        for text in value:
            parse_windows(text)  # a ValueError names the window and what is wrong
        return value

    def pacing(self) -> Pacing:
        """These settings as the dispatcher applies them."""
        from outreach.windows import Pacing, parse_windows

        gap = timedelta(minutes=self.min_gap_minutes) if self.min_gap_minutes else None
        return Pacing(
            windows=tuple(window for text in self.windows for window in parse_windows(text)),
            skip_holidays=self.skip_holidays,
            max_per_day=self.max_per_day,
            min_gap=gap,
        )


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
