"""When a post may go out: weekly posting windows, public holidays, daily caps, minimum gaps.

Staff set these per channel so a provincial portal posts in office hours, not on Tết,
and not in bursts. Everything here is pure: the caller passes the clock, the zone and
what was already sent, and gets back the earliest allowed moment (aware UTC) with a
reason a person can read in `outreach campaign show`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# A slot is searched for this many local days ahead; past that the configuration is hopeless.
SEARCH_DAYS = 400
# `time` has no 24:00: a window ending at midnight stores time(0), which can never be a real end.
MIDNIGHT = time(0)

_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_EXAMPLE = "like 'Mon-Fri 07:30-11:30'"


@dataclass(frozen=True)
class Window:
    """One weekly slot when posting is allowed: these days of the week (0=Mon..6=Sun), local [start, end).

    `end == time(0)` means 24:00 (the end of the day); a window never crosses midnight.
    """

    days: frozenset[int]
    start: time
    end: time

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", frozenset(self.days))
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"window days must be a non-empty set of 0 (Mon) .. 6 (Sun), not {sorted(self.days)}")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError("window times are local wall-clock times: give them without tzinfo")
        if self.end != MIDNIGHT and self.start >= self.end:
            raise ValueError(f"window start {_hhmm(self.start)} is not before end {_hhmm(self.end)}")

    def __str__(self) -> str:
        return f"{_days_text(self.days)} {self.hours()}"

    def hours(self) -> str:
        """The local time range as written in config, e.g. '07:30-11:30' or '00:00-24:00'."""
        end = "24:00" if self.end == MIDNIGHT else _hhmm(self.end)
        return f"{_hhmm(self.start)}-{end}"

    def bounds(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """This window on one local day, as aware UTC [start, end): comparisons stay right across DST."""
        start = datetime.combine(day, self.start, tzinfo=zone)
        if self.end == MIDNIGHT:
            end = datetime.combine(day + timedelta(days=1), MIDNIGHT, tzinfo=zone)
        else:
            end = datetime.combine(day, self.end, tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)


def parse_window(text: str, written: str | None = None) -> Window:
    """Read a window from config ("Mon-Fri 07:30-11:30", "Mon,Wed,Fri 13:30-17:00", "Fri-Mon 09:00-24:00").

    Errors name the text and the fault, because they are shown to staff as config errors.
    """

    def bad(why: str) -> ValueError:
        return ValueError(f"bad window {written or text!r}: {why}")

    parts = text.split()
    if len(parts) < 2:
        raise bad(f"expected days and a time range, {_EXAMPLE}")
    days_text, hours = "".join(parts[:-1]), parts[-1]
    days: set[int] = set()
    for item in days_text.split(","):
        if not item:
            raise bad(f"empty day in {days_text!r}")
        ends = item.split("-")
        if len(ends) > 2:
            raise bad(f"day range {item!r} has more than two ends")
        first, last = (_day(end, bad) for end in (ends[0], ends[-1]))
        if len(ends) == 2 and first == last:
            raise bad(
                f"day range {item!r} starts and ends on the same day (write {ends[0]!r}, or 'Mon-Sun' for every day)"
            )
        days.update((first + step) % 7 for step in range((last - first) % 7 + 1))

    times = hours.split("-")
    if len(times) != 2 or not all(_TIME.fullmatch(t) for t in times):
        raise bad(f"time range {hours!r} is not HH:MM-HH:MM")
    start, end = (_time(t, bad, is_end=i == 1) for i, t in enumerate(times))
    if end != MIDNIGHT and start >= end:
        hint = " (split a window that crosses midnight in two)" if start > end else ""
        raise bad(f"start {_hhmm(start)} is not before end {_hhmm(end)}{hint}")
    return Window(frozenset(days), start, end)


def parse_windows(text: str) -> tuple[Window, ...]:
    """Read one config entry that may give one day range several hours: "Mon-Fri 07:30-11:30, 13:30-17:00"."""
    first_time = _TIME.search(text)
    if first_time is None:
        return (parse_window(text),)  # its error says what is missing
    days, hours = text[: first_time.start()], text[first_time.start() :]
    if any(not each.strip() for each in hours.split(",")):
        raise ValueError(f"bad window {text!r}: an empty time range between commas")
    return tuple(parse_window(f"{days} {each.strip()}", written=text) for each in hours.split(","))


def _day(name: str, bad: Callable[[str], ValueError]) -> int:
    for number, known in enumerate(DAY_NAMES):
        if name.lower() == known.lower():
            return number
    raise bad(f"unknown day {name!r} ({', '.join(DAY_NAMES)})")


def _time(text: str, bad: Callable[[str], ValueError], *, is_end: bool) -> time:
    match = _TIME.fullmatch(text)
    assert match is not None
    hour, minute = int(match[1]), int(match[2])
    if (hour, minute) == (24, 0):
        if is_end:
            return MIDNIGHT
        raise bad("24:00 can only end a window")
    if hour > 23 or minute > 59:
        raise bad(f"no such time {text!r}")
    return time(hour, minute)


@dataclass(frozen=True)
class Holidays:
    """Days nothing is posted: Vietnam's public holidays (lunar ones included) plus extra dates.

    The yearly government swap days are not all in the library: staff add them as `extra`.
    `language` is pinned because the library otherwise follows the host's locale.
    """

    country: str = "VN"
    extra: frozenset[date] = frozenset()
    language: str = "en_US"
    _years: dict[int, dict[date, str]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", frozenset(self.extra))
        try:
            import holidays as holidays_lib  # imported when holidays matter: it costs 0.1 s

            holidays_lib.country_holidays(self.country, language=self.language)
        except NotImplementedError as error:
            raise ValueError(f"no public holidays known for country {self.country!r}") from error

    def __contains__(self, day: object) -> bool:
        """Whether nothing is posted on this local date."""
        return isinstance(day, date) and self.name(day) is not None

    def name(self, day: date) -> str | None:
        """The holiday's name for people ("extra day off" for a configured date), or None on a working day."""
        if isinstance(day, datetime):
            day = day.date()
        year = self._years.get(day.year)
        if year is None:  # one library call per year: it computes lunar dates each time
            import holidays as holidays_lib

            found = holidays_lib.country_holidays(self.country, years=day.year, language=self.language)
            year = self._years[day.year] = {when: str(name) for when, name in found.items()}
        if day in year:
            return year[day]
        return "extra day off" if day in self.extra else None


