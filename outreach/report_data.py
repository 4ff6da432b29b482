"""The manager's report as data: every figure of `outreach report`, for a period and any grouping.

One pass over the click log, at the finest grain any figure needs (channel,
campaign, item, local day), gives every table: the rows for `--by`, the daily
chart, topics, top items and campaigns are sums of it in Python. Visitors can be
summed too, because a visitor is counted per link and per day and each link has
one channel, campaign and item. The dict `build_report_data` returns is what
`--format json` prints and what the CSV, table and HTML views read.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from outreach.config import Settings
from outreach.models import (
    Campaign,
    Click,
    ClickKind,
    Delivery,
    DeliveryStatus,
    Item,
    Link,
    Source,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from outreach.report_period import Period
from outreach.reports import local_day

DIMENSIONS = ("channel", "campaign", "topic", "source", "day", "week", "month")
NO_TOPIC, NO_SOURCE, NO_CHANNEL = "(none)", "(none)", "(none)"
TOP_ITEMS = 10
FIGURES = ("sent", "clicks", "visitors", "repeats", "previews", "bots", "ctr", "median_first_click_seconds")


class ReportError(ValueError):
    """A report that cannot be made as asked (an unknown grouping); says what can."""


@dataclass
class Tally:
    """The countable figures of one group; `firsts` are seconds from a delivery to its first human click."""

    sent: int = 0
    clicks: int = 0
    visitors: int = 0
    repeats: int = 0
    previews: int = 0
    bots: int = 0
    firsts: list[float] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        """Fold another group's figures into this one."""
        self.sent += other.sent
        self.clicks += other.clicks
        self.visitors += other.visitors
        self.repeats += other.repeats
        self.previews += other.previews
        self.bots += other.bots
        self.firsts.extend(other.firsts)

    def figures(self) -> dict[str, Any]:
        """The figures as the report shows them; CTR is human clicks per delivery sent."""
        return {
            "sent": self.sent,
            "clicks": self.clicks,
            "visitors": self.visitors,
            "repeats": self.repeats,
            "previews": self.previews,
            "bots": self.bots,
            "ctr": round(self.clicks / self.sent, 3) if self.sent else None,
            "median_first_click_seconds": round(statistics.median(self.firsts), 1) if self.firsts else None,
        }


Grain = tuple[str, int | None, int | None, str]  # channel, campaign, item, local day (ISO)
COUNTED = and_(Click.kind == ClickKind.human, Click.repeat.is_(False))  # a person's click, not one of a burst
LONGEST_DAY = timedelta(hours=25)  # a local day, the day the clocks go back
# How far past the period a delivery's first click is looked for: the clicks since the end are read by
# time, and for a period long past, "since" would be every click since.
FIRST_CLICK_HORIZON = timedelta(days=30)


