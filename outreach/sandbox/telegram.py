"""A Telegram Bot API server that keeps what bots post, for tests and the demo.

python-telegram-bot talks to it through `base_url`, so the real client's encoding,
error mapping and retries are what get exercised. It checks what the real API
checks where our messages can go wrong (HTML markup, lengths in UTF-16 units,
membership, migration, flood limits) and answers in the real error wording, so code
that reacts to a description or a `parameters` field is tested against the real shape.
Posts keep the bot's id, never its token: tests check that tokens do not leak.

Tests can also act as Telegram users (`user_sends`, `user_taps`): the updates this
makes are served by getUpdates (long polling, offset confirmation) or POSTed to a
webhook, so a real python-telegram-bot `Application` with inline keyboards runs end
to end. A per-bot rate limit (`rate_per_bot`) lets a broadcast benchmark meet the
429s a real bot meets when it sends faster than Telegram allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.sandbox.faults import (
    Answer,
    BadBody,
    Fault,
    FaultScript,
    Served,
    Window,
    json_response,
    read_params,
    respond,
)

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CHAT_KINDS = frozenset({"private", "group", "supergroup", "channel"})
_ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "tg-spoiler", "span", "a", "code", "pre", "blockquote"}
)
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TOKEN_BOT_ID = re.compile(r"(\d+):")
_TAG_NAME = re.compile(r"[^\s>/<]*")
# A leading bot command as Telegram marks it: "/name" or "/name@botname".
_COMMAND = re.compile(r"/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")
_BOT_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
CALLBACK_DATA_LIMIT = 64  # bytes of UTF-8
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
# Fields of an InlineKeyboardButton that make it do something; one is required.
_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)
# Update types Telegram leaves out unless a bot asks for them by name in allowed_updates.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_POLL_STEP = 0.25  # seconds a waiting long poll or idle webhook sender sleeps between checks at most


@dataclass(frozen=True)
class TelegramMessage:
    """One message a bot posted, as last edited: `text`/`caption` keep their markup, `parse_mode` says which."""

    chat_id: int
    message_id: int
    date: int
    bot_id: int
    text: str | None = None
    caption: str | None = None
    photo: str | None = None  # the URL (or "upload:<filename>") the bot gave
    parse_mode: str | None = None
    link_preview: dict[str, Any] | None = None
    reply_markup: dict[str, Any] | None = None  # the inline keyboard under the message, as sent
    edit_date: int | None = None  # set once the message was edited


@dataclass(frozen=True)
class CallbackAnswer:
    """An answerCallbackQuery call: which tap it answered and what the user was shown."""

    query_id: str
    bot_id: int
    user_id: int
    data: str | None
    text: str | None = None
    show_alert: bool = False
    url: str | None = None


@dataclass(frozen=True)
class _Bot:
    id: int
    username: str
    first_name: str


@dataclass
class _Chat:
    id: int
    kind: str
    title: str
    username: str | None
    members: frozenset[str]  # tokens that may post; empty: every bot
    removed: set[str] = field(default_factory=set)
    cannot_post: set[str] = field(default_factory=set)  # members without the right to post
    migrated_to: int | None = None
    last_message_id: int = 0


@dataclass
class _Webhook:
    """A bot's webhook as set, and the last delivery error getWebhookInfo reports."""

    url: str
    secret: str | None
    max_connections: int
    has_custom_certificate: bool
    ip_address: str | None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass(frozen=True)
class _Query:
    """A callback query the bot has not answered yet."""

    user_id: int
    data: str | None


@dataclass
class _BotState:
    """What Telegram keeps per bot: its update queue, webhook, commands and open callback queries."""

    # (update_id, update type, the Update as JSON), oldest first, until confirmed or delivered.
    pending: deque[tuple[int, str, dict[str, Any]]] = field(default_factory=deque)
    next_update_id: int = 1
    allowed: frozenset[str] | None = None  # allowed_updates; None: Telegram's default
    webhook: _Webhook | None = None
    polls: int = 0  # getUpdates calls so far: a newer call ends an older one still waiting
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)  # (scope, language)
    queries: dict[str, _Query] = field(default_factory=dict)


@dataclass(frozen=True)
class _Described:
    """A success that also carries a description, as setWebhook's "Webhook was set"."""

    result: Any
    description: str


class _Refusal(Exception):
    """The Bot API's answer to a call it refuses."""

    def __init__(self, status: int, description: str, parameters: dict[str, int] | None = None) -> None:
        super().__init__(description)
        self.status, self.description, self.parameters = status, description, parameters

    def answer(self) -> Answer:
        return Answer(self.status, error_body(self.status, self.description, self.parameters))


def error_body(status: int, description: str | None = None, parameters: dict[str, int] | None = None) -> dict[str, Any]:
    """The Bot API's error JSON; the description defaults to the HTTP reason phrase."""
    if description is None:
        try:
            description = HTTPStatus(status).phrase
        except ValueError:
            description = "Unknown Error"
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


class EntityError(ValueError):
    """Markup the Bot API would refuse; the message is the part after "can't parse entities: "."""


