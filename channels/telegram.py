"""Telegram broadcast channels, through python-telegram-bot's `Bot`.

Facts of the platform (PLATFORM_FACTS, Telegram): text 1-4096 characters and
captions up to 1,024, counted after HTML parsing; about 30 messages/s per bot and
20 a minute into one channel or group; every `retry_after` is honoured exactly.
The bot token sits in every request URL, so it is hidden from the HTTP client's
and PTB's log records, and never put into an error text.
"""

from __future__ import annotations

import asyncio
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
from telegram.warnings import PTBDeprecationWarning

from channels.telegram_request import NEVER_SENT, AiohttpRequest
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
MAX_INLINE_WAIT = 60.0  # seconds a text may wait, in process, for its photo's flood control
# Bad requests that are about the target or the bot's rights, not about the message.
TARGET_PROBLEMS = ("chat not found", "not enough rights", "need administrator rights", "have no rights")
# Loggers that see request URLs (httpx at INFO, PTB's Bot at DEBUG): the token is hidden there.
# A logger's filter does not reach its children's records: each logger PTB writes to is named.
URL_LOGGERS = (
    "httpx",
    "aiohttp.client",
    "telegram",
    "telegram.Bot",
    "telegram.BaseRequest",
    "telegram.ext",
    "telegram.ext.Application",
    "telegram.ext.Updater",
    "telegram.ext.ExtBot",
    "telegram.ext.JobQueue",
    "telegram.ext.AIORateLimiter",
    "channels.telegram_bot",
)
CONNECTIONS = 32  # open at once per bot: enough for a broadcast's sends in flight


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


def seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # an int is deprecated in PTB 22; either way it is seconds
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramChannel:
    """Posts to Telegram channels; one `Bot` per token (targets may name their own)."""

    def __init__(self, settings: TelegramSettings, tokens: Mapping[str, SecretStr]) -> None:
        self.name, self.idempotent = SPEC.name, SPEC.idempotent  # no idempotency key: a resend is a second post
        self.settings = settings
        self.where = f"Bot API at {settings.api_url}"
        self._bots: dict[str, Bot] = {}
        self._bot_of: dict[str, Bot] = {}
        self._variable_of = {target.id: SPEC.variable_for(target) for target in settings.targets}
        self._moved: dict[str, int] = {}  # chats that became supergroups: target -> new id
        self._hidden = HiddenSecrets([secret.get_secret_value() for secret in tokens.values()], URL_LOGGERS)
        timeout = settings.timeout_seconds
        for target, secret in tokens.items():
            token = secret.get_secret_value()
            if token not in self._bots:
                request = AiohttpRequest(
                    connections=CONNECTIONS,
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
                    get_updates_request=AiohttpRequest(connections=1),
                )
            self._bot_of[target] = self._bots[token]

    async def _bot(self, target: str) -> Bot:
        bot = self._bot_of[target]
        try:
            await bot.initialize()  # getMe: checks the token once per process
        except TelegramError as exc:
            raise self._translate(exc, target, sending=False) from None
        return bot

    async def send(self, message: RenderedMessage) -> Sent:
        """Post the text (with its photo when there is one) to the target channel."""
        bot = await self._bot(message.target)
        try:
            posted = await self._post(bot, message)
        except TelegramError as exc:
            raise self._translate(exc, message.target, sending=True) from None
        except (KeyError, TypeError, ValueError) as exc:  # a 2xx answer PTB could not read
            raise MaybeSent(f"Telegram's answer could not be read ({type(exc).__name__}): check the channel") from None
        return Sent(platform_id=f"{posted.chat.id}:{posted.message_id}")

    async def _post(self, bot: Bot, message: RenderedMessage) -> Message:
        """One post, following a chat to its new id once if it became a supergroup."""
        chat = self._chat(message.target)
        try:
            return await self._post_to(bot, chat, message)
        except ChatMigrated as moved:
            log.warning(
                "telegram: chat %s is now %s; posting there (update its id in schedules.yaml)",
                message.target,
                moved.new_chat_id,
            )
            self._moved[message.target] = moved.new_chat_id
            return await self._post_to(bot, moved.new_chat_id, message)

    async def _post_to(self, bot: Bot, chat: int | str, message: RenderedMessage) -> Message:
        # The preview shows the portal's page, not the tracker that redirects to it.
        preview = (
            LinkPreviewOptions(url=message.destination) if message.destination else LinkPreviewOptions(is_disabled=True)
        )
        if message.image_url:
            caption_room = SPEC.limits.max_caption or 0
            fits = visible_length(message.text, "html") <= caption_room
            try:
                photo = await bot.send_photo(
                    chat, message.image_url, caption=message.text if fits else None, parse_mode=ParseMode.HTML
                )
            except BadRequest as exc:
                if not _photo_refused(exc):
                    raise
                log.warning("telegram: the photo %s was refused (%s); posting the text alone", message.image_url, exc)
            else:
                if fits:
                    return photo
                return await self._text_after_photo(bot, chat, message, preview, photo)
        return await bot.send_message(chat, message.text, parse_mode=ParseMode.HTML, link_preview_options=preview)

    async def _text_after_photo(
        self, bot: Bot, chat: int | str, message: RenderedMessage, preview: LinkPreviewOptions, photo: Message
    ) -> Message:
        """The text that did not fit the caption; the photo is out, so a failure here is never retried blindly."""
        for attempt in range(2):
            try:
                return await bot.send_message(
                    chat, message.text, parse_mode=ParseMode.HTML, link_preview_options=preview
                )
            except RetryAfter as exc:  # two messages in one slot: the flood wait is likely, and short
                if attempt or seconds(exc) > MAX_INLINE_WAIT:
                    reason = f"flood control for {seconds(exc):g} s"
                    break
                await asyncio.sleep(seconds(exc))
            except TelegramError as exc:
                reason = exc.message
                break
        raise MaybeSent(
            f"Telegram took the photo (message {photo.message_id}) but not the text that follows it ({reason}): "
            "post the text by hand, then settle the delivery"
        )

    async def check(self, target: str) -> str:
        """Whether the bot works and may post in the target chat (getMe, getChat, getChatMember)."""
        bot = await self._bot(target)
        chat_id = self._chat(target)
        try:
            chat = await bot.get_chat(chat_id)
            member = await bot.get_chat_member(chat.id, bot.id)
        except TelegramError as exc:
            raise self._translate(exc, target, sending=False) from None
        name = chat.title or chat.username or str(chat.id)
        if chat.type == "channel" and not (member.status == "creator" or getattr(member, "can_post_messages", False)):
            raise AuthFailed(
                f"bot @{bot.username} may not post in {chat.type} {name}: make it an administrator "
                "allowed to post messages"
            )
        return f"bot @{bot.username} may post in {chat.type} {name}"

    async def close(self) -> None:
        """Close every bot's HTTP connections."""
        for bot in self._bots.values():
            await bot.shutdown()
        self._hidden.remove()

    def _chat(self, target: str) -> int | str:
        return self._moved.get(target, _chat(target))

    def _translate(self, exc: TelegramError, target: str, sending: bool) -> Exception:
        """PTB's exception as one of the core's (order matters: BadRequest is a NetworkError)."""
        variable = self._variable_of.get(target, TOKEN_ENV)
        if isinstance(exc, RetryAfter):
            # PTB's own limiter pauses every call on a flood wait: so does the dispatcher.
            return Transient(
                f"Telegram flood control: retry after {seconds(exc):g} s",
                retry_after=seconds(exc),
                whole_channel=True,
            )
        if isinstance(exc, InvalidToken):
            return AuthFailed(
                f"Telegram refused the bot token in {variable}: check it against @BotFather", whole_channel=True
            )
        if isinstance(exc, Forbidden):
            if _is_private(self._chat(target)):
                return RecipientGone(f"Telegram: {exc.message}")
            return AuthFailed(f"Telegram: {exc.message} (add the bot to {target} as an administrator that may post)")
        if isinstance(exc, ChatMigrated):  # only outside a send, which follows the chat itself
            return Transient(f"Telegram: {target} is now {exc.new_chat_id}; update its id in schedules.yaml")
        if isinstance(exc, BadRequest):
            if any(marker in exc.message.lower() for marker in TARGET_PROBLEMS):
                # The target is wrong or the bot lacks rights there: every post to it would fail alike.
                return AuthFailed(f"Telegram: {exc.message} (check the target {target} and the bot's rights there)")
            return Rejected(f"Telegram: {exc.message}")
        cause = exc.__cause__
        never_left = isinstance(cause, (*NEVER_SENT, httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
        if never_left or not sending:
            return Transient(f"Telegram unreachable: {exc.message}", whole_channel=never_left)
        if isinstance(exc, TimedOut | NetworkError):
            return MaybeSent(f"Telegram did not answer after the post was sent ({exc.message}): check the channel")
        return MaybeSent(f"Telegram answered oddly after the post was sent ({exc.message}): check the channel")


def _photo_refused(exc: BadRequest) -> bool:
    """Telegram could not fetch or use the image: the text can still go alone."""
    text = exc.message.lower()
    return any(marker in text for marker in ("wrong file identifier", "failed to get http url content", "photo"))


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
