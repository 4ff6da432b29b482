"""read_html and parse_listing on listing pages as Vietnamese government portals serve them.

The fixtures in tests/fixtures/portals are written after real portals: a
Liferay asset publisher (relative links, Liferay's pager), a SharePoint news
list (weekday dates, lazy images, a postback pager) and a home-made CMS list
saved in windows-1258 while both the HTTP header and its <meta> say UTF-8.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach.config import Listing
from outreach.html_page import HtmlPage, NotHtml, read_html
from outreach.listing import ListingPage, parse_listing

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
FETCHED = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # 12:00 in Quảng Ngãi
FIXTURES = Path(__file__).parent / "fixtures" / "portals"
HTML_UTF8 = {"Content-Type": "text/html;charset=UTF-8"}

LIFERAY_URL = "https://quangngai.gov.vn/web/portal/tin-tuc"
LIFERAY_CONTENT = "https://quangngai.gov.vn/web/portal/tin-tuc/-/asset_publisher/xKnQ4m8Y1pZt/content/"
LIFERAY = Listing(
    item="div.asset-abstract",
    link="h3.asset-title a",
    date=".metadata-publish-date",
    summary="div.asset-summary",
    image="img.asset-small-image",
    # Tiếp is the last button but one; disabled (href="javascript:;") on the last page
    next="ul.lfr-pagination-buttons li:nth-last-child(2):not(.disabled) a",
)
LIFERAY_PAGE_2 = (
    "https://quangngai.gov.vn/web/portal/tin-tuc?p_p_id=101_INSTANCE_xKnQ4m8Y1pZt&p_p_lifecycle=0"
    "&p_p_state=normal&p_p_mode=view&_101_INSTANCE_xKnQ4m8Y1pZt_cur=2&_101_INSTANCE_xKnQ4m8Y1pZt_delta=5"
)

SHAREPOINT_URL = "https://stp.quangngai.gov.vn/Pages/tin-hoat-dong.aspx"
SHAREPOINT = Listing(
    item="div.news-list div.item",
    link="h4 a",
    date="span.date",
    summary="p.sapo",
    image="div.thumb img",
    next="div.paging a.next",
)

CMS_URL = "https://sotuphap.quangngai.gov.vn/chuyen-muc/tin-tuc.html"
CMS = Listing(
    item="ul.list-news > li",
    link="a.title",
    date="span.date",
    summary="p",
    image="img",
    next="div.phantrang a.next",
)


def page(name: str, url: str, headers: dict[str, str] = HTML_UTF8) -> HtmlPage:
    return read_html((FIXTURES / name).read_bytes(), headers, url)


def listing(name: str, url: str, selectors: Listing, headers: dict[str, str] = HTML_UTF8) -> ListingPage:
    return parse_listing(page(name, url, headers), url, selectors, FETCHED, HCM)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A wall-clock time in Quảng Ngãi, as the aware UTC time the parser gives."""
    return datetime(year, month, day, hour, minute, tzinfo=HCM).astimezone(UTC)


# --- Liferay ------------------------------------------------------------------------


def test_liferay_asset_publisher_list() -> None:
    read = listing("liferay_asset_publisher.html", LIFERAY_URL, LIFERAY)

    assert read.problem is None
    # the fourth block links the first article again (another fragment): first wins; the fifth is a script
    assert [e.url for e in read.entries] == [
        LIFERAY_CONTENT
        + "ubnd-tinh-quang-ngai-ban-hanh-ke-hoach-chuyen-oi-so-nam-2027?redirect=%2Fweb%2Fportal%2Ftin-tuc",
        LIFERAY_CONTENT + "hoi-nghi-xuc-tien-au-tu-vao-khu-kinh-te-dung-quat",
        LIFERAY_CONTENT + "quang-ngai-ron-rang-ngay-hoi-ai-oan-ket",
    ]
    assert [e.guid for e in read.entries] == [e.url for e in read.entries]
    assert [e.title for e in read.entries] == [
        "UBND tỉnh Quảng Ngãi ban hành Kế hoạch chuyển đổi số năm 2027",
        "Hội nghị xúc tiến đầu tư vào Khu kinh tế Dung Quất",
        "Quảng Ngãi rộn ràng Ngày hội Đại đoàn kết toàn dân tộc",  # written decomposed (NFD) in the page
    ]
    assert all(unicodedata.is_normalized("NFC", e.title + e.summary) for e in read.entries)
    assert [e.published_at for e in read.entries] == [local(2026, 11, 26), local(2026, 11, 25), local(2026, 11, 24)]
    assert read.entries[0].published_at == datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    assert all(e.dated for e in read.entries)
    assert (
        read.entries[1].summary
        == "Hơn 200 doanh nghiệp trong và ngoài nước tham dự; 12 dự án được trao chủ trương đầu tư."
    )
    assert [e.image_url for e in read.entries] == [
        "https://quangngai.gov.vn/documents/10181/0/chuyen-doi-so-2027.jpg/5c3e8a41-7f2b-4c09-9d0a-8f1f0a2e6b11?t=1764125640000",
        "https://quangngai.gov.vn/documents/10181/0/dung-quat.jpg",
        None,  # this block has no thumbnail
    ]
    assert read.next_url == LIFERAY_PAGE_2
    assert read.warnings == (
        "item #5 'Tin nội bộ (chỉ dành cho cán bộ) 23/11/2026' skipped: "
        "its link 'javascript:void(0);' is not an http(s) address",
    )


