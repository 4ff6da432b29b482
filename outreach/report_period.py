"""The period a report covers, as managers say it: `30d`, `this-month`, `2026-Q3`, or dates.

Days are the install's local days (Asia/Ho_Chi_Minh by default); `until` is
inclusive. The stored UTC bounds are the local midnights around the period.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAYS = re.compile(r"^(\d{1,4})d$")
_QUARTER = re.compile(r"^(\d{4})-?Q([1-4])$", re.IGNORECASE)
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_YEAR = re.compile(r"^(\d{4})$")
DEFAULT = "30d"


class PeriodError(ValueError):
    """A period that cannot be read; the message says which forms are."""


@dataclass(frozen=True)
class Period:
    """Local days `since`..`until` (both included), and how the user named them."""

    since: date
    until: date
    zone: ZoneInfo
    label: str

    @property
    def start(self) -> datetime:
        """The first moment, in UTC."""
        return datetime.combine(self.since, time(), self.zone).astimezone(UTC)

    @property
    def end(self) -> datetime:
        """The moment after the last day, in UTC."""
        return datetime.combine(self.until + timedelta(days=1), time(), self.zone).astimezone(UTC)

    @property
    def days(self) -> list[date]:
        """Every day of the period, in order."""
        return [self.since + timedelta(days=n) for n in range((self.until - self.since).days + 1)]


FORMS = "a date (2026-11-01), a number of days (30d), this-month, last-month, a month (2026-10), a quarter (2026-Q3) or a year"


def _span(text: str, today: date) -> tuple[date, date]:
    """The days a word names."""
    word = text.strip().lower()
    if found := _DAYS.match(word):
        days = int(found[1])
        if days < 1:
            raise PeriodError(f"{text!r}: at least 1d")
        return today - timedelta(days=days - 1), today
    if word == "today":
        return today, today
    if word == "this-month":
        return today.replace(day=1), today
    if word == "last-month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    if found := _QUARTER.match(word):
        year, quarter = int(found[1]), int(found[2])
        first = date(year, 3 * quarter - 2, 1)
        return first, _month_end(date(year, 3 * quarter, 1))
    if found := _MONTH.match(word):
        if not 1 <= int(found[2]) <= 12:
            raise PeriodError(f"{text!r} is not a month")
        first = date(int(found[1]), int(found[2]), 1)
        return first, _month_end(first)
    if found := _YEAR.match(word):
        year = int(found[1])
        return date(year, 1, 1), date(year, 12, 31)
    try:
        day = date.fromisoformat(word)
    except ValueError:
        raise PeriodError(f"{text!r} is not a period: give {FORMS}") from None
    return day, day


def _month_end(day: date) -> date:
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)


def parse_period(since: str | None, until: str | None, zone: ZoneInfo, now: datetime | None = None) -> Period:
    """The period from `--since` and `--until` (default: the last 30 days, today included).

    `--since` alone may name a whole span (`2026-Q3`, `this-month`); with
    `--until` the period runs from the start of one to the end of the other.
    """
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    first, last = _span(since or DEFAULT, today)
    if until is not None:
        last = _span(until, today)[1]
    if last < first:
        raise PeriodError(f"the period ends ({last}) before it starts ({first})")
    label = since or DEFAULT
    if until is not None:
        label = f"{label}..{until}"
    return Period(first, last, zone, label)
