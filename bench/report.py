"""Report speed: `report --by channel,day` over 1,000,000 clicks vs one hand-written GROUP BY (DESIGN §8).

A fresh SQLite file gets 90 days of data: 200 campaigns (an item each, on the
Facebook Page, the Telegram channel and to 50 bot subscribers each), 10,000
subscribers, their deliveries, and 1,000,000 clicks (people, repeats, previews,
bots, HEAD requests) spread over the links and the days. Then, in the same run,
best of 3 each: `build_report_data(..., by=["channel", "day"])`, which computes
every figure and table of the report, against one hand-written SQL GROUP BY that
computes the main table's click figures (people, repeats, previews, bots,
distinct visitors per link and day) by channel and day, from the same covering
index (migrations 0009, 0011 and 0013: at, code, kind, repeat and the visitor key; without
it, SQLite reads the table and takes 2.5 times as long). The index leads with the time
since 0013, for the tracker's sake (a batch of clicks then writes one index page, not
one per link); the report reads each delivery's first click and the businesses reached
off the same pass rather than per link.

Target: ratio <= 1.5, and under 2 s on SQLite.

Run: .venv/bin/python bench/report.py [--clicks 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import text

from channels import SETTINGS_MODELS
from outreach.config import load_settings
from outreach.db import Access, Store
from outreach.packaged import STARTER_CONFIG
from outreach.report_data import build_report_data
from outreach.report_period import parse_period
from outreach.tracking import visitor_key

CAMPAIGNS, SUBSCRIBERS, PER_CAMPAIGN_BOT = 200, 10_000, 50
TOPICS = ("tax", "business-support", "law", "investment", "procurement", "planning-land", "procedures")
KINDS = ["human"] * 80 + ["preview"] * 10 + ["bot"] * 8 + ["head"] * 2
HAND = """
SELECT channel, day, SUM(people), SUM(repeats), SUM(previews), SUM(bots), SUM(visitors) FROM (
  SELECT l.channel, date(c.at, '+25200 seconds') AS day,
         SUM(CASE WHEN c.kind = 'human' AND NOT c."repeat" THEN 1 ELSE 0 END) AS people,
         SUM(CASE WHEN c.kind = 'human' AND c."repeat" THEN 1 ELSE 0 END) AS repeats,
         SUM(CASE WHEN c.kind = 'preview' THEN 1 ELSE 0 END) AS previews,
         SUM(CASE WHEN c.kind = 'bot' THEN 1 ELSE 0 END) AS bots,
         COUNT(DISTINCT CASE WHEN c.kind = 'human' THEN c.visitor END) AS visitors
  FROM links l JOIN clicks c INDEXED BY ix_clicks_report ON c.code = l.code
  WHERE c.at >= :start AND c.at < :end
  GROUP BY l.code, day
) GROUP BY channel, day
"""
INSERT_CLICKS = (
    'INSERT INTO clicks (code, at, kind, ip_hash, user_agent, "repeat", uid, visitor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'
)


def generate(store: Store, clicks: int, now: datetime) -> None:
    """The data set, with the driver's executemany (the ORM would take minutes for a million rows)."""
    rng = random.Random(2026)
    start = now - timedelta(days=90)
    stamp = lambda moment: moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")  # noqa: E731
    with store.engine.begin() as db:
        db.exec_driver_sql(
            "INSERT INTO sources (id, name, url, language, default_topics, poll_minutes) "
            "VALUES (1, 'portal-news', 'https://quangngai.gov.vn/rss', 'vi', '[]', 30)"
        )
        items, campaigns, links, deliveries, subscribers = [], [], [], [], []
        for n in range(1, SUBSCRIBERS + 1):
            topics = rng.sample(TOPICS, 2)
            subscribers.append(
                (
                    n,
                    "telegram_bot",
                    str(100_000 + n),
                    "vi",
                    json.dumps(topics),
                    "instant",
                    "active",
                    f"{n:010d}" if n % 3 == 0 else None,
                    n % 3 == 0,
                    stamp(start),
                    stamp(start),
                    stamp(start),
                )
            )
        db.exec_driver_sql(
            "INSERT INTO subscribers (id, channel, chat_id, language, topics, mode, status, tax_code, consent, created_at, updated_at, consent_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            subscribers,
        )
        for n in range(1, CAMPAIGNS + 1):
            published = start + timedelta(days=90 * n / CAMPAIGNS)
            topic = TOPICS[n % len(TOPICS)]
            items.append(
                (
                    n,
                    1,
                    f"g{n}",
                    f"https://quangngai.gov.vn/tin/{n}.html",
                    f"Tin số {n}",
                    "",
                    stamp(published),
                    stamp(published),
                    "vi",
                    f'["{topic}"]',
                    "",
                )
            )
            campaigns.append(
                (
                    n,
                    "item",
                    n,
                    f"[{n}]",
                    f"Tin số {n}",
                    '["facebook", "telegram_channel", "telegram_bot"]',
                    "vi",
                    "post",
                    "done",
                    "bench",
                    stamp(published),
                    stamp(published),
                )
            )
            targets = [("facebook", "page", None), ("telegram_channel", "@kenh", None)]
            targets += [
                ("telegram_bot", str(100_000 + s), s) for s in rng.sample(range(1, SUBSCRIBERS + 1), PER_CAMPAIGN_BOT)
            ]
            for channel, target, subscriber in targets:
                code = f"c{n:04d}{len(links):06d}"
                links.append((code, f"https://quangngai.gov.vn/tin/{n}.html", n, channel, subscriber, stamp(published)))
                deliveries.append((n, channel, target, "vi", "t", code, "sent", 1, stamp(published), stamp(published)))
        db.exec_driver_sql(
            "INSERT INTO items (id, source_id, guid, url, title, summary, published_at, fetched_at, language, topics, search_text) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            items,
        )
        db.exec_driver_sql(
            "INSERT INTO campaigns (id, kind, item_id, item_ids, title, channels, language, template, status, created_by, created_at, approved_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            campaigns,
        )
        db.exec_driver_sql(
            "INSERT INTO links (code, destination, campaign_id, channel, subscriber_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            links,
        )
        db.exec_driver_sql(
            "INSERT INTO deliveries (campaign_id, channel, target, language, text, link_code, status, attempts, created_at, sent_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            deliveries,
        )
        codes = [link[0] for link in links]
        sent = {link[0]: datetime.fromisoformat(link[5]).replace(tzinfo=UTC) for link in links}
        batch = []
        for n in range(clicks):
            code = codes[rng.randrange(len(codes))]
            at = sent[code] + timedelta(seconds=rng.expovariate(1 / 86400))
            if at >= now:
                at = now - timedelta(seconds=rng.randrange(1, 3600))
            kind = KINDS[rng.randrange(100)]  # (drawn in the order of earlier runs: the same data set)
            ip_hash, agent, repeat = f"h{rng.randrange(20_000)}", f"agent {rng.randrange(50)}", rng.random() < 0.05
            batch.append((code, stamp(at), kind, ip_hash, agent, repeat, f"u{n}", visitor_key(ip_hash, agent)))
            if len(batch) == 50_000:
                db.exec_driver_sql(INSERT_CLICKS, batch)
                batch = []
        if batch:
            db.exec_driver_sql(INSERT_CLICKS, batch)
    with store.engine.connect() as db:
        db.exec_driver_sql("ANALYZE")