class _HTMLText(HTMLParser):
    """Telegram's HTML subset, strictly: unknown tags, bad nesting, bare < and & are errors."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=False)
        self.markup = markup
        self.visible: list[str] = []
        self.open_tags: list[str] = []
        self._line_starts = [0]
        for index, char in enumerate(markup):
            if char == "\n":
                self._line_starts.append(index + 1)

    def _where(self, extra: int = 0) -> int:
        # getpos() gives the line and column of the current token; Telegram reports UTF-8 byte offsets.
        line, column = self.getpos()
        return self._line_starts[line - 1] + column + extra

    def _bytes(self, index: int) -> int:
        return len(self.markup[:index].encode("utf-8"))

    def _unsupported(self, index: int) -> EntityError:
        name = _TAG_NAME.match(self.markup, index + 1)
        return EntityError(
            f'Unsupported start tag "{name.group() if name else ""}" at byte offset {self._bytes(index)}'
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        where = self._where()
        if tag not in _ALLOWED_TAGS:
            raise self._unsupported(where)
        if tag == "span" and dict(attrs).get("class") != "tg-spoiler":
            raise EntityError('Tag "span" must have class "tg-spoiler"')
        self.open_tags.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise self._unsupported(self._where())

    def handle_endtag(self, tag: str) -> None:
        offset = self._bytes(self._where())
        if not self.open_tags:
            raise EntityError(f"Unexpected end tag at byte offset {offset}")
        expected = self.open_tags.pop()
        if expected != tag:
            raise EntityError(f'Unmatched end tag at byte offset {offset}, expected "</{expected}>", found "</{tag}>"')

    def handle_data(self, data: str) -> None:
        # With convert_charrefs off, valid entities arrive through handle_entityref/charref:
        # any < or & still in the data is bare.
        where = self._where()
        for index, char in enumerate(data):
            if char == "<":
                raise self._unsupported(where + index)
            if char == "&":
                raise EntityError(f"Unsupported HTML entity at byte offset {self._bytes(where + index)}")
        self.visible.append(data)

    def handle_entityref(self, name: str) -> None:
        where = self._where()
        if name not in _NAMED_ENTITIES or not self.markup.startswith(f"&{name};", where):
            raise EntityError(f"Unsupported HTML entity at byte offset {self._bytes(where)}")
        self.visible.append(_NAMED_ENTITIES[name])

    def handle_charref(self, name: str) -> None:
        where = self._where()
        try:
            code = int(name[1:], 16) if name[:1] in ("x", "X") else int(name)
        except ValueError:
            code = -1
        if not (0 < code <= 0x10FFFF) or 0xD800 <= code <= 0xDFFF or not self.markup.startswith(f"&#{name};", where):
            raise EntityError(f"Unsupported HTML entity at byte offset {self._bytes(where)}")
        self.visible.append(chr(code))

    def handle_comment(self, data: str) -> None:
        raise self._unsupported(self._where())

    def handle_decl(self, decl: str) -> None:
        raise self._unsupported(self._where())

    def handle_pi(self, data: str) -> None:
        raise self._unsupported(self._where())

    def unknown_decl(self, data: str) -> None:
        raise self._unsupported(self._where())

    def text(self) -> str:
        """Feed the whole markup and return the text a reader sees."""
        self.feed(self.markup)
        self.close()
        if self.open_tags:
            raise EntityError(f'Can\'t find end tag corresponding to start tag "{self.open_tags[-1]}"')
        return "".join(self.visible)


def html_text(markup: str) -> str:
    """The text Telegram shows for HTML `markup`; EntityError when it would refuse the markup."""
    return _HTMLText(markup).text()


def utf16_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def _visible(markup: str, parse_mode: str | None) -> str:
    mode = (parse_mode or "").lower()
    if mode == "html":
        try:
            return html_text(markup)
        except EntityError as exc:
            raise _Refusal(400, f"Bad Request: can't parse entities: {exc}") from exc
    if mode in ("", "markdown", "markdownv2"):
        # Markdown is not validated here (the project sends HTML): its length is counted as sent.
        return markup
    raise _Refusal(400, "Bad Request: unsupported parse_mode")


def _json_object(params: dict[str, str], name: str, what: str) -> dict[str, Any] | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise _Refusal(400, f"Bad Request: can't parse {what} JSON object")
    return value


def _photo_sizes(photo: str) -> list[dict[str, Any]]:
    # Stable ids from the URL: the same picture gets the same file ids, as on Telegram.
    digest = hashlib.sha256(photo.encode("utf-8")).hexdigest()
    sizes = ((90, 60, "s"), (320, 213, "m"), (800, 533, "x"))
    return [
        {
            "file_id": f"AgACAgUAAx{digest[:32]}{tag}",
            "file_unique_id": f"AQAD{digest[:12]}{tag}",
            "width": w,
            "height": h,
        }
        for w, h, tag in sizes
    ]


_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"
    " as a current content and reply markup of the message"
)
_WEBHOOK_CONFLICT = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
_POLL_CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
_QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"


class TelegramEmulator(Served):
    """A Bot API server: bots, chats, users, the messages bots sent, updates for them, and scripted faults.

    Use it as a context manager to run it on a loopback port; give `base_url` to
    python-telegram-bot. `rate_per_chat` (calls per second) turns on flood control
    per chat, `rate_per_bot` across all chats of one bot (a broadcast's limit); both
    count the sending methods (sendMessage, sendPhoto, copyMessage). Webhook deliveries
    are retried every `webhook_retry_seconds` until the webhook answers 2xx.
    """

    def __init__(
        self,
        rate_per_chat: float | None = None,
        *,
        rate_per_bot: float | None = None,
        clock: Callable[[], float] = time.time,
        webhook_retry_seconds: float = 0.2,
        webhook_timeout_seconds: float = 5.0,
    ) -> None:
        self.faults = FaultScript()
        self._clock = clock
        self._window = Window(rate_per_chat)
        self._bot_window = Window(rate_per_bot)
        self._webhook_retry = webhook_retry_seconds
        self._webhook_timeout = webhook_timeout_seconds
        self._lock = threading.Lock()
        self._bots: dict[str, _Bot] = {}
        self._chats: dict[int, _Chat] = {}
        self._usernames: dict[str, int] = {}
        # Messages by (chat id, message id) in the order sent, and again per chat: edits and
        # deletions cost O(1) and posts(chat) reads one chat, not every message (10,000 in a benchmark).
        self._messages: dict[tuple[int, int], TelegramMessage] = {}
        self._by_chat: dict[int, dict[int, TelegramMessage]] = {}
        self._history: dict[tuple[int, int], list[TelegramMessage]] = {}
        self._requests: list[tuple[str, str]] = []
        self._states: dict[str, _BotState] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._answers: list[CallbackAnswer] = []
        self._deliveries: list[tuple[int, int]] = []
        self._flood_refusals = 0
        self._queries_made = 0
        # The server's event loop, and an event set (then replaced) when an update is queued, so
        # a waiting long poll or webhook sender wakes at once; they also check every _POLL_STEP.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup = asyncio.Event()
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._closing = False
        self._methods: dict[str, Callable[[_Bot, str, dict[str, str]], Any]] = {
            "getMe": self._get_me,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "copyMessage": self._copy_message,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
        }
        # Method names are case-insensitive on the Bot API.
        self._method_names = {name.lower(): name for name in self._methods}
        self.app = Starlette(
            routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])], lifespan=self._lifespan
        )

    def __enter__(self) -> Self:
        self._closing = False
        return super().__enter__()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Waiting long polls answer now: uvicorn waits for open requests before it stops.
        self._closing = True
        self._notify()
        super().__exit__(exc_type, exc, tb)

    # --- the platform's state, set up by tests and the demo ---------------------------

    @property
    def base_url(self) -> str:
        """What python-telegram-bot's `base_url` gets (it appends the token, then /method)."""
        return f"{self.url}/bot"

    def add_bot(
        self, token: str, username: str = "quangngai_outreach_bot", first_name: str = "Quảng Ngãi Outreach"
    ) -> int:
        """Register a bot; returns its user id (the token's numeric prefix, as on Telegram)."""
        with self._lock:
            prefix = _TOKEN_BOT_ID.match(token)
            bot_id = int(prefix.group(1)) if prefix else 7_000_000_001 + len(self._bots)
            self._bots[token] = _Bot(bot_id, username, first_name)
            return bot_id

    def revoke(self, token: str) -> None:
        """The token stops working (401 Unauthorized), as after /revoke in BotFather."""
        with self._lock:
            self._bots.pop(token, None)

    def add_chat(
        self,
        chat_id: int,
        *,
        username: str | None = None,
        title: str = "Tin tức Quảng Ngãi",
        kind: str = "channel",
        members: Iterable[str] = (),
    ) -> None:
        """Create a chat; `members` are the tokens of bots that may post (none given: every bot).

        A private chat with members is one only those bots were started in: other bots get
        400 "chat not found" there, as from Telegram for a user who never wrote to them.
        """
        if kind not in CHAT_KINDS:
            raise ValueError(f"kind must be one of {sorted(CHAT_KINDS)}")
        with self._lock:
            self._chats[chat_id] = _Chat(chat_id, kind, title, username, frozenset(members))
            if username:
                self._usernames[username.lower()] = chat_id

    def remove_bot(self, chat: int | str, token: str) -> None:
        """Take a bot out of a chat (kicked, or blocked by the user in a private chat)."""
        with self._lock:
            self._lookup(chat).removed.add(token)

    def block(self, user_id: int) -> None:
        """The user blocks every bot registered now: sends to their private chat answer 403
        "Forbidden: bot was blocked by the user". KeyError when there is no such chat."""
        with self._lock:
            self._lookup(user_id).removed.update(self._bots)

    def forbid_posting(self, chat: int | str, token: str) -> None:
        """Keep a bot in a channel but without the right to post (an administrator without it, or a member)."""
        with self._lock:
            self._lookup(chat).cannot_post.add(token)

    def migrate(self, chat_id: int, new_id: int) -> None:
        """Upgrade a group to a supergroup: the old id answers migrate_to_chat_id from now on."""
        with self._lock:
            old = self._chats[chat_id]
            old.migrated_to = new_id
            self._chats[new_id] = _Chat(new_id, "supergroup", old.title, old.username, old.members, set(old.removed))
            if old.username:
                self._usernames[old.username.lower()] = new_id

    def retry_after(
        self, seconds: int, *, method: str | None = "sendMessage", target: str | None = None, times: int = 1
    ) -> None:
        """Queue flood-control answers (429 with parameters.retry_after)."""
        body = error_body(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
        self.faults.add(Fault("error", status=429, body=body), method=method, target=target, times=times)

    def reset(self) -> None:
        """Forget every bot, chat, user, message, update, request and queued fault (the server keeps running)."""
        self.faults.clear()
        self._window.clear()
        self._bot_window.clear()
        with self._lock:
            for state in (
                self._bots,
                self._chats,
                self._usernames,
                self._messages,
                self._by_chat,
                self._history,
                self._states,
                self._users,
            ):
                state.clear()
            self._requests.clear()
            self._answers.clear()
            self._deliveries.clear()
            self._flood_refusals = 0

    # --- acting as Telegram users ---------------------------------------------------------

    def user_sends(
        self,
        user_id: int,
        text: str,
        *,
        first_name: str = "Minh",
        language_code: str | None = "vi",
        chat_id: int | None = None,
        token: str | None = None,
    ) -> int:
        """A user writes to a bot: queue an Update with `message`; returns its update_id.

        Without `chat_id` it is the private chat with the user (chat id = user id), created
        when missing; writing to a bot the user had blocked unblocks it, as Telegram's
        "Restart" button does. With `chat_id` the chat must exist (KeyError) and hold the
        bot (ValueError). A leading "/command" or "/command@bot" gets a bot_command entity.
        `token` picks the bot; without it there must be exactly one.
        """
        with self._lock:
            token = self._pick(token)
            user = self._user(user_id, first_name=first_name, language_code=language_code)
            chat = self._user_chat(user, token, chat_id, writes=True)
            chat.last_message_id += 1
            message: dict[str, Any] = {
                "message_id": chat.last_message_id,
                "from": user,
                "chat": _chat_json(chat),
                "date": int(self._clock()),
                "text": text,
            }
            command = _COMMAND.match(text)
            if command:
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_length(command.group())}]
            update_id = self._queue(token, "message", {"message": message})
        self._notify()
        return update_id

    def user_taps(
        self, user_id: int, message_id: int, data: str, *, chat_id: int | None = None, token: str | None = None
    ) -> int:
        """A user taps an inline button: queue an Update with `callback_query`; returns its update_id.

        `data` is sent as given, so a test can forge it. The query carries the bot's
        message `message_id` in the chat (the private chat with the user unless `chat_id`)
        as it is now, keyboard included. When the bot has no such message there (never
        sent, deleted, another bot's), it carries an InaccessibleMessage (date 0) instead,
        as Telegram does for messages it no longer shows: python-telegram-bot 22 parses it
        as a `Message` whose `is_accessible` is False. A tap does not unblock a bot the user
        blocked.
        """
        with self._lock:
            token = self._pick(token)
            bot = self._bots[token]
            user = self._user(user_id)
            chat = self._user_chat(user, token, chat_id, writes=False)
            stored = self._messages.get((chat.id, message_id))
            if stored is not None and stored.bot_id == bot.id:
                message = self._full_json(chat, stored, bot=bot)
            else:
                message = {"chat": _chat_json(chat), "message_id": message_id, "date": 0}
            self._queries_made += 1
            query_id = str(4_300_000_000_000_000_000 + self._queries_made)
            self._state(token).queries[query_id] = _Query(user_id, data)
            query = {
                "id": query_id,
                "from": user,
                "message": message,
                "chat_instance": _chat_instance(bot.id, chat.id),
                "data": data,
            }
            update_id = self._queue(token, "callback_query", {"callback_query": query})
        self._notify()
        return update_id

    # --- what happened, for assertions ----------------------------------------------------

    @property
    def messages(self) -> list[TelegramMessage]:
        """Every message bots sent and did not delete, oldest first, each as last edited."""
        with self._lock:
            return list(self._messages.values())

    def posts(self, chat: int | str | None = None) -> list[TelegramMessage]:
        """Messages in one chat (an id or "@username"), or in all chats, each as last edited."""
        with self._lock:
            if chat is None:
                return list(self._messages.values())
            chat_id = self._lookup(chat).id
            return list(self._by_chat.get(chat_id, {}).values())

    def history(self, chat: int | str, message_id: int) -> list[TelegramMessage]:
        """Every version of one message, oldest first (one version if never edited, none if unknown)."""
        with self._lock:
            chat_id = self._lookup(chat).id
            versions = self._history.get((chat_id, message_id))
            if versions is not None:
                return list(versions)
            current = self._messages.get((chat_id, message_id))
            return [current] if current is not None else []

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, chat_id as sent or "") for every call, in order."""
        with self._lock:
            return list(self._requests)

    def pending_updates(self, token: str | None = None) -> list[dict[str, Any]]:
        """The bot's updates not yet confirmed (getUpdates) or delivered (webhook), oldest first."""
        with self._lock:
            state = self._states.get(self._pick(token))
            return [update for _, _, update in state.pending] if state is not None else []

    @property
    def callback_answers(self) -> list[CallbackAnswer]:
        """Every answerCallbackQuery accepted, in order."""
        with self._lock:
            return list(self._answers)

    @property
    def webhook_deliveries(self) -> list[tuple[int, int]]:
        """(update_id, HTTP status) for every webhook POST, in order; status 0: no HTTP answer."""
        with self._lock:
            return list(self._deliveries)

    @property
    def flood_refusals(self) -> int:
        """How many calls the per-chat and per-bot rate limits refused with 429 (not scripted faults)."""
        with self._lock:
            return self._flood_refusals

    def commands(self, language_code: str = "", *, token: str | None = None) -> list[tuple[str, str]]:
        """The bot's (command, description) list for the default scope and a language ("" = all)."""
        with self._lock:
            state = self._states.get(self._pick(token))
            key = (_scope_key({"type": "default"}), language_code)
            listed = state.commands.get(key, []) if state is not None else []
            return [(each["command"], each["description"]) for each in listed]

    # --- the HTTP side -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._bind_loop()
        with self._lock:
            hooked = [token for token, state in self._states.items() if state.webhook is not None]
        for token in hooked:
            self._start_sender(token)
        try:
            yield
        finally:
            senders = list(self._senders.values())
            self._senders.clear()
            for task in senders:
                task.cancel()
            await asyncio.gather(*senders, return_exceptions=True)

    async def _endpoint(self, request: Request) -> Response:
        self._bind_loop()
        token, sent_method = request.path_params["token"], request.path_params["method"]
        method = self._method_names.get(sent_method.lower(), sent_method)
        try:
            params: dict[str, str] | None = await read_params(request)
        except BadBody:
            params = None
        chat_key = (params or {}).get("chat_id")
        with self._lock:
            self._requests.append((method, chat_key or ""))
        fault = self.faults.take(method, chat_key)
        # A scripted fault on getUpdates goes through respond() below, without long polling.
        if fault is None and method == "getUpdates":
            return await self._long_poll(request, token, params)
        response = await respond(fault, lambda: self._handle(token, method, params), error_body)
        if method == "setWebhook":
            self._start_sender(token)
        return response

    def _handle(self, token: str, method: str, params: dict[str, str] | None) -> Answer:
        with self._lock:
            try:
                bot = self._bots.get(token)
                if bot is None:
                    raise _Refusal(401, "Unauthorized")
                handler = self._methods.get(method)
                if handler is None:
                    raise _Refusal(404, "Not Found")
                if params is None:
                    raise _Refusal(400, "Bad Request: can't parse request body")
                result = handler(bot, token, params)
            except _Refusal as refusal:
                return refusal.answer()
            if isinstance(result, _Described):
                return Answer(200, {"ok": True, "result": result.result, "description": result.description})
            return Answer(200, {"ok": True, "result": result})

    async def _long_poll(self, request: Request, token: str, params: dict[str, str] | None) -> Response:
        """getUpdates: answer at once when updates wait, else when one comes or `timeout` runs out.

        The threading lock is never held while waiting; a later getUpdates of the same bot
        ends this one with 409, as on Telegram.
        """
        answer = self._handle(token, "getUpdates", params)
        if params is None or not answer.accepted or answer.body["result"]:
            return json_response(answer.body, answer.status)
        # No await since the handler ran: no other getUpdates can have counted itself yet.
        with self._lock:
            state = self._states.get(token)
            generation = state.polls if state is not None else -1
        limit = _limit(params)
        deadline = time.monotonic() + _seconds(params.get("timeout"))
        while not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wakeup = self._wakeup  # taken before looking, so an update queued after the look wakes us
            with self._lock:
                state = self._states.get(token)
                if state is None:
                    break  # reset() while waiting
                if state.webhook is not None:
                    return json_response(error_body(409, _WEBHOOK_CONFLICT), 409)
                if state.polls != generation:
                    return json_response(error_body(409, _POLL_CONFLICT), 409)
                updates = _take(state, limit)
            if updates:
                return json_response({"ok": True, "result": updates}, 200)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), min(remaining, _POLL_STEP))
            if await request.is_disconnected():
                break  # the client gave up; its updates stay queued until confirmed
        return json_response(answer.body, answer.status)

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # An asyncio.Event belongs to the loop that first waits on it: a new one per server run.
            self._loop, self._wakeup = loop, asyncio.Event()

    def _notify(self) -> None:
        """Wake waiting long polls and webhook senders (callable from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _start_sender(self, token: str) -> None:
        """Run the webhook sender of a bot whose webhook is set, unless it runs already (loop thread)."""
        running = self._senders.get(token)
        if running is not None and not running.done():
            return
        with self._lock:
            state = self._states.get(token)
            hooked = state is not None and state.webhook is not None
        if hooked:
            self._senders[token] = asyncio.get_running_loop().create_task(self._send_updates(token))

    async def _send_updates(self, token: str) -> None:
        """POST a bot's updates to its webhook, oldest first, one at a time, until the webhook is deleted.

        An update leaves the queue once the webhook answers 2xx; otherwise the error is
        noted for getWebhookInfo and the same update is tried again after a pause.
        """
        try:
            async with httpx.AsyncClient(timeout=self._webhook_timeout, trust_env=False) as client:
                while not self._closing:
                    wakeup = self._wakeup
                    with self._lock:
                        state = self._states.get(token)
                        hook = state.webhook if state is not None else None
                        if state is None or hook is None:
                            return
                        while state.pending and not _allows(state.allowed, state.pending[0][1]):
                            state.pending.popleft()
                        head = state.pending[0] if state.pending else None
                    if head is None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wakeup.wait(), _POLL_STEP)
                        continue
                    update_id, _, update = head
                    status, error = await _post_update(client, hook, update)
                    with self._lock:
                        self._deliveries.append((update_id, status))
                        state = self._states.get(token)
                        if error is None:
                            if state is not None and state.pending and state.pending[0][0] == update_id:
                                state.pending.popleft()
                        else:
                            hook.last_error_date, hook.last_error_message = int(self._clock()), error
                    if error is not None:
                        await asyncio.sleep(self._webhook_retry)
        finally:
            if self._senders.get(token) is asyncio.current_task():
                del self._senders[token]

    # --- helpers (called with the lock held) ------------------------------------------------

    def _lookup(self, chat: int | str) -> _Chat:
        key = chat if isinstance(chat, int) else self._usernames.get(chat.removeprefix("@").lower())
        found = self._chats.get(key) if key is not None else None
        if found is None:
            raise KeyError(f"no chat {chat!r}")
        return found

    def _pick(self, token: str | None) -> str:
        """The bot a user action or question is about: the one given, or the only one."""
        if token is not None:
            if token not in self._bots:
                raise KeyError("no bot with that token")  # the token itself is never repeated
            return token
        if len(self._bots) != 1:
            raise ValueError(f"{len(self._bots)} bots are registered: say which one with token=")
        return next(iter(self._bots))

    def _state(self, token: str) -> _BotState:
        state = self._states.get(token)
        if state is None:
            state = self._states[token] = _BotState()
        return state

    def _user(self, user_id: int, **profile: str | None) -> dict[str, Any]:
        """The user's JSON (a Telegram User), remembered so later taps show the same profile.

        `profile` sets fields (first_name, language_code); None removes one.
        """
        user = self._users.setdefault(
            user_id, {"id": user_id, "is_bot": False, "first_name": "Minh", "language_code": "vi"}
        )
        for name, value in profile.items():
            if value is None:
                user.pop(name, None)
            else:
                user[name] = value
        return dict(user)

    def _user_chat(self, user: dict[str, Any], token: str, chat_id: int | None, *, writes: bool) -> _Chat:
        user_id = int(user["id"])
        if chat_id is not None and chat_id != user_id:
            chat = self._lookup(chat_id)
            if chat.migrated_to is not None:
                raise ValueError(f"chat {chat_id} was migrated to {chat.migrated_to}")
            if token in chat.removed or (chat.members and token not in chat.members):
                raise ValueError(f"the bot is not in chat {chat_id}")
            return chat
        private = self._chats.get(user_id)
        if private is None:
            # Only this bot was started by the user: other bots still get "chat not found" here.
            private = _Chat(user_id, "private", str(user["first_name"]), None, frozenset({token}))
            self._chats[user_id] = private
        elif writes:
            if private.members and token not in private.members:
                private.members = private.members | {token}
            private.removed.discard(token)
        return private

    def _queue(self, token: str, kind: str, body: dict[str, Any]) -> int:
        state = self._state(token)
        update_id = state.next_update_id
        state.next_update_id += 1
        state.pending.append((update_id, kind, {"update_id": update_id, **body}))
        return update_id

    def _bot_of(self, bot_id: int) -> _Bot:
        found = next((bot for bot in self._bots.values() if bot.id == bot_id), None)
        return found if found is not None else _Bot(bot_id, "bot", "Bot")  # a revoked bot's message

    def _chat_by(self, sent: str) -> _Chat:
        sent = sent.strip()
        if not sent:
            raise _Refusal(400, "Bad Request: chat_id is empty")
        try:
            chat = self._lookup(sent if sent.startswith("@") else int(sent))
        except (KeyError, ValueError):
            raise _Refusal(400, "Bad Request: chat not found") from None
        if chat.migrated_to is not None:
            raise _Refusal(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": chat.migrated_to},
            )
        return chat

    def _chat(self, params: dict[str, str]) -> _Chat:
        return self._chat_by(params.get("chat_id", ""))

    def _check_member(self, chat: _Chat, token: str) -> None:
        outsider = bool(chat.members) and token not in chat.members
        if outsider and chat.kind == "private":  # the user never started this bot (blocked or not)
            raise _Refusal(400, "Bad Request: chat not found")
        if outsider or token in chat.removed:
            raise _Refusal(403, _forbidden(chat.kind))

    def _postable(self, params: dict[str, str], token: str, bot: _Bot) -> _Chat:
        chat = self._chat(params)
        self._check_member(chat, token)
        if token in chat.cannot_post:
            raise _Refusal(400, "Bad Request: need administrator rights in the channel chat")
        now = time.monotonic()
        # The bot's limit first: a broadcast meets it long before any one chat's.
        wait = self._bot_window.hit(str(bot.id), now)
        if wait is None:
            wait = self._window.hit(str(chat.id), now)
        if wait is not None:
            self._flood_refusals += 1
            seconds = max(1, math.ceil(wait))
            raise _Refusal(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
        return chat

    def _editable(self, params: dict[str, str], token: str, bot: _Bot) -> tuple[_Chat, TelegramMessage]:
        if params.get("inline_message_id"):
            raise _Refusal(400, "Bad Request: MESSAGE_ID_INVALID")  # the emulator has no inline messages
        chat = self._chat(params)
        self._check_member(chat, token)
        if not params.get("message_id"):
            raise _Refusal(400, "Bad Request: message identifier is not specified")
        message = self._by_chat.get(chat.id, {}).get(_integer(params, "message_id", 0))
        if message is None:
            raise _Refusal(400, "Bad Request: message to edit not found")
        if message.bot_id != bot.id:
            raise _Refusal(400, "Bad Request: message can't be edited")
        return chat, message

    def _store(self, chat: _Chat, bot: _Bot, **content: Any) -> TelegramMessage:
        chat.last_message_id += 1
        message = TelegramMessage(chat.id, chat.last_message_id, int(self._clock()), bot.id, **content)
        self._messages[(chat.id, message.message_id)] = message
        self._by_chat.setdefault(chat.id, {})[message.message_id] = message
        return message

    def _replace(self, edited: TelegramMessage) -> None:
        key = (edited.chat_id, edited.message_id)
        self._history.setdefault(key, [self._messages[key]]).append(edited)
        self._messages[key] = edited
        self._by_chat[edited.chat_id][edited.message_id] = edited

    def _message_json(self, chat: _Chat, bot: _Bot, message: TelegramMessage) -> dict[str, Any]:
        result: dict[str, Any] = {"message_id": message.message_id, "date": message.date, "chat": _chat_json(chat)}
        # Channel posts are signed by the channel; everywhere else the bot is the sender.
        if chat.kind == "channel":
            result["sender_chat"] = _chat_json(chat)
        else:
            me = self._get_me(bot, "", {})
            result["from"] = {k: me[k] for k in ("id", "is_bot", "first_name", "username")}
        return result

    def _full_json(
        self, chat: _Chat, message: TelegramMessage, visible: str | None = None, *, bot: _Bot | None = None
    ) -> dict[str, Any]:
        """A stored message as the Bot API shows it (`visible`: its text or caption, when known)."""
        result = self._message_json(chat, bot or self._bot_of(message.bot_id), message)
        if message.edit_date is not None:
            result["edit_date"] = message.edit_date
        if message.photo is not None:
            result["photo"] = _photo_sizes(message.photo)
            caption = visible if visible is not None else _visible(message.caption or "", message.parse_mode)
            if caption:
                result["caption"] = caption
        else:
            result["text"] = visible if visible is not None else _visible(message.text or "", message.parse_mode)
            if message.link_preview is not None:
                result["link_preview_options"] = message.link_preview
        if message.reply_markup is not None:
            result["reply_markup"] = message.reply_markup
        return result

    # --- methods (called with the lock held) ------------------------------------------------

    def _get_me(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        return {
            "id": bot.id,
            "is_bot": True,
            "first_name": bot.first_name,
            "username": bot.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _get_chat(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        # ChatFullInfo: python-telegram-bot 22 requires these three beyond the Chat fields.
        no_gifts = dict.fromkeys(
            ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"), False
        )
        full = {"accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": no_gifts}
        return {**_chat_json(self._chat(params)), **full}

    def _get_chat_member(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        chat = self._chat(params)
        if params.get("user_id") != str(bot.id):
            raise _Refusal(400, "Bad Request: user not found")  # the emulator knows its bots only
        user = {"id": bot.id, "is_bot": True, "first_name": bot.first_name, "username": bot.username}
        if token in chat.removed or (chat.members and token not in chat.members):
            return {"status": "left", "user": user}
        rights = dict.fromkeys(
            (
                "can_be_edited",
                "is_anonymous",
                "can_manage_chat",
                "can_delete_messages",
                "can_manage_video_chats",
                "can_restrict_members",
                "can_promote_members",
                "can_change_info",
                "can_invite_users",
                "can_post_stories",
                "can_edit_stories",
                "can_delete_stories",
            ),
            False,
        )
        allowed = token not in chat.cannot_post
        return {"status": "administrator", "user": user, **rights, "can_post_messages": allowed}

    def _send_message(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        chat = self._postable(params, token, bot)
        markup, parse_mode = params.get("text", ""), params.get("parse_mode") or None
        visible = _message_text(markup, parse_mode)
        preview = _json_object(params, "link_preview_options", "link preview options")
        keyboard = _inline_keyboard(params)
        message = self._store(
            chat, bot, text=markup, parse_mode=parse_mode, link_preview=preview, reply_markup=keyboard
        )
        return self._full_json(chat, message, visible, bot=bot)

    def _send_photo(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        chat = self._postable(params, token, bot)
        photo = params.get("photo", "")
        if not photo:
            raise _Refusal(400, "Bad Request: there is no photo in the request")
        if not photo.startswith(("http://", "https://", "upload:")):
            raise _Refusal(400, "Bad Request: wrong file identifier/HTTP URL specified")
        markup, parse_mode = params.get("caption", ""), params.get("parse_mode") or None
        visible = _caption_text(markup, parse_mode)
        keyboard = _inline_keyboard(params)
        message = self._store(
            chat, bot, caption=markup or None, photo=photo, parse_mode=parse_mode, reply_markup=keyboard
        )
        return self._full_json(chat, message, visible, bot=bot)

    def _copy_message(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        source_chat = self._chat_by(params.get("from_chat_id", ""))
        source = self._by_chat.get(source_chat.id, {}).get(_integer(params, "message_id", 0))
        if source is None:
            raise _Refusal(400, "Bad Request: message to copy not found")
        chat = self._postable(params, token, bot)
        content: dict[str, Any] = {
            "text": source.text,
            "caption": source.caption,
            "photo": source.photo,
            "parse_mode": source.parse_mode,
            "link_preview": source.link_preview,
            "reply_markup": _inline_keyboard(params),
        }
        if source.photo is not None and "caption" in params:
            markup, parse_mode = params["caption"], params.get("parse_mode") or None
            _caption_text(markup, parse_mode)
            content.update(caption=markup or None, parse_mode=parse_mode)
        return {"message_id": self._store(chat, bot, **content).message_id}

    def _edit_message_text(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        chat, message = self._editable(params, token, bot)
        if message.photo is not None:
            raise _Refusal(400, "Bad Request: there is no text in the message to edit")
        markup, parse_mode = params.get("text", ""), params.get("parse_mode") or None
        visible = _message_text(markup, parse_mode)
        preview = _json_object(params, "link_preview_options", "link preview options")
        # As on Telegram, an edit without reply_markup takes the inline keyboard away.
        keyboard = _inline_keyboard(params)
        old_text, old_mode = message.text or "", message.parse_mode
        same_text = _content_key(markup, parse_mode, visible) == _content_key(
            old_text, old_mode, _visible(old_text, old_mode)
        )
        if same_text and keyboard == message.reply_markup:
            raise _Refusal(400, _NOT_MODIFIED)
        edited = dataclasses.replace(
            message,
            text=markup,
            parse_mode=parse_mode,
            link_preview=preview,
            reply_markup=keyboard,
            edit_date=int(self._clock()),
        )
        self._replace(edited)
        return self._full_json(chat, edited, visible, bot=bot)

    def _edit_message_reply_markup(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        chat, message = self._editable(params, token, bot)
        keyboard = _inline_keyboard(params)
        if keyboard == message.reply_markup:
            raise _Refusal(400, _NOT_MODIFIED)
        edited = dataclasses.replace(message, reply_markup=keyboard, edit_date=int(self._clock()))
        self._replace(edited)
        return self._full_json(chat, edited, bot=bot)

    def _delete_message(self, bot: _Bot, token: str, params: dict[str, str]) -> bool:
        chat = self._chat(params)
        self._check_member(chat, token)
        message_id = _integer(params, "message_id", 0)
        message = self._by_chat.get(chat.id, {}).get(message_id)
        if message is None:
            raise _Refusal(400, "Bad Request: message to delete not found")
        if message.bot_id != bot.id:
            raise _Refusal(400, "Bad Request: message can't be deleted")
        del self._by_chat[chat.id][message_id]
        del self._messages[(chat.id, message_id)]
        return True

    def _answer_callback_query(self, bot: _Bot, token: str, params: dict[str, str]) -> bool:
        state = self._state(token)
        query_id = params.get("callback_query_id", "")
        query = state.queries.get(query_id)
        if query is None:  # unknown, another bot's, or answered already
            raise _Refusal(400, _QUERY_TOO_OLD)
        text = params.get("text") or None
        if text is not None and utf16_length(text) > 200:
            raise _Refusal(400, "Bad Request: MESSAGE_TOO_LONG")
        del state.queries[query_id]
        self._answers.append(
            CallbackAnswer(
                query_id, bot.id, query.user_id, query.data, text, _flag(params, "show_alert"), params.get("url")
            )
        )
        return True

    def _set_my_commands(self, bot: _Bot, token: str, params: dict[str, str]) -> bool:
        try:
            sent = json.loads(params.get("commands", ""))
        except ValueError:
            sent = None
        if not isinstance(sent, list):
            raise _Refusal(400, "Bad Request: can't parse commands JSON object")
        if len(sent) > 100:
            raise _Refusal(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        commands: list[dict[str, str]] = []
        for each in sent:
            if not isinstance(each, dict) or not all(isinstance(each.get(k), str) for k in ("command", "description")):
                raise _Refusal(400, "Bad Request: can't parse BotCommand JSON object")
            if not _BOT_COMMAND_NAME.fullmatch(each["command"]):
                raise _Refusal(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(each["description"]) <= 256:
                raise _Refusal(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
            commands.append({"command": each["command"], "description": each["description"]})
        key = _commands_key(params)
        state = self._state(token)
        if commands:
            state.commands[key] = commands
        else:
            state.commands.pop(key, None)
        return True

    def _get_my_commands(self, bot: _Bot, token: str, params: dict[str, str]) -> list[dict[str, str]]:
        return [dict(each) for each in self._state(token).commands.get(_commands_key(params), [])]

    def _delete_my_commands(self, bot: _Bot, token: str, params: dict[str, str]) -> bool:
        self._state(token).commands.pop(_commands_key(params), None)
        return True

    def _get_updates(self, bot: _Bot, token: str, params: dict[str, str]) -> list[dict[str, Any]]:
        """The updates ready now; _long_poll waits for more. Offsets confirm as on Telegram."""
        state = self._state(token)
        if state.webhook is not None:
            raise _Refusal(409, _WEBHOOK_CONFLICT)
        state.polls += 1
        offset = _integer(params, "offset", 0)
        if offset > 0:  # every update below the offset is confirmed
            while state.pending and state.pending[0][0] < offset:
                state.pending.popleft()
        elif offset < 0:  # only the last -offset updates are kept
            while len(state.pending) > -offset:
                state.pending.popleft()
        allowed = _json_strings(params, "allowed_updates")
        if allowed is not None:  # kept for later calls, as on Telegram; [] means the default
            state.allowed = frozenset(allowed) or None
        return _take(state, _limit(params))

    def _set_webhook(self, bot: _Bot, token: str, params: dict[str, str]) -> _Described:
        state = self._state(token)
        url = params.get("url", "").strip()
        if not url:  # an empty URL removes the webhook
            return self._delete_webhook(bot, token, params)
        parts = urlsplit(url)
        # Telegram wants HTTPS on ports 443, 80, 88 or 8443; loopback HTTP on any port is allowed here.
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _Refusal(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token") or None
        if secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise _Refusal(400, "Bad Request: secret token contains unallowed characters")
        max_connections = min(100, max(1, _integer(params, "max_connections", 40)))
        allowed = _json_strings(params, "allowed_updates")
        if allowed is not None:
            state.allowed = frozenset(allowed) or None
        if _flag(params, "drop_pending_updates"):
            state.pending.clear()
        already = state.webhook is not None and state.webhook.url == url
        certificate = params.get("certificate") is not None
        state.webhook = _Webhook(url, secret, max_connections, certificate, params.get("ip_address") or None)
        return _Described(True, "Webhook is already set" if already else "Webhook was set")

    def _delete_webhook(self, bot: _Bot, token: str, params: dict[str, str]) -> _Described:
        state = self._state(token)
        if _flag(params, "drop_pending_updates"):
            state.pending.clear()
        if state.webhook is None:
            return _Described(True, "Webhook is already deleted")
        state.webhook = None
        return _Described(True, "Webhook was deleted")

    def _get_webhook_info(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        state = self._state(token)
        info: dict[str, Any] = {"url": "", "has_custom_certificate": False, "pending_update_count": len(state.pending)}
        hook = state.webhook
        if hook is None:
            return info
        info.update(
            url=hook.url,
            has_custom_certificate=hook.has_custom_certificate,
            max_connections=hook.max_connections,
            ip_address=hook.ip_address or "127.0.0.1",
        )
        if state.allowed is not None:
            info["allowed_updates"] = sorted(state.allowed)
        if hook.last_error_date is not None:
            info["last_error_date"] = hook.last_error_date
            info["last_error_message"] = hook.last_error_message
        return info


async def _post_update(client: httpx.AsyncClient, hook: _Webhook, update: dict[str, Any]) -> tuple[int, str | None]:
    """POST one update to a webhook: (HTTP status or 0, None or the error getWebhookInfo shows)."""
    headers = {"Content-Type": "application/json"}
    if hook.secret is not None:
        headers[SECRET_HEADER] = hook.secret
    body = json.dumps(update, ensure_ascii=False).encode("utf-8")
    try:
        response = await client.post(hook.url, content=body, headers=headers)
    except httpx.TimeoutException:
        return 0, "Read timeout expired"
    except httpx.ConnectError:
        return 0, "Connection refused"
    except httpx.HTTPError as exc:
        return 0, f"Connection error: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"


def _take(state: _BotState, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` pending updates of the allowed types; the rest go with the next confirmation."""
    taken: list[dict[str, Any]] = []
    for _, kind, update in state.pending:
        if len(taken) >= limit:
            break
        if _allows(state.allowed, kind):
            taken.append(update)
    return taken


