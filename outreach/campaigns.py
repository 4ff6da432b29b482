"""Campaigns: what to announce where, who approved it, and turning it into deliveries.

A campaign announces one item, several items as a digest, or a message staff
wrote. It is created as a draft; a second person approves it (two-person rule,
`require_approval`), and approval renders each target's text with its own
tracked links and stores it, so what goes out is exactly what was approved, and
a crash after approval loses nothing. Every state change goes through
`outreach.lifecycle`, which audits it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outreach.broadcast import has_subscribers, queue_subscribers
from outreach.config import Settings
from outreach.lifecycle import (
    OPEN_CAMPAIGNS,
    Actor,
    move_campaign,
    move_campaigns,
    move_deliveries,
    move_delivery,
    note_campaign,
)
from outreach.links import check_destination, new_code, short_url, with_utm
from outreach.models import (
    FINAL_DELIVERY,
    Campaign,
    CampaignKind,
    CampaignStatus,
    Delivery,
    DeliveryStatus,
    Item,
    Link,
    utcnow,
)
from outreach.render import CampaignView, DigestEntry, ItemView, PostContext, Renderer
from outreach.text import plural

PREVIEW_CODE = "PREVIEWxx"
DEFAULT_TEMPLATE = {CampaignKind.digest: "digest", CampaignKind.message: "message", CampaignKind.survey: "survey"}
LANGUAGES = ("vi", "en")
TITLE_LENGTH = 120
SUBSCRIBERS = "subscribers"  # what a channel of subscribers shows as its target


class CampaignError(Exception):
    """A campaign cannot be made, approved or changed as asked; the message says why."""


@dataclass(frozen=True)
class CampaignRequest:
    """What staff (or a rule) ask for; `create_campaign` checks it all before anything is stored."""

    kind: CampaignKind = CampaignKind.item
    item_ids: tuple[int, ...] = ()
    message: str | None = None  # a staff message's text
    url: str | None = None  # the portal page a staff message links to
    channels: tuple[str, ...] = ()  # default: every enabled channel
    language: str | None = None  # a staff message's language (items bring their own)
    template: str | None = None
    at: datetime | None = None  # not before (aware); default: as soon as approved
    rule: str | None = None  # the rule that asks, if any
    force: bool = False  # announce an item again on a channel it was announced on
    survey_id: int | None = None  # a survey invitation's survey
    title: str | None = None  # a survey invitation's title (its survey's, in the campaign's language)


@dataclass(frozen=True)
class Preview:
    """One channel's rendered text for a target language."""

    channel: str
    targets: list[str]
    text: str


def create_campaign(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    request: CampaignRequest,
    actor: Actor,
    vouched: str | None = None,
) -> Campaign:
    """A draft campaign, checked (items, channels, targets, templates) and audited.

    Without `require_approval`, or with `vouched` (what stands in for the second
    person: a rule or digest set to `approved: true`), it is approved and scheduled at once. An item
    already announced on a channel is refused unless `force`: the same news twice
    on a government page looks like a mistake, because it usually is.
    """
    items = _items(session, request)
    language = _language(request, items)
    chosen = _channels(settings, request.channels, language)
    if request.kind is CampaignKind.survey:
        if request.survey_id is None:
            raise CampaignError("a survey invitation needs its survey")
        not_for_subscribers = [c for c in chosen if not has_subscribers(settings, c)]
        if not_for_subscribers:
            raise CampaignError(
                f"a survey is answered in the bot: {', '.join(not_for_subscribers)} cannot take one "
                "(choose a channel with subscribers)"
            )
    if request.kind is CampaignKind.message:
        if not request.message or not request.url:
            raise CampaignError("a staff message needs its text (--message-file) and a portal page (--url)")
        _allowed(settings, request.url, "--url")
    for item in items:
        _allowed(settings, item.url, f"item {item.id}")
    if request.kind is CampaignKind.item and not request.force:
        _refuse_repeat(session, items[0], chosen)
    campaign = Campaign(
        kind=request.kind,
        item_id=items[0].id if request.kind is CampaignKind.item else None,
        item_ids=[item.id for item in items],
        body=unicodedata.normalize("NFC", request.message.strip()) if request.message else None,
        url=request.url,
        rule=request.rule,
        survey_id=request.survey_id,
        title=_title(request, items),
        channels=chosen,
        language=language,
        template=request.template or "",
        scheduled_at=request.at,
        created_by=actor.login,
        created_as=actor.acting_as,
    )
    session.add(campaign)
    try:
        session.flush()
    except IntegrityError:
        raise CampaignError(f"rule {request.rule} already made a campaign for item {items[0].id}") from None
    preview_campaign(session, settings, renderer, campaign)  # a template error is found now, not when sending
    note_campaign(session, campaign, actor, "draft", f"created ({request.kind.value})" + _by_rule(request))
    if not settings.schedule.require_approval:
        vouched = "approval not required (schedules.yaml)"
    if vouched is not None:  # a rule or digest with `approved: true`, or the config, stands in for a second person
        approve_campaign(session, settings, renderer, campaign.id, actor, vouched=vouched)
    return campaign


