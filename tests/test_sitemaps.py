"""parse_sitemap and select on sitemaps as portals serve them: dates in every W3C form, gzip, breakage, attacks."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from lxml import etree

from outreach.sitemaps import Sitemap, SitemapEntry, parse_sitemap, select, url_key

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
FIXTURES = Path(__file__).parent / "fixtures" / "portals"
URL = "https://quangngai.gov.vn/sitemap.xml"
CAP = 1_000_000
TIN = "https://quangngai.gov.vn/tin-tuc/"


def parse(body: bytes, url: str = URL, cap: int = CAP) -> Sitemap:
    return parse_sitemap(body, url, HCM, cap)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


URLSET = [
    SitemapEntry(
        TIN + "ubnd-tinh-ban-hanh-ke-hoach-chuyen-doi-so-nam-2027.html", datetime(2026, 11, 26, 3, 14, 55, tzinfo=UTC)
    ),
    SitemapEntry(TIN + "hoi-nghi-xuc-tien-dau-tu-dung-quat.html", datetime(2026, 11, 26, 3, 0, tzinfo=UTC)),
    SitemapEntry(
        "https://quangngai.gov.vn/van-ban/quyet-dinh-1234-qd-ubnd.html", datetime(2026, 11, 24, 17, 0, tzinfo=UTC)
    ),
    SitemapEntry(TIN + "ngay-hoi-dai-doan-ket.html", datetime(2026, 11, 24, 1, 30, tzinfo=UTC)),
    SitemapEntry("https://quangngai.gov.vn/gioi-thieu/lich-su.html", datetime(2025, 12, 31, 17, 0, tzinfo=UTC)),
    SitemapEntry(TIN + "thong-bao-tuyen-dung-2026.html", None),
    SitemapEntry(TIN + "le-ky-niem-ngay-phap-luat.html", None),
    SitemapEntry(TIN + "tap-huan-ho-tich.html", datetime(2026, 11, 23, 2, 0, tzinfo=UTC)),
]


def test_a_urlset_with_lastmods_in_every_form() -> None:
    sitemap = parse(fixture("sitemap_urlset.xml"))

    # +07:00, Z, a date alone (midnight in Quảng Ngãi), fractions, a year-month, none, unreadable;
    # the <loc> spread over lines is trimmed, the relative one resolved, the repeated one kept once
    # (first wins), the ftp one skipped; <image:loc> is not an article
    assert sitemap.urls == URLSET
    assert (sitemap.children, sitemap.problem) == ([], None)
    assert sitemap.warnings == (
        "1 <url> entry skipped: no http(s) <loc> (first: 'ftp://quangngai.gov.vn/public/bao-cao-2026.pdf')",
        "1 unreadable <lastmod> read as no date (first: 'hôm qua')",
    )


def test_a_sitemap_index_lists_its_children() -> None:
    sitemap = parse(fixture("sitemap_index.xml"))

    assert sitemap.children == [
        SitemapEntry(
            "https://quangngai.gov.vn/sitemap/tin-tuc-2026-11.xml.gz", datetime(2026, 11, 26, 3, 15, tzinfo=UTC)
        ),
        SitemapEntry(
            "https://quangngai.gov.vn/sitemap/tin-tuc-2026-10.xml.gz", datetime(2026, 10, 31, 16, 59, tzinfo=UTC)
        ),
        SitemapEntry("https://quangngai.gov.vn/sitemap/van-ban.xml", None),
    ]
    assert (sitemap.urls, sitemap.problem, sitemap.warnings) == ([], None, ())


def test_a_gzipped_child_reads_like_the_plain_one() -> None:
    body = gzip.compress(fixture("sitemap_urlset.xml"))
    assert body[:2] == b"\x1f\x8b"

    sitemap = parse(body, "https://quangngai.gov.vn/sitemap/tin-tuc-2026-11.xml.gz")

    assert (sitemap.urls, sitemap.problem) == (URLSET, None)


def test_a_sitemap_without_namespace_or_lastmods() -> None:
    sitemap = parse(fixture("sitemap_no_lastmod.xml"), "https://sotuphap.quangngai.gov.vn/sitemap.xml")

    assert [(e.url.rsplit("/", 1)[1], e.lastmod) for e in sitemap.urls] == [
        ("pho-bien-giao-duc-phap-luat-1203.html", None),
        ("chung-thuc-dien-tu-1201.html", None),
        ("co-cau-to-chuc.html", None),
        ("tro-giup-phap-ly-quy-iii-1198.html", None),
        ("tap-huan-ho-tich-1190.html", None),
    ]
    assert sitemap.problem is None


def gzip_bomb(size: int) -> bytes:
    """A gzipped urlset of `size` bytes, most of them spaces: about a thousandth of that compressed."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = b" " * 1_000_000
    parts = [packer.compress(b'<?xml version="1.0"?><urlset>')]
    parts += [packer.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, packer.compress(b"</urlset>"), packer.flush()])