def _allows(allowed: frozenset[str] | None, kind: str) -> bool:
    return kind not in _OPT_IN_UPDATES if allowed is None else kind in allowed


def _message_text(markup: str, parse_mode: str | None) -> str:
    visible = _visible(markup, parse_mode)
    if not visible.strip():
        raise _Refusal(400, "Bad Request: message text is empty")
    if utf16_length(visible) > TEXT_LIMIT:
        raise _Refusal(400, "Bad Request: message is too long")
    return visible


def _caption_text(markup: str, parse_mode: str | None) -> str:
    visible = _visible(markup, parse_mode)
    if utf16_length(visible) > CAPTION_LIMIT:
        raise _Refusal(400, "Bad Request: message caption is too long")
    return visible


def _content_key(markup: str, parse_mode: str | None, visible: str) -> tuple[str, str | None]:
    """What "message is not modified" compares: the visible text and, roughly, its formatting.

    HTML without tags formats nothing, so "a &amp; b" in HTML equals plain "a & b";
    with tags the markup itself stands for the entities.
    """
    mode = (parse_mode or "").lower()
    if mode == "html":
        return visible, markup if "<" in markup else None
    return visible, f"{mode}:{markup}" if mode else None


def _inline_keyboard(params: dict[str, str]) -> dict[str, Any] | None:
    """The inline keyboard in `reply_markup`, checked as Telegram checks it; None for none.

    Reply keyboards (keyboard, remove_keyboard, force_reply) are accepted but are not
    part of the message, as on Telegram; an inline keyboard without buttons is none.
    """
    markup = _json_object(params, "reply_markup", "reply keyboard markup")
    if markup is None or "inline_keyboard" not in markup:
        return None
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _Refusal(
            400, 'Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of Arrays'
        )
    for row in rows:
        for button in row:
            _check_button(button)
    if not any(rows):
        return None
    return {"inline_keyboard": rows}