def test_a_next_link_back_to_the_same_page_ends_the_listing() -> None:
    assert listing("liferay_asset_publisher.html", LIFERAY_PAGE_2, LIFERAY).next_url is None


def test_an_item_selector_matching_nothing_is_the_problem_naming_it() -> None:
    moved = LIFERAY.model_copy(update={"item": "div.news-item"})

    read = listing("liferay_asset_publisher.html", LIFERAY_URL, moved)

    assert read.problem == f"item selector 'div.news-item' matched nothing on {LIFERAY_URL}"
    assert (read.entries, read.next_url) == ([], None)


def test_a_link_selector_matching_nothing_in_every_item_is_the_problem_naming_it() -> None:
    moved = LIFERAY.model_copy(update={"link": "a.asset-link"})

    read = listing("liferay_asset_publisher.html", LIFERAY_URL, moved)

    assert read.problem == f"link selector 'a.asset-link' matched nothing in the 5 items on {LIFERAY_URL}"
    assert read.entries == []


# --- SharePoint ---------------------------------------------------------------------


def test_sharepoint_news_list() -> None:
    read = listing("sharepoint_news_list.html", SHAREPOINT_URL, SHAREPOINT)

    assert read.problem is None
    entries = {e.url.rsplit("=", 1)[1]: e for e in read.entries}
    assert list(entries) == ["5821", "5822", "5815", "5810"]  # the block without a link is skipped
    tap_huan, ky_niem, tiep_dan, tong_ket = entries.values()
    assert tap_huan.url == "https://stp.quangngai.gov.vn/Pages/tin-hoat-dong.aspx?ItemID=5821"
    assert tap_huan.title == "Sở Tư pháp tập huấn nghiệp vụ hộ tịch năm 2026"  # the link's text, not its title=
    assert tap_huan.published_at == datetime(2026, 11, 26, 3, 14, tzinfo=UTC)  # Thứ Năm, 26/11/2026 10:14
    assert tap_huan.summary == "Hơn 150 công chức tư pháp - hộ tịch cấp xã tham dự lớp tập huấn."
    # src holds SharePoint's blank.gif: data-src, then srcset's first candidate, are the real images
    assert tap_huan.image_url == "https://stp.quangngai.gov.vn/PublishingImages/2026/11/so-tu-phap-tap-huan.jpg"
    assert ky_niem.image_url == "https://stp.quangngai.gov.vn/PublishingImages/2026/11/le-ky-niem-480.jpg"
    # Thứ Sáu, 27/11/2026 08:00 is ahead of the fetch: clamped, still dated
    assert (ky_niem.published_at, ky_niem.dated) == (FETCHED, True)
    assert (tiep_dan.published_at, tiep_dan.dated) == (FETCHED, False)  # "Đang cập nhật"
    assert tong_ket.title == "Hội nghị tổng kết công tác tư pháp"  # an icon link: its title attribute
    assert tong_ket.published_at == local(2026, 11, 24, 16, 30)  # Cập nhật lúc 16:30 ngày 24/11/2026
    assert read.next_url is None  # a __doPostBack pager cannot be followed by address
    assert read.warnings == (
        "item #3 'Thông báo lịch tiếp công dân tháng 12 Đang cập nhật': unreadable date 'Đang cập nhật'; "
        "the fetch time is used instead",
        "item #5 'Văn bản mới ban hành (đang cập nhật) 23/11/2026' skipped: no 'h4 a' in it",
        "next-page link \"javascript:__doPostBack('ctl00$ctl42$g_4b9c8a5e$ctl00$lnkNext','')\" is not an http(s) "
        "address (a script?): the next page is not read",
    )


