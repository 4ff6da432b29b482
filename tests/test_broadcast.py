"""Broadcasts to the bot's subscribers, through the real adapter and python-telegram-bot, on the emulator.

One delivery per subscriber with their own tracked link; blocked chats marked and
skipped from then on; a chat that moved followed; digest subscribers get one
message listing their items; a broadcast stopped half way and started again sends
each subscriber one message.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from channels import LIMITS, build_routing
from outreach.broadcast import daily_digest
from outreach.campaigns import CampaignRequest, create_campaign
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch import send_once
from outreach.lifecycle import Actor
from outreach.models import (
    Campaign,
    CampaignStatus,
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Item,
    Link,
    Source,
    Subscriber,
    SubscriberStatus,
)
from outreach.render import Renderer
from outreach.sandbox import TelegramEmulator
from tests.conftest import BOT_TOKEN, base_config

TOKEN = BOT_TOKEN
FIRST_CHAT = 800_000_000
STAFF, APPROVER = Actor("tester"), Actor("tester", "Approver")
FAST = {"per_second": 2000, "burst": 200, "concurrency": 32}


def bot_settings(
    make_settings: Callable[..., Settings], api_url: str, db_url: str | None = None, **bot: object
) -> Settings:
    """The repository's config with only the bot enabled, pointed at the emulator, its token set."""

    channels = base_config()["channels"]
    channels["facebook"]["enabled"] = False
    channels["telegram_channel"]["enabled"] = False
    channels["telegram_bot"] = {"api_url": api_url, "rate": FAST, **bot}
    return make_settings(
        db_url, env={"OUTREACH_TELEGRAM_TOKEN": TOKEN}, channels=channels, sources=[], require_approval=False
    )


def add_item(
    store: Store, topics: list[str], title: str = "Hoàn thuế GTGT cho doanh nghiệp", language: str = "vi"
) -> int:
    with store.sessions.begin() as session:
        source = session.scalar(select(Source).where(Source.name == "portal-news"))
        if source is None:
            source = Source(name="portal-news", url="https://quangngai.gov.vn/rss", language=language)
            session.add(source)
            session.flush()
        number = session.scalar(select(func.count()).select_from(Item)) or 0
        item = Item(
            source_id=source.id,
            guid=f"item-{number}",
            url=f"https://quangngai.gov.vn/tin-tuc/bai-{number}.html",
            title=title,
            summary="Cục Thuế tỉnh hướng dẫn thủ tục.",
            published_at=datetime.now(UTC),
            language=language,
            topics=topics,
        )
        session.add(item)
        session.flush()
        return item.id


def add_subscribers(
    store: Store,
    emulator: TelegramEmulator,
    count: int,
    topics: list[str],
    mode: DeliveryMode = DeliveryMode.instant,
    language: str = "vi",
    first: int = FIRST_CHAT,
) -> list[int]:
    """`count` subscribers whose private chats exist on the emulator; their chat ids."""
    chats = list(range(first, first + count))
    now = datetime.now(UTC)
    rows = [
        {
            "channel": "telegram_bot",
            "chat_id": str(chat),
            "language": language,
            "topics": topics,
            "mode": mode.value,
            "status": "active",
            "consent": False,
            "created_at": now,
            "updated_at": now,
        }
        for chat in chats
    ]
    with store.sessions.begin() as session:
        session.execute(insert(Subscriber), rows)
    for chat in chats:
        emulator.add_chat(chat, kind="private", title=f"Doanh nghiệp {chat}")
    return chats


def announce(store: Store, settings: Settings, item_id: int) -> int:
    with store.sessions.begin() as session:
        request = CampaignRequest(item_ids=(item_id,), channels=("telegram_bot",))
        return create_campaign(session, settings, Renderer(settings.schedule, LIMITS), request, STAFF).id


