"""The manager's HTML report: formats, chart geometry, the page in both languages, and Chromium's view of it.

The Chromium tests use Debian's `chromium` (/usr/bin/chromium): under CI=true it is
installed when absent (apt-get, as root); elsewhere they skip with the reason.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from outreach.packaged import TEMPLATES
from outreach.report_html import (
    DASHES,
    Formats,
    ReportTemplateError,
    SeriesData,
    bar_chart,
    environment,
    gaps,
    gauge,
    line_chart,
    load_labels,
    nice_ticks,
    render_html,
    text_width,
    wrap_label,
)

ROOT = Path(__file__).resolve().parent.parent

# --- fixtures ----------------------------------------------------------------------------------

LONG_TITLE = "Thông báo về việc lấy ý kiến doanh nghiệp đối với dự thảo quy hoạch " * 6


def full_report() -> dict[str, Any]:
    """Every section, three channels over thirty days, and the awkward bits: HTML in titles, long titles."""
    start = date(2026, 10, 30)
    daily = []
    for i in range(30):
        day = (start + timedelta(days=i)).isoformat()
        daily.append({"day": day, "channel": "facebook", "clicks": (i * 7) % 13})
        if i % 2 == 0:
            daily.append({"day": day, "channel": "telegram_channel", "clicks": (i * 3) % 9})
        daily.append({"day": day, "channel": "telegram_bot", "clicks": (i * 5) % 6})
    return {
        "generated_at": "2026-11-28T19:30:00+07:00",
        "period": {"since": "2026-10-30", "until": "2026-11-28", "zone": "Asia/Ho_Chi_Minh", "label": "30d"},
        "by": ["channel"],
        "headline": {
            "sent": 1234,
            "clicks": 340,
            "visitors": 210,
            "repeats": 12,
            "previews": 80,
            "bots": 33,
            "ctr": 2.83,
            "median_first_click_seconds": 1260.0,
        },
        "rows": [
            {
                "key": {"channel": "facebook"},
                "sent": 30,
                "clicks": 150,
                "visitors": 90,
                "repeats": 5,
                "previews": 30,
                "bots": 10,
                "ctr": 5.0,
                "median_first_click_seconds": 900.0,
            },
            {
                "key": {"channel": "telegram_channel"},
                "sent": 4,
                "clicks": 90,
                "visitors": 60,
                "repeats": 4,
                "previews": 40,
                "bots": 20,
                "ctr": 22.5,
                "median_first_click_seconds": 7260.0,
            },
            {
                "key": {"channel": "telegram_bot"},
                "sent": 1200,
                "clicks": 100,
                "visitors": 60,
                "repeats": 3,
                "previews": 10,
                "bots": 3,
                "ctr": 0.083,
                "median_first_click_seconds": None,
            },
        ],
        "daily": daily,
        "topics": [
            {"topic": "tax", "label": "Thuế và cuộc sống", "clicks": 120},
            {"topic": "support", "label": "Hỗ trợ doanh nghiệp", "clicks": 95},
            {"topic": "law", "label": "Phổ biến, giáo dục pháp luật", "clicks": 60},
            {"topic": "procedures", "label": "Thủ tục hành chính", "clicks": 0},
        ],
        "top_items": [
            {
                "item_id": 5,
                "title": "Hướng dẫn hoàn thuế GTGT",
                "clicks": 44,
                "url": "https://quangngai.gov.vn/tin-tuc/5.html",
            },
            {
                "item_id": 6,
                "title": "<script>alert('x')</script> & " + LONG_TITLE,
                "clicks": 30,
                "url": "javascript:alert(1)",
            },
        ],
        "campaigns": [
            {
                "id": 3,
                "title": "Tuần lễ hỗ trợ doanh nghiệp",
                "status": "done",
                "sent": 12,
                "clicks": 30,
                "visitors": 20,
                "ctr": 2.5,
            },
            {
                "id": 4,
                "title": LONG_TITLE,
                "status": "done_with_errors",
                "sent": 1200,
                "clicks": 310,
                "visitors": 190,
                "ctr": 0.26,
            },
        ],
        "businesses": {
            "registered": 40,
            "reached": 31,
            "share_of_registered": 0.775,
            "active_in_province": 9800,
            "active_year": 2025,
            "active_source": "Cục Thống kê tỉnh Quảng Ngãi",
            "share_of_province": 0.0032,
            "targets": [0.90, 0.95],
            "by_channel": [{"channel": "telegram_bot", "businesses": 31}],
            "note": "proxy",
        },
        "portal": [
            {"day": "2026-11-01", "channel": "facebook", "tracked_clicks": 12, "portal_hits": 15},
            {"day": "2026-11-02", "channel": "telegram_channel", "tracked_clicks": 7, "portal_hits": 6},
        ],
        "subscribers": {
            "by_status": {"active": 120, "stopped": 4, "blocked": 3},
            "by_language": {"vi": 110, "en": 10},
            "by_topic": [
                {"topic": "tax", "label": "Thuế và cuộc sống", "subscribers": 80},
                {"topic": "support", "label": "Hỗ trợ doanh nghiệp", "subscribers": 45},
            ],
            "over_time": [
                {"day": "2026-11-01", "subscribers": 90},
                {"day": "2026-11-10", "subscribers": 104},
                {"day": "2026-11-28", "subscribers": 127},
            ],
        },
        "surveys": [
            {
                "name": "needs-2026",
                "title": "Nhu cầu thông tin của doanh nghiệp 2026",
                "respondents": 25,
                "questions": [
                    {
                        "id": "needs",
                        "text": "Bạn cần thông tin gì?",
                        "counts": [{"label": "Thuế", "count": 12}, {"label": "Đất đai, quy hoạch", "count": 8}],
                        "texts": ["Cần thêm tin về đấu thầu", "Thông tin <b>quy hoạch</b>"],
                    }
                ],
            }
        ],
    }


def minimal_report() -> dict[str, Any]:
    """A period with nothing sent: the optional sections null or absent, no clicks."""
    return {
        "generated_at": "2026-11-28T19:30:00+07:00",
        "period": {"since": "2026-11-28", "until": "2026-11-28", "zone": "Asia/Ho_Chi_Minh", "label": "1d"},
        "by": ["channel"],
        "headline": {
            "sent": 0,
            "clicks": 0,
            "visitors": 0,
            "repeats": 0,
            "previews": 0,
            "bots": 0,
            "ctr": 0.0,
            "median_first_click_seconds": None,
        },
        "rows": [],
        "daily": [],
        "topics": [],
        "businesses": None,
        "portal": None,
        "subscribers": None,
        "surveys": None,
    }


@pytest.fixture(scope="module")
def vi() -> Formats:
    return Formats.from_labels(load_labels(environment(), "vi")["format"])


@pytest.fixture(scope="module")
def en() -> Formats:
    return Formats.from_labels(load_labels(environment(), "en")["format"])


# --- numbers, dates, durations -----------------------------------------------------------------


def test_numbers_in_vietnamese_and_english(vi: Formats, en: Formats) -> None:
    assert vi.integer(1234567) == "1.234.567"
    assert en.integer(1234567) == "1,234,567"
    assert vi.integer(0) == "0"
    assert vi.decimal(2.83, 2) == "2,83"
    assert vi.decimal(2.8) == "2,8"
    assert en.decimal(2.8) == "2.8"
    assert vi.decimal(12345.678, 1) == "12.345,7"
    assert en.decimal(12345.678, 1) == "12,345.7"
    assert vi.decimal(5.0, 1, trim=True) == "5"
    assert vi.decimal(-0.001, 2) == "0,00"
    assert vi.number(12.0) == "12"
    assert vi.number(12.34) == "12,3"
    assert en.integer(10**15) == "1,000,000,000,000,000"


def test_percentages_and_points(vi: Formats, en: Formats) -> None:
    assert vi.percent(0.775) == "77,5%"
    assert en.percent(0.775) == "77.5%"
    assert vi.percent(0.9) == "90%"
    assert vi.percent(0.0032) == "0,32%"  # a small share keeps its two decimals
    assert vi.percent(0) == "0%"
    assert vi.percent(1) == "100%"
    assert vi.points(12.5) == "12,5"
    assert vi.points(5.0) == "5"


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf"), "12", True])
def test_a_missing_or_unreadable_figure_is_a_dash(vi: Formats, bad: object) -> None:
    for shown in (vi.integer(bad), vi.decimal(bad), vi.percent(bad), vi.duration(bad)):
        assert shown == "—"


def test_dates_as_read_in_vietnam_and_in_english(vi: Formats, en: Formats) -> None:
    assert vi.date("2026-11-28") == "28/11/2026"
    assert vi.date("2026-01-05") == "05/01/2026"
    assert en.date("2026-11-28") == "28 Nov 2026"
    assert vi.day("2026-11-28") == "28/11"
    assert en.day(date(2026, 11, 2)) == "2 Nov"
    assert vi.datetime("2026-11-28T19:30:00+07:00") == "19:30 ngày 28/11/2026"
    assert en.datetime("2026-11-28T19:30:00+07:00") == "28 Nov 2026, 19:30"
    assert vi.date("not a date") == "not a date"  # shown as given, never a crash
    assert vi.date(None) == "—"
    assert vi.month("2026-11") == "11/2026"
    assert en.month("2026-11") == "Nov 2026"
    assert en.month("2026-11-28") == "Nov 2026"


@pytest.mark.parametrize(
    ("seconds", "in_vi", "in_en"),
    [
        (0, "0 giây", "0 s"),
        (45, "45 giây", "45 s"),
        (1260.0, "21 phút", "21 min"),
        (3599, "1 giờ", "1 h"),
        (7260, "2 giờ 1 phút", "2 h 1 min"),
        (90000, "1 ngày 1 giờ", "1 d 1 h"),
        (86400 * 3, "3 ngày", "3 d"),
        (-5, "—", "—"),
    ],
)
def test_durations(vi: Formats, en: Formats, seconds: float, in_vi: str, in_en: str) -> None:
    assert vi.duration(seconds) == in_vi
    assert en.duration(seconds) == in_en


# --- chart geometry ----------------------------------------------------------------------------


@pytest.mark.parametrize(("top", "last"), [(0, 1), (-3, 1), (1, 1), (7, 8), (15, 15), (99, 100), (1234, 1500)])
def test_nice_ticks(top: float, last: int) -> None:
    ticks = nice_ticks(top)
    assert ticks[0] == 0
    assert ticks[-1] == last
    assert all(isinstance(t, int) for t in ticks)
    assert len({b - a for a, b in itertools.pairwise(ticks)}) == 1
    assert 2 <= len(ticks) <= 7


def test_nice_ticks_for_huge_numbers() -> None:
    ticks = nice_ticks(9.87e14)
    assert ticks[-1] >= 9.87e14
    assert len(ticks) <= 7
    assert nice_ticks(float("nan")) == [0, 1]


def test_wrap_label_keeps_two_lines_and_marks_the_cut() -> None:
    lines = wrap_label(LONG_TITLE, 40)
    assert len(lines) == 2
    assert all(len(line) <= 40 for line in lines)
    assert lines[-1].endswith("…")
    assert wrap_label("Thuế", 40) == ("Thuế",)
    assert wrap_label("", 40) == ("",)
    assert all(len(line) <= 10 for line in wrap_label("x" * 100, 10))


def days(start: date, n: int, value: float = 1.0) -> dict[date, float]:
    return {start + timedelta(days=i): value * (i + 1) for i in range(n)}


def test_line_chart_of_one_day_and_one_channel_sits_in_the_middle(vi: Formats) -> None:
    day = date(2026, 11, 28)
    chart = line_chart(day, day, [SeriesData("facebook", "Facebook", {day: 4.0})], vi)
    (series,) = chart.series
    (dot,) = series.dots
    assert dot.x == pytest.approx((chart.left + chart.right) / 2, abs=0.1)
    assert dot.y == chart.top  # 4 is the top tick
    assert len(chart.x_ticks) == 1
    assert len(chart.legend) == 1


def test_line_chart_scales_and_styles_each_channel_apart(vi: Formats) -> None:
    start = date(2026, 10, 30)
    series = [SeriesData(f"ch{i}", f"Kênh {i}", days(start, 30, i + 1)) for i in range(len(DASHES) + 1)]
    chart = line_chart(start, start + timedelta(days=29), series, vi)
    assert len({s.dash for s in chart.series}) == len(DASHES)  # black-and-white print: dashes differ
    assert len({(s.color, s.dash, s.marker) for s in chart.series}) == len(series)
    for line in chart.series:
        for x, y in (map(float, point.split(",")) for point in line.points.split()):
            assert chart.left <= x <= chart.right
            assert chart.top <= y <= chart.bottom
    # tick labels do not overlap
    label = text_width(vi.day(start), chart.font)
    positions = [tick.pos for tick in chart.x_ticks]
    assert all(b - a >= label for a, b in itertools.pairwise(positions))
    # legend entries stay inside the chart
    assert all(
        entry.x >= 0 and entry.x + 34 + text_width(entry.label, chart.font) <= chart.width for entry in chart.legend
    )
    assert all(entry.y <= chart.height for entry in chart.legend)


def test_line_chart_over_a_year_thins_its_ticks(vi: Formats) -> None:
    start = date(2026, 1, 1)
    chart = line_chart(start, start + timedelta(days=364), [SeriesData("f", "F", days(start, 365))], vi)
    assert 3 <= len(chart.x_ticks) <= 15
    assert chart.series[0].dots == ()  # 365 markers would be clutter
    assert len(chart.series[0].points.split()) == 365


def test_line_chart_of_zeros_and_huge_numbers_has_real_coordinates(vi: Formats) -> None:
    start = date(2026, 11, 1)
    zeros = line_chart(start, start + timedelta(days=3), [SeriesData("f", "F", days(start, 4, 0))], vi)
    huge = line_chart(start, start + timedelta(days=3), [SeriesData("f", "F", days(start, 4, 1e13))], vi)
    for chart in (zeros, huge):
        numbers = [chart.left, chart.right, chart.top, chart.bottom, chart.height]
        numbers += [t.pos for t in (*chart.x_ticks, *chart.y_ticks)]
        numbers += [float(v) for s in chart.series for p in s.points.split() for v in p.split(",")]
        assert all(math.isfinite(n) and n >= 0 for n in numbers)
    assert huge.left > zeros.left  # room for "40.000.000.000.000"


def test_bar_chart_sorts_wraps_and_keeps_zero_and_values_inside(vi: Formats) -> None:
    chart = bar_chart([("Thuế", 120), ("Đất đai", 0), (LONG_TITLE, 60), ("Âm", -4)], vi)
    assert [bar.title for bar in chart.bars][:2] == ["Thuế", LONG_TITLE]
    widths = {bar.title: bar.width for bar in chart.bars}
    assert widths["Đất đai"] == 0
    assert widths["Âm"] == 0
    assert widths[LONG_TITLE] == pytest.approx(widths["Thuế"] / 2, abs=0.2)
    long_bar = next(bar for bar in chart.bars if bar.title == LONG_TITLE)
    assert len(long_bar.lines) == 2
    for bar in chart.bars:
        assert bar.value_x + text_width(vi.number(bar.value), chart.font) <= chart.width
        assert 0 <= bar.y < chart.height


def test_gauge_marks_targets_and_clamps_shares(vi: Formats) -> None:
    g = gauge([("registered", 0.775), ("province", 1.4)], [0.9, 0.95], vi)
    span = g.right - g.left
    assert [mark.x for mark in g.targets] == [
        pytest.approx(g.left + span * 0.9, abs=0.1),
        pytest.approx(g.left + span * 0.95, abs=0.1),
    ]
    registered, province = g.rows
    assert registered.fill == pytest.approx(span * 0.775, abs=0.1)
    assert province.fill == pytest.approx(span, abs=0.1)  # a share over 100 % fills the scale, no further
    assert [gap.points for gap in registered.gaps] == [pytest.approx(12.5), pytest.approx(17.5)]
    assert not any(gap.met for gap in registered.gaps)
    assert all(gap.met and gap.points == 0 for gap in province.gaps)
    assert gaps(0.95, [0.95]) == gaps(0.9500000001, [0.95])


def test_close_targets_labels_take_two_lines(vi: Formats) -> None:
    g = gauge([("registered", 0.5)], [0.9, 0.91, 0.95], vi)
    assert len({mark.label_y for mark in g.targets}) == 2


# --- the page ----------------------------------------------------------------------------------

SECTION_IDS = [
    "headline",
    "daily",
    "topics",
    "businesses",
    "rows",
    "campaigns",
    "top-items",
    "portal",
    "subscribers",
    "surveys",
]


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z-]+)"', page)


def text_of(page: str) -> str:
    """The page's visible words (tags dropped, entities decoded), whitespace folded."""

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.skip += tag in ("style", "title")

        def handle_endtag(self, tag: str) -> None:
            self.skip -= tag in ("style", "title")

        def handle_data(self, data: str) -> None:
            if not self.skip:
                self.parts.append(data)

    parser = Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def test_full_page_in_vietnamese() -> None:
    page = render_html(full_report())
    assert page.startswith("<!DOCTYPE html>")
    assert '<html lang="vi">' in page
    assert '<meta charset="utf-8">' in page
    assert section_ids(page) == SECTION_IDS
    text = text_of(page)
    for shown in (
        "Kỳ báo cáo: từ 30/10/2026 đến 28/11/2026",
        "Lập lúc 19:30 ngày 28/11/2026",
        "Tin đã gửi",
        "1.234",
        "2,83",
        "21 phút",
        "2 giờ 1 phút",
        "Lượt nhấp theo ngày và kênh",
        "Doanh nghiệp tiếp cận Cổng",
        "31 trên 40 doanh nghiệp",
        "9.800 doanh nghiệp",
        "0,32%",
        "77,5%",
        "còn thiếu 12,5 điểm phần trăm để đạt mục tiêu 90%",
        "còn thiếu 17,5 điểm phần trăm để đạt mục tiêu 95%",
        "không phải kết quả khảo sát PCI của VCCI",
        "Chi tiết theo kênh",
        "Kênh Telegram",
        "Xong, có lỗi",
        "Lượt truy cập Cổng",
        "Đang nhận tin: 120",
        "Số người trả lời: 25",
    ):
        assert shown in text, shown
    assert text == unicodedata.normalize("NFC", text)
    assert "Doanh nghiệp" in text
    assert page.count("<svg") == 6  # clicks, topics, gauge, subscribers by topic and over time, one question


