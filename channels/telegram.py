"""Telegram broadcast channels, through python-telegram-bot's `Bot`.

Facts of the platform (PLATFORM_FACTS, Telegram): text 1-4096 characters and
captions up to 1,024, counted after HTML parsing; about 30 messages/s per bot and
20 a minute into one channel or group; every `retry_after` is honoured exactly.
The bot token sits in every request URL, so it is hidden from the HTTP client's
and PTB's log records, and never put into an error text.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from pydantic import Field, SecretStr
from telegram import Bot, LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from outreach.channel import (
    AuthFailed,
    ChannelLimits,
    ChannelSpec,
    MaybeSent,
    Rate,
    RecipientGone,
    Rejected,
    RenderedMessage,
    Sent,
    Transient,
)
from outreach.channel_config import ChannelSettings
from outreach.redact import HiddenSecrets
from outreach.render import visible_length

log = logging.getLogger(__name__)
TOKEN_ENV = "OUTREACH_TELEGRAM_TOKEN"  # noqa: S105 - the name of the variable, not a token
MAX_TEXT, MAX_CAPTION = 4096, 1024  # characters after HTML parsing, in UTF-16 units
# Loggers that see request URLs (httpx at INFO, PTB's Bot at DEBUG): the token is hidden there.
URL_LOGGERS = ("httpx", "telegram.Bot", "telegram.ext")


class TelegramSettings(ChannelSettings):
    """A Telegram channel block in schedules.yaml; targets are `@username` or numeric chat ids."""

    api_url: str = Field(default="https://api.telegram.org", pattern=r"^https?://[^/\s]+(/[^\s]*)?$")
    timeout_seconds: float = Field(default=20.0, gt=0, le=300)


def _chat(target: str) -> int | str:
    """`@name` stays a name; `-1001234567890` becomes the number the API expects."""
    try:
        return int(target)
    except ValueError:
        return target


def _is_private(chat: int | str) -> bool:
    # Users have positive ids; channels and groups negative ones or @names.
    return isinstance(chat, int) and chat > 0


def _seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # an int is deprecated in PTB 22; either way it is seconds
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramChannel:
    """Posts to Telegram channels; one `Bot` per token (targets may name their own)."""

    name = "telegram_channel"
    idempotent = False  # the Bot API has no idempotency key: a resend is a second post

    def __init__(self, settings: TelegramSettings, tokens: Mapping[str, SecretStr]) -> None:
        self.settings = settings
        self.where = f"Bot API at {settings.api_url}"
        self._bots: dict[str, Bot] = {}
        self._bot_of: dict[str, Bot] = {}
        self._moved: dict[str, int] = {}  # chats that became supergroups: target -> new id
        self._hidden = HiddenSecrets([secret.get_secret_value() for secret in tokens.values()], URL_LOGGERS)
        timeout = settings.timeout_seconds
        for target, secret in tokens.items():
            token = secret.get_secret_value()
            if token not in self._bots:
                request = HTTPXRequest(
                    connection_pool_size=8,
                    read_timeout=timeout,
                    write_timeout=timeout,
                    connect_timeout=min(timeout, 10.0),
                    pool_timeout=timeout,
                )
                self._bots[token] = Bot(
                    token,
                    base_url=f"{settings.api_url.rstrip('/')}/bot",
                    base_file_url=f"{settings.api_url.rstrip('/')}/file/bot",
                    request=request,
                    get_updates_request=HTTPXRequest(connection_pool_size=1),
                )
            self._bot_of[target] = self._bots[token]

    async def _bot(self, target: str) -> Bot:
        bot = self._bot_of[target]
        try:
            await bot.initialize()  # getMe: checks the token once per process
        except InvalidToken:
            raise AuthFailed(
                f"Telegram refused the bot token for {target}: check {TOKEN_ENV} (or the target's token_env) "
                "against @BotFather",
                whole_channel=True,
            ) from None
        except TelegramError as exc:
            raise _transient_or_ambiguous(exc, sending=False) from None
        return bot

    async def send(self, message: RenderedMessage) -> Sent:
        """Post the text (with its photo when there is one) to the target channel."""
        bot = await self._bot(message.target)
        chat = self._moved.get(message.target, _chat(message.target))
        try:
            posted = await self._post(bot, chat, message)
        except ChatMigrated as moved:
            log.warning(
                "telegram: chat %s is now %s; posting there (update its id in schedules.yaml)",
                message.target,
                moved.new_chat_id,
            )
            self._moved[message.target] = moved.new_chat_id
            posted = await self._post_translated(bot, moved.new_chat_id, message)
        except TelegramError as exc:
            raise _translate(exc, chat) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise _unreadable(exc) from None
        return Sent(platform_id=f"{posted.chat.id}:{posted.message_id}")

    async def _post_translated(self, bot: Bot, chat: int | str, message: RenderedMessage) -> Message:
        try:
            return await self._post(bot, chat, message)
        except TelegramError as exc:
            raise _translate(exc, chat) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise _unreadable(exc) from None

    async def _post(self, bot: Bot, chat: int | str, message: RenderedMessage) -> Message:
        # The preview shows the portal's page, not the tracker that redirects to it.
        preview = (
            LinkPreviewOptions(url=message.destination) if message.destination else LinkPreviewOptions(is_disabled=True)
        )
        if message.image_url:
            if visible_length(message.text, "html") <= MAX_CAPTION:
                return await bot.send_photo(chat, message.image_url, caption=message.text, parse_mode=ParseMode.HTML)
            await bot.send_photo(chat, message.image_url)  # too long for a caption: the text follows
        return await bot.send_message(chat, message.text, parse_mode=ParseMode.HTML, link_preview_options=preview)

    async def check(self, target: str) -> str:
        """Whether the bot works and may post in the target chat (getMe, getChat)."""
        bot = await self._bot(target)
        chat_id = self._moved.get(target, _chat(target))
        try:
            chat = await bot.get_chat(chat_id)
        except TelegramError as exc:
            raise _translate(exc, chat_id) from None
        return f"bot @{bot.username} sees {chat.type} {chat.title or chat.username or chat.id!s}"

    async def close(self) -> None:
        """Close every bot's HTTP connections."""
        for bot in self._bots.values():
            await bot.shutdown()
        self._hidden.remove()


