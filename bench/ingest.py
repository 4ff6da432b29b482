"""Ingest speed: a 10,000-item feed, whole ingest vs feedparser's parse alone (DESIGN §8).

Both run in this process on the same bytes; the ratio is what counts (target <= 2x).
Run: .venv/bin/python bench/ingest.py [ITEMS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser

from outreach.config import Schedule, Source, Tracker
from outreach.db import Access, Store
from outreach.fetch import Fetcher
from outreach.ingest import poll_sources

ROOT = Path(__file__).resolve().parent.parent


def make_feed(count: int) -> bytes:
    """An RSS feed of `count` realistic Vietnamese items."""
    start = datetime(2026, 11, 27, tzinfo=UTC)
    items = []
    for n in range(count):
        when = (start - timedelta(minutes=n)).strftime("%a, %d %b %Y %H:%M:%S +0000")
        title = escape(
            f"Thông báo số {n}: hướng dẫn hoàn thuế GTGT và thủ tục đăng ký đầu tư tại Khu kinh tế Dung Quất"
        )
        body = escape(
            f"<p>Doanh nghiệp có doanh thu &lt; {n} tỷ đồng được <strong>hỗ trợ</strong> vay vốn; xem chi tiết bảng giá đất.</p>"
        )
        items.append(
            f"<item><title>{title}</title><link>https://quangngai.gov.vn/tin-tuc/{n}.html</link>"
            f'<guid isPermaLink="false">qng-{n}</guid><pubDate>{when}</pubDate><description>{body}</description>'
            "<category>Thuế và cuộc sống</category></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Cổng</title>'
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def best_of(runs: int, work) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main(count: int = 10_000) -> None:
    body = make_feed(count)
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    feed = folder / "feed.rss"
    feed.write_bytes(body)
    base = Schedule.model_validate(__import__("yaml").safe_load((ROOT / "schedules.yaml").read_text(encoding="utf-8")))
    schedule = base.model_copy(
        update={
            "sources": [Source(name="bench", url=feed.as_uri())],
            "tracker": Tracker(public_url="http://x", allowed_domains=["quangngai.gov.vn"]),
        }
    )
    parse_only = best_of(3, lambda: feedparser.parse(body, response_headers={"content-type": "application/xml"}))

    def ingest() -> None:
        db = folder / f"{time.monotonic_ns()}.db"
        store = Store.open(f"sqlite:///{db}", Access.create)
        with Fetcher(schedule.fetch.model_copy(update={"max_bytes": 100_000_000})) as fetcher:
            [result] = poll_sources(store, schedule, fetcher=fetcher)
        assert result.new == count, result
        store.close()

    whole = best_of(3, ingest)
    print(f"items: {count:,}  feed: {len(body) / 1e6:.1f} MB")
    print(f"feedparser.parse alone: {parse_only:.2f} s")
    print(f"whole ingest (fetch, parse, clean, topics, store in SQLite): {whole:.2f} s")
    print(f"ratio: {whole / parse_only:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
