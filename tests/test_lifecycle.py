"""The campaign lifecycle: allowed moves only, audited; two-person approval; cancel; windows and pacing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from channels import LIMITS
from outreach.campaign_view import explain
from outreach.campaigns import (
    CampaignError,
    CampaignRequest,
    approve_campaign,
    cancel_campaign,
    create_campaign,
    reject_campaign,
    settle_delivery,
)
from outreach.channel import Rate
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch import SendReport, plan_for, send_pending
from outreach.lifecycle import CAMPAIGN_MOVES, DELIVERY_MOVES, Actor, TransitionRefused, move_campaign, move_delivery
from outreach.models import AuditEntry, Campaign, CampaignStatus, Delivery, DeliveryStatus, Item, Source
from outreach.render import Renderer
from outreach.routing import Route, Routing
from tests.conftest import base_config
from tests.test_dispatch import FakeChannel

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
CREATOR, APPROVER = Actor("tester"), Actor("tester", "Approver")
WORKING_HOURS = ["Mon-Fri 07:30-11:30, 13:30-17:00"]


def local(*parts: int) -> datetime:
    """A moment in Quảng Ngãi's time, as the dispatcher's clock gives it (UTC)."""
    return datetime(*parts, tzinfo=ZONE).astimezone(UTC)  # type: ignore[misc]


def stored_item(store: Store, guid: str) -> int:
    """One portal item in the store (no feed needed): its id."""
    with store.sessions.begin() as session:
        source = session.scalar(select(Source).where(Source.name == "portal")) or Source(
            name="portal", url="https://quangngai.gov.vn/rss/tin-tuc.rss", language="vi"
        )
        item = Item(
            source=source,
            guid=guid,
            url=f"https://quangngai.gov.vn/tin-tuc/{guid}.html",
            title=f"Thông báo {guid} về hóa đơn điện tử",
            summary="Doanh nghiệp nộp hồ sơ trực tuyến.",
            published_at=datetime(2026, 11, 27, tzinfo=UTC),
            language="vi",
            topics=["tax"],
        )
        session.add(item)
        session.flush()
        return item.id


def create(
    store: Store, settings: Settings, guid: str, channels: tuple[str, ...] = (), at: datetime | None = None
) -> int:
    """A draft campaign for a new item, made by CREATOR: its id."""
    item = stored_item(store, guid)
    with store.sessions.begin() as session:
        request = CampaignRequest(item_ids=(item,), channels=channels, at=at)
        return create_campaign(session, settings, Renderer(settings.schedule, LIMITS), request, CREATOR).id


def approve(store: Store, settings: Settings, campaign_id: int, actor: Actor = APPROVER) -> int:
    """Approve a campaign: how many deliveries it queued."""
    with store.sessions.begin() as session:
        renderer = Renderer(settings.schedule, LIMITS)
        return len(approve_campaign(session, settings, renderer, campaign_id, actor))


def status_of(store: Store, campaign_id: int) -> CampaignStatus:
    with store.sessions() as session:
        return session.get_one(Campaign, campaign_id).status


def delivery_states(store: Store, campaign_id: int) -> list[DeliveryStatus]:
    with store.sessions() as session:
        query = select(Delivery.status).where(Delivery.campaign_id == campaign_id).order_by(Delivery.id)
        return list(session.scalars(query))


def audit_trail(store: Store, campaign_id: int) -> list[tuple[str | None, str, str, str | None, str | None]]:
    """(from, to, login, --as name, note) of a campaign's own audit rows, oldest first."""
    with store.sessions() as session:
        rows = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity == "campaign", AuditEntry.campaign_id == campaign_id)
            .order_by(AuditEntry.id)
        )
        return [(r.from_state, r.to_state, r.actor, r.acting_as, r.note) for r in rows]


def audit_count(store: Store) -> int:
    with store.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def routing(store: Store, settings: Settings, transport: FakeChannel, rate: Rate | None = None) -> Routing:
    """Every configured target of the transport's channel routed to it, as to a platform at `rate`."""
    block = settings.schedule.channels.enabled()[transport.name]
    routes = {
        (transport.name, target.id): Route(transport.name, target.id, transport, "test", to_platform=True)
        for target in block.targets
    }
    rates = {transport.name: rate} if rate else {}
    return Routing(routes=routes, markups={name: limits.markup for name, limits in LIMITS.items()}, rates=rates)


