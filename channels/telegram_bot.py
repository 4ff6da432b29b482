"""The Telegram bot: messages to subscribers (a channel adapter) and the conversation (a PTB `Application`).

Its audience is its subscribers, not targets in schedules.yaml: each chat that
subscribed is a target of its own, and the dispatcher runs one worker for all
of them at the bot's rate (about 30 messages/s; every `retry_after` honoured
exactly, holding the whole bot as Telegram does). A chat that blocked the bot or
no longer exists is `RecipientGone`, which marks its subscriber `blocked`; it
never pauses the bot. A send of unknown fate is sent again (`one_to_one`):
nobody can look into a private chat to settle it.

The conversation's logic is `outreach.conversation` (no Telegram there); this
module only turns updates into its events and its replies into Bot API calls.
Every word the bot says comes from `templates/bot/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from channels.telegram import MAX_CAPTION, MAX_TEXT, TOKEN_ENV, URL_LOGGERS, TelegramChannel, TelegramSettings, seconds
from channels.telegram_request import AiohttpRequest
from outreach.bot_texts import BotTexts
from outreach.channel import (
    ChannelLimits,
    ChannelSpec,
    Rate,
    RecipientGone,
    Rejected,
    RenderedMessage,
    Sent,
)
from outreach.channel_config import ChannelSettings
from outreach.config import Secrets, Settings
from outreach.conversation import COMMANDS, TEMPLATES, Answer, Conversation, Incoming, Reply
from outreach.db import Store
from outreach.dispatch_store import EVERY_TARGET
from outreach.lifecycle import Actor
from outreach.redact import HiddenSecrets
from outreach.subscribers import Chat
from outreach.text import scrub
from outreach.web import TelegramHook

log = logging.getLogger(__name__)
NAME = "telegram_bot"
WEBHOOK_SECRET_ENV = "OUTREACH_TELEGRAM_WEBHOOK_SECRET"  # noqa: S105 - the variable's name
SECRET_SHAPE = r"^[A-Za-z0-9_-]{1,256}$"  # noqa: S105 - what Telegram accepts as a webhook secret
GONE = (
    "chat not found",
    "user is deactivated",
    "bot was kicked",
    "bot can't initiate conversation",
    "not enough rights",
    "have no rights",
    "need administrator rights",
    "chat_write_forbidden",
)


class TelegramBotSettings(TelegramSettings):
    """The bot's block in schedules.yaml: no targets (its subscribers are), its staff and its digest time."""

    audience: ClassVar[Literal["targets", "subscribers"]] = "subscribers"
    token_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    staff: list[int] = Field(default_factory=list)  # Telegram user ids that may use /stats and /queue
    digest_at: str = Field(default="17:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local time
    digest_max_items: int = Field(default=10, ge=1, le=30)
    # Set to serve updates by webhook on the tracker: https://go.example.gov.vn/telegram/<long random path>
    webhook_url: str | None = Field(default=None, pattern=r"^https://[^/\s]+/telegram/[A-Za-z0-9_-]{16,200}$")

    @field_validator("targets")
    @classmethod
    def _no_targets(cls, value: list[Any]) -> list[Any]:
        if value:
            raise ValueError("the bot's audience is its subscribers: it takes no targets (remove them)")
        return value

    @property
    def webhook_path(self) -> str | None:
        """The secret last part of the webhook's path, which the tracker serves."""
        return self.webhook_url.rsplit("/", 1)[1] if self.webhook_url else None


def token_variable(settings: ChannelSettings) -> str:
    """The environment variable holding the bot's token."""
    return getattr(settings, "token_env", None) or TOKEN_ENV


class TelegramBotChannel(TelegramChannel):
    """Sends campaign messages to subscribers' chats through one bot."""

    one_to_one = True

    def __init__(self, settings: TelegramBotSettings, tokens: Mapping[str, SecretStr]) -> None:
        super().__init__(settings, tokens)
        self.name = NAME
        self.where = f"Bot API at {settings.api_url}, to subscribers"

    async def _bot(self, target: str) -> Any:
        return await super()._bot(target if target in self._bot_of else EVERY_TARGET)

    async def send(self, message: RenderedMessage) -> Sent:
        """Send to the subscriber's chat; a chat that moved is reported so its subscriber follows."""
        sent = await super().send(message)
        moved = self._moved.pop(message.target, None)
        return replace(sent, moved_to=str(moved)) if moved is not None else sent

    async def check(self, target: str) -> str:
        """Whether the bot's token works (getMe): its targets are whoever subscribes."""
        bot = await self._bot(target)
        return f"bot @{bot.username} answers; it writes to the chats that subscribed"

    def _translate(self, exc: TelegramError, target: str, sending: bool) -> Exception:
        """A chat that blocked the bot, left, never was, or took its right to write: that subscriber is
        gone and the bot goes on (one chat's problem never pauses the bot; no chat id in the text)."""
        text = exc.message.lower()
        if isinstance(exc, Forbidden) or (isinstance(exc, BadRequest) and any(m in text for m in GONE)):
            return RecipientGone(f"Telegram: {exc.message}")
        if isinstance(exc, BadRequest):
            return Rejected(f"Telegram: {exc.message}")
        return super()._translate(exc, target, sending)


def build(settings: ChannelSettings, tokens: Mapping[str, SecretStr]) -> TelegramBotChannel:
    """The bot's channel adapter (tokens: {EVERY_TARGET: token})."""
    assert isinstance(settings, TelegramBotSettings)
    return TelegramBotChannel(settings, tokens)


SPEC = ChannelSpec(
    name=NAME,
    limits=ChannelLimits(max_text=MAX_TEXT, markup="html", max_caption=MAX_CAPTION),
    # About 30 messages/s to different users per bot; no per-chat pacing is needed for one message each.
    rate=Rate(per_second=30, burst=30, concurrency=16),
    idempotent=False,
    settings=TelegramBotSettings,
    secrets=(TOKEN_ENV,),
    build=build,
)


# --- the conversation ---------------------------------------------------------------------------

Handle = Callable[[Incoming], Awaitable[Answer]]


MAX_REPLY_WAIT = 10.0  # seconds a reply may wait for a flood wait (a broadcast shares the bot's rate)


async def _patiently(call: Callable[[], Awaitable[Any]]) -> Any:
    """A reply, waiting once as long as Telegram asks when a broadcast has used the bot's rate."""
    try:
        return await call()
    except RetryAfter as exc:
        wait = seconds(exc)
        if wait > MAX_REPLY_WAIT:
            raise
        await asyncio.sleep(wait)
        return await call()


def _markup(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.buttons:
        return None
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(button.label, callback_data=button.data) for button in row] for row in reply.buttons]
    )