def test_a_gzip_bomb_is_refused_near_the_cap() -> None:
    bomb = gzip_bomb(50_000_000)
    assert len(bomb) < 100_000

    tracemalloc.start()
    try:
        sitemap = parse(bomb, "https://quangngai.gov.vn/sitemap/tin-tuc.xml.gz")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (
        sitemap.problem
        == "sitemap at https://quangngai.gov.vn/sitemap/tin-tuc.xml.gz is over the 1,000,000-byte cap once gunzipped"
    )
    assert sitemap.urls == []
    assert peak < 3 * CAP  # inflated in pieces: never the 50 MB


def test_a_plain_body_over_the_cap_is_refused() -> None:
    body = fixture("sitemap_urlset.xml")

    assert parse(body, cap=1_000).problem == f"sitemap at {URL} is {len(body):,} bytes, over the 1,000-byte cap"


def test_gzip_magic_on_a_body_that_is_not_gzip() -> None:
    sitemap = parse(b"\x1f\x8b<urlset/>")

    assert sitemap.problem is not None
    assert sitemap.problem.startswith(f"sitemap at {URL} is not valid gzip: Error -3 while decompressing data")


def test_a_sitemap_cut_short_is_partly_read_without_its_cut_entry() -> None:
    sitemap = parse(fixture("sitemap_truncated.xml"))

    # the fifth <loc> ends in "lich-su.htm": recover mode would keep it, and it is a wrong address
    assert sitemap.urls == URLSET[:4]
    assert (
        sitemap.problem == "partly read (4 entries kept): Premature end of data in tag loc line 25, line 25, column 55"
    )


def test_broken_xml_keeps_what_recover_mode_read() -> None:
    body = (
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        b"<url><loc>https://quangngai.gov.vn/tin-tuc/a.html</loc><lastmod>2026-11-26</url>"
        b"</urlset>"
    )

    sitemap = parse(body)

    assert sitemap.urls == [SitemapEntry(TIN + "a.html", datetime(2026, 11, 25, 17, 0, tzinfo=UTC))]
    assert sitemap.problem == (
        "partly read (1 entry kept): Opening and ending tag mismatch: lastmod line 1 and url, line 1, column 141"
    )


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", f"not a readable sitemap at {URL}: Document is empty, line 1, column 1"),
        (
            b"<html><head><title>404 - Kh\xc3\xb4ng t\xc3\xacm th\xe1\xba\xa5y trang",
            f"not a readable sitemap at {URL}: its root element is <html>",
        ),
        (
            b"Service Unavailable",
            f"not a readable sitemap at {URL}: Start tag expected, '<' not found, line 1, column 1",
        ),
    ],
)
def test_what_is_not_a_sitemap_is_the_problem(body: bytes, problem: str) -> None:
    assert parse(body) == Sitemap([], [], problem)


def test_a_blank_line_before_the_xml_declaration_is_tolerated() -> None:
    assert parse(b"\r\n\n" + fixture("sitemap_index.xml")).problem is None


def xxe(secret: Path) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "{secret.as_uri()}">]>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        "<url><loc>https://quangngai.gov.vn/tin-tuc/&xxe;.html</loc></url>"
        "<url><loc>https://quangngai.gov.vn/tin-tuc/b.html</loc><lastmod>&xxe;</lastmod></url>"
        "</urlset>"
    ).encode()