def _by_rule(request: CampaignRequest) -> str:
    return f" by rule {request.rule}" if request.rule else ""


def _items(session: Session, request: CampaignRequest) -> list[Item]:
    if request.kind in (CampaignKind.message, CampaignKind.survey):
        return []
    if not request.item_ids:
        raise CampaignError("no item given (--item ID or --items ID,ID)")
    found = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(request.item_ids)))}
    missing = [str(i) for i in request.item_ids if i not in found]
    if missing:
        raise CampaignError(f"no item with id {', '.join(missing)} (see `outreach items list`)")
    if request.kind is CampaignKind.item and len(request.item_ids) != 1:
        raise CampaignError("an item campaign announces one item: use --items for a digest")
    return [found[i] for i in dict.fromkeys(request.item_ids)]


def _language(request: CampaignRequest, items: Sequence[Item]) -> str:
    languages = sorted({item.language for item in items})
    if len(languages) > 1:
        raise CampaignError(f"the items are in {' and '.join(languages)}: a digest is in one language")
    language = request.language or (languages[0] if languages else "vi")
    if language not in LANGUAGES:
        raise CampaignError(f"unknown language {language!r} (vi or en)")
    if languages and language != languages[0]:
        raise CampaignError(f"the items are in {languages[0]}, not {language}")
    return language


def _channels(settings: Settings, wanted: Sequence[str], language: str) -> list[str]:
    enabled = settings.schedule.channels.enabled()
    chosen = list(dict.fromkeys(wanted)) or list(enabled)
    unknown = [c for c in chosen if c not in enabled]
    if unknown:
        raise CampaignError(
            f"channel(s) {', '.join(unknown)} not enabled in {settings.config_path} (enabled: {', '.join(enabled) or 'none'})"
        )
    if not chosen:
        raise CampaignError(f"no channel is enabled in {settings.config_path}")
    for channel in chosen:
        if not _targets(settings, language, channel):
            raise CampaignError(
                f"channel {channel} has no target taking language {language!r} in {settings.config_path}"
            )
    return chosen


def _allowed(settings: Settings, url: str, what: str) -> None:
    try:
        check_destination(url, settings.schedule.tracker.allowed_domains)
    except ValueError as exc:
        raise CampaignError(f"{what}: {exc}") from None


def _title(request: CampaignRequest, items: Sequence[Item]) -> str:
    if request.title:
        return unicodedata.normalize("NFC", request.title[:TITLE_LENGTH])
    if request.kind is CampaignKind.message and request.message:
        first = request.message.strip().splitlines()[0]
        return unicodedata.normalize("NFC", first[:TITLE_LENGTH])
    if request.kind is CampaignKind.digest:
        return f"Digest: {items[0].title}" + (f" (+{len(items) - 1})" if len(items) > 1 else "")
    return items[0].title


