"""The Bot API emulator as a bot's world: users writing and tapping, updates, webhooks, a per-bot limit.

Everything goes through the real python-telegram-bot client (and once through a real
`Application` polling for updates), so what is checked is that PTB parses what the
emulator sends and maps its errors as it maps Telegram's. Waits poll for a condition
with a generous deadline instead of asserting tight timings: the suite runs on a
loaded two-core machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
import telegram
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, Forbidden, RetryAfter
from telegram.ext import ApplicationBuilder, CallbackQueryHandler, CommandHandler, ContextTypes

from outreach.sandbox import TelegramEmulator
from outreach.sandbox.telegram import SECRET_HEADER, CallbackAnswer
from outreach.serve import BackgroundServer

TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"
OTHER_TOKEN = "7000000002:AAOtherBotTokenNeverStarted"
BOT_NAME = "quangngai_hotro_bot"
USER = 555_000_111
GROUP = -1009876543210
SECRET = "s3cr3t_Quang-Ngai"
KEYBOARD = InlineKeyboardMarkup(
    [
        [InlineKeyboardButton("Thuế", callback_data="topic:thue")],
        [
            InlineKeyboardButton("Đất đai", callback_data="topic:dat_dai"),
            InlineKeyboardButton("Cổng", url="https://quangngai.gov.vn"),
        ],
    ]
)
T = TypeVar("T")


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramEmulator]:
    with TelegramEmulator(webhook_retry_seconds=0.05) as emulator:
        yield emulator


@pytest.fixture
def tg(server: TelegramEmulator) -> TelegramEmulator:
    server.reset()
    server.add_bot(TOKEN, username=BOT_NAME, first_name="Hỗ trợ Quảng Ngãi")
    return server


def with_bot(emulator: TelegramEmulator, body: Callable[[telegram.Bot], Awaitable[T]]) -> T:
    """Run `body` with an initialized PTB Bot pointed at the emulator, in a fresh event loop."""

    async def main() -> T:
        async with telegram.Bot(TOKEN, base_url=emulator.base_url) as bot:
            return await body(bot)

    return asyncio.run(main())


async def until(condition: Callable[[], T | None], seconds: float = 10.0) -> T:
    """Poll `condition` until it gives something truthy; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


# --- updates by getUpdates -------------------------------------------------------------------


def test_long_poll_returns_when_an_update_arrives_and_after_the_timeout_without_one(tg: TelegramEmulator) -> None:
    async def body(bot: telegram.Bot) -> tuple[tuple[Update, ...], float, tuple[Update, ...], float]:
        started = time.monotonic()
        polling = asyncio.create_task(bot.get_updates(timeout=timedelta(seconds=8)))
        await asyncio.sleep(0.3)
        tg.user_sends(USER, "/start", first_name="An")
        arrived = await polling
        waited_for_update = time.monotonic() - started
        started = time.monotonic()
        empty = await bot.get_updates(offset=arrived[-1].update_id + 1, timeout=timedelta(seconds=1))
        return arrived, waited_for_update, empty, time.monotonic() - started

    arrived, waited_for_update, empty, waited_for_nothing = with_bot(tg, body)
    assert len(arrived) == 1
    assert waited_for_update < 6  # woke up for the update, long before the 8 s timeout
    message = arrived[0].message
    assert message is not None
    assert message.from_user is not None
    assert (message.text, message.chat.id, message.chat.type, message.from_user.id) == ("/start", USER, "private", USER)
    assert (message.from_user.first_name, message.from_user.language_code, message.from_user.is_bot) == (
        "An",
        "vi",
        False,
    )
    assert [(e.type, e.offset, e.length) for e in message.entities] == [("bot_command", 0, 6)]
    assert empty == ()
    assert waited_for_nothing >= 0.8  # held the request for the timeout (1 s)
    assert tg.pending_updates() == []  # the offset confirmed the update


