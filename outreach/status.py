"""What an install holds right now, for `outreach status`: one look before acting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from outreach.models import Campaign, Click, Delivery, Item, Source


@dataclass(frozen=True)
class Status:
    """Counts by state, and when the last poll and the last click happened."""

    items: int
    campaigns: dict[str, int]
    deliveries: dict[str, int]
    clicks: dict[str, int]
    last_poll: datetime | None
    last_click: datetime | None


def _by(session: Session, column: InstrumentedAttribute[Any]) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column).order_by(column))
    return {(key.value if isinstance(key, StrEnum) else str(key)): n for key, n in rows}


def read_status(session: Session) -> Status:
    """The store's contents in a few grouped counts (cheap: one query per table)."""
    return Status(
        items=session.scalar(select(func.count()).select_from(Item)) or 0,
        campaigns=_by(session, Campaign.status),
        deliveries=_by(session, Delivery.status),
        clicks=_by(session, Click.kind),
        last_poll=session.scalar(select(func.max(Source.last_polled_at))),
        last_click=session.scalar(select(func.max(Click.at))),
    )
