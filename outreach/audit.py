"""The coverage audit: what the portal published per topic and per required section, lately.

A provincial portal is scored on its quality (indicator 3.11), and Decree
42/2022/NĐ-CP lists the information an agency's portal must publish. Outreach
already reads everything the portal publishes, so it can tell staff which of
those sections got nothing in the last 30 or 90 days before an assessor does.
Sections are mapped in `schedules.yaml` (`audit.sections`) onto topics, sources
and URL paths; topics are listed too, for information, with the items no
keyword filed (what the keywords miss).

Windows run back from `now` (rolling days, not calendar months); an item dated
after `now` is not counted. Dates are shown in the install's time zone.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from outreach import config
from outreach.models import Item, Source
from outreach.tables import fitted_table

State = Literal["ok", "stale", "missing"]

_BATCH = 1000  # rows fetched at a time: the whole history may be read for a section never published


@dataclass(frozen=True)
class Tally:
    """Items published in each window (shortest first) and the newest one's time (UTC), if any ever was."""

    counts: tuple[int, ...]
    newest: datetime | None


@dataclass(frozen=True)
class Row:
    """One audit section or topic: its tally and what that means.

    `missing`: nothing in the longest window; `stale`: nothing in the shortest
    but some in the longest. Only a required section that is not `ok` is a problem.
    """

    id: str
    label: config.Labels
    required: bool
    tally: Tally
    state: State

    @property
    def problem(self) -> bool:
        """Whether staff must act: a required section with nothing lately."""
        return self.required and self.state != "ok"


@dataclass(frozen=True)
class Coverage:
    """The audit at one moment: sections, topics and the unfiled items, over the same windows."""

    now: datetime
    zone: ZoneInfo
    windows_days: tuple[int, ...]  # ascending
    sections: tuple[Row, ...]
    topics: tuple[Row, ...]
    unfiled: Tally

    @property
    def required(self) -> list[Row]:
        """The sections the portal must publish."""
        return [row for row in self.sections if row.required]

    def required_in(self, state: State) -> list[Row]:
        """The required sections in a state."""
        return [row for row in self.required if row.state == state]


# --- counting ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Seen:
    """What the audit needs of one item to tell where it belongs."""

    topics: frozenset[str]
    source: str
    path: str


_Matcher = Callable[[_Seen], bool]


@dataclass
class _Counter:
    """A tally being made: items arrive newest first, so the first one is the newest."""

    matches: _Matcher
    counts: list[int]
    newest: datetime | None = None

    def add(self, published: datetime, starts: Sequence[datetime]) -> None:
        if self.newest is None:
            self.newest = published
        for i, start in enumerate(starts):
            if published >= start:
                self.counts[i] += 1

    def tally(self) -> Tally:
        return Tally(tuple(self.counts), self.newest)


def _section_matcher(section: config.AuditSection) -> _Matcher:
    """An item counts for a section when filed under one of its topics, from one of its sources, or at one of its paths."""
    topics, sources = frozenset(section.topics), frozenset(section.sources)
    paths = [re.compile(pattern) for pattern in section.paths]

    def matches(seen: _Seen) -> bool:
        return bool(seen.topics & topics or seen.source in sources or any(path.search(seen.path) for path in paths))

    return matches


def _topic_matcher(topic_id: str) -> _Matcher:
    return lambda seen: topic_id in seen.topics


def _unfiled(seen: _Seen) -> bool:
    return not seen.topics


def _path(url: str) -> str:
    """The URL's path percent-decoded, so a pattern can be written as the address bar shows it."""
    return unquote(urlsplit(url).path)


def _statement(now: datetime) -> Select[list[str], str, datetime, str]:
    """Every item published up to `now`, newest first, with only the columns the audit reads."""
    return (
        select(Item.topics, Item.url, Item.published_at, Source.name)
        .join(Source, Source.id == Item.source_id)
        .where(Item.published_at <= now)
        .order_by(Item.published_at.desc(), Item.id.desc())
        .execution_options(yield_per=_BATCH)
    )


