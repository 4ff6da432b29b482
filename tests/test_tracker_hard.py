"""The tracker under load and under failure: every redirect's click is in the database in the end.

Real uvicorn servers on loopback (in this process, or `outreach tracker` as a
child for SIGTERM), real SQLite files and PostgreSQL; the database is taken away
by holding SQLite's write lock past the deadline, by moving the file away, and by
cutting a TCP relay between the tracker and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, inspect, select, text

from outreach.click_spool import ClickRow, Spool
from outreach.config import Settings
from outreach.db import Access, Store
from outreach.models import Click, ClickKind, Link
from outreach.serve import BackgroundServer
from outreach.web import create_app
from tests.conftest import ROOT, base_config, free_port
from tests.test_tracker import BROWSER, SALT, make_campaign

TOTAL = 2_000


def clicks_in(store: Store) -> int:
    with store.sessions() as session:
        return session.scalar(select(func.count()).select_from(Click)) or 0


async def hammer(base: str, path: str, total: int, connections: int = 200, agent: str = BROWSER) -> list[int]:
    """`total` GETs, up to `connections` at once, each on its own connection; the status of each.

    Raw asyncio streams rather than httpx: its pool slows down quadratically with
    thousands of queued requests, which would measure the client, not the tracker.
    """
    host, port = base.removeprefix("http://").split(":")
    gate = asyncio.Semaphore(connections)

    async def one(n: int) -> int:
        async with gate:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                request = (
                    f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent} n{n}\r\nConnection: close\r\n\r\n"
                )
                writer.write(request.encode())
                status_line = await asyncio.wait_for(reader.readline(), 30)
                return int(status_line.split()[1])
            finally:
                writer.close()

    return list(await asyncio.gather(*(one(n) for n in range(total))))


def wait_for(condition: Callable[[], bool], seconds: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def tracked(store: Store, make_settings: Callable[..., Settings]) -> tuple[Store, Settings, str]:
    settings = make_settings()
    return store, settings, make_campaign(store, settings)["facebook"]


def serve_tracker(store: Store, settings: Settings, deadline: float = 2.0) -> BackgroundServer:
    app = create_app(store, settings.schedule.tracker, settings.click_spool, salt=SALT, deadline=deadline)
    return BackgroundServer(app)


# --- group commit under load -------------------------------------------------


def test_2000_concurrent_requests_give_exactly_2000_committed_clicks(tracked: tuple[Store, Settings, str]) -> None:
    store, settings, code = tracked
    with serve_tracker(store, settings) as server:
        statuses = asyncio.run(hammer(server.url, f"/r/{code}", TOTAL))
        metrics = httpx.get(f"{server.url}/metrics").text
    assert statuses == [302] * TOTAL
    assert clicks_in(store) == TOTAL  # each 302 went out after its click was committed
    batches = _metric(metrics, "outreach_click_batch_size_count")
    assert batches < TOTAL / 2, f"{batches:g} commits for {TOTAL} clicks: the writer is not grouping them"
    assert _metric(metrics, 'outreach_clicks_total{kind="human"}') == TOTAL


def _metric(page: str, name: str) -> float:
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics:\n{page}")


# --- the database taken away mid-load -----------------------------------------


def test_sqlite_locked_past_the_deadline_spools_then_replays_exactly(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    code = make_campaign(sqlite_store, settings)["facebook"]
    database = Path(sqlite_store.engine.url.database or "")
    with serve_tracker(sqlite_store, settings, deadline=0.3) as server:
        assert asyncio.run(hammer(server.url, f"/r/{code}", 200)) == [302] * 200
        holder = sqlite3.connect(database, timeout=5)
        holder.execute("BEGIN EXCLUSIVE")  # another program holds the write lock
        try:
            statuses = asyncio.run(hammer(server.url, f"/r/{code}", 300))
            assert statuses == [302] * 300  # every visitor redirected
            health = httpx.get(f"{server.url}/healthz")
            assert health.status_code == 503
            assert health.json()["status"] == "spooling"
            assert health.json()["database"] == "unavailable"
            assert health.json()["spooled"] >= 1
            assert list(settings.click_spool.glob("*.clicks.jsonl"))
        finally:
            holder.rollback()
            holder.close()
        wait_for(lambda: httpx.get(f"{server.url}/healthz").status_code == 200, what="the spool to be replayed")
        assert httpx.get(f"{server.url}/healthz").json()["spooled"] == 0
    assert clicks_in(sqlite_store) == 500
    assert not list(settings.click_spool.glob("*.clicks.jsonl"))


def test_sqlite_file_moved_away_while_running_then_back(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    code = make_campaign(sqlite_store, settings)["facebook"]
    database = Path(sqlite_store.engine.url.database or "")
    aside = database.with_name("aside.db")
    with serve_tracker(sqlite_store, settings, deadline=0.3) as server:
        assert asyncio.run(hammer(server.url, f"/r/{code}", 50)) == [302] * 50  # the link is known now
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{database}{suffix}").exists():
                os.rename(f"{database}{suffix}", f"{aside}{suffix}")
        assert asyncio.run(hammer(server.url, f"/r/{code}", 120)) == [302] * 120
        assert httpx.get(f"{server.url}/healthz").status_code == 503
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{aside}{suffix}").exists():
                os.rename(f"{aside}{suffix}", f"{database}{suffix}")
        wait_for(lambda: httpx.get(f"{server.url}/healthz").status_code == 200, what="recovery")
    assert clicks_in(sqlite_store) == 170  # none written into the moved file's inode, none lost


class Relay:
    """A TCP relay to PostgreSQL that a test can cut (the server is then unreachable) and restore."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        assert self._listener is not None
        # Closed alone, a listener that a thread is blocked accepting on still takes one more
        # connection (the kernel keeps it until accept returns): shut down first, it refuses at once.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()