def parse_by(text: str | Sequence[str]) -> list[str]:
    """`channel,day` as a list of known dimensions, in the order given."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    wanted = [part.strip().lower() for part in parts if part.strip()]
    unknown = [part for part in wanted if part not in DIMENSIONS]
    if unknown or not wanted:
        raise ReportError(
            f"unknown grouping {', '.join(unknown) or text!r} (give one or more of {', '.join(DIMENSIONS)})"
        )
    return list(dict.fromkeys(wanted))


@dataclass
class Pass:
    """What the one pass over a period's clicks gives: the grains' figures, and each link's first click per day.

    Clicks are indexed by time (migration 0013: written into one index page per
    link, they cost the tracker half its speed), so nothing is read per link by
    its code: each delivery's first click and the businesses reached come from
    the days' first clicks, and where a day began before the moment asked about,
    from that one day's clicks.
    """

    session: Session
    period: Period
    grains: dict[Grain, Tally]
    # code -> the first counted click of each local day the link had one, as the driver gave it (text on
    # SQLite): most are never read, and reading is not free (0.15 s for a million clicks).
    day_firsts: dict[str, list[Any]]

    def first_from(self, code: str, moment: datetime) -> datetime | None:
        """The link's first counted click at or after `moment`, within the period.

        Between the last day's first click before `moment` and the next one, clicks
        can only belong to that day: if it may reach past `moment` (a day is at most
        25 hours, whatever the clock changes), the rest of it is read by the time index.
        """
        before: datetime | None = None
        for raw in sorted(self.day_firsts.get(code, ())):
            first = _moment(raw)
            if first >= moment:
                return self._rest_of_day(code, before, moment, first) or first
            before = first
        return self._rest_of_day(code, before, moment, self.period.end)

    def _rest_of_day(self, code: str, day_began: datetime | None, moment: datetime, until: datetime) -> datetime | None:
        """The first counted click in [moment, until) of the day that began at `day_began`, if any."""
        if day_began is None or moment >= day_began + LONGEST_DAY:
            return None
        found = self.session.scalar(
            select(func.min(Click.at)).where(
                Click.at >= moment, Click.at < min(until, day_began + LONGEST_DAY), Click.code == code, COUNTED
            )
        )
        return _moment(found) if found is not None else None


def _clicks(session: Session, period: Period) -> Pass:
    """One pass over the clicks of the period at the finest grain, with each link's first click per day."""
    day = local_day(session, Click.at, period.zone)
    human = Click.kind == ClickKind.human
    # A visitor is counted per link and day: grouped by link, the count is of the visitor key alone
    # (`tracking.visitor_key` of the network hash and the agent, migration 0011), an integer, and
    # the links' rows are summed here (faster than a distinct over "code|visitor" text: 1.15 vs 1.69 s).
    query = (
        select(
            Link.code,
            Link.channel,
            Link.campaign_id,
            day,
            func.sum(case((COUNTED, 1), else_=0)),
            func.sum(case((and_(human, Click.repeat.is_(True)), 1), else_=0)),
            func.sum(case((Click.kind == ClickKind.preview, 1), else_=0)),
            func.sum(case((Click.kind == ClickKind.bot, 1), else_=0)),
            func.count(func.distinct(case((human, Click.visitor)))),
            func.min(case((COUNTED, Click.at)), type_=NullType()),  # as the driver gives it
        )
        .join(Link, Link.code == Click.code)
        .where(Click.at >= period.start, Click.at < period.end)
        .group_by(Link.code, day)  # the link's channel and campaign follow from its code (the key)
    )
    # Each campaign's item, looked up once rather than joined to a million clicks.
    item_of = dict(session.execute(select(Campaign.id, Campaign.item_id)).all())
    found = Pass(session, period, {}, defaultdict(list))
    for code, channel, campaign, local, clicks, repeats, previews, bots, visitors, first in session.execute(query):
        grain = (channel or NO_CHANNEL, campaign, item_of.get(campaign), str(local))
        tally = found.grains.get(grain)
        if tally is None:
            tally = found.grains[grain] = Tally()
        tally.clicks += int(clicks or 0)
        tally.repeats += int(repeats or 0)
        tally.previews += int(previews or 0)
        tally.bots += int(bots or 0)
        tally.visitors += int(visitors or 0)
        if first is not None:
            found.day_firsts[code].append(first)
    return found


def _deliveries(session: Session, period: Period, found: Pass) -> None:
    """Deliveries sent in the period, and how long each waited for its first counted human click.

    Counted: a repeat (one of a burst) is never a visitor's first click. A first
    click after the period is read from the 30 days after its end, in one query.
    """
    into = found.grains
    day = local_day(session, Delivery.sent_at, period.zone)
    sent = (
        select(Delivery.channel, Delivery.campaign_id, Campaign.item_id, day, func.count())
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.status == DeliveryStatus.sent, Delivery.sent_at >= period.start, Delivery.sent_at < period.end)
        .group_by(Delivery.channel, Delivery.campaign_id, Campaign.item_id, day)
    )
    for channel, campaign, item, local, count in session.execute(sent):
        into.setdefault((channel, campaign, item, str(local)), Tally()).sent += int(count)
    waits = (
        select(Delivery.channel, Delivery.campaign_id, Campaign.item_id, day, Delivery.sent_at, Delivery.link_code)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(
            Delivery.status == DeliveryStatus.sent,
            Delivery.sent_at >= period.start,
            Delivery.sent_at < period.end,
            Delivery.link_code.is_not(None),
        )
    )
    unanswered: list[tuple[Grain, datetime, str]] = []
    for channel, campaign, item, local, sent_at, code in session.execute(waits):
        grain = (channel, campaign, item, str(local))
        clicked = found.first_from(code, sent_at)
        if clicked is None:
            unanswered.append((grain, sent_at, code))
        else:
            into.setdefault(grain, Tally()).firsts.append((clicked - sent_at).total_seconds())
    if not unanswered:
        return
    later = dict(
        session.execute(
            select(Click.code, func.min(Click.at))
            .where(Click.at >= period.end, Click.at < period.end + FIRST_CLICK_HORIZON, COUNTED)
            .group_by(Click.code)
        ).all()
    )
    for grain, sent_at, code in unanswered:
        if code in later:
            into.setdefault(grain, Tally()).firsts.append((_moment(later[code]) - sent_at).total_seconds())


