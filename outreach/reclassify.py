"""Judge stored clicks again with today's agent rules (`outreach clicks reclassify`).

Rules improve (a new link-card fetcher, an install's own pattern) after clicks
were counted; the reports should not keep yesterday's mistakes. Stored clicks
were all GETs (a HEAD is never stored), so each is judged from its stored agent
exactly as the tracker judges a live one, and only rows whose kind changes are
written. A click without its visitor key (written by an outreach older than
migration 0011 while that ran) gets it on the way. The work goes in id-ordered
chunks, one short transaction each: the tracker keeps recording clicks
meanwhile, and a run cut short can simply be run again (it is idempotent).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, select, update

from outreach.agents import Classifier
from outreach.db import Store
from outreach.models import Click, ClickKind
from outreach.tracking import visitor_key

CHUNK = 5_000


@dataclass
class Reclassified:
    """How many clicks were judged again, how many moved from one kind to another, how many got their key."""

    checked: int = 0
    changed: Counter[tuple[ClickKind, ClickKind]] = field(default_factory=Counter)
    keyed: int = 0

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


def reclassify(store: Store, classifier: Classifier, since: datetime | None = None, chunk: int = CHUNK) -> Reclassified:
    """Set each stored click's kind (at or after `since`, else all) to what `classifier` says now, and its key."""
    done = Reclassified()
    with store.sessions() as session:
        first = session.scalar(select(func.min(Click.id)).where(*_after(since)))
    if first is None:
        return done
    last_id = first - 1  # ids follow time closely: start at the first click in range, not at the first ever
    while True:
        with store.sessions.begin() as session:
            rows = session.execute(
                select(Click.id, Click.kind, Click.user_agent, Click.ip_hash, Click.visitor)
                .where(Click.id > last_id, Click.kind != ClickKind.head, *_after(since))
                .order_by(Click.id)
                .limit(chunk)
            ).all()
            if not rows:
                return done
            updates = []
            for click_id, kind, agent, ip_hash, visitor in rows:
                now = classifier.kind("GET", agent or "")
                key = visitor_key(ip_hash, agent)
                if now is not kind or visitor != key:
                    updates.append({"id": click_id, "kind": now, "visitor": key})
                    if now is not kind:
                        done.changed[(kind, now)] += 1
                    if visitor != key:
                        done.keyed += 1
            if updates:
                session.execute(update(Click), updates)  # one executemany, by primary key
            done.checked += len(rows)
            last_id = rows[-1].id


def _after(since: datetime | None) -> list[ColumnElement[bool]]:
    return [] if since is None else [Click.at >= since]
