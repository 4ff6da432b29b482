"""The manager's report as one self-contained HTML page: inline CSS, charts as inline SVG.

`render_html(report, language)` takes the plain dict the JSON report prints and
returns the page. Every word on it comes from `templates/report/`:

- `page.html.j2`: the page, its sections in order, and the print rules (`style.css.j2`);
- `charts.j2`: SVG macros (line chart, horizontal bars, the businesses gauge);
- `labels.<lang>.j2`: the words and number/date conventions of one language, a YAML
  mapping as in `templates/bot/labels.<lang>.j2`.

Python here only prepares numbers and geometry: it formats figures with the
conventions the labels give (`1.234` and `2,8` in Vietnamese), lays out the charts
in SVG user units, and drops every section whose data is null or absent. A user
`--templates` folder is searched first, with the same relative paths
(`report/page.html.j2`, ...), so staff can reword the report without touching code.

The page loads nothing: no scripts, no web fonts, no stylesheets or images from
anywhere; the only addresses on it are the portal links in the top-items table.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
import yaml
from markupsafe import Markup, escape

from outreach.packaged import TEMPLATES

FOLDER = "report"
PAGE = f"{FOLDER}/page.html.j2"
WIDTH = 680.0  # SVG user units: the A4 text width (180 mm) at 96 px per inch
CHAR = 0.6  # a sans-serif character's average advance, in em: enough for digits and Vietnamese

# Okabe-Ito colours (colour-blind safe) and dash patterns and markers, so a series
# stays distinct when printed in black and white.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
DASHES = ("none", "8 4", "2 3", "10 3 2 3", "4 4", "14 4 2 4 2 4")
MARKERS = ("circle", "square", "triangle", "diamond")
MAX_MARKED_POINTS = 62  # beyond this a marker per point is clutter
MAX_SURVEY_TEXTS = 30
NONE = "(none)"  # the report data's key for "no channel / topic / source"
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})?")


class ReportTemplateError(Exception):
    """A report template or its labels are missing or broken; names the file."""


# --- numbers, dates and durations in the reader's conventions --------------------------------------


def finite(value: object) -> float | None:
    """A real, finite number, or None (bools, strings, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def to_date(value: object) -> date | None:
    """A date from a date, a datetime or an ISO string; None when it is none of these."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def to_datetime(value: object) -> datetime | None:
    """A datetime from a datetime or an ISO string (kept in its own offset)."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Formats:
    """How one language writes numbers, dates and durations; read from the labels' `format` block.

    Date patterns (date, day, month) take `{day}`, `{day2}` (two digits), `{month}`, `{month2}`,
    `{month_name}`, `{year}`; the time pattern `{hour2}`, `{minute2}`; the datetime
    pattern `{date}` and `{time}`; the percent pattern `{value}`.
    """

    thousands: str = ","
    decimal_mark: str = "."
    date_pattern: str = "{day} {month_name} {year}"
    day_pattern: str = "{day} {month_name}"
    month_pattern: str = "{month_name} {year}"
    time_pattern: str = "{hour2}:{minute2}"
    datetime_pattern: str = "{date}, {time}"
    percent_pattern: str = "{value}%"
    months: tuple[str, ...] = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    units: Mapping[str, str] = field(default_factory=lambda: {"second": "s", "minute": "min", "hour": "h", "day": "d"})
    missing: str = "—"

    @classmethod
    def from_labels(cls, block: object) -> Formats:
        """The conventions from a labels file's `format` mapping (absent keys keep English defaults)."""
        if not isinstance(block, Mapping):
            return cls()
        names = {
            "thousands": "thousands",
            "decimal": "decimal_mark",
            "date": "date_pattern",
            "day": "day_pattern",
            "month": "month_pattern",
            "time": "time_pattern",
            "datetime": "datetime_pattern",
            "percent": "percent_pattern",
            "missing": "missing",
        }
        given: dict[str, Any] = {attr: str(block[key]) for key, attr in names.items() if key in block}
        months = block.get("months")
        if isinstance(months, Sequence) and not isinstance(months, str) and len(months) == 12:
            given["months"] = tuple(str(m) for m in months)
        units = block.get("units")
        if isinstance(units, Mapping):
            given["units"] = {**cls().units, **{str(k): str(v) for k, v in units.items()}}
        return cls(**given)

    def integer(self, value: object) -> str:
        """A whole number with the thousands separator: `1.234.567` / `1,234,567`."""
        number = finite(value)
        if number is None:
            return self.missing
        return f"{round(number):,}".replace(",", self.thousands)

    def decimal(self, value: object, places: int = 1, trim: bool = False) -> str:
        """A number with `places` decimals (`2,83` / `2.83`); `trim` drops trailing zeros (`5` not `5,0`)."""
        number = finite(value)
        if number is None:
            return self.missing
        text = f"{number:,.{max(places, 0)}f}"
        if trim and "." in text:
            text = text.rstrip("0").rstrip(".")
        if text in ("-0", "-0.0", "-0.00"):
            text = text[1:]
        return text.replace(",", "\0").replace(".", self.decimal_mark).replace("\0", self.thousands)

    def number(self, value: object) -> str:
        """A count as a whole number, any other figure with at most one decimal."""
        number = finite(value)
        if number is None:
            return self.missing
        if number == round(number):
            return self.integer(number)
        return self.decimal(number, 1, trim=True)

    def percent(self, share: object) -> str:
        """A share (0.775) as a percentage (`77,5%`); small shares keep two decimals (`0,32%`)."""
        number = finite(share)
        if number is None:
            return self.missing
        value = number * 100
        places = 2 if 0 < abs(value) < 1 else 1
        return self.percent_pattern.format(value=self.decimal(value, places, trim=True))

    def points(self, value: object) -> str:
        """Percentage points (12.5): one decimal at most."""
        return self.decimal(value, 1, trim=True)

    def _date_fields(self, day: date) -> dict[str, object]:
        return {
            "day": day.day,
            "day2": f"{day.day:02d}",
            "month": day.month,
            "month2": f"{day.month:02d}",
            "month_name": self.months[day.month - 1],
            "year": day.year,
        }

    def date(self, value: object) -> str:
        """A date in full: `28/11/2026` / `28 Nov 2026`; an unreadable value is shown as given."""
        day = to_date(value)
        if day is None:
            return self.missing if value is None else str(value)
        return self.date_pattern.format(**self._date_fields(day))

    def day(self, value: object) -> str:
        """A date without its year, for chart ticks: `28/11` / `28 Nov`."""
        day = to_date(value)
        if day is None:
            return self.missing if value is None else str(value)
        return self.day_pattern.format(**self._date_fields(day))

    def month(self, value: object) -> str:
        """A month (`2026-11`, or any date in it): `11/2026` / `Nov 2026`."""
        text = str(value) if value is not None else ""
        day = to_date(text + "-01" if re.fullmatch(r"\d{4}-\d{2}", text) else value)
        if day is None:
            return self.missing if value is None else text
        return self.month_pattern.format(**self._date_fields(day))

    def datetime(self, value: object) -> str:
        """A moment in its own offset: `19:30, 28/11/2026` / `28 Nov 2026, 19:30`."""
        moment = to_datetime(value)
        if moment is None:
            return self.missing if value is None else str(value)
        time = self.time_pattern.format(hour2=f"{moment.hour:02d}", minute2=f"{moment.minute:02d}")
        return self.datetime_pattern.format(date=self.date(moment), time=time)

    def duration(self, seconds: object) -> str:
        """A duration in the two largest units that matter: `45 giây`, `21 phút`, `2 giờ 5 phút`, `3 ngày 4 giờ`."""
        number = finite(seconds)
        if number is None or number < 0:
            return self.missing
        whole = round(number)
        if whole < 60:
            return self._units((whole, "second"))
        minutes = round(number / 60)
        if minutes < 60:
            return self._units((minutes, "minute"))
        hours, minutes = divmod(minutes, 60)
        if hours < 24:
            return self._units((hours, "hour"), (minutes, "minute"))
        days, hours = divmod(hours, 24)
        return self._units((days, "day"), (hours, "hour"))

    def _units(self, *parts: tuple[int, str]) -> str:
        shown = [parts[0], *[part for part in parts[1:] if part[0]]]
        return " ".join(f"{self.integer(n)} {self.units.get(unit, unit)}" for n, unit in shown)


def text_width(text: str, size: float) -> float:
    """An estimate of a text's width in SVG units at a font size (generous, so nothing is cut)."""
    return len(text) * size * CHAR


def wrap_label(text: str, chars: int, max_lines: int = 2) -> tuple[str, ...]:
    """A label broken into at most `max_lines` lines of `chars` characters, the last cut with `…`."""
    chars = max(chars, 4)
    lines = textwrap.wrap(" ".join(text.split()), chars, break_long_words=True, break_on_hyphens=False)
    if not lines:
        return ("",)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: chars - 1].rstrip() + "…"
    return tuple(lines)


