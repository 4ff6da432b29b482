"""The dispatcher's database work: claim, finish, recover, pause. Synchronous, one transaction each.

The dispatcher runs these in worker threads (`asyncio.to_thread`) so the event
loop never waits on the database. Every state change goes through
`outreach.lifecycle` and is committed before the next network call.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from outreach.campaigns import settle_campaigns
from outreach.channel import Markup, RenderedMessage
from outreach.db import Store
from outreach.lifecycle import (
    OPEN_CAMPAIGNS,
    Actor,
    TransitionRefused,
    move_campaigns,
    move_deliveries,
    move_delivery,
    move_each,
)
from outreach.models import Campaign, CampaignStatus, ChannelPause, Delivery, DeliveryStatus, Link
from outreach.subscribers import FORGOTTEN, mark_gone, move_chat
from outreach.text import scrub

log = logging.getLogger(__name__)

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
        if session.get_bind().dialect.name == "postgresql":
            # Lock the rows in a statement of their own: as the UPDATE's `IN (...)`, PostgreSQL may run a
            # LIMIT ... SKIP LOCKED subquery again for each row (a semi join), each run skipping the rows
            # the UPDATE already took and handing over the next ones: every due row, not `limit`.
            chosen = session.scalars(
                select(Delivery.id)
                .where(Delivery.status == DeliveryStatus.pending, *which)
                .order_by(Delivery.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=Delivery)
            ).all()
            if not chosen:
                return []
            which = [Delivery.id.in_(chosen)]
        ids = move_deliveries(
            session,
            which,
            DeliveryStatus.pending,
            DeliveryStatus.sending,
            actor,
            limit=limit,
            claimed_at=now,
            attempts=Delivery.attempts + 1,
            transport=transport,
        )
        if not ids:
            return []
        rows = session.execute(
            select(
                Delivery.id,
                Delivery.campaign_id,
                Delivery.channel,
                Delivery.target,
                Delivery.language,
                Delivery.text,
                Delivery.link_code,
                Delivery.image_url,
                Delivery.attempts,
                Link.destination,
            )
            .outerjoin(Link, Link.code == Delivery.link_code)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.id)
        ).all()
        # Conditional on `scheduled`: of two dispatchers claiming one campaign's targets, one starts it.
        started = sorted({row.campaign_id for row in rows})
        move_campaigns(
            session, started, CampaignStatus.scheduled, CampaignStatus.sending, actor, "first delivery claimed"
        )
        return [
            Claimed(
                RenderedMessage(
                    delivery_id=row.id,
                    campaign_id=row.campaign_id,
                    channel=row.channel,
                    target=row.target,
                    language=row.language,
                    text=row.text,
                    markup=markup,
                    link_code=row.link_code,
                    destination=row.destination,
                    image_url=row.image_url,
                ),
                row.attempts,
            )
            for row in rows
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
    gone: bool = False  # the recipient blocked us: a subscriber is marked blocked, their other messages skipped
    moved_to: str | None = None  # the chat's new id (a group became a supergroup): a subscriber follows it


def finish(store: Store, delivery_id: int, result: Result, now: datetime, actor: Actor) -> DeliveryStatus:
    """Record one attempt's outcome (committed); returns the delivery's state after it."""
    return finish_many(store, [(delivery_id, result, now)], actor)[0]


def finish_many(store: Store, outcomes: Sequence[tuple[int, Result, datetime]], actor: Actor) -> list[DeliveryStatus]:
    """Record many attempts' outcomes in one transaction (committed); each delivery's state after it.

    Sends that went out (nearly all) are written with one UPDATE and one audit
    INSERT for the lot; the rest one by one, as each needs its own decisions.
    """
    with store.sessions.begin() as session:
        sent = {i: (r, at) for i, r, at in outcomes if r.status is DeliveryStatus.sent and r.moved_to is None}
        done: dict[int, DeliveryStatus] = {}
        if sent:
            found = session.execute(
                select(Delivery.id, Delivery.campaign_id, Delivery.target).where(Delivery.id.in_(sent))
            ).all()
            rows: list[dict[str, Any]] = [
                {
                    "id": i,
                    "campaign_id": c,
                    # A chat forgotten while its message was on the way: its id is not stored again.
                    "platform_id": None if target.startswith(FORGOTTEN) else sent[i][0].platform_id,
                    "sent_at": sent[i][1],
                    "last_error": None,
                }
                for i, c, target in found
            ]
            try:
                with session.begin_nested():
                    move_each(session, rows, DeliveryStatus.sending, DeliveryStatus.sent, actor)
                done = {row["id"]: DeliveryStatus.sent for row in rows}
            except TransitionRefused:  # one was taken from us (a lease ran out): each on its own below
                done = {}
        for delivery_id, result, at in outcomes:
            if delivery_id not in done:
                done[delivery_id] = _finish_one(session, session.get_one(Delivery, delivery_id), result, at, actor)
        return [done[delivery_id] for delivery_id, _, _ in outcomes]


def _finish_one(session: Session, delivery: Delivery, result: Result, now: datetime, actor: Actor) -> DeliveryStatus:
    if delivery.status is DeliveryStatus.unknown and result.status is DeliveryStatus.sent:
        # Declared interrupted while its send was slow: the platform's answer settles it.
        move_delivery(session, delivery, DeliveryStatus.sent, actor, "the send outlived its lease, then succeeded")
        delivery.platform_id, delivery.sent_at, delivery.last_error = result.platform_id, now, None
        return DeliveryStatus.sent
    if delivery.status is not DeliveryStatus.sending:
        log.warning(
            "delivery %s: %s already (its claim outlived the lease); this attempt's outcome was %s",
            delivery.id,
            delivery.status.value,
            result.status.value,
        )
        return delivery.status
    status = result.status
    if status is DeliveryStatus.pending and not result.token_refused and delivery.attempts >= MAX_ATTEMPTS:
        status = DeliveryStatus.failed
    note = scrub(result.error) if result.error else None
    move_delivery(session, delivery, status, actor, note)
    delivery.last_error = note
    if result.gone or result.moved_to is not None:
        _follow_recipient(session, delivery, result, actor)
    if status is DeliveryStatus.sent:
        forgotten = delivery.target.startswith(FORGOTTEN)
        delivery.platform_id, delivery.sent_at = None if forgotten else result.platform_id, now
    elif result.token_refused:
        delivery.attempts -= 1  # a refused token says nothing about the message
    elif status is DeliveryStatus.pending:
        delivery.next_attempt_at = now + backoff(delivery.attempts, result.retry_after)
        if result.hold is not None and result.retry_after is not None:
            _hold_others(session, delivery, result.hold == EVERY_TARGET, delivery.next_attempt_at)
    return status


def _follow_recipient(session: Session, delivery: Delivery, result: Result, actor: Actor) -> None:
    """A recipient gone or moved: its subscriber follows, in a savepoint, so the outcome is recorded whatever happens."""
    try:
        with session.begin_nested():
            if result.gone:
                mark_gone(session, delivery.channel, delivery.target, actor)
            if result.moved_to is not None:
                move_chat(session, delivery.channel, delivery.target, result.moved_to, actor)
    except Exception:  # the send's outcome matters more than following the chat
        log.exception("delivery %s: the recipient's subscription could not follow", delivery.id)


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


def settle(store: Store, campaign_ids: Sequence[int] | None, actor: Actor) -> int:
    """Campaigns whose deliveries all reached a final state are done (or done with errors); how many.

    `None`: every open campaign (at start-up: a run killed before its end left some open).
    """
    if campaign_ids is not None and not campaign_ids:
        return 0
    with store.sessions.begin() as session:
        # Locked first, in id order (PostgreSQL): a `retry` committing meanwhile is seen, not overwritten.
        still_open = select(Campaign.id).where(Campaign.status.in_(OPEN_CAMPAIGNS)).order_by(Campaign.id)
        if campaign_ids is not None:
            still_open = still_open.where(Campaign.id.in_(campaign_ids))
        locked = session.scalars(still_open.with_for_update()).all()
        return settle_campaigns(session, actor, locked) if locked else 0


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
            route = idempotent.get((delivery.channel, delivery.target)) or idempotent.get(
                (delivery.channel, EVERY_TARGET)
            )
            if route == delivery.transport:
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
    """Posts sent (or going out now) to a target since a moment (the local day's start), and the last one's time."""
    with store.sessions() as session:
        return posts_on(session, channel, target, since)


def posts_on(session: Session, channel: str, target: str, since: datetime) -> tuple[int, datetime | None]:
    """`sent_on` in a session of the caller's. A send in flight counts: another process may be making it."""
    moment = func.coalesce(Delivery.sent_at, Delivery.claimed_at)
    count, last = session.execute(
        select(func.coalesce(func.sum(case((moment >= since, 1), else_=0)), 0), func.max(moment)).where(
            Delivery.channel == channel,
            Delivery.target == target,
            Delivery.status.in_([DeliveryStatus.sent, DeliveryStatus.sending]),
        )
    ).one()
    return int(count), last
