"""Every command through click's CliRunner, on real files, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from cli import main
from tests.conftest import ROOT, base_config

SAMPLE_VI = (ROOT / "outreach" / "sample" / "portal-vi.rss").as_uri()


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = base_config()
    data["sources"] = [{"name": "portal", "url": SAMPLE_VI, "language": "vi"}]
    data["channels"]["outbox"] = {"dir": str(tmp_path / "outbox")}
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def run(tmp_path: Path, config_file: Path):  # type: ignore[no-untyped-def]
    def invoke(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(
            main,
            ["--config", str(config_file), "--db", f"sqlite:///{tmp_path / 'cli.db'}", *args],
            env={"OUTREACH_TELEGRAM_TOKEN": ""},
        )
        assert result.exit_code == expect, result.output + (repr(result.exception) if result.exception else "")
        return result

    return invoke


COMMANDS = [
    [],
    ["init"],
    ["config"],
    ["config", "check"],
    ["sources"],
    ["sources", "poll"],
    ["sources", "list"],
    ["items", "list"],
    ["campaign"],
    ["campaign", "create"],
    ["campaign", "queue"],
    ["campaign", "preview"],
    ["campaign", "list"],
    ["send"],
    ["tracker"],
    ["report"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "outreach")
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_config_error_exits_2_naming_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\ntracker:\n  public_url: https://go.vn\n  allowed_domains: [x.vn]\n  colour: blue\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["--config", str(bad), "config", "check"])
    assert result.exit_code == 2
    assert f"config error: {bad}:5: tracker.colour: Extra inputs are not permitted" in result.output


def test_config_check_names_transports(run) -> None:  # type: ignore[no-untyped-def]
    result = run("config", "check")
    assert "channel facebook: sends through outbox" in result.output
    assert "channel telegram_channel: sends through outbox" in result.output


def test_whole_pipeline_through_the_cli(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "schema revision 0001" in run("init").output
    polled = run("sources", "poll").output
    assert "portal" in polled
    assert "16" in polled
    assert "never" not in run("sources", "list").output
    listing = run("items", "list", "--topic", "procurement").output
    assert "mua sắm" in listing or "thầu" in listing
    created = run("campaign", "create", "--item", "1").output
    assert "campaign 1 created (draft)" in created
    preview = run("campaign", "preview", "1").output
    assert "facebook" in preview
    assert "telegram_channel" in preview
    assert "/r/PREVIEWxx" in preview
    assert "2 new deliveries queued" in run("campaign", "queue", "1").output
    assert "0 new deliveries queued" in run("campaign", "queue", "1").output
    assert "sent 2, retrying 0, failed 0" in run("send").output
    assert "sent 0" in run("send").output
    files = sorted((tmp_path / "outbox").rglob("*.txt"))
    assert [f.parent.name for f in files] == ["facebook", "telegram_channel"]
    header = json.loads(files[0].read_text(encoding="utf-8").split("\n", 1)[0])
    assert header["channel"] == "facebook"
    assert header["campaign"] == 1
    assert "utm_source=facebook" in header["link"]["destination"]
    assert "done" in run("campaign", "list").output
    report = run("report").output
    assert "facebook" in report
    assert "telegram_channel" in report
    assert "total" in report


def test_campaign_errors_exit_1(run) -> None:  # type: ignore[no-untyped-def]
    run("init")
    assert "no item with id 42" in run("campaign", "create", "--item", "42", expect=1).output
    run("sources", "poll")
    assert (
        "channel(s) zalo not enabled" in run("campaign", "create", "--item", "1", "--channels", "zalo", expect=1).output
    )
    assert "no campaign with id 9" in run("campaign", "preview", "9", expect=1).output


def test_unknown_source_is_a_usage_error(run) -> None:  # type: ignore[no-untyped-def]
    assert "unknown source(s): nope" in run("sources", "poll", "nope", expect=2).output


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    result = CliRunner().invoke(
        main, ["--config", str(ROOT / "schedules.yaml"), "demo", "--dir", str(folder)], env={"COLUMNS": "120"}
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "sample-portal-vi: 16 new items of 16" in result.output
    assert "polled again: 0 new" in result.output
    assert "sent 14, failed 0" in result.output
    assert "By channel" in result.output
    assert "By campaign" in result.output
    assert str(folder / "outreach.db") in result.output
    total = next(line for line in result.output.splitlines() if "total" in line)
    sent, waiting, problems, visits, crawlers = [int(cell) for cell in total.replace("│", " ").split()[1:]]
    assert (sent, waiting, problems) == (14, 0, 0)
    assert visits == 27
    assert crawlers == 14
    assert any(
        line.split("│")[1:3] == [" facebook         ", " outbox "] for line in result.output.splitlines() if "│" in line
    ), result.output


def test_tracker_command_serves_redirects(tmp_path: Path, config_file: Path) -> None:
    import socket
    import time

    import httpx

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [
        sys.executable,
        "-c",
        "import cli; cli.main()",
        "--config",
        str(config_file),
        "--db",
        db,
        "tracker",
        "--port",
        str(port),
    ]
    server = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
        assert httpx.get(f"http://127.0.0.1:{port}/r/Unknown123", timeout=2).status_code == 404
    finally:
        server.terminate()
        _, err = server.communicate(timeout=10)
    assert "OUTREACH_CLICK_SALT is not set" in err


def test_help_is_quick_to_start() -> None:
    # Not a timing test: --help must not import the heavy parts at all.
    code = "import sys, cli; cli.main(['--help'], standalone_mode=False); print(sorted(m for m in ('sqlalchemy','httpx','feedparser','starlette','rich','jinja2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().endswith("[]")


def test_bad_database_url_exits_2_and_passwords_are_never_printed(config_file: Path) -> None:
    from outreach.db import safe_url

    result = CliRunner().invoke(main, ["--config", str(config_file), "--db", "nosuchdb://user:s3cret@host/x", "init"])
    assert result.exit_code == 2
    assert "config error: --db / OUTREACH_DATABASE_URL: cannot use nosuchdb://user:***@host/x" in result.output
    assert "s3cret" not in result.output
    assert (
        safe_url("postgresql+psycopg://app:s3cret@db:5432/outreach") == "postgresql+psycopg://app:***@db:5432/outreach"
    )


def test_send_says_when_a_channel_falls_back_to_the_outbox(run) -> None:  # type: ignore[no-untyped-def]
    output = run("send").output
    assert "channel facebook: no token set, writing to the outbox instead" in output
    assert "sent 0" in output
