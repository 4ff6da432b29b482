"""parse_feed on feeds as Vietnamese portals serve them: charsets, entities, dates, limits."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

import pytest

from outreach.feeds import MAX_SUMMARY, MAX_TITLE, ParsedFeed, cap, parse_feed, read_date, strip_weekday, zone_offset

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
FETCHED = datetime(2027, 1, 1, tzinfo=UTC)
URL = "https://quangngai.gov.vn/rss/tin-tuc.rss"
XML = {"content-type": "application/rss+xml; charset=utf-8"}
CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def cp1258(text: str) -> bytes:
    """Text as windows-1258 writes it: base letters precomposed, tone marks combining."""
    out = bytearray()
    for ch in unicodedata.normalize("NFC", text):
        base, *marks = unicodedata.normalize("NFD", ch)
        # windows-1258 has ê, ơ, ... precomposed and the five tone marks combining
        splits = [(base, marks)] + [(base + m, marks[:i] + marks[i + 1 :]) for i, m in enumerate(marks)]
        for head, rest in reversed(splits):
            try:
                out += unicodedata.normalize("NFC", head).encode("cp1258") + "".join(rest).encode("cp1258")
                break
            except UnicodeEncodeError:
                continue
        else:
            raise UnicodeEncodeError("cp1258", ch, 0, 1, "not in windows-1258")
    return bytes(out)


def item(
    guid: str, title: str, summary: str = "", date: str = "Thu, 26 Nov 2026 10:14:00 +0700", link: str = ""
) -> str:
    link = link or f"https://quangngai.gov.vn/tin-tuc/{guid}.html"
    return (
        f"<item><title>{title}</title><link>{link}</link><guid isPermaLink='false'>{guid}</guid>"
        f"<pubDate>{date}</pubDate><description>{summary}</description></item>"
    )


def rss(*items: str, encoding: str = "utf-8") -> str:
    return (
        f'<?xml version="1.0" encoding="{encoding}"?><rss version="2.0"><channel>'
        "<title>Cổng thông tin điện tử</title><link>https://quangngai.gov.vn/</link>"
        + "".join(items)
        + "</channel></rss>"
    )


def parse(body: bytes, headers: dict[str, str] | None = None) -> ParsedFeed:
    return parse_feed(body, XML if headers is None else headers, URL, FETCHED, HCM)


def assert_no_controls(feed: ParsedFeed) -> None:
    for entry in feed.entries:
        for value in (entry.guid, entry.url, entry.title, entry.summary, *entry.categories):
            assert not CONTROLS.search(value), value
            assert value == unicodedata.normalize("NFC", value)


VIETNAMESE = rss(
    item("1", "Thuế giá trị gia tăng", "Đầu tư công năm 2027: hướng dẫn mới"),
    item("2", "Đầu tư", "Quảng Ngãi triển khai chuyển đổi số"),
)


# --- charsets -------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/rss+xml; charset=utf-8"},
        {"content-type": "application/xml"},
        {"content-type": "text/xml; charset=iso-8859-1"},
        {},
    ],
)
def test_windows_1258_declared_as_utf8_is_read_as_vietnamese(headers: dict[str, str]) -> None:
    feed = parse(cp1258(VIETNAMESE), headers)
    assert feed.problem is None
    assert [e.title for e in feed.entries] == ["Thuế giá trị gia tăng", "Đầu tư"]
    assert feed.entries[0].summary == "Đầu tư công năm 2027: hướng dẫn mới"
    assert any("cp1258" in w and "wrong" in w for w in feed.warnings), feed.warnings
    assert_no_controls(feed)


def test_windows_1258_declared_correctly_reads_without_fuss() -> None:
    body = cp1258(rss(item("1", "Thuế giá trị gia tăng", "Đầu tư"), encoding="windows-1258"))
    feed = parse(body, {"content-type": "application/xml"})
    assert (feed.problem, feed.warnings) == (None, ())
    assert (feed.entries[0].title, feed.entries[0].summary) == ("Thuế giá trị gia tăng", "Đầu tư")


def test_http_charset_wrong_but_xml_declaration_right_is_a_warning() -> None:
    body = cp1258(rss(item("1", "Thuế giá trị gia tăng"), encoding="windows-1258"))
    feed = parse(body, {"content-type": "application/xml; charset=utf-8"})
    assert feed.problem is None
    assert feed.entries[0].title == "Thuế giá trị gia tăng"
    assert any("cp1258" in w for w in feed.warnings)


def test_utf8_read_as_utf8_has_no_warnings() -> None:
    feed = parse(VIETNAMESE.encode())
    assert (feed.problem, feed.warnings) == (None, ())
    assert [e.title for e in feed.entries] == ["Thuế giá trị gia tăng", "Đầu tư"]


def test_decomposed_utf8_is_stored_nfc() -> None:
    feed = parse(unicodedata.normalize("NFD", VIETNAMESE).encode())
    assert [e.title for e in feed.entries] == ["Thuế giá trị gia tăng", "Đầu tư"]
    assert_no_controls(feed)


def test_control_characters_never_survive() -> None:
    body = rss(item("1", "Tin\x01 mới", "Nội\x07 dung\u0085hết\u009c")).encode()
    feed = parse(body)
    assert feed.problem is None
    assert feed.entries[0].title == "Tin mới"
    assert feed.entries[0].summary.startswith("Nội dung")  # C1 characters: gone, or read as windows-1252 does
    assert any("control characters" in w for w in feed.warnings)
    assert_no_controls(feed)


# --- entities -------------------------------------------------------------------


def test_undeclared_html_entities_are_a_warning_not_a_problem() -> None:
    body = rss(
        item("1", "Hội nghị&nbsp;tổng kết &ndash; năm 2026&hellip;", "Sáng&nbsp;nay &amp; chiều"),
        item("2", "Tin thứ hai", "x"),
    ).encode()
    feed = parse(body)
    assert feed.problem is None
    assert [e.title for e in feed.entries] == ["Hội nghị tổng kết \u2013 năm 2026…", "Tin thứ hai"]
    assert feed.entries[0].summary == "Sáng nay & chiều"
    assert feed.warnings == ("undeclared HTML entities read as characters: &nbsp;, &ndash;, &hellip;",)


def test_entities_in_a_truncated_feed_still_report_the_loss() -> None:
    body = rss(item("1", "A&nbsp;B"), item("2", "C")).encode().replace(b"</channel></rss>", b"<item><title>cut")
    feed = parse(body)
    assert feed.problem
    assert feed.problem.startswith("partly read (2 entries kept)")
    assert [e.title for e in feed.entries] == ["A B", "C"]


# --- dates ----------------------------------------------------------------------

INSTANT = datetime(2026, 11, 26, 3, 14, tzinfo=UTC)  # 10:14 in Hồ Chí Minh City


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26/11/2026 10:14", INSTANT),
        ("26/11/2026 10:14:55", INSTANT.replace(second=55)),
        ("Thứ Năm, 26/11/2026", datetime(2026, 11, 25, 17, tzinfo=UTC)),
        ("Thứ Năm 26/11/2026 10:14", INSTANT),
        (unicodedata.normalize("NFD", "Thứ Năm, 26/11/2026 10:14"), INSTANT),
        ("thứ năm, 26/11/2026 10:14", INSTANT),
        ("Thứ Hai, 23/11/2026 10:14", INSTANT.replace(day=23)),
        ("Thứ Ba, 24/11/2026 10:14", INSTANT.replace(day=24)),
        ("Thứ Tư, 25/11/2026 10:14", INSTANT.replace(day=25)),
        ("Thứ Sáu, 27/11/2026 10:14", INSTANT.replace(day=27)),
        ("Thứ Bảy, 28/11/2026 10:14", INSTANT.replace(day=28)),
        ("Chủ Nhật, 29/11/2026 10:14", INSTANT.replace(day=29)),
        ("Chủ nhật 29/11/2026 10:14", INSTANT.replace(day=29)),
        ("26-11-2026", datetime(2026, 11, 25, 17, tzinfo=UTC)),
        ("26-11-2026 10:14", INSTANT),
        ("10:14 26/11/2026", INSTANT),
        ("26/11/2026 10:14 +07:00", INSTANT),
        ("Thu, 26 Nov 2026 10:14:00 ICT", INSTANT),
        ("Thu, 26 Nov 2026 10:14:00 +0700", INSTANT),
        ("Thu, 26 Nov 2026 10:14:00 +07", INSTANT),
        ("Thu, 26 Nov 2026 10:14:00 GMT", datetime(2026, 11, 26, 10, 14, tzinfo=UTC)),
        ("Wed, 25 Nov 2026 19:14:00 -08", INSTANT),
        ("Thu, 26 Nov 2026 10:14:00", INSTANT),
        ("2026-11-26T10:14:00+07", INSTANT),
        ("2026-11-26T10:14:00+07:00", INSTANT),
        ("2026-11-25T19:14:00-08", INSTANT),
        ("2026-11-26T03:14:00Z", INSTANT),
        ("2026-11-26T10:14:00", INSTANT),
        ("2026-11-26 10:14", INSTANT),
        ("2026-11-26T10:14:00.250+07:00", INSTANT.replace(microsecond=250_000)),
    ],
)
def test_read_date(text: str, expected: datetime) -> None:
    assert read_date(text, HCM) == expected


@pytest.mark.parametrize(
    "text", ["", "hôm qua", "32/11/2026", "26/13/2026 10:14", "Thu, 26 Nov 2026 10:14:00 XYZ", "2026-11-26T10:14+25"]
)
def test_unreadable_dates(text: str) -> None:
    assert read_date(text, HCM) is None


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("", None), ("ICT", 420), ("+07", 420), ("-08", -480), ("+0700", 420), ("+05:30", 330), ("GMT+7", 420), ("Z", 0)],
)
def test_zone_offset(text: str, minutes: int | None) -> None:
    offset = zone_offset(text)
    assert (offset.total_seconds() // 60 if offset is not None else None) == minutes


def test_zone_offset_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown zone"):
        zone_offset("XYZ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Thứ Năm, 26/11/2026", "26/11/2026"), ("Chủ Nhật 29/11/2026", "29/11/2026"), ("26/11/2026", "26/11/2026")],
)
def test_strip_weekday(text: str, expected: str) -> None:
    assert strip_weekday(text) == expected


def test_feed_dates_in_portal_spellings() -> None:
    body = rss(
        item("1", "A", date="Thứ Năm, 26/11/2026 10:14"),
        item("2", "B", date="Thu, 26 Nov 2026 10:14:00 ICT"),
        item("3", "C", date="2026-11-25T19:14:00-08"),
    ).encode()
    feed = parse(body)
    assert (feed.problem, feed.warnings) == (None, ())
    assert [e.published_at for e in feed.entries] == [INSTANT] * 3


def test_unreadable_date_is_a_warning_naming_entry_and_text() -> None:
    feed = parse(rss(item("1", "Tin mới", date="hôm qua lúc 10 giờ")).encode())
    assert feed.problem is None
    assert feed.entries[0].published_at == FETCHED
    [warning] = feed.warnings
    assert "Tin mới" in warning
    assert "'hôm qua lúc 10 giờ'" in warning
    assert "fetch time" in warning


# --- limits ---------------------------------------------------------------------


def test_cap_cuts_at_a_word_boundary() -> None:
    assert cap("một hai ba", 20) == "một hai ba"
    assert cap("một hai ba bốn năm", 12) == "một hai ba …"
    assert cap("một hai ba bốn năm", 11) == "một hai …"
    assert cap("x" * 30, 10) == "x" * 8 + " …"


def test_long_title_and_summary_are_capped() -> None:
    title = " ".join(["Thuế"] * 200)
    summary = " ".join(["Đầu tư công"] * 400)
    entry = parse(rss(item("1", title, summary)).encode()).entries[0]
    assert len(entry.title) <= MAX_TITLE
    assert entry.title.endswith("Thuế …")
    assert len(entry.summary) <= MAX_SUMMARY
    assert entry.summary.endswith(" …")
    assert entry.summary[: -len(" …")].split()[-1] in {"Đầu", "tư", "công"}


def test_entry_with_a_plain_id_and_no_link_is_skipped_with_the_reason() -> None:
    body = rss(
        "<item><title>Chỉ có guid</title><guid>777</guid></item>",
        "<item><title>Không có gì</title></item>",
        item("2", "Tin"),
    ).encode()
    feed = parse(body)
    assert feed.problem is None
    assert feed.skipped == 2
    assert [e.title for e in feed.entries] == ["Tin"]
    assert feed.warnings == (
        "entry #1 'Chỉ có guid' skipped: its id '777' is not a URL and it has no link",
        "entry #2 'Không có gì' skipped: it has neither an id nor a link",
    )


def test_plain_text_titles_keep_angle_brackets() -> None:
    rss_body = rss(
        item("1", escape("Luật <sửa đổi> 2025")),
        item("2", escape("Tin <b>nóng</b>")),
        item("3", escape("Tin<br>mới")),
    ).encode()
    assert [e.title for e in parse(rss_body).entries] == ["Luật <sửa đổi> 2025", "Tin nóng", "Tin mới"]
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>x</title>'
        '<entry><title type="text">Luật &lt;sửa đổi&gt; &lt;b&gt;2025&lt;/b&gt;</title><id>https://a.vn/1</id>'
        "<updated>2026-11-26T10:14:00+07:00</updated></entry>"
        '<entry><title type="html">Tin &lt;b&gt;nóng&lt;/b&gt;</title><id>https://a.vn/2</id>'
        "<updated>2026-11-26T10:14:00+07:00</updated></entry></feed>"
    ).encode()
    feed = parse(atom, {"content-type": "application/atom+xml"})
    assert [e.title for e in feed.entries] == ["Luật <sửa đổi> <b>2025</b>", "Tin nóng"]
