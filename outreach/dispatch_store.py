"""The dispatcher's database work: claim, finish, recover, pause. Synchronous, one transaction each.

The dispatcher runs these in worker threads (`asyncio.to_thread`) so the event
loop never waits on the database. Every state change goes through
`outreach.lifecycle` and is committed before the next network call.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.orm import Session

from outreach.campaigns import settle_campaigns
from outreach.channel import Markup, RenderedMessage
from outreach.db import Store
from outreach.lifecycle import OPEN_CAMPAIGNS, Actor, move_campaign, move_deliveries, move_delivery
from outreach.models import Campaign, CampaignStatus, ChannelPause, Delivery, DeliveryStatus, Link
from outreach.text import scrub

MAX_ATTEMPTS = 8
BASE_BACKOFF = timedelta(seconds=30)
EVERY_TARGET = "*"


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """How long to wait: the platform's word if it gave one, else exponential with jitter."""
    if retry_after is not None:
        return timedelta(seconds=retry_after)
    base = BASE_BACKOFF * 2.0 ** max(attempts - 1, 0)
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def sendable(now: datetime) -> ColumnElement[bool]:
    """Deliveries of campaigns that are open and due (cancelled ones send nothing more)."""
    due = select(Campaign.id).where(
        Campaign.status.in_(OPEN_CAMPAIGNS), or_(Campaign.scheduled_at.is_(None), Campaign.scheduled_at <= now)
    )
    return Delivery.campaign_id.in_(due)


def due_now(now: datetime) -> ColumnElement[bool]:
    """Deliveries whose back-off (if any) is over."""
    return or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)


def due_keys(store: Store, now: datetime) -> list[tuple[str, str, int]]:
    """(channel, target, how many) with pending deliveries due now."""
    with store.sessions() as session:
        query = (
            select(Delivery.channel, Delivery.target, func.count())
            .where(Delivery.status == DeliveryStatus.pending, sendable(now), due_now(now))
            .group_by(Delivery.channel, Delivery.target)
        )
        return [(channel, target, count) for channel, target, count in session.execute(query)]


def pending_counts(store: Store) -> dict[tuple[str, str], int]:
    """Pending deliveries of open campaigns per (channel, target), due or not."""
    with store.sessions() as session:
        query = (
            select(Delivery.channel, Delivery.target, func.count())
            .where(
                Delivery.status == DeliveryStatus.pending,
                Delivery.campaign_id.in_(select(Campaign.id).where(Campaign.status.in_(OPEN_CAMPAIGNS))),
            )
            .group_by(Delivery.channel, Delivery.target)
        )
        return {(channel, target): count for channel, target, count in session.execute(query)}


@dataclass(frozen=True)
class Claimed:
    """A delivery now `sending`, and the message to send."""

    message: RenderedMessage
    attempts: int


def claim(
    store: Store,
    channel: str,
    targets: Sequence[str] | None,
    transport: str,
    markup: Markup,
    now: datetime,
    limit: int,
    actor: Actor,
) -> list[Claimed]:
    """Move up to `limit` due deliveries of a channel (or of its given targets) to `sending`, committed.

    FOR UPDATE SKIP LOCKED on PostgreSQL: two dispatchers never claim one row;
    the condition on `pending` does the same on SQLite, which has one writer.
    """
    which: list[ColumnElement[bool]] = [Delivery.channel == channel, sendable(now), due_now(now)]
    if targets is not None:
        which.append(Delivery.target.in_(targets))
    with store.sessions.begin() as session:
        ids = move_deliveries(
            session,
            which,
            DeliveryStatus.pending,
            DeliveryStatus.sending,
            actor,
            limit=limit,
            skip_locked=session.get_bind().dialect.name == "postgresql",
            claimed_at=now,
            attempts=Delivery.attempts + 1,
            transport=transport,
        )
        if not ids:
            return []
        rows = session.execute(
            select(Delivery, Link.destination)
            .outerjoin(Link, Link.code == Delivery.link_code)
            .where(Delivery.id.in_(ids))
        ).all()
        campaigns = {delivery.campaign_id for delivery, _ in rows}
        for campaign in session.scalars(select(Campaign).where(Campaign.id.in_(campaigns))):
            if campaign.status is CampaignStatus.scheduled:
                move_campaign(session, campaign, CampaignStatus.sending, actor, "first delivery claimed")
        return [
            Claimed(
                RenderedMessage(
                    delivery_id=delivery.id,
                    campaign_id=delivery.campaign_id,
                    channel=delivery.channel,
                    target=delivery.target,
                    language=delivery.language,
                    text=delivery.text,
                    markup=markup,
                    link_code=delivery.link_code,
                    destination=destination,
                    image_url=delivery.image_url,
                ),
                delivery.attempts,
            )
            for delivery, destination in sorted(rows, key=lambda row: row[0].id)
        ]


