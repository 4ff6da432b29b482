"""The staff's campaign commands and `run --once`, through click on real files, as a new user types them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.db import Access, Store
from outreach.dispatch_store import pause
from outreach.lifecycle import Actor
from outreach.packaged import SAMPLES
from tests.conftest import base_config, rss, rss_item

Run = Callable[..., Result]
STAFF = {"OUTREACH_TELEGRAM_TOKEN": "", "COLUMNS": "200"}


def write_config(path: Path, **changes: object) -> Path:
    data = base_config()
    data["sources"] = [{"name": "portal", "url": (SAMPLES / "portal-vi.rss").as_uri(), "language": "vi"}]
    data["channels"]["outbox"] = {"dir": str(path.parent / "outbox")}
    data.update(changes)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path / "schedules.yaml")


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def run(config_file: Path, database: Path) -> Run:
    """`outreach ARGS` as the OS user running the tests, checking the exit code."""

    def invoke(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(
            main, ["--config", str(config_file), "--db", f"sqlite:///{database}", *args], env=STAFF
        )
        assert result.exit_code == expect, result.output + (repr(result.exception) if result.exception else "")
        return result

    return invoke


@pytest.fixture
def polled(run: Run) -> Run:
    run("init")
    run("sources", "poll")
    return run


def sql(database: Path, statement: str, *args: object) -> list[tuple[object, ...]]:
    """A statement on the database as an operator's sqlite3 shell would run it."""
    with sqlite3.connect(database) as connection:
        return connection.execute(statement, args).fetchall()


def test_staff_create_approve_send_and_show(polled: Run) -> None:
    created = polled("campaign", "create", "--item", "2", "--channels", "facebook").output
    assert created.startswith("campaign 1 created (draft): Luật Thuế thu nhập doanh nghiệp")
    assert "it goes out once someone other than " in created

    own = polled("campaign", "approve", "1", expect=1).output
    assert "someone else must approve it (two-person rule)" in own
    assert "waits for approval by someone other than" in polled("campaign", "show", "1").output

    assert "approved by Nguyễn Thị Lan (login " in polled("--as", "Nguyễn Thị Lan", "campaign", "approve", "1").output
    assert polled("send").output.splitlines()[-1] == "sent 1, retrying 0, failed 0, skipped 0, unknown 0"

    shown = polled("campaign", "show", "1").output
    assert "campaign 1 · item · done" in shown
    assert "nothing more: the campaign is done" in shown
    for change in ("· → draft", "· → approval refused", "draft → approved", "approved → scheduled"):
        assert change in shown
    assert "scheduled → sending" in shown
    assert "sending → done" in shown
    assert "pending → sending" in shown  # the delivery's own moves are in the trail too
    assert "sending → sent" in shown
    assert "Nguyễn Thị Lan" in shown
    done = polled("campaign", "list", "--status", "done").output
    assert "Luật Thuế" in done
    assert "Luật Thuế" not in polled("campaign", "list", "--status", "scheduled").output


def test_a_campaign_at_a_later_time_waits_and_says_when(polled: Run) -> None:
    polled("campaign", "create", "--item", "2", "--channels", "facebook", "--at", "2031-01-06 08:00")
    approved = polled("--as", "Lan", "campaign", "approve", "1").output
    assert "1 delivery scheduled for 2031-01-06 08:00" in approved
    assert polled("send").output.splitlines()[-1].startswith("sent 0,")
    assert "facebook → quangngai.gov.vn: due Mon 06/01 08:00 (--at)" in polled("campaign", "show", "1").output
    bad = polled("campaign", "create", "--item", "3", "--at", "2031-02-30 08:00", expect=2).output
    assert "Invalid value for '--at': '2031-02-30 08:00' is not a time like 2026-12-01 08:00" in bad


def test_a_staff_message_and_a_digest(polled: Run, tmp_path: Path) -> None:
    message = tmp_path / "hoi-nghi.txt"
    message.write_text("Kính mời doanh nghiệp dự Hội nghị đối thoại ngày 05/12.\n", encoding="utf-8")
    made = polled(
        "campaign", "create", "--message-file", str(message), "--url", "https://quangngai.gov.vn/hoi-nghi"
    ).output
    assert made.startswith("campaign 1 created (draft): Kính mời doanh nghiệp dự Hội nghị đối thoại ngày 05/12.")
    off_portal = polled(
        "campaign", "create", "--message-file", str(message), "--url", "https://example.com/x", expect=1
    ).output
    assert "example.com is not in tracker.allowed_domains" in off_portal

    digest = polled("campaign", "create", "--items", "1,3", "--channels", "telegram_channel").output
    assert digest.startswith("campaign 2 created (draft): Digest: ")
    preview = polled("campaign", "preview", "2").output
    assert "Trung tâm Phục vụ hành chính công" in preview
    assert "mua sắm tập trung" in preview

    polled("--as", "Lan", "campaign", "approve", "1")
    polled("--as", "Lan", "campaign", "approve", "2")
    assert polled("send").output.splitlines()[-1] == "sent 3, retrying 0, failed 0, skipped 0, unknown 0"
    texts = sorted((tmp_path / "outbox").rglob("*.txt"))
    assert any("Hội nghị đối thoại" in path.read_text(encoding="utf-8") for path in texts)


