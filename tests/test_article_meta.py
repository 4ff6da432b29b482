"""Article metadata as Vietnamese portals write it: OpenGraph in either spelling, bare pages, JSON-LD."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import lxml.html

from outreach.article_meta import ArticleMeta, article_metadata
from outreach.feeds import CUT_MARK, MAX_SUMMARY

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
PAGE = "https://sotnmt.quangtri.gov.vn/web/guest/tin-tuc/-/asset_publisher/abc/content/hoi-nghi-so-ket"
TEN_FOURTEEN_ICT = datetime(2026, 11, 26, 3, 14, tzinfo=UTC)


def meta_of(page: str, url: str = PAGE) -> ArticleMeta:
    return article_metadata(lxml.html.document_fromstring(page.encode("utf-8")), url, ZONE)


def test_liferay_page_with_opengraph() -> None:
    decomposed = unicodedata.normalize("NFD", "Hội nghị sơ kết 6 tháng đầu năm")
    page = f"""<!DOCTYPE html>
<html lang="vi-VN"><head>
<meta content="text/html; charset=UTF-8" http-equiv="content-type" />
<title>Hội nghị sơ kết - Cổng thông tin điện tử tỉnh Quảng Trị</title>
<meta property="og:site_name" content="Cổng thông tin điện tử tỉnh Quảng Trị" />
<meta property="og:title" content="  {decomposed}\n  của Sở Tài nguyên &amp;amp; Môi trường " />
<meta property="og:description" content="Sáng 26/11, Sở Tài nguyên và Môi trường tổ chức hội nghị&nbsp;sơ kết." />
<meta property="og:image" content="/documents/20182/0/hoi-nghi.jpg/1b2c?t=1764126840000" />
<meta property="article:published_time" content="2026-11-26T10:14:00+07:00" />
<meta name="description" content="Cổng thông tin điện tử tỉnh Quảng Trị" />
</head><body><div class="journal-content-article">Nội dung</div></body></html>"""
    assert meta_of(page) == ArticleMeta(
        title="Hội nghị sơ kết 6 tháng đầu năm của Sở Tài nguyên & Môi trường",
        description="Sáng 26/11, Sở Tài nguyên và Môi trường tổ chức hội nghị sơ kết.",
        image="https://sotnmt.quangtri.gov.vn/documents/20182/0/hoi-nghi.jpg/1b2c?t=1764126840000",
        published_at=TEN_FOURTEEN_ICT,
    )


def test_bare_page_meta_description_title_and_itemprop_date() -> None:
    page = """<html><head><meta charset="utf-8">
<TITLE>Thông báo   lịch tiếp công dân tháng 12/2026</TITLE>
<META NAME="Description" CONTENT="UBND tỉnh thông báo lịch tiếp công dân định kỳ của Chủ tịch UBND tỉnh.">
</head><body>
<div class="date">Ngày đăng: <span itemprop="datePublished">26/11/2026 10:14</span></div>
</body></html>"""
    assert meta_of(page) == ArticleMeta(
        title="Thông báo lịch tiếp công dân tháng 12/2026",
        description="UBND tỉnh thông báo lịch tiếp công dân định kỳ của Chủ tịch UBND tỉnh.",
        image=None,
        published_at=TEN_FOURTEEN_ICT,
    )


def test_json_ld_news_article_in_a_graph_after_a_broken_block() -> None:
    page = """<html><head><meta charset="utf-8"><title>Tin tức - Cổng thông tin điện tử tỉnh Hà Tĩnh</title>
