"""Deliveries and clicks, per channel and per campaign, straight from the logs."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from outreach.models import Campaign, Click, ClickKind, Delivery, DeliveryStatus, Link

K = TypeVar("K")


@dataclass
class Counts:
    """Deliveries by status and clicks by kind for one row of a report."""

    deliveries: dict[DeliveryStatus, int] = field(default_factory=dict)
    clicks: dict[ClickKind, int] = field(default_factory=dict)
    # How deliveries went out: the platform itself, or the outbox standing in.
    transports: set[str] = field(default_factory=set)

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
        """Human clicks: the referral traffic the portal gets."""
        return self.clicks.get(ClickKind.human, 0)

    @property
    def crawlers(self) -> int:
        """Link-preview fetchers and other bots: requests, not people."""
        return self.clicks.get(ClickKind.preview, 0) + self.clicks.get(ClickKind.bot, 0)


@dataclass
class Report:
    """The report's two tables, keyed by channel and by campaign."""

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
        return total


def build_report(session: Session) -> Report:
    """Group the delivery and click logs by channel and by campaign."""
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
        select(Link.channel, Link.campaign_id, Click.kind, func.count())
        .join(Link, Link.code == Click.code)
        .group_by(Link.channel, Link.campaign_id, Click.kind)
    )
    for link_channel, link_campaign, kind, n in session.execute(clicks):
        _add(channels[link_channel or "(none)"].clicks, kind, n)
        if link_campaign is not None:
            _add(campaigns[link_campaign].clicks, kind, n)
    titles = dict(session.execute(select(Campaign.id, Campaign.title).where(Campaign.id.in_(list(campaigns)))).all())
    return Report(dict(sorted(channels.items())), dict(sorted(campaigns.items())), titles)


def _add(counter: dict[K, int], key: K, n: int) -> None:
    counter[key] = counter.get(key, 0) + n