def _moment(value: datetime | str) -> datetime:
    """A time as an aware datetime: SQLite hands back naive UTC, or text from a raw aggregate."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _week(day: str) -> str:
    start = date.fromisoformat(day)
    return (start - timedelta(days=start.weekday())).isoformat()


def build_report_data(
    session: Session,
    settings: Settings,
    period: Period,
    by: Sequence[str] = ("channel",),
    language: str = "vi",
) -> dict[str, Any]:
    """Every figure of the report for a period, grouped `by` the dimensions given (see the module)."""
    found = _clicks(session, period)
    _deliveries(session, period, found)
    grains = found.grains
    item_ids = {item for _, _, item, _ in grains if item is not None}
    items = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(item_ids)))} if item_ids else {}
    sources = dict(session.execute(select(Source.id, Source.name)).all())
    labels = {topic.id: topic.label.get(language) for topic in settings.schedule.topics}

    def keys(grain: Grain) -> Iterable[dict[str, Any]]:
        """The row keys a grain adds to (several when an item has several topics)."""
        channel, campaign, item_id, day = grain
        item = items.get(item_id) if item_id is not None else None
        base: dict[str, Any] = {}
        for dimension in by:
            if dimension == "channel":
                base["channel"] = channel
            elif dimension == "campaign":
                base["campaign"] = campaign
            elif dimension == "source":
                base["source"] = sources.get(item.source_id, NO_SOURCE) if item else NO_SOURCE
            elif dimension == "day":
                base["day"] = day
            elif dimension == "week":
                base["week"] = _week(day)
            elif dimension == "month":
                base["month"] = day[:7]
        if "topic" not in by:
            yield base
            return
        for topic in item.topics if item and item.topics else [NO_TOPIC]:
            yield {**base, "topic": topic}

    rows: dict[tuple[Any, ...], Tally] = defaultdict(Tally)
    row_keys: dict[tuple[Any, ...], dict[str, Any]] = {}
    total = Tally()
    daily: dict[tuple[str, str], int] = defaultdict(int)
    by_topic: dict[str, int] = defaultdict(int)
    by_item: dict[int, int] = defaultdict(int)
    by_campaign: dict[int, Tally] = defaultdict(Tally)
    for grain, tally in grains.items():
        channel, campaign, item_id, day = grain
        total.add(tally)
        for key in keys(grain):
            ordered = tuple(key[d] for d in by)
            rows[ordered].add(tally)
            row_keys[ordered] = key
        if tally.clicks:
            daily[(day, channel)] += tally.clicks
            if item_id is not None:
                by_item[item_id] += tally.clicks
                for topic in items[item_id].topics if item_id in items else []:
                    by_topic[topic] += tally.clicks
        if campaign is not None:
            by_campaign[campaign].add(tally)
    campaigns = (
        {c.id: c for c in session.scalars(select(Campaign).where(Campaign.id.in_(list(by_campaign))))}
        if by_campaign
        else {}
    )
    report: dict[str, Any] = {
        "generated_at": utcnow().astimezone(period.zone).isoformat(timespec="seconds"),
        "period": {
            "since": period.since.isoformat(),
            "until": period.until.isoformat(),
            "zone": period.zone.key,
            "label": period.label,
        },
        "by": list(by),
        "language": language,
        "headline": total.figures(),
        "rows": [
            {"key": row_keys[ordered], **tally.figures()}
            for ordered, tally in sorted(rows.items(), key=lambda pair: _sortable(pair[0]))
        ],
        "daily": [
            {"day": day, "channel": channel, "clicks": clicks} for (day, channel), clicks in sorted(daily.items())
        ],
        "topics": [
            {"topic": topic, "label": labels.get(topic, topic), "clicks": clicks}
            for topic, clicks in sorted(by_topic.items(), key=lambda pair: (-pair[1], pair[0]))
        ],
        "top_items": [
            {"item_id": item_id, "title": items[item_id].title, "url": items[item_id].url, "clicks": clicks}
            for item_id, clicks in sorted(by_item.items(), key=lambda pair: (-pair[1], pair[0]))[:TOP_ITEMS]
            if item_id in items
        ],
        "campaigns": [
            {
                "id": campaign_id,
                "title": campaigns[campaign_id].title if campaign_id in campaigns else "",
                "status": campaigns[campaign_id].status.value if campaign_id in campaigns else "",
                **{k: v for k, v in tally.figures().items() if k in ("sent", "clicks", "visitors", "ctr")},
            }
            for campaign_id, tally in sorted(by_campaign.items())
        ],
        "businesses": businesses_reached(session, settings, found),
        "portal": portal_section(session, period, daily),
        "subscribers": subscribers_section(session, settings, language),
        "surveys": surveys_section(session, language),
    }
    return report


def portal_section(
    session: Session, period: Period, tracked: dict[tuple[str, str], int]
) -> list[dict[str, Any]] | None:
    """Tracked clicks beside the portal's own referral hits per day and channel; None before any log import."""
    from outreach.models import LogImport
    from outreach.portal_logs import portal_hits

    if session.scalar(select(func.count()).select_from(LogImport)) == 0:
        return None
    portal = {(day.day.isoformat(), day.channel): day.hits for day in portal_hits(session, period.since, period.until)}
    keys = sorted(set(portal) | {(day, channel) for day, channel in tracked})
    return [
        {
            "day": day,
            "channel": channel,
            "tracked_clicks": tracked.get((day, channel), 0),
            "portal_hits": portal.get((day, channel), 0),
        }
        for day, channel in keys
    ]