def test_offset_confirms_and_commands_with_the_bot_name(tg: TelegramEmulator) -> None:
    tg.add_chat(GROUP, kind="supergroup", title="Doanh nghiệp Quảng Ngãi")
    first = tg.user_sends(USER, "xin chào")
    second = tg.user_sends(USER + 1, f"/help@{BOT_NAME} thuế", chat_id=GROUP)
    third = tg.user_sends(USER, "/dangky thue")
    assert (second, third) == (first + 1, first + 2)

    async def body(bot: telegram.Bot) -> list[tuple[int, ...]]:
        ids = []
        everything = await bot.get_updates()
        ids.append(tuple(u.update_id for u in everything))
        ids.append(tuple(u.update_id for u in await bot.get_updates()))  # not confirmed yet
        ids.append(tuple(u.update_id for u in await bot.get_updates(offset=second, limit=1)))
        ids.append(tuple(u.update_id for u in await bot.get_updates(offset=-1)))  # keeps the last one only
        ids.append(tuple(u.update_id for u in await bot.get_updates(offset=third + 1)))
        group = everything[1].message
        assert group is not None
        assert group.chat.type == "supergroup"
        assert group.chat.id == GROUP
        assert group.entities[0].length == len(f"/help@{BOT_NAME}")
        assert everything[0].message is not None
        assert everything[0].message.entities == ()
        return ids

    assert with_bot(tg, body) == [(first, second, third), (first, second, third), (second,), (third,), ()]
    assert tg.pending_updates() == []


def test_a_newer_get_updates_ends_a_waiting_one(tg: TelegramEmulator) -> None:
    async def body(bot: telegram.Bot) -> tuple[BaseException | None, tuple[Update, ...]]:
        # A second Bot: one Bot's getUpdates connection pool holds a single connection.
        async with telegram.Bot(TOKEN, base_url=tg.base_url) as second:
            older = asyncio.create_task(bot.get_updates(timeout=timedelta(seconds=5)))
            await asyncio.sleep(0.3)
            newer = await second.get_updates(timeout=timedelta(seconds=0))
            (outcome,) = await asyncio.wait_for(asyncio.gather(older, return_exceptions=True), 5)
        return outcome if isinstance(outcome, BaseException) else None, newer

    error, newer = with_bot(tg, body)
    assert isinstance(error, Conflict)
    assert "terminated by other getUpdates request" in error.message
    assert newer == ()


# --- inline keyboards and callback queries ---------------------------------------------------


def test_callback_query_round_trip_through_ptb(tg: TelegramEmulator) -> None:
    tg.user_sends(USER, "/start", first_name="Bình")

    async def body(bot: telegram.Bot) -> tuple[telegram.Message, Update, bool]:
        sent = await bot.send_message(USER, "Bạn muốn nhận tin <b>nào</b>?", parse_mode="HTML", reply_markup=KEYBOARD)
        await bot.get_updates(offset=-1)  # skip /start
        (start,) = await bot.get_updates()
        tg.user_taps(USER, sent.message_id, "topic:thue")
        (tap,) = await bot.get_updates(offset=start.update_id + 1)
        assert tap.callback_query is not None
        answered = await bot.answer_callback_query(tap.callback_query.id, text="Đã đăng ký", show_alert=True)
        with pytest.raises(BadRequest, match=r"(?i)query is too old and response timeout expired"):
            await bot.answer_callback_query(tap.callback_query.id)  # answered already
        with pytest.raises(BadRequest, match=r"(?i)query id is invalid"):
            await bot.answer_callback_query("42")
        return sent, tap, answered

    sent, tap, answered = with_bot(tg, body)
    assert sent.reply_markup == KEYBOARD  # PTB's InlineKeyboardMarkup compares the buttons
    assert sent.text == "Bạn muốn nhận tin nào?"
    query = tap.callback_query
    assert query is not None
    assert isinstance(query.message, telegram.Message)
    assert (query.data, query.from_user.id, query.from_user.first_name) == ("topic:thue", USER, "Bình")
    assert (query.message.chat.id, query.message.message_id, query.message.text) == (
        USER,
        sent.message_id,
        "Bạn muốn nhận tin nào?",
    )
    assert query.message.reply_markup == KEYBOARD
    assert query.message.from_user is not None
    assert query.message.from_user.username == BOT_NAME
    assert query.chat_instance
    assert query.id
    assert answered is True
    assert tg.callback_answers == [CallbackAnswer(query.id, 7123456789, USER, "topic:thue", "Đã đăng ký", True, None)]
    assert tg.posts(USER)[0].reply_markup == KEYBOARD.to_dict()