def test_full_page_in_english() -> None:
    page = render_html(full_report(), "en")
    assert '<html lang="en">' in page
    assert section_ids(page) == SECTION_IDS
    text = text_of(page)
    for shown in (
        "Period: 30 Oct 2026 to 28 Nov 2026",
        "1,234",
        "2.83",
        "21 min",
        "0.32%",
        "12.5 percentage points short of the 90% target",
        "not VCCI's PCI survey",
        "Detail by channel",
        "Done, with errors",
    ):
        assert shown in text, shown
    assert "phút" not in text
    assert "Kỳ báo cáo" not in text


def test_minimal_page_leaves_out_what_has_no_data() -> None:
    page = render_html(minimal_report())
    assert section_ids(page) == ["headline", "daily", "topics", "rows"]
    text = text_of(page)
    for absent in (
        "Doanh nghiệp tiếp cận Cổng",
        "Đối chiếu",
        "Người nhận tin qua bot",
        "Khảo sát",
        "Chiến dịch",
        "Tin bài được nhấp",
    ):
        assert absent not in text
    assert text.count("Không có lượt nhấp nào trong kỳ này.") == 2  # the clicks chart and the topic bars
    assert "<svg" not in page  # no empty chart
    assert "chưa có lượt nhấp" in text  # a null median