def surveys_section(session: Session, language: str) -> list[dict[str, Any]] | None:
    """Each survey sent: respondents, counts per option in the report's language, free texts; None without any."""
    from outreach.models import Survey
    from outreach.survey import results

    names = list(session.scalars(select(Survey.name).order_by(Survey.id)))
    if not names:
        return None
    found = []
    for name in names:
        summary = results(session, name)
        found.append(
            {
                "name": summary.name,
                "title": summary.title.get(language),
                "respondents": summary.respondents,
                "questions": [
                    {
                        "id": each.question.id,
                        "text": each.question.text.get(language),
                        "counts": [
                            {"label": option.label(language), "count": each.counts.get(option.id, 0)}
                            for option in each.question.options
                        ],
                        "texts": list(each.texts),
                    }
                    for each in summary.questions
                ],
            }
        )
    return found


def _sortable(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(
        (value is None, "" if value is None else str(value) if not isinstance(value, int) else f"{value:012d}")
        for value in key
    )


def businesses_reached(session: Session, settings: Settings, clicks: Pass) -> dict[str, Any] | None:
    """Registered businesses (consent given) with a counted human click in the period; None when none registered.

    Businesses are counted by tax code: two chats of one firm are one business,
    and a chat without consent counts for nothing; a link counts from its consent on.
    """
    consenting = (Subscriber.consent.is_(True), Subscriber.tax_code.is_not(None))
    registered = int(session.scalar(select(func.count(func.distinct(Subscriber.tax_code))).where(*consenting)) or 0)
    if not registered:
        return None
    links = session.execute(
        select(Link.code, Link.channel, Subscriber.tax_code, Subscriber.consent_at)
        .join(Link, Link.subscriber_id == Subscriber.id)
        .where(*consenting)
    ).all()
    pairs = {
        (channel, tax_code)
        for code, channel, tax_code, consent_at in links
        if consent_at is not None and clicks.first_from(code, _moment(consent_at)) is not None
    }
    codes: dict[str, set[str]] = defaultdict(set)
    for channel, code in pairs:
        if code is not None:
            codes[channel or NO_CHANNEL].add(code)
    reached = len({code for _, code in pairs})
    reached_by_channel = [(channel, len(found)) for channel, found in codes.items()]
    goal = settings.schedule.reports
    active = goal.active_businesses
    return {
        "registered": registered,
        "reached": reached,
        "share_of_registered": round(reached / registered, 4),
        "active_in_province": active.count if active else None,
        "active_year": active.year if active else None,
        "active_source": active.source if active else None,
        "share_of_province": round(reached / active.count, 4) if active and active.count else None,
        "targets": list(goal.targets),
        "by_channel": [
            {"channel": channel or NO_CHANNEL, "businesses": int(n)}
            for channel, n in sorted(reached_by_channel, key=lambda pair: (-pair[1], pair[0] or ""))
        ],
        "note": "proxy",
    }


def subscribers_section(session: Session, settings: Settings, language: str) -> dict[str, Any] | None:
    """Subscribers by status, language and topic, and how many there were each day; None without any."""
    rows = session.execute(
        select(Subscriber.status, Subscriber.language, Subscriber.topics, Subscriber.created_at)
    ).all()
    if not rows:
        return None
    labels = {topic.id: topic.label.get(language) for topic in settings.schedule.topics}
    status: dict[str, int] = defaultdict(int)
    languages: dict[str, int] = defaultdict(int)
    topics: dict[str, int] = defaultdict(int)
    joined: dict[str, int] = defaultdict(int)
    for state, lang, chosen, created in rows:
        status[state.value] += 1
        joined[created.astimezone(settings.zone).date().isoformat()] += 1
        if state is SubscriberStatus.active:
            languages[lang] += 1
            for topic in chosen or []:
                topics[topic] += 1
    running, over_time = 0, []
    for day in sorted(joined):
        running += joined[day]
        over_time.append({"day": day, "subscribers": running})
    return {
        "by_status": dict(status),
        "by_language": dict(languages),
        "by_topic": [
            {"topic": topic, "label": labels.get(topic, topic), "subscribers": n}
            for topic, n in sorted(topics.items(), key=lambda pair: (-pair[1], pair[0]))
        ],
        "over_time": over_time,
    }
