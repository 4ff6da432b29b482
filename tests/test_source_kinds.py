"""Portal sections without a feed, end to end: listing pages and sitemaps polled from a real loopback server.

Items flow like feed items: stored once, filed under topics, their article
pages read for what the listing lacks (robots.txt honoured), updated in place
when the portal changes them, and announced in their own language.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from channels import LIMITS
from cli import main
from outreach.config import Settings
from outreach.db import Store
from outreach.ingest import poll_sources
from outreach.models import Campaign, Item, Source
from outreach.render import Renderer
from tests.conftest import FeedServer, announce, base_config

HTML = {"Content-Type": "text/html; charset=utf-8"}
NO_DELAY = {"article_delay_seconds": 0, "timeout_seconds": 5, "contact": "ttdt@quangngai.gov.vn"}
LISTING = {
    "item": "div.asset-abstract",
    "link": "h3.asset-title a",
    "date": ".metadata-publish-date",
    "summary": ".asset-summary",
    "next": ".pager a.next",
}


def liferay_page(rows: list[tuple[str, str, str, str]], next_href: str | None) -> bytes:
    """A Liferay asset-publisher list as Vietnamese portals render it: (href, title, date, summary) per row."""
    blocks = "".join(
        f"""<div class="asset-abstract">
              <h3 class="asset-title"><a href="{href}">{title}</a></h3>
              <span class="metadata-entry metadata-publish-date">{date}</span>
              <div class="asset-summary">{summary}</div>
            </div>"""
        for href, title, date, summary in rows
    )
    pager = f'<ul class="pager"><li><a class="next" href="{next_href}">Tiếp</a></li></ul>' if next_href else ""
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>Tin tức</title></head>
        <body><div class="portlet-body">{blocks}{pager}</div></body></html>""".encode()


def article(title: str, description: str, image: str, published: str = "2026-11-26T10:14:00+07:00") -> bytes:
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title} - Cổng TTĐT</title>
        <meta property="og:title" content="{title}"><meta property="og:description" content="{description}">
        <meta property="og:image" content="{image}"><meta property="article:published_time" content="{published}">
        </head><body><h1>{title}</h1></body></html>""".encode()


def settings_for(make_settings: Callable[..., Settings], db_url: str, *sources: dict[str, object]) -> Settings:
    """The repository's config with these sources, no politeness delay, and the loopback portal allowed."""
    tracker = base_config()["tracker"]
    tracker["allowed_domains"] = [*tracker["allowed_domains"], "127.0.0.1"]
    return make_settings(db_url, sources=list(sources), fetch=NO_DELAY, tracker=tracker)


def outreach_cli(settings: Settings, db_url: str, *args: str, status: int = 0) -> str:
    result = CliRunner().invoke(main, ["--config", str(settings.config_path), "--db", db_url, *args])
    assert result.exit_code == status, result.output
    return result.output


def items_of(store: Store, source: str) -> list[Item]:
    with store.sessions() as session:
        query = select(Item).join(Source).where(Source.name == source).order_by(Item.published_at.desc(), Item.id)
        return list(session.scalars(query))