<script type="application/ld+json">{"@type": "NewsArticle", "headline": </script>
<script type="application/ld+json; charset=utf-8">
{"@context": "https://schema.org", "@graph": [
  {"@type": "WebSite", "name": "Cổng thông tin điện tử tỉnh Hà Tĩnh"},
  {"@type": ["NewsArticle"], "headline": "Hà Tĩnh đón nhận
   Huân chương Lao động hạng Nhất",
   "image": [{"@type": "ImageObject", "url": "https://hatinh.gov.vn/uploads/huan-chuong.jpg"}],
   "datePublished": "2026-11-26T10:14:00+07:00"}
]}
</script></head><body></body></html>"""
    meta = meta_of(page, "https://hatinh.gov.vn/tin-tuc/ha-tinh-don-nhan-huan-chuong")
    assert meta.title == "Hà Tĩnh đón nhận Huân chương Lao động hạng Nhất"  # not the <title> with the portal's name
    assert meta.image == "https://hatinh.gov.vn/uploads/huan-chuong.jpg"
    assert meta.published_at == TEN_FOURTEEN_ICT
    assert meta.description is None


def test_name_spelling_upper_case_relative_image_under_base_and_vietnamese_date() -> None:
    page = """<html><head><meta charset="utf-8">
<base href="/web/guest/tin-tuc/">
<meta name="OG:TITLE" content="Khánh thành cầu Đăk Bla">
<meta name="og:description" content="Cầu nối đôi bờ sông Đăk Bla, thành phố Kon Tum.">
<meta name="og:image" content="../../../documents/cau-dak-bla.png">
<meta name="Article:Published_Time" content="26/11/2026 10:14">
<title>Trang chủ</title>
</head><body></body></html>"""
    assert meta_of(page, "https://kontum.gov.vn/web/guest/trang-chu") == ArticleMeta(
        title="Khánh thành cầu Đăk Bla",
        description="Cầu nối đôi bờ sông Đăk Bla, thành phố Kon Tum.",
        image="https://kontum.gov.vn/documents/cau-dak-bla.png",
        published_at=TEN_FOURTEEN_ICT,
    )


def test_twitter_card_and_time_inside_the_article() -> None:
    page = """<html><head><meta charset="utf-8">
<meta property="og:image" content="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
<meta name="twitter:title" content="Giải ngân vốn đầu tư công đạt 85%">
<meta name="twitter:description" content="Tỉnh Nghệ An dẫn đầu khu vực Bắc Trung Bộ.">
<meta name="twitter:image:src" content="//cdn.nghean.gov.vn/anh/giai-ngan.jpg">
</head><body>
<header><time datetime="2026-12-01T08:00:00+07:00">Thứ Ba, 01/12/2026</time></header>
<article><h1>Giải ngân</h1><time datetime="2026-11-26 10:14">26/11/2026</time></article>
</body></html>"""
    assert meta_of(page, "https://nghean.gov.vn/kinh-te/giai-ngan") == ArticleMeta(
        title="Giải ngân vốn đầu tư công đạt 85%",
        description="Tỉnh Nghệ An dẫn đầu khu vực Bắc Trung Bộ.",
        image="https://cdn.nghean.gov.vn/anh/giai-ngan.jpg",  # the data: image is no use to a post
        published_at=TEN_FOURTEEN_ICT,  # the header's time is the page's, not the article's
    )


def test_an_unreadable_date_gives_way_to_the_next_source() -> None:
    page = """<html><head><meta charset="utf-8">
<meta property="article:published_time" content="Đang cập nhật">
<meta itemprop="datePublished" content="Thứ Năm, 26/11/2026 - 10:14">
</head><body></body></html>"""
    assert meta_of(page).published_at == TEN_FOURTEEN_ICT


def test_a_long_description_is_capped_and_an_empty_page_declares_nothing() -> None:
    words = " ".join(["Triển khai Nghị quyết về phát triển kinh tế - xã hội."] * 100)
    meta = meta_of(
        f'<html><head><meta charset="utf-8"><meta property="og:description" content="{words}"></head></html>'
    )
    assert meta.description is not None
    assert len(meta.description) <= MAX_SUMMARY
    assert meta.description.endswith(CUT_MARK)
    assert meta.description.startswith("Triển khai Nghị quyết")
    assert (
        meta_of("<html><head><meta charset=utf-8><title> </title></head><body><p>Trống</p></body></html>")
        == ArticleMeta()
    )