def send(
    store: Store, settings: Settings, transport: FakeChannel, now: datetime, rate: Rate | None = None
) -> SendReport:
    return asyncio.run(
        send_pending(store, routing(store, settings, transport, rate), now=lambda: now, plan=plan_for(settings))
    )


def paced(**pacing: object) -> dict[str, object]:
    """The repo's channels with Facebook paced as given (Telegram off: one target, one worker)."""
    channels = base_config()["channels"]
    channels["facebook"].update(pacing)
    channels["telegram_channel"]["enabled"] = False
    return channels


# --- two-person approval -----------------------------------------------------


def test_the_creator_cannot_approve_their_own_campaign_and_the_refusal_is_audited(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    campaign_id = create(store, settings, "thue-1")

    with pytest.raises(CampaignError, match="created by tester: someone else must approve it"):
        approve(store, settings, campaign_id, Actor("tester"))
    with pytest.raises(CampaignError, match="someone else must approve"):  # the same name on another login
        approve(store, settings, campaign_id, Actor("someone", "tester"))

    assert status_of(store, campaign_id) is CampaignStatus.draft
    assert delivery_states(store, campaign_id) == []
    assert approve(store, settings, campaign_id, APPROVER) == 2
    assert status_of(store, campaign_id) is CampaignStatus.scheduled
    assert audit_trail(store, campaign_id) == [
        (None, "draft", "tester", None, "created (item)"),
        (None, "approval refused", "tester", None, "own campaign"),
        (None, "approval refused", "someone", "tester", "own campaign"),
        ("draft", "approved", "tester", "Approver", None),
        ("approved", "scheduled", "tester", "Approver", "2 deliveries queued"),
    ]
    with store.sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert (campaign.created_by, campaign.approved_by, campaign.approved_as) == ("tester", "tester", "Approver")


def test_without_required_approval_a_campaign_is_scheduled_at_once_and_says_why(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(require_approval=False)
    campaign_id = create(sqlite_store, settings, "thue-1")
    assert status_of(sqlite_store, campaign_id) is CampaignStatus.scheduled
    assert audit_trail(sqlite_store, campaign_id)[1] == (
        "draft",
        "approved",
        "tester",
        None,
        "approval not required (schedules.yaml)",
    )


# --- only allowed moves ------------------------------------------------------


def test_an_illegal_transition_is_refused_and_changes_nothing(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    campaign_id = create(store, settings, "thue-1")
    approve(store, settings, campaign_id)
    before = (status_of(store, campaign_id), delivery_states(store, campaign_id), audit_count(store))

    with store.sessions() as session:
        first_id = session.scalars(select(Delivery.id).where(Delivery.campaign_id == campaign_id)).first()
        assert first_id is not None
    with (
        store.sessions.begin() as session,
        pytest.raises(TransitionRefused, match=r"is scheduled: it cannot become rejected"),
    ):
        reject_campaign(session, campaign_id, APPROVER, "too late")
    with (
        store.sessions.begin() as session,
        pytest.raises(TransitionRefused, match=r"is pending: it cannot become sent"),
    ):
        move_delivery(session, session.get_one(Delivery, first_id), DeliveryStatus.sent, APPROVER)
    with (
        store.sessions.begin() as session,
        pytest.raises(CampaignError, match=r"is pending, not unknown: nothing to settle"),
    ):
        settle_delivery(session, campaign_id, first_id, True, APPROVER)

    assert (status_of(store, campaign_id), delivery_states(store, campaign_id), audit_count(store)) == before


def test_every_move_outside_the_tables_is_refused(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = create(sqlite_store, settings, "thue-1")
    approve(sqlite_store, settings, campaign_id)
    refused = 0
    with sqlite_store.sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        delivery = session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id)).first()
        assert delivery is not None
        for old, allowed in CAMPAIGN_MOVES.items():
            for new in set(CampaignStatus) - allowed:
                campaign.status = old
                with pytest.raises(TransitionRefused, match=f"is {old.value}: it cannot become {new.value}"):
                    move_campaign(session, campaign, new, APPROVER)
                assert campaign.status is old
                refused += 1
        for old_d, allowed_d in DELIVERY_MOVES.items():
            for new_d in set(DeliveryStatus) - allowed_d:
                delivery.status = old_d
                with pytest.raises(TransitionRefused):
                    move_delivery(session, delivery, new_d, APPROVER)
                assert delivery.status is old_d
                refused += 1
        session.rollback()
    assert refused > 60
    assert audit_count(sqlite_store) == len(audit_trail(sqlite_store, campaign_id))  # no delivery rows written


def test_a_final_campaign_cannot_be_cancelled(sqlite_store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = create(sqlite_store, settings, "thue-1")
    with sqlite_store.sessions.begin() as session:
        reject_campaign(session, campaign_id, APPROVER, "sai số liệu")
    final = r"is rejected: it cannot become cancelled \(allowed: nothing: it is final\)"
    with sqlite_store.sessions.begin() as session, pytest.raises(TransitionRefused, match=final):
        cancel_campaign(session, campaign_id, APPROVER)
    assert audit_trail(sqlite_store, campaign_id)[-1] == ("draft", "rejected", "tester", "Approver", "sai số liệu")


# --- cancelling --------------------------------------------------------------


def test_cancel_before_sending_sends_nothing(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    campaign_id = create(store, settings, "thue-1", channels=("telegram_channel",))
    approve(store, settings, campaign_id)
    with store.sessions.begin() as session:
        assert cancel_campaign(session, campaign_id, APPROVER, "wrong date") == 1

    telegram = FakeChannel("telegram_channel")
    report = send(store, settings, telegram, datetime.now(UTC))

    assert telegram.calls == []
    assert report.sent == 0
    assert delivery_states(store, campaign_id) == [DeliveryStatus.skipped]
    assert status_of(store, campaign_id) is CampaignStatus.cancelled
    assert audit_trail(store, campaign_id)[-1] == ("scheduled", "cancelled", "tester", "Approver", "wrong date")


class CancelsOnFirstSend(FakeChannel):
    """A platform that takes its time; the operator cancels while the first post is on its way."""

    def __init__(self, store: Store, campaign_id: int) -> None:
        super().__init__("telegram_channel")
        self.store, self.campaign_id = store, campaign_id

    async def send(self, message):  # type: ignore[no-untyped-def]
        if not self.calls:
            await asyncio.to_thread(self._cancel)
        return await super().send(message)

    def _cancel(self) -> None:
        with self.store.sessions.begin() as session:
            cancel_campaign(session, self.campaign_id, APPROVER, "stop: wrong date")


def test_cancel_during_sending_stops_everything_not_yet_sent(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    channels = base_config()["channels"]
    channels["telegram_channel"]["targets"] = [{"id": f"@qn_group_{n}", "languages": ["vi"]} for n in range(8)]
    settings = make_settings(channels=channels)
    campaign_id = create(store, settings, "thue-1", channels=("telegram_channel",))
    assert approve(store, settings, campaign_id) == 8
    telegram = CancelsOnFirstSend(store, campaign_id)

    report = send(store, settings, telegram, datetime.now(UTC), rate=Rate(per_second=4))

    assert len(telegram.calls) == 1  # the post on its way when staff cancelled; nothing after it
    assert (report.sent, report.skipped) == (1, 0)
    states = delivery_states(store, campaign_id)
    assert sorted(states) == sorted([DeliveryStatus.sent] + [DeliveryStatus.skipped] * 7)
    assert status_of(store, campaign_id) is CampaignStatus.cancelled


# --- posting windows, holidays, caps and gaps --------------------------------


def test_a_campaign_due_in_the_evening_waits_for_the_next_morning(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(channels=paced(windows=WORKING_HOURS))
    campaign_id = create(sqlite_store, settings, "thue-1", at=local(2027, 3, 9, 18, 0))  # a Tuesday
    approve(sqlite_store, settings, campaign_id)
    facebook = FakeChannel("facebook")

    report = send(sqlite_store, settings, facebook, local(2027, 3, 9, 18, 0))

    assert facebook.calls == []
    verdict = report.deferred[("facebook", "quangngai.gov.vn")]
    assert verdict.when == local(2027, 3, 10, 7, 30)
    assert send(sqlite_store, settings, facebook, local(2027, 3, 10, 7, 30)).sent == 1


def test_a_campaign_due_on_the_eve_of_tet_waits_until_after_the_holiday(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(channels=paced(windows=WORKING_HOURS, skip_holidays=True))
    due = local(2027, 2, 3, 18, 0)  # Wednesday; Tết (lunar new year) is off from Thursday 4 to Wednesday 10
    campaign_id = create(store, settings, "tet-1", at=due)
    approve(store, settings, campaign_id)
    facebook = FakeChannel("facebook")

    report = send(store, settings, facebook, due)

    assert facebook.calls == []
    verdict = report.deferred[("facebook", "quangngai.gov.vn")]
    assert verdict.when == local(2027, 2, 11, 7, 30)
    assert "Lunar New Year" in verdict.why
    with store.sessions() as session:
        shown = explain(
            session, settings, plan_for(settings), routing(store, settings, facebook).routes, campaign_id, now=due
        )
    assert shown.next_steps == [f"facebook → quangngai.gov.vn: {verdict.why}"]
    assert "Thu 11/02 07:30" in verdict.why
    with store.sessions() as session:  # the day before, it says both: the time asked for, and the wait after it
        earlier = explain(
            session,
            settings,
            plan_for(settings),
            routing(store, settings, facebook).routes,
            campaign_id,
            now=due - timedelta(days=1),
        )
    assert earlier.next_steps == [f"facebook → quangngai.gov.vn: due Wed 03/02 18:00 (--at), then waits: {verdict.why}"]

    assert send(store, settings, facebook, local(2027, 2, 8, 9, 0)).sent == 0  # a Monday, but still Tết
    assert send(store, settings, facebook, local(2027, 2, 11, 7, 30)).sent == 1
    assert status_of(store, campaign_id) is CampaignStatus.done


def test_extra_days_off_from_the_config_are_skipped(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        channels=paced(windows=WORKING_HOURS, skip_holidays=True),
        holidays={"extra": ["2027-03-10"]},  # a provincial day off
    )
    campaign_id = create(sqlite_store, settings, "thue-1", at=local(2027, 3, 9, 18, 0))
    approve(sqlite_store, settings, campaign_id)
    report = send(sqlite_store, settings, FakeChannel("facebook"), local(2027, 3, 9, 18, 0))
    assert report.deferred[("facebook", "quangngai.gov.vn")].when == local(2027, 3, 11, 7, 30)


def test_daily_cap_and_minimum_gap_are_honoured(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(channels=paced(windows=WORKING_HOURS, max_per_day=2, min_gap_minutes=30))
    campaigns = [create(store, settings, f"thue-{n}") for n in range(3)]
    for campaign_id in campaigns:
        approve(store, settings, campaign_id)
    facebook = FakeChannel("facebook")
    target = ("facebook", "quangngai.gov.vn")
    monday = local(2027, 3, 8, 9, 0)

    first = send(store, settings, facebook, monday)
    assert first.sent == 1
    assert first.deferred[target].when == monday + timedelta(minutes=30)  # the gap

    assert send(store, settings, facebook, monday + timedelta(minutes=29)).sent == 0
    assert send(store, settings, facebook, monday + timedelta(minutes=30)).sent == 1
    capped = send(store, settings, facebook, monday + timedelta(hours=2))
    assert capped.sent == 0
    assert capped.deferred[target].when == local(2027, 3, 9, 7, 30)  # two today: tomorrow's first window

    assert send(store, settings, facebook, local(2027, 3, 9, 7, 30)).sent == 1
    assert len(facebook.calls) == 3
    assert [status_of(store, c) for c in campaigns] == [CampaignStatus.done] * 3