def test_an_external_entity_is_never_resolved() -> None:
    secret = FIXTURES / "xxe_secret.txt"
    marker = "TOP-SECRET-c2a1f7"
    unsafe = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=False)
    assert marker in etree.tostring(etree.fromstring(xxe(secret), unsafe)).decode()  # the attack is real

    sitemap = parse(xxe(secret))

    assert marker not in repr(sitemap)
    assert sitemap.urls == [SitemapEntry(TIN + "b.html", None)]  # the <loc> holding the entity is no address
    assert sitemap.warnings == (
        "1 <url> entry skipped: no http(s) <loc> (first: no <loc>, or one holding markup or an entity)",
    )
    assert sitemap.problem is None


def test_entities_are_not_expanded_billion_laughs() -> None:
    """Nine levels of ten: 2 GB of "ha" if expanded; libxml2 refuses the declarations outright."""
    levels = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
    body = (
        f'<?xml version="1.0"?><!DOCTYPE urlset [<!ENTITY l0 "ha">{levels}]>'
        "<urlset><url><loc>https://quangngai.gov.vn/&l9;</loc></url></urlset>"
    ).encode()

    sitemap = parse(body)

    assert sitemap.urls == []
    assert sitemap.problem is not None  # libxml2's wording: "Maximum entity amplification factor exceeded, ..."
    assert sitemap.problem.startswith(f"not a readable sitemap at {URL}: ")
    assert "entity" in sitemap.problem


# --- select ----------------------------------------------------------------------


def keys(*entries: SitemapEntry) -> frozenset[int]:
    return frozenset(url_key(e.url) for e in entries)


def test_the_first_poll_takes_the_most_recent_and_records_the_rest_as_archive() -> None:
    chosen = select(URLSET, [], frozenset(), None, 3, 100)

    assert chosen.new == [URLSET[0], URLSET[1], URLSET[2]]  # most recent first
    assert chosen.archive == keys(*URLSET) - keys(*chosen.new)  # never to be ingested
    assert chosen.changed == []


def test_later_polls_take_what_was_never_listed_whatever_its_lastmod() -> None:
    recorded = keys(*URLSET[1:])
    regenerated = [SitemapEntry(e.url, datetime(2026, 11, 28, 1, 0, tzinfo=UTC)) for e in URLSET]

    chosen = select(regenerated, [], recorded, datetime(2026, 11, 27, tzinfo=UTC), 3, 100)

    assert chosen.new == [regenerated[0]]  # the one URL never listed: the archive's new stamps do not flood
    assert chosen.changed == regenerated[1:]  # recorded, lastmod past the watermark: read again if stored
    assert chosen.archive == frozenset()


def test_a_date_only_lastmod_on_the_watermark_day_still_brings_a_new_url() -> None:
    day = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)  # 2026-11-26 read in Asia/Ho_Chi_Minh
    first, later = SitemapEntry("https://p.gov.vn/tin-tuc/a1", day), SitemapEntry("https://p.gov.vn/tin-tuc/a3", day)

    chosen = select([first, later], [], keys(first), day, 3, 100)

    assert chosen.new == [later]


def test_over_the_limit_the_rest_wait_for_the_next_poll() -> None:
    chosen = select(URLSET, [], frozenset({1}), None, 3, 2)

    assert len(chosen.new) == 2
    assert chosen.waiting == len(URLSET) - 2


def test_include_keeps_the_paths_it_matches() -> None:
    chosen = select(URLSET, [r"^/tin-tuc/"], frozenset(), None, 20, 100)

    assert {e.url for e in chosen.new} == {e.url for e in URLSET if "/tin-tuc/" in e.url}
    assert len(chosen.new) < len(URLSET)


def test_without_lastmods_document_order_decides() -> None:
    urls = parse(fixture("sitemap_no_lastmod.xml")).urls

    first = select(urls, [r"/tin-tuc/"], frozenset(), None, 2, 100)
    later = select(urls, [r"/tin-tuc/"], keys(*first.new) | first.archive, None, 2, 100)

    assert first.new == [u for u in urls if "/tin-tuc/" in u.url][:2]
    assert later.new == []  # an undated sitemap does not bring the archive in, poll after poll