def test_forged_tap_on_a_message_the_user_never_saw(tg: TelegramEmulator) -> None:
    tg.user_sends(USER, "/start")

    async def body(bot: telegram.Bot) -> Update:
        await bot.get_updates(offset=-1)
        (start,) = await bot.get_updates()
        tg.user_taps(USER, 999, "admin:delete_all")
        (tap,) = await bot.get_updates(offset=start.update_id + 1)
        return tap

    query = with_bot(tg, body).callback_query
    assert query is not None
    assert query.message is not None
    assert not query.message.is_accessible  # date 0: PTB 22 still builds a Message
    assert (query.message.chat.id, query.message.message_id, query.data) == (USER, 999, "admin:delete_all")


def test_edit_message_text_keeps_the_latest_text_and_refuses_no_change(tg: TelegramEmulator) -> None:
    tg.user_sends(USER, "/start")
    tg.add_chat(GROUP, kind="supergroup", title="Nhóm")

    async def body(bot: telegram.Bot) -> list[Any]:
        sent = await bot.send_message(USER, "Chọn chủ đề", reply_markup=KEYBOARD)
        elsewhere = await bot.send_message(GROUP, "tin nhóm")
        edited = await bot.edit_message_text(
            "<b>Đã chọn</b>: Thuế", USER, sent.message_id, parse_mode="HTML", reply_markup=KEYBOARD
        )
        outcomes: list[Any] = [edited]
        for call in (
            # the same text and keyboard again
            bot.edit_message_text(
                "<b>Đã chọn</b>: Thuế", USER, sent.message_id, parse_mode="HTML", reply_markup=KEYBOARD
            ),
            # a message id of another chat
            bot.edit_message_text("x", USER, elsewhere.message_id + 5),
            bot.edit_message_text("a < b", USER, sent.message_id, parse_mode="HTML"),
        ):
            try:
                outcomes.append(await call)
            except BadRequest as exc:
                outcomes.append(exc)
        # Without reply_markup the keyboard goes, as on Telegram.
        outcomes.append(await bot.edit_message_text("Cảm ơn bạn", USER, sent.message_id))
        smaller = InlineKeyboardMarkup([[InlineKeyboardButton("Hủy", callback_data="huy")]])
        outcomes.append(await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=smaller))
        return outcomes

    edited, same, missing, bad_html, plain, markup_only = with_bot(tg, body)
    assert isinstance(edited, telegram.Message)
    assert (edited.text, edited.reply_markup, edited.edit_date is not None) == ("Đã chọn: Thuế", KEYBOARD, True)
    assert isinstance(same, BadRequest)
    assert "message is not modified" in same.message.lower()
    assert isinstance(missing, BadRequest)
    assert missing.message.lower() == "message to edit not found"
    assert isinstance(bad_html, BadRequest)
    assert "can't parse entities" in bad_html.message.lower()
    assert isinstance(plain, telegram.Message)
    assert plain.reply_markup is None
    assert isinstance(markup_only, telegram.Message)
    assert markup_only.text == "Cảm ơn bạn"
    (message,) = tg.posts(USER)
    assert (message.text, message.reply_markup) == (
        "Cảm ơn bạn",
        {"inline_keyboard": [[{"text": "Hủy", "callback_data": "huy"}]]},
    )
    assert [m.text for m in tg.history(USER, message.message_id)] == [
        "Chọn chủ đề",
        "<b>Đã chọn</b>: Thuế",
        "Cảm ơn bạn",
        "Cảm ơn bạn",
    ]
    assert [m.text for m in tg.posts(GROUP)] == ["tin nhóm"]


