"""A Telegram Bot API server that keeps what bots post, for tests and the demo.

python-telegram-bot talks to it through `base_url`, so the real client's encoding,
error mapping and retries are what get exercised. It checks what the real API
checks where our messages can go wrong (HTML markup, lengths in UTF-16 units,
membership, migration, flood limits) and answers in the real error wording, so code
that reacts to a description or a `parameters` field is tested against the real shape.
Posts keep the bot's id, never its token: tests check that tokens do not leak.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.sandbox.faults import Answer, BadBody, Fault, FaultScript, Served, Window, read_params, respond

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CHAT_KINDS = frozenset({"private", "group", "supergroup", "channel"})
_ALLOWED_TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "tg-spoiler", "span", "a", "code", "pre", "blockquote"}
)
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TOKEN_BOT_ID = re.compile(r"(\d+):")
_TAG_NAME = re.compile(r"[^\s>/<]*")


@dataclass(frozen=True)
class TelegramMessage:
    """One message a bot posted, as sent: `text`/`caption` keep their markup, `parse_mode` says which."""

    chat_id: int
    message_id: int
    date: int
    bot_id: int
    text: str | None = None
    caption: str | None = None
    photo: str | None = None  # the URL (or "upload:<filename>") the bot gave
    parse_mode: str | None = None
    link_preview: dict[str, Any] | None = None


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


class TelegramEmulator(Served):
    """A Bot API server: bots, chats, the messages they accepted, and scripted faults.

    Use it as a context manager to run it on a loopback port; give `base_url` to
    python-telegram-bot. `rate_per_chat` (calls per second) turns on flood control
    for sendMessage and sendPhoto.
    """

    def __init__(self, rate_per_chat: float | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.faults = FaultScript()
        self._clock = clock
        self._window = Window(rate_per_chat)
        self._lock = threading.Lock()
        self._bots: dict[str, _Bot] = {}
        self._chats: dict[int, _Chat] = {}
        self._usernames: dict[str, int] = {}
        self._messages: list[TelegramMessage] = []
        self._requests: list[tuple[str, str]] = []
        self._methods: dict[str, Callable[[_Bot, str, dict[str, str]], Any]] = {
            "getMe": self._get_me,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
        }
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self._endpoint, methods=["GET", "POST"])])

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
        """Create a chat; `members` are the tokens of bots that may post (none given: every bot)."""
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
        """Forget every bot, chat, message, request and queued fault (the server keeps running)."""
        self.faults.clear()
        self._window.clear()
        with self._lock:
            for state in (self._bots, self._chats, self._usernames):
                state.clear()
            self._messages.clear()
            self._requests.clear()

    # --- what happened, for assertions ----------------------------------------------------

    @property
    def messages(self) -> list[TelegramMessage]:
        """Every message accepted, oldest first."""
        with self._lock:
            return list(self._messages)

    def posts(self, chat: int | str | None = None) -> list[TelegramMessage]:
        """Messages accepted in one chat (an id or "@username"), or in all chats."""
        with self._lock:
            if chat is None:
                return list(self._messages)
            chat_id = self._lookup(chat).id
            return [message for message in self._messages if message.chat_id == chat_id]

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, chat_id as sent or "") for every call, in order."""
        with self._lock:
            return list(self._requests)

    # --- the HTTP side -----------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        token, sent_method = request.path_params["token"], request.path_params["method"]
        # Method names are case-insensitive on the Bot API.
        method = next((name for name in self._methods if name.lower() == sent_method.lower()), sent_method)
        try:
            params: dict[str, str] | None = await read_params(request)
        except BadBody:
            params = None
        chat_key = (params or {}).get("chat_id")
        with self._lock:
            self._requests.append((method, chat_key or ""))
        fault = self.faults.take(method, chat_key)
        return await respond(fault, lambda: self._handle(token, method, params), error_body)

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
            return Answer(200, {"ok": True, "result": result})

    # --- methods (called with the lock held) ------------------------------------------------

    def _lookup(self, chat: int | str) -> _Chat:
        key = chat if isinstance(chat, int) else self._usernames.get(chat.removeprefix("@").lower())
        found = self._chats.get(key) if key is not None else None
        if found is None:
            raise KeyError(f"no chat {chat!r}")
        return found

    def _chat(self, params: dict[str, str]) -> _Chat:
        sent = params.get("chat_id", "").strip()
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

    def _postable(self, params: dict[str, str], token: str) -> _Chat:
        chat = self._chat(params)
        if token in chat.removed or (chat.members and token not in chat.members):
            raise _Refusal(403, _forbidden(chat.kind))
        if token in chat.cannot_post:
            raise _Refusal(400, "Bad Request: need administrator rights in the channel chat")
        wait = self._window.hit(str(chat.id), time.monotonic())
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise _Refusal(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
        return chat

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
        chat = self._postable(params, token)
        markup, parse_mode = params.get("text", ""), params.get("parse_mode") or None
        visible = _visible(markup, parse_mode)
        if not visible.strip():
            raise _Refusal(400, "Bad Request: message text is empty")
        if utf16_length(visible) > TEXT_LIMIT:
            raise _Refusal(400, "Bad Request: message is too long")
        preview = _json_object(params, "link_preview_options", "link preview options")
        _json_object(params, "reply_markup", "reply keyboard markup")
        message = self._store(chat, bot, text=markup, parse_mode=parse_mode, link_preview=preview)
        result = {**self._message_json(chat, bot, message), "text": visible}
        if preview is not None:
            result["link_preview_options"] = preview
        return result

    def _send_photo(self, bot: _Bot, token: str, params: dict[str, str]) -> dict[str, Any]:
        chat = self._postable(params, token)
        photo = params.get("photo", "")
        if not photo:
            raise _Refusal(400, "Bad Request: there is no photo in the request")
        if not photo.startswith(("http://", "https://", "upload:")):
            raise _Refusal(400, "Bad Request: wrong file identifier/HTTP URL specified")
        markup, parse_mode = params.get("caption", ""), params.get("parse_mode") or None
        visible = _visible(markup, parse_mode)
        if utf16_length(visible) > CAPTION_LIMIT:
            raise _Refusal(400, "Bad Request: message caption is too long")
        _json_object(params, "reply_markup", "reply keyboard markup")
        message = self._store(chat, bot, caption=markup or None, photo=photo, parse_mode=parse_mode)
        result = {**self._message_json(chat, bot, message), "photo": _photo_sizes(photo)}
        if visible:
            result["caption"] = visible
        return result

    def _store(self, chat: _Chat, bot: _Bot, **content: Any) -> TelegramMessage:
        chat.last_message_id += 1
        message = TelegramMessage(chat.id, chat.last_message_id, int(self._clock()), bot.id, **content)
        self._messages.append(message)
        return message

    def _message_json(self, chat: _Chat, bot: _Bot, message: TelegramMessage) -> dict[str, Any]:
        result: dict[str, Any] = {"message_id": message.message_id, "date": message.date, "chat": _chat_json(chat)}
        # Channel posts are signed by the channel; everywhere else the bot is the sender.
        if chat.kind == "channel":
            result["sender_chat"] = _chat_json(chat)
        else:
            me = self._get_me(bot, "", {})
            result["from"] = {k: me[k] for k in ("id", "is_bot", "first_name", "username")}
        return result


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
