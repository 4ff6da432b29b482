"""The Telegram channel adapter, through python-telegram-bot, against the Bot API emulator.

One table of cases (answer scripted on the emulator -> the core's outcome), then
the behaviours a table cannot show: migration, photos, escaping, long texts, a
300-message burst at the platform's rate, and the token kept out of every record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from channels import LIMITS, build_routing
from channels.telegram import TelegramChannel, TelegramSettings
from outreach.channel import AuthFailed, MaybeSent, RecipientGone, Rejected, RenderedMessage, Sent, Transient
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch import send_once
from outreach.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Link
from outreach.render import CampaignView, ItemView, PostContext, Renderer, visible_length
from outreach.sandbox import Fault, TelegramEmulator
from tests.conftest import free_port

TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"
CHANNEL, CHANNEL_NAME = -1001234567890, "@quangngai_doanhnghiep"
PRIVATE = 555_000_111
PORTAL = "https://quangngai.gov.vn/tin-tuc/hoan-thue-18301.html?utm_source=telegram_channel"
TIMEOUT, HANG = 0.5, 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramEmulator]:
    with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(server: TelegramEmulator) -> TelegramEmulator:
    server.reset()
    server.add_bot(TOKEN)
    server.add_chat(CHANNEL, username=CHANNEL_NAME.removeprefix("@"), title="Doanh nghiệp Quảng Ngãi")
    server.add_chat(PRIVATE, kind="private", title="Nguyễn Văn An")
    return server


def adapter(api_url: str, *targets: str, timeout: float = TIMEOUT) -> TelegramChannel:
    settings = TelegramSettings(api_url=api_url, timeout_seconds=timeout)
    return TelegramChannel(settings, {target: SecretStr(TOKEN) for target in targets or (CHANNEL_NAME,)})


def message(
    text: str = "📢 <b>Hoàn thuế GTGT</b>", target: str = CHANNEL_NAME, image: str | None = None
) -> RenderedMessage:
    return RenderedMessage(
        delivery_id=1,
        campaign_id=1,
        channel="telegram_channel",
        target=target,
        language="vi",
        text=text,
        markup="html",
        link_code="AbCdEf1234",
        destination=PORTAL,
        image_url=image,
    )


def send(channel: TelegramChannel, *messages: RenderedMessage) -> list[Sent | Exception]:
    """Send each message in one event loop; the outcome or the core's exception for each."""

    async def run() -> list[Sent | Exception]:
        outcomes: list[Sent | Exception] = []
        try:
            for each in messages:
                try:
                    outcomes.append(await channel.send(each))
                except Exception as exc:
                    outcomes.append(exc)
        finally:
            await channel.close()
        return outcomes

    return asyncio.run(run())


@dataclass(frozen=True)
class Case:
    name: str
    script: Callable[[TelegramEmulator], None]
    expect: type[Exception] | str  # an exception type, or the platform id of what was sent
    says: str = ""  # a fragment the error must contain
    posts: int = 0  # messages the channel holds afterwards
    target: str = CHANNEL_NAME
    text: str = "📢 <b>Hoàn thuế GTGT</b> cho doanh nghiệp"


def nothing(_: TelegramEmulator) -> None:
    pass