def _refuse_repeat(session: Session, item: Item, channels: list[str]) -> None:
    gone = [CampaignStatus.cancelled, CampaignStatus.rejected]
    earlier = session.scalars(select(Campaign).where(Campaign.item_id == item.id, Campaign.status.not_in(gone)))
    for campaign in earlier:
        overlap = [c for c in channels if c in campaign.channels]
        if overlap:
            raise CampaignError(
                f"item {item.id} already has campaign {campaign.id} ({campaign.status.value}) on {', '.join(overlap)}; "
                "use --force to announce it again"
            )


def _targets(settings: Settings, language: str, channel: str) -> list[str]:
    """Targets of a channel that take a language; a channel of subscribers has one: all of them."""
    configured = settings.schedule.channels.enabled().get(channel)
    if configured is None:
        return []
    if configured.audience == "subscribers":
        return [SUBSCRIBERS]
    return [t.id for t in configured.targets if language in t.languages]


def template_for(settings: Settings, campaign: Campaign, channel: str) -> str:
    if campaign.template:
        return campaign.template
    return DEFAULT_TEMPLATE.get(campaign.kind) or settings.schedule.channels.enabled()[channel].template


def _view(settings: Settings, item: Item) -> ItemView:
    return ItemView(
        title=item.title,
        summary=item.summary,
        url=item.url,
        image_url=item.image_url,
        published=item.published_at.astimezone(settings.zone),
        language=item.language,
    )


def _items_of(session: Session, campaign: Campaign) -> list[Item]:
    found = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(campaign.item_ids)))}
    return [found[i] for i in campaign.item_ids if i in found]


def context_for(
    settings: Settings, renderer: Renderer, campaign: Campaign, items: Sequence[Item], links: Sequence[str]
) -> PostContext:
    """What the templates see; `links` holds one tracked link per item (or one for a message)."""
    topics = sorted({topic for item in items for topic in item.topics})
    single = campaign.kind is CampaignKind.item
    return PostContext(
        item=_view(settings, items[0]) if single else None,
        topics=renderer.topic_views(items[0].topics if single else topics, campaign.language),
        link=links[0],
        campaign=CampaignView(campaign.id, campaign.title, campaign.utm_campaign),
        language=campaign.language,
        items=[DigestEntry(_view(settings, item), link) for item, link in zip(items, links, strict=True)]
        if campaign.kind is CampaignKind.digest
        else (),
        message=campaign.body,
    )


def destinations_of(campaign: Campaign, items: Sequence[Item]) -> list[str]:
    """The portal pages a campaign links to: one per item, a staff message's page, none for a survey."""
    if campaign.kind is CampaignKind.survey:
        return []
    return [campaign.url or ""] if campaign.kind is CampaignKind.message else [item.url for item in items]


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    """The campaign with this id, or a CampaignError saying there is none."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"no campaign with id {campaign_id} (see `outreach campaign list`)")
    return campaign


def preview_campaign(session: Session, settings: Settings, renderer: Renderer, campaign: Campaign) -> list[Preview]:
    """Each channel's text as it would be queued, with placeholder link codes."""
    items = _items_of(session, campaign)
    links = [short_url(settings.schedule.tracker.public_url, PREVIEW_CODE)] * len(destinations_of(campaign, items)) or [
        ""
    ]
    context = context_for(settings, renderer, campaign, items, links)
    return [
        Preview(
            channel,
            _targets(settings, campaign.language, channel),
            renderer.render(channel, template_for(settings, campaign, channel), context).text,
        )
        for channel in campaign.channels
    ]