def test_a_broadcast_reaches_each_subscriber_once_with_their_own_link_and_marks_blocked_chats(
    store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    settings = bot_settings(make_settings, emulator.url, store.url)
    chats = add_subscribers(store, emulator, 1000, ["tax"])
    add_subscribers(store, emulator, 20, ["law"], first=FIRST_CHAT + 5000)  # other topic: nothing for them
    blocked = chats[::20]
    for chat in blocked:
        emulator.remove_bot(chat, TOKEN)
    campaign_id = announce(store, settings, add_item(store, ["tax"]))
    with store.sessions() as session:
        assert session.scalar(select(func.count()).where(Delivery.campaign_id == campaign_id)) == 1000

    report = asyncio.run(send_once(store, build_routing(settings)))

    assert (report.sent, report.skipped, report.failed, report.unknown) == (950, 50, 0, 0)
    received = Counter(message.chat_id for message in emulator.messages)
    assert set(received) == set(chats) - set(blocked)
    assert set(received.values()) == {1}
    codes = [re.search(r"/r/([A-Za-z0-9]+)", message.text or "").group(1) for message in emulator.messages]  # type: ignore[union-attr]
    assert len(set(codes)) == 950
    assert not any(code.startswith("PH0") for code in codes)
    with store.sessions() as session:
        owners = dict(session.execute(select(Link.code, Link.subscriber_id).where(Link.code.in_(codes))).all())
        chat_of = dict(session.execute(select(Subscriber.id, Subscriber.chat_id)).all())
        sent_to = {int(chat_of[owners[code]]) for code in codes}
        assert sent_to == set(received)  # each chat got the link made for it
        states = Counter(
            session.scalars(select(Subscriber.status).where(Subscriber.chat_id.in_([str(c) for c in chats])))
        )
        assert states == {SubscriberStatus.active: 950, SubscriberStatus.blocked: 50}
        assert session.get_one(Campaign, campaign_id).status is CampaignStatus.done

    # From then on a blocked subscriber is not even tried.
    before = len(emulator.requests)
    second = announce(store, settings, add_item(store, ["tax"], "Gia hạn nộp thuế"))
    report = asyncio.run(send_once(store, build_routing(settings)))
    assert (report.sent, report.skipped) == (950, 0)
    assert len([r for r in emulator.requests[before:] if r[0] == "sendMessage"]) == 950
    with store.sessions() as session:
        assert session.scalar(select(func.count()).where(Delivery.campaign_id == second)) == 950


def test_a_flood_wait_holds_the_whole_bot_for_exactly_the_time_asked(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    settings = bot_settings(make_settings, emulator.url, sqlite_store.url)
    add_subscribers(sqlite_store, emulator, 40, ["tax"])
    emulator.retry_after(1, method="sendMessage", times=1)
    announce(sqlite_store, settings, add_item(sqlite_store, ["tax"]))
    report = asyncio.run(send_once(sqlite_store, build_routing(settings)))
    assert report.waiting == {("telegram_bot", "*"): 1.0}  # the whole bot, as Telegram means it
    with sqlite_store.sessions() as session:
        held = session.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.pending)).all()
    assert report.sent + len(held) == 40
    assert held
    # Every message still to go waits for the same moment: the refused one's time plus the second asked.
    assert len({d.next_attempt_at for d in held}) == 1
    deadline = time.monotonic() + 10
    while len(emulator.messages) < 40:
        assert time.monotonic() < deadline, "the held messages never went"
        time.sleep(0.2)
        asyncio.run(send_once(sqlite_store, build_routing(settings)))
    assert sorted(m.chat_id for m in emulator.messages) == list(range(FIRST_CHAT, FIRST_CHAT + 40))