def test_copy_and_delete_messages(tg: TelegramEmulator) -> None:
    tg.user_sends(USER, "/start")
    tg.add_chat(GROUP, kind="supergroup", title="Nhóm")

    async def body(bot: telegram.Bot) -> tuple[int, int]:
        sent = await bot.send_message(GROUP, "<i>Thông báo</i>", parse_mode="HTML", reply_markup=KEYBOARD)
        copied = await bot.copy_message(USER, GROUP, sent.message_id)
        assert await bot.delete_message(GROUP, sent.message_id)
        with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
            await bot.delete_message(GROUP, sent.message_id)
        with pytest.raises(BadRequest, match=r"(?i)message to copy not found"):
            await bot.copy_message(USER, GROUP, sent.message_id)
        return sent.message_id, copied.message_id

    _, copy_id = with_bot(tg, body)
    assert tg.posts(GROUP) == []
    (copy,) = tg.posts(USER)
    assert (copy.message_id, copy.text, copy.parse_mode, copy.reply_markup) == (
        copy_id,
        "<i>Thông báo</i>",
        "HTML",
        None,
    )


def test_callback_data_is_one_to_64_bytes_of_utf8(tg: TelegramEmulator) -> None:
    tg.user_sends(USER, "/start")

    def keyboard(data: str) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[InlineKeyboardButton("Chọn", callback_data=data)]])

    async def body(bot: telegram.Bot) -> list[str]:
        said = []
        await bot.send_message(USER, "64 bytes", reply_markup=keyboard("đ" * 32))
        for data in ("a" * 65, "đ" * 33):  # 65 bytes; 33 characters but 66 bytes
            with pytest.raises(BadRequest) as refused:
                await bot.send_message(USER, "too long", reply_markup=keyboard(data))
            said.append(refused.value.message)
        return said

    assert with_bot(tg, body) == ["Button_data_invalid", "Button_data_invalid"]  # PTB capitalizes
    assert [m.text for m in tg.posts(USER)] == ["64 bytes"]


def test_bot_commands_per_language(tg: TelegramEmulator) -> None:
    async def body(bot: telegram.Bot) -> tuple[tuple[telegram.BotCommand, ...], tuple[telegram.BotCommand, ...]]:
        await bot.set_my_commands([("start", "Bắt đầu"), ("huy", "Hủy đăng ký")], language_code="vi")
        await bot.set_my_commands([("start", "Start")])
        with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
            await bot.set_my_commands([("Bad-Command", "x")])
        return await bot.get_my_commands(language_code="vi"), await bot.get_my_commands()

    vietnamese, default = with_bot(tg, body)
    assert [(c.command, c.description) for c in vietnamese] == [("start", "Bắt đầu"), ("huy", "Hủy đăng ký")]
    assert [(c.command, c.description) for c in default] == [("start", "Start")]
    assert tg.commands("vi") == [("start", "Bắt đầu"), ("huy", "Hủy đăng ký")]


# --- blocked users and the per-bot rate ------------------------------------------------------


def test_blocked_user_and_a_user_who_never_started_the_bot(tg: TelegramEmulator) -> None:
    tg.add_bot(OTHER_TOKEN, username="other_bot")
    tg.user_sends(USER, "/start", token=TOKEN)
    tg.block(USER)

    async def body(bot: telegram.Bot) -> None:
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(USER, "tin mới")
        tg.user_sends(USER, "/start", token=TOKEN)  # Restart unblocks
        await bot.send_message(USER, "chào lại")
        with pytest.raises(BadRequest, match=r"(?i)chat not found"):
            await bot.send_message(USER + 7, "ai đó")
        async with telegram.Bot(OTHER_TOKEN, base_url=tg.base_url) as other:
            with pytest.raises(BadRequest, match=r"(?i)chat not found"):  # never started by this user
                await other.send_message(USER, "xin chào")

    with_bot(tg, body)
    assert [m.text for m in tg.posts(USER)] == ["chào lại"]