def best(runs: int, work: callable) -> float:  # type: ignore[valid-type]
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-report-"))
    config = yaml.safe_load(STARTER_CONFIG.read_text(encoding="utf-8"))
    config["channels"]["outbox"] = {"dir": str(folder / "outbox")}
    (folder / "schedules.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    settings = load_settings(
        folder / "schedules.yaml", f"sqlite:///{folder / 'bench.db'}", None, env={}, channel_models=SETTINGS_MODELS
    )
    store = Store.open(settings.database_url, Access.create)
    now = datetime.now(UTC)
    began = time.perf_counter()
    generate(store, args.clicks, now)
    print(
        f"generated {args.clicks:,} clicks, {CAMPAIGNS} campaigns, {SUBSCRIBERS:,} subscribers in {time.perf_counter() - began:.1f} s"
    )
    store.close()
    store = Store.open(settings.database_url, Access.read)
    period = parse_period("90d", None, settings.zone, now)
    rows: list[object] = []

    def report() -> None:
        with store.sessions() as session:
            rows[:] = build_report_data(session, settings, period, ["channel", "day"])["rows"]

    def hand() -> None:
        with store.engine.connect() as db:
            db.execute(
                text(HAND),
                {
                    "start": period.start.replace(tzinfo=None).isoformat(sep=" "),
                    "end": period.end.replace(tzinfo=None).isoformat(sep=" "),
                },
            ).all()

    hand_s = best(3, hand)
    report_s = best(3, report)
    ratio = report_s / hand_s
    verdict = "met" if ratio <= 1.5 and report_s < 2 else "NOT met"
    print(
        f"report --by channel,day: {report_s:.2f} s ({len(rows)} rows, every figure and table); "
        f"hand-written GROUP BY: {hand_s:.2f} s; ratio {ratio:.2f} (target <= 1.5 and < 2 s: {verdict})"
    )
    store.close()


if __name__ == "__main__":
    main()
