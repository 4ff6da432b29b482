"""The bot as a business meets it: a real python-telegram-bot Application against the Bot API emulator.

A scripted user writes and taps buttons through the emulator; the Application
fetches updates (long polling, or the tracker's webhook) and answers through the
emulator, whose records show what the user saw.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, String, Text, func, or_, select, text

from channels.telegram_bot import bot_parts, running_in_thread
from outreach.config import Settings
from outreach.db import Store
from outreach.lifecycle import Actor
from outreach.models import (
    Click,
    ClickKind,
    Delivery,
    DeliveryStatus,
    Item,
    Link,
    Source,
    Subscriber,
    SubscriberStatus,
    Survey,
    SurveyAnswer,
)
from outreach.sandbox import TelegramEmulator
from outreach.sandbox.telegram_user import ChatUser
from outreach.serve import BackgroundServer
from outreach.web import create_app
from tests.conftest import BOT_TOKEN, base_config

TOKEN = BOT_TOKEN
STAFF_ID, LAN, JOHN, MINH = 4242, 111_222_333, 222_333_444, 333_444_555
SECRET = "s3cret_webhook-Token"
ITEMS = [
    ("Hướng dẫn đăng ký kinh doanh qua mạng", ["procedures"]),
    ("Thuế giá trị gia tăng: hướng dẫn khai thuế quý IV", ["tax"]),
    ("Cho thuê mặt bằng tại Khu kinh tế Dung Quất", ["investment"]),
    ("Xúc tiến đầu tư vào Khu kinh tế Dung Quất năm 2027", ["investment"]),
    ("Triển khai hóa đơn điện tử khởi tạo từ máy tính tiền", ["tax"]),
    ("Đấu thầu gói thầu xây dựng trường học", ["procurement"]),
]


def settings_for(make_settings: Callable[..., Settings], api_url: str, db_url: str, **bot: Any) -> Settings:

    channels = base_config()["channels"]
    channels["telegram_bot"] = {"api_url": api_url, "staff": [STAFF_ID], **bot}
    env = {"OUTREACH_TELEGRAM_TOKEN": TOKEN, "OUTREACH_TELEGRAM_WEBHOOK_SECRET": SECRET}
    return make_settings(db_url, env=env, channels=channels, sources=[])


def add_items(store: Store) -> dict[str, int]:
    with store.sessions.begin() as session:
        source = Source(name="portal-news", url="https://quangngai.gov.vn/rss", language="vi")
        session.add(source)
        session.flush()
        ids = {}
        now = datetime.now(UTC)
        for number, (title, topics) in enumerate(ITEMS):
            from outreach.text import fold

            item = Item(
                source_id=source.id,
                guid=f"g{number}",
                url=f"https://quangngai.gov.vn/tin/{number}.html",
                title=title,
                summary="",
                published_at=now - timedelta(hours=number),
                language="vi",
                topics=topics,
                search_text=fold(title),
            )
            session.add(item)
            session.flush()
            ids[title] = item.id
        return ids


def subscriber(store: Store, chat: int) -> Subscriber | None:
    with store.sessions() as session:
        return session.scalar(select(Subscriber).where(Subscriber.chat_id == str(chat)))


@pytest.fixture
def bot(sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]) -> Iterator[Store]:
    settings = settings_for(make_settings, emulator.url, sqlite_store.url)
    add_items(sqlite_store)
    with running_in_thread(
        bot_parts(
            settings,
            settings.schedule.channels.platforms["telegram_bot"],
            settings.secrets.get("OUTREACH_TELEGRAM_TOKEN"),
            sqlite_store,
            Actor("bot"),
            webhook=False,
        )
    ):  # type: ignore[arg-type]
        yield sqlite_store


@pytest.mark.parametrize(
    ("language", "choose", "said", "topics_word", "tax_label", "done_word", "saved"),
    [
        ("vi", "Tiếng Việt", "Đã chọn tiếng Việt", "Chọn chủ đề", "Thuế và cuộc sống", "Xong", "Bạn sẽ nhận tin về"),
        ("en", "English", "English it is", "Choose your topics", "Tax", "Done", "You will receive news on"),
    ],
)
def test_start_language_topics_in_both_languages(
    bot: Store,
    emulator: TelegramEmulator,
    language: str,
    choose: str,
    said: str,
    topics_word: str,
    tax_label: str,
    done_word: str,
    saved: str,
) -> None:
    user = ChatUser(emulator, LAN, language)
    welcome = user.says("/start")
    assert "Quảng Ngãi" in (welcome.text or "")
    assert "/forget" in (welcome.text or "")  # what it keeps, and how to delete it
    assert user.labels(welcome) == ["🇻🇳 Tiếng Việt", "🇬🇧 English"]

    topics = user.taps(welcome, user.button(welcome, choose))
    assert said in (emulator.history(LAN, welcome.message_id)[-1].text or "")  # the question became the answer
    assert topics_word in (topics.text or "")
    if language == "vi":
        assert user.labels(topics)[:7] == [
            "▫️ Thuế và cuộc sống",
            "▫️ Hỗ trợ doanh nghiệp",
            "▫️ Phổ biến, giáo dục pháp luật",
            "▫️ Đầu tư",
            "▫️ Đấu thầu, mua sắm công",
            "▫️ Quy hoạch, đất đai",
            "▫️ Thủ tục hành chính",
        ]
    toggled = user.taps(topics, user.button(topics, tax_label))
    assert user.labels(toggled)[0] == f"✅ {tax_label}"
    toggled = user.taps(toggled, user.button(toggled, "Đầu tư" if language == "vi" else "Investment"))
    toggled = user.taps(toggled, user.button(toggled, tax_label))  # and off again
    finished = user.taps(toggled, user.button(toggled, done_word))
    assert saved in (finished.text or "")
    stored = subscriber(bot, LAN)
    assert stored is not None
    assert (stored.language, stored.topics, stored.status) == (language, ["investment"], SubscriberStatus.active)

    mode = user.says("/mode")
    user.taps(mode, user.button(mode, "17:00"))
    assert subscriber(bot, LAN).mode.value == "digest"  # type: ignore[union-attr]
    stopped = user.says("/stop")
    assert "/start" in (stopped.text or "")
    assert subscriber(bot, LAN).status is SubscriberStatus.stopped  # type: ignore[union-attr]


def test_a_forged_button_cannot_change_another_chats_subscription(bot: Store, emulator: TelegramEmulator) -> None:
    victim, forger = ChatUser(emulator, LAN), ChatUser(emulator, JOHN)
    welcome = victim.says("/start")
    topics = victim.taps(welcome, "lang:vi:start")
    victim.taps(topics, "topic:tax")
    forger.says("/start")
    before = subscriber(bot, LAN)
    for forged in (f"topic:law:{LAN}", f"lang:en:{LAN}", "topic:law", f"forget:yes:{LAN}", "x" * 64):
        forger.taps(topics, forged)  # the victim's message id, data naming the victim
    after = subscriber(bot, LAN)
    assert before is not None
    assert after is not None
    assert (after.topics, after.language, after.status) == (["tax"], "vi", SubscriberStatus.active)
    forger_row = subscriber(bot, JOHN)
    assert forger_row is not None
    assert forger_row.topics == ["law"]  # the one well-formed tap changed the forger's own chat


def test_tax_codes_are_checked_and_consent_is_asked_apart(bot: Store, emulator: TelegramEmulator) -> None:
    user = ChatUser(emulator, LAN)
    user.says("/start")
    asked = user.says("/business")
    assert "mã số thuế" in (asked.text or "")
    for wrong, reason in (
        ("0100233480", "chữ số kiểm tra"),
        ("0314409058-000", "mã chi nhánh phải từ 001 đến 999"),
        ("abc", "chỉ gồm chữ số"),
    ):
        assert reason in (user.says(wrong).text or ""), wrong
    assert subscriber(bot, LAN).tax_code is None  # type: ignore[union-attr]
    consent = user.says("0100233488")
    assert "0100233488" in (consent.text or "")
    stored = subscriber(bot, LAN)
    assert stored is not None
    assert (stored.tax_code, stored.consent) == ("0100233488", False)  # nothing linked before a yes
    user.taps(consent, user.button(consent, "Đồng ý"))
    assert subscriber(bot, LAN).consent is True  # type: ignore[union-attr]

    colleague = ChatUser(emulator, JOHN)  # staff of the same firm, another chat
    colleague.says("/start")
    reply = colleague.says("/business 0314409058-002")
    assert "0314409058-002" in (reply.text or "")
    assert subscriber(bot, JOHN).tax_code == "0314409058002"  # type: ignore[union-attr]


def test_search_is_accent_free_and_answers_with_tracked_links(bot: Store, emulator: TelegramEmulator) -> None:
    user = ChatUser(emulator, LAN)
    user.says("/start")
    cases = {
        "thue": "Thuế giá trị gia tăng",
        "dau tu": "Xúc tiến đầu tư",
        "DANG KY": "Hướng dẫn đăng ký kinh doanh",
        "hoa don dien tu": "Triển khai hóa đơn điện tử",
    }
    for words, title in cases.items():
        answer = user.says(f"/search {words}").text or ""
        first_line = answer.splitlines()[1]
        assert title in first_line, (words, answer)
        assert "/r/" in first_line
    # "thuế" (tax) ranks before "thuê" (rent) though both fold to "thue".
    answer = user.says("/search thuế").text or ""
    assert "Thuế giá trị gia tăng" in answer.splitlines()[1]
    assert "Cho thuê mặt bằng" in answer
    with bot.sessions() as session:
        owned = session.scalar(select(func.count()).select_from(Link).where(Link.subscriber_id.is_not(None)))
    assert owned
    for empty in ("/search", "/search !!! ???", "/search " + "từ " * 80):
        reply = user.says(empty).text or ""
        assert "/search" in reply or "quá dài" in reply


def test_staff_commands_answer_staff_only(bot: Store, emulator: TelegramEmulator) -> None:
    stranger = ChatUser(emulator, JOHN)
    stranger.says("/start")
    unknown = stranger.says("/nonsense").text
    assert stranger.says("/stats").text == unknown
    assert stranger.says("/queue").text == unknown
    staff = ChatUser(emulator, STAFF_ID)
    staff.says("/start")
    stats = staff.says("/stats").text or ""
    assert "Người nhận tin" in stats
    assert "2 đang nhận" in stats
    assert "Chiến dịch đang chờ" in (staff.says("/queue").text or "")


def test_forget_leaves_no_row_referring_to_the_chat(bot: Store, emulator: TelegramEmulator) -> None:
    user = ChatUser(emulator, LAN)
    user.says("/start")
    user.says("/business 0100233488")
    user.says("/search thue")  # a tracked link of its own
    with bot.sessions.begin() as session:
        row = session.scalar(select(Subscriber).where(Subscriber.chat_id == str(LAN)))
        assert row is not None
        survey = Survey(name="needs", definition={})
        session.add(survey)
        session.flush()
        session.add(SurveyAnswer(survey_id=survey.id, subscriber_id=row.id, question="q", choices=["a"]))
        code = session.scalar(select(Link.code).where(Link.subscriber_id == row.id))
        session.add(Click(code=code, kind=ClickKind.human, ip_hash="h"))
        from outreach.models import Campaign

        campaign = Campaign(title="t", channels=["telegram_bot"], language="vi", created_by="t")
        session.add(campaign)
        session.flush()
        session.add(
            Delivery(
                campaign_id=campaign.id,
                channel="telegram_bot",
                target=str(LAN),
                language="vi",
                text=f"tin cho {LAN}",
                status=DeliveryStatus.sent,
            )
        )
        subscriber_id = row.id
    question = user.says("/forget")
    done = user.taps(question, user.button(question, "Xoá hết"))
    assert "Đã xoá" in (done.text or "")
    metadata = MetaData()
    metadata.reflect(bot.engine)
    with bot.engine.connect() as connection:
        for table in metadata.sorted_tables:
            textual = [c for c in table.columns if isinstance(c.type, String | Text)]
            if textual:
                found = connection.execute(
                    select(func.count()).select_from(table).where(or_(*(c.contains(str(LAN)) for c in textual)))
                ).scalar()
                assert found == 0, f"{table.name} still names the chat"
            if "subscriber_id" in table.columns:
                found = connection.execute(
                    select(func.count()).select_from(table).where(table.c.subscriber_id == subscriber_id)
                ).scalar()
                assert found == 0, f"{table.name} still refers to the subscriber"
        assert connection.execute(select(func.count()).select_from(Click.__table__)).scalar() == 1  # the count stays
        assert connection.execute(text("select count(*) from deliveries where status = 'sent'")).scalar() == 1


def test_the_webhook_takes_updates_only_with_the_secret(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    path = "a" * 32
    settings = settings_for(
        make_settings, emulator.url, sqlite_store.url, webhook_url=f"https://go.example.vn/telegram/{path}"
    )
    block = settings.schedule.channels.platforms["telegram_bot"]
    parts = bot_parts(settings, block, settings.secrets.get("OUTREACH_TELEGRAM_TOKEN"), sqlite_store, Actor("bot"))  # type: ignore[arg-type]
    assert parts.hook is not None
    app = create_app(sqlite_store, settings.schedule.tracker, settings.click_spool, telegram=parts.hook)
    update = {
        "update_id": 10,
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": LAN, "type": "private", "first_name": "Lan"},
            "from": {"id": LAN, "is_bot": False, "first_name": "Lan", "language_code": "vi"},
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
        },
    }
    emulator.add_chat(LAN, kind="private", title="Lan")
    with (
        running_in_thread(parts, polling=False),
        BackgroundServer(app) as tracker,
        httpx.Client(base_url=tracker.url) as client,
    ):
        url = f"/telegram/{path}"
        for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}, {"X-Telegram-Bot-Api-Secret-Token": ""}):
            assert client.post(url, json=update, headers=headers).status_code == 403
        right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        assert client.post("/telegram/" + "b" * 32, json=update, headers=right).status_code == 403
        time.sleep(0.3)
        assert subscriber(sqlite_store, LAN) is None  # nothing processed
        assert emulator.messages == []
        assert client.post(url, content=b"{not json", headers=right).status_code == 400
        assert client.post(url, json=update, headers=right).status_code == 200
        deadline = time.monotonic() + 10
        while subscriber(sqlite_store, LAN) is None or not emulator.messages:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert "Quảng Ngãi" in (emulator.messages[0].text or "")


def test_set_webhook_registers_the_url_and_secret(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    from channels.telegram_bot import register_webhook

    url = "https://go.example.vn/telegram/" + "c" * 32
    settings = settings_for(make_settings, emulator.url, sqlite_store.url, webhook_url=url)
    block = settings.schedule.channels.platforms["telegram_bot"]
    token = settings.secrets.get("OUTREACH_TELEGRAM_TOKEN")
    assert token is not None
    said = asyncio.run(register_webhook(block, token, url, settings.secrets))
    assert said.startswith(f"webhook set to {url}")
    assert TOKEN not in said
    said = asyncio.run(register_webhook(block, token, None, settings.secrets))
    assert said.startswith("no webhook")


def test_outreach_bot_polling_answers_and_stops_on_sigterm(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for(make_settings, emulator.url, sqlite_store.url)
    env = {**os.environ, "OUTREACH_TELEGRAM_TOKEN": TOKEN, "OUTREACH_DATABASE_URL": sqlite_store.url}
    log = tmp_path / "bot.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "--config", str(settings.config_path), "bot", "--polling"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=Path(__file__).resolve().parents[1],
        )
    try:
        welcome = ChatUser(emulator, LAN).says("/start")
        assert "Quảng Ngãi" in (welcome.text or "")
        assert emulator.commands("")[:2] == [  # Vietnamese for everyone, English for English apps
            ("start", "Bắt đầu, chọn ngôn ngữ và chủ đề"),
            ("topics", "Chọn chủ đề nhận tin"),
        ]
        assert emulator.commands("en")[0] == ("start", "Start: choose language and topics")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text(encoding="utf-8", errors="replace")
    said = log.read_text(encoding="utf-8")
    assert "bot: polling Telegram for updates" in said
    assert "bot: stopped" in said
    assert TOKEN.split(":")[1] not in said


def test_in_a_group_business_and_forget_need_a_private_chat_and_talk_is_ignored(
    bot: Store, emulator: TelegramEmulator
) -> None:
    group = -4_000_000_123
    emulator.add_chat(group, kind="group", title="Phòng kế toán")
    before = len(emulator.posts(group))
    emulator.user_sends(LAN, "/start", chat_id=group)
    deadline = time.monotonic() + 10
    while len(emulator.posts(group)) == before:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for command in ("/business 0100233488", "/forget", "/stats"):
        count = len(emulator.posts(group))
        emulator.user_sends(LAN, command, chat_id=group)
        while len(emulator.posts(group)) == count:
            assert time.monotonic() < deadline + 10
            time.sleep(0.02)
        assert "trò chuyện riêng" in (emulator.posts(group)[-1].text or "")
    count = len(emulator.posts(group))
    emulator.user_sends(LAN, "chào cả nhà", chat_id=group)
    time.sleep(0.5)
    assert len(emulator.posts(group)) == count  # the group's talk gets no answer
    row = subscriber(bot, group)
    assert row is not None
    assert row.tax_code is None


def test_a_command_may_end_with_a_new_line(bot: Store, emulator: TelegramEmulator) -> None:
    user = ChatUser(emulator, LAN)
    user.says("/start")
    consent = user.says("/business\n0314409058-002")
    assert "0314409058-002" in (consent.text or "")


def test_quick_taps_on_one_chat_are_each_kept(bot: Store, emulator: TelegramEmulator) -> None:
    user = ChatUser(emulator, LAN)
    topics = user.taps(user.says("/start"), "lang:vi:start")
    answered = len(emulator.callback_answers)
    for data in ("topic:tax", "topic:law", "topic:investment", "topic:procurement"):
        emulator.user_taps(LAN, topics.message_id, data)  # no waiting between taps
    deadline = time.monotonic() + 10
    while len(emulator.callback_answers) < answered + 4:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.3)
    row = subscriber(bot, LAN)
    assert row is not None
    assert row.topics == ["tax", "law", "investment", "procurement"]