def test_an_empty_report_still_renders_its_title() -> None:
    page = render_html({})
    assert section_ids(page) == []
    assert "Báo cáo hiệu quả đưa tin" in page


def test_businesses_without_the_province_figure_show_one_bar() -> None:
    report = full_report()
    report["businesses"] = {"registered": 40, "reached": 38, "targets": [0.9, 0.95]}  # share computed: 95 %
    page = render_html(report)
    assert page.count('class="gauge-row"') == 1
    text = text_of(page)
    assert "đã đạt mục tiêu 90%; đã đạt mục tiêu 95%." in text
    assert "Toàn tỉnh" not in text
    assert "không phải kết quả khảo sát PCI" in text


def test_rows_by_several_dimensions_name_each_value() -> None:
    report = full_report()
    report["by"] = ["channel", "campaign", "month", "week", "topic"]
    figures = {"sent": 2, "clicks": 3, "visitors": 3, "repeats": 0, "previews": 0, "bots": 0, "ctr": 1.5}
    report["rows"] = [
        {
            "key": {"channel": "telegram_bot", "campaign": 3, "month": "2026-11", "week": "2026-11-23", "topic": "tax"},
            **figures,
        },
        {
            "key": {"channel": "(none)", "campaign": 99, "month": "2026-10", "week": "2026-10-26", "topic": "(none)"},
            **figures,
        },
    ]
    report["daily"].append({"day": "2026-11-03", "channel": "(none)", "clicks": 1})
    text = text_of(render_html(report))
    assert "Chi tiết theo kênh và chiến dịch và tháng và tuần (từ thứ hai) và chủ đề" in text
    assert "Bot Telegram 3. Tuần lễ hỗ trợ doanh nghiệp 11/2026 23/11/2026 Thuế và cuộc sống 2 3 3 1,50" in text
    assert "(không có) 99 10/2026 26/10/2026 (không có) 2" in text
    english = text_of(render_html(report, "en"))
    assert "Telegram bot 3. Tuần lễ hỗ trợ doanh nghiệp Nov 2026 23 Nov 2026" in english
    assert "(none) 99 Oct 2026" in english


