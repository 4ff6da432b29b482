"""What the core asks of a channel, and the few errors a channel may raise.

Adapters in `channels/` implement `Channel` and translate their SDK's exceptions
into these, so the dispatcher never sees an SDK exception (DESIGN §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Markup = Literal["html", "plain"]


@dataclass(frozen=True)
class ChannelLimits:
    """What a platform accepts in one message."""

    max_text: int
    markup: Markup


# Facts of each platform's message format. Rendering needs them even when the
# message goes to the outbox instead, so they live in the core, not the adapter.
PLATFORM_LIMITS: dict[str, ChannelLimits] = {
    # Graph API page posts take up to 63,206 characters of plain text.
    "facebook": ChannelLimits(max_text=63_206, markup="plain"),
    # Bot API text: 1-4096 characters after entity parsing, HTML parse mode.
    "telegram_channel": ChannelLimits(max_text=4_096, markup="html"),
}


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


@dataclass(frozen=True)
class Sent:
    """The platform's id for what was posted, kept to find or delete it later."""

    platform_id: str


class Channel(Protocol):
    """A way to deliver rendered messages."""

    name: str
    # True when sending the same delivery twice cannot make two copies (the
    # dispatcher may then retry a send interrupted by a crash).
    idempotent: bool

    async def send(self, message: RenderedMessage) -> Sent:
        """Deliver one message or raise one of the errors below."""
        ...


class ChannelError(Exception):
    """Base of the errors a channel may raise."""


class Transient(ChannelError):
    """Try again later (after `retry_after` seconds when the platform says so)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class RecipientGone(ChannelError):
    """The chat or page no longer takes messages from us."""


class AuthFailed(ChannelError):
    """The token is wrong or expired: pause the channel, lose nothing."""


class Rejected(ChannelError):
    """The platform refused this message for good; the reason is kept."""


class MaybeSent(ChannelError):
    """A timeout or 5xx after the request went out: the post may exist already.

    Never retried blindly (a duplicate post on a government page is worse than a
    late one): the delivery becomes `unknown` unless the channel is idempotent.
    """