def test_optional_selectors_matching_nothing_are_warnings_naming_them() -> None:
    copied = SHAREPOINT.model_copy(update={"title": "h4 a span.tieu-de", "summary": "div.tom-tat", "next": None})

    read = listing("sharepoint_news_list.html", SHAREPOINT_URL, copied)

    assert read.problem is None
    assert read.entries[0].title == "Sở Tư pháp tập huấn nghiệp vụ hộ tịch năm 2026"  # the link's text stands in
    assert read.entries[0].summary == ""
    assert read.warnings[-2:] == (
        f"title selector 'h4 a span.tieu-de' matched nothing in the 5 items on {SHAREPOINT_URL}",
        f"summary selector 'div.tom-tat' matched nothing in the 5 items on {SHAREPOINT_URL}",
    )


# --- a windows-1258 page declared as UTF-8 ------------------------------------------------


def test_windows_1258_page_declared_as_utf8_is_read_right() -> None:
    html = page("plain_cms_windows1258.html", CMS_URL, {"content-type": "text/html; charset=utf-8"})

    assert html.encoding == "cp1258"
    assert html.warnings == ("charset declared as utf-8 (HTTP) and utf-8 (meta) is wrong: read as cp1258",)

    read = parse_listing(html, CMS_URL, CMS, FETCHED, HCM)

    assert read.problem is None
    # links are relative to <base href="https://sotuphap.quangngai.gov.vn/">, not to the page's folder
    assert [(e.url, e.title) for e in read.entries] == [
        (
            "https://sotuphap.quangngai.gov.vn/tin-tuc/pho-bien-giao-duc-phap-luat-cho-dong-bao-dan-toc-thieu-so-1203.html",
            "Phổ biến, giáo dục pháp luật cho đồng bào dân tộc thiểu số ở huyện Sơn Tây",
        ),
        (
            "https://sotuphap.quangngai.gov.vn/tin-tuc/huong-dan-thuc-hien-chung-thuc-dien-tu-1201.html",
            "Hướng dẫn thực hiện chứng thực bản sao điện tử từ bản chính",
        ),
        (
            "https://sotuphap.quangngai.gov.vn/tin-tuc/ket-qua-tro-giup-phap-ly-quy-iii-1198.html",
            "Kết quả trợ giúp pháp lý quý III năm 2026",
        ),
    ]
    # Ngày đăng: 26-11-2026 / (25/11/2026) / Ngày đăng: 20-10-2026 | Lượt xem: 318
    assert [e.published_at for e in read.entries] == [local(2026, 11, 26), local(2026, 11, 25), local(2026, 10, 20)]
    assert read.entries[1].summary == "Người dân có thể nộp hồ sơ chứng thực trực tuyến qua Cổng Dịch vụ công quốc gia."
    assert [e.image_url for e in read.entries] == [
        "https://sotuphap.quangngai.gov.vn/upload/tin-tuc/pbgdpl.jpg",
        "https://sotuphap.quangngai.gov.vn/upload/tin-tuc/chung-thuc.jpg",
        None,
    ]
    assert read.next_url == "https://sotuphap.quangngai.gov.vn/tin-tuc.html?page=2"
    assert read.warnings == ()


def test_only_the_wrong_declaration_is_named() -> None:
    html = page("plain_cms_windows1258.html", CMS_URL, {"Content-Type": "text/html; charset=windows-1258"})

    assert html.encoding == "cp1258"
    assert html.warnings == ("charset declared as utf-8 (meta) is wrong: read as cp1258",)


def test_a_utf8_page_declared_windows_1258_is_read_as_utf8() -> None:
    """Short Vietnamese UTF-8 may decode as windows-1258 too ("Góp ý" as "GĂ³p Ă½"): UTF-8 checks itself first."""
    html = page("liferay_asset_publisher.html", LIFERAY_URL, {"content-type": "text/html; charset=windows-1258"})

    assert html.encoding == "utf-8"
    assert html.warnings == ("charset declared as cp1258 (HTTP) is wrong: read as utf-8",)


def test_a_right_declaration_gives_no_warning() -> None:
    html = page("liferay_asset_publisher.html", LIFERAY_URL)

    assert (html.encoding, html.warnings) == ("utf-8", ())


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"", {}, "empty page at https://stp.quangngai.gov.vn/x"),
        (b"  \r\n ", HTML_UTF8, "empty page at https://stp.quangngai.gov.vn/x"),
        (
            b'{"d": {"results": []}}',
            {"content-type": "application/json"},
            "not an HTML page at https://stp.quangngai.gov.vn/x (application/json): it holds no HTML elements",
        ),
        (
            b'<?xml version="1.0"?><rss version="2.0"><channel><title>Tin</title></channel></rss>',
            {"content-type": "application/rss+xml"},
            "not an HTML page at https://stp.quangngai.gov.vn/x (application/rss+xml): it starts with <rss>",
        ),
    ],
)
def test_an_empty_or_non_html_body_raises_not_html(body: bytes, headers: dict[str, str], message: str) -> None:
    with pytest.raises(NotHtml) as raised:
        read_html(body, headers, "https://stp.quangngai.gov.vn/x")

    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)  # callers reading article pages catch ValueError