def test_postgresql_unreachable_mid_load_spools_then_replays_exactly(
    pg_url: str, make_settings: Callable[..., Settings]
) -> None:
    relay_url, relay = _relayed(pg_url)
    relay.start()
    with Store.open(pg_url, Access.create) as direct, Store.open(relay_url, Access.write) as store:
        settings = make_settings(db_url=relay_url)
        code = make_campaign(direct, settings)["facebook"]
        before = clicks_in(direct)
        with serve_tracker(store, settings, deadline=1.0) as server:
            assert asyncio.run(hammer(server.url, f"/r/{code}", 100)) == [302] * 100
            relay.cut()  # the server is gone, as far as the tracker can tell
            assert asyncio.run(hammer(server.url, f"/r/{code}", 300)) == [302] * 300
            assert httpx.get(f"{server.url}/healthz").status_code == 503
            relay.start()
            wait_for(lambda: httpx.get(f"{server.url}/healthz").status_code == 200, what="recovery")
            assert asyncio.run(hammer(server.url, f"/r/{code}", 100)) == [302] * 100
        relay.cut()
        assert clicks_in(direct) - before == 500


def _relayed(pg_url: str) -> tuple[str, Relay]:
    from sqlalchemy.engine import make_url

    url = make_url(pg_url)
    relay = Relay(url.port or 5432)
    return url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay


@pytest.fixture
def pg_url(db_url: str) -> str:
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL test")
    return db_url