@dataclass(frozen=True)
class Result:
    """What one send attempt came to, in the store's terms."""

    status: DeliveryStatus
    error: str | None = None
    platform_id: str | None = None
    retry_after: float | None = None
    # Nothing more goes to this target ("target") or channel (EVERY_TARGET) for now.
    hold: str | None = None
    token_refused: bool = False  # the hold is for a refused token: the attempt does not count


def finish(store: Store, delivery_id: int, result: Result, now: datetime, actor: Actor) -> DeliveryStatus:
    """Record one attempt's outcome (committed); returns the delivery's state after it."""
    with store.sessions.begin() as session:
        delivery = session.get_one(Delivery, delivery_id)
        status = result.status
        if status is DeliveryStatus.pending and not result.token_refused and delivery.attempts >= MAX_ATTEMPTS:
            status = DeliveryStatus.failed
        note = scrub(result.error) if result.error else None
        move_delivery(session, delivery, status, actor, note)
        delivery.last_error = note
        if status is DeliveryStatus.sent:
            delivery.platform_id, delivery.sent_at = result.platform_id, now
        elif result.token_refused:
            delivery.attempts -= 1  # a refused token says nothing about the message
        elif status is DeliveryStatus.pending:
            delivery.next_attempt_at = now + backoff(delivery.attempts, result.retry_after)
            if result.hold is not None and result.retry_after is not None:
                _hold_others(session, delivery, result.hold == EVERY_TARGET, delivery.next_attempt_at)
        return status


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
        .execution_options(synchronize_session=False)
    )


def settle(store: Store, campaign_ids: Sequence[int], actor: Actor) -> None:
    """Campaigns whose deliveries all reached a final state are done (or done with errors)."""
    if campaign_ids:
        with store.sessions.begin() as session:
            settle_campaigns(session, actor, campaign_ids)


def recover(store: Store, idempotent: dict[tuple[str, str], str], now: datetime, lease: timedelta, actor: Actor) -> int:
    """Deliveries left in `sending` by a crash: `unknown` for pages and channels, `pending` again
    where the transport that had them is idempotent (`idempotent`: route -> transport name).

    Only claims older than the lease count: a younger one may belong to another
    dispatcher that is sending it right now.
    """
    stale = or_(Delivery.claimed_at.is_(None), Delivery.claimed_at < now - lease)
    with store.sessions.begin() as session:
        stuck = list(session.scalars(select(Delivery).where(Delivery.status == DeliveryStatus.sending, stale)))
        for delivery in stuck:
            if idempotent.get((delivery.channel, delivery.target)) == delivery.transport:
                move_delivery(session, delivery, DeliveryStatus.pending, actor, "interrupted; resent (idempotent)")
            else:
                note = "interrupted while sending: it may have been posted; check the target, then settle it"
                move_delivery(session, delivery, DeliveryStatus.unknown, actor, note)
                delivery.last_error = note
        return len(stuck)


def pauses(store: Store) -> dict[tuple[str, str], str]:
    """Stored pauses: (channel, target or "*") -> the reason."""
    with store.sessions() as session:
        return {(p.channel, p.target): p.reason for p in session.scalars(select(ChannelPause))}


def pause(store: Store, channel: str, target: str, reason: str, now: datetime, actor: Actor) -> None:
    """Store a pause (it survives restarts until `outreach channel resume`)."""
    from outreach.lifecycle import record

    with store.sessions.begin() as session:
        if session.get(ChannelPause, (channel, target)) is None:
            session.add(ChannelPause(channel=channel, target=target, reason=scrub(reason), since=now))
            record(session, "channel", f"{channel} {target}", "paused", actor, scrub(reason))


def resume(store: Store, channel: str, target: str | None, actor: Actor) -> int:
    """Lift a channel's pauses (all, or one target's); returns how many were lifted."""
    from outreach.lifecycle import record

    with store.sessions.begin() as session:
        query = delete(ChannelPause).where(ChannelPause.channel == channel)
        if target is not None:
            query = query.where(ChannelPause.target == target)
        lifted = session.execute(query.execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
        if lifted:
            record(session, "channel", f"{channel} {target or EVERY_TARGET}", "resumed", actor)
        return int(lifted)


def sent_on(store: Store, channel: str, target: str, since: datetime) -> tuple[int, datetime | None]:
    """Posts sent to a target since a moment (the local day's start), and the last one's time."""
    with store.sessions() as session:
        count, last = session.execute(
            select(func.count(Delivery.id), func.max(Delivery.sent_at)).where(
                Delivery.channel == channel,
                Delivery.target == target,
                Delivery.status == DeliveryStatus.sent,
                Delivery.sent_at >= since,
            )
        ).one()
        latest = session.scalar(
            select(func.max(Delivery.sent_at)).where(
                Delivery.channel == channel, Delivery.target == target, Delivery.status == DeliveryStatus.sent
            )
        )
        return int(count), latest or last