def _count(session: Session, now: datetime, starts: Sequence[datetime], counters: Sequence[_Counter]) -> None:
    """Feed each item to the counters it matches; stop once past the windows with every newest known.

    A section the portal never published reads the whole history, which is a
    few columns of some tens of thousands of rows at most.
    """
    with session.execute(_statement(now)) as result:
        for topics, url, published, source in result:
            if published < starts[-1] and all(counter.newest is not None for counter in counters):
                return
            seen = _Seen(frozenset(topics or ()), source, _path(url))
            for counter in counters:
                if counter.matches(seen):
                    counter.add(published, starts)


def _state(counts: Sequence[int]) -> State:
    if counts[-1] == 0:
        return "missing"
    return "stale" if counts[0] == 0 else "ok"


def _row(id_: str, label: config.Labels, required: bool, counter: _Counter) -> Row:
    tally = counter.tally()
    return Row(id_, label, required, tally, _state(tally.counts))


def coverage(session: Session, schedule: config.Schedule, now: datetime) -> Coverage:
    """Per audit section and per topic: items published in each window before `now`, the newest, the state."""
    windows = tuple(sorted(set(schedule.audit.windows_days)))
    starts = [now - timedelta(days=days) for days in windows]

    def counter(matches: _Matcher) -> _Counter:
        return _Counter(matches, [0] * len(windows))

    sections = [(section, counter(_section_matcher(section))) for section in schedule.audit.sections]
    topics = [(topic, counter(_topic_matcher(topic.id))) for topic in schedule.topics]
    unfiled = counter(_unfiled)
    _count(session, now, starts, [*(c for _, c in sections), *(c for _, c in topics), unfiled])
    return Coverage(
        now=now,
        zone=ZoneInfo(schedule.timezone),
        windows_days=windows,
        sections=tuple(_row(s.id, s.label, s.required, c) for s, c in sections),
        topics=tuple(_row(t.id, t.label, False, c) for t, c in topics),
        unfiled=unfiled.tally(),
    )


def exit_code(coverage: Coverage) -> int:
    """1 when a required section has nothing in the longest window (for cron and monitoring), else 0."""
    return 1 if coverage.required_in("missing") else 0


# --- rendering ---------------------------------------------------------------------


def _labels(vi: str, en: str) -> config.Labels:
    return config.Labels(vi=vi, en=en)


TITLE = _labels(
    "Độ phủ thông tin trên Cổng (chỉ số 3.11; Nghị định 42/2022/NĐ-CP), tính đến {now} ({zone})",
    "Portal coverage (indicator 3.11; Decree 42/2022/NĐ-CP) as of {now} ({zone})",
)
SECTIONS = _labels("Thông tin theo Nghị định 42/2022", "Sections (Decree 42/2022)")
TOPICS = _labels("Chủ đề (để tham khảo)", "Topics (for information)")
SECTION = _labels("Mục", "Section")
TOPIC = _labels("Chủ đề", "Topic")
WINDOW = _labels("{days} ngày qua", "last {days} days")
NEWEST = _labels("Mới nhất", "Newest")
STATE = _labels("Trạng thái", "State")
STATES: dict[State, config.Labels] = {
    "ok": _labels("đạt", "ok"),
    "stale": _labels("chưa cập nhật", "stale"),
    "missing": _labels("thiếu", "missing"),
}
OPTIONAL = _labels("không bắt buộc", "optional")
UNFILED = _labels("Chưa xếp chủ đề nào", "Filed under no topic")
MISSING = _labels(
    "{count} trên {total} mục bắt buộc không có tin nào trong {days} ngày qua",
    "{count} of {total} required sections have nothing in {days} days",
)
STALE = _labels("Chưa cập nhật trong {days} ngày qua", "Nothing in the last {days} days")
NO_SECTIONS = _labels(
    "Chưa khai báo mục bắt buộc nào (audit.sections trong schedules.yaml)",
    "No required sections are configured (audit.sections in schedules.yaml)",
)


def _local(when: datetime, zone: ZoneInfo, form: str) -> str:
    return when.astimezone(zone).strftime(form)


def _cells(tally: Tally, zone: ZoneInfo) -> list[str]:
    newest = "-" if tally.newest is None else _local(tally.newest, zone, "%Y-%m-%d")
    return [*(str(count) for count in tally.counts), newest]


