"""Polling feeds from a real loopback HTTP server (and file:// URLs) into a real store."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach.config import Settings
from outreach.db import Store
from outreach.ingest import PollResult, UnknownSource, poll_sources
from outreach.models import Item, Source
from outreach.packaged import SAMPLES
from tests.conftest import FeedServer, rss, rss_item


def settings_for(make_settings: Callable[..., Settings], *sources: dict, **fetch: object) -> Settings:
    return make_settings(sources=list(sources), fetch={"timeout_seconds": 2, "max_bytes": 200_000, **fetch})


def items(store: Store) -> list[Item]:
    with store.sessions() as session:
        return list(session.scalars(select(Item).order_by(Item.id)))


def source_row(store: Store, name: str) -> Source:
    with store.sessions() as session:
        return session.scalars(select(Source).where(Source.name == name)).one()


def poll(store: Store, settings: Settings, *names: str) -> list[PollResult]:
    return poll_sources(store, settings.schedule, names)


TAX = rss_item(
    "qng-1",
    "Hạn nộp tờ khai thuế tháng 10",
    "<p>Doanh nghiệp nộp <strong>tờ khai</strong> trước 20/11 &amp; nộp thuế đúng hạn.</p>",
    category="Thuế và cuộc sống",
)
LAND = rss_item(
    "qng-2",
    "Lấy ý kiến dự thảo Bảng giá đất năm 2027",
    "Góp ý trước ngày 15/12.",
    date="Thu, 26 Nov 2026 23:15:00 +0700",
)


def test_rss_items_are_stored_clean(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    url = feed_server.serve("/rss", body=rss(TAX, LAND))
    settings = settings_for(make_settings, {"name": "news", "url": url, "topics": ["procedures"]})
    [result] = poll(store, settings)
    assert (result.new, result.seen, result.error) == (2, 2, None)
    tax, land = items(store)
    assert tax.title == "Hạn nộp tờ khai thuế tháng 10"
    assert tax.summary == "Doanh nghiệp nộp tờ khai trước 20/11 & nộp thuế đúng hạn."
    assert tax.url == "https://quangngai.gov.vn/tin-tuc/qng-1.html"
    assert tax.published_at == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
    assert tax.language == "vi"
    assert tax.topics == ["procedures", "tax"]
    assert land.topics == ["procedures", "planning-land"]
    assert land.published_at == datetime(2026, 11, 26, 16, 15, tzinfo=UTC)
    assert "bang gia dat" in land.search_text
    row = source_row(store, "news")
    assert row.last_error is None
    assert row.last_ok_at is not None


def test_polling_twice_stores_nothing_new(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    url = feed_server.serve("/rss", body=rss(TAX, LAND))
    settings = settings_for(make_settings, {"name": "news", "url": url})
    assert poll(store, settings)[0].new == 2
    again = poll(store, settings)[0]
    assert (again.new, again.seen) == (0, 2)
    assert len(items(store)) == 2


def test_duplicate_guids_in_one_feed_keep_the_first(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    repeat = rss_item("qng-1", "Bản sửa: tiêu đề khác")
    url = feed_server.serve("/rss", body=rss(TAX, repeat, LAND))
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert result.new == 2
    assert [i.title for i in items(store)] == [
        "Hạn nộp tờ khai thuế tháng 10",
        "Lấy ý kiến dự thảo Bảng giá đất năm 2027",
    ]


def test_link_is_the_fallback_guid(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    no_guid = "<item><title>Không có guid</title><link>https://quangngai.gov.vn/a-1.html</link></item>"
    no_anything = "<item><title>Không có gì</title></item>"
    url = feed_server.serve("/rss", body=rss(no_guid, no_anything))
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert result.new == 1
    assert result.error is None  # nothing that could be read was lost: a warning, with the real reason
    assert result.warning == "entry #2 'Không có gì' skipped: it has neither an id nor a link"
    assert items(store)[0].guid == "https://quangngai.gov.vn/a-1.html"


def test_malformed_feed_keeps_what_it_could_read(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    broken = rss(TAX, LAND).replace(b"</channel></rss>", b"<item><title>cut off")
    url = feed_server.serve("/rss", body=broken)
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert result.new == 2
    assert result.error
    assert result.error.startswith("partly read (2 entries kept)")
    assert source_row(store, "news").last_error == result.error


def test_partial_read_sets_no_validators(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    broken = rss(TAX).replace(b"</channel></rss>", b"<item><title>cut")
    headers = {"Content-Type": "application/rss+xml", "Last-Modified": "Fri, 27 Nov 2026 01:00:00 GMT"}
    url = feed_server.serve("/rss", body=broken, etag='"v1"', headers=headers)
    settings = settings_for(make_settings, {"name": "news", "url": url})
    poll(store, settings)
    row = source_row(store, "news")
    assert (row.etag, row.last_modified) == (None, None)
    assert poll(store, settings)[0].not_modified is False  # fetched in full again


def test_html_page_instead_of_feed(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    page = (
        "<!doctype html><html><head><title>Cổng thông tin</title></head><body><p>Trang chủ</p></body></html>".encode()
    )
    url = feed_server.serve("/rss", body=page, headers={"Content-Type": "text/html; charset=utf-8"})
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert result.new == 0
    assert result.error
    assert result.error.startswith("not an RSS or Atom feed (text/html; charset=utf-8)")
    assert items(store) == []


def test_feed_over_the_size_cap(store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]) -> None:
    big = rss(*(rss_item(f"qng-{n}", "Tin " * 40, "Nội dung " * 100) for n in range(40)))
    assert len(big) > 50_000
    url = feed_server.serve("/rss", body=big)
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}, max_bytes=50_000))
    assert result.error
    assert "over the 50,000-byte cap" in result.error
    assert items(store) == []


def test_undeclared_length_over_the_size_cap(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    big = rss(*(rss_item(f"qng-{n}", "Tin " * 40, "Nội dung " * 100) for n in range(40)))
    url = feed_server.serve("/rss", body=big, declare_length=False)
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}, max_bytes=50_000))
    assert result.error == "feed is over the 50,000-byte cap"
    assert items(store) == []


def test_plain_guids_stay_as_written_and_links_resolve_against_the_feed(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    entry = (
        "<item><title>Tin</title><guid>12345</guid><link>/tin-tuc/12345.html</link>"
        '<enclosure url="/uploads/a.jpg" type="image/jpeg" length="1"/></item>'
    )
    only_guid = "<item><title>Chỉ có guid</title><guid>777</guid></item>"
    url = feed_server.serve("/rss/tin-tuc.rss", body=rss(entry, only_guid))
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    [item] = items(store)
    assert item.guid == "12345"
    assert item.url == f"{feed_server.url}/tin-tuc/12345.html"
    assert item.image_url == f"{feed_server.url}/uploads/a.jpg"
    assert result.error is None
    assert result.warning == "entry #2 'Chỉ có guid' skipped: its id '777' is not a URL and it has no link"


def test_dates_without_a_zone_are_local_and_future_dates_are_capped(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    naive = rss_item("qng-1", "Không múi giờ", date="Fri, 27 Nov 2026 08:30:00")
    future = rss_item("qng-2", "Ngày trong tương lai", date="Thu, 01 Jan 2099 00:00:00 +0700")
    url = feed_server.serve("/rss", body=rss(naive, future))
    before = datetime.now(UTC)
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert result.error is None
    first, second = items(store)
    assert first.published_at == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)  # 08:30 in Asia/Ho_Chi_Minh
    assert before <= second.published_at <= datetime.now(UTC)


def test_very_long_guid_is_kept_as_a_digest(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    long_link = "https://quangngai.gov.vn/tin-tuc/" + "a" * 1100 + ".html"
    no_guid = f"<item><title>Liên kết dài</title><link>{long_link}</link></item>"
    url = feed_server.serve("/rss", body=rss(no_guid, TAX))
    settings = settings_for(make_settings, {"name": "news", "url": url})
    assert poll(store, settings)[0].new == 2
    assert poll(store, settings)[0].new == 0
    long_item = next(i for i in items(store) if i.title == "Liên kết dài")
    assert long_item.guid.startswith("sha256:")
    assert long_item.url == long_link


def test_local_file_over_the_size_cap(store: Store, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    feed = tmp_path / "big.rss"
    feed.write_bytes(rss(*(rss_item(f"qng-{n}", "Tin " * 40) for n in range(100))))
    [result] = poll(store, settings_for(make_settings, {"name": "local", "url": feed.as_uri()}, max_bytes=2048))
    assert result.error
    assert "over the 2,048-byte cap" in result.error
    assert items(store) == []


def test_timeout(store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]) -> None:
    url = feed_server.serve("/slow", body=rss(TAX), delay=1.5)
    [result] = poll(store, settings_for(make_settings, {"name": "slow", "url": url}, timeout_seconds=0.3))
    assert result.error == f"timed out after 0.3 s fetching {url}"
    assert source_row(store, "slow").last_error == result.error


def test_conditional_get_and_304(store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]) -> None:
    url = feed_server.serve(
        "/rss",
        body=rss(TAX),
        etag='"abc"',
        headers={"Content-Type": "application/rss+xml", "Last-Modified": "Fri, 27 Nov 2026 01:00:00 GMT"},
    )
    settings = settings_for(make_settings, {"name": "news", "url": url})
    assert poll(store, settings)[0].new == 1
    row = source_row(store, "news")
    assert (row.etag, row.last_modified) == ('"abc"', "Fri, 27 Nov 2026 01:00:00 GMT")
    second = poll(store, settings)[0]
    assert second.not_modified
    assert second.error is None
    sent = feed_server.requests[-1][1]
    assert sent["if-none-match"] == '"abc"'
    assert sent["if-modified-since"] == "Fri, 27 Nov 2026 01:00:00 GMT"
    assert len(items(store)) == 1


def test_broken_source_does_not_stop_the_others(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    bad = feed_server.serve("/down", body=b"oops", status=500, headers={"Content-Type": "text/plain"})
    good = feed_server.serve("/rss", body=rss(TAX))
    settings = settings_for(make_settings, {"name": "down", "url": bad}, {"name": "news", "url": good})
    down, news = poll(store, settings)
    assert down.error == f"HTTP 500 Internal Server Error from {bad}"
    assert news.new == 1
    assert news.error is None


def test_later_failure_loses_nothing_stored(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    url = feed_server.serve("/rss", body=rss(TAX, LAND))
    settings = settings_for(make_settings, {"name": "news", "url": url})
    poll(store, settings)
    feed_server.serve("/rss", body=b"<html>maintenance</html>", status=503, headers={"Content-Type": "text/html"})
    assert poll(store, settings)[0].error
    assert len(items(store)) == 2
    assert source_row(store, "news").last_ok_at is not None


def test_unreachable_host(store: Store, make_settings: Callable[..., Settings]) -> None:
    [result] = poll(store, settings_for(make_settings, {"name": "gone", "url": "http://127.0.0.1:9/rss"}))
    assert result.error
    assert result.error.startswith("cannot fetch http://127.0.0.1:9/rss: ConnectError")


TONE_MARKS = "\u0300\u0301\u0303\u0309\u0323"


def cp1258(text: str) -> bytes:
    """Windows-1258 as old portals write it: base letters with separate tone marks."""
    out = b""
    for char in unicodedata.normalize("NFC", text):
        try:
            out += char.encode("cp1258")
        except UnicodeEncodeError:
            base, *marks = unicodedata.normalize("NFD", char)
            tones = [m for m in marks if m in TONE_MARKS]
            head = unicodedata.normalize("NFC", base + "".join(m for m in marks if m not in TONE_MARKS))
            out += head.encode("cp1258") + "".join(tones).encode("cp1258")
    return out


def test_legacy_vietnamese_encoding_becomes_nfc(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    body = rss(rss_item("qng-9", "Thuế và cuộc sống")).replace(b'encoding="utf-8"', b'encoding="windows-1258"')
    legacy = cp1258(body.decode())
    url = feed_server.serve("/rss", body=legacy, headers={"Content-Type": "application/rss+xml; charset=windows-1258"})
    [result] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert result.error is None
    [item] = items(store)
    assert item.title == "Thuế và cuộc sống"
    assert unicodedata.is_normalized("NFC", item.title)


def test_bundled_samples_over_file_urls(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = settings_for(
        make_settings,
        {"name": "vi", "url": (SAMPLES / "portal-vi.rss").as_uri()},
        {"name": "en", "url": (SAMPLES / "portal-en.atom").as_uri(), "language": "en"},
    )
    vi, en = poll(store, settings)
    assert (vi.new, vi.error, en.new, en.error) == (16, None, 4, None)
    stored = items(store)
    topics = {t for i in stored for t in i.topics}
    assert topics == {"tax", "business-support", "law", "investment", "procurement", "planning-land", "procedures"}
    assert all(i.topics for i in stored), [i.title for i in stored if not i.topics]
    assert any(i.image_url for i in stored)
    assert all(unicodedata.is_normalized("NFC", i.title + i.summary) for i in stored)


def test_unknown_source_name_is_refused(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = settings_for(make_settings, {"name": "news", "url": "https://quangngai.gov.vn/rss"})
    with pytest.raises(UnknownSource, match="unknown source\\(s\\): nope"):
        poll(store, settings, "nope")


def test_undeclared_entities_are_a_warning_and_the_validators_are_saved(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    from outreach.models import Source

    entry = (
        "<item><guid>https://quangngai.gov.vn/tin/1.html</guid><title>Hoàn thuế&nbsp;GTGT &ndash; hướng dẫn</title>"
        "<link>https://quangngai.gov.vn/tin/1.html</link><description>Cục Thuế&hellip;</description></item>"
    )
    url = feed_server.serve("/rss", body=rss(entry), etag='"v1"')
    [first] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert first.error is None
    assert first.new == 1
    assert first.warning is not None
    assert "entit" in first.warning
    [item] = items(store)
    assert item.title == "Hoàn thuế GTGT \u2013 hướng dẫn"  # the no-break space squashed like any space
    with store.sessions() as session:
        source = session.scalars(select(Source)).one()
        assert source.etag == '"v1"'  # a warning keeps the validators: the next poll is a 304
        assert source.last_error is None
        assert source.last_warning == first.warning
    [second] = poll(store, settings_for(make_settings, {"name": "news", "url": url}))
    assert second.not_modified
