"""`outreach run`, the service, as a real child process: jobs, the dispatcher and the tracker in one loop; SIGTERM.

DESIGN §7. The child polls a feed, its rule makes and schedules a campaign, the
dispatcher posts it to the Bot API emulator in this process, the tracker answers
on its port; staff work from the CLI meanwhile; SIGTERM stops it with every send
either recorded or still pending (nothing `sending`, nothing posted twice).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner, Result

from cli import main
from outreach.models import DeliveryStatus
from tests.conftest import ROOT, free_port, rss, rss_item
from tests.test_dispatch_hard import (
    child_env,
    codes_posted,
    config_file,
    deliveries,
    emulated,
    queue,
)

WAIT = 30.0  # seconds the child may take to do what a step waits for


def start_run(config: Path, url: str, port: int) -> subprocess.Popen[str]:
    """`outreach run` as a child process (the repository's cli.py, this interpreter), with the bot's token."""
    command = [sys.executable, "-c", "import cli; cli.main()", "--config", str(config), "--db", url]
    return subprocess.Popen(
        [*command, "run", "--port", str(port)],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def until(check: Callable[[], bool], child: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert child.poll() is None, f"`outreach run` ended before {what}"
        assert time.monotonic() < deadline, f"`outreach run` did not {what} within {WAIT} s"
        time.sleep(0.05)


def cli(config: Path, url: str, *args: str, expect: int = 0) -> Result:
    result = CliRunner().invoke(main, ["--config", str(config), "--db", url, *args], env={"COLUMNS": "200"})
    assert result.exit_code == expect, result.output
    return result


def stop(child: subprocess.Popen[str]) -> tuple[str, str]:
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=WAIT)
    assert child.returncode == 0, err
    return out, err


def test_run_polls_applies_rules_sends_tracks_and_stops_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    published = format_datetime(datetime.now(UTC) - timedelta(hours=1))
    feed = tmp_path / "portal.rss"
    feed.write_bytes(rss(rss_item("qt-1", "Hướng dẫn quyết toán thuế năm 2026", "Tờ khai thuế.", date=published)))
    with emulated() as emulator:
        config = config_file(tmp_path, emulator.url, {"per_second": 30, "burst": 30})
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["sources"] = [{"name": "portal", "url": feed.as_uri(), "language": "vi", "poll_minutes": 5}]
        data["rules"] = [{"name": "tax-news", "topics": ["tax"], "approved": True}]
        data["digests"] = [{"name": "evening", "at": "17:30", "days": "mon-sun"}]
        config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        cli(config, url, "init")
        port = free_port()
        child = start_run(config, url, port)
        try:
            until(lambda: len(emulator.messages) == 1, child, "post the rule's campaign")
            assert "quyết toán thuế" in (emulator.messages[0].text or "")
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert health.status_code == 200  # the tracker, served by the same process

            status = cli(config, url, "status").output
            assert "poll portal: next " in status
            assert "digest evening: next " in status
            assert "housekeeping: next " in status
            assert "dispatch: ok (as of " in status

            # Staff work while it runs: a message campaign, approved, goes out without another command.
            message = tmp_path / "msg.txt"
            message.write_text("Hội nghị đối thoại doanh nghiệp sáng thứ Sáu.", encoding="utf-8")
            cli(
                config,
                url,
                "campaign",
                "create",
                "--message-file",
                str(message),
                "--url",
                "https://quangngai.gov.vn/hn",
            )
            cli(config, url, "--as", "Lan", "campaign", "approve", "2")
            until(lambda: len(emulator.messages) == 2, child, "post the staff campaign")
        finally:
            if child.poll() is None:
                _out, err = stop(child)
            else:
                _out, err = child.communicate()
    assert err.rstrip().endswith("run: stopped")
    assert f"run: tracker on 127.0.0.1:{port}" in err
    assert "campaign 1 · item · done" in cli(config, url, "campaign", "show", "1").output
    assert "poll portal: stopped " in cli(config, url, "status").output


def test_sigterm_mid_broadcast_leaves_each_delivery_sent_or_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    queue(url, 60)
    with emulated() as emulator:
        rate = {"per_second": 10, "burst": 10, "per_target_per_second": 10, "per_target_burst": 10, "concurrency": 3}
        config = config_file(tmp_path, emulator.url, rate)
        child = start_run(config, url, free_port())
        try:
            until(lambda: len(emulator.messages) >= 15, child, "start the broadcast")
        finally:
            stop(child)
        time.sleep(0.2)
        posted = codes_posted(emulator)

    left = deliveries(url)
    states = Counter(d.status for d in left)
    assert set(states) == {DeliveryStatus.sent, DeliveryStatus.pending}  # nothing left `sending` or `unknown`
    assert 15 <= states[DeliveryStatus.sent] < 60
    assert max(posted.values()) == 1
    assert {d.link_code for d in left if d.status is DeliveryStatus.sent} == set(posted)


def test_sigterm_while_a_target_waits_for_its_window_exits_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    queue(url, 25)
    with emulated() as emulator:
        config = config_file(tmp_path, emulator.url, {"per_second": 30, "burst": 30})  # 20 a minute into the channel
        child = start_run(config, url, free_port())
        try:
            until(lambda: len(emulator.messages) == 20, child, "fill the channel's minute")
            time.sleep(0.5)  # the worker now waits for the window, nearly a minute
        finally:
            asked = time.monotonic()
            stop(child)
        assert time.monotonic() - asked < 5
    assert Counter(d.status for d in deliveries(url)) == {DeliveryStatus.sent: 20, DeliveryStatus.pending: 5}