def test_a_spool_segment_replayed_twice_adds_nothing(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    code = make_campaign(sqlite_store, settings)["facebook"]
    spool = Spool(settings.click_spool)
    from outreach.models import utcnow

    spool.append([ClickRow(code, utcnow(), ClickKind.human, None, "x", None, False, f"uid{n}") for n in range(3)])
    (segment_path,) = settings.click_spool.glob("*.clicks.jsonl")
    spool.close_segment()
    copy = segment_path.read_bytes()
    with serve_tracker(sqlite_store, settings) as server:  # replays at start
        assert httpx.get(f"{server.url}/healthz").json()["spooled"] == 0
    assert clicks_in(sqlite_store) == 3
    segment_path.write_bytes(copy + b'{"torn line')  # as if the crash came before the file was removed
    with serve_tracker(sqlite_store, settings) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert clicks_in(sqlite_store) == 3
    assert not segment_path.exists()


# --- SIGTERM under load --------------------------------------------------------


def test_a_segment_a_crash_left_empty_or_torn_is_removed(
    sqlite_store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    settings.click_spool.mkdir()
    (settings.click_spool / "20261128T000000-1-aaaaaaaa.clicks.jsonl").write_bytes(b"")
    (settings.click_spool / "20261128T000000-1-bbbbbbbb.clicks.jsonl").write_bytes(b'{"code": "Ab')
    with serve_tracker(sqlite_store, settings) as server:
        health = httpx.get(f"{server.url}/healthz")
    assert (health.status_code, health.json()["spooled"]) == (200, 0)
    assert not list(settings.click_spool.iterdir())


def test_a_segment_the_database_refuses_is_set_aside_not_retried_forever(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    code = make_campaign(store, settings)["facebook"]
    spool = Spool(settings.click_spool)
    from outreach.models import utcnow

    # A link missing from the database (a restored older backup): the replay checks codes and refuses them.
    spool.append([ClickRow("GoneGone01", utcnow(), ClickKind.human, None, "x", None, False, "gone")])
    spool.close_segment()
    spool.append([ClickRow(code, utcnow(), ClickKind.human, None, "x", None, False, "kept")])
    spool.close_segment()
    with serve_tracker(store, settings) as server:
        health = httpx.get(f"{server.url}/healthz")
        assert asyncio.run(hammer(server.url, f"/r/{code}", 5)) == [302] * 5
    assert health.status_code == 200
    assert clicks_in(store) == 6  # the good segment replayed, then five live clicks
    (refused,) = settings.click_spool.iterdir()
    assert refused.name.endswith(".clicks.jsonl.refused")


def test_sigterm_under_load_loses_no_click(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    with Store.open(settings.database_url, Access.create) as store:
        code = make_campaign(store, settings)["facebook"]
    port = free_port()
    argv = [sys.executable, "-c", "import cli; cli.main()", "--config", str(settings.config_path)]
    child = subprocess.Popen(
        [*argv, "--db", settings.database_url, "tracker", "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OUTREACH_CLICK_SALT": "s" * 32},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base), 20, "the tracker to start")
        redirected = asyncio.run(_load_then_terminate(base, f"/r/{code}", child))
    finally:
        if child.poll() is None:
            child.kill()
        _, err = child.communicate(timeout=20)
    # uvicorn drains, runs the app's shutdown (the writer commits), then exits by the signal it got.
    assert child.returncode in (0, -signal.SIGTERM), err
    assert "Application shutdown complete" in err
    with Store.open(settings.database_url, Access.read) as store:
        committed = clicks_in(store)
    assert redirected >= 200  # the signal came under load
    assert committed >= redirected, f"{redirected} redirects answered but only {committed} clicks committed"
    assert committed <= redirected + 50  # at most the requests in flight when it stopped


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


async def _load_then_terminate(base: str, path: str, child: subprocess.Popen[str]) -> int:
    redirected = 0
    stop = asyncio.Event()

    async def visitor(http: httpx.AsyncClient) -> None:
        nonlocal redirected
        while not stop.is_set():
            try:
                response = await http.get(path, headers={"User-Agent": BROWSER})
            except httpx.TransportError:
                await asyncio.sleep(0.01)
                continue
            if response.status_code == 302:
                redirected += 1

    async with httpx.AsyncClient(base_url=base, timeout=10, limits=httpx.Limits(max_connections=50)) as http:
        tasks = [asyncio.create_task(visitor(http)) for _ in range(50)]
        deadline = time.monotonic() + 20
        while redirected < 200 and time.monotonic() < deadline:  # under load, whatever the machine's speed
            await asyncio.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        while child.poll() is None:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*tasks)
    return redirected


# --- what a visitor can send -------------------------------------------------


def raw_request(url: str, request: bytes) -> bytes:
    """Send bytes as they are (no client library tidying the path or headers); the raw answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        with contextlib.suppress(TimeoutError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and (b"content-length: 0" in answer.lower() or answer.endswith(b"</html>")):
                    break
    return answer


def headers_of(answer: bytes) -> dict[str, str]:
    """The response's headers, names lower-cased."""
    lines = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


def test_agent_is_stored_as_utf8_without_control_characters(tracked: tuple[Store, Settings, str]) -> None:
    store, settings, code = tracked
    agent = "Mozilla/5.0 (Linux; Android 14; Trình duyệt Cốc Cốc)\t\x85\x9bZalo/24.1"  # tab, NEL, CSI
    with serve_tracker(store, settings) as server:
        request = f"GET /r/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: ".encode()
        answer = raw_request(server.url, request + agent.encode("utf-8") + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 302")
    with store.sessions() as session:
        stored = session.scalars(select(Click.user_agent)).one()
    assert stored == "Mozilla/5.0 (Linux; Android 14; Trình duyệt Cốc Cốc) Zalo/24.1"


@pytest.mark.parametrize(
    "path",
    [
        "/r/CODE?url=https://evil.example/",
        "/r/CODE/",
        "/r/CODE?next=//evil.example",
    ],
)
def test_a_known_code_leads_only_to_its_own_destination(tracked: tuple[Store, Settings, str], path: str) -> None:
    store, settings, code = tracked
    with store.sessions() as session:
        destination = session.get_one(Link, code).destination
    with serve_tracker(store, settings) as server:
        request = f"GET {path.replace('CODE', code)} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        answer = raw_request(server.url, request.encode())
    assert answer.startswith(b"HTTP/1.1 302")
    assert headers_of(answer)["location"] == destination


@pytest.mark.parametrize(
    "request_line",
    [
        b"GET /r/CODE/../../x HTTP/1.1",
        b"GET /r/../healthz/../r/CODE HTTP/1.1",
        b"GET /r/CODE%0d%0aSet-Cookie:%20a=b HTTP/1.1",
        b"GET /r/CODE%0aLocation:%20https://evil.example HTTP/1.1",
        b"GET //evil.example/r/CODE HTTP/1.1",
    ],
)
def test_traversal_and_crlf_never_redirect_off_domain(
    tracked: tuple[Store, Settings, str], request_line: bytes
) -> None:
    store, settings, code = tracked
    with serve_tracker(store, settings) as server:
        request = request_line.replace(b"CODE", code.encode()) + b"\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        answer = raw_request(server.url, request)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.split(b" ", 2)[1] in (b"400", b"404"), head
    assert b"location:" not in head
    assert b"set-cookie" not in head
    assert b"evil.example" not in head


def test_a_link_to_a_domain_no_longer_allowed_is_not_followed(tracked: tuple[Store, Settings, str]) -> None:
    store, settings, _ = tracked
    with store.sessions.begin() as session:  # written straight into the database, past every check
        for code, destination in [
            ("EvilEvil01", "https://evil.example/"),
            ("EvilEvil02", "javascript:alert(1)"),
            ("EvilEvil03", "data:text/html,hi"),
            ("EvilEvil04", "https://quangngai.gov.vn.evil.example/"),
        ]:
            session.add(Link(code=code, destination=destination))
    with serve_tracker(store, settings) as server, httpx.Client(base_url=server.url) as http:
        for n in range(1, 5):
            answer = http.get(f"/r/EvilEvil0{n}")
            assert answer.status_code == 404
            assert "location" not in answer.headers
            assert f'href="{settings.schedule.tracker.home}"' in answer.text  # the way back to the portal
    assert clicks_in(store) == 0


def test_a_burst_from_one_visitor_is_flagged_as_repeats(tracked: tuple[Store, Settings, str]) -> None:
    store, settings, code = tracked
    with serve_tracker(store, settings) as server, httpx.Client(base_url=server.url) as http:
        for _ in range(13):
            assert http.get(f"/r/{code}", headers={"User-Agent": BROWSER}).status_code == 302
        assert http.get(f"/r/{code}", headers={"User-Agent": BROWSER + " other"}).status_code == 302
    with store.sessions() as session:
        repeats = list(session.scalars(select(Click.repeat).order_by(Click.id)))
    assert repeats == [False] * 10 + [True] * 3 + [False]  # more than 10 in 10 s; another agent is another visitor
    from outreach.reports import build_report

    with store.sessions() as session:
        facebook = build_report(session).channels["facebook"]
    assert (facebook.visits, facebook.repeats, facebook.visitors) == (11, 3, 2)


def test_no_column_holds_a_raw_address(store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(tracker=base_config()["tracker"] | {"trusted_proxies": ["127.0.0.1"]})
    code = make_campaign(store, settings)["facebook"]
    addresses = ["113.161.72.14", "2001:ee0:4f1a:1::1", "14.160.32.7"]
    with serve_tracker(store, settings) as server, httpx.Client(base_url=server.url) as http:
        for address in addresses:
            headers = {"User-Agent": BROWSER, "X-Forwarded-For": address, "Referer": f"http://{addresses[2]}/x"}
            assert http.get(f"/r/{code}", headers=headers).status_code == 302
    assert clicks_in(store) == 3
    needles = [*addresses, "127.0.0.1", "113.161.72", "2001:ee0"]
    found = []
    with store.engine.connect() as connection:
        for table in inspect(connection).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                found += [(table, value) for value in row if any(n in str(value) for n in needles)]
    # A referrer given as an address is a host like any other: it is the page's, not the visitor's.
    assert [value for table, value in found if table == "clicks"] == ["14.160.32.7"] * 3
    assert [(table, value) for table, value in found if table != "clicks"] == []


def test_metrics_speak_prometheus(tracked: tuple[Store, Settings, str]) -> None:
    store, settings, code = tracked
    with serve_tracker(store, settings) as server, httpx.Client(base_url=server.url) as http:
        http.get(f"/r/{code}", headers={"User-Agent": BROWSER})
        http.get(f"/r/{code}", headers={"User-Agent": "TelegramBot (like TwitterBot)"})
        http.head(f"/r/{code}")
        http.get("/r/Unknown1234")
        page = http.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert _metric(page.text, 'outreach_redirects_total{outcome="redirected"}') == 2
    assert _metric(page.text, 'outreach_redirects_total{outcome="head"}') == 1
    assert _metric(page.text, 'outreach_redirects_total{outcome="not_found"}') == 1
    assert _metric(page.text, 'outreach_clicks_total{kind="preview"}') == 1
    assert _metric(page.text, "outreach_click_spool") == 0
    assert "outreach_click_commit_seconds_bucket" in page.text


def test_a_visitor_is_counted_once_per_local_day(store: Store, make_settings: Callable[..., Settings]) -> None:
    from datetime import UTC, datetime

    from outreach.reports import build_report

    settings = make_settings()
    code = make_campaign(store, settings)["facebook"]
    taps = [datetime(2026, 11, 27, 23, 30, tzinfo=UTC), datetime(2026, 11, 28, 0, 30, tzinfo=UTC)]  # 06:30, 07:30 ICT
    with store.sessions.begin() as session:
        for n, at in enumerate(taps):
            session.add(Click(code=code, at=at, kind=ClickKind.human, ip_hash="v", user_agent=BROWSER, uid=f"d{n}"))
    with store.sessions() as session:
        assert build_report(session, settings.zone).channels["facebook"].visitors == 1  # one morning in Quảng Ngãi
        assert build_report(session).channels["facebook"].visitors == 2  # two days in UTC


def test_the_writer_overlaps_commits_with_answers_on_postgresql_and_commits_whole_on_sqlite(
    store: Store, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """40 clicks waiting at once: PostgreSQL gets two halves, the second sent before the first's requests
    are answered (its commit overlaps their answers); SQLite, which commits on the loop, gets one batch."""
    from outreach.click_writer import ClickWriter, short_wait_engine
    from outreach.models import utcnow

    code = make_campaign(store, make_settings())["facebook"]
    writer = ClickWriter(store.url, short_wait_engine(store.url, 2.0), Spool(tmp_path / "spool"))
    events: list[tuple[str, int]] = []
    writer.observe = lambda size, _seconds, where: events.append((where, size))
    insert = writer.sink.insert

    async def sending(rows: list[ClickRow], replay: object = None) -> None:
        events.append(("sent", len(rows)))
        await insert(rows)

    writer.sink.insert = sending  # type: ignore[method-assign]

    async def click(n: int) -> None:
        await writer.record(ClickRow(code, utcnow(), ClickKind.human, None, "x", None, False, f"overlap-{n}"))
        events.append(("answered", 1))

    async def main() -> None:
        await writer.start()
        await asyncio.gather(*(click(n) for n in range(40)))
        await writer.close()

    asyncio.run(main())
    if store.url.startswith("postgresql"):
        assert events[:4] == [("sent", 20), ("database", 20), ("sent", 20), ("answered", 1)]
    else:
        assert events[:3] == [("sent", 40), ("database", 40), ("answered", 1)]
    assert events.count(("answered", 1)) == 40
    assert clicks_in(store) == 40


def test_postgresql_without_asyncpg_stops_the_tracker_with_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from outreach.click_sinks import make_sink
    from outreach.dburl import BadDatabaseUrl

    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if not installed
    with pytest.raises(BadDatabaseUrl, match=r"asyncpg: pip install 'outreach\[postgres\]'"):
        make_sink("postgresql+psycopg://postgres@127.0.0.1/outreach", None, None, 2.0, ThreadPoolExecutor(1))  # type: ignore[arg-type]


def test_postgresql_url_options_only_libpq_knows_do_not_stop_the_clicks(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    """psycopg takes connect_timeout, keepalives, client_encoding...; asyncpg would hand them to the server."""
    if not store.url.startswith("postgresql"):
        pytest.skip("a PostgreSQL test")
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy.engine import make_url

    from outreach.click_sinks import make_sink
    from outreach.models import utcnow

    code = make_campaign(store, make_settings())["facebook"]
    extra = {"connect_timeout": "5", "keepalives": "1", "keepalives_idle": "30", "client_encoding": "utf8"}
    url = make_url(store.url)
    url = url.update_query_dict({**url.query, **extra}).render_as_string(hide_password=False)
    sink = make_sink(url, store.engine, None, 2.0, ThreadPoolExecutor(1))

    async def main() -> None:
        await sink.probe()
        await sink.insert([ClickRow(code, utcnow(), ClickKind.human, None, "x", None, False, "libpq-1")])
        await sink.close()

    before = clicks_in(store)
    asyncio.run(main())
    assert clicks_in(store) == before + 1
