"""Campaigns: what to announce where; queueing turns one into deliveries.

Queueing renders each target's text with its own tracked link and stores it, so
what goes out is exactly what was previewed and approved, and a crash after
queueing loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.links import check_destination, new_code, short_url, with_utm
from outreach.models import Campaign, CampaignStatus, Delivery, Item, Link, utcnow
from outreach.render import CampaignView, ItemView, PostContext, Renderer

PREVIEW_CODE = "PREVIEWxx"


class CampaignError(Exception):
    """A campaign cannot be made or queued as asked; the message says why."""


@dataclass(frozen=True)
class Preview:
    """One channel's rendered text for a target language."""

    channel: str
    targets: list[str]
    text: str


def create_campaign(
    session: Session,
    settings: Settings,
    item_id: int,
    created_by: str,
    channels: Sequence[str] = (),
    template: str | None = None,
    force: bool = False,
    renderer: Renderer | None = None,
) -> Campaign:
    """A draft campaign announcing one item on the given (default: all enabled) channels.

    An item already announced on a channel is refused unless `force`: the same
    news twice on a government page looks like a mistake, because it usually is.
    With a `renderer`, each channel's template is loaded now (UnknownTemplate,
    RenderError), so a typo is found by whoever creates the campaign.
    """
    item = session.get(Item, item_id)
    if item is None:
        raise CampaignError(f"no item with id {item_id} (see `outreach items list`)")
    enabled = settings.schedule.channels.enabled()
    chosen = list(dict.fromkeys(channels)) or list(enabled)
    unknown = [c for c in chosen if c not in enabled]
    if unknown:
        raise CampaignError(
            f"channel(s) {', '.join(unknown)} not enabled in {settings.config_path} (enabled: {', '.join(enabled) or 'none'})"
        )
    if not chosen:
        raise CampaignError(f"no channel is enabled in {settings.config_path}")
    try:
        check_destination(item.url, settings.schedule.tracker.allowed_domains)
    except ValueError as exc:
        raise CampaignError(f"item {item_id}: {exc}") from None
    for channel in chosen:
        if not _targets(settings, item.language, channel):
            raise CampaignError(
                f"channel {channel} has no target taking language {item.language!r} in {settings.config_path}"
            )
    if renderer is not None:
        for channel in chosen:
            renderer.template(channel, template or enabled[channel].template, item.language)
    if not force:
        _refuse_repeat(session, item, chosen)
    campaign = Campaign(
        item_id=item.id,
        title=item.title,
        channels=chosen,
        language=item.language,
        template=template or "",
        created_by=created_by,
    )
    session.add(campaign)
    session.flush()
    return campaign


def _refuse_repeat(session: Session, item: Item, channels: list[str]) -> None:
    earlier = session.scalars(
        select(Campaign).where(Campaign.item_id == item.id, Campaign.status != CampaignStatus.cancelled)
    )
    for campaign in earlier:
        overlap = [c for c in channels if c in campaign.channels]
        if overlap:
            raise CampaignError(
                f"item {item.id} already has campaign {campaign.id} ({campaign.status.value}) on {', '.join(overlap)}; "
                "use --force to announce it again"
            )


def _targets(settings: Settings, language: str, channel: str) -> list[str]:
    """Targets of a channel that take a language."""
    configured = settings.schedule.channels.enabled().get(channel)
    if configured is None:
        return []
    return [t.id for t in configured.targets if language in t.languages]


def _template(settings: Settings, campaign: Campaign, channel: str) -> str:
    configured = settings.schedule.channels.enabled()[channel]
    return campaign.template or configured.template


def _context(settings: Settings, renderer: Renderer, campaign: Campaign, link: str) -> PostContext:
    item = campaign.item
    if item is None:  # pragma: no cover - staff messages and digests come later
        raise CampaignError(f"campaign {campaign.id} has no item")
    view = ItemView(
        title=item.title,
        summary=item.summary,
        url=item.url,
        image_url=item.image_url,
        published=item.published_at.astimezone(settings.zone),
        language=item.language,
    )
    return PostContext(
        item=view,
        topics=renderer.topic_views(item.topics, campaign.language),
        link=link,
        campaign=CampaignView(campaign.id, campaign.title, campaign.utm_campaign),
        language=campaign.language,
    )


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign with this id, or a CampaignError saying there is none."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign with id {campaign_id} (see `outreach campaign list`)")
    return campaign


def preview_campaign(settings: Settings, renderer: Renderer, campaign: Campaign) -> list[Preview]:
    """Each channel's text as it would be queued, with a placeholder link code."""
    link = short_url(settings.schedule.tracker.public_url, PREVIEW_CODE)
    context = _context(settings, renderer, campaign, link)
    return [
        Preview(
            channel,
            _targets(settings, campaign.language, channel),
            renderer.render(channel, _template(settings, campaign, channel), context).text,
        )
        for channel in campaign.channels
    ]


def queue_campaign(session: Session, settings: Settings, renderer: Renderer, campaign_id: int) -> list[Delivery]:
    """Create one pending delivery (with its own tracked link) per channel target.

    Running it again adds only what is missing; the unique key on
    (campaign, channel, target) is the final guard against a second copy.
    """
    campaign = get_campaign(session, campaign_id)
    if campaign.status in (CampaignStatus.cancelled, CampaignStatus.done, CampaignStatus.done_with_errors):
        raise CampaignError(f"campaign {campaign_id} is {campaign.status.value}: nothing to queue")
    item = campaign.item
    if item is None:  # pragma: no cover - staff messages and digests come later
        raise CampaignError(f"campaign {campaign.id} has no item")
    tracker = settings.schedule.tracker
    existing = {
        (channel, target)
        for channel, target in session.execute(
            select(Delivery.channel, Delivery.target).where(Delivery.campaign_id == campaign.id)
        )
    }
    created: list[Delivery] = []
    for channel in campaign.channels:
        targets = _targets(settings, campaign.language, channel)
        if not targets:
            raise CampaignError(f"channel {channel} has no target taking language {campaign.language!r}")
        for target in targets:
            if (channel, target) in existing:
                continue
            destination = with_utm(item.url, channel, tracker.utm_medium, campaign.utm_campaign)
            check_destination(destination, tracker.allowed_domains)
            link = Link(code=new_code(), destination=destination, campaign_id=campaign.id, channel=channel)
            rendered = renderer.render(
                channel,
                _template(settings, campaign, channel),
                _context(settings, renderer, campaign, short_url(tracker.public_url, link.code)),
            )
            delivery = Delivery(
                campaign_id=campaign.id,
                channel=channel,
                target=target,
                language=campaign.language,
                text=rendered.text,
                image_url=item.image_url if rendered.photo else None,
                link=link,
            )
            session.add(delivery)
            created.append(delivery)
    try:
        session.flush()
    except IntegrityError as exc:
        raise CampaignError(f"campaign {campaign_id} was queued concurrently by someone else: {exc.orig}") from None
    if campaign.status == CampaignStatus.draft:
        # Until approval and the scheduler land, queueing means "due now".
        campaign.status, campaign.scheduled_at = CampaignStatus.scheduled, utcnow()
    return created


def list_campaigns(session: Session, limit: int = 50) -> list[Campaign]:
    """The newest campaigns first."""
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))