def _table(title: str, first: str, rows: Iterable[tuple[str, list[str]]], coverage: Coverage, language: str) -> Table:
    windows = [WINDOW.get(language).format(days=days) for days in coverage.windows_days]
    table = fitted_table(
        first, *windows, NEWEST.get(language), STATE.get(language), wide=first, right=windows, title=title
    )
    for name, cells in rows:
        table.add_row(name, *cells)
    return table


def _name(row: Row, language: str, sections: bool) -> str:
    """The row's label; a section that is not required says so, its state being no problem."""
    name = row.label.get(language)
    return f"{name} ({OPTIONAL.get(language)})" if sections and not row.required else name


def _rows(rows: Iterable[Row], coverage: Coverage, language: str, sections: bool) -> list[tuple[str, list[str]]]:
    return [
        (_name(row, language, sections), [*_cells(row.tally, coverage.zone), STATES[row.state].get(language)])
        for row in rows
    ]


def _listed(rows: Sequence[Row], language: str) -> str:
    return ", ".join(row.label.get(language) for row in rows)


def _summary(coverage: Coverage, language: str) -> list[str]:
    """How many required sections have nothing lately: the line staff read first."""
    required = coverage.required
    if not required:
        return [NO_SECTIONS.get(language)]
    missing, stale = coverage.required_in("missing"), coverage.required_in("stale")
    longest, shortest = coverage.windows_days[-1], coverage.windows_days[0]
    line = MISSING.get(language).format(count=len(missing), total=len(required), days=longest)
    lines = [f"{line}: {_listed(missing, language)}" if missing else line]
    if stale:
        lines.append(f"{STALE.get(language).format(days=shortest)}: {_listed(stale, language)}")
    return lines


def render_text(coverage: Coverage, language: str, width: int = 100) -> str:
    """The audit as terminal tables in `language` (Vietnamese unless "en"); `width`: the CLI's console width."""
    text = io.StringIO()
    out = Console(file=text, width=width, color_system=None, highlight=False)
    now = _local(coverage.now, coverage.zone, "%Y-%m-%d %H:%M")
    out.print(TITLE.get(language).format(now=now, zone=coverage.zone.key), markup=False)
    if coverage.sections:
        rows = _rows(coverage.sections, coverage, language, sections=True)
        out.print(_table(SECTIONS.get(language), SECTION.get(language), rows, coverage, language))
    topics = _rows(coverage.topics, coverage, language, sections=False)
    topics.append((UNFILED.get(language), [*_cells(coverage.unfiled, coverage.zone), ""]))
    out.print(_table(TOPICS.get(language), TOPIC.get(language), topics, coverage, language))
    for line in _summary(coverage, language):
        out.print(line, markup=False)
    return text.getvalue()


def _tally_json(tally: Tally, coverage: Coverage) -> dict[str, Any]:
    return {
        "counts": {str(days): count for days, count in zip(coverage.windows_days, tally.counts, strict=True)},
        "newest": None if tally.newest is None else tally.newest.astimezone(coverage.zone).isoformat(),
    }


def _row_json(row: Row, coverage: Coverage) -> dict[str, Any]:
    return {
        "id": row.id,
        "label": row.label.model_dump(),
        "required": row.required,
        **_tally_json(row.tally, coverage),
        "state": row.state,
        "problem": row.problem,
    }


def render_json(coverage: Coverage) -> str:
    """The audit as JSON (times in the install's zone with their offset, Vietnamese as written)."""
    data = {
        "at": coverage.now.astimezone(coverage.zone).isoformat(),
        "timezone": coverage.zone.key,
        "windows_days": list(coverage.windows_days),
        "sections": [_row_json(row, coverage) for row in coverage.sections],
        "topics": [_row_json(row, coverage) for row in coverage.topics],
        "unfiled": _tally_json(coverage.unfiled, coverage),
        "required": len(coverage.required),
        "missing": [row.id for row in coverage.required_in("missing")],
        "stale": [row.id for row in coverage.required_in("stale")],
    }
    return json.dumps(data, ensure_ascii=False, indent=2)