@dataclass(frozen=True)
class Pacing:
    """When one target of a channel may receive its next post."""

    windows: tuple[Window, ...] = ()  # empty: any time
    skip_holidays: bool = False
    max_per_day: int | None = None  # posts per local calendar day, per target
    min_gap: timedelta | None = None  # between two posts on the same target

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))
        if self.max_per_day is not None and self.max_per_day < 1:
            raise ValueError(f"max_per_day must be at least 1, not {self.max_per_day}")
        if self.min_gap is not None and self.min_gap <= timedelta(0):
            raise ValueError(f"min_gap must be positive, not {self.min_gap}")


@dataclass(frozen=True)
class Verdict:
    """The answer to "may it go now?": the earliest allowed moment, and why it is not now."""

    when: datetime  # aware UTC: now if it may go now, else the earliest moment it may
    why: str  # "" when now; else the first reason found, for people


def next_slot(
    pacing: Pacing, holidays: Holidays, zone: ZoneInfo, now: datetime, sent_today: int, last_sent: datetime | None
) -> Verdict:
    """Whether a post may go to this target now, and if not the earliest moment it may, and why.

    `sent_today` counts posts on the target during the local calendar day of `now`.
    Raises ValueError when no slot exists within SEARCH_DAYS (e.g. every window day is a holiday).
    """
    now = _as_utc(now, "now")
    if sent_today < 0:
        raise ValueError(f"sent_today cannot be negative ({sent_today})")
    today = now.astimezone(zone).date()
    why = ""
    earliest = now
    if pacing.skip_holidays and today in holidays:
        why = f"holiday on {today:%d/%m} ({holidays.name(today)})"
    if pacing.max_per_day is not None and sent_today >= pacing.max_per_day:
        earliest = _midnight(today + timedelta(days=1), zone)
        posts = "post" if sent_today == 1 else "posts"
        why = why or f"{sent_today} {posts} today already (max_per_day {pacing.max_per_day})"
    when = _first_open(pacing, holidays, zone, earliest)
    if last_sent is not None and pacing.min_gap is not None:
        last_sent = _as_utc(last_sent, "last_sent")
        gap_end = last_sent + pacing.min_gap
        # The gap is a reason only if it moves the answer: before a window opens anyway, it does not.
        if gap_end > when:
            when = _first_open(pacing, holidays, zone, gap_end)
            ago = f"{_span(now - last_sent, exact=False)} ago" if last_sent <= now else f"at {_clock(last_sent, zone)}"
            why = why or f"last post {ago} (min_gap {_span(pacing.min_gap)})"
    if when == now:
        return Verdict(now, "")
    why = why or f"outside the posting windows ({_windows_text(pacing.windows)})"
    return Verdict(when, f"{why} until {_until(when, today, zone)}{_skipped(pacing, holidays, today, when, zone)}")


