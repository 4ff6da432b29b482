"""Reading stored items and sources for people (listings); writing is ingest's job."""

from __future__ import annotations

from sqlalchemy import Text, select
from sqlalchemy.orm import Session

from outreach.models import Item, Source


def recent_items(session: Session, topic: str | None = None, limit: int = 20) -> list[Item]:
    """Newest items first, optionally only those filed under a topic."""
    query = select(Item).order_by(Item.published_at.desc(), Item.id.desc()).limit(limit)
    if topic:
        # Topic ids are [a-z0-9_-]: the quoted id matches one JSON array element
        # exactly, on SQLite and PostgreSQL alike.
        query = query.where(Item.topics.cast(Text).contains(f'"{topic}"', autoescape=True))
    return list(session.scalars(query))


def sources_by_name(session: Session) -> dict[str, Source]:
    """Stored source rows (poll outcomes) keyed by name."""
    return {source.name: source for source in session.scalars(select(Source))}
