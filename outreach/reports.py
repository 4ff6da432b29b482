"""Deliveries and clicks, per channel and per campaign, straight from the logs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from outreach.models import Campaign, Click, ClickKind, Delivery, DeliveryStatus, Link

K = TypeVar("K")
UTC_ZONE = ZoneInfo("UTC")


@dataclass
class Counts:
    """Deliveries by status and clicks by kind for one row of a report."""

    deliveries: dict[DeliveryStatus, int] = field(default_factory=dict)
    clicks: dict[ClickKind, int] = field(default_factory=dict)
    # How deliveries went out: the platform itself, or the outbox standing in.
    transports: set[str] = field(default_factory=set)
    repeats: int = 0  # human clicks in a burst from one visitor on one link: evidence, not visits
    visitors: int = 0  # distinct visitors (network hash + agent) per link and per day

    @property
    def sent(self) -> int:
        return self.deliveries.get(DeliveryStatus.sent, 0)

    @property
    def waiting(self) -> int:
        """Not yet out: pending or being sent."""
        return self.deliveries.get(DeliveryStatus.pending, 0) + self.deliveries.get(DeliveryStatus.sending, 0)

    @property
    def problems(self) -> int:
        """Failed, skipped, or of unknown fate."""
        return sum(
            self.deliveries.get(s, 0) for s in (DeliveryStatus.failed, DeliveryStatus.skipped, DeliveryStatus.unknown)
        )

    @property
    def visits(self) -> int:
        """Human clicks, repeats left out: the referral traffic the portal gets."""
        return self.clicks.get(ClickKind.human, 0) - self.repeats

    @property
    def previews(self) -> int:
        """Chat and social apps fetching a link card: requests, not people."""
        return self.clicks.get(ClickKind.preview, 0)

    @property
    def bots(self) -> int:
        """Search engines, tools and anything not shaped like a browser."""
        return self.clicks.get(ClickKind.bot, 0)


@dataclass
class Report:
    """Deliveries and clicks keyed by channel and by campaign (the manager's report is `report_data`)."""

    channels: dict[str, Counts]
    campaigns: dict[int, Counts]
    campaign_titles: dict[int, str]

    @property
    def total(self) -> Counts:
        """All channels together."""
        total = Counts()
        for counts in self.channels.values():
            for status, n in counts.deliveries.items():
                _add(total.deliveries, status, n)
            for kind, n in counts.clicks.items():
                _add(total.clicks, kind, n)
            total.repeats += counts.repeats
            total.visitors += counts.visitors
        return total


def build_report(session: Session, zone: ZoneInfo = UTC_ZONE) -> Report:
    """Group the delivery and click logs by channel and by campaign; days are `zone`'s."""
    channels: defaultdict[str, Counts] = defaultdict(Counts)
    campaigns: defaultdict[int, Counts] = defaultdict(Counts)
    deliveries = select(
        Delivery.channel, Delivery.campaign_id, Delivery.status, Delivery.transport, func.count()
    ).group_by(Delivery.channel, Delivery.campaign_id, Delivery.status, Delivery.transport)
    for channel, campaign_id, status, transport, n in session.execute(deliveries):
        _add(channels[channel].deliveries, status, n)
        _add(campaigns[campaign_id].deliveries, status, n)
        if transport:
            channels[channel].transports.add(transport)
    clicks = (
        select(Link.channel, Link.campaign_id, Click.kind, Click.repeat, func.count())
        .join(Link, Link.code == Click.code)
        .group_by(Link.channel, Link.campaign_id, Click.kind, Click.repeat)
    )
    for link_channel, link_campaign, kind, repeat, n in session.execute(clicks):
        rows = [channels[link_channel or "(none)"]] + ([campaigns[link_campaign]] if link_campaign is not None else [])
        for counts in rows:
            _add(counts.clicks, kind, n)
            if repeat and kind is ClickKind.human:
                counts.repeats += n
    # A visitor: one network hash and agent (their key, `Click.visitor`) on one link on one day, however often.
    visits = (
        select(Click.code, local_day(session, Click.at, zone), Click.visitor)
        .where(Click.kind == ClickKind.human)
        .distinct()
        .subquery()
    )
    visitors = (
        select(Link.channel, Link.campaign_id, func.count())
        .join(visits, visits.c.code == Link.code)
        .group_by(Link.channel, Link.campaign_id)
    )
    for link_channel, link_campaign, n in session.execute(visitors):
        channels[link_channel or "(none)"].visitors += n
        if link_campaign is not None:
            campaigns[link_campaign].visitors += n
    titles = dict(session.execute(select(Campaign.id, Campaign.title).where(Campaign.id.in_(list(campaigns)))).all())
    return Report(dict(sorted(channels.items())), dict(sorted(campaigns.items())), titles)


def local_day(session: Session, at: Any, zone: ZoneInfo) -> ColumnElement[Any]:
    """The calendar day of a stored time in `zone` (a visitor at 06:30 and 07:30 in Quảng Ngãi is one day)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone(zone.key, at))
    # SQLite holds naive UTC text; the zone's offset now (Vietnam keeps one all year).
    offset = zone.utcoffset(datetime.now(zone)) or timedelta()
    return func.date(at, f"{int(offset.total_seconds()):+d} seconds")


def _add(counter: dict[K, int], key: K, n: int) -> None:
    counter[key] = counter.get(key, 0) + n