def test_titles_are_escaped_and_only_web_addresses_are_linked() -> None:
    page = render_html(full_report())
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Thông báo" in page
    assert "&lt;b&gt;quy hoạch&lt;/b&gt;" in page
    assert "javascript:" not in page
    assert '<a href="https://quangngai.gov.vn/tin-tuc/5.html" rel="noopener noreferrer">' in page


def test_the_page_loads_nothing() -> None:
    """Self-contained: no script, stylesheet, font, image or frame; the only addresses are portal links."""
    page = render_html(full_report())
    assert not re.search(r"<(script|link|img|iframe|object|embed|video|audio|source)\b", page, re.IGNORECASE)
    assert not re.search(r"\bsrc\s*=", page, re.IGNORECASE)
    assert not re.search(r"@import|url\(|@font-face", page, re.IGNORECASE)
    links = re.findall(r'<a href="(https?://[^"]*)"', page)
    assert links == ["https://quangngai.gov.vn/tin-tuc/5.html"]
    rest = re.sub(r'<a href="https?://[^"]*"', "<a", page)
    assert "http" not in rest
    assert "//" not in rest
    assert len(re.findall(r"\bhref=", page)) == 1


def test_print_rules_and_fonts() -> None:
    page = render_html(full_report())
    assert "@page { size: A4; margin: 15mm; }" in page
    assert "thead { display: table-header-group; }" in page
    assert re.search(r"figure \{[^}]*break-inside: avoid", page)
    assert '"Noto Sans", "DejaVu Sans"' in page