def test_reject_and_cancel(polled: Run) -> None:
    polled("campaign", "create", "--item", "2")
    rejected = polled("--as", "Lan", "campaign", "reject", "1", "--reason", "trùng tin hôm qua").output
    assert rejected == "campaign 1 rejected by Lan (login " + rejected.split("(login ")[1]
    assert "trùng tin hôm qua" in polled("campaign", "show", "1").output
    refused = polled("--as", "Lan", "campaign", "approve", "1", expect=1).output
    assert "campaign 1 is rejected: it cannot become approved (allowed: nothing: it is final)" in refused

    polled("campaign", "create", "--item", "3")
    polled("--as", "Lan", "campaign", "approve", "2")
    assert "campaign 2 cancelled: 2 pending deliveries skipped" in polled("campaign", "cancel", "2").output
    assert polled("send").output.splitlines()[-1].startswith("sent 0,")
    assert "is cancelled: it cannot become cancelled" in polled("campaign", "cancel", "2", expect=1).output
    refused = polled("campaign", "retry", "2", expect=1).output
    assert "campaign 2 is cancelled: only a campaign that is sending or done_with_errors can be retried" in refused


def test_settle_a_delivery_of_unknown_fate_then_the_campaign_finishes(polled: Run, database: Path) -> None:
    polled("campaign", "create", "--item", "2")
    polled("--as", "Lan", "campaign", "approve", "1")
    sql(database, "UPDATE deliveries SET status = 'unknown', last_error = 'crashed while posting' WHERE id = 1")
    polled("send")

    shown = polled("campaign", "show", "1").output
    assert "campaign 1 · item · sending" in shown
    assert "outreach campaign settle 1 --delivery 1 --sent (or --not-sent)" in shown
    assert (
        "is sent, not unknown: nothing to settle"
        in polled("campaign", "settle", "1", "--delivery", "2", "--sent", expect=1).output
    )
    settled = polled("--as", "Lan", "campaign", "settle", "1", "--delivery", "1", "--sent").output
    assert settled.startswith("delivery 1 settled as sent by Lan (login ")
    assert settled.rstrip().endswith("campaign 1 is done")
    assert "unknown → sent" in polled("campaign", "show", "1").output


def test_retry_sends_failed_deliveries_again(polled: Run, database: Path) -> None:
    polled("campaign", "create", "--item", "2")
    polled("--as", "Lan", "campaign", "approve", "1")
    polled("send")
    assert "campaign 1 is done: nothing failed to retry" in polled("campaign", "retry", "1", expect=1).output
    sql(database, "UPDATE deliveries SET status = 'failed', last_error = 'rejected: too long' WHERE id = 1")
    sql(database, "UPDATE campaigns SET status = 'done_with_errors' WHERE id = 1")

    assert polled("campaign", "retry", "1").output == "campaign 1: 1 failed delivery pending again\n"
    assert polled("send").output.splitlines()[-1].startswith("sent 1,")
    assert "campaign 1 · item · done" in polled("campaign", "show", "1").output


def test_a_paused_channel_shows_in_status_and_show_until_resumed(polled: Run, database: Path) -> None:
    polled("campaign", "create", "--item", "2")
    polled("--as", "Lan", "campaign", "approve", "1")
    store = Store.open(f"sqlite:///{database}", Access.write)
    try:
        reason = "Graph API 190: Error validating access token"
        pause(store, "facebook", "quangngai.gov.vn", reason, datetime.now(UTC), Actor("runner"))
    finally:
        store.close()

    sent = polled("send", expect=1).output  # Telegram goes; Facebook waits, and the exit code says so
    assert "sent 1, retrying 0" in sent
    assert f"facebook → quangngai.gov.vn paused: {reason}; its deliveries stay pending" in sent
    assert f"paused ({reason}); fix it, then outreach channel resume facebook" in polled("campaign", "show", "1").output
    assert f"facebook → quangngai.gov.vn paused: {reason}" in polled("status").output

    assert polled("channel", "resume", "facebook").output.startswith("facebook: 1 pause lifted")
    assert "paused:" not in polled("status").output
    assert polled("send").output.splitlines()[-1].startswith("sent 1,")
    assert "Invalid value for NAME: facebook has no pause" in polled("channel", "resume", "facebook", expect=2).output


# --- run --once --------------------------------------------------------------