def approve_campaign(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    campaign_id: int,
    actor: Actor,
    vouched: str | None = None,
) -> list[Delivery]:
    """A second person's yes: the campaign is rendered into its deliveries and scheduled.

    The creator approving their own campaign is refused when approval is
    required, and the refusal is audited too (in its own transaction, so it
    stays when the caller's is rolled back). `vouched` says what stands in for
    the second person instead (a rule in schedules.yaml, `require_approval: false`).
    """
    campaign = get_campaign(session, campaign_id)
    note = vouched
    if (
        settings.schedule.require_approval
        and vouched is None
        and actor.name == (campaign.created_as or campaign.created_by)
    ):
        with Session(session.get_bind()) as audit, audit.begin():
            note_campaign(audit, audit.get_one(Campaign, campaign_id), actor, "approval refused", "own campaign")
        raise CampaignError(
            f"campaign {campaign_id} was created by {actor.name}: someone else must approve it (two-person rule)"
        )
    move_campaign(session, campaign, CampaignStatus.approved, actor, note)
    campaign.approved_by, campaign.approved_as, campaign.approved_at = actor.login, actor.acting_as, utcnow()
    deliveries, to_subscribers = _queue(session, settings, renderer, campaign)
    campaign.scheduled_at = campaign.scheduled_at or utcnow()
    queued = len(deliveries) + to_subscribers
    move_campaign(
        session, campaign, CampaignStatus.scheduled, actor, plural(queued, "delivery", "deliveries") + " queued"
    )
    if not queued:  # only subscribers, and none wants it: nothing will ever settle it
        move_campaign(session, campaign, CampaignStatus.done, actor, "no subscriber takes it")
    return deliveries


def _queue(session: Session, settings: Settings, renderer: Renderer, campaign: Campaign) -> tuple[list[Delivery], int]:
    """One pending delivery (with its own tracked links) per channel target, and per subscriber.

    Returns the target deliveries and how many went to subscribers (inserted in
    bulk, see `outreach.broadcast`). The unique key on (campaign, channel,
    target) is the final guard against a second copy.
    """
    items = _items_of(session, campaign)
    tracker = settings.schedule.tracker
    created: list[Delivery] = []
    to_subscribers = 0
    for channel in campaign.channels:
        if has_subscribers(settings, channel):
            template = template_for(settings, campaign, channel)
            to_subscribers += queue_subscribers(session, settings, renderer, campaign, channel, items, template)
            continue
        targets = _targets(settings, campaign.language, channel)
        if not targets:
            raise CampaignError(f"channel {channel} has no target taking language {campaign.language!r}")
        for target in targets:
            links = []
            for destination in destinations_of(campaign, items):
                utm = with_utm(destination, channel, tracker.utm_medium, campaign.utm_campaign)
                _allowed(settings, utm, f"campaign {campaign.id}")
                links.append(Link(code=new_code(), destination=utm, campaign_id=campaign.id, channel=channel))
            session.add_all(links)
            urls = [short_url(tracker.public_url, link.code) for link in links]
            rendered = renderer.render(
                channel,
                template_for(settings, campaign, channel),
                context_for(settings, renderer, campaign, items, urls),
            )
            image = items[0].image_url if rendered.photo and items else None
            delivery = Delivery(
                campaign_id=campaign.id,
                channel=channel,
                target=target,
                language=campaign.language,
                text=rendered.text,
                image_url=image,
                link=links[0],
            )
            session.add(delivery)
            created.append(delivery)
    try:
        session.flush()
    except IntegrityError as exc:
        raise CampaignError(f"campaign {campaign.id} was queued concurrently by someone else: {exc.orig}") from None
    return created, to_subscribers


def reject_campaign(session: Session, campaign_id: int, actor: Actor, reason: str) -> Campaign:
    """A draft turned down, with the reason kept in the audit trail."""
    campaign = get_campaign(session, campaign_id)
    move_campaign(session, campaign, CampaignStatus.rejected, actor, reason)
    return campaign


def cancel_campaign(session: Session, campaign_id: int, actor: Actor, reason: str | None = None) -> int:
    """Stop a campaign before it is done: its pending deliveries are skipped; returns how many.

    A delivery already being sent finishes (it may be on the page already); the
    dispatcher sends nothing more of a cancelled campaign.
    """
    campaign = get_campaign(session, campaign_id)
    move_campaign(session, campaign, CampaignStatus.cancelled, actor, reason)
    skipped = move_deliveries(
        session,
        [Delivery.campaign_id == campaign_id],
        DeliveryStatus.pending,
        DeliveryStatus.skipped,
        actor,
        "cancelled",
    )
    return len(skipped)


