"""Campaigns over real ingested items: creation checks, queueing, the unique key, previews."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from channels import LIMITS
from outreach.campaigns import (
    PREVIEW_CODE,
    CampaignError,
    CampaignRequest,
    approve_campaign,
    create_campaign,
    preview_campaign,
)
from outreach.config import Settings
from outreach.db import Store
from outreach.ingest import poll_sources
from outreach.lifecycle import Actor, TransitionRefused
from outreach.links import short_url
from outreach.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Item, Link
from outreach.render import Renderer
from tests.conftest import FeedServer, base_config, rss, rss_item

VI_ITEMS = (
    rss_item(
        "vi-1",
        "Hướng dẫn hoàn thuế giá trị gia tăng cho doanh nghiệp",
        "<p>Doanh nghiệp nộp hồ sơ <b>hoàn thuế</b> trực tuyến.</p>",
    ),
    rss_item("vi-off", "Bài đăng lại từ báo khác", "Tin dẫn nguồn ngoài.", link="https://example.com/tin/1.html"),
)
EN_ITEMS = (rss_item("en-1", "Dung Quat Economic Zone welcomes new investors", "Investment incentives for 2027."),)


def ingest(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer, **changes: object
) -> Settings:
    """Serve a Vietnamese and an English feed, poll both into the store, return settings."""
    sources = [
        {"name": "portal-news", "url": feed_server.serve("/vi.rss", body=rss(*VI_ITEMS)), "language": "vi"},
        {
            "name": "portal-english",
            "url": feed_server.serve("/en.rss", body=rss(*EN_ITEMS)),
            "language": "en",
            "topics": ["investment"],
        },
    ]
    settings = make_settings(sources=sources, **changes)
    results = poll_sources(store, settings.schedule)
    assert [(r.source, r.new, r.error) for r in results] == [("portal-news", 2, None), ("portal-english", 1, None)]
    return settings


def item_id(store: Store, guid: str) -> int:
    with store.sessions() as session:
        found = session.scalar(select(Item.id).where(Item.guid == guid))
    assert found is not None
    return found


CREATOR, APPROVER = Actor("tester"), Actor("tester", "Approver")


def create(
    session: Session, settings: Settings, item: int, channels: Sequence[str] = (), force: bool = False
) -> Campaign:
    request = CampaignRequest(item_ids=(item,), channels=tuple(channels), force=force)
    return create_campaign(session, settings, Renderer(settings.schedule, LIMITS), request, CREATOR)


def new_campaign(store: Store, settings: Settings, guid: str, channels: tuple[str, ...] = ()) -> int:
    with store.sessions.begin() as session:
        return create(session, settings, item_id(store, guid), channels).id


def queue(store: Store, settings: Settings, campaign_id: int) -> list[tuple[str, str, str]]:
    """Approve the campaign (it is queued) and return (channel, target, link code) of what it added."""
    with store.sessions.begin() as session:
        created = approve_campaign(session, settings, Renderer(settings.schedule, LIMITS), campaign_id, APPROVER)
        return [(d.channel, d.target, d.link_code or "") for d in created]


# --- creating ----------------------------------------------------------------


def test_create_campaign_makes_a_draft_on_all_enabled_channels(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    campaign_id = new_campaign(store, settings, "vi-1")
    with store.sessions() as session:
        campaign = session.get_one(Campaign, campaign_id)
        assert campaign.status == CampaignStatus.draft
        assert campaign.channels == ["facebook", "telegram_channel", "telegram_bot"]
        assert campaign.language == "vi"
        assert campaign.title == "Hướng dẫn hoàn thuế giá trị gia tăng cho doanh nghiệp"
        assert campaign.created_by == "tester"
        assert campaign.item is not None
        assert campaign.item.guid == "vi-1"


def test_create_campaign_for_an_unknown_item(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    with store.sessions() as session, pytest.raises(CampaignError, match="no item with id 999999"):
        create(session, settings, 999_999)


def test_create_campaign_on_a_channel_not_enabled(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    channels = base_config()["channels"]
    channels["telegram_channel"]["enabled"] = False
    settings = ingest(store, make_settings, feed_server, channels=channels)
    with store.sessions() as session:
        with pytest.raises(
            CampaignError,
            match=r"channel\(s\) telegram_channel not enabled in .*schedules\.yaml \(enabled: facebook, telegram_bot\)",
        ):
            create(session, settings, item_id(store, "vi-1"), ["facebook", "telegram_channel"])
        with pytest.raises(CampaignError, match="zalo"):
            create(session, settings, item_id(store, "vi-1"), ["zalo"])
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_create_campaign_refuses_an_item_off_the_portal(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    off = item_id(store, "vi-off")
    with (
        store.sessions() as session,
        pytest.raises(CampaignError, match=rf"item {off}: example\.com is not in tracker\.allowed_domains"),
    ):
        create(session, settings, off)


# --- queueing ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("guid", "expected"),
    [
        ("vi-1", [("facebook", "quangngai.gov.vn"), ("telegram_channel", "@quangngai_doanhnghiep")]),
        ("en-1", [("facebook", "quangngai.gov.vn"), ("telegram_channel", "@quangngai_investors")]),
    ],
)
def test_queue_makes_one_delivery_per_target_taking_the_language(
    store: Store,
    make_settings: Callable[..., Settings],
    feed_server: FeedServer,
    guid: str,
    expected: list[tuple[str, str]],
) -> None:
    settings = ingest(store, make_settings, feed_server)
    campaign_id = new_campaign(store, settings, guid)
    created = queue(store, settings, campaign_id)
    assert [(channel, target) for channel, target, _ in created] == expected

    with store.sessions() as session:
        assert session.get_one(Campaign, campaign_id).status == CampaignStatus.scheduled
        item = session.get_one(Item, item_id(store, guid))
        deliveries = list(
            session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id).order_by(Delivery.channel))
        )
        assert [(d.channel, d.target) for d in deliveries] == expected
        codes = {d.link_code for d in deliveries}
        assert len(codes) == len(deliveries)  # each target has its own tracked link
        for delivery in deliveries:
            assert delivery.status == DeliveryStatus.pending
            assert delivery.language == item.language
            assert delivery.attempts == 0
            link = session.get_one(Link, delivery.link_code)
            assert (link.campaign_id, link.channel) == (campaign_id, delivery.channel)
            assert link.destination.startswith(item.url + "?")
            assert parse_qs(urlsplit(link.destination).query) == {
                "utm_source": [delivery.channel],
                "utm_medium": ["social"],
                "utm_campaign": [f"outreach-{campaign_id}"],
            }
            # The stored text carries this delivery's short link, not the article's URL.
            assert short_url(settings.schedule.tracker.public_url, link.code) in delivery.text
            assert item.url not in delivery.text
            assert item.title in delivery.text


def test_approving_twice_is_refused_and_adds_nothing(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    campaign_id = new_campaign(store, settings, "vi-1")
    first = queue(store, settings, campaign_id)
    assert len(first) == 2
    with pytest.raises(TransitionRefused, match=f"campaign {campaign_id} is scheduled: it cannot become approved"):
        queue(store, settings, campaign_id)
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
        assert session.scalar(select(func.count()).select_from(Link)) == 2
        assert set(session.scalars(select(Delivery.link_code))) == {code for _, _, code in first}


def test_database_rejects_a_second_copy_of_a_delivery(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    campaign_id = new_campaign(store, settings, "vi-1")
    queue(store, settings, campaign_id)

    with store.sessions() as session:
        session.add(
            Delivery(campaign_id=campaign_id, channel="facebook", target="quangngai.gov.vn", language="vi", text="copy")
        )
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        # The key is the triple: another target of the same campaign and channel is fine.
        session.add(
            Delivery(campaign_id=campaign_id, channel="facebook", target="another-page", language="vi", text="other")
        )
        session.commit()
    with store.sessions() as session:
        rows = session.execute(
            select(Delivery.target, Delivery.text).where(Delivery.channel == "facebook").order_by(Delivery.id)
        ).all()
        assert [target for target, _ in rows] == ["quangngai.gov.vn", "another-page"]
        assert rows[0].text != "copy"


def test_approval_refuses_a_cancelled_campaign(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    campaign_id = new_campaign(store, settings, "vi-1")
    with store.sessions.begin() as session:
        session.get_one(Campaign, campaign_id).status = CampaignStatus.cancelled
    with pytest.raises(TransitionRefused, match=f"campaign {campaign_id} is cancelled: it cannot become approved"):
        queue(store, settings, campaign_id)
    with pytest.raises(CampaignError, match="no campaign with id 424242"):
        queue(store, settings, 424_242)


def test_queue_fails_whole_when_a_channel_has_no_target_for_the_language(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    # The config changed between creating and queueing the campaign.
    campaign_id = new_campaign(store, ingest(store, make_settings, feed_server), "en-1")
    channels = base_config()["channels"]
    channels["telegram_channel"]["targets"] = [{"id": "@vi_only", "languages": ["vi"]}]
    changed = make_settings(channels=channels)
    with pytest.raises(CampaignError, match="telegram_channel has no target taking language 'en'"):
        queue(store, changed, campaign_id)
    with store.sessions() as session:  # the facebook delivery made before the error was rolled back
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert session.get_one(Campaign, campaign_id).status == CampaignStatus.draft


def test_create_refuses_a_channel_without_a_target_for_the_language(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    channels = base_config()["channels"]
    channels["telegram_channel"]["targets"] = [{"id": "@vi_only", "languages": ["vi"]}]
    settings = ingest(store, make_settings, feed_server, channels=channels)
    with (
        pytest.raises(CampaignError, match="channel telegram_channel has no target taking language 'en'"),
        store.sessions.begin() as session,
    ):
        create(session, settings, item_id(store, "en-1"))


def test_an_item_announced_on_a_channel_is_refused_again_unless_forced(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    first = new_campaign(store, settings, "vi-1", ("facebook",))
    with (
        pytest.raises(CampaignError, match=f"already has campaign {first} \\(draft\\) on facebook; use --force"),
        store.sessions.begin() as session,
    ):
        create(session, settings, item_id(store, "vi-1"))
    assert new_campaign(store, settings, "vi-1", ("telegram_channel",)) != first  # another channel is fine
    with store.sessions.begin() as session:
        again = create(session, settings, item_id(store, "vi-1"), ["facebook"], force=True)
        assert again.id not in (first,)
    with store.sessions.begin() as session:
        session.get_one(Campaign, first).status = CampaignStatus.cancelled
    # a cancelled campaign does not count; the forced one does
    with store.sessions.begin() as session, pytest.raises(CampaignError, match=f"already has campaign {again.id}"):
        create(session, settings, item_id(store, "vi-1"), ["facebook"])


# --- previewing --------------------------------------------------------------


def test_preview_renders_each_channel_with_a_placeholder_link(
    store: Store, make_settings: Callable[..., Settings], feed_server: FeedServer
) -> None:
    settings = ingest(store, make_settings, feed_server)
    campaign_id = new_campaign(store, settings, "vi-1")
    placeholder = short_url(settings.schedule.tracker.public_url, PREVIEW_CODE)
    with store.sessions() as session:
        previews = preview_campaign(
            session, settings, Renderer(settings.schedule, LIMITS), session.get_one(Campaign, campaign_id)
        )
    assert [(p.channel, p.targets) for p in previews] == [
        ("facebook", ["quangngai.gov.vn"]),
        ("telegram_channel", ["@quangngai_doanhnghiep"]),
        ("telegram_bot", ["subscribers"]),
    ]
    facebook, telegram, bot = previews
    assert f'<a href="{placeholder}">' in bot.text
    assert f"👉 Xem chi tiết: {placeholder}" in facebook.text
    assert f'<a href="{placeholder}">' in telegram.text
    assert "<b>Hướng dẫn hoàn thuế giá trị gia tăng cho doanh nghiệp</b>" in telegram.text
    assert "Thuế và cuộc sống" in facebook.text  # the keyword rules filed it under tax
    with store.sessions() as session:  # a preview stores nothing
        assert session.scalar(select(func.count()).select_from(Link)) == 0
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