def test_a_listing_page_flows_in_with_pages_metadata_robots_and_changes(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    feed_server.serve(
        "/robots.txt", body=b"User-agent: *\nDisallow: /noi-bo/\n", headers={"Content-Type": "text/plain"}
    )
    rows = [
        ("/tin-tuc/thue-1.html", "Hướng dẫn quyết toán thuế TNDN năm 2026", "26/11/2026 10:14", ""),
        ("/noi-bo/lich-hop.html", "Lịch họp nội bộ", "25/11/2026", ""),
    ]
    listing = feed_server.serve("/tin-tuc", body=liferay_page(rows, "/tin-tuc?cur=2"), headers=HTML)
    page2 = [("/tin-tuc/dau-tu-3.html", "Thu hút đầu tư vào KKT Dung Quất", "Thứ Năm, 20/11/2026", "Đã có tóm tắt")]
    feed_server.serve("/tin-tuc?cur=2", body=liferay_page(page2, None), headers=HTML)
    feed_server.serve(
        "/tin-tuc/thue-1.html",
        body=article(
            "Hướng dẫn quyết toán thuế TNDN năm 2026", "Cục Thuế tỉnh hướng dẫn doanh nghiệp", "/anh/thue.jpg"
        ),
        headers=HTML,
    )
    feed_server.serve(
        "/tin-tuc/dau-tu-3.html", body=article("Thu hút đầu tư", "Mô tả khác", "/anh/dq.jpg"), headers=HTML
    )
    spec = {"name": "tin-tuc", "url": listing, "kind": "html", "listing": LISTING}
    settings = settings_for(make_settings, db_url, spec)

    [result] = poll_sources(store, settings.schedule)

    assert (result.error, result.new, result.seen) == (None, 3, 3)
    stored = {i.url: i for i in items_of(store, "tin-tuc")}
    tax = stored[feed_server.url + "/tin-tuc/thue-1.html"]
    assert tax.title == "Hướng dẫn quyết toán thuế TNDN năm 2026"
    assert tax.summary == "Cục Thuế tỉnh hướng dẫn doanh nghiệp"  # from og:description: the listing had none
    assert tax.image_url == feed_server.url + "/anh/thue.jpg"
    assert tax.published_at == datetime(2026, 11, 26, 3, 14, tzinfo=UTC)  # the listing's local date
    invest = stored[feed_server.url + "/tin-tuc/dau-tu-3.html"]
    assert invest.summary == "Đã có tóm tắt"  # what the listing says is never overridden by the page
    assert invest.title == "Thu hút đầu tư vào KKT Dung Quất"
    assert "investment" in invest.topics
    requested = [path for path, _ in feed_server.requests]
    assert "/noi-bo/lich-hop.html" not in requested  # robots.txt disallows it
    assert "robots.txt" in (result.warning or "")
    agents = {headers["user-agent"] for path, headers in feed_server.requests if path.endswith(".html")}
    assert agents == {f"{settings.schedule.fetch.user_agent} (ttdt@quangngai.gov.vn)"}

    # A campaign goes out; then the portal corrects the title.
    with store.sessions.begin() as session:
        [delivery] = announce(session, settings, tax.id, ("facebook",))
        campaign_id = delivery.campaign_id
    rows[0] = (rows[0][0], "Hướng dẫn quyết toán thuế TNDN năm 2026 (sửa đổi)", rows[0][2], "")
    feed_server.serve("/tin-tuc", body=liferay_page(rows, "/tin-tuc?cur=2"), headers=HTML)
    before = len(feed_server.requests)

    [again] = poll_sources(store, settings.schedule)

    assert (again.error, again.new, again.changed) == (None, 0, 1)
    fetched_again = [path for path, _ in feed_server.requests[before:]]
    assert "/tin-tuc/thue-1.html" not in fetched_again  # stored articles are not re-read for metadata
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Item)) == 3  # updated, not duplicated
        updated = session.get_one(Item, tax.id)
        assert updated.title.endswith("(sửa đổi)")
        assert updated.summary == "Cục Thuế tỉnh hướng dẫn doanh nghiệp"  # the listing gave none: kept
        assert updated.changed_at is not None
        assert session.scalar(select(func.count()).select_from(Campaign)) == 1  # nothing resent by itself
    shown = outreach_cli(settings, db_url, "campaign", "show", str(campaign_id))
    assert f"the portal changed item {tax.id}" in " ".join(shown.split())


