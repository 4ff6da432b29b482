"""Sending pending deliveries through their channels (DESIGN §4, delivery states).

Every state change is committed before the next network call: a delivery marked
`sending` that is found again after a crash may already be on the page, so it
becomes `unknown` for an operator to settle, unless its channel is idempotent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select, update

from outreach.channel import (
    PLATFORM_LIMITS,
    AuthFailed,
    Channel,
    MaybeSent,
    RecipientGone,
    Rejected,
    RenderedMessage,
    Transient,
)
from outreach.db import Store
from outreach.models import FINAL_DELIVERY, Campaign, CampaignStatus, Delivery, DeliveryStatus, utcnow
from outreach.text import scrub

log = logging.getLogger(__name__)
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
    paused_channels: list[str] = field(default_factory=list)
    # Pending deliveries for channels that are no longer enabled: they wait.
    unroutable: dict[str, int] = field(default_factory=dict)


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait: the platform's word if it gave one, else exponential with jitter."""
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    base = BASE_BACKOFF * 2.0 ** max(attempts - 1, 0)
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def recover_interrupted(store: Store, channels: Mapping[str, Channel], now: datetime) -> int:
    """Settle deliveries left in `sending` by a crash; returns how many there were.

    Only claims older than the lease count: a younger one may belong to another
    dispatcher that is sending it right now.
    """
    stale = or_(Delivery.claimed_at.is_(None), Delivery.claimed_at < now - SENDING_LEASE)
    with store.sessions.begin() as session:
        stuck = list(session.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.sending, stale)))
        for delivery in stuck:
            transport = channels.get(delivery.channel)
            if transport is not None and transport.idempotent and delivery.transport == transport.name:
                delivery.status = DeliveryStatus.pending
            else:
                delivery.status = DeliveryStatus.unknown
                delivery.last_error = (
                    "interrupted while sending: it may have been posted; check the target before resending"
                )
        return len(stuck)


async def send_pending(
    store: Store, channels: Mapping[str, Channel], now: Callable[[], datetime] = utcnow, limit: int | None = None
) -> SendReport:
    """Deliver every due pending delivery once, in order; return what happened."""
    report = SendReport(recovered=recover_interrupted(store, channels, now()))
    due_now = or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now())
    with store.sessions() as session:
        query = select(Delivery.id, Delivery.channel).where(
            Delivery.status == DeliveryStatus.pending,
            due_now,
            Delivery.channel.in_(list(channels)),
            Delivery.campaign_id.in_(_sendable_campaigns()),
        )
        due = list(session.execute(query.order_by(Delivery.id).limit(limit)))
        waiting = select(Delivery.channel, func.count()).where(
            Delivery.status == DeliveryStatus.pending, Delivery.channel.not_in(list(channels))
        )
        report.unroutable = dict(session.execute(waiting.group_by(Delivery.channel)).all())
    for delivery_id, channel_name in due:
        if channel_name in report.paused_channels:
            continue
        channel = channels[channel_name]
        message = _claim(store, delivery_id, channel, now())
        if message is None:
            continue
        outcome = await _attempt(channel, message)
        if outcome.pause_channel:
            report.paused_channels.append(message.channel)
        _finish(store, delivery_id, outcome, now(), report)
    _settle_campaigns(store)
    return report


@dataclass(frozen=True)
class Outcome:
    """What one send attempt came to, in the store's terms."""

    status: DeliveryStatus
    error: str | None = None
    platform_id: str | None = None
    retry_after: float | None = None
    pause_channel: bool = False  # the token is at fault, not the message


async def _attempt(channel: Channel, message: RenderedMessage) -> Outcome:
    """Send once and translate the result; never raises."""
    try:
        sent = await channel.send(message)
    except Transient as exc:
        return Outcome(DeliveryStatus.pending, str(exc), retry_after=exc.retry_after)
    except AuthFailed as exc:
        return Outcome(DeliveryStatus.pending, str(exc), pause_channel=True)
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


def _claim(store: Store, delivery_id: int, channel: Channel, now: datetime) -> RenderedMessage | None:
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
            markup=PLATFORM_LIMITS[delivery.channel].markup,
            link_code=delivery.link_code,
            destination=delivery.link.destination if delivery.link else None,
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
        elif outcome.pause_channel:
            delivery.attempts -= 1  # a refused token says nothing about the message
        elif outcome.status == DeliveryStatus.pending:
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.failed
            else:
                delivery.next_attempt_at = now + backoff(delivery.attempts, outcome.retry_after)
        if not outcome.pause_channel:
            _count(report, delivery.status)


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