def _chat(update: Update) -> Chat:
    """The chat as Telegram says it is: never anything a button's data claims."""
    chat = update.effective_chat
    user = update.effective_user
    assert chat is not None
    return Chat(NAME, str(chat.id), user.language_code if user else None, private=chat.type == "private")


_COMMAND = re.compile(r"/([^\s@]+)(?:@(\S+))?\s*(.*)", re.DOTALL)


def _command(text: str, username: str) -> tuple[str, str]:
    """`/search@my_bot thue` -> ("search", "thue"); any white space ends the command; one for another bot is none."""
    found = _COMMAND.match(text)
    if found is None:
        return "", ""
    name, addressed, rest = found.groups()
    if addressed and addressed.lower() != username.lower():
        return "", ""
    return name.lower(), rest.strip()


class OneChatAtATime(BaseUpdateProcessor):
    """Different chats' updates run together; one chat's run one after another, in the order they came.

    Two quick taps on one chat's buttons read and write the same subscriber row:
    run together, the second would overwrite the first.
    """

    def __init__(self, most: int) -> None:
        super().__init__(most)
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        """Await the update's handling under its chat's lock."""
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        lock = self._locks.setdefault(chat.id, asyncio.Lock())
        self._users[chat.id] = self._users.get(chat.id, 0) + 1
        try:
            async with lock:
                await coroutine
        finally:
            self._users[chat.id] -= 1
            if not self._users[chat.id]:
                del self._users[chat.id], self._locks[chat.id]

    async def initialize(self) -> None:
        """Nothing to open."""

    async def shutdown(self) -> None:
        """Nothing to close."""