def test_labels_say_the_same_things_in_both_languages() -> None:
    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        if isinstance(value, list):
            return len(value)
        return type(value).__name__

    env = environment()
    assert shape(load_labels(env, "vi")) == shape(load_labels(env, "en"))
    for language in ("vi", "en"):
        text = (TEMPLATES / "report" / f"labels.{language}.j2").read_text(encoding="utf-8")
        assert text == unicodedata.normalize("NFC", text)


def test_every_report_template_ships_in_the_wheel() -> None:
    """pyproject's package data takes templates/**/*.j2: anything else would be left out of the wheel."""
    files = [p for p in (ROOT / "templates" / "report").rglob("*") if p.is_file()]
    assert files
    assert all(p.suffix == ".j2" for p in files), files


def svg_numbers(page: str) -> Iterator[tuple[str, float]]:
    """Every number in an SVG geometry attribute of the page."""
    names = "x|y|x1|x2|y1|y2|cx|cy|r|width|height|points|viewBox|font-size"
    for svg in re.findall(r"<svg.*?</svg>", page, re.DOTALL):
        for name, value in re.findall(rf'\s({names})="([^"]*)"', svg):
            if value == "100%":
                continue
            for number in re.split(r"[\s,]+", value.strip()):
                yield name, float(number)


@pytest.mark.parametrize(
    "variant",
    ["full", "one_day_one_channel", "zeros", "huge", "null_median", "malformed"],
)
def test_svg_coordinates_are_never_nan_or_negative_sizes(variant: str) -> None:
    report = full_report()
    if variant == "one_day_one_channel":
        report["period"] = {"since": "2026-11-28", "until": "2026-11-28"}
        report["daily"] = [{"day": "2026-11-28", "channel": "facebook", "clicks": 3}]
        report["topics"] = [{"topic": "tax", "label": "Thuế", "clicks": 3}]
    elif variant == "zeros":
        for entry in report["daily"]:
            entry["clicks"] = 0
        report["daily"][0]["clicks"] = 1
        report["topics"][0]["clicks"] = 1
        report["businesses"].update(share_of_registered=0, share_of_province=0, targets=[0.0, 1.0])
    elif variant == "huge":
        for entry in report["daily"]:
            entry["clicks"] = 10**12 + entry["clicks"]
        report["headline"].update(sent=98765432101234, clicks=10**15)
        report["topics"][0]["clicks"] = 10**15
    elif variant == "null_median":
        report["headline"]["median_first_click_seconds"] = None
        for row in report["rows"]:
            row["median_first_click_seconds"] = None
    elif variant == "malformed":
        report["daily"].append({"day": "not a day", "channel": "facebook", "clicks": 5})
        report["daily"].append({"day": "2026-11-05", "channel": None, "clicks": "many"})
        report["topics"].append("not a mapping")
        report["topics"].append({"label": None, "clicks": float("nan")})
        report["businesses"]["targets"] = "90%"
        report["headline"]["ctr"] = float("inf")
        report["by"] = "channel"
    page = render_html(report)
    numbers = list(svg_numbers(page))
    assert numbers
    for name, number in numbers:
        assert math.isfinite(number), name
        if name in ("width", "height", "r", "viewBox", "font-size"):
            assert number >= 0, name
    for tag in ("section", "svg", "table", "figure", "g"):
        assert page.count(f"<{tag} ") + page.count(f"<{tag}>") == page.count(f"</{tag}>"), tag
    if variant == "huge":
        assert "1.000.000.000.000.000" in page
    if variant == "null_median":
        assert "chưa có lượt nhấp" in text_of(page)


