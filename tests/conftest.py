"""Shared fixtures: real SQLite files, PostgreSQL schemas, loopback HTTP servers.

No test reaches the internet: connections to anything but loopback fail loudly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session

from channels import SETTINGS_MODELS
from outreach.config import Settings, load_settings
from outreach.db import Access, Store
from outreach.models import Delivery
from outreach.sandbox import TelegramEmulator

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("OUTREACH_TEST_PG_URL")


# --- no network but loopback -------------------------------------------------

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else None
    if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
        raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


def free_port() -> int:
    """A loopback port nobody listens on now (bound, then closed): for a server to take, or to be refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(autouse=True)
def _no_outreach_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own OUTREACH_* settings never leak into a test."""
    for name in [n for n in os.environ if n.startswith("OUTREACH_") and n != "OUTREACH_TEST_PG_URL"]:
        monkeypatch.delenv(name)


# --- databases ---------------------------------------------------------------


def _pg_schema_url(base: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


PG_SKIP = "PostgreSQL tests need OUTREACH_TEST_PG_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)"


def pg_url() -> str:
    """The test PostgreSQL server's URL; skips the test without one (fails it under CI)."""
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but OUTREACH_TEST_PG_URL is not set: the store tests must run on PostgreSQL")
        pytest.skip(PG_SKIP)
    return PG_URL


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on each supported database: a SQLite path not yet created,
    or a PostgreSQL schema of its own (OUTREACH_TEST_PG_URL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outreach.db'}"
        return
    yield from _pg_schema_url(pg_url())


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on SQLite and on PostgreSQL."""
    opened = Store.open(db_url, Access.create)
    yield opened
    opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated store in a SQLite file, for tests that are not about the database."""
    opened = Store.open(f"sqlite:///{tmp_path / 'outreach.db'}", Access.create)
    yield opened
    opened.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per skip reason, not one per test (fifty PostgreSQL skips say one thing)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    for reason, count in reasons.items():
        terminalreporter.write_line(f"skipped {count}: {reason}", yellow=True)


def read_only(path: Path) -> list[str]:
    """The argv prefix that runs a child process with `path` (file or folder) mounted read-only.

    A read-only bind mount in the child's own mount namespace (`unshare`) binds
    root too, which permission bits do not, and is what a read-only backup or
    volume really is; nothing outside the child sees it.
    """
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a path read-only for a child process")
    namespaces = ["--mount"] if os.geteuid() == 0 else ["--user", "--map-root-user", "--mount"]
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    prefix = ["unshare", *namespaces, "sh", "-c", script, str(path)]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:  # e.g. user namespaces switched off for non-root users
        pytest.skip(f"cannot mount {path} read-only for a child process: {probe.stderr.strip()}")
    return prefix


# --- configuration -----------------------------------------------------------


def base_config() -> dict:
    """The repository's schedules.yaml as data, for tests to adjust."""
    return yaml.safe_load((ROOT / "schedules.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Write a config (the repo's, with changes) to a file and load it."""

    def build(
        db_url: str | None = None,
        env: dict[str, str] | None = None,
        templates_dir: Path | None = None,
        **changes: object,
    ) -> Settings:
        data = base_config()
        data["channels"]["outbox"] = {"dir": str(tmp_path / "outbox")}
        data.update(changes)
        path = tmp_path / "schedules.yaml"
        path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
        url = db_url or f"sqlite:///{tmp_path / 'outreach.db'}"
        return load_settings(path, url, templates_dir, env=env or {}, channel_models=SETTINGS_MODELS)

    return build


def announce(session: Session, settings: Settings, item_id: int, channels: tuple[str, ...] = ()) -> list[Delivery]:
    """Create a campaign for an item (as "tester") and approve it (as someone else): its deliveries."""
    from channels import LIMITS
    from outreach.campaigns import CampaignRequest, approve_campaign, create_campaign
    from outreach.lifecycle import Actor
    from outreach.render import Renderer

    renderer = Renderer(settings.schedule, LIMITS)
    request = CampaignRequest(item_ids=(item_id,), channels=channels)
    campaign = create_campaign(session, settings, renderer, request, Actor("tester"))
    return approve_campaign(session, settings, renderer, campaign.id, Actor("tester", "Approver"))


# --- a real HTTP server for feeds --------------------------------------------


@dataclass
class Route:
    """What the feed server answers on one path."""

    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/rss+xml; charset=utf-8"})
    delay: float = 0.0
    etag: str | None = None  # when set, a matching If-None-Match gets 304
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes


@dataclass
class FeedServer:
    """A threaded HTTP server on 127.0.0.1 with routes tests set, and a request log."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def serve(self, path: str, **route: object) -> str:
        """Answer `path` as described; return its full URL."""
        self.routes[path] = Route(**route)  # type: ignore[arg-type]
        return self.url + path


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A real HTTP server on a random loopback port."""
    state = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.delay:
                time.sleep(route.delay)
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for name, value in route.headers.items():
                self.send_header(name, value)
            if route.etag:
                self.send_header("ETag", route.etag)
            if route.declare_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


# --- sample feeds ------------------------------------------------------------


def rss(*items: str, channel_extra: str = "") -> bytes:
    """A small RSS 2.0 document around the given <item> fragments."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Cổng thông tin</title><link>https://quangngai.gov.vn/</link>{channel_extra}"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def rss_item(
    guid: str,
    title: str,
    description: str = "",
    link: str | None = None,
    date: str = "Fri, 27 Nov 2026 08:30:00 +0700",
    category: str = "",
) -> str:
    """One RSS <item>; the description is escaped HTML as portals send it."""
    from xml.sax.saxutils import escape

    link = link or f"https://quangngai.gov.vn/tin-tuc/{guid}.html"
    cat = f"<category>{escape(category)}</category>" if category else ""
    return (
        f"<item><title>{escape(title)}</title><link>{escape(link)}</link>"
        f'<guid isPermaLink="false">{escape(guid)}</guid><pubDate>{date}</pubDate>'
        f"<description>{escape(description)}</description>{cat}</item>"
    )


# --- the Bot API emulator, for the bot's tests ----------------------------------

BOT_TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw_"


@pytest.fixture(scope="module")
def server() -> Iterator[TelegramEmulator]:
    """One Bot API emulator per test module (a module may define its own `server`)."""
    with TelegramEmulator() as emulator:
        yield emulator


@pytest.fixture
def emulator(server: TelegramEmulator) -> TelegramEmulator:
    """The emulator, emptied, with the tests' bot registered."""
    server.reset()
    server.add_bot(BOT_TOKEN)
    return server