def test_a_selector_matching_nothing_is_an_error_naming_it_and_the_source(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    url = feed_server.serve("/thong-bao", body=liferay_page([("/a.html", "A", "26/11/2026", "")], None), headers=HTML)
    spec = {"name": "thong-bao", "url": url, "kind": "html", "listing": {"item": "li.news-item"}}
    settings = settings_for(make_settings, db_url, spec)

    [result] = poll_sources(store, settings.schedule)

    assert result.error is not None
    assert "li.news-item" in result.error
    assert "thong-bao" in result.error
    with store.sessions() as session:
        source = session.scalars(select(Source)).one()
        assert source.last_error == result.error
        assert session.scalar(select(func.count()).select_from(Item)) == 0


def sitemap(*urls: tuple[str, str]) -> bytes:
    entries = "".join(f"<url><loc>{loc}</loc><lastmod>{mod}</lastmod></url>" for loc, mod in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'
    ).encode()


def test_a_sitemap_index_with_a_gzipped_child_takes_the_newest_then_what_changes(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    base = feed_server.url
    feed_server.serve("/robots.txt", status=404, body=b"")
    old = [(f"{base}/tin/bai-{n}.html", f"2026-10-{n:02d}T08:00:00+07:00") for n in range(1, 21)]
    child = feed_server.serve(
        "/sitemap-tin.xml.gz", body=gzip.compress(sitemap(*old)), headers={"Content-Type": "application/x-gzip"}
    )
    index = (
        '<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{child}</loc><lastmod>2026-11-20</lastmod></sitemap></sitemapindex>"
    ).encode()
    top = feed_server.serve("/sitemap.xml", body=index, headers={"Content-Type": "application/xml"})
    for n in range(1, 22):
        feed_server.serve(
            f"/tin/bai-{n}.html",
            body=article(f"Bài số {n}: thông báo của UBND tỉnh", f"Tóm tắt {n}", f"/anh/{n}.jpg"),
            headers=HTML,
            etag=f'"v{n}"',
        )
    spec = {"name": "sitemap", "url": top, "kind": "sitemap", "sitemap": {"first_run": 3}}
    settings = settings_for(make_settings, db_url, spec)

    [first] = poll_sources(store, settings.schedule)

    assert (first.error, first.new) == (None, 3)
    titles = [i.title for i in items_of(store, "sitemap")]
    assert titles == [f"Bài số {n}: thông báo của UBND tỉnh" for n in (20, 19, 18)]  # the 3 newest, titled by og

    # A new article, and article 19 updated on the portal (its lastmod moves, its page changes).
    old[18] = (old[18][0], "2026-11-27T09:00:00+07:00")
    newest = (f"{base}/tin/bai-21.html", "2026-11-27T10:00:00+07:00")
    feed_server.serve(
        "/sitemap-tin.xml.gz",
        body=gzip.compress(sitemap(*old, newest)),
        headers={"Content-Type": "application/x-gzip"},
    )
    index = index.replace(b"2026-11-20", b"2026-11-27")
    feed_server.serve("/sitemap.xml", body=index, headers={"Content-Type": "application/xml"})
    feed_server.serve(
        "/tin/bai-19.html",
        body=article("Bài số 19 (cập nhật)", "Tóm tắt mới", "/anh/19.jpg"),
        headers=HTML,
        etag='"v19b"',
    )
    before = len(feed_server.requests)

    [second] = poll_sources(store, settings.schedule)

    assert (second.error, second.new, second.changed) == (None, 1, 1)
    by_url = {i.url: i for i in items_of(store, "sitemap")}
    assert len(by_url) == 4
    assert by_url[f"{base}/tin/bai-19.html"].title == "Bài số 19 (cập nhật)"
    assert by_url[f"{base}/tin/bai-19.html"].page_etag == '"v19b"'
    conditional = [h for p, h in feed_server.requests[before:] if p == "/tin/bai-19.html"]
    assert [h.get("if-none-match") for h in conditional] == ['"v19"']  # the page was asked for conditionally


def test_an_english_source_gives_english_items_and_english_posts(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    rows = [("/en/news/investment-1.html", "Dung Quat economic zone welcomes investors", "2026-11-26", "Summary")]
    url = feed_server.serve("/en/news", body=liferay_page(rows, None), headers=HTML)
    spec = {
        "name": "foreign-investors",
        "url": url,
        "kind": "html",
        "language": "en",
        "article_metadata": False,
        "listing": LISTING,
    }
    settings = settings_for(make_settings, db_url, spec)

    poll_sources(store, settings.schedule)

    [item] = items_of(store, "foreign-investors")
    assert item.language == "en"
    with store.sessions.begin() as session:
        deliveries = announce(session, settings, item.id, ("facebook",))
        campaign = session.get_one(Campaign, deliveries[0].campaign_id)
        assert campaign.language == "en"
        renderer = Renderer(settings.schedule, LIMITS)
        text = renderer.template("facebook", "post", "en").filename or ""
        assert text.endswith("post.en.j2")
        assert "Dung Quat economic zone welcomes investors" in deliveries[0].text


@pytest.mark.parametrize("kind", ["html"])
def test_the_listing_page_validators_spare_a_refetch(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str, kind: str
) -> None:
    rows = [("/a.html", "Tin A", "26/11/2026", "Tóm tắt")]
    url = feed_server.serve("/tin", body=liferay_page(rows, None), headers=HTML, etag='"l1"')
    spec = {"name": "tin", "url": url, "kind": kind, "listing": LISTING, "article_metadata": False}
    settings = settings_for(make_settings, db_url, spec)

    poll_sources(store, settings.schedule)
    [again] = poll_sources(store, settings.schedule)

    assert again.not_modified


def sitemap_index(*children: tuple[str, str]) -> bytes:
    entries = "".join(f"<sitemap><loc>{loc}</loc><lastmod>{mod}</lastmod></sitemap>" for loc, mod in children)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>'
    ).encode()


def serve_articles(server: FeedServer, numbers: range, published: str = "2026-11-26T10:14:00+07:00") -> None:
    for n in numbers:
        body = article(f"Bài số {n}", f"Tóm tắt {n}", f"/anh/{n}.jpg", published)
        server.serve(f"/tin/bai-{n}.html", body=body, headers=HTML)


def test_a_static_index_and_a_regenerated_sitemap_bring_only_what_is_new(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    """An index that answers 304 still has its children read; lastmods all stamped anew flood nothing."""
    base = feed_server.url
    serve_articles(feed_server, range(1, 12), published="2019-05-01T08:00:00+07:00")
    urls = [(f"{base}/tin/bai-{n}.html", "2026-11-20") for n in range(1, 11)]
    feed_server.serve("/tin.xml", body=sitemap(*urls), headers={"Content-Type": "application/xml"})
    index = sitemap_index((f"{base}/tin.xml", "2026-11-20"))
    top = feed_server.serve("/sitemap.xml", body=index, headers={"Content-Type": "application/xml"}, etag='"i1"')
    settings = settings_for(make_settings, db_url, {"name": "sm", "url": top, "kind": "sitemap"})

    [first] = poll_sources(store, settings.schedule)
    regenerated = [(loc, "2026-11-28T06:00:00+07:00") for loc, _ in [*urls, (f"{base}/tin/bai-11.html", "")]]
    feed_server.serve("/tin.xml", body=sitemap(*regenerated), headers={"Content-Type": "application/xml"})
    [second] = poll_sources(store, settings.schedule)

    assert (first.error, first.new) == (None, 10)
    assert (second.error, second.new, second.changed) == (None, 1, 0)  # bai-11 only; the rest were read again
    stored = items_of(store, "sm")
    assert len(stored) == 11
    assert {i.published_at for i in stored} == {datetime(2019, 5, 1, 1, 0, tzinfo=UTC)}  # the page's date wins


def test_an_undated_sitemap_brings_its_archive_in_once_never_again(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    base = feed_server.url
    serve_articles(feed_server, range(1, 8))
    body = "".join(f"<url><loc>{base}/tin/bai-{n}.html</loc></url>" for n in range(1, 7))
    xml = f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{body}</urlset>'
    top = feed_server.serve("/sitemap.xml", body=xml.encode(), headers={"Content-Type": "application/xml"})
    spec = {"name": "sm", "url": top, "kind": "sitemap", "sitemap": {"first_run": 2}}
    settings = settings_for(make_settings, db_url, spec)

    news = [poll_sources(store, settings.schedule)[0].new for _ in range(3)]
    grown = xml.replace("</urlset>", f"<url><loc>{base}/tin/bai-7.html</loc></url></urlset>")
    feed_server.serve("/sitemap.xml", body=grown.encode(), headers={"Content-Type": "application/xml"})
    news.append(poll_sources(store, settings.schedule)[0].new)

    assert news == [2, 0, 0, 1]
    assert {i.title for i in items_of(store, "sm")} == {"Bài số 1", "Bài số 2", "Bài số 7"}  # listed first, then new


def test_an_article_whose_page_cannot_be_had_for_now_waits_and_comes_in_later(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    feed_server.serve("/robots.txt", status=503, body=b"maintenance", headers={"Content-Type": "text/plain"})
    rows = [("/tin-tuc/thue-1.html", "Quyết toán thuế", "26/11/2026", "")]
    listing = feed_server.serve("/tin-tuc", body=liferay_page(rows, None), headers=HTML)
    feed_server.serve("/tin-tuc/thue-1.html", body=article("Quyết toán thuế", "Hướng dẫn", "/a.jpg"), headers=HTML)
    settings = settings_for(make_settings, db_url, {"name": "tin", "url": listing, "kind": "html", "listing": LISTING})

    [waiting] = poll_sources(store, settings.schedule)
    feed_server.serve("/robots.txt", status=404, body=b"", headers={"Content-Type": "text/plain"})
    [later] = poll_sources(store, settings.schedule)

    assert (waiting.error, waiting.new) == (None, 0)
    assert "next poll" in (waiting.warning or "")
    assert later.new == 1
    [item] = items_of(store, "tin")
    assert (item.summary, item.image_url) == ("Hướng dẫn", feed_server.url + "/a.jpg")


def test_links_off_the_portal_are_stored_but_never_fetched(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    """A listing cannot make us fetch an internal address (localhost is not the source's host 127.0.0.1)."""
    inside = f"http://localhost:{feed_server.url.rsplit(':', 1)[1]}/admin"
    feed_server.serve("/admin", body=article("Quản trị", "SECRET internal", "/x.jpg"), headers=HTML)
    listing = feed_server.serve("/tin-tuc", body=liferay_page([(inside, "Tin", "26/11/2026", "")], None), headers=HTML)
    settings = settings_for(make_settings, db_url, {"name": "tin", "url": listing, "kind": "html", "listing": LISTING})

    poll_sources(store, settings.schedule)

    [item] = items_of(store, "tin")
    assert item.summary == ""
    assert "/admin" not in [path for path, _ in feed_server.requests]


def test_a_later_page_that_fails_keeps_the_validators_and_new_selectors_read_afresh(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    rows = [("/a.html", "Tin A", "26/11/2026", "Tóm tắt A")]
    url = feed_server.serve("/tin", body=liferay_page(rows, "/tin?cur=2"), headers=HTML, etag='"p1"')
    feed_server.serve("/tin?cur=2", status=503, body=b"busy", headers={"Content-Type": "text/plain"})
    spec = {"name": "tin", "url": url, "kind": "html", "listing": LISTING, "article_metadata": False}
    settings = settings_for(make_settings, db_url, spec)

    [failed] = poll_sources(store, settings.schedule)
    feed_server.serve("/tin?cur=2", body=liferay_page([("/b.html", "Tin B", "25/11/2026", "B")], None), headers=HTML)
    [recovered] = poll_sources(store, settings.schedule)
    [unchanged] = poll_sources(store, settings.schedule)
    tuned = settings_for(make_settings, db_url, {**spec, "listing": {**LISTING, "title": "h3"}})
    [afresh] = poll_sources(store, tuned.schedule)

    assert failed.error is not None
    assert "page 2 not read" in failed.error
    assert failed.new == 1  # what was read is kept
    assert recovered.new == 1  # page 1's validators were not saved: page 2 is read now
    assert unchanged.not_modified
    assert not afresh.not_modified  # the selectors changed: the listing is read again


def test_an_article_two_sources_list_is_stored_once(
    feed_server: FeedServer, make_settings: Callable[..., Settings], store: Store, db_url: str
) -> None:
    rows = [("/tin-tuc/a.html", "Tin A", "26/11/2026", "Tóm tắt")]
    first = feed_server.serve("/tin-tuc", body=liferay_page(rows, None), headers=HTML)
    second = feed_server.serve("/trang-chu", body=liferay_page(rows, None), headers=HTML)
    specs = [
        {"name": name, "url": url, "kind": "html", "listing": LISTING, "article_metadata": False}
        for name, url in (("tin-tuc", first), ("trang-chu", second))
    ]
    settings = settings_for(make_settings, db_url, *specs)

    results = poll_sources(store, settings.schedule, ["tin-tuc"]) + poll_sources(store, settings.schedule)

    assert [r.new for r in results] == [1, 0, 0]
    assert "already stored from another source" in (results[2].warning or "")
