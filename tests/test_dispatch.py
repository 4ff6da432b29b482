"""Sending deliveries: the real outbox, crash recovery, and each error a channel may raise."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from channels import LIMITS, build_routing
from channels.outbox import OutboxChannel, read_outbox_file
from outreach import dispatch, dispatch_store
from outreach.channel import AuthFailed, Channel, RecipientGone, Rejected, RenderedMessage, Sent, Transient
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch import EVERY_TARGET, MAX_ATTEMPTS, Dispatcher, SendReport, send_pending
from outreach.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Item, Source
from outreach.routing import Route, Routing
from tests.conftest import announce, base_config

NOW = datetime(2030, 11, 27, 3, 0, tzinfo=UTC)  # after any campaign a test approves (now)


@dataclass
class FakeChannel:
    """A test double for a platform: records each message, raises the next scripted error."""

    name: str
    idempotent: bool = False
    errors: list[Exception] = field(default_factory=list)
    calls: list[RenderedMessage] = field(default_factory=list)
    where: str = "a test double"
    errors_for: dict[str, list[Exception]] = field(default_factory=dict)  # by target: workers run at once

    async def send(self, message: RenderedMessage) -> Sent:
        self.calls.append(message)
        if self.errors_for.get(message.target):
            raise self.errors_for[message.target].pop(0)
        if self.errors:
            raise self.errors.pop(0)
        return Sent(platform_id=f"{self.name}-{message.delivery_id}")

    async def check(self, target: str) -> str:
        return f"{target} is fine"

    async def close(self) -> None:
        pass


def routing_for(store: Store, channels: Mapping[str, Channel]) -> Routing:
    """Every stored delivery's target routed to the given transport of its channel (no pacing)."""
    with store.sessions() as session:
        keys = {(channel, target) for channel, target in session.execute(select(Delivery.channel, Delivery.target))}
    routes = {
        (channel, target): Route(channel, target, channels[channel], "test")
        for channel, target in keys
        if channel in channels
    }
    return Routing(routes=routes, markups={name: limits.markup for name, limits in LIMITS.items()}, rates={})


def make_campaign(store: Store, settings: Settings, language: str = "vi") -> int:
    """Store one portal item, make a campaign on all enabled channels and queue it."""
    with store.sessions.begin() as session:
        source = Source(name=f"portal-{language}", url="https://quangngai.gov.vn/rss/tin-tuc.rss", language=language)
        item = Item(
            source=source,
            guid=f"{language}-1",
            url="https://quangngai.gov.vn/tin-tuc/hoan-thue-18301.html",
            title="Hướng dẫn hoàn thuế giá trị gia tăng" if language == "vi" else "VAT refund guide",
            summary="Doanh nghiệp & hộ kinh doanh nộp hồ sơ trực tuyến.",
            published_at=NOW,
            language=language,
            topics=["tax"],
        )
        session.add(item)
        session.flush()
        created = announce(session, settings, item.id)
        return created[0].campaign_id


def deliveries(store: Store) -> list[Delivery]:
    with store.sessions() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def delivery_of(store: Store, channel: str) -> Delivery:
    (found,) = [d for d in deliveries(store) if d.channel == channel]
    return found


def campaign_status(store: Store, campaign_id: int) -> CampaignStatus:
    with store.sessions() as session:
        return session.get_one(Campaign, campaign_id).status


def send(store: Store, channels: Mapping[str, Channel] | Routing, now: datetime = NOW) -> SendReport:
    routing = channels if isinstance(channels, Routing) else routing_for(store, channels)
    return asyncio.run(send_pending(store, routing, now=lambda: now))


def set_state(store: Store, delivery_id: int, **values: object) -> None:
    with store.sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        for key, value in values.items():
            setattr(delivery, key, value)