def fresh_feed(folder: Path) -> Path:
    """Today's news as the portal would publish it (the digest takes the last day's items)."""
    now = datetime.now(UTC)
    when = [format_datetime(now - timedelta(hours=hours)) for hours in (1, 2, 3)]
    path = folder / "today.rss"
    path.write_bytes(
        rss(
            rss_item("t1", "Hướng dẫn quyết toán thuế thu nhập doanh nghiệp", "Hạn nộp tờ khai.", date=when[0]),
            rss_item("t2", "Thông báo mời thầu gói thầu mua sắm thiết bị", "Đấu thầu qua mạng.", date=when[1]),
            rss_item("t3", "Hội chợ hàng Việt tại Quảng Ngãi", "Không thuộc chuyên mục nào.", date=when[2]),
        )
    )
    return path


def test_run_once_on_a_fresh_database_makes_the_rules_campaigns_and_the_digest(tmp_path: Path, database: Path) -> None:
    config = write_config(
        tmp_path / "schedules.yaml",
        sources=[
            {"name": "portal", "url": (SAMPLES / "portal-vi.rss").as_uri(), "language": "vi"},
            {"name": "today", "url": fresh_feed(tmp_path).as_uri(), "language": "vi"},
        ],
        rules=[
            {"name": "tax-news", "topics": ["tax"], "channels": ["telegram_channel"], "max_age_days": 100000},
            {"name": "tenders", "topics": ["procurement"], "channels": ["facebook"], "approved": True},
        ],
        digests=[{"name": "evening", "at": "17:30", "days": "mon-sun", "approved": True, "channels": ["facebook"]}],
    )

    def run(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(main, ["--config", str(config), "--db", f"sqlite:///{database}", *args], env=STAFF)
        assert result.exit_code == expect, result.output
        return result

    run("init")
    first = run("run", "--once").output.splitlines()[-1]
    sample_tax = [
        row[0] for row in sql(database, "SELECT id FROM items WHERE topics LIKE '%\"tax\"%' AND guid NOT LIKE 't%'")
    ]
    campaigns = sql(database, "SELECT rule, status, kind, item_ids FROM campaigns ORDER BY id")
    by_rule = {rule: [c for c in campaigns if c[0] == rule] for rule in ("tax-news", "tenders", "evening")}
    assert all(status == "draft" for _, status, _, _ in by_rule["tax-news"])  # staff approve these
    assert len(by_rule["tax-news"]) == len(sample_tax) + 1  # every tax item, old or new (max_age_days)
    assert [status for _, status, _, _ in by_rule["tenders"]] == ["done"]  # only today's tender: 3 days max
    [(_, status, kind, item_ids)] = by_rule["evening"]
    assert (status, kind, len(yaml.safe_load(str(item_ids)))) == ("done", "digest", 3)
    assert first == (
        f"polled 2 sources; rules made {len(sample_tax) + 1} drafts and scheduled 1; 1 digest; "
        "sent 2, retrying 0, failed 0, unknown 0"
    )

    again = run("run", "--once").output.splitlines()[-1]
    assert (
        again
        == "polled 2 sources; rules made 0 drafts and scheduled 0; 0 digests; sent 0, retrying 0, failed 0, unknown 0"
    )
    assert sql(database, "SELECT rule, status, kind, item_ids FROM campaigns ORDER BY id") == campaigns

    feed = tmp_path / "today.rss"  # the portal edits an item: a new title, same guid
    feed.write_bytes(feed.read_bytes().replace("quyết toán thuế".encode(), "quyết toán thuế (sửa đổi)".encode()))
    run("run", "--once")
    assert len(sql(database, "SELECT id FROM campaigns")) == len(campaigns)


def test_config_check_says_when_each_channel_posts_and_what_rules_do(tmp_path: Path) -> None:
    channels = base_config()["channels"]
    channels["facebook"].update(windows=["Mon-Fri 07:30-11:30, 13:30-17:00"], max_per_day=4, skip_holidays=True)
    channels["outbox"] = {"dir": str(tmp_path / "outbox")}
    config = write_config(
        tmp_path / "schedules.yaml",
        channels=channels,
        rules=[{"name": "tax-news", "topics": ["tax", "law"]}, {"name": "all-news", "approved": True}],
        digests=[{"name": "evening", "at": "17:00"}],
    )
    result = CliRunner().invoke(main, ["--config", str(config), "config", "check"], env=STAFF)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-6:] == [
        "  facebook posts: Mon-Fri 07:30-11:30, 13:30-17:00; no posts on public holidays; at most 4 a day",
        "  approval: someone other than the creator approves",
        "  rule tax-news: tax, law → draft",
        "  rule all-news: any topic → scheduled",
        "  digest evening: mon-fri at 17:00",
        "  audit: 7 required sections (`outreach audit`)",
    ]
