"""The manager's report on a small fixed data set, every figure computed by hand, in table, CSV and JSON.

The set: two items, three campaigns (one never clicked), deliveries on Facebook and
to four bot subscribers; clicks of every kind, a repeat, two chats of one firm, a
chat whose business gave no consent, and a registered business nobody reached.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.db import Store
from outreach.models import (
    Campaign,
    CampaignKind,
    CampaignStatus,
    Click,
    ClickKind,
    Delivery,
    DeliveryStatus,
    Item,
    Link,
    Source,
    Subscriber,
)
from outreach.report_data import ReportError, build_report_data, parse_by
from outreach.report_period import PeriodError, parse_period
from tests.conftest import base_config

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=ZONE)


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of November 2026 in Quảng Ngãi, as the store keeps it (UTC)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=ZONE).astimezone(UTC)


def fill(store: Store) -> None:
    with store.sessions.begin() as session:
        source = Source(name="portal-news", url="https://quangngai.gov.vn/rss", language="vi")
        session.add(source)
        session.flush()
        tax = Item(
            source_id=source.id,
            guid="a",
            url="https://quangngai.gov.vn/a",
            title="Hoàn thuế GTGT",
            published_at=local(19, 8),
            language="vi",
            topics=["tax"],
        )
        invest = Item(
            source_id=source.id,
            guid="b",
            url="https://quangngai.gov.vn/b",
            title="Đấu thầu dự án đầu tư",
            published_at=local(19, 8),
            language="vi",
            topics=["investment", "procurement"],
        )
        session.add_all([tax, invest])
        session.flush()
        campaigns = [
            Campaign(
                kind=CampaignKind.item,
                item_id=tax.id,
                item_ids=[tax.id],
                title="Hoàn thuế GTGT",
                channels=["facebook", "telegram_bot"],
                language="vi",
                status=CampaignStatus.done,
                created_by="t",
            ),
            Campaign(
                kind=CampaignKind.item,
                item_id=invest.id,
                item_ids=[invest.id],
                title="Đấu thầu",
                channels=["facebook"],
                language="vi",
                status=CampaignStatus.done,
                created_by="t",
            ),
            Campaign(
                kind=CampaignKind.item,
                item_id=invest.id,
                item_ids=[invest.id],
                title="Nobody clicked",
                channels=["facebook"],
                language="vi",
                status=CampaignStatus.done,
                created_by="t",
                rule="again",
            ),
        ]
        session.add_all(campaigns)
        session.flush()
        c1, c2, c3 = (c.id for c in campaigns)
        firm, other, unreached = "0100233488", "0314409058002", "0314409058"
        subscribers = [
            Subscriber(
                channel="telegram_bot",
                chat_id="1",
                topics=["tax"],
                tax_code=firm,
                consent=True,
                consent_at=local(19, 0),
            ),
            Subscriber(
                channel="telegram_bot",
                chat_id="2",
                topics=["tax"],
                tax_code=firm,
                consent=True,
                consent_at=local(19, 0),
            ),
            Subscriber(channel="telegram_bot", chat_id="3", topics=["tax"], tax_code=other, consent=False),
            Subscriber(
                channel="telegram_bot",
                chat_id="4",
                topics=["tax"],
                tax_code=unreached,
                consent=True,
                consent_at=local(19, 0),
            ),
        ]
        session.add_all(subscribers)
        session.flush()
        s1, s2, s3, s4 = (s.id for s in subscribers)
        links = {
            "L1": Link(code="L1aaaaaaaa", destination=tax.url, campaign_id=c1, channel="facebook"),
            "L2": Link(
                code="L2aaaaaaaa", destination=tax.url, campaign_id=c1, channel="telegram_bot", subscriber_id=s1
            ),
            "L3": Link(
                code="L3aaaaaaaa", destination=tax.url, campaign_id=c1, channel="telegram_bot", subscriber_id=s2
            ),
            "L4": Link(
                code="L4aaaaaaaa", destination=tax.url, campaign_id=c1, channel="telegram_bot", subscriber_id=s3
            ),
            "L7": Link(
                code="L7aaaaaaaa", destination=tax.url, campaign_id=c1, channel="telegram_bot", subscriber_id=s4
            ),
            "L5": Link(code="L5aaaaaaaa", destination=invest.url, campaign_id=c2, channel="facebook"),
            "L6": Link(code="L6aaaaaaaa", destination=invest.url, campaign_id=c3, channel="facebook"),
        }
        session.add_all(links.values())
        session.flush()

        def sent(campaign: int, channel: str, target: str, link: str, at: datetime) -> Delivery:
            return Delivery(
                campaign_id=campaign,
                channel=channel,
                target=target,
                language="vi",
                text="t",
                link_code=links[link].code,
                status=DeliveryStatus.sent,
                sent_at=at,
            )

        session.add_all(
            [
                sent(c1, "facebook", "page", "L1", local(20, 8)),
                sent(c1, "telegram_bot", "1", "L2", local(20, 8)),
                sent(c1, "telegram_bot", "2", "L3", local(20, 8)),
                sent(c1, "telegram_bot", "3", "L4", local(20, 8)),
                sent(c1, "telegram_bot", "4", "L7", local(20, 8)),
                sent(c2, "facebook", "page", "L5", local(21, 9)),
                sent(c3, "facebook", "page", "L6", local(21, 9)),
                # Before the period: neither sent nor its clicks count.
                Delivery(
                    campaign_id=c2,
                    channel="facebook",
                    target="old",
                    language="vi",
                    text="t",
                    status=DeliveryStatus.sent,
                    sent_at=local(1, 8) - timedelta(days=40),
                ),
            ]
        )

        def click(
            link: str, at: datetime, kind: ClickKind = ClickKind.human, who: str = "A", repeat: bool = False
        ) -> Click:
            return Click(code=links[link].code, at=at, kind=kind, ip_hash=who, user_agent=f"agent {who}", repeat=repeat)

        session.add_all(
            [
                click("L1", local(20, 8, 5), ClickKind.preview, "P"),
                click("L1", local(20, 8, 10)),  # the first click: 10 minutes after the post
                click("L1", local(20, 8, 11)),  # the same visitor again, same day: one visitor, two clicks
                click("L1", local(20, 8, 12), repeat=True),  # a burst: a repeat, not a click
                click("L1", local(20, 9), ClickKind.bot, "G"),
                click("L1", local(20, 9), ClickKind.head, "H"),
                click("L2", local(20, 9), who="B"),  # 1 h after its delivery
                click("L3", local(21, 10), who="C"),  # 26 h after
                click("L4", local(21, 11), who="D"),  # no consent: counts as a click, not for a business
                click("L5", local(21, 9, 30), who="A"),  # 30 min after
                click("L5", local(21, 9, 1), ClickKind.preview, "P"),
                click("L1", local(1, 8) - timedelta(days=40), who="Z"),  # before the period
            ]
        )


@pytest.fixture
def filled(tmp_path: Path, store: Store) -> Store:
    fill(store)
    return store


def settings_for(make_settings: Callable[..., object], db_url: str) -> object:
    return make_settings(
        db_url,
        reports={"targets": [0.9, 0.95], "active_businesses": {"count": 200, "year": 2025, "source": "Cục Thống kê"}},
    )


def data(store: Store, make_settings: Callable[..., object], by: str = "channel") -> dict[str, object]:
    settings = settings_for(make_settings, store.url)
    period = parse_period("this-month", None, ZONE, NOW)
    with store.sessions() as session:
        return build_report_data(session, settings, period, parse_by(by))  # type: ignore[arg-type]


def figures(row: dict[str, object]) -> tuple[object, ...]:
    return tuple(
        row[name]
        for name in ("sent", "clicks", "visitors", "repeats", "previews", "bots", "ctr", "median_first_click_seconds")
    )


def test_figures_by_channel_match_the_hand_count(filled: Store, make_settings: Callable[..., object]) -> None:
    report = data(filled, make_settings)
    rows = {row["key"]["channel"]: figures(row) for row in report["rows"]}  # type: ignore[index, union-attr]
    assert rows["facebook"] == (3, 3, 2, 1, 2, 1, 1.0, 1200.0)  # firsts: 600 s and 1800 s
    # Bot: 4 sent, 3 clicked; firsts 3600 s, 26 h and 27 h: the median is 26 h.
    assert rows["telegram_bot"] == (4, 3, 3, 0, 0, 0, 0.75, 93600.0)
    # Overall: firsts 600, 1800, 3600, 93600 and 97200 s; the head request is in no column.
    assert figures(report["headline"]) == (7, 6, 5, 1, 2, 1, 0.857, 3600.0)  # type: ignore[arg-type]
    campaigns = {c["id"]: c for c in report["campaigns"]}  # type: ignore[union-attr, index]
    assert [campaigns[i]["clicks"] for i in sorted(campaigns)] == [5, 1, 0]
    assert campaigns[3]["ctr"] == 0.0  # sent once, never clicked
    assert report["topics"] == [  # an item with two topics counts in both
        {"topic": "tax", "label": "Thuế và cuộc sống", "clicks": 5},
        {"topic": "investment", "label": "Đầu tư", "clicks": 1},
        {"topic": "procurement", "label": "Đấu thầu, mua sắm công", "clicks": 1},
    ]
    assert [item["title"] for item in report["top_items"]] == ["Hoàn thuế GTGT", "Đấu thầu dự án đầu tư"]  # type: ignore[index, union-attr]
    businesses = report["businesses"]
    assert businesses["registered"] == 2  # type: ignore[index]  # two firms gave consent; the third did not
    assert businesses["reached"] == 1  # type: ignore[index]  # two chats of one firm are one business
    assert businesses["share_of_registered"] == 0.5  # type: ignore[index]
    assert businesses["share_of_province"] == 0.005  # type: ignore[index]
    assert businesses["by_channel"] == [{"channel": "telegram_bot", "businesses": 1}]  # type: ignore[index]


def run(folder: Path, store: Store, *args: str, expect: int = 0) -> Result:
    data = base_config()
    data["sources"] = []
    data["channels"]["outbox"] = {"dir": str(folder / "outbox")}
    data["reports"] = {
        "targets": [0.9, 0.95],
        "active_businesses": {"count": 200, "year": 2025, "source": "Cục Thống kê"},
    }
    config = folder / "schedules.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "--db", store.url, "report", *args],
        env={"COLUMNS": "200", "OUTREACH_TELEGRAM_TOKEN": ""},
    )
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def test_clicks_keyed_by_the_migration_give_the_same_figures(
    filled: Store, make_settings: Callable[..., object]
) -> None:
    """Clicks stored before the visitor key (0011), keyed by its backfill: every figure as before."""
    from alembic import command

    from outreach.db import _alembic_config

    before = {by: data(filled, make_settings, by) for by in ("channel", "campaign,day")}
    config = _alembic_config(filled.engine)
    command.downgrade(config, "0010")
    command.upgrade(config, "head")
    for by, report in before.items():
        again = data(filled, make_settings, by)
        assert {**again, "generated_at": None} == {**report, "generated_at": None}
    assert figures(before["channel"]["headline"])[2] == 5  # type: ignore[arg-type]


def test_table_csv_and_json_give_the_same_figures(filled: Store, tmp_path: Path) -> None:
    period = ("--since", "2026-11-01", "--until", "2026-11-30")
    as_json = json.loads(run(tmp_path, filled, *period, "--format", "json").output)
    by_json = {row["key"]["channel"]: row for row in as_json["rows"]}
    lines = list(csv.DictReader(io.StringIO(run(tmp_path, filled, *period, "--format", "csv").output)))
    by_csv = {line["channel"]: line for line in lines}
    table = run(tmp_path, filled, *period).output
    cells = {
        line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
        for line in table.splitlines()
        if line.startswith("│")
    }
    for channel in ("facebook", "telegram_bot"):
        row = by_json[channel]
        assert by_csv[channel]["sent"] == str(row["sent"])
        assert by_csv[channel]["clicks"] == str(row["clicks"])
        assert by_csv[channel]["visitors"] == str(row["visitors"])
        assert by_csv[channel]["ctr"] == str(row["ctr"])
        assert cells[channel][:6] == [
            str(row[k]) for k in ("sent", "clicks", "visitors", "repeats", "previews", "bots")
        ]
    assert by_csv["total"]["clicks"] == "6"
    assert cells["total"][:3] == ["7", "6", "5"]
    assert "Businesses reached: 1 of 2 registered (50.0 %)" in table
    assert "of the province's 200 active businesses (2025, Cục Thống kê): 0.5 %" in table
    assert "target 90 % of the province: 89.5 points to go" in table
    assert "not VCCI's PCI survey" in table
    assert "Thuế và cuộc sống" in table  # Vietnamese labels as written
    out = tmp_path / "r.csv"
    run(tmp_path, filled, *period, "--format", "csv", "-o", str(out))
    assert (
        out.read_text(encoding="utf-8-sig").splitlines()[0]
        == "channel,sent,clicks,visitors,repeats,previews,bots,ctr,median_first_click_seconds"
    )


def test_grouping_by_several_dimensions(filled: Store, make_settings: Callable[..., object]) -> None:
    report = data(filled, make_settings, "channel,day")
    keys = [tuple(row["key"].values()) for row in report["rows"]]  # type: ignore[union-attr, index]
    assert keys == [
        ("facebook", "2026-11-20"),
        ("facebook", "2026-11-21"),
        ("telegram_bot", "2026-11-20"),
        ("telegram_bot", "2026-11-21"),
    ]
    by_topic = {row["key"]["topic"]: row["clicks"] for row in data(filled, make_settings, "topic")["rows"]}  # type: ignore[index, union-attr]
    assert by_topic == {"investment": 1, "procurement": 1, "tax": 5}
    weeks = {row["key"]["week"]: row["clicks"] for row in data(filled, make_settings, "week")["rows"]}  # type: ignore[index, union-attr]
    assert weeks == {"2026-11-16": 6}  # Friday 20 and Saturday 21 November: the week of Monday 16
    sources = {row["key"]["source"]: row["sent"] for row in data(filled, make_settings, "source")["rows"]}  # type: ignore[index, union-attr]
    assert sources == {"portal-news": 7}


@pytest.mark.parametrize(
    ("since", "until", "first", "last"),
    [
        (None, None, date(2026, 10, 30), date(2026, 11, 28)),
        ("7d", None, date(2026, 11, 22), date(2026, 11, 28)),
        ("this-month", None, date(2026, 11, 1), date(2026, 11, 28)),
        ("last-month", None, date(2026, 10, 1), date(2026, 10, 31)),
        ("2026-Q3", None, date(2026, 7, 1), date(2026, 9, 30)),
        ("2026-02", None, date(2026, 2, 1), date(2026, 2, 28)),
        ("2026-11-01", "2026-11-15", date(2026, 11, 1), date(2026, 11, 15)),
        ("2026-Q1", "2026-Q2", date(2026, 1, 1), date(2026, 6, 30)),
    ],
)
def test_periods_as_managers_say_them(since: str | None, until: str | None, first: date, last: date) -> None:
    period = parse_period(since, until, ZONE, NOW)
    assert (period.since, period.until) == (first, last)
    assert period.start == datetime(first.year, first.month, first.day, tzinfo=ZONE).astimezone(UTC)


def test_bad_periods_and_groupings_are_usage_errors(filled: Store, tmp_path: Path) -> None:
    for bad in ("yesterdayish", "2026-13", "0d"):
        with pytest.raises(PeriodError):
            parse_period(bad, None, ZONE, NOW)
    with pytest.raises(PeriodError, match="ends"):
        parse_period("2026-11-10", "2026-11-01", ZONE, NOW)
    with pytest.raises(ReportError, match="unknown grouping 'colour'"):
        parse_by("channel,colour")
    assert "is not a period" in run(tmp_path, filled, "--since", "soon", expect=2).output
    assert "unknown grouping" in run(tmp_path, filled, "--by", "planet", expect=2).output


def test_sections_without_data_are_left_out(store: Store, make_settings: Callable[..., object]) -> None:
    report = data(store, make_settings)
    assert report["rows"] == []
    assert report["businesses"] is None
    assert report["subscribers"] is None
    assert figures(report["headline"]) == (0, 0, 0, 0, 0, 0, None, None)  # type: ignore[arg-type]


def test_portal_logs_stand_beside_the_tracked_clicks(filled: Store, tmp_path: Path) -> None:
    import gzip

    lines = [
        '203.0.113.5 - - [20/Nov/2026:09:15:01 +0700] "GET /a?utm_source=facebook&utm_medium=social&utm_campaign=outreach-1 '
        'HTTP/1.1" 200 5120 "https://l.facebook.com/" "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) '
        'Chrome/130.0 Mobile Safari/537.36"',
        "not a log line",
    ]
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert run(tmp_path, filled, "--help").exit_code == 0
    config = tmp_path / "schedules.yaml"
    imported = CliRunner().invoke(main, ["--config", str(config), "--db", filled.url, "logs", "import", str(log)])
    assert imported.exit_code == 0, imported.output
    assert "1 malformed (first at line 2) skipped" in imported.output
    again = CliRunner().invoke(main, ["--config", str(config), "--db", filled.url, "logs", "import", str(log)])
    assert "already imported" in again.output
    report = json.loads(
        run(tmp_path, filled, "--since", "2026-11-01", "--until", "2026-11-30", "--format", "json").output
    )
    portal = {(row["day"], row["channel"]): (row["tracked_clicks"], row["portal_hits"]) for row in report["portal"]}
    assert portal[("2026-11-20", "facebook")] == (2, 1)  # two tracked clicks that day, one reached the portal log
    assert portal[("2026-11-21", "facebook")] == (1, 0)


def test_first_clicks_and_businesses_read_off_the_time_index_at_their_edges(
    store: Store, make_settings: Callable[..., object]
) -> None:
    """Links clicked earlier on the day of their send or consent, and a first click after the period.

    The report reads clicks by time (migration 0013) and each link's first click
    per day; these are the cases where that day's first click is not the answer.
    """
    with store.sessions.begin() as session:
        campaign = Campaign(
            kind=CampaignKind.item,
            title="t",
            channels=["facebook"],
            language="vi",
            status=CampaignStatus.done,
            created_by="t",
        )
        early, late = (
            Subscriber(channel="telegram_bot", chat_id=chat, tax_code=code, consent=True, consent_at=local(10, 10))
            for chat, code in (("1", "0100233488"), ("2", "0314409058"))
        )
        session.add_all([campaign, early, late])
        session.flush()
        session.add_all(
            [
                Link(
                    code="E1aaaaaaaa",
                    destination="https://quangngai.gov.vn/",
                    campaign_id=campaign.id,
                    channel="facebook",
                ),
                Link(
                    code="E2aaaaaaaa",
                    destination="https://quangngai.gov.vn/",
                    campaign_id=campaign.id,
                    channel="facebook",
                ),
                Link(code="B1aaaaaaaa", destination="https://quangngai.gov.vn/", subscriber_id=early.id),
                Link(code="B2aaaaaaaa", destination="https://quangngai.gov.vn/", subscriber_id=late.id),
            ]
        )
        session.flush()
        session.add_all(
            Delivery(
                campaign_id=campaign.id,
                channel="facebook",
                target=target,
                language="vi",
                text="t",
                link_code=code,
                status=DeliveryStatus.sent,
                sent_at=at,
            )
            for target, code, at in (("a", "E1aaaaaaaa", local(10, 10)), ("b", "E2aaaaaaaa", local(14, 20)))
        )
        session.add_all(
            Click(code=code, at=at, kind=ClickKind.human, ip_hash="v", user_agent="a", repeat=repeat)
            for code, at, repeat in (
                ("E1aaaaaaaa", local(10, 9), False),  # clicked before the send: not its first click
                ("E1aaaaaaaa", local(10, 10, 5), True),  # a repeat after it: not a first click either
                ("E1aaaaaaaa", local(10, 10, 30), False),  # the first: 30 minutes after the send
                ("E2aaaaaaaa", local(16, 8), False),  # after the period (it ends with the 15th): 2 days less 12 h
                ("B1aaaaaaaa", local(10, 9), False),  # before consent, and
                ("B1aaaaaaaa", local(10, 11), False),  # after it, the same day: reached
                ("B2aaaaaaaa", local(10, 9), False),  # only before consent: not reached
            )
        )
    settings = settings_for(make_settings, store.url)
    period = parse_period("2026-11-01", "2026-11-15", ZONE, NOW)
    with store.sessions() as session:
        report = build_report_data(session, settings, period, ["channel"])  # type: ignore[arg-type]
    (row,) = [row for row in report["rows"] if row["key"]["channel"] == "facebook"]
    assert row["sent"] == 2
    assert row["median_first_click_seconds"] == statistics.median([30 * 60, 36 * 3600])
    businesses = report["businesses"]
    assert (businesses["registered"], businesses["reached"]) == (2, 1)