def outbox_files(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


# --- the real outbox ---------------------------------------------------------


def test_send_pending_writes_one_outbox_file_per_delivery(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = make_campaign(store, settings)
    routing = build_routing(settings)
    assert all(isinstance(route.transport, OutboxChannel) for route in routing)  # no tokens set

    report = send(store, routing)

    assert (report.sent, report.failed, report.retrying, report.unknown, report.recovered) == (2, 0, 0, 0, 0)
    outbox = settings.schedule.channels.outbox.dir
    sent = deliveries(store)
    assert sorted(outbox_files(outbox)) == sorted(
        outbox / d.channel / f"c{d.campaign_id}-d{d.id}-{d.link_code}.txt" for d in sent
    )
    with store.sessions() as session:
        for delivery in sent:
            header, text = read_outbox_file(
                outbox / delivery.channel / f"c{delivery.campaign_id}-d{delivery.id}-{delivery.link_code}.txt"
            )
            link = session.get_one(Delivery, delivery.id).link
            assert link is not None
            assert header["channel"] == delivery.channel
            assert header["target"] == delivery.target
            assert header["campaign"] == campaign_id
            assert header["delivery"] == delivery.id
            assert header["markup"] == ("html" if delivery.channel == "telegram_channel" else "plain")
            assert header["link"] == {"code": delivery.link_code, "destination": link.destination}
            assert text == delivery.text
            assert delivery.status == DeliveryStatus.sent
            assert (
                delivery.platform_id
                == f"outbox:{delivery.channel}/c{delivery.campaign_id}-d{delivery.id}-{delivery.link_code}.txt"
            )
            assert delivery.transport == "outbox"
            assert delivery.attempts == 1
            assert delivery.sent_at == NOW
    assert campaign_status(store, campaign_id) == CampaignStatus.done


def test_sending_again_sends_nothing_new(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    routing = build_routing(settings)
    send(sqlite_store, routing)
    before = outbox_files(settings.schedule.channels.outbox.dir)
    assert len(before) == 2

    again = send(sqlite_store, routing, now=NOW + timedelta(hours=1))

    assert (again.sent, again.retrying, again.recovered) == (0, 0, 0)
    assert outbox_files(settings.schedule.channels.outbox.dir) == before  # same files, none rewritten
    assert all(d.attempts == 1 and d.sent_at == NOW for d in deliveries(sqlite_store))


# --- crash recovery ----------------------------------------------------------


def test_interrupted_outbox_delivery_is_sent_once(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = make_campaign(store, settings)
    stuck = delivery_of(store, "facebook")
    set_state(store, stuck.id, status=DeliveryStatus.sending, transport="outbox", attempts=1)

    report = send(store, build_routing(settings))

    assert report.recovered == 1
    assert report.sent == 2
    after = delivery_of(store, "facebook")
    assert (after.status, after.attempts) == (DeliveryStatus.sent, 2)
    files = outbox_files(settings.schedule.channels.outbox.dir)
    assert [p.name for p in files if p.parent.name == "facebook"] == [
        f"c{stuck.campaign_id}-d{stuck.id}-{stuck.link_code}.txt"
    ]
    assert campaign_status(store, campaign_id) == CampaignStatus.done


def test_interrupted_post_on_a_non_idempotent_channel_becomes_unknown(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    campaign_id = make_campaign(store, settings)
    stuck = delivery_of(store, "facebook")
    set_state(store, stuck.id, status=DeliveryStatus.sending, transport="facebook", attempts=1)
    facebook, telegram = FakeChannel("facebook"), FakeChannel("telegram_channel")

    report = send(store, {"facebook": facebook, "telegram_channel": telegram})

    assert report.recovered == 1
    assert facebook.calls == []  # a duplicate post on a government page is worse than a late one
    assert [m.channel for m in telegram.calls] == ["telegram_channel"]
    after = delivery_of(store, "facebook")
    assert after.status == DeliveryStatus.unknown
    assert after.attempts == 1
    assert after.last_error is not None
    assert "may have been posted" in after.last_error
    assert delivery_of(store, "telegram_channel").status == DeliveryStatus.sent
    assert campaign_status(store, campaign_id) == CampaignStatus.sending  # an operator must settle it


def test_interrupted_post_whose_transport_changed_is_not_resent(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    # Posted through the Facebook adapter before the crash; the token is gone now and
    # the channel falls back to the outbox: that must not count as "the same transport".
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    stuck = delivery_of(sqlite_store, "facebook")
    set_state(sqlite_store, stuck.id, status=DeliveryStatus.sending, transport="facebook", attempts=1)

    send(sqlite_store, build_routing(settings))

    assert delivery_of(sqlite_store, "facebook").status == DeliveryStatus.unknown
    assert not (settings.schedule.channels.outbox.dir / "facebook").exists()


def test_a_young_claim_belongs_to_another_dispatcher(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    busy = delivery_of(sqlite_store, "facebook")
    set_state(
        sqlite_store,
        busy.id,
        status=DeliveryStatus.sending,
        transport="facebook",
        attempts=1,
        claimed_at=NOW - timedelta(seconds=30),
    )
    facebook = FakeChannel("facebook")

    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")})

    assert report.recovered == 0
    assert facebook.calls == []
    assert delivery_of(sqlite_store, "facebook").status == DeliveryStatus.sending
    later = send(sqlite_store, {"facebook": facebook}, now=NOW + timedelta(minutes=10))
    assert later.recovered == 1
    assert delivery_of(sqlite_store, "facebook").status == DeliveryStatus.unknown


def test_deliveries_for_a_disabled_channel_wait_and_are_reported(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    telegram = FakeChannel("telegram_channel")

    report = send(sqlite_store, {"telegram_channel": telegram})

    assert report.sent == 1
    assert report.unroutable == {("facebook", "quangngai.gov.vn"): 1}
    assert delivery_of(sqlite_store, "facebook").status == DeliveryStatus.pending


def test_only_one_of_two_dispatchers_claims_a_delivery(store: Store, make_settings: Callable[..., Settings]) -> None:
    from outreach.dispatch_store import claim
    from outreach.lifecycle import Actor

    settings = make_settings()
    make_campaign(store, settings)
    target = delivery_of(store, "facebook")
    actor = Actor("tester", "dispatcher")
    first = claim(store, "facebook", [target.target], "facebook", "plain", NOW, 5, actor)
    second = claim(store, "facebook", [target.target], "facebook", "plain", NOW, 5, actor)
    assert [c.message.delivery_id for c in first] == [target.id]
    assert second == []
    after = delivery_of(store, "facebook")
    assert (after.status, after.attempts, after.claimed_at) == (DeliveryStatus.sending, 1, NOW)


def test_a_cancelled_campaign_sends_nothing(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = make_campaign(sqlite_store, settings)
    with sqlite_store.sessions.begin() as session:
        session.get_one(Campaign, campaign_id).status = CampaignStatus.cancelled
    facebook = FakeChannel("facebook")

    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")})

    assert facebook.calls == []
    assert report.sent == 0
    assert {d.status for d in deliveries(sqlite_store)} == {DeliveryStatus.pending}


# --- errors from channels ----------------------------------------------------


def test_transient_error_keeps_the_delivery_pending_until_retry_after(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    campaign_id = make_campaign(sqlite_store, settings)
    telegram = FakeChannel("telegram_channel", errors=[Transient("Flood control exceeded", retry_after=90)])
    channels = {"facebook": FakeChannel("facebook"), "telegram_channel": telegram}

    report = send(sqlite_store, channels)

    assert (report.sent, report.retrying) == (1, 1)
    waiting = delivery_of(sqlite_store, "telegram_channel")
    assert waiting.status == DeliveryStatus.pending
    assert waiting.attempts == 1
    assert waiting.next_attempt_at == NOW + timedelta(seconds=90)
    assert waiting.last_error == "Flood control exceeded"
    assert campaign_status(sqlite_store, campaign_id) == CampaignStatus.sending

    assert send(sqlite_store, channels, now=NOW + timedelta(seconds=89)).sent == 0  # not due yet
    assert len(telegram.calls) == 1
    assert send(sqlite_store, channels, now=NOW + timedelta(seconds=90)).sent == 1
    done = delivery_of(sqlite_store, "telegram_channel")
    assert (done.status, done.attempts, done.platform_id, done.last_error) == (
        DeliveryStatus.sent,
        2,
        f"telegram_channel-{done.id}",
        None,
    )
    assert campaign_status(sqlite_store, campaign_id) == CampaignStatus.done


def test_transient_error_without_retry_after_backs_off_with_jitter(
    sqlite_store: Store, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    spread: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        spread.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    send(
        sqlite_store,
        {
            "facebook": FakeChannel("facebook", errors=[Transient("HTTP 503")]),
            "telegram_channel": FakeChannel("telegram_channel"),
        },
    )
    waiting = delivery_of(sqlite_store, "facebook")
    assert waiting.next_attempt_at is not None
    assert spread == [(0.8, 1.2)]  # ±20 % around the 30 s base
    assert waiting.next_attempt_at - NOW == timedelta(seconds=36)


def test_transient_error_on_the_last_attempt_fails_the_delivery(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    campaign_id = make_campaign(sqlite_store, settings)
    set_state(sqlite_store, delivery_of(sqlite_store, "facebook").id, attempts=MAX_ATTEMPTS - 1)
    report = send(
        sqlite_store,
        {
            "facebook": FakeChannel("facebook", errors=[Transient("HTTP 503")]),
            "telegram_channel": FakeChannel("telegram_channel"),
        },
    )
    assert report.failed == 1
    failed = delivery_of(sqlite_store, "facebook")
    assert (failed.status, failed.attempts, failed.last_error) == (DeliveryStatus.failed, MAX_ATTEMPTS, "HTTP 503")
    assert campaign_status(sqlite_store, campaign_id) == CampaignStatus.done_with_errors


def test_rejected_message_fails_for_good_with_its_reason(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = make_campaign(store, settings)
    telegram = FakeChannel("telegram_channel", errors=[Rejected("Bad Request: can't parse entities")])
    channels = {"facebook": FakeChannel("facebook"), "telegram_channel": telegram}

    report = send(store, channels)

    assert (report.sent, report.failed) == (1, 1)
    failed = delivery_of(store, "telegram_channel")
    assert (failed.status, failed.attempts) == (DeliveryStatus.failed, 1)
    assert failed.last_error == "Bad Request: can't parse entities"
    assert campaign_status(store, campaign_id) == CampaignStatus.done_with_errors
    send(store, channels, now=NOW + timedelta(days=1))
    assert len(telegram.calls) == 1  # never retried


def test_recipient_gone_skips_the_delivery(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = make_campaign(sqlite_store, settings)
    report = send(
        sqlite_store,
        {
            "facebook": FakeChannel("facebook"),
            "telegram_channel": FakeChannel("telegram_channel", errors=[RecipientGone("Forbidden: bot was kicked")]),
        },
    )
    assert (report.sent, report.skipped, report.failed) == (1, 1, 0)
    skipped = delivery_of(sqlite_store, "telegram_channel")
    assert (skipped.status, skipped.last_error) == (DeliveryStatus.skipped, "Forbidden: bot was kicked")
    assert campaign_status(sqlite_store, campaign_id) == CampaignStatus.done  # skipped is not an error


def test_a_refused_token_pauses_the_whole_channel_and_loses_nothing(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    channels_config = base_config()["channels"]
    channels_config["telegram_channel"]["targets"] = [{"id": f"@qn_{n}", "languages": ["vi"]} for n in range(3)]
    settings = make_settings(channels=channels_config)
    campaign_id = make_campaign(sqlite_store, settings)
    refused = AuthFailed("Unauthorized: invalid token", whole_channel=True)
    telegram = FakeChannel("telegram_channel", errors=[refused, refused, refused])
    facebook = FakeChannel("facebook")

    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": telegram})

    assert report.paused == {("telegram_channel", "*"): "Unauthorized: invalid token"}
    # Each target's worker runs at once: each tries the bad token at most once, and none after the refusal is seen.
    tried = [m.target for m in telegram.calls]
    assert 1 <= len(tried) == len(set(tried)) <= 3
    telegram.errors.clear()
    assert len(facebook.calls) == 1
    assert report.sent == 1
    waiting = [d for d in deliveries(sqlite_store) if d.channel == "telegram_channel"]
    assert len(waiting) == 3
    assert all(d.status == DeliveryStatus.pending and d.attempts == 0 for d in waiting)
    assert all(d.last_error == "Unauthorized: invalid token" for d in waiting)

    # The pause is stored: the next run sends nothing to the channel until it is resumed.
    again = send(sqlite_store, {"facebook": facebook, "telegram_channel": telegram})
    assert (again.sent, len(telegram.calls)) == (0, len(tried))
    assert again.paused == {("telegram_channel", "*"): "Unauthorized: invalid token"}
    from outreach.dispatch_store import resume
    from outreach.lifecycle import Actor

    assert resume(sqlite_store, "telegram_channel", None, Actor("tester")) == 1
    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": telegram})
    assert (report.sent, report.paused) == (3, {})
    assert all(
        d.status == DeliveryStatus.sent and d.attempts == 1
        for d in deliveries(sqlite_store)
        if d.channel == "telegram_channel"
    )
    assert campaign_status(sqlite_store, campaign_id) == CampaignStatus.done


@pytest.mark.parametrize(("idempotent", "status"), [(False, DeliveryStatus.unknown), (True, DeliveryStatus.pending)])
def test_unexpected_error_is_ambiguous_unless_the_channel_is_idempotent(
    sqlite_store: Store, make_settings: Callable[..., Settings], idempotent: bool, status: DeliveryStatus
) -> None:
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    facebook = FakeChannel("facebook", idempotent=idempotent, errors=[RuntimeError("connection reset after upload")])

    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")})

    assert (report.unknown, report.retrying) == ((0, 1) if idempotent else (1, 0))
    after = delivery_of(sqlite_store, "facebook")
    assert after.status == status
    assert after.last_error == "RuntimeError: connection reset after upload"
    send(
        sqlite_store,
        {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")},
        now=NOW + timedelta(hours=1),
    )
    assert len(facebook.calls) == (2 if idempotent else 1)  # only a channel that cannot duplicate is tried again


def test_maybe_sent_is_never_retried_blindly(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    from outreach.channel import MaybeSent

    settings = make_settings()
    make_campaign(sqlite_store, settings)
    facebook = FakeChannel("facebook", errors=[MaybeSent("timed out after the request was sent")])

    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")})

    assert report.unknown == 1
    assert delivery_of(sqlite_store, "facebook").status == DeliveryStatus.unknown
    assert send(sqlite_store, {"facebook": facebook}, now=NOW + timedelta(days=1)).sent == 0
    assert len(facebook.calls) == 1


def test_tokens_never_reach_the_stored_error(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    make_campaign(sqlite_store, settings)
    token = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"
    leak = Transient(
        f"POST https://api.telegram.org/bot{token}/sendMessage failed; graph ?access_token=EAAB123secret&x=1"
    )
    telegram = FakeChannel("telegram_channel", errors=[leak])

    send(sqlite_store, {"telegram_channel": telegram})

    error = delivery_of(sqlite_store, "telegram_channel").last_error or ""
    assert token not in error
    assert "EAAB123secret" not in error
    assert "bot***/sendMessage" in error
    assert "access_token=***&x=1" in error


def test_a_refused_page_token_pauses_only_that_target(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    channels_config = base_config()["channels"]
    channels_config["facebook"]["targets"] = [{"id": f"page-{n}", "languages": ["vi"]} for n in range(3)]
    settings = make_settings(channels=channels_config)
    make_campaign(sqlite_store, settings)
    expired = AuthFailed("Facebook error 190: Session has expired")
    facebook = FakeChannel("facebook", errors_for={"page-0": [expired]})

    report = send(sqlite_store, {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")})

    assert report.paused == {("facebook", "page-0"): "Facebook error 190: Session has expired"}
    assert sorted(m.target for m in facebook.calls) == ["page-0", "page-1", "page-2"]
    by_target = {d.target: d for d in deliveries(sqlite_store) if d.channel == "facebook"}
    assert (by_target["page-0"].status, by_target["page-0"].attempts) == (DeliveryStatus.pending, 0)
    assert by_target["page-0"].last_error == "Facebook error 190: Session has expired"
    assert by_target["page-1"].status == by_target["page-2"].status == DeliveryStatus.sent


# --- the long-running dispatcher (`outreach run`) ----------------------------


async def serve_until(dispatcher: Dispatcher, done: Callable[[], bool], poll: float = 0.05) -> None:
    """Run `serve` until `done()` holds (checked in a thread-free way each poll), at most 10 s."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.serve(stop, poll=poll))
    for _ in range(200):
        await asyncio.sleep(poll)
        if await asyncio.to_thread(done):
            break
    stop.set()
    await task


def all_sent(store: Store) -> Callable[[], bool]:
    return lambda: all(d.status is DeliveryStatus.sent for d in deliveries(store))


def test_serve_goes_on_after_a_database_error(
    sqlite_store: Store, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_campaign(sqlite_store, make_settings())
    real, failures = dispatch_store.due_keys, []

    def busy_once(store: Store, now: datetime) -> list[tuple[str, str, int]]:
        if not failures:
            failures.append(now)
            raise OperationalError("SELECT ...", {}, Exception("database is locked"))
        return real(store, now)

    monkeypatch.setattr(dispatch_store, "due_keys", busy_once)
    channels = {"facebook": FakeChannel("facebook"), "telegram_channel": FakeChannel("telegram_channel")}
    dispatcher = Dispatcher(sqlite_store, routing_for(sqlite_store, channels), clock=lambda: NOW)

    asyncio.run(serve_until(dispatcher, all_sent(sqlite_store)))

    assert failures
    assert all_sent(sqlite_store)()
    assert dispatcher.health == "ok"


def test_a_running_dispatcher_sees_channel_resume(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    from outreach.dispatch_store import pause, resume
    from outreach.lifecycle import Actor

    make_campaign(sqlite_store, make_settings())
    pause(sqlite_store, "facebook", EVERY_TARGET, "Facebook error 190", NOW, Actor("tester"))
    facebook = FakeChannel("facebook")
    channels = {"facebook": facebook, "telegram_channel": FakeChannel("telegram_channel")}
    dispatcher = Dispatcher(sqlite_store, routing_for(sqlite_store, channels), clock=lambda: NOW)
    resumed: list[int] = []

    def telegram_out_then_resume() -> bool:
        if delivery_of(sqlite_store, "telegram_channel").status is not DeliveryStatus.sent:
            return False
        if not resumed:  # staff fix the token and resume while the service runs
            assert facebook.calls == []
            resumed.append(resume(sqlite_store, "facebook", None, Actor("tester")))
        return all_sent(sqlite_store)()

    asyncio.run(serve_until(dispatcher, telegram_out_then_resume))

    assert resumed == [1]
    assert len(facebook.calls) == 1
    assert all_sent(sqlite_store)()


def test_an_outcome_the_database_refused_is_recorded_on_a_later_try(
    sqlite_store: Store, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_campaign(sqlite_store, make_settings())
    real, failures = dispatch_store.finish_many, []

    def busy_once(*args: object) -> list[DeliveryStatus]:
        if not failures:
            failures.append(args)
            raise OperationalError("UPDATE ...", {}, Exception("database is locked"))
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch_store, "finish_many", busy_once)
    monkeypatch.setattr(dispatch, "RECORD_RETRIES", (0.01,))
    report = send(
        sqlite_store, {"facebook": FakeChannel("facebook"), "telegram_channel": FakeChannel("telegram_channel")}
    )

    assert failures
    assert report.sent == 2
    assert all_sent(sqlite_store)()


def test_a_send_that_outlived_its_lease_is_settled_by_its_answer(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    from outreach.dispatch_store import Result, finish
    from outreach.lifecycle import Actor

    make_campaign(sqlite_store, make_settings())
    first = deliveries(sqlite_store)[0]
    set_state(sqlite_store, first.id, status=DeliveryStatus.unknown, last_error="interrupted (lease)")

    status = finish(sqlite_store, first.id, Result(DeliveryStatus.sent, platform_id="page_1"), NOW, Actor("tester"))

    done = deliveries(sqlite_store)[0]
    assert (status, done.status, done.platform_id, done.last_error) == (
        DeliveryStatus.sent,
        DeliveryStatus.sent,
        "page_1",
        None,
    )
