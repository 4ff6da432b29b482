"""Sending pending deliveries through their channels (DESIGN §4, delivery states).

Every state change is committed before the next network call: a delivery marked
`sending` that is found again after a crash may already be on the page, so it
becomes `unknown` for an operator to settle, unless its channel is idempotent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from outreach.channel import (
    AuthFailed,
    Channel,
    Markup,
    MaybeSent,
    RecipientGone,
    Rejected,
    RenderedMessage,
    Transient,
)
from outreach.db import Store
from outreach.models import FINAL_DELIVERY, Campaign, CampaignStatus, Delivery, DeliveryStatus, utcnow
from outreach.pacing import Pacer
from outreach.routing import RouteKey, Routing
from outreach.text import scrub

log = logging.getLogger(__name__)
EVERY_TARGET = "*"
MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(seconds=30)
# A send in flight is never older than this (platform calls time out long before),
# so an older `sending` row was left by a crash, not by another dispatcher at work.
SENDING_LEASE = timedelta(minutes=5)


@dataclass
class SendReport:
    """Counts of what one dispatch run did, by outcome."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    recovered: int = 0
    # Targets whose token was refused, with the platform's reason: their deliveries wait.
    # The target EVERY_TARGET stands for all of a channel's (its token itself was refused).
    paused: dict[RouteKey, str] = field(default_factory=dict)
    # Targets (or whole channels) the platform asked to wait, with the seconds it said.
    waiting: dict[RouteKey, float] = field(default_factory=dict)
    # Pending deliveries for targets no longer in the config (or disabled): they wait.
    unroutable: dict[RouteKey, int] = field(default_factory=dict)


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait: the platform's word if it gave one, else exponential with jitter."""
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    base = BASE_BACKOFF * 2.0 ** max(attempts - 1, 0)
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def recover_interrupted(store: Store, routing: Routing, now: datetime) -> int:
    """Settle deliveries left in `sending` by a crash; returns how many there were.

    Only claims older than the lease count: a younger one may belong to another
    dispatcher that is sending it right now.
    """
    stale = or_(Delivery.claimed_at.is_(None), Delivery.claimed_at < now - SENDING_LEASE)
    with store.sessions.begin() as session:
        stuck = list(session.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.sending, stale)))
        for delivery in stuck:
            route = routing.get(delivery.channel, delivery.target)
            transport = route.transport if route is not None else None
            if transport is not None and transport.idempotent and delivery.transport == transport.name:
                delivery.status = DeliveryStatus.pending
            else:
                delivery.status = DeliveryStatus.unknown
                delivery.last_error = (
                    "interrupted while sending: it may have been posted; check the target before resending"
                )
        return len(stuck)


async def send_pending(
    store: Store, routing: Routing, now: Callable[[], datetime] = utcnow, limit: int | None = None
) -> SendReport:
    """Deliver every due pending delivery once, in order, at each platform's rate.

    A delivery whose target is no longer routed waits (counted in `unroutable`).
    A refused token pauses its target (or its channel) for this run, without
    counting an attempt; a flood wait or rate limit holds the target (or channel)
    until the time the platform gave, for this run and the next ones.
    """
    report = SendReport(recovered=recover_interrupted(store, routing, now()))
    pacer = Pacer(routing.rates)
    due_now = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now())
    with store.sessions() as session:
        pending = select(Delivery.id, Delivery.channel, Delivery.target).where(
            Delivery.status == DeliveryStatus.pending, Delivery.campaign_id.in_(_sendable_campaigns())
        )
        due: list[tuple[int, str, str]] = []
        for delivery_id, channel_name, target in session.execute(pending.where(due_now).order_by(Delivery.id)):
            if routing.get(channel_name, target) is None:
                continue
            due.append((delivery_id, channel_name, target))
            if limit is not None and len(due) >= limit:
                break
        per_target = pending.with_only_columns(Delivery.channel, Delivery.target, func.count())
        for channel_name, target, count in session.execute(per_target.group_by(Delivery.channel, Delivery.target)):
            if routing.get(channel_name, target) is None:
                report.unroutable[(channel_name, target)] = count
    held: set[RouteKey] = set()
    for delivery_id, channel_name, target in due:
        if (channel_name, target) in held or (channel_name, EVERY_TARGET) in held:
            continue
        route = routing.routes[(channel_name, target)]
        if route.to_platform:  # the outbox stands in at no platform's pace
            await pacer.wait(channel_name, target)
        message = _claim(store, delivery_id, route.transport, routing.markups[channel_name], now())
        if message is None:
            continue
        outcome = await _attempt(route.transport, message)
        if outcome.hold is not None:
            key = (channel_name, EVERY_TARGET if outcome.hold == EVERY_TARGET else target)
            held.add(key)
            if outcome.token_refused:
                report.paused[key] = outcome.error or "token refused"
            else:
                report.waiting[key] = outcome.retry_after or 0.0
        _finish(store, delivery_id, outcome, now(), report)
    _settle_campaigns(store)
    return report


async def send_once(store: Store, routing: Routing, limit: int | None = None) -> SendReport:
    """One dispatch run for a one-shot command: the transports are closed at the end."""
    try:
        return await send_pending(store, routing, limit=limit)
    finally:
        await routing.close()


@dataclass(frozen=True)
class Outcome:
    """What one send attempt came to, in the store's terms."""

    status: DeliveryStatus
    error: str | None = None
    platform_id: str | None = None
    retry_after: float | None = None
    # Nothing more goes to this target ("target") or channel (EVERY_TARGET) for now.
    hold: str | None = None
    token_refused: bool = False  # the hold is for a refused token: the attempt does not count