def test_a_user_templates_folder_rewords_the_report(tmp_path: Path) -> None:
    folder = tmp_path / "mine" / "report"
    folder.mkdir(parents=True)
    labels = (TEMPLATES / "report" / "labels.vi.j2").read_text(encoding="utf-8")
    (folder / "labels.vi.j2").write_text(
        labels.replace(
            'title: "Báo cáo hiệu quả đưa tin Cổng thông tin điện tử"', 'title: "Báo cáo tháng của Văn phòng"'
        ),
        encoding="utf-8",
    )
    page = render_html(full_report(), "vi", templates_dir=tmp_path / "mine")
    assert "<h1>Báo cáo tháng của Văn phòng</h1>" in page
    assert section_ids(page) == SECTION_IDS  # the page and the charts still come from the built-in folder
    assert "<h1>Portal outreach report</h1>" in render_html(full_report(), "en", templates_dir=tmp_path / "mine")


@pytest.mark.parametrize("language", ["fr", "../bot/labels", "VI"])
def test_a_language_without_labels_is_a_clear_error(language: str) -> None:
    with pytest.raises(ReportTemplateError, match=r"labels|language"):
        render_html(full_report(), language)


def test_broken_labels_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "labels.vi.j2").write_text("title: [unclosed\n", encoding="utf-8")
    with pytest.raises(ReportTemplateError, match=r"report/labels\.vi\.j2"):
        render_html(full_report(), templates_dir=tmp_path)


