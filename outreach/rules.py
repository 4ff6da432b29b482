"""Rules in schedules.yaml turn new portal items into campaigns by themselves.

A rule matches items by topic, source and language; each match becomes a
campaign made by the rule: a draft for staff to approve, or approved by the
rule itself when it says `approved: true` (the config's author vouches). The
database's unique key on (rule, item) means a re-polled or edited item never
makes a second campaign, even with two runners at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.campaigns import CampaignError, CampaignRequest, create_campaign
from outreach.config import Rule, Settings
from outreach.db import Store
from outreach.lifecycle import Actor
from outreach.models import Campaign, CampaignKind, CampaignStatus, Item, Source
from outreach.render import Renderer, RenderError

log = logging.getLogger(__name__)


@dataclass
class RulesReport:
    """What one pass of the rules made, and what it could not (with the reason)."""

    drafts: list[int] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _matches(rule: Rule, item: Item, source: str) -> bool:
    if rule.language and item.language != rule.language:
        return False
    if rule.sources and source not in rule.sources:
        return False
    return not rule.topics or bool(set(rule.topics) & set(item.topics))


def apply_rules(store: Store, settings: Settings, renderer: Renderer, now: datetime, actor: Actor) -> RulesReport:
    """Make the campaigns the rules ask for, for items no rule has announced yet (one transaction each)."""
    report = RulesReport()
    rules = settings.schedule.rules
    if not rules:
        return report
    oldest = now - timedelta(days=max(rule.max_age_days for rule in rules))
    with store.sessions() as session:
        candidates = list(
            session.execute(
                select(Item, Source.name).join(Source, Source.id == Item.source_id).where(Item.published_at >= oldest)
            ).all()
        )
        made = session.execute(select(Campaign.rule, Campaign.item_id).where(Campaign.rule.is_not(None)))
        done = {(rule_name, item_id) for rule_name, item_id in made}
        # An item staff already announced by hand is theirs: no rule adds to it. One another rule announced on a
        # channel is not announced there again (`create_campaign` would refuse it at every poll).
        by_hand: set[int] = set()
        announced: dict[int, set[str]] = {}
        for rule_name, item_id, channels in session.execute(
            select(Campaign.rule, Campaign.item_id, Campaign.channels).where(
                Campaign.item_id.is_not(None),
                Campaign.status.not_in([CampaignStatus.cancelled, CampaignStatus.rejected]),
            )
        ):
            if item_id is None:
                continue
            if rule_name is None:
                by_hand.add(item_id)
            announced.setdefault(item_id, set()).update(channels)
    enabled = list(settings.schedule.channels.enabled())
    for rule in rules:
        young = now - timedelta(days=rule.max_age_days)
        wanted = set(rule.channels or enabled)
        for item, source in candidates:
            if (rule.name, item.id) in done or item.id in by_hand or wanted & announced.get(item.id, set()):
                continue
            if item.published_at < young or not _matches(rule, item, source):
                continue
            with store.sessions() as session, session.begin():
                _make(session, settings, renderer, rule, item.id, actor, report)
            announced.setdefault(item.id, set()).update(wanted)
    return report


def _make(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    rule: Rule,
    item_id: int,
    actor: Actor,
    report: RulesReport,
) -> None:
    request = CampaignRequest(
        kind=CampaignKind.item,
        item_ids=(item_id,),
        channels=tuple(rule.channels),
        template=rule.template,
        rule=rule.name,
    )
    try:
        vouched = f"approved by rule {rule.name}" if rule.approved else None
        campaign = create_campaign(session, settings, renderer, request, actor, vouched)
    except (CampaignError, RenderError) as exc:
        session.rollback()
        report.refused.append(f"rule {rule.name}, item {item_id}: {exc}")
        log.warning("rule %s, item %s: %s", rule.name, item_id, exc)
        return
    (report.scheduled if campaign.status.value != "draft" else report.drafts).append(campaign.id)