async def _attempt(channel: Channel, message: RenderedMessage) -> Outcome:
    """Send once and translate the result; never raises."""
    try:
        sent = await channel.send(message)
    except Transient as exc:
        scope = EVERY_TARGET if exc.whole_channel else "target"
        hold = scope if exc.retry_after is not None or exc.whole_channel else None
        return Outcome(DeliveryStatus.pending, str(exc), retry_after=exc.retry_after, hold=hold)
    except AuthFailed as exc:
        scope = EVERY_TARGET if exc.whole_channel else "target"
        return Outcome(DeliveryStatus.pending, str(exc), hold=scope, token_refused=True)
    except RecipientGone as exc:
        return Outcome(DeliveryStatus.skipped, str(exc))
    except Rejected as exc:
        return Outcome(DeliveryStatus.failed, str(exc))
    except MaybeSent as exc:
        return Outcome(DeliveryStatus.pending if channel.idempotent else DeliveryStatus.unknown, str(exc))
    except Exception as exc:  # an adapter bug: we cannot know whether it went out either
        log.exception("delivery %s: unexpected error from %s", message.delivery_id, channel.name)
        status = DeliveryStatus.pending if channel.idempotent else DeliveryStatus.unknown
        return Outcome(status, f"{type(exc).__name__}: {exc}")
    return Outcome(DeliveryStatus.sent, platform_id=sent.platform_id)


def _claim(store: Store, delivery_id: int, channel: Channel, markup: Markup, now: datetime) -> RenderedMessage | None:
    """Mark one delivery `sending` (committed) and build its message.

    The conditional UPDATE is the lock: of two dispatchers that read the same
    pending row, only one changes it; the other gets None and moves on.
    """
    with store.sessions.begin() as session:
        claimed = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.status == DeliveryStatus.pending,
                Delivery.campaign_id.in_(_sendable_campaigns()),
            )
            .values(
                status=DeliveryStatus.sending, claimed_at=now, attempts=Delivery.attempts + 1, transport=channel.name
            )
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
        delivery = session.get_one(Delivery, delivery_id)
        session.execute(
            update(Campaign)
            .where(Campaign.id == delivery.campaign_id, Campaign.status == CampaignStatus.scheduled)
            .values(status=CampaignStatus.sending)
        )
        return RenderedMessage(
            delivery_id=delivery.id,
            campaign_id=delivery.campaign_id,
            channel=delivery.channel,
            target=delivery.target,
            language=delivery.language,
            text=delivery.text,
            markup=markup,
            link_code=delivery.link_code,
            destination=delivery.link.destination if delivery.link else None,
            image_url=delivery.image_url,
        )


def _sendable_campaigns() -> Select[int]:
    """Campaigns whose deliveries may go out: queued and not cancelled."""
    return select(Campaign.id).where(Campaign.status.in_([CampaignStatus.scheduled, CampaignStatus.sending]))


def _finish(store: Store, delivery_id: int, outcome: Outcome, now: datetime, report: SendReport) -> None:
    """Record the outcome of one send attempt and count it in the report."""
    with store.sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        delivery.status, delivery.last_error = outcome.status, scrub(outcome.error) if outcome.error else None
        if outcome.status == DeliveryStatus.sent:
            delivery.platform_id, delivery.sent_at = outcome.platform_id, now
        elif outcome.token_refused:
            delivery.attempts -= 1  # a refused token says nothing about the message
        elif outcome.status == DeliveryStatus.pending:
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.failed
            else:
                delivery.next_attempt_at = now + backoff(delivery.attempts, outcome.retry_after)
                if outcome.hold is not None and outcome.retry_after is not None:
                    _hold_others(session, delivery, outcome.hold == EVERY_TARGET, delivery.next_attempt_at)
        if not outcome.token_refused:
            _count(report, delivery.status)


def _hold_others(session: Session, delivery: Delivery, whole_channel: bool, until: datetime) -> None:
    """The platform said wait: the target's (or channel's) other pending deliveries wait as long."""
    same = [Delivery.channel == delivery.channel] + ([] if whole_channel else [Delivery.target == delivery.target])
    session.execute(
        update(Delivery)
        .where(
            *same,
            Delivery.status == DeliveryStatus.pending,
            Delivery.id != delivery.id,
            or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at < until),
        )
        .values(next_attempt_at=until)
    )


def _count(report: SendReport, status: DeliveryStatus) -> None:
    field_name = {DeliveryStatus.pending: "retrying"}.get(status, status.value)
    setattr(report, field_name, getattr(report, field_name) + 1)


def _settle_campaigns(store: Store) -> None:
    """Mark campaigns done once every delivery has reached a final state."""
    with store.sessions.begin() as session:
        open_ids = select(Campaign.id).where(Campaign.status.in_([CampaignStatus.scheduled, CampaignStatus.sending]))
        rows = session.execute(
            select(Delivery.campaign_id, Delivery.status, func.count())
            .where(Delivery.campaign_id.in_(open_ids))
            .group_by(Delivery.campaign_id, Delivery.status)
        ).all()
        by_campaign: dict[int, dict[DeliveryStatus, int]] = {}
        for campaign_id, status, count in rows:
            by_campaign.setdefault(campaign_id, {})[status] = count
        for campaign_id, counts in by_campaign.items():
            if all(status in FINAL_DELIVERY for status in counts):
                outcome = CampaignStatus.done_with_errors if counts.get(DeliveryStatus.failed) else CampaignStatus.done
                session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status=outcome))
