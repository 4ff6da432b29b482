"""`outreach doctor` against both emulators: one line per check, exit 1 when one fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.db import head_revision
from outreach.sandbox import GraphEmulator, TelegramEmulator
from tests.conftest import base_config

HEAD = head_revision()

PAGE_TOKEN = "EAAdoctor0123456789abcdef0123456789abcdef"
BOT_TOKEN = "7111111111:AAHdoctorTokenForTheEmulatorOnly_xyz"


@pytest.fixture
def platforms() -> Iterator[tuple[GraphEmulator, TelegramEmulator]]:
    with GraphEmulator() as graph, TelegramEmulator() as telegram:
        graph.add_page("quangngai.gov.vn", "Cổng thông tin điện tử tỉnh Quảng Ngãi", PAGE_TOKEN)
        telegram.add_bot(BOT_TOKEN)
        telegram.add_chat(-1001000000001, username="quangngai_doanhnghiep", title="Doanh nghiệp Quảng Ngãi")
        yield graph, telegram


@pytest.fixture
def conf(tmp_path: Path, platforms: tuple[GraphEmulator, TelegramEmulator]) -> Path:
    graph, telegram = platforms
    data = base_config()
    data["sources"] = []
    data["channels"]["facebook"]["graph_url"] = graph.url
    data["channels"]["telegram_channel"]["api_url"] = telegram.url
    data["channels"]["telegram_bot"]["api_url"] = telegram.url
    data["channels"]["telegram_channel"]["targets"][1]["token_env"] = "OUTREACH_TELEGRAM_TOKEN_INVESTORS"
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert CliRunner().invoke(main, ["--config", str(path), "init"]).exit_code == 0
    return path


def doctor(conf: Path, expect: int) -> list[str]:
    env = {"OUTREACH_FACEBOOK_PAGE_TOKEN": PAGE_TOKEN, "OUTREACH_TELEGRAM_TOKEN": BOT_TOKEN, "COLUMNS": "200"}
    result: Result = CliRunner().invoke(main, ["--config", str(conf), "doctor"], env=env)
    assert result.exit_code == expect, result.output
    assert PAGE_TOKEN not in result.output
    assert BOT_TOKEN.split(":")[1] not in result.output
    return result.output.splitlines()


def telegram_url(conf: Path) -> str:
    return str(yaml.safe_load(conf.read_text(encoding="utf-8"))["channels"]["telegram_bot"]["api_url"])


def test_a_healthy_install_passes_with_a_warning_for_the_target_without_token(conf: Path) -> None:
    lines = doctor(conf, expect=0)
    assert lines[0] == f"ok   config: {conf}"
    assert lines[1] == f"ok   database: {conf.parent / 'outreach.db'} at schema {HEAD}"
    assert [line.split(":")[0] for line in lines[2:9]] == [
        "ok   template facebook/post.en.j2",
        "ok   template facebook/post.vi.j2",
        "ok   template telegram_channel/post.en.j2",
        "ok   template telegram_channel/post.vi.j2",
        "ok   bot texts",
        "ok   template telegram_bot/post.en.j2",
        "ok   template telegram_bot/post.vi.j2",
    ]
    routes = lines[9:]
    assert routes[0].startswith(
        "ok   facebook → quangngai.gov.vn: Page 'Cổng thông tin điện tử tỉnh Quảng Ngãi' (quangngai.gov.vn) "
        "with Graph API v23.0 (token in OUTREACH_FACEBOOK_PAGE_TOKEN"
    )
    assert routes[1].startswith(
        "ok   telegram_channel → @quangngai_doanhnghiep: bot @quangngai_outreach_bot may post in channel "
        "Doanh nghiệp Quảng Ngãi (token in OUTREACH_TELEGRAM_TOKEN"
    )
    assert routes[2] == (
        "warn telegram_channel → @quangngai_investors: no token in OUTREACH_TELEGRAM_TOKEN_INVESTORS: "
        f"files under {conf.parent / 'outbox'}"
    )
    assert routes[3] == (
        "ok   telegram_bot → subscribers: bot @quangngai_outreach_bot answers; it writes to the chats that "
        f"subscribed (token in OUTREACH_TELEGRAM_TOKEN: Bot API at {telegram_url(conf)}, to subscribers)"
    )
    assert len(routes) == 4


def test_a_refused_token_a_broken_template_and_a_missing_database_fail(
    conf: Path, tmp_path: Path, platforms: tuple[GraphEmulator, TelegramEmulator]
) -> None:
    graph, telegram = platforms
    graph.expire_token(PAGE_TOKEN)
    telegram.revoke(BOT_TOKEN)
    (conf.parent / "outreach.db").unlink()
    templates = tmp_path / "tpl" / "facebook"
    templates.mkdir(parents=True)
    (templates / "post.vi.j2").write_text("{{ item.title }} {{ item.no_such_field }}\n", encoding="utf-8")
    env = {"OUTREACH_FACEBOOK_PAGE_TOKEN": PAGE_TOKEN, "OUTREACH_TELEGRAM_TOKEN": BOT_TOKEN, "COLUMNS": "200"}
    result = CliRunner().invoke(main, ["--config", str(conf), "--templates", str(tmp_path / "tpl"), "doctor"], env=env)
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    failures = [line for line in lines if line.startswith("FAIL")]
    assert failures[0] == (
        f"FAIL database: no database at {conf.parent / 'outreach.db'}: run `outreach init` (or check --db and --config)"
    )
    assert failures[1].startswith("FAIL template facebook/post.vi.j2: facebook/post.vi.j2: ")
    assert "no_such_field" in failures[1]
    assert failures[2].startswith("FAIL facebook → quangngai.gov.vn: Facebook error 190: Error validating access token")
    assert "and set the new token in OUTREACH_FACEBOOK_PAGE_TOKEN" in failures[2]
    assert failures[3].startswith("FAIL telegram_channel → @quangngai_doanhnghiep: Telegram refused the bot token")
    assert failures[4].startswith("FAIL telegram_bot → subscribers: Telegram refused the bot token")
    assert len(failures) == 5


def test_a_broken_config_is_one_failing_line(tmp_path: Path) -> None:
    bad = tmp_path / "schedules.yaml"
    bad.write_text("version: 1\ntracker: {public_url: nope}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(bad), "doctor"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith(f"FAIL config: {bad}:2: tracker.public_url: String should match")
