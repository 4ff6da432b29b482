"""Rules in schedules.yaml: new items become campaigns by themselves, once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import select

from channels import LIMITS
from outreach.config import Settings
from outreach.db import Store
from outreach.lifecycle import Actor
from outreach.models import Campaign, CampaignStatus
from outreach.render import Renderer
from outreach.rules import apply_rules
from tests.test_lifecycle import create, stored_item

NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # a day after the stored items' publication


def apply(store: Store, settings: Settings) -> tuple[list[int], list[int], list[str]]:
    report = apply_rules(store, settings, Renderer(settings.schedule, LIMITS), NOW, Actor("runner"))
    return report.drafts, report.scheduled, report.refused


def campaigns(store: Store) -> list[tuple[str | None, CampaignStatus, list[str]]]:
    with store.sessions() as session:
        rows = session.execute(select(Campaign.rule, Campaign.status, Campaign.channels).order_by(Campaign.id))
        return [(rule, status, channels) for rule, status, channels in rows]


def test_two_rules_on_one_channel_announce_an_item_once_and_say_nothing_more(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(
        rules=[
            {"name": "tax-news", "topics": ["tax"], "channels": ["facebook"], "approved": True},
            {"name": "everything", "channels": ["facebook", "telegram_channel"]},
        ]
    )
    stored_item(store, "thue-1")

    drafts, scheduled, refused = apply(store, settings)

    assert (len(drafts), len(scheduled), refused) == (0, 1, [])
    assert campaigns(store) == [("tax-news", CampaignStatus.scheduled, ["facebook"])]
    assert apply(store, settings) == ([], [], [])  # the next poll: nothing new, nothing refused


def test_an_item_staff_announced_by_hand_is_left_to_them(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(rules=[{"name": "tax-news", "topics": ["tax"], "channels": ["telegram_channel"]}])
    create(sqlite_store, settings, "thue-1", channels=("facebook",))
    assert apply(sqlite_store, settings) == ([], [], [])
    assert [rule for rule, _, _ in campaigns(sqlite_store)] == [None]