class BotFrontEnd:
    """Turns updates into `Conversation` events and answers into messages, edits and button notices."""

    NO_PREVIEW = LinkPreviewOptions(is_disabled=True)

    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    async def on_message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command or a text."""
        message = update.effective_message
        user = update.effective_user
        if message is None or message.text is None or user is None:
            return
        chat = _chat(update)
        if message.text.startswith("/"):
            name, args = _command(message.text, context.bot.username)
            if not name:
                return
            event = Incoming(chat, str(user.id), command=name, args=args)
        else:
            event = Incoming(chat, str(user.id), text=message.text)
        answer = await self.handle(event)
        for reply in answer.replies:
            await self._send(context, int(chat.chat_id), reply)

    async def on_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A tap on one of the bot's buttons: the chat is the message's, the data only says what."""
        query = update.callback_query
        if query is None or update.effective_chat is None:
            return
        event = Incoming(_chat(update), str(query.from_user.id), button=query.data or "")
        answer = await self.handle(event)
        try:
            await query.answer(answer.toast)
        except BadRequest as exc:  # too old to answer: the taps still counted
            log.info("telegram bot: a button notice was not shown (%s)", exc.message)
        message = query.message
        for reply in answer.replies:
            if reply.replace and message is not None and hasattr(message, "edit_text"):
                await self._edit(message, reply)
            else:
                await self._send(context, int(event.chat.chat_id), reply)

    async def _send(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, reply: Reply) -> None:
        await _patiently(
            lambda: context.bot.send_message(
                chat_id,
                reply.text,
                parse_mode=ParseMode.HTML,
                reply_markup=_markup(reply),
                link_preview_options=self.NO_PREVIEW,
            )
        )

    async def _edit(self, message: Any, reply: Reply) -> None:
        try:
            await _patiently(
                lambda: message.edit_text(
                    reply.text,
                    parse_mode=ParseMode.HTML,
                    reply_markup=_markup(reply),
                    link_preview_options=self.NO_PREVIEW,
                )
            )
        except BadRequest as exc:
            if "not modified" not in exc.message.lower():  # tapping the same toggle twice fast
                raise

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        """One update that failed is logged and dropped; the bot goes on with the next."""
        error = context.error
        log.error("telegram bot: an update could not be handled: %s", scrub(f"{type(error).__name__}: {error}"))


def application(
    settings: TelegramBotSettings,
    token: SecretStr,
    conversation: Conversation,
    webhook: bool,
    commands: Mapping[str, Mapping[str, str]] | None = None,
) -> Application[Any, Any, Any, Any, Any, Any]:
    """A PTB `Application` answering the conversation; with `webhook`, updates come from the tracker's route."""
    secret = token.get_secret_value()
    base = settings.api_url.rstrip("/")
    timeout = settings.timeout_seconds
    builder = (
        ApplicationBuilder()
        .token(secret)
        .base_url(f"{base}/bot")
        .base_file_url(f"{base}/file/bot")
        .request(AiohttpRequest(connections=16, read_timeout=timeout, write_timeout=timeout))
        .get_updates_request(AiohttpRequest(connections=2, read_timeout=timeout))
        .concurrent_updates(OneChatAtATime(32))  # chats are independent; each event is one short transaction
    )
    if webhook:
        builder = builder.updater(None)
    app = builder.build()

    async def handle(event: Incoming) -> Answer:
        return await asyncio.to_thread(conversation.handle, event)

    front = BotFrontEnd(handle)
    app.add_handler(MessageHandler(filters.TEXT & ~filters.UpdateType.EDITED, front.on_message))
    app.add_handler(CallbackQueryHandler(front.on_button))
    app.add_error_handler(front.on_error)
    app.bot_data["hidden"] = HiddenSecrets([secret], URL_LOGGERS)
    app.bot_data["commands"] = commands or {}
    return app