def nice_ticks(top: float, count: int = 5) -> list[int]:
    """Whole-number axis ticks from 0 to at least `top`, about `count` of them, steps of 1, 2 or 5 x 10^k."""
    top_value = finite(top)
    if top_value is None or top_value <= 0:
        top_value = 1.0
    raw = top_value / max(count - 1, 1)
    exponent = max(math.floor(math.log10(raw)), 0)
    base = 10**exponent
    step = next((m * base for m in (1, 2, 5, 10) if m * base >= raw), 10 * base)
    ticks = [0]
    while ticks[-1] < top_value:
        ticks.append(ticks[-1] + step)
    return ticks


def _pos(value: float) -> float:
    """A coordinate or size rounded for the page; never NaN, never negative."""
    return round(value, 1) if math.isfinite(value) and value > 0 else 0.0


# --- charts: geometry in SVG user units ------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: float
    y: float


@dataclass(frozen=True)
class Tick:
    """An axis tick: where it sits and the value (a number or a date) it stands for."""

    pos: float
    value: Any


@dataclass(frozen=True)
class Series:
    """One line: its polyline points, markers, and how it looks (colour, dash, marker shape)."""

    key: str
    label: str
    points: str  # "x,y x,y ..." for <polyline points>
    dots: tuple[Point, ...]
    color: str
    dash: str
    marker: str
    total: float