def test_a_group_that_became_a_supergroup_is_followed(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    settings = bot_settings(make_settings, emulator.url, sqlite_store.url)
    group, supergroup = -4_000_000_001, -1_004_000_000_001
    with sqlite_store.sessions.begin() as session:
        session.add(Subscriber(channel="telegram_bot", chat_id=str(group), topics=["tax"]))
    emulator.add_chat(group, kind="group", title="Phòng kế toán")
    emulator.migrate(group, supergroup)
    announce(sqlite_store, settings, add_item(sqlite_store, ["tax"]))
    report = asyncio.run(send_once(sqlite_store, build_routing(settings)))
    assert report.sent == 1
    assert [m.chat_id for m in emulator.messages] == [supergroup]
    with sqlite_store.sessions() as session:
        assert session.scalars(select(Subscriber.chat_id)).all() == [str(supergroup)]


def test_digest_subscribers_get_one_message_a_day_listing_their_items(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    settings = bot_settings(make_settings, emulator.url, sqlite_store.url)
    renderer = Renderer(settings.schedule, LIMITS)
    tax_reader = add_subscribers(sqlite_store, emulator, 1, ["tax"], DeliveryMode.digest)[0]
    both = add_subscribers(sqlite_store, emulator, 1, ["tax", "law"], DeliveryMode.digest, first=FIRST_CHAT + 10)[0]
    instant = add_subscribers(sqlite_store, emulator, 1, ["tax"], first=FIRST_CHAT + 20)[0]
    titles = {"tax": "Hoàn thuế GTGT", "law": "Luật Doanh nghiệp sửa đổi"}
    for topic, title in titles.items():
        announce(sqlite_store, settings, add_item(sqlite_store, [topic], title))
    asyncio.run(send_once(sqlite_store, build_routing(settings)))
    assert [m.chat_id for m in emulator.messages] == [instant]  # instant: the tax item at once

    now = datetime.now(UTC)
    with sqlite_store.sessions.begin() as session:
        made = daily_digest(session, settings, renderer, "telegram_bot", now, STAFF, 10)
    with sqlite_store.sessions.begin() as session:
        again = daily_digest(session, settings, renderer, "telegram_bot", now + timedelta(minutes=1), STAFF, 10)
    assert len(made) == 1
    assert again == []
    asyncio.run(send_once(sqlite_store, build_routing(settings)))
    texts = {m.chat_id: m.text or "" for m in emulator.messages[1:]}
    assert set(texts) == {tax_reader, both}
    assert titles["tax"] in texts[tax_reader]
    assert titles["law"] not in texts[tax_reader]
    assert titles["tax"] in texts[both]
    assert titles["law"] in texts[both]
    assert len(set(re.findall(r"/r/([A-Za-z0-9]+)", texts[both]))) == 2  # a link of its own per item


def test_an_item_nobody_subscribed_to_closes_its_campaign(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    settings = bot_settings(make_settings, emulator.url, sqlite_store.url)
    add_subscribers(sqlite_store, emulator, 3, ["law"])
    campaign_id = announce(sqlite_store, settings, add_item(sqlite_store, ["tax"]))
    with sqlite_store.sessions() as session:
        assert session.get_one(Campaign, campaign_id).status is CampaignStatus.done


# --- stopped half way, started again ---------------------------------------------------------------


def _run(config: Path, db_url: str, extra_env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **extra_env, "OUTREACH_DATABASE_URL": db_url, "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "--config", str(config), "run", "--no-tracker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=Path(__file__).resolve().parents[1],
        )


def _wait_for(condition: Callable[[], bool], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out; the runs said:\n" + log.read_text(encoding="utf-8", errors="replace"))
        time.sleep(0.02)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_broadcast_stopped_half_way_resumes_and_loses_nothing(
    sqlite_store: Store,
    emulator: TelegramEmulator,
    make_settings: Callable[..., Settings],
    how: signal.Signals,
) -> None:
    slow = {"per_second": 200, "burst": 10, "concurrency": 8}
    settings = bot_settings(make_settings, emulator.url, sqlite_store.url, rate=slow)
    config = settings.config_path
    text = config.read_text(encoding="utf-8")
    config.write_text(text + "dispatch:\n  sending_lease_seconds: 1\n", encoding="utf-8")
    chats = add_subscribers(sqlite_store, emulator, 400, ["tax"])
    announce(sqlite_store, settings, add_item(sqlite_store, ["tax"]))
    env = {"OUTREACH_TELEGRAM_TOKEN": TOKEN}

    log = config.parent / "run.log"
    first = _run(config, sqlite_store.url, env, log)
    _wait_for(lambda: len(emulator.messages) >= 150, 60, log)
    first.send_signal(how)
    first.wait(30)
    stopped_at = len(emulator.messages)
    assert stopped_at < 400, "the broadcast finished before it was stopped"
    time.sleep(1.1)  # SIGKILL: the sends in flight are older than the lease, so they are tried again

    second = _run(config, sqlite_store.url, env, log)
    try:
        _wait_for(lambda: len({m.chat_id for m in emulator.messages}) >= 400, 60, log)
        time.sleep(0.3)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    received = Counter(m.chat_id for m in emulator.messages)
    assert set(received) == set(chats)  # nobody missed
    extra = sum(received.values()) - len(chats)
    if how is signal.SIGTERM:
        assert extra == 0  # in-flight sends finished and were recorded before exit
    else:
        # Killed outright: a send in flight may have arrived unrecorded and goes again (never lost).
        assert extra <= slow["concurrency"]
    with sqlite_store.sessions() as session:
        states = Counter(session.scalars(select(Delivery.status)))
    assert states == {DeliveryStatus.sent: 400}


def test_a_group_that_moved_where_it_subscribed_again_gets_one_copy(
    sqlite_store: Store, emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    one_at_a_time = {"per_second": 100, "burst": 10, "concurrency": 1}  # the first send is recorded before the next
    settings = bot_settings(make_settings, emulator.url, sqlite_store.url, rate=one_at_a_time)
    group, supergroup = -4_000_000_002, -1_004_000_000_002
    emulator.add_chat(group, kind="group", title="Phòng kế toán")
    emulator.migrate(group, supergroup)
    with sqlite_store.sessions.begin() as session:  # someone sent /start in the new supergroup too
        session.add(Subscriber(channel="telegram_bot", chat_id=str(group), topics=["tax"]))
        session.add(Subscriber(channel="telegram_bot", chat_id=str(supergroup), topics=["tax"]))
    announce(sqlite_store, settings, add_item(sqlite_store, ["tax"]))
    asyncio.run(send_once(sqlite_store, build_routing(settings)))
    with sqlite_store.sessions() as session:
        states = {s.chat_id: s.status for s in session.scalars(select(Subscriber))}
        outcomes = Counter(session.scalars(select(Delivery.status)))
    assert states == {str(group): SubscriberStatus.stopped, str(supergroup): SubscriberStatus.active}
    # The old id's send reached the new chat and was recorded; the new chat's own copy was skipped.
    assert outcomes == {DeliveryStatus.sent: 1, DeliveryStatus.skipped: 1}
    assert [m.chat_id for m in emulator.messages] == [supergroup]