# --- dates inside text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markup", "expected"),
    [
        ('<span class="d">Ngày đăng: 26/11/2026 10:14</span>', local(2026, 11, 26, 10, 14)),
        ('<span class="d">(26/11/2026)</span>', local(2026, 11, 26)),
        ('<span class="d">Cập nhật: 10:14 26/11/2026</span>', local(2026, 11, 26, 10, 14)),
        ('<span class="d">Thứ năm, ngày 26 tháng 11 năm 2026</span>', local(2026, 11, 26)),
        ('<span class="d">26.11.2026 | 1.204 lượt xem</span>', local(2026, 11, 26)),
        ('<time class="d" datetime="2026-11-26T10:14:00+07:00">hôm qua</time>', local(2026, 11, 26, 10, 14)),
        ('<meta class="d" itemprop="datePublished" content="2026-11-26T03:14:00Z">', local(2026, 11, 26, 10, 14)),
    ],
)
def test_dates_are_found_inside_longer_text(markup: str, expected: datetime) -> None:
    body = f'<html><body><div class="tin"><a href="/tin/1.html">Tin một</a>{markup}</div></body></html>'
    html = read_html(body.encode(), HTML_UTF8, "https://quangngai.gov.vn/tin")

    read = parse_listing(html, "https://quangngai.gov.vn/tin", Listing(item="div.tin", date=".d"), FETCHED, HCM)

    assert [(e.url, e.published_at, e.dated) for e in read.entries] == [
        ("https://quangngai.gov.vn/tin/1.html", expected, True)
    ]
    assert read.warnings == ()


def test_no_date_selector_means_the_fetch_time_undated() -> None:
    body = '<ul><li><a href="tin/1.html#top">Tin một</a></li><li><a href="tin/2.html">Tin hai</a></li></ul>'
    html = read_html(body.encode(), {}, "https://quangngai.gov.vn/chuyen-muc/")

    read = parse_listing(html, "https://quangngai.gov.vn/chuyen-muc/", Listing(item="li"), FETCHED, HCM)

    assert [(e.url, e.title, e.published_at, e.dated, e.image_url) for e in read.entries] == [
        ("https://quangngai.gov.vn/chuyen-muc/tin/1.html", "Tin một", FETCHED, False, None),
        ("https://quangngai.gov.vn/chuyen-muc/tin/2.html", "Tin hai", FETCHED, False, None),
    ]
    assert (read.problem, read.next_url, read.warnings) == (None, None, ())


def test_a_utf8_page_with_a_stray_byte_stays_utf8() -> None:
    """A footer's © saved in latin-1, served with Apache's default ISO-8859-1.

    Latin-1 decodes every byte (and garbles every Vietnamese letter): one
    replacement character in UTF-8 is the better reading.
    """
    body = (FIXTURES / "liferay_asset_publisher.html").read_bytes().replace(b"</footer>", b"\xa9 2026</footer>")

    html = read_html(body, {"content-type": "text/html; charset=ISO-8859-1"}, LIFERAY_URL)
    read = parse_listing(html, LIFERAY_URL, LIFERAY, FETCHED, HCM)

    assert html.encoding == "utf-8"
    assert html.warnings == (
        "1 stray byte replaced (not UTF-8): some text is garbled",
        "charset declared as iso8859-1 (HTTP) is wrong: read as utf-8",
    )
    assert read.entries[1].title == "Hội nghị xúc tiến đầu tư vào Khu kinh tế Dung Quất"


def test_items_whose_links_are_all_scripts_are_the_problem() -> None:
    body = (
        '<div class="tin"><a href="javascript:void(0)" onclick="xem(1)">Tin một</a></div>'
        '<div class="tin"><a href="mailto:ttdt@quangngai.gov.vn">Góp ý</a></div>'
        '<div class="pager"><a class="next">Trang sau</a></div>'  # a disabled button: no href
    )
    html = read_html(body.encode(), HTML_UTF8, "https://quangngai.gov.vn/tin")

    read = parse_listing(html, "https://quangngai.gov.vn/tin", Listing(item="div.tin", next="a.next"), FETCHED, HCM)

    assert (html.encoding, html.warnings) == ("utf-8", ())  # short: "Góp ý" in windows-1258 would read "GĂ³p Ă½"
    assert read.problem == "none of the 2 items on https://quangngai.gov.vn/tin has an http(s) link"
    assert (read.entries, read.next_url) == ([], None)
    assert read.warnings == (
        "item #1 'Tin một' skipped: its link 'javascript:void(0)' is not an http(s) address",
        "item #2 'Góp ý' skipped: its link 'mailto:ttdt@quangngai.gov.vn' is not an http(s) address",
    )