# --- headless Chromium ---------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        [*prefix, "apt-get", *args], capture_output=True, text=True, env=env, timeout=1800, check=False
    )


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; under CI=true installed when absent, elsewhere the tests skip."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.environ.get("CI") != "true":
        pytest.skip(f"needs {CHROMIUM} (Debian package chromium; CI=true installs it)")
    if os.geteuid() != 0 and shutil.which("sudo") is None:
        pytest.fail(f"CI=true but {CHROMIUM} is absent and installing it needs root (no sudo)")
    installed = _apt("install", "-y", "-q", "chromium")
    if installed.returncode != 0:  # stale or empty package lists
        updated = _apt("update", "-q")
        assert updated.returncode == 0, updated.stderr[-2000:]
        installed = _apt("install", "-y", "-q", "chromium")
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert CHROMIUM.exists(), f"apt-get installed chromium but {CHROMIUM} is missing"
    return CHROMIUM


def run_chromium(binary: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """One headless Chromium run with its own profile; every host name fails to resolve, so nothing is fetched."""
    profile = workdir / f"profile-{len(list(workdir.glob('profile-*')))}"
    command = [
        str(binary),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-sync",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--hide-scrollbars",
        *args,
    ]
    # The first start on a slow machine builds the profile and font caches: generous timeout.
    result = subprocess.run(command, capture_output=True, timeout=300, check=False, cwd=workdir)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return result


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("report-html")
    path = folder / "report.html"
    path.write_text(render_html(full_report()), encoding="utf-8")
    return path


def test_chromium_screenshot_is_not_blank(chromium: Path, page_file: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "page.png"
    run_chromium(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1240,1754", page_file.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1240, 1754)
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24) or []
        saturation = rgb.convert("HSV").getchannel("S").histogram()
    total = 1240 * 1754
    most, background = max(colours)
    assert background == (255, 255, 255)
    assert len(colours) > 50
    assert 1 - most / total > 0.03  # text, frames and charts cover a real share of the page
    assert sum(saturation[100:]) / total > 0.002  # the charts' coloured lines and bars were drawn


def test_chromium_prints_a4_pages(chromium: Path, page_file: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    run_chromium(chromium, tmp_path, f"--print-to-pdf={pdf}", "--no-pdf-header-footer", page_file.as_uri())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(data) > 10_000
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", data)
    assert len(boxes) >= 2  # a report this long takes several pages
    for width, height in boxes:  # A4: 595 x 842 points
        assert float(width) == pytest.approx(595, abs=2)
        assert float(height) == pytest.approx(842, abs=2)


def test_chromium_renders_the_headline_numbers(chromium: Path, page_file: Path, tmp_path: Path) -> None:
    dom = run_chromium(chromium, tmp_path, "--dump-dom", page_file.as_uri()).stdout.decode()
    figures = re.findall(r"<dd>(.*?)</dd>", dom)
    assert figures == ["1.234", "340", "210", "2,83", "21 phút"]
    assert "Lượt nhấp theo ngày và kênh" in text_of(dom)


def test_chromium_no_element_is_wider_than_an_a4_page(chromium: Path, tmp_path: Path) -> None:
    """At the A4 text width (180 mm = 680 px) nothing sticks out: long titles wrap, huge numbers too, charts scale."""
    report = full_report()
    report["headline"].update(sent=98765432101234, clicks=10**15)
    report["rows"][0]["key"] = {"channel": "x" * 200}
    page = render_html(report)
    probe = """<script>
    const limit = document.documentElement.clientWidth;
    const wide = [...document.querySelectorAll("body *")]
      .filter(e => e.getBoundingClientRect().right > limit + 0.5)
      .map(e => e.tagName + "." + (e.getAttribute("class") || "") + " " + Math.round(e.getBoundingClientRect().right));
    document.body.setAttribute("data-limit", limit);
    document.body.setAttribute("data-wide", JSON.stringify(wide.slice(0, 10)));
    </script>"""
    path = tmp_path / "narrow.html"
    path.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    dom = run_chromium(chromium, tmp_path, "--dump-dom", "--window-size=704,1000", path.as_uri()).stdout.decode()
    limit = re.search(r'data-limit="(\d+)"', dom)
    assert limit is not None, dom[-2000:]
    assert 680 <= int(limit.group(1)) <= 704
    assert 'data-wide="[]"' in dom, re.search(r'data-wide="[^"]*"', dom)
