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

from sqlalchemy import func, or_, select, update

from outreach.channel import AuthFailed, Channel, PLATFORM_LIMITS, RecipientGone, Rejected, RenderedMessage, Sent, Transient
from outreach.db import Store
from outreach.models import FINAL_DELIVERY, Campaign, CampaignStatus, Delivery, DeliveryStatus, utcnow

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(seconds=30)


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


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait: the platform's word if it gave one, else exponential with jitter."""
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    base = BASE_BACKOFF * (2 ** max(attempts - 1, 0))
    return base * random.uniform(0.8, 1.2)


def recover_interrupted(store: Store, channels: Mapping[str, Channel]) -> int:
    """Settle deliveries left in `sending` by a crash; returns how many there were."""
    with store.sessions.begin() as session:
        stuck = list(session.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.sending)))
        for delivery in stuck:
            transport = channels.get(delivery.channel)
            if transport is not None and transport.idempotent and delivery.transport == transport.name:
                delivery.status = DeliveryStatus.pending
            else:
                delivery.status = DeliveryStatus.unknown
                delivery.last_error = "interrupted while sending: it may have been posted; check the target before resending"
        return len(stuck)


async def send_pending(store: Store, channels: Mapping[str, Channel], now: Callable[[], datetime] = utcnow, limit: int | None = None) -> SendReport:
    """Deliver every due pending delivery once, in order; return what happened."""
    report = SendReport(recovered=recover_interrupted(store, channels))
    with store.sessions() as session:
        query = (
            select(Delivery.id)
            .where(Delivery.status == DeliveryStatus.pending, or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now()))
            .order_by(Delivery.id)
            .limit(limit)
        )
        due = list(session.scalars(query))
    for delivery_id in due:
        message, channel = _claim(store, delivery_id, channels, report)
        if message is None or channel is None:
            continue
        try:
            sent = await channel.send(message)
        except Transient as exc:
            _finish(store, delivery_id, report, retry=exc, now=now())
        except AuthFailed as exc:
            report.paused_channels.append(message.channel)
            _finish(store, delivery_id, report, paused=str(exc))
        except (Rejected, RecipientGone) as exc:
            _finish(store, delivery_id, report, final=exc)
        except Exception as exc:  # an adapter bug: we cannot know whether it went out
            log.exception("delivery %s: unexpected error from %s", delivery_id, channel.name)
            _finish(store, delivery_id, report, ambiguous=f"{type(exc).__name__}: {exc}", idempotent=channel.idempotent)
        else:
            _finish(store, delivery_id, report, sent=sent, now=now())
    _settle_campaigns(store)
    return report


def _claim(store: Store, delivery_id: int, channels: Mapping[str, Channel], report: SendReport) -> tuple[RenderedMessage | None, Channel | None]:
    """Mark one delivery `sending` (committed) and build its message."""
    with store.sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        channel = channels.get(delivery.channel)
        if channel is None or delivery.channel in report.paused_channels or delivery.status != DeliveryStatus.pending:
            return None, None
        delivery.status = DeliveryStatus.sending
        delivery.attempts += 1
        delivery.transport = channel.name
        if delivery.campaign.status in (CampaignStatus.scheduled, CampaignStatus.approved):
            delivery.campaign.status = CampaignStatus.sending
        message = RenderedMessage(
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
    return message, channel


def _finish(
    store: Store,
    delivery_id: int,
    report: SendReport,
    *,
    sent: Sent | None = None,
    retry: Transient | None = None,
    final: Exception | None = None,
    paused: str | None = None,
    ambiguous: str | None = None,
    idempotent: bool = False,
    now: datetime | None = None,
) -> None:
    """Record the outcome of one send attempt."""
    with store.sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        if sent is not None:
            delivery.status, delivery.platform_id, delivery.sent_at, delivery.last_error = DeliveryStatus.sent, sent.platform_id, now, None
            report.sent += 1
        elif retry is not None:
            delivery.last_error = str(retry)
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.failed
                report.failed += 1
            else:
                delivery.status = DeliveryStatus.pending
                delivery.next_attempt_at = (now or utcnow()) + backoff(delivery.attempts, retry.retry_after)
                report.retrying += 1
        elif final is not None:
            gone = isinstance(final, RecipientGone)
            delivery.status = DeliveryStatus.skipped if gone else DeliveryStatus.failed
            delivery.last_error = str(final)
            report.skipped += gone
            report.failed += not gone
        elif paused is not None:
            # The token is at fault, not the message: this attempt does not count.
            delivery.status, delivery.last_error = DeliveryStatus.pending, paused
            delivery.attempts -= 1
        else:
            delivery.last_error = ambiguous
            delivery.status = DeliveryStatus.pending if idempotent else DeliveryStatus.unknown
            report.retrying += idempotent
            report.unknown += not idempotent


def _settle_campaigns(store: Store) -> None:
    """Mark campaigns done once every delivery has reached a final state."""
    with store.sessions.begin() as session:
        open_ids = select(Campaign.id).where(Campaign.status.in_([CampaignStatus.scheduled, CampaignStatus.sending]))
        rows = session.execute(
            select(Delivery.campaign_id, Delivery.status, func.count()).where(Delivery.campaign_id.in_(open_ids)).group_by(Delivery.campaign_id, Delivery.status)
        ).all()
        by_campaign: dict[int, dict[DeliveryStatus, int]] = {}
        for campaign_id, status, count in rows:
            by_campaign.setdefault(campaign_id, {})[status] = count
        for campaign_id, counts in by_campaign.items():
            if all(status in FINAL_DELIVERY for status in counts):
                outcome = CampaignStatus.done_with_errors if counts.get(DeliveryStatus.failed) else CampaignStatus.done
                session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status=outcome))