def _skipped(pacing: Pacing, holidays: Holidays, today: date, when: datetime, zone: ZoneInfo) -> str:
    """', after holidays 04/02-10/02 (Lunar New Year)': the days off passed over after today, if any."""
    if not pacing.skip_holidays or today in holidays:  # the reason given names the holiday already
        return ""
    span = (when.astimezone(zone).date() - today).days
    days = [today + timedelta(days=n) for n in range(1, span) if today + timedelta(days=n) in holidays]
    if not days:
        return ""
    names = list(dict.fromkeys(str(holidays.name(day)) for day in days))
    dates = f"{days[0]:%d/%m}" if len(days) == 1 else f"{days[0]:%d/%m}-{days[-1]:%d/%m}"
    return f", after {'holiday' if len(days) == 1 else 'holidays'} {dates} ({min(names, key=len)})"


def describe(pacing: Pacing) -> str:
    """A short summary of a pacing for people, e.g. in `outreach channel show`."""
    parts = [_windows_text(pacing.windows) if pacing.windows else "any time"]
    if pacing.skip_holidays:
        parts.append("no posts on public holidays")
    if pacing.max_per_day is not None:
        parts.append(f"at most {pacing.max_per_day} a day")
    if pacing.min_gap is not None:
        parts.append(f"{_span(pacing.min_gap)} apart")
    return "; ".join(parts)


def _first_open(pacing: Pacing, holidays: Holidays, zone: ZoneInfo, start: datetime) -> datetime:
    """The first moment at or after `start` (UTC) that is on a non-holiday and inside a window."""
    first_day = start.astimezone(zone).date()
    for offset in range(SEARCH_DAYS):
        day = first_day + timedelta(days=offset)
        if pacing.skip_holidays and day in holidays:
            continue
        if not pacing.windows:
            return max(start, _midnight(day, zone))
        opens = [
            max(begin, start)
            for window in pacing.windows
            if day.weekday() in window.days
            for begin, end in [window.bounds(day, zone)]
            if end > start
        ]
        if opens:
            return min(opens)
    where = f"the days with posting windows ({_windows_text(pacing.windows)})" if pacing.windows else "the days"
    raise ValueError(f"no posting slot in the {SEARCH_DAYS} days from {first_day:%d/%m/%Y}: {where} are all holidays")


def _as_utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, not naive {moment.isoformat()}")
    return moment.astimezone(UTC)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, MIDNIGHT, tzinfo=zone).astimezone(UTC)


def _hhmm(moment: time) -> str:
    return f"{moment:%H:%M}" if moment.second == 0 else f"{moment:%H:%M:%S}"


def _clock(moment: datetime, zone: ZoneInfo) -> str:
    return _hhmm(moment.astimezone(zone).time())


def _until(when: datetime, today: date, zone: ZoneInfo) -> str:
    """The moment as a person in `zone` reads it, relative to today: '10:42', 'tomorrow 07:30', 'Mon 02/02 07:30'."""
    local = when.astimezone(zone)
    clock = _hhmm(local.time())
    if local.date() == today:
        return clock
    if local.date() == today + timedelta(days=1):
        return f"tomorrow {clock}"
    day = f"{DAY_NAMES[local.weekday()]} {local:%d/%m}"
    return f"{day} {clock}" if local.year == today.year else f"{day}/{local.year} {clock}"


def _span(length: timedelta, *, exact: bool = True) -> str:
    """'45 s', '60 min', '2 h 30 min'; `exact` keeps leftover seconds, else they are dropped (for "ago")."""
    seconds = int(length.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 120:
        text = f"{minutes} min"
    else:
        hours, minutes = divmod(minutes, 60)
        text = f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{text} {rest} s" if exact and rest else text


def _days_text(days: frozenset[int]) -> str:
    """Days as config writes them: runs of consecutive days (wrapping past Sunday) as ranges, 'Mon-Fri,Sun'."""
    if len(days) == 7:
        return "Mon-Sun"
    runs = []
    for first in sorted(day for day in days if (day - 1) % 7 not in days):
        last = first
        while (last + 1) % 7 in days:
            last = (last + 1) % 7
        runs.append(DAY_NAMES[first] if first == last else f"{DAY_NAMES[first]}-{DAY_NAMES[last]}")
    return ",".join(runs)


def _windows_text(windows: tuple[Window, ...]) -> str:
    """'Mon-Fri 07:30-11:30, 13:30-17:00, Sat 08:00-10:00': consecutive windows on the same days share the days."""
    parts: list[str] = []
    previous: frozenset[int] | None = None
    for window in windows:
        parts.append(window.hours() if window.days == previous else str(window))
        previous = window.days
    return ", ".join(parts)