@dataclass(frozen=True)
class LegendEntry:
    x: float
    y: float
    label: str
    color: str
    dash: str
    marker: str


@dataclass(frozen=True)
class LineChart:
    """A line chart over days: the plot box, both axes' ticks, the series and the legend."""

    width: float
    height: float
    left: float
    top: float
    right: float
    bottom: float
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    series: tuple[Series, ...]
    legend: tuple[LegendEntry, ...]
    font: float = 11.0


@dataclass(frozen=True)
class SeriesData:
    """A series to draw: its values on the days it has (missing days are not drawn as zero)."""

    key: str
    label: str
    values: Mapping[date, float]


def _day_step(days: int, label_width: float, plot_width: float) -> int:
    """Every how many days a tick label fits without overlapping its neighbours."""
    fits = max(int(plot_width // (label_width + 10)), 1)
    for step in (1, 2, 3, 4, 5, 7, 14):
        if math.ceil(days / step) <= fits:
            return step
    step = 21
    while math.ceil(days / step) > fits:
        step += 7
    return step


def line_chart(
    start: date,
    end: date,
    series: Sequence[SeriesData],
    fmt: Formats,
    width: float = WIDTH,
    plot_height: float = 200.0,
    legend: bool = True,
    font: float = 11.0,
) -> LineChart:
    """Lay out a line chart from `start` to `end` (inclusive; one day is drawn at the middle)."""
    if end < start:
        start, end = end, start
    span = (end - start).days
    top_value = max((v for s in series for v in s.values.values()), default=0.0)
    y_values = nice_ticks(top_value)
    y_max = y_values[-1]
    y_label = max(text_width(fmt.integer(v), font) for v in y_values)
    x_label = max(text_width(fmt.day(start), font), text_width(fmt.day(end), font))
    left = max(y_label + 10, x_label / 2 + 4)
    right = width - x_label / 2 - 4
    top = font
    bottom = top + plot_height
    plot_width = right - left

    def x_of(day: date) -> float:
        if span == 0:
            return left + plot_width / 2
        return left + plot_width * (day - start).days / span

    def y_of(value: float) -> float:
        return bottom - plot_height * min(max(value, 0.0), y_max) / y_max

    step = _day_step(span + 1, x_label, plot_width)
    x_ticks = tuple(
        Tick(_pos(x_of(start + timedelta(days=i))), start + timedelta(days=i)) for i in range(0, span + 1, step)
    )
    y_ticks = tuple(Tick(_pos(y_of(v)), v) for v in y_values)

    drawn = []
    for index, data in enumerate(series):
        days = sorted(d for d in data.values if start <= d <= end)
        points = tuple(Point(_pos(x_of(d)), _pos(y_of(data.values[d]))) for d in days)
        drawn.append(
            Series(
                key=data.key,
                label=data.label,
                points=" ".join(f"{p.x},{p.y}" for p in points),
                dots=points if len(points) <= MAX_MARKED_POINTS else (),
                color=PALETTE[index % len(PALETTE)],
                dash=DASHES[index % len(DASHES)],
                marker=MARKERS[index % len(MARKERS)],
                total=sum(data.values[d] for d in days),
            )
        )

    entries: list[LegendEntry] = []
    legend_top = bottom + 2 * font + 18
    x, y = left, legend_top
    if legend:
        for line in drawn:
            needed = 34 + text_width(line.label, font)
            if x > left and x + needed > width:
                x, y = left, y + font + 8
            entries.append(LegendEntry(_pos(x), _pos(y), line.label, line.color, line.dash, line.marker))
            x += needed + 16
    height = (y + 6) if entries else (bottom + font + 10)
    return LineChart(
        width=width,
        height=_pos(height),
        left=_pos(left),
        top=_pos(top),
        right=_pos(right),
        bottom=_pos(bottom),
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        series=tuple(drawn),
        legend=tuple(entries),
        font=font,
    )


@dataclass(frozen=True)
class Bar:
    """One horizontal bar: its label lines above it, the bar, and where its value is written."""

    title: str
    lines: tuple[Tick, ...]  # pos: baseline y of each label line; value: the line's text
    y: float
    width: float
    value: float
    value_x: float
    value_y: float


@dataclass(frozen=True)
class BarChart:
    width: float
    height: float
    bar_height: float
    bars: tuple[Bar, ...]
    font: float = 12.0


def bar_chart(
    entries: Sequence[tuple[str, float]],
    fmt: Formats,
    width: float = WIDTH,
    font: float = 12.0,
    bar_height: float = 14.0,
    sort: bool = True,
) -> BarChart:
    """Horizontal bars, longest first: each label (wrapped, two lines at most) above its bar."""
    clean = [(label, max(finite(value) or 0.0, 0.0)) for label, value in entries]
    if sort:
        clean.sort(key=lambda entry: -entry[1])
    top_value = max((value for _, value in clean), default=0.0) or 1.0
    value_room = max((text_width(fmt.number(value), font) for _, value in clean), default=0.0) + 8
    room = max(width - value_room, 1.0)
    chars = int(width // (font * CHAR))
    bars = []
    y = 0.0
    for label, value in clean:
        lines = wrap_label(label, chars)
        baselines = []
        for line in lines:
            y += font + 3
            baselines.append(Tick(_pos(y - 3), line))
        y += 3
        bar_width = room * value / top_value
        bars.append(
            Bar(
                title=label,
                lines=tuple(baselines),
                y=_pos(y),
                width=_pos(bar_width),
                value=value,
                value_x=_pos(bar_width + 6),
                value_y=_pos(y + bar_height - 3),
            )
        )
        y += bar_height + 10
    return BarChart(width=width, height=_pos(y), bar_height=bar_height, bars=tuple(bars), font=font)


@dataclass(frozen=True)
class GaugeRow:
    """One share on the 0-100 % scale: which it is, its label's baseline, the bar and its fill."""

    kind: str
    share: float
    label_y: float
    y: float
    fill: float
    gaps: tuple[Gap, ...]


@dataclass(frozen=True)
class Gap:
    """How far a share is from one target, in percentage points (0 when met)."""

    target: float
    points: float
    met: bool


@dataclass(frozen=True)
class TargetMark:
    target: float
    x: float
    label_y: float
    y1: float
    y2: float


@dataclass(frozen=True)
class Gauge:
    width: float
    height: float
    left: float
    right: float
    bar_height: float
    rows: tuple[GaugeRow, ...]
    targets: tuple[TargetMark, ...]
    ticks: tuple[Tick, ...]  # value: the share (0, 0.25, ...)
    axis_y: float
    font: float = 11.0


def gaps(share: float, targets: Iterable[float]) -> tuple[Gap, ...]:
    """The distance from `share` to each target, in percentage points."""
    return tuple(Gap(target=t, points=max(round((t - share) * 100, 6), 0.0), met=share >= t - 1e-9) for t in targets)


def gauge(shares: Sequence[tuple[str, float]], targets: Sequence[float], fmt: Formats, width: float = WIDTH) -> Gauge:
    """A 0-100 % scale with one bar per share and a dashed mark at each target."""
    font = 11.0
    left, right = 14.0, width - 18.0
    span = right - left
    clean_targets = sorted({min(max(t, 0.0), 1.0) for t in (finite(t) for t in targets) if t is not None})

    def x_of(share: float) -> float:
        return left + span * min(max(share, 0.0), 1.0)

    marks = []
    last_x: list[float] = [-1e9, -1e9]
    label_lines = 1
    for target in clean_targets:
        x = x_of(target)
        wide = text_width(fmt.percent(target), font) + 6
        line = 0 if x - last_x[0] >= wide else 1
        label_lines = max(label_lines, line + 1)
        last_x[line] = x
        marks.append((target, x, line))
    rows_top = (font + 4) * label_lines + 6 if marks else 0.0
    bar_height = 18.0
    rows = []
    y = rows_top
    for kind, share in shares:
        label_y = y + font + 2
        bar_y = label_y + 5
        rows.append(
            GaugeRow(
                kind=kind,
                share=share,
                label_y=_pos(label_y),
                y=_pos(bar_y),
                fill=_pos(x_of(share) - left),
                gaps=gaps(share, clean_targets),
            )
        )
        y = bar_y + bar_height + 8
    axis_y = y
    targets_drawn = tuple(
        TargetMark(
            target=target,
            x=_pos(x),
            label_y=_pos((font + 4) * (line + 1)),
            y1=_pos(rows_top - 2),
            y2=_pos(axis_y),
        )
        for target, x, line in marks
    )
    ticks = tuple(Tick(_pos(x_of(share)), share) for share in (0.0, 0.25, 0.5, 0.75, 1.0))
    return Gauge(
        width=width,
        height=_pos(axis_y + font + 10),
        left=left,
        right=right,
        bar_height=bar_height,
        rows=tuple(rows),
        targets=targets_drawn,
        ticks=ticks,
        axis_y=_pos(axis_y),
        font=font,
    )


# --- the report dict, made safe for the page ---------------------------------------------------------


def _mapping(value: object) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _records(value: object) -> list[Mapping[str, Any]] | None:
    """A list of mappings, or None when the section is absent (non-mappings in it are skipped)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return None
    return [entry for entry in value if isinstance(entry, Mapping)]


def _strings(value: object) -> list[str]:
    """The strings in a list (a lone string is not a list of its characters)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [entry for entry in value if isinstance(entry, str)]


def _label(labels: Mapping[str, Any], group: str, key: object) -> str:
    """A name from one of the labels' lookup tables (`channels`, `statuses`, ...); the key itself when unknown."""
    table = labels.get(group)
    if isinstance(table, Mapping) and key in table:
        return str(table[key])
    if key is None or key == NONE:
        return str(labels.get("none", NONE))
    return str(key)


def _daily(report: Mapping[str, Any], labels: Mapping[str, Any], fmt: Formats) -> dict[str, Any] | None:
    """Human clicks per day and channel: a chart, or None inside when there were no clicks."""
    daily = _records(report.get("daily"))
    if daily is None:
        return None
    values: dict[str, dict[date, float]] = {}
    for entry in daily:
        day = to_date(entry.get("day"))
        if day is None:
            continue
        channel = str(entry.get("channel") or NONE)
        per_day = values.setdefault(channel, {})
        per_day[day] = per_day.get(day, 0.0) + max(finite(entry.get("clicks")) or 0.0, 0.0)
    if not any(v for per_day in values.values() for v in per_day.values()):
        return {"chart": None}
    period = _mapping(report.get("period")) or {}
    seen = [d for per_day in values.values() for d in per_day]
    since, until = to_date(period.get("since")), to_date(period.get("until"))
    start = min([*seen, *([since] if since else [])])
    end = max([*seen, *([until] if until else [])])
    for per_day in values.values():  # a day without a click is a zero, not a gap
        for offset in range((end - start).days + 1):
            per_day.setdefault(start + timedelta(days=offset), 0.0)
    order = sorted(values, key=lambda channel: (-sum(values[channel].values()), channel))
    series = [SeriesData(channel, _label(labels, "channels", channel), values[channel]) for channel in order]
    return {"chart": line_chart(start, end, series, fmt)}


def _topics(report: Mapping[str, Any], fmt: Formats) -> dict[str, Any] | None:
    topics = _records(report.get("topics"))
    if topics is None:
        return None
    entries = [(str(t.get("label") or t.get("topic") or ""), finite(t.get("clicks")) or 0.0) for t in topics]
    if not any(value > 0 for _, value in entries):
        return {"chart": None}
    return {"chart": bar_chart(entries, fmt)}


def _businesses(report: Mapping[str, Any], fmt: Formats) -> dict[str, Any] | None:
    data = _mapping(report.get("businesses"))
    if data is None:
        return None
    registered = finite(data.get("registered"))
    reached = finite(data.get("reached"))
    active = finite(data.get("active_in_province"))
    share_registered = finite(data.get("share_of_registered"))
    if share_registered is None and registered and reached is not None:
        share_registered = reached / registered
    share_province = finite(data.get("share_of_province"))
    if share_province is None and active and reached is not None:
        share_province = reached / active
    raw_targets = data.get("targets")
    listed = raw_targets if isinstance(raw_targets, Sequence) and not isinstance(raw_targets, str) else []
    targets = [t for t in (finite(t) for t in listed) if t is not None]
    shares = [
        (kind, share)
        for kind, share in (("registered", share_registered), ("province", share_province))
        if share is not None
    ]
    by_channel = [
        {"channel": str(entry.get("channel") or ""), "businesses": finite(entry.get("businesses"))}
        for entry in _records(data.get("by_channel")) or []
    ]
    return {
        "registered": registered,
        "reached": reached,
        "active_in_province": active,
        "active_year": data.get("active_year"),
        "active_source": data.get("active_source"),
        "share_of_registered": share_registered,
        "share_of_province": share_province,
        "targets": targets,
        "by_channel": by_channel,
        "note": data.get("note"),
        "gauge": gauge(shares, targets, fmt) if shares else None,
    }


def _rows(
    report: Mapping[str, Any], labels: Mapping[str, Any], topic_labels: Mapping[str, str]
) -> dict[str, Any] | None:
    """The rows table: one cell per `by` dimension (a channel's name, a topic's label, a date...), then the figures."""
    rows = _records(report.get("rows"))
    campaign_titles = {
        str(c.get("id")): str(c.get("title") or "")
        for c in _records(report.get("campaigns")) or []
        if c.get("id") is not None
    }
    if rows is None:
        return None
    by = _strings(report.get("by"))
    if not by:
        for row in rows:
            for name in _mapping(row.get("key")) or {}:
                if name not in by:
                    by.append(str(name))
    shown = []
    for row in rows:
        key = _mapping(row.get("key")) or {}
        cells: list[dict[str, Any]] = []
        for name in by:
            value = key.get(name)
            text = "" if value is None else str(value)
            if value is None or text == NONE:
                cells.append({"text": "", "kind": "none"})
            elif name == "channel":
                cells.append({"text": _label(labels, "channels", value), "kind": "text"})
            elif name == "topic":
                cells.append({"text": topic_labels.get(text, text), "kind": "text"})
            elif name == "campaign":
                cells.append({"text": text, "kind": "campaign", "title": campaign_titles.get(text, "")})
            elif name in ("day", "week"):
                cells.append({"text": text, "kind": "date"})
            elif name == "month":
                cells.append({"text": text, "kind": "month"})
            else:
                cells.append({"text": text, "kind": "text"})
        shown.append({"cells": cells, "figures": row})
    return {"by": by, "rows": shown}


def _portal(report: Mapping[str, Any]) -> dict[str, Any] | None:
    portal = _records(report.get("portal"))
    if not portal:  # no access log imported: no evidence to set beside the clicks
        return None
    tracked = sum(finite(entry.get("tracked_clicks")) or 0.0 for entry in portal)
    hits = sum(finite(entry.get("portal_hits")) or 0.0 for entry in portal)
    rows = sorted(portal, key=lambda entry: (str(entry.get("day") or ""), str(entry.get("channel") or "")))
    return {"rows": rows, "tracked_clicks": tracked, "portal_hits": hits}


def _subscribers(report: Mapping[str, Any], labels: Mapping[str, Any], fmt: Formats) -> dict[str, Any] | None:
    data = _mapping(report.get("subscribers"))
    if data is None:
        return None
    by_status = [(str(k), v) for k, v in (_mapping(data.get("by_status")) or {}).items() if finite(v) is not None]
    by_language = [(str(k), v) for k, v in (_mapping(data.get("by_language")) or {}).items() if finite(v) is not None]
    topics = _records(data.get("by_topic")) or []
    topic_entries = [(str(t.get("label") or t.get("topic") or ""), finite(t.get("subscribers")) or 0.0) for t in topics]
    over_time: dict[date, float] = {}
    for entry in _records(data.get("over_time")) or []:
        day, count = to_date(entry.get("day")), finite(entry.get("subscribers"))
        if day is not None and count is not None:
            over_time[day] = count
    chart = None
    if over_time:
        label = str(labels.get("subscribers_series", ""))
        chart = line_chart(
            min(over_time),
            max(over_time),
            [SeriesData("subscribers", label, over_time)],
            fmt,
            plot_height=140,
            legend=False,
        )
    if not (by_status or by_language or topic_entries or chart):
        return None
    return {
        "by_status": by_status,
        "by_language": by_language,
        "topics": bar_chart(topic_entries, fmt) if topic_entries else None,
        "over_time": chart,
    }


def _surveys(report: Mapping[str, Any], fmt: Formats) -> list[dict[str, Any]] | None:
    surveys = _records(report.get("surveys"))
    if not surveys:
        return None
    shown = []
    for survey in surveys:
        questions = []
        for question in _records(survey.get("questions")) or []:
            counts = [
                (str(c.get("label") or ""), finite(c.get("count")) or 0.0)
                for c in _records(question.get("counts")) or []
            ]
            texts = [text for text in _strings(question.get("texts")) if text.strip()]
            questions.append(
                {
                    "id": question.get("id"),
                    "text": str(question.get("text") or question.get("id") or ""),
                    "chart": bar_chart(counts, fmt, sort=False) if counts else None,
                    "texts": texts[:MAX_SURVEY_TEXTS],
                    "more_texts": max(len(texts) - MAX_SURVEY_TEXTS, 0),
                }
            )
        shown.append(
            {
                "name": survey.get("name"),
                "title": str(survey.get("title") or survey.get("name") or ""),
                "respondents": finite(survey.get("respondents")),
                "questions": questions,
            }
        )
    return shown


def _link(url: object) -> str | None:
    """An item's address when it is a web address (never `javascript:` or the like)."""
    if isinstance(url, str) and re.match(r"https?://", url.strip(), re.IGNORECASE):
        return url.strip()
    return None


def build_context(report: Mapping[str, Any], labels: Mapping[str, Any], fmt: Formats) -> dict[str, Any]:
    """What the page template sees: the sections that exist, their figures and chart geometry."""
    topics = _records(report.get("topics")) or []
    topic_labels = {str(t.get("topic")): str(t.get("label") or t.get("topic")) for t in topics}
    period = _mapping(report.get("period"))
    top_items = _records(report.get("top_items"))
    return {
        "generated_at": report.get("generated_at"),
        "period": dict(period) if period is not None else None,
        "headline": _mapping(report.get("headline")),
        "daily": _daily(report, labels, fmt),
        "topics": _topics(report, fmt),
        "businesses": _businesses(report, fmt),
        "rows": _rows(report, labels, topic_labels),
        "campaigns": _records(report.get("campaigns")),
        "top_items": None if top_items is None else [{**item, "link": _link(item.get("url"))} for item in top_items],
        "portal": _portal(report),
        "subscribers": _subscribers(report, labels, fmt),
        "surveys": _surveys(report, fmt),
    }


# --- templates -----------------------------------------------------------------------------------


def _fill(pattern: object, **values: object) -> Markup:
    """A label with its `{name}` placeholders filled in, both escaped (a value already Markup is kept).

    An unknown name is left as written, so a reworded label cannot break the page.
    """

    class Keep(dict[str, object]):
        def __missing__(self, key: str) -> str:
            return "{" + key + "}"

    return escape(str(pattern)).format_map(Keep(values))


def environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """Templates from the user's folder first, then the built-in ones; autoescaped HTML."""
    folders = [str(p) for p in (templates_dir, TEMPLATES) if p is not None]
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def load_labels(env: jinja2.Environment, language: str) -> dict[str, Any]:
    """The words of one language: `report/labels.<language>.j2` rendered to a YAML mapping."""
    name = f"{FOLDER}/labels.{language}.j2"
    try:
        text = env.get_template(name).render(language=language)
        loaded = yaml.safe_load(text)
    except jinja2.TemplateNotFound:
        raise ReportTemplateError(
            f"no report labels for language {language!r}: {name} is in no templates folder"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ReportTemplateError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None
    except yaml.YAMLError as exc:
        raise ReportTemplateError(f"{name} is not a YAML mapping: {exc}") from None
    if not isinstance(loaded, dict):
        raise ReportTemplateError(f"{name} is not a YAML mapping")
    return loaded


def filters(fmt: Formats, labels: Mapping[str, Any]) -> dict[str, Callable[..., str]]:
    """The page's formatting filters, bound to one language's conventions and words."""
    return {
        "channel": lambda name: _label(labels, "channels", name),
        "whole": fmt.integer,
        "num": fmt.number,
        "dec": fmt.decimal,
        "pct": fmt.percent,
        "points": fmt.points,
        "date": fmt.date,
        "day": fmt.day,
        "month": fmt.month,
        "datetime": fmt.datetime,
        "duration": fmt.duration,
        "fill": _fill,
    }


def render_html(report: Mapping[str, Any], language: str = "vi", templates_dir: Path | None = None) -> str:
    """The report as one self-contained HTML page in `language` (`vi` or `en`).

    `report` is the dict the JSON report prints; a section that is null or absent
    is left out of the page. `templates_dir` is a `--templates` folder searched
    before the built-in templates (`report/page.html.j2`, `report/labels.<lang>.j2`, ...).
    """
    if not _LANGUAGE.fullmatch(language):
        raise ReportTemplateError(f"not a language code: {language!r}")
    env = environment(templates_dir)
    labels = load_labels(env, language)
    fmt = Formats.from_labels(labels.get("format"))
    env.filters.update(filters(fmt, labels))
    try:
        page = env.get_template(PAGE)
        return page.render(language=language, t=labels, **build_context(report, labels, fmt))
    except jinja2.TemplateNotFound as exc:
        raise ReportTemplateError(
            f"no report template {exc.name} in {', '.join(str(p) for p in (templates_dir, TEMPLATES) if p)}"
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise ReportTemplateError(f"{exc.filename or PAGE}:{exc.lineno}: {exc.message}") from None
    except jinja2.UndefinedError as exc:
        raise ReportTemplateError(f"{PAGE}: {exc.message}") from None
