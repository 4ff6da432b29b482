"""What the core asks of a channel, how a platform is described, and the few errors.

Adapters in `channels/` implement `Channel`, describe their platform in a
`ChannelSpec`, and translate their SDK's exceptions into the errors below, so
the dispatcher never sees an SDK exception (DESIGN §5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from pydantic import SecretStr

from outreach.channel_config import ChannelSettings, RateSettings, Target

Markup = Literal["html", "plain"]


@dataclass(frozen=True)
class ChannelLimits:
    """What a platform accepts in one message."""

    max_text: int
    markup: Markup
    max_caption: int | None = None  # a photo's caption; None when it is as long as a text


@dataclass(frozen=True)
class Rate:
    """How fast a platform takes messages: across the whole token, and into one target."""

    per_second: float
    burst: int = 1
    per_target_per_second: float | None = None
    per_target_burst: int = 1
    concurrency: int = 1  # sends in flight per target: rate x latency, to run at the rate, not under it

    def overridden(self, settings: RateSettings | None) -> Rate:
        """This rate with what a channel's `rate:` block in schedules.yaml sets."""
        if settings is None:
            return self
        changes = {key: value for key, value in settings.model_dump().items() if value is not None}
        return replace(self, **changes)


@dataclass(frozen=True)
class RenderedMessage:
    """One delivery, ready to go out."""

    delivery_id: int
    campaign_id: int
    channel: str
    target: str
    language: str
    text: str
    markup: Markup
    link_code: str | None = None  # the tracked link in the text, if any
    destination: str | None = None  # where that link leads
    image_url: str | None = None  # a photo to post with the text, when the template asks


@dataclass(frozen=True)
class Sent:
    """The platform's id for what was posted, kept to find or delete it later."""

    platform_id: str
    moved_to: str | None = None  # the chat's new id, when the platform moved it (a group became a supergroup)


class Channel(Protocol):
    """A way to deliver rendered messages (one platform's adapter, or the outbox)."""

    name: str
    # True when sending the same delivery twice cannot make two copies (the
    # dispatcher may then retry a send interrupted by a crash).
    idempotent: bool
    where: str  # where messages go, for people ("Graph API v23.0 at ...", "files under ...")

    async def send(self, message: RenderedMessage) -> Sent:
        """Deliver one message or raise one of the errors below."""
        ...

    async def check(self, target: str) -> str:
        """Say what the platform knows of a target (its name, our rights there), or raise."""
        ...

    async def close(self) -> None:
        """Release connections; the channel is not used after this."""
        ...


@dataclass(frozen=True)
class ChannelSpec:
    """Everything about one platform in one place (declared in `channels/<platform>.py`)."""

    name: str
    limits: ChannelLimits
    rate: Rate
    idempotent: bool
    settings: type[ChannelSettings]  # its block in schedules.yaml
    secrets: tuple[str, ...]  # environment variables of its token, the default first; a target may name its own
    # Builds the channel for the targets that have a token (target id -> token).
    build: Callable[[ChannelSettings, Mapping[str, SecretStr]], Channel]
    # True when a token serves one target only (a Facebook Page token): two targets
    # reading the same variable is a mistake in the config.
    token_per_target: bool = False

    def variable_for(self, target: Target) -> str:
        """The environment variable that holds a target's token: its own, else the platform's."""
        return target.token_env or self.secrets[0]


def resendable(channel: Channel) -> bool:
    """Whether a send of unknown fate may be sent again rather than left to an operator.

    True for idempotent transports, and for one-to-one messages (a bot writing to
    one subscriber: DESIGN §4): nobody can look into a private chat to settle it,
    and a rare second copy to one person is better than a missed message.
    """
    return channel.idempotent or getattr(channel, "one_to_one", False)


class ChannelError(Exception):
    """Base of the errors a channel may raise."""


class Transient(ChannelError):
    """Try again later (after `retry_after` seconds when the platform says so).

    With `retry_after`, the platform asked us to wait: nothing more goes to the
    target (or to any target of the channel, `whole_channel`) until then.
    """

    def __init__(self, reason: str, retry_after: float | None = None, whole_channel: bool = False) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.whole_channel = whole_channel


class RecipientGone(ChannelError):
    """The chat or page no longer takes messages from us."""


class AuthFailed(ChannelError):
    """The token is wrong, expired, or no longer allowed there: pause, lose nothing.

    `whole_channel`: the token itself was refused, so every target of the channel
    waits (not only the one tried); otherwise only this target (a Page token per
    page, a bot removed from one channel).
    """

    def __init__(self, reason: str, whole_channel: bool = False) -> None:
        super().__init__(reason)
        self.whole_channel = whole_channel


class Rejected(ChannelError):
    """The platform refused this message for good; the reason is kept."""


class MaybeSent(ChannelError):
    """A timeout or 5xx after the request went out: the post may exist already.

    Never retried blindly (a duplicate post on a government page is worse than a
    late one): the delivery becomes `unknown` unless the channel is idempotent.
    """
