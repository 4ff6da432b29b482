"""Campaigns to subscribers: one delivery per subscriber, each with its own tracked links.

A channel whose audience is its subscribers (the Telegram bot) has no targets in
schedules.yaml: approving a campaign queues one delivery per active subscriber
who should get it. The text is rendered once per campaign (one language, one
template) with placeholder links, then each subscriber's own short links are put
in: 10,000 subscribers cost one render and two bulk INSERTs, not 10,000 renders.
Digest subscribers get one message a day listing the items approved for the
channel since their last digest (`daily_digest`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.lifecycle import Actor, move_campaign, note_campaign
from outreach.links import new_code, short_url, with_utm
from outreach.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryMode,
    Item,
    Link,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from outreach.render import Renderer
from outreach.subscribers import Recipient, recipients
from outreach.text import plural

log = logging.getLogger(__name__)
BULK = 2000  # rows per INSERT statement
PLACEHOLDER = "PH{:08d}"  # a code as long as a real one (the rendered length is the one sent), never a real one
NOT_SENT = (CampaignStatus.draft, CampaignStatus.rejected, CampaignStatus.cancelled)


def has_subscribers(settings: Settings, channel: str) -> bool:
    """True when a channel's audience is its subscribers rather than targets in schedules.yaml."""
    block = settings.schedule.channels.enabled().get(channel)
    return block is not None and block.audience == "subscribers"


def queue_subscribers(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    campaign: Campaign,
    channel: str,
    items: Sequence[Item],
    template: str,
) -> int:
    """One pending delivery per subscriber the campaign is for; returns how many.

    An item goes to subscribers in instant mode whose topics include one of the
    item's (digest subscribers get it in their daily digest); a staff message, a
    digest made by staff or a survey invitation goes to every active subscriber
    in the campaign's language.
    """
    from outreach.campaigns import context_for, destinations_of

    if campaign.kind is CampaignKind.item:
        audience = recipients(session, channel, campaign.language, items[0].topics, DeliveryMode.instant)
    else:
        audience = recipients(session, channel, campaign.language, None, mode=None)
    destinations = destinations_of(campaign, items)
    placeholders = [PLACEHOLDER.format(n) for n in range(len(destinations))]
    rendered = renderer.render(
        channel, template, context_for(settings, renderer, campaign, items, _urls(settings, placeholders))
    )
    image = items[0].image_url if rendered.photo and items else None
    utm = [with_utm(url, channel, settings.schedule.tracker.utm_medium, campaign.utm_campaign) for url in destinations]
    return _insert(session, campaign, channel, [(r, rendered.text, placeholders, utm) for r in audience], image)


def _urls(settings: Settings, codes: Sequence[str]) -> list[str]:
    """Short links for codes (a survey invitation has none: the template gets an empty link)."""
    return [short_url(settings.schedule.tracker.public_url, code) for code in codes] or [""]


Letter = tuple[Recipient, str, Sequence[str], Sequence[str]]  # to whom, text, placeholder codes, destinations


def _insert(session: Session, campaign: Campaign, channel: str, letters: Sequence[Letter], image: str | None) -> int:
    """Each recipient's links and delivery, in bulk: placeholders in the text become their own short links."""
    links: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    now = utcnow()
    for recipient, text, places, destinations in letters:
        codes = [new_code() for _ in destinations]
        own = text
        for place, code, destination in zip(places, codes, destinations, strict=True):
            own = own.replace(place, code)
            links.append(
                {
                    "code": code,
                    "destination": destination,
                    "campaign_id": campaign.id,
                    "channel": channel,
                    "subscriber_id": recipient.id,
                    "created_at": now,
                }
            )
        deliveries.append(
            {
                "campaign_id": campaign.id,
                "channel": channel,
                "target": recipient.chat_id,
                "language": recipient.language,
                "text": own,
                "image_url": image,
                "link_code": codes[0] if codes else None,
                "status": "pending",
                "attempts": 0,
                "created_at": now,
            }
        )
    for start in range(0, len(links), BULK):
        session.execute(insert(Link), links[start : start + BULK])
    for start in range(0, len(deliveries), BULK):
        session.execute(insert(Delivery), deliveries[start : start + BULK])
    return len(deliveries)