def _translate(exc: TelegramError, chat: int | str) -> Exception:
    """PTB's exception as one of the core's (order matters: BadRequest is a NetworkError)."""
    if isinstance(exc, RetryAfter):
        return Transient(f"Telegram flood control: retry after {_seconds(exc):g} s", retry_after=_seconds(exc))
    if isinstance(exc, Forbidden):
        if _is_private(chat):
            return RecipientGone(f"Telegram: {exc.message}")
        return AuthFailed(f"Telegram: {exc.message} (add the bot to {chat} as an administrator that may post)")
    if isinstance(exc, InvalidToken):
        return AuthFailed(
            f"Telegram refused the bot token: check {TOKEN_ENV} (or the target's token_env)", whole_channel=True
        )
    if isinstance(exc, BadRequest):
        return Rejected(f"Telegram: {exc.message}")
    return _transient_or_ambiguous(exc, sending=True)


def _unreadable(exc: Exception) -> MaybeSent:
    # A 2xx answer PTB could not read (no `result`, not JSON): the post may exist.
    return MaybeSent(f"Telegram's answer could not be read ({type(exc).__name__}): check the channel")


def _transient_or_ambiguous(exc: TelegramError, sending: bool) -> Exception:
    """A network failure before the request left is safe to retry; after, the post may exist."""
    cause = exc.__cause__
    never_left = isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if never_left or not sending:
        return Transient(f"Telegram unreachable: {exc.message}")
    if isinstance(exc, TimedOut | NetworkError):
        return MaybeSent(f"Telegram did not answer after the post was sent ({exc.message}): check the channel")
    return MaybeSent(f"Telegram answered oddly after the post was sent ({exc.message}): check the channel")


def build(settings: ChannelSettings, tokens: Mapping[str, SecretStr]) -> TelegramChannel:
    """The channel adapter for the targets that have a token."""
    assert isinstance(settings, TelegramSettings)
    return TelegramChannel(settings, tokens)


SPEC = ChannelSpec(
    name="telegram_channel",
    limits=ChannelLimits(max_text=MAX_TEXT, markup="html", max_caption=MAX_CAPTION),
    # About 30 messages/s per bot; 20 a minute into one channel (PTB's AIORateLimiter uses the same).
    rate=Rate(per_second=30, burst=30, per_target_per_second=20 / 60, per_target_burst=20),
    idempotent=False,
    settings=TelegramSettings,
    secrets=(TOKEN_ENV,),
    build=build,
)