async def publish_commands(app: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """The command menu in each language (descriptions from templates/bot/labels)."""
    described: Mapping[str, Mapping[str, str]] = app.bot_data.get("commands", {})
    for language, descriptions in described.items():
        commands = [BotCommand(name, descriptions[name]) for name in COMMANDS if name in descriptions]
        await app.bot.set_my_commands(commands, language_code=None if language == "vi" else language)


def update_feeder(app: Application[Any, Any, Any, Any, Any, Any]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """What the tracker's webhook route calls with each update's JSON: queued for the running Application."""

    async def feed(data: dict[str, Any]) -> None:
        if not app.running:  # the webhook answers 503: Telegram keeps the update and tries again
            raise BotSetupError("the bot is not running")
        update = Update.de_json(data, app.bot)
        home = app.bot_data.get("loop")
        if home is None or home is asyncio.get_running_loop():
            await app.update_queue.put(update)
        else:  # the tracker serves in another thread's loop: hand it over to the bot's
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(app.update_queue.put(update), home))

    return feed


class BotSetupError(Exception):
    """The bot cannot run as configured (no token, no webhook secret, a bad secret); says what to set."""


@dataclass(frozen=True)
class BotParts:
    """A bot ready to run: its Application, and the tracker's hook when updates come by webhook."""

    app: Application[Any, Any, Any, Any, Any, Any]
    hook: TelegramHook | None


def webhook_secret(secrets: Secrets) -> str:
    """The webhook's secret header value, from the environment; BotSetupError when missing or malformed."""
    value = secrets.get(WEBHOOK_SECRET_ENV)
    if value is None:
        raise BotSetupError(
            f"webhook mode needs a secret in {WEBHOOK_SECRET_ENV} (1-256 of A-Z a-z 0-9 _ -), e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    secret = value.get_secret_value()
    if not re.fullmatch(SECRET_SHAPE, secret):
        raise BotSetupError(f"{WEBHOOK_SECRET_ENV} may hold only A-Z a-z 0-9 _ - (1-256 of them)")
    return secret


def bot_parts(
    settings: Settings,
    block: ChannelSettings,
    token: SecretStr,
    store: Store,
    actor: Actor,
    webhook: bool | None = None,
) -> BotParts:
    """The bot's Application over the store; `webhook` None: by webhook when `webhook_url` is set."""
    assert isinstance(block, TelegramBotSettings)
    texts = BotTexts(settings.templates_dir)
    texts.check(TEMPLATES)
    conversation = Conversation(
        store.sessions, settings, texts, [str(user) for user in block.staff], block.digest_at, actor
    )
    by_webhook = block.webhook_url is not None if webhook is None else webhook
    commands = {
        language: {name: texts.label(f"cmd_{name}", language) for name in COMMANDS} for language in ("vi", "en")
    }
    app = application(block, token, conversation, webhook=by_webhook, commands=commands)
    hook = None
    if by_webhook:
        path = block.webhook_path
        if path is None:
            raise BotSetupError(f"webhook mode needs channels.{NAME}.webhook_url in {settings.config_path}")
        hook = TelegramHook(path, webhook_secret(settings.secrets), update_feeder(app))
    return BotParts(app, hook)


async def run_application(
    app: Application[Any, Any, Any, Any, Any, Any], polling: bool, stop: asyncio.Event, poll_interval: float = 0.0
) -> None:
    """Run the bot until `stop`: updates by long polling, or from the webhook's queue."""
    app.bot_data["loop"] = asyncio.get_running_loop()  # where the webhook hands updates over
    try:
        await _run(app, polling, stop, poll_interval)
    except Exception as exc:  # in `outreach run` nobody awaits this task until the end: say it now
        log.error("telegram bot stopped: %s", scrub(f"{type(exc).__name__}: {exc}"))
        raise


async def _run(
    app: Application[Any, Any, Any, Any, Any, Any], polling: bool, stop: asyncio.Event, poll_interval: float
) -> None:
    async with app:  # getMe: a wrong token stops here, with Telegram's word for it
        try:
            await publish_commands(app)
        except TelegramError as exc:  # the menu is a convenience: the bot answers without it
            log.warning("telegram bot: the command menu was not published (%s)", scrub(exc.message))
        await app.start()
        if polling and app.updater is not None:
            await app.updater.start_polling(poll_interval=poll_interval, timeout=20, drop_pending_updates=False)
        try:
            await stop.wait()
        finally:
            if polling and app.updater is not None and app.updater.running:
                await app.updater.stop()
            await app.stop()
            hidden = app.bot_data.get("hidden")
            if isinstance(hidden, HiddenSecrets):
                hidden.remove()


async def register_webhook(block: ChannelSettings, token: SecretStr, url: str | None, secrets: Secrets) -> str:
    """setWebhook (or deleteWebhook when `url` is None) with the secret header; what Telegram now has."""
    assert isinstance(block, TelegramBotSettings)
    base = block.api_url.rstrip("/")
    bot = Bot(token.get_secret_value(), base_url=f"{base}/bot", base_file_url=f"{base}/file/bot")
    hidden = HiddenSecrets([token.get_secret_value()], URL_LOGGERS)
    try:
        async with bot:
            if url is None:
                await bot.delete_webhook()
            else:
                await bot.set_webhook(
                    url, secret_token=webhook_secret(secrets), allowed_updates=["message", "callback_query"]
                )
            info = await bot.get_webhook_info()
    except TelegramError as exc:
        raise BotSetupError(f"Telegram refused: {scrub(exc.message)}") from None
    finally:
        hidden.remove()
    if not info.url:
        return f"no webhook: the bot polls (`outreach bot --polling`); {info.pending_update_count} updates waiting"
    return f"webhook set to {info.url}; {info.pending_update_count} updates waiting"


@contextlib.contextmanager
def running_in_thread(parts: BotParts, polling: bool = True, start_within: float = 10.0) -> Iterator[None]:
    """Run the bot in a thread (and event loop) of its own while the block runs: the demo's and the tests' way."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(run_application(parts.app, polling=polling, stop=stop))
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=main, name="telegram bot", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_within
    while not parts.app.running and not failure and thread.is_alive():
        if time.monotonic() > deadline:
            raise BotSetupError(f"the bot did not start within {start_within:g} s")
        time.sleep(0.01)
    try:
        if failure:
            raise failure[0]
        yield
    finally:
        if not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        if failure and thread is not None:
            raise failure[0]