def daily_digest(
    session: Session, settings: Settings, renderer: Renderer, channel: str, now: datetime, actor: Actor, max_items: int
) -> list[int]:
    """Today's digests for a channel's digest subscribers: one campaign per language; their ids.

    Each subscriber gets the items approved for the channel since their last
    digest (at most a day back for a first one), on their topics, in their
    language. Running it twice in a day adds nothing: each subscriber's
    `digest_until` moves on in the same transaction.
    """
    from outreach.campaigns import context_for, template_for

    announced = session.execute(
        select(Campaign.item_id, Campaign.channels, Campaign.approved_at).where(
            Campaign.kind == CampaignKind.item,
            Campaign.item_id.is_not(None),
            Campaign.approved_at.is_not(None),
            Campaign.approved_at >= now - timedelta(days=7),
            Campaign.status.not_in(NOT_SENT),
        )
    ).all()
    approved: dict[int, datetime] = {}
    for item_id, channels, at in announced:
        if channel in channels and item_id is not None and at is not None:
            approved[item_id] = min(at, approved.get(item_id, at))
    if not approved:
        return []
    items = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(approved)))}
    readers = session.scalars(
        select(Subscriber).where(
            Subscriber.channel == channel,
            Subscriber.status == SubscriberStatus.active,
            Subscriber.mode == DeliveryMode.digest,
        )
    ).all()
    made: list[int] = []
    for language in ("vi", "en"):
        chosen: dict[int, list[Item]] = {}
        for reader in readers:
            if reader.language != language:
                continue
            since = reader.digest_until or now - timedelta(days=1)
            theirs = [
                item
                for item_id, at in sorted(approved.items(), key=lambda pair: pair[1], reverse=True)
                if since <= at < now
                and (item := items.get(item_id)) is not None
                and item.language == language
                and set(item.topics) & set(reader.topics)
            ][:max_items]
            reader.digest_until = now
            if theirs:
                chosen[reader.id] = theirs
        if not chosen:
            continue
        union = list({item.id: item for group in chosen.values() for item in group}.values())
        local = now.astimezone(settings.zone).strftime("%d/%m/%Y")
        campaign = Campaign(
            kind=CampaignKind.digest,
            item_ids=[item.id for item in union],
            title=f"{channel} digest {local} ({language})",
            channels=[channel],
            language=language,
            template="digest",
            rule=f"{channel}-digest",
            created_by=actor.login,
            created_as=actor.acting_as,
            scheduled_at=now,
        )
        session.add(campaign)
        session.flush()
        note_campaign(session, campaign, actor, "draft", f"created (daily digest of {channel})")
        move_campaign(
            session, campaign, CampaignStatus.approved, actor, "its items were approved in their own campaigns"
        )
        campaign.approved_by, campaign.approved_at = actor.login, now
        template = template_for(settings, campaign, channel)
        letters: list[Letter] = []
        for reader in readers:
            group = chosen.get(reader.id)
            if group is None:
                continue
            places = [PLACEHOLDER.format(n) for n in range(len(group))]
            text = renderer.render(
                channel, template, context_for(settings, renderer, campaign, group, _urls(settings, places))
            ).text
            utm = [
                with_utm(item.url, channel, settings.schedule.tracker.utm_medium, campaign.utm_campaign)
                for item in group
            ]
            recipient = Recipient(reader.id, reader.chat_id, reader.language, tuple(reader.topics))
            letters.append((recipient, text, places, utm))
        count = _insert(session, campaign, channel, letters, None)
        move_campaign(
            session, campaign, CampaignStatus.scheduled, actor, plural(count, "delivery", "deliveries") + " queued"
        )
        made.append(campaign.id)
    return made