def _check_button(button: object) -> None:
    if not isinstance(button, dict):
        raise _Refusal(400, "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise _Refusal(400, 'Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String')
    if not any(action in button for action in _BUTTON_ACTIONS):
        raise _Refusal(
            400, "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= CALLBACK_DATA_LIMIT:
            raise _Refusal(400, "Bad Request: BUTTON_DATA_INVALID")
    if "url" in button:
        url = button["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "tg://")):
            raise _Refusal(400, "Bad Request: BUTTON_URL_INVALID")


def _commands_key(params: dict[str, str]) -> tuple[str, str]:
    scope = _json_object(params, "scope", "bot command scope") or {"type": "default"}
    language = params.get("language_code", "")
    if language and not re.fullmatch(r"[a-z]{2}", language):
        raise _Refusal(400, "Bad Request: invalid language code specified")
    return _scope_key(scope), language


def _scope_key(scope: dict[str, Any]) -> str:
    return json.dumps(scope, sort_keys=True, separators=(",", ":"))


def _chat_instance(bot_id: int, chat_id: int) -> str:
    # A stable signed 64-bit number per (bot, chat), the shape Telegram's chat_instance has.
    digest = hashlib.sha256(f"{bot_id}:{chat_id}".encode()).digest()
    return str(int.from_bytes(digest[:8], "big", signed=True))


def _flag(params: dict[str, str], name: str) -> bool:
    return params.get(name, "").strip().lower() in ("true", "1")


def _integer(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _Refusal(400, f"Bad Request: invalid {name} specified") from None


def _limit(params: dict[str, str]) -> int:
    return min(100, max(1, _integer(params, "limit", 100)))


def _seconds(raw: str | None) -> float:
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError:
        return 0.0


def _json_strings(params: dict[str, str], name: str) -> list[str] | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, list) or not all(isinstance(each, str) for each in value):
        raise _Refusal(400, f"Bad Request: can't parse {name} JSON array")
    return value


def _chat_json(chat: _Chat) -> dict[str, Any]:
    result: dict[str, Any] = {"id": chat.id, "type": chat.kind}
    result["first_name" if chat.kind == "private" else "title"] = chat.title
    if chat.username:
        result["username"] = chat.username
    return result


def _forbidden(kind: str) -> str:
    return {
        "private": "Forbidden: bot was blocked by the user",
        "group": "Forbidden: bot was kicked from the group chat",
        "supergroup": "Forbidden: bot was kicked from the supergroup chat",
    }.get(kind, "Forbidden: bot is not a member of the channel chat")