CASES = [
    Case("sent", nothing, f"{CHANNEL}:1", posts=1),
    Case("by numeric id", nothing, f"{CHANNEL}:1", posts=1, target=str(CHANNEL)),
    Case(
        "flood control",
        lambda e: e.retry_after(7, target=CHANNEL_NAME),
        Transient,
        "Telegram flood control: retry after 7 s",
    ),
    Case(
        "bot removed from the channel",
        lambda e: e.remove_bot(CHANNEL, TOKEN),
        AuthFailed,
        f"(add the bot to {CHANNEL_NAME} as an administrator that may post)",
    ),
    Case(
        "bot blocked in a private chat",
        lambda e: e.remove_bot(PRIVATE, TOKEN),
        RecipientGone,
        "Forbidden: bot was blocked by the user",
        target=str(PRIVATE),
    ),
    Case(
        "token revoked",
        lambda e: e.revoke(TOKEN),
        AuthFailed,
        "Telegram refused the bot token in OUTREACH_TELEGRAM_TOKEN: check it against @BotFather",
    ),
    Case(
        "bot without the right to post",
        lambda e: e.forbid_posting(CHANNEL, TOKEN),
        AuthFailed,
        "Need administrator rights in the channel chat (check the target @quangngai_doanhnghiep and the bot's rights",
    ),
    Case(
        "broken HTML",
        nothing,
        Rejected,
        "Telegram: Can't parse entities",
        text="Thuế <GTGT> & phí",
    ),
    Case("too long", nothing, Rejected, "Telegram: Message is too long", text="á" * 4097),
    Case(
        "chat unknown",
        nothing,
        AuthFailed,
        "Telegram: Chat not found (check the target @no_such_channel and the bot's rights there)",
        target="@no_such_channel",
    ),
    Case(
        "not JSON (a proxy's 502 page)",
        lambda e: e.faults.add(Fault("not_json"), method="sendMessage"),
        MaybeSent,
        "Telegram did not answer after the post was sent (Bad Gateway (502)",
    ),
    Case(
        "no Content-Type, no result",
        lambda e: e.faults.add(Fault("no_content_type"), method="sendMessage"),
        MaybeSent,
        "Telegram's answer could not be read (KeyError)",
    ),
    Case(
        "server error after accepting",
        lambda e: e.faults.add(Fault("accept_then_error", status=500), method="sendMessage"),
        MaybeSent,
        "Telegram did not answer after the post was sent",
        posts=1,
    ),
    Case(
        "timeout before accepting",
        lambda e: e.faults.add(Fault("hang", seconds=HANG), method="sendMessage"),
        MaybeSent,
        "Telegram did not answer after the post was sent (Timed out)",
    ),
    Case(
        "timeout after accepting",
        lambda e: e.faults.add(Fault("accept_then_hang", seconds=HANG), method="sendMessage"),
        MaybeSent,
        "Telegram did not answer after the post was sent (Timed out)",
        posts=1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_answers_become_the_cores_outcomes(emulator: TelegramEmulator, case: Case) -> None:
    case.script(emulator)
    [outcome] = send(adapter(emulator.url, case.target), message(case.text, case.target))
    if isinstance(case.expect, str):
        assert outcome == Sent(platform_id=case.expect)
    else:
        assert type(outcome) is case.expect, repr(outcome)
        assert case.says in str(outcome)
    assert len(emulator.messages) == case.posts


def test_the_flood_wait_is_honoured_exactly(emulator: TelegramEmulator) -> None:
    emulator.retry_after(13)
    [outcome] = send(adapter(emulator.url), message())
    assert isinstance(outcome, Transient)
    assert outcome.retry_after == 13.0


def test_a_refused_token_pauses_the_whole_channel_a_removed_bot_one_target(emulator: TelegramEmulator) -> None:
    emulator.remove_bot(CHANNEL, TOKEN)
    [removed] = send(adapter(emulator.url), message())
    emulator.revoke(TOKEN)
    [revoked] = send(adapter(emulator.url), message())
    assert isinstance(removed, AuthFailed)
    assert isinstance(revoked, AuthFailed)
    assert (removed.whole_channel, revoked.whole_channel) == (False, True)


def test_connection_refused_is_transient() -> None:
    [outcome] = send(adapter(f"http://127.0.0.1:{free_port()}"), message())
    assert type(outcome) is Transient
    assert str(outcome).startswith("Telegram unreachable: ")


def test_a_migrated_chat_is_posted_to_at_its_new_id_and_remembered(emulator: TelegramEmulator) -> None:
    new_id = -1009876543210
    emulator.migrate(CHANNEL, new_id)
    channel = adapter(emulator.url, str(CHANNEL))
    first, second = send(channel, message(target=str(CHANNEL)), message(target=str(CHANNEL)))
    assert (first, second) == (Sent(f"{new_id}:1"), Sent(f"{new_id}:2"))
    sends = [chat for method, chat in emulator.requests if method == "sendMessage"]
    assert sends == [str(CHANNEL), str(new_id), str(new_id)]  # the old id was tried once only


def test_the_preview_shows_the_portal_page_not_the_tracker(emulator: TelegramEmulator) -> None:
    send(adapter(emulator.url), message())
    [posted] = emulator.messages
    assert posted.parse_mode == "HTML"
    assert posted.link_preview == {"url": PORTAL}


def test_a_photo_carries_a_short_text_as_its_caption(emulator: TelegramEmulator) -> None:
    image = "https://quangngai.gov.vn/images/hoan-thue.jpg"
    [outcome] = send(adapter(emulator.url), message(image=image))
    [posted] = emulator.messages
    assert outcome == Sent(f"{CHANNEL}:1")
    assert (posted.photo, posted.caption, posted.text) == (image, "📢 <b>Hoàn thuế GTGT</b>", None)


def test_a_text_too_long_for_a_caption_follows_its_photo(emulator: TelegramEmulator) -> None:
    image = "https://quangngai.gov.vn/images/hoan-thue.jpg"
    text = "<b>Hoàn thuế</b> " + "Doanh nghiệp nộp hồ sơ hoàn thuế trực tuyến. " * 30
    assert 1024 < visible_length(text, "html") <= 4096
    [outcome] = send(adapter(emulator.url), message(text, image=image))
    photo, follow = emulator.messages
    assert (photo.photo, photo.caption) == (image, None)
    assert follow.text == text
    assert outcome == Sent(f"{CHANNEL}:2")  # the text is the post people read


def test_a_photo_telegram_cannot_fetch_leaves_the_text_alone(emulator: TelegramEmulator) -> None:
    body = {"ok": False, "error_code": 400, "description": "Bad Request: failed to get HTTP URL content"}
    emulator.faults.add(Fault("error", status=400, body=body), method="sendPhoto")
    [outcome] = send(adapter(emulator.url), message(image="https://quangngai.gov.vn/images/gone.jpg"))
    [posted] = emulator.messages
    assert outcome == Sent(f"{CHANNEL}:1")
    assert (posted.photo, posted.text) == (None, "📢 <b>Hoàn thuế GTGT</b>")


def test_the_text_after_a_photo_waits_out_a_short_flood_wait(emulator: TelegramEmulator) -> None:
    text = "<b>Hoàn thuế</b> " + "Doanh nghiệp nộp hồ sơ hoàn thuế trực tuyến. " * 30
    emulator.retry_after(1, method="sendMessage")
    [outcome] = send(adapter(emulator.url), message(text, image="https://quangngai.gov.vn/images/a.jpg"))
    photo, follow = emulator.messages
    assert outcome == Sent(f"{CHANNEL}:2")
    assert (photo.caption, follow.text) == (None, text)


def test_a_text_refused_after_its_photo_is_never_resent_blindly(emulator: TelegramEmulator) -> None:
    text = "<b>Hoàn thuế</b> " + "Doanh nghiệp nộp hồ sơ hoàn thuế trực tuyến. " * 30
    body = {"ok": False, "error_code": 400, "description": "Bad Request: message thread not found"}
    emulator.faults.add(Fault("error", status=400, body=body), method="sendMessage")
    [outcome] = send(adapter(emulator.url), message(text, image="https://quangngai.gov.vn/images/a.jpg"))
    assert isinstance(outcome, MaybeSent)
    assert str(outcome) == (
        "Telegram took the photo (message 1) but not the text that follows it (Message thread not found): "
        "post the text by hand, then settle the delivery"
    )
    assert len(emulator.messages) == 1


def _context(title: str, summary: str, language: str = "vi") -> PostContext:
    item = ItemView(title, summary, PORTAL, None, datetime(2026, 11, 27, 8, 30, tzinfo=UTC), language)
    link = "https://go.quangngai.gov.vn/r/AbCdEf1234"
    return PostContext(item, [], link, CampaignView(1, title, "outreach-1"), language)


def test_vietnamese_titles_with_markup_characters_are_escaped_and_accepted(
    emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    renderer = Renderer(make_settings().schedule, LIMITS)
    title = "Thuế <GTGT> & hóa đơn điện tử > 20 triệu đồng"
    text = renderer.render("telegram_channel", "post", _context(title, "Doanh nghiệp <nhỏ> & vừa")).text
    [outcome] = send(adapter(emulator.url), message(text))
    assert outcome == Sent(f"{CHANNEL}:1")
    [posted] = emulator.messages
    assert "Thuế &lt;GTGT&gt; &amp; hóa đơn điện tử &gt; 20 triệu đồng" in (posted.text or "")


def test_a_4000_character_vietnamese_summary_fits_without_cutting_the_link(
    emulator: TelegramEmulator, make_settings: Callable[..., Settings]
) -> None:
    renderer = Renderer(make_settings().schedule, LIMITS)
    summary = ("Ủy ban nhân dân tỉnh Quảng Ngãi hỗ trợ doanh nghiệp nhỏ và vừa tiếp cận vốn vay ưu đãi. " * 50)[:4000]
    text = renderer.render("telegram_channel", "post", _context("Hỗ trợ doanh nghiệp", summary)).text
    assert visible_length(text, "html") <= 4096
    assert '<a href="https://go.quangngai.gov.vn/r/AbCdEf1234">' in text
    [outcome] = send(adapter(emulator.url), message(text))
    assert outcome == Sent(f"{CHANNEL}:1")


def test_check_names_the_bot_and_the_channel(emulator: TelegramEmulator) -> None:
    async def run(channel: TelegramChannel) -> str:
        try:
            return await channel.check(CHANNEL_NAME)
        finally:
            await channel.close()

    assert asyncio.run(run(adapter(emulator.url))) == (
        "bot @quangngai_outreach_bot may post in channel Doanh nghiệp Quảng Ngãi"
    )
    emulator.forbid_posting(CHANNEL, TOKEN)
    with pytest.raises(AuthFailed, match="may not post in channel Doanh nghiệp Quảng Ngãi: make it an administrator"):
        asyncio.run(run(adapter(emulator.url)))
    emulator.revoke(TOKEN)
    with pytest.raises(AuthFailed, match="Telegram refused the bot token"):
        asyncio.run(run(adapter(emulator.url)))


# --- through the dispatcher ------------------------------------------------------------------


def _queue(store: Store, count: int, target: str = CHANNEL_NAME) -> None:
    """`count` scheduled campaigns with one pending Telegram delivery each."""
    with store.sessions.begin() as session:
        for n in range(count):
            campaign = Campaign(
                title=f"Tin {n}",
                channels=["telegram_channel"],
                language="vi",
                created_by="tester",
                status=CampaignStatus.scheduled,
            )
            session.add(campaign)
            session.flush()
            code = f"Burst{n:05d}"
            session.add(Link(code=code, destination=PORTAL, campaign_id=campaign.id, channel="telegram_channel"))
            text = f'📢 <b>Tin số {n}</b> <a href="https://go.quangngai.gov.vn/r/{code}">Xem</a>'
            session.add(
                Delivery(
                    campaign_id=campaign.id,
                    channel="telegram_channel",
                    target=target,
                    language="vi",
                    text=text,
                    link_code=code,
                )
            )


def _settings(make_settings: Callable[..., Settings], api_url: str, rate: dict[str, float] | None = None) -> Settings:
    block: dict[str, object] = {"api_url": api_url, "timeout_seconds": 5, "targets": [{"id": CHANNEL_NAME}]}
    if rate:
        block["rate"] = rate
    return make_settings(channels={"telegram_channel": block}, env={"OUTREACH_TELEGRAM_TOKEN": TOKEN})


def test_a_300_message_burst_runs_at_the_allowed_rate_without_a_429(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    rate = {"per_second": 80, "burst": 1, "per_target_per_second": 80, "per_target_burst": 1}
    with TelegramEmulator(rate_per_chat=100) as limited:
        limited.add_bot(TOKEN)
        limited.add_chat(CHANNEL, username=CHANNEL_NAME.removeprefix("@"))
        settings = _settings(make_settings, limited.url, rate)
        _queue(sqlite_store, 300)
        report = asyncio.run(send_once(sqlite_store, build_routing(settings)))
        assert len(limited.messages) == 300
    assert (report.sent, report.retrying, report.failed, report.unknown) == (300, 0, 0, 0)


def test_a_429_holds_the_whole_channel_as_told_and_fails_nothing(
    sqlite_store: Store, make_settings: Callable[..., Settings], emulator: TelegramEmulator
) -> None:
    settings = _settings(make_settings, emulator.url, {"per_target_per_second": 100, "per_target_burst": 10})
    _queue(sqlite_store, 5)
    emulator.retry_after(2, target=CHANNEL_NAME)
    started = datetime.now(UTC)
    report = asyncio.run(send_once(sqlite_store, build_routing(settings)))
    assert (report.sent, report.retrying, report.failed) == (0, 1, 0)
    assert report.waiting == {("telegram_channel", "*"): 2.0}
    assert [method for method, _ in emulator.requests].count("sendMessage") == 1  # nothing more after the 429
    with sqlite_store.sessions() as session:
        waiting = list(session.scalars(select(Delivery).order_by(Delivery.id)))
    assert all(d.status == DeliveryStatus.pending for d in waiting)
    assert [d.attempts for d in waiting] == [1, 0, 0, 0, 0]
    for delivery in waiting:
        assert delivery.next_attempt_at is not None
        assert timedelta(seconds=2) <= delivery.next_attempt_at - started <= timedelta(seconds=3)
    again = asyncio.run(send_once(sqlite_store, build_routing(settings)))  # before the 2 s: nothing is due
    assert (again.sent, again.retrying) == (0, 0)


def test_the_token_never_reaches_logs_errors_or_the_database(
    sqlite_store: Store,
    make_settings: Callable[..., Settings],
    emulator: TelegramEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="telegram")  # PTB logs request URLs at DEBUG: token hidden
    settings = _settings(make_settings, emulator.url, {"per_target_per_second": 100, "per_target_burst": 10})
    _queue(sqlite_store, 3)
    emulator.faults.add(Fault("not_json"), method="sendMessage")
    emulator.retry_after(1, target=CHANNEL_NAME)
    first = asyncio.run(send_once(sqlite_store, build_routing(settings)))
    emulator.revoke(TOKEN)
    with sqlite_store.sessions.begin() as session:  # make the waiting one due again
        for delivery in session.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.pending)):
            delivery.next_attempt_at = None
    second = asyncio.run(send_once(sqlite_store, build_routing(settings)))
    assert (first.sent, first.retrying, first.unknown) == (0, 1, 1)
    assert list(second.paused) == [("telegram_channel", "*")]
    assert TOKEN.split(":")[1] not in caplog.text
    assert "Set Bot API URL: http://" in caplog.text  # PTB logs the URL with the token in it: hidden
    assert "/bot***" in caplog.text
    assert TOKEN not in " ".join(second.paused.values())
    with sqlite_store.sessions() as session:
        errors = [d.last_error or "" for d in session.scalars(select(Delivery))]
    assert any(errors)
    assert not any(TOKEN.split(":")[1] in error for error in errors)


def test_without_the_pacer_the_same_burst_meets_flood_control(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    # The control for the burst test above: the emulator's limit is real, only the pace keeps under it.
    rate = {"per_second": 10_000, "burst": 10_000, "per_target_per_second": 10_000, "per_target_burst": 10_000}
    with TelegramEmulator(rate_per_chat=20) as limited:
        limited.add_bot(TOKEN)
        limited.add_chat(CHANNEL, username=CHANNEL_NAME.removeprefix("@"))
        _queue(sqlite_store, 60)
        report = asyncio.run(send_once(sqlite_store, build_routing(_settings(make_settings, limited.url, rate))))
        accepted = len(limited.messages)
    assert report.waiting == {("telegram_channel", "*"): 1.0}
    assert (report.sent, report.retrying, report.failed) == (accepted, 1, 0)
    assert 20 <= accepted < 60