def test_per_bot_rate_limit_answers_retry_after() -> None:
    emulator = TelegramEmulator(rate_per_bot=5)
    emulator.add_bot(TOKEN)
    subscribers = range(100_001, 100_011)
    for user in subscribers:
        emulator.add_chat(user, kind="private", title=f"Người {user}")

    async def body(bot: telegram.Bot) -> list[telegram.Message | BaseException]:
        burst = await asyncio.gather(
            *(bot.send_message(user, "Tin khẩn") for user in subscribers), return_exceptions=True
        )
        refused = [outcome for outcome in burst if isinstance(outcome, RetryAfter)]
        told = refused[0].retry_after if refused else 0
        await asyncio.sleep(told.total_seconds() if isinstance(told, timedelta) else told)  # waiting as told works
        await bot.send_message(subscribers[0], "sau khi chờ")
        return burst

    with emulator:
        outcomes = with_bot(emulator, body)
    refusals = [outcome for outcome in outcomes if isinstance(outcome, RetryAfter)]
    assert all(isinstance(outcome, (telegram.Message, RetryAfter)) for outcome in outcomes)
    assert refusals  # ten at once, five a second
    assert all(isinstance(r.retry_after, int) and r.retry_after >= 1 for r in refusals)
    assert emulator.flood_refusals == len(refusals)
    assert len(emulator.messages) == len(outcomes) - len(refusals) + 1


def test_rate_refusal_wire_format() -> None:
    emulator = TelegramEmulator(rate_per_bot=1)
    emulator.add_bot(TOKEN)
    emulator.add_chat(USER, kind="private", title="An")
    emulator.add_chat(USER + 1, kind="private", title="Bình")
    with emulator, httpx.Client(base_url=emulator.url, timeout=5) as http:
        first = http.post(f"/bot{TOKEN}/sendMessage", data={"chat_id": str(USER), "text": "một"})
        second = http.post(f"/bot{TOKEN}/sendMessage", data={"chat_id": str(USER + 1), "text": "hai"})
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        },
    )


# --- webhooks --------------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook on a real loopback server: what it got, and the status it answers."""

    url: str = ""
    status: int = 200
    got: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    state = Receiver()

    async def hook(request: Request) -> Response:
        state.got.append((request.headers.get(SECRET_HEADER), await request.json()))
        return Response(status_code=state.status)

    with BackgroundServer(Starlette(routes=[Route("/telegram/hook", hook, methods=["POST"])])) as server:
        state.url = f"{server.url}/telegram/hook"
        yield state


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.status, receiver_server.got = 200, []
    return receiver_server


def test_webhook_gets_updates_with_the_secret_and_get_updates_conflicts(
    tg: TelegramEmulator, receiver: Receiver
) -> None:
    async def body(bot: telegram.Bot) -> tuple[int, telegram.WebhookInfo, telegram.WebhookInfo]:
        assert await bot.set_webhook(receiver.url, secret_token=SECRET, allowed_updates=["message", "callback_query"])
        update_id = tg.user_sends(USER, "/start")
        await until(lambda: receiver.got)
        await until(lambda: tg.webhook_deliveries)
        info = await bot.get_webhook_info()
        with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook()
        tg.user_sends(USER, "còn đó không?")
        assert len(await bot.get_updates()) == 1  # polling works again
        return update_id, info, await bot.get_webhook_info()

    update_id, info, after = with_bot(tg, body)
    ((secret, payload),) = receiver.got
    assert secret == SECRET
    update = Update.de_json(payload, None)
    assert update.update_id == update_id
    assert update.message is not None
    assert (update.message.text, update.message.chat.id) == ("/start", USER)
    assert tg.webhook_deliveries == [(update_id, 200)]
    assert (info.url, info.pending_update_count, info.has_custom_certificate) == (receiver.url, 0, False)
    assert info.allowed_updates == ("callback_query", "message")
    assert info.last_error_message is None
    assert (after.url, after.pending_update_count) == ("", 1)


