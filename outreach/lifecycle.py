"""The one way a campaign or a delivery changes state: allowed moves only, each audited.

DESIGN §4. Every change, by staff from the CLI or by the dispatcher, goes through
`move_campaign`, `move_delivery` or `move_deliveries`, which refuse a move the
tables below do not allow (nothing changes then) and write an audit row: when,
who (the OS login, and the name given with --as), from, to, and why.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.orm import Session

from outreach.models import AuditEntry, Campaign, CampaignStatus, Delivery, DeliveryStatus, utcnow

C, D = CampaignStatus, DeliveryStatus
CAMPAIGN_MOVES: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    C.draft: frozenset({C.approved, C.rejected, C.cancelled}),
    C.approved: frozenset({C.scheduled, C.cancelled}),
    C.scheduled: frozenset({C.sending, C.done, C.done_with_errors, C.cancelled}),
    C.sending: frozenset({C.done, C.done_with_errors, C.cancelled}),
    C.done_with_errors: frozenset({C.sending}),  # `retry` sends its failed deliveries again
    C.done: frozenset(),
    C.cancelled: frozenset(),
    C.rejected: frozenset(),
}
DELIVERY_MOVES: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    D.pending: frozenset({D.sending, D.skipped}),  # skipped: its campaign was cancelled
    D.sending: frozenset({D.sent, D.pending, D.failed, D.skipped, D.unknown}),
    D.unknown: frozenset({D.sent, D.failed}),  # `settle`: an operator checked the target
    D.failed: frozenset({D.pending}),  # `retry`
    D.sent: frozenset(),
    D.skipped: frozenset(),
}
OPEN_CAMPAIGNS = frozenset({C.scheduled, C.sending})  # their deliveries may go out


class TransitionRefused(Exception):
    """A state change the lifecycle does not allow; nothing was changed."""


@dataclass(frozen=True)
class Actor:
    """Who acts: the OS login always, and the name given with --as / OUTREACH_STAFF if any."""

    login: str
    acting_as: str | None = None

    @classmethod
    def current(cls, acting_as: str | None = None) -> Actor:
        """The person at this terminal (or the service's account)."""
        return cls(getpass.getuser(), acting_as or None)

    @property
    def name(self) -> str:
        """The name shown and compared (two-person approval): --as if given, else the login."""
        return self.acting_as or self.login

    def __str__(self) -> str:
        return self.login if not self.acting_as else f"{self.acting_as} (login {self.login})"


def _audit(
    entity: str, entity_id: str, campaign_id: int | None, old: str | None, new: str, actor: Actor, note: str | None
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "entity": entity,
        "entity_id": entity_id,
        "campaign_id": campaign_id,
        "from_state": old,
        "to_state": new,
        "actor": actor.login,
        "acting_as": actor.acting_as,
        "note": note,
    }


def record(session: Session, entity: str, entity_id: str, to: str, actor: Actor, note: str | None = None) -> None:
    """An audit row for something that is not a campaign or delivery move (a channel resumed, a refusal)."""
    session.execute(insert(AuditEntry), [_audit(entity, entity_id, None, None, to, actor, note)])


def move_campaign(
    session: Session, campaign: Campaign, to: CampaignStatus, actor: Actor, note: str | None = None
) -> None:
    """Change a campaign's state if the lifecycle allows it, and audit it; else TransitionRefused."""
    old = campaign.status
    if to not in CAMPAIGN_MOVES[old]:
        allowed = ", ".join(sorted(CAMPAIGN_MOVES[old])) or "nothing: it is final"
        raise TransitionRefused(
            f"campaign {campaign.id} is {old.value}: it cannot become {to.value} (allowed: {allowed})"
        )
    campaign.status = to
    session.execute(
        insert(AuditEntry), [_audit("campaign", str(campaign.id), campaign.id, old.value, to.value, actor, note)]
    )


def note_campaign(session: Session, campaign: Campaign, actor: Actor, what: str, note: str) -> None:
    """An audit row on a campaign without a state change (created; an approval refused)."""
    state = campaign.status.value
    session.execute(
        insert(AuditEntry), [_audit("campaign", str(campaign.id), campaign.id, None, what or state, actor, note)]
    )


def move_delivery(
    session: Session, delivery: Delivery, to: DeliveryStatus, actor: Actor, note: str | None = None
) -> None:
    """Change one delivery's state if allowed, and audit it; else TransitionRefused."""
    old = delivery.status
    if to not in DELIVERY_MOVES[old]:
        raise TransitionRefused(f"delivery {delivery.id} is {old.value}: it cannot become {to.value}")
    delivery.status = to
    row = _audit("delivery", str(delivery.id), delivery.campaign_id, old.value, to.value, actor, note)
    session.execute(insert(AuditEntry), [row])


def move_deliveries(
    session: Session,
    which: Sequence[ColumnElement[bool]],
    old: DeliveryStatus,
    to: DeliveryStatus,
    actor: Actor,
    note: str | None = None,
    limit: int | None = None,
    skip_locked: bool = False,
    **values: Any,
) -> list[int]:
    """Move every delivery in state `old` matching `which` (at most `limit`) to `to`, in one UPDATE.

    The condition on the old state is the lock: of two dispatchers that pick the
    same row, only one changes it. With `skip_locked`, PostgreSQL hands rows
    another transaction holds to nobody else (FOR UPDATE SKIP LOCKED). Returns
    the ids moved, in id order.
    """
    if to not in DELIVERY_MOVES[old]:
        raise TransitionRefused(f"deliveries in {old.value} cannot become {to.value}")
    chosen = select(Delivery.id).where(Delivery.status == old, *which).order_by(Delivery.id)
    if limit is not None:
        chosen = chosen.limit(limit)
    if skip_locked:
        chosen = chosen.with_for_update(skip_locked=True)
    moved = session.execute(
        update(Delivery)
        .where(Delivery.id.in_(chosen.scalar_subquery()), Delivery.status == old)
        .values(status=to, **values)
        .returning(Delivery.id, Delivery.campaign_id)
        .execution_options(synchronize_session=False)
    ).all()
    if moved:
        rows = [_audit("delivery", str(i), c, old.value, to.value, actor, note) for i, c in moved]
        session.execute(insert(AuditEntry), rows)
    return sorted(i for i, _ in moved)


def move_campaigns(
    session: Session, ids: Sequence[int], old: CampaignStatus, to: CampaignStatus, actor: Actor, note: str | None = None
) -> list[int]:
    """Move every campaign of `ids` that is in state `old` to `to`, in one UPDATE; returns the ids moved.

    For the dispatcher, which opens and closes campaigns by the hundred a second.
    """
    if to not in CAMPAIGN_MOVES[old]:
        raise TransitionRefused(f"campaigns in {old.value} cannot become {to.value}")
    if not ids:
        return []
    moved = session.execute(
        update(Campaign)
        .where(Campaign.id.in_(ids), Campaign.status == old)
        .values(status=to)
        .returning(Campaign.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    done = sorted(moved)
    if done:
        rows = [_audit("campaign", str(i), i, old.value, to.value, actor, note) for i in done]
        session.execute(insert(AuditEntry), rows)
    return done


def move_each(
    session: Session, rows: Sequence[dict[str, Any]], old: DeliveryStatus, to: DeliveryStatus, actor: Actor
) -> None:
    """Move each delivery (`id`, `campaign_id`, and its own new column values) from `old` to `to`.

    One executemany UPDATE and one audit INSERT however many rows: the dispatcher
    records its sends this way. Any row not in `old` refuses the whole batch
    (TransitionRefused; the caller rolls back and records the rows one by one).
    """
    if to not in DELIVERY_MOVES[old]:
        raise TransitionRefused(f"deliveries in {old.value} cannot become {to.value}")
    if not rows:
        return
    columns = sorted(set(rows[0]) - {"id", "campaign_id"})
    if any(set(row) != set(rows[0]) for row in rows):
        raise ValueError("move_each: every row must set the same columns")
    statement = (
        update(Delivery.__table__)  # type: ignore[arg-type]
        .where(Delivery.__table__.c.id == bindparam("b_id"), Delivery.__table__.c.status == old)
        .values(status=to, **{column: bindparam(f"b_{column}") for column in columns})
    )
    params = [{"b_id": row["id"], **{f"b_{column}": row.get(column) for column in columns}} for row in rows]
    changed = session.connection().execute(statement, params).rowcount
    if changed != len(rows):
        raise TransitionRefused(f"{len(rows) - changed} of {len(rows)} deliveries were no longer {old.value}")
    audit = [_audit("delivery", str(row["id"]), row["campaign_id"], old.value, to.value, actor, None) for row in rows]
    session.execute(insert(AuditEntry), audit)
