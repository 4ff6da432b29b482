"""Every command through click's CliRunner, on real files, end to end."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.db import head_revision
from outreach.packaged import SAMPLES
from tests.conftest import ROOT, base_config, free_port

HEAD = head_revision()

SAMPLE_VI = (SAMPLES / "portal-vi.rss").as_uri()
WIDE = {"COLUMNS": "200"}  # tables on one line each, so rows can be read back
Run = Callable[..., Result]


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the rich tables in some output, as stripped cells."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = base_config()
    data["sources"] = [{"name": "portal", "url": SAMPLE_VI, "language": "vi"}]
    data["channels"]["outbox"] = {"dir": str(tmp_path / "outbox")}
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path: Path, config_file: Path) -> Run:
    def invoke(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(
            main,
            ["--config", str(config_file), "--db", f"sqlite:///{tmp_path / 'cli.db'}", *args],
            env={"OUTREACH_TELEGRAM_TOKEN": "", **WIDE},
        )
        assert result.exit_code == expect, result.output + (repr(result.exception) if result.exception else "")
        return result

    return invoke


COMMANDS = [
    [],
    ["init"],
    ["status"],
    ["config"],
    ["config", "check"],
    ["sources"],
    ["sources", "poll"],
    ["sources", "list"],
    ["items", "list"],
    ["campaign"],
    ["campaign", "create"],
    ["campaign", "approve"],
    ["campaign", "reject"],
    ["campaign", "cancel"],
    ["campaign", "retry"],
    ["campaign", "settle"],
    ["campaign", "show"],
    ["campaign", "preview"],
    ["campaign", "list"],
    ["channel"],
    ["channel", "resume"],
    ["send"],
    ["tracker"],
    ["report"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "outreach")
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {' '.join(command)}".rstrip())


@pytest.mark.parametrize(
    "command", [c for c in COMMANDS if c in ([], ["sources"], ["items"], ["campaign"], ["config"], ["channel"])]
)
def test_every_one_line_help_fits_without_being_cut(command: list[str]) -> None:
    listing = CliRunner().invoke(main, [*command, "--help"], env={"COLUMNS": "80"}).output
    commands = listing.split("Commands:", 1)[1]
    assert "..." not in commands, commands


def test_help_says_where_relative_paths_are_read_from_and_what_exits_mean() -> None:
    text = " ".join(CliRunner().invoke(main, ["--help"], env={"COLUMNS": "200"}).output.split())
    assert "are read from the config file's folder, wherever you run the command" in text
    assert "a relative --db path is read from the current folder" in text
    assert "3 no outreach database there yet (run `outreach init`)" in text


def test_config_error_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\ntracker:\n  public_url: https://go.vn\n  allowed_domains: [x.vn]\n  colour: blue\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["--config", str(bad), "config", "check"])
    assert result.exit_code == 2
    assert f"config error: {bad}:5: tracker.colour: Extra inputs are not permitted" in result.output


def test_config_check_names_each_targets_transport_and_why(run: Run, tmp_path: Path) -> None:
    lines = run("config", "check").output.splitlines()
    assert lines[0].endswith(": ok: 7 topics, 1 source, time zone Asia/Ho_Chi_Minh")
    outbox = tmp_path / "outbox"
    assert lines[1:] == [
        f"  facebook → quangngai.gov.vn: via outbox (no token in OUTREACH_FACEBOOK_PAGE_TOKEN: files under {outbox})",
        f"  telegram_channel → @quangngai_doanhnghiep: via outbox (no token in OUTREACH_TELEGRAM_TOKEN: files under {outbox})",
        f"  telegram_channel → @quangngai_investors: via outbox (no token in OUTREACH_TELEGRAM_TOKEN: files under {outbox})",
        f"  telegram_bot → subscribers: via outbox (no token in OUTREACH_TELEGRAM_TOKEN: files under {outbox})",
        "  approval: someone other than the creator approves",
        "  audit: 7 required sections (`outreach audit`)",
    ]


def test_config_check_says_a_token_set_means_the_platform(tmp_path: Path, config_file: Path) -> None:
    env = {"OUTREACH_TELEGRAM_TOKEN": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_", "COLUMNS": "200"}
    result = CliRunner().invoke(main, ["--config", str(config_file), "config", "check"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        "  telegram_channel → @quangngai_doanhnghiep: via telegram_channel "
        "(token in OUTREACH_TELEGRAM_TOKEN: Bot API at https://api.telegram.org)" in result.output.splitlines()
    )
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_" not in result.output


def test_whole_pipeline_through_the_cli(run: Run, tmp_path: Path) -> None:
    assert run("init").output == f"database {tmp_path / 'cli.db'}: schema {HEAD} (created)\n"
    assert run("init").output == f"database {tmp_path / 'cli.db'}: schema {HEAD} (up to date)\n"
    assert table_rows(run("sources", "poll").output) == [["portal", "16", "0", "16", "ok"]]
    assert table_rows(run("sources", "poll").output) == [["portal", "0", "0", "16", "ok"]]
    sources = run("sources", "list").output.splitlines()
    assert sources[0] == f"portal (feed, vi, every 30 min) {SAMPLE_VI}"
    assert sources[1].startswith("  last poll 20")
    assert sources[1].endswith(": ok")
    listing = table_rows(run("items", "list", "--topic", "procurement").output)
    assert listing
    assert all("procurement" in row[3] for row in listing)
    created = run("campaign", "create", "--item", "1").output
    assert created.startswith("campaign 1 created (draft): ")
    preview = run("campaign", "preview", "1").output
    assert "facebook → quangngai.gov.vn" in preview
    assert "telegram_channel → @quangngai_doanhnghiep" in preview
    assert "/r/PREVIEWxx" in preview
    approved = run("--as", "Trần Văn Minh", "campaign", "approve", "1").output
    assert approved.startswith("campaign 1 approved by Trần Văn Minh (login ")
    assert ": 2 deliveries scheduled for 20" in approved
    assert "second approval" not in run("--as", "Trần Văn Minh", "campaign", "approve", "1", expect=1).output
    assert run("send").output.splitlines()[-1] == "sent 2, retrying 0, failed 0, skipped 0, unknown 0"
    assert run("send").output.splitlines()[-1] == "sent 0, retrying 0, failed 0, skipped 0, unknown 0"
    files = sorted((tmp_path / "outbox").rglob("*.txt"))
    assert [f.parent.name for f in files] == ["facebook", "telegram_channel"]
    header = json.loads(files[0].read_text(encoding="utf-8").split("\n", 1)[0])
    assert header["channel"] == "facebook"
    assert header["campaign"] == 1
    assert "utm_source=facebook" in header["link"]["destination"]
    campaign_row = table_rows(run("campaign", "list").output)[0]  # a long title may wrap
    assert campaign_row[:2] == ["1", "done"]
    report = run("report").output
    # channel, sent, clicks, uniq, rep, prev, bots, ctr, first click
    assert table_rows(report)[:2] == [
        ["facebook", "1", "0", "0", "0", "0", "0", "0.00", "-"],
        ["telegram_channel", "1", "0", "0", "0", "0", "0", "0.00", "-"],
    ]
    assert "telegram_channel → @quangngai_doanhnghiep: via outbox" in report


def test_status_names_the_config_and_database_and_counts(run: Run, tmp_path: Path, config_file: Path) -> None:
    run("init")
    run("sources", "poll")
    run("campaign", "create", "--item", "1", "--channels", "facebook")
    run("--as", "Approver", "campaign", "approve", "1")
    output = run("status").output.splitlines()
    lines = {line[:11].strip(): line[11:] for line in output if line[:11].strip()}
    assert lines["config"] == str(config_file)
    assert lines["database"] == f"{tmp_path / 'cli.db'} (schema {HEAD})"
    assert lines["items"].startswith("16 (last poll 20")
    assert lines["campaigns"] == "1: 1 scheduled"
    assert lines["deliveries"] == "1: 1 pending"
    assert lines["clicks"] == "0 (last never)"
    assert lines["routes"].startswith("facebook → quangngai.gov.vn: via outbox (no token in ")
    routes = output.index(next(line for line in output if line.startswith("routes")))
    assert [line[11:].split(":")[0] for line in output[routes + 1 : routes + 3]] == [
        "telegram_channel → @quangngai_doanhnghiep",
        "telegram_channel → @quangngai_investors",
    ]
    assert lines["jobs"] == "none recorded: `outreach run` is not running here"
    assert lines["problems"] == "none"


def test_one_delivery_is_one_delivery(run: Run) -> None:
    run("init")
    run("sources", "poll")
    run("campaign", "create", "--item", "1", "--channels", "facebook")
    output = run("--as", "Approver", "campaign", "approve", "1").output
    assert ": 1 delivery scheduled for " in output


def test_campaign_errors_exit_1(run: Run) -> None:
    run("init")
    assert "error: no item with id 42" in run("campaign", "create", "--item", "42", expect=1).output
    run("sources", "poll")
    output = run("campaign", "create", "--item", "1", "--channels", "zalo", expect=1).output
    assert "error: channel(s) zalo not enabled" in output
    assert "error: no campaign with id 9" in run("campaign", "preview", "9", expect=1).output


def test_unknown_source_is_a_usage_error(run: Run) -> None:
    run("init")
    assert "error: unknown source(s): nope" in run("sources", "poll", "nope", expect=2).output


def _demo(folder: Path | None, columns: int = 120) -> Result:
    argv = ["--config", str(ROOT / "schedules.yaml"), "demo"] + (["--dir", str(folder)] if folder else [])
    result = CliRunner().invoke(main, argv, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    output = _demo(folder).output
    assert "sample-portal-vi: 16 new items of 16 in the feed" in output
    assert "sample-portal-notices: 3 new items of 3 on the listing page" in output  # a section with no feed
    assert "polled again: 0 new (duplicates are recognised)" in output
    assert "sent 17, failed 0" in output
    assert str(folder / "outreach.db") in output
    # Facebook and one Telegram channel through their emulators, the English channel (no token) to the outbox.
    assert "facebook → quangngai.gov.vn: via facebook (token in OUTREACH_FACEBOOK_PAGE_TOKEN: Graph API v23.0" in output
    assert "telegram_channel → @quangngai_investors: via outbox (no token in OUTREACH_DEMO_UNSET_TOKEN" in output
    assert len(list((folder / "outbox").rglob("*.txt"))) == 2
    assert "the emulated Facebook Page quangngai.gov.vn now shows (post quangngai.gov.vn_1)" in output
    assert f"Clean up with:   rm -r {folder}" in output
    # A business subscribed through the real bot, registered its tax code with consent, and searched.
    assert "Chị Hoa, kế toán Công ty TNHH Dung Quất: /start" in output
    assert "Bạn sẽ nhận tin về: Thuế và cuộc sống · Đầu tư · Thủ tục hành chính" in output
    assert "Lượt truy cập từ cuộc trò chuyện này sẽ được tính cho doanh nghiệp 0100233488" in output
    assert "hóa đơn điện tử" in output.split("/search hoa don dien tu", 1)[1]
    assert "Businesses reached: 1 of 1 registered (100.0 %)" in output
    assert "not VCCI's PCI survey" in " ".join(output.split())
    rows = [row[:7] for row in table_rows(output)]
    # sent, clicks, unique, repeats, previews, bots: the demo's visitors tap from one address with one
    # agent per link, so each link is one visitor; every post's card is fetched once.
    assert ["facebook", "7", "15", "7", "0", "7", "0"] in rows
    assert ["telegram_bot", "3", "5", "3", "0", "3", "0"] in rows  # the subscriber's topics only
    assert ["telegram_channel", "7", "13", "7", "0", "7", "0"] in rows
    assert ["total", "17", "33", "17", "0", "17", "0"] in rows
    html = folder / "report.html"
    assert f"HTML report (Vietnamese, prints on A4): {html}" in output
    assert "Doanh nghiệp" in html.read_text(encoding="utf-8")


def test_demo_tables_stay_readable_at_80_columns(tmp_path: Path) -> None:
    output = _demo(tmp_path / "demo", columns=80).output
    assert max(len(line) for line in output.splitlines() if "│" in line or "┃" in line) <= 80
    assert "┳┳" not in output, "a column was squeezed to nothing"
    campaign_rows = [row for row in table_rows(output) if len(row) == 5 and row[1] in ("vi", "en", "")]
    assert [row[0] for row in campaign_rows if row[0]] == [str(n) for n in range(1, 8)]
    assert all(row[1] in ("vi", "en") for row in campaign_rows if row[0])


def test_demo_again_in_its_folder_starts_afresh_and_refuses_a_foreign_folder(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    _demo(folder)
    second = _demo(folder).output
    assert "sample-portal-vi: 16 new items of 16 in the feed" in second
    assert ["total", "17", "33", "17", "0", "17", "0"] in [row[:7] for row in table_rows(second)]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.docx").write_text("keep me", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["--config", str(ROOT / "schedules.yaml"), "demo", "--dir", str(tmp_path / "mine")]
    )
    assert result.exit_code == 2
    assert "is not empty and not an earlier demo's folder" in result.output
    assert (tmp_path / "mine" / "thesis.docx").read_text(encoding="utf-8") == "keep me"


def test_demo_removes_its_earlier_temporary_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "outreach-demo-unrelated").mkdir()  # not marked as a demo's: kept
    first = _demo(None).output
    assert "Removed" not in first
    assert "The next `outreach demo` removes this folder; to keep it, use --dir." in first
    [earlier] = [p for p in tmp_path.glob("outreach-demo-*") if p.name != "outreach-demo-unrelated"]
    running = tmp_path / "outreach-demo-running"  # another demo, started a moment ago: kept
    running.mkdir()
    (running / ".outreach-demo").touch()
    a_while_ago = time.time() - 600
    os.utime(earlier / ".outreach-demo", (a_while_ago, a_while_ago))
    second = _demo(None).output
    assert f"Removed 1 earlier demo folder from {tmp_path}." in second
    assert not earlier.exists()
    assert running.exists()
    assert (tmp_path / "outreach-demo-unrelated").exists()
    assert len(list(tmp_path.glob("outreach-demo-*"))) == 3


def test_tracker_command_serves_redirects_and_names_its_database(run: Run, tmp_path: Path, config_file: Path) -> None:
    db = tmp_path / "cli.db"
    run("init")
    run("sources", "poll")
    run("campaign", "create", "--item", "1", "--channels", "facebook")
    run("--as", "Approver", "campaign", "approve", "1")
    with sqlite3.connect(db) as connection:
        code, destination = connection.execute("SELECT code, destination FROM links").fetchone()
    port = free_port()
    argv = [sys.executable, "-c", "import cli; cli.main()", "--config", str(config_file), "--db", f"sqlite:///{db}"]
    server = subprocess.Popen([*argv, "tracker", "--port", str(port)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, "tracker exited"
                assert time.monotonic() < deadline, "tracker did not start"
                time.sleep(0.1)
        assert health.status_code == 200
        answer = httpx.get(f"http://127.0.0.1:{port}/r/{code}", timeout=2, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (302, destination)
        assert httpx.get(f"http://127.0.0.1:{port}/r/Unknown123", timeout=2).status_code == 404
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert "OUTREACH_CLICK_SALT is not set" in err
    assert f"tracker: database {db} (schema {HEAD})" in err
    assert f"tracker: links https://go.quangngai.gov.vn/r/CODE, served on 127.0.0.1:{port}" in err


@pytest.mark.parametrize("command", [["--help"], ["campaign", "--help"], ["items", "list", "--help"]], ids=" ".join)
def test_help_is_quick_to_start(command: list[str]) -> None:
    # Not a timing test: help must not import the heavy parts at all.
    heavy = ("sqlalchemy", "httpx", "feedparser", "starlette", "rich", "jinja2", "pydantic", "yaml", "alembic")
    code = f"import sys, cli; cli.main({command!r}, standalone_mode=False); print(sorted(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().endswith("[]")


def test_send_says_when_a_target_falls_back_to_the_outbox(run: Run, tmp_path: Path) -> None:
    run("init")
    output = run("send").output
    outbox = tmp_path / "outbox"
    assert (
        f"facebook → quangngai.gov.vn: via outbox (no token in OUTREACH_FACEBOOK_PAGE_TOKEN: files under {outbox})"
        in output
    )
    assert "sent 0, retrying 0" in output


def test_init_prints_the_starter_config(tmp_path: Path) -> None:
    # No config is needed to get one, and no database is made.
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "none.yaml"), "init", "--config-example"])
    assert result.exit_code == 0, result.output
    assert result.output == (ROOT / "schedules.yaml").read_text(encoding="utf-8")
    assert list(tmp_path.iterdir()) == []


def test_two_pages_on_one_token_variable_is_a_config_error(tmp_path: Path, config_file: Path) -> None:
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    data["channels"]["facebook"]["targets"] = [{"id": "111"}, {"id": "222"}, {"id": "333", "token_env": "FB_333"}]
    config_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(config_file), "config", "check"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"config error: {config_file}: channels.facebook: targets 111, 222 all read their token from "
        "OUTREACH_FACEBOOK_PAGE_TOKEN, but a facebook token works for one target only: give each its own token_env"
    )


def test_items_search_is_accent_free_and_refuses_what_it_cannot_search(run: Run) -> None:
    run("init")
    run("sources", "poll")
    rows = table_rows(run("items", "search", "hoa", "don", "dien", "tu").output)
    assert rows
    assert "hóa đơn điện tử" in rows[0][4]
    exact = table_rows(run("items", "search", "hóa", "đơn").output)
    assert exact[0][3] == "exact"
    assert "no item matches 'zzzz qqqq'" in run("items", "search", "zzzz", "qqqq").output
    refused = run("items", "search", "!!!", expect=2).output
    assert "only punctuation or symbols" in refused