def test_webhook_refusal_keeps_the_update_and_retries(tg: TelegramEmulator, receiver: Receiver) -> None:
    receiver.status = 403

    async def body(bot: telegram.Bot) -> tuple[int, telegram.WebhookInfo, telegram.WebhookInfo]:
        await bot.set_webhook(receiver.url)
        update_id = tg.user_sends(USER, "/start")
        await until(lambda: len(tg.webhook_deliveries) >= 2)
        failing = await bot.get_webhook_info()
        receiver.status = 200
        await until(lambda: (update_id, 200) in tg.webhook_deliveries)
        delivered = await bot.get_webhook_info()
        await bot.delete_webhook()
        return update_id, failing, delivered

    update_id, failing, delivered = with_bot(tg, body)
    deliveries = tg.webhook_deliveries
    assert deliveries[-1] == (update_id, 200)
    assert set(deliveries[:-1]) == {(update_id, 403)}
    assert len(deliveries) >= 3
    assert failing.pending_update_count == 1
    assert failing.last_error_message == "Wrong response from the webhook: 403 Forbidden"
    assert failing.last_error_date is not None
    assert delivered.pending_update_count == 0
    assert [headers for headers, _ in receiver.got] == [None] * len(deliveries)  # no secret: no header
    assert {payload["update_id"] for _, payload in receiver.got} == {update_id}


def test_webhook_secret_token_characters(tg: TelegramEmulator, receiver: Receiver) -> None:
    async def body(bot: telegram.Bot) -> None:
        with pytest.raises(BadRequest, match=r"(?i)secret token contains unallowed characters"):
            await bot.set_webhook(receiver.url, secret_token="bí mật!")
        assert (await bot.get_webhook_info()).url == ""

    with_bot(tg, body)


# --- a real Application --------------------------------------------------------------------


def test_application_polls_answers_taps_and_edits(tg: TelegramEmulator) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.message is not None
        await update.message.reply_text("Chào bạn! Nhận tin về:", reply_markup=KEYBOARD)

    async def tapped(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer(f"Đã đăng ký {query.data}")
        await query.edit_message_text(f"Bạn đã chọn: {query.data}")

    application = ApplicationBuilder().token(TOKEN).base_url(tg.base_url).build()
    application.add_handler(CommandHandler("start", start))
    application.add_handler(CallbackQueryHandler(tapped, pattern=r"^topic:"))

    async def main() -> None:
        async with application:
            assert application.updater is not None
            await application.updater.start_polling(poll_interval=0.01, timeout=timedelta(seconds=1))
            await application.start()
            try:
                tg.user_sends(USER, "/start")
                menu = await until(lambda: tg.posts(USER))
                tg.user_taps(USER, menu[0].message_id, "topic:dat_dai")
                await until(lambda: tg.posts(USER)[0].edit_date is not None and tg.callback_answers)
            finally:
                await application.updater.stop()
                await application.stop()

    asyncio.run(main())
    (message,) = tg.posts(USER)
    assert (message.text, message.reply_markup) == ("Bạn đã chọn: topic:dat_dai", None)
    assert tg.history(USER, message.message_id)[0].reply_markup == KEYBOARD.to_dict()
    (answer,) = tg.callback_answers
    assert (answer.user_id, answer.data, answer.text) == (USER, "topic:dat_dai", "Đã đăng ký topic:dat_dai")
    assert tg.pending_updates() == []  # the updater confirmed what it handled


def test_reset_forgets_users_updates_and_answers(tg: TelegramEmulator) -> None:
    tg.user_sends(USER, "/start")
    tg.user_taps(USER, 1, "x")
    tg.reset()
    tg.add_bot(TOKEN)
    assert tg.pending_updates() == []
    assert (tg.callback_answers, tg.webhook_deliveries, tg.flood_refusals, tg.commands()) == ([], [], 0, [])
    with pytest.raises(KeyError):
        tg.posts(USER)  # the private chat is gone too