def retry_campaign(session: Session, campaign_id: int, actor: Actor) -> int:
    """Send a campaign's failed deliveries again (fresh attempts); returns how many."""
    campaign = get_campaign(session, campaign_id)
    if campaign.status not in (CampaignStatus.sending, CampaignStatus.done_with_errors):
        why = (
            "nothing failed to retry"
            if campaign.status is CampaignStatus.done
            else "only a campaign that is sending or done_with_errors can be retried"
        )
        raise CampaignError(f"campaign {campaign_id} is {campaign.status.value}: {why}")
    retried = move_deliveries(
        session,
        [Delivery.campaign_id == campaign_id],
        DeliveryStatus.failed,
        DeliveryStatus.pending,
        actor,
        "retried by staff",
        attempts=0,
        next_attempt_at=None,
    )
    if not retried:
        raise CampaignError(f"campaign {campaign_id} has no failed delivery to retry")
    if campaign.status is CampaignStatus.done_with_errors:
        move_campaign(session, campaign, CampaignStatus.sending, actor, f"{len(retried)} failed deliveries retried")
    return len(retried)


def settle_delivery(
    session: Session, campaign_id: int, delivery_id: int, sent: bool, actor: Actor, note: str | None = None
) -> Delivery:
    """An operator checked the target: a delivery of unknown fate was sent, or was not."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or delivery.campaign_id != campaign_id:
        raise CampaignError(f"campaign {campaign_id} has no delivery {delivery_id} (see `outreach campaign show`)")
    if delivery.status is not DeliveryStatus.unknown:
        raise CampaignError(f"delivery {delivery_id} is {delivery.status.value}, not unknown: nothing to settle")
    outcome = DeliveryStatus.sent if sent else DeliveryStatus.failed
    move_delivery(
        session, delivery, outcome, actor, note or f"settled by an operator: {'on' if sent else 'not on'} the target"
    )
    if sent:
        delivery.sent_at = delivery.sent_at or utcnow()
    settle_campaigns(session, actor, [campaign_id])
    return delivery


def settle_campaigns(session: Session, actor: Actor, campaign_ids: Sequence[int] | None = None) -> int:
    """Campaigns whose every delivery reached a final state are done (or done with errors); returns how many.

    One aggregate query however many campaigns: the dispatcher closes them by the hundred.
    """
    open_ones = select(Campaign.id).where(Campaign.status.in_(OPEN_CAMPAIGNS))
    if campaign_ids is not None:
        open_ones = open_ones.where(Campaign.id.in_(campaign_ids))
    unfinished = func.sum(case((Delivery.status.in_(FINAL_DELIVERY), 0), else_=1))
    failed = func.sum(case((Delivery.status == DeliveryStatus.failed, 1), else_=0))
    outcomes: dict[tuple[CampaignStatus, str | None], list[int]] = {}
    for campaign_id, waiting, failures in session.execute(
        select(Delivery.campaign_id, unfinished, failed)
        .where(Delivery.campaign_id.in_(open_ones))
        .group_by(Delivery.campaign_id)
    ):
        if not waiting:
            key = (CampaignStatus.done_with_errors, f"{failures} failed") if failures else (CampaignStatus.done, None)
            outcomes.setdefault(key, []).append(campaign_id)
    closed = 0
    for (outcome, note), ids in outcomes.items():
        for old in OPEN_CAMPAIGNS:
            closed += len(move_campaigns(session, ids, old, outcome, actor, note))
    return closed


def list_campaigns(session: Session, limit: int = 50, status: CampaignStatus | None = None) -> list[Campaign]:
    """The newest campaigns first, optionally in one state."""
    query = select(Campaign).order_by(Campaign.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Campaign.status == status)
    return list(session.scalars(query))


def queued_count(session: Session, campaign_id: int) -> int:
    """How many deliveries a campaign has, to targets and subscribers alike."""
    return int(session.scalar(select(func.count()).where(Delivery.campaign_id == campaign_id)) or 0)
