"""Hostile or broken feed servers: trickled headers and bodies, gzip bombs, many sources on one host.

The servers are real sockets on 127.0.0.1, written by hand: an HTTP server
library would not send its headers one byte at a time.
"""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from outreach.config import Fetch, Settings
from outreach.db import Store
from outreach.fetch import Fetcher, FetchError
from outreach.ingest import poll_sources
from outreach.models import Item, Source
from tests.conftest import rss, rss_item

Handler = Callable[[socket.socket, threading.Event], None]
DEADLINE = 1.0
MARGIN = 0.8  # thread start-up, a loaded test machine


@dataclass
class RawServer:
    """Answers each path with a handler that writes to the socket itself; counts connections at once."""

    port: int
    stop: threading.Event
    handlers: dict[str, Handler] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: Counter[str] = field(default_factory=Counter)  # by Host header
    peak: Counter[str] = field(default_factory=Counter)  # by Host header, and "" for all
    arrived: dict[str, float] = field(default_factory=dict)  # path: monotonic time of its request

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def respond(body: bytes, headers: dict[str, str] | None = None, delay: float = 0.0) -> Handler:
    """A plain response, after `delay` seconds."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait(delay)
        lines = {"Content-Type": "application/rss+xml; charset=utf-8", "Content-Length": str(len(body))}
        lines.update(headers or {})
        head = "HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items()) + "\r\n"
        conn.sendall(head.encode() + body)

    return handle


def trickle(start: bytes, drop: bytes, every: float) -> Handler:
    """`start`, then `drop` every so often until the client goes away (or the test ends)."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(start)
        while not stop.wait(every):
            conn.sendall(drop)

    return handle


def _read_head(conn: socket.socket) -> tuple[str, str]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = conn.recv(4096)
        if not more:
            raise ConnectionError("client left")
        data += more
    lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    host = next((line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("host:")), "")
    return lines[0].split()[1], host.split(":")[0]


@pytest.fixture
def raw_server() -> Iterator[RawServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(32)
    listener.settimeout(0.05)
    state = RawServer(port=listener.getsockname()[1], stop=threading.Event())

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            path, host = _read_head(conn)
            with state.lock:
                state.arrived[path] = time.monotonic()
                state.active[host] += 1
                state.active[""] += 1
                for key in (host, ""):
                    state.peak[key] = max(state.peak[key], state.active[key])
            try:
                handler = state.handlers.get(path)
                if handler is None:
                    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                else:
                    handler(conn, state.stop)
            finally:
                with state.lock:
                    state.active[host] -= 1
                    state.active[""] -= 1

    def accept() -> None:
        while not state.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield state
    state.stop.set()
    thread.join(2)
    listener.close()


def settings_for(make_settings: Callable[..., Settings], *urls: str, **fetch: object) -> Settings:
    sources = [{"name": f"s{i}", "url": url} for i, url in enumerate(urls)]
    return make_settings(sources=sources, fetch={"timeout_seconds": DEADLINE, "max_bytes": 200_000, **fetch})


def stored_guids(store: Store, name: str) -> list[str]:
    with store.sessions() as session:
        source = session.scalars(select(Source).where(Source.name == name)).one()
        return list(session.scalars(select(Item.guid).where(Item.source_id == source.id).order_by(Item.guid)))


def feed(*guids: str) -> bytes:
    return rss(*(rss_item(g, f"Thông báo {g}") for g in guids))


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


# --- one deadline, from connect to last byte ------------------------------------


def test_headers_trickled_cost_only_the_deadline_and_the_next_source_is_polled(
    sqlite_store: Store, raw_server: RawServer, make_settings: Callable[..., Settings]
) -> None:
    raw_server.handlers["/slow"] = trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ", b"a", 0.2)  # never ends its headers
    raw_server.handlers["/ok"] = respond(feed("ok-1"))
    slow, ok = raw_server.url("/slow"), raw_server.url("/ok")
    started = time.monotonic()
    results = poll_sources(sqlite_store, settings_for(make_settings, slow, ok).schedule)
    took = time.monotonic() - started
    assert took < DEADLINE + MARGIN
    assert [r.source for r in results] == ["s0", "s1"]
    assert results[0].error == f"timed out after {DEADLINE:g} s fetching {slow}"
    assert (results[1].new, results[1].error) == (1, None)
    assert stored_guids(sqlite_store, "s1") == ["ok-1"]
    assert raw_server.arrived["/ok"] - started < 0.5  # it did not wait for the slow one


def test_body_trickled_forever_is_cut_at_the_deadline(
    sqlite_store: Store, raw_server: RawServer, make_settings: Callable[..., Settings]
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nConnection: close\r\n\r\n"
    raw_server.handlers["/drip"] = trickle(head + feed("d-1")[:80], b" ", 0.05)
    url = raw_server.url("/drip")
    started = time.monotonic()
    [result] = poll_sources(sqlite_store, settings_for(make_settings, url).schedule)
    assert time.monotonic() - started < DEADLINE + MARGIN
    assert result.error == f"timed out after {DEADLINE:g} s fetching {url}"
    with sqlite_store.sessions() as session:
        assert session.scalars(select(Source.last_error)).one() == result.error


def test_headers_line_by_line_count_against_one_deadline(raw_server: RawServer) -> None:
    # Every single read is quick (0.2 s) and the per-operation timeouts never trip: only the overall deadline does.
    raw_server.handlers["/slow"] = trickle(b"HTTP/1.1 200 OK\r\n", b"X: y\r\n", 0.2)
    fetcher = Fetcher(Fetch(timeout_seconds=0.6))
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 0\.6 s fetching http://127\.0\.0\.1"):
        fetcher.fetch(raw_server.url("/slow"))
    assert time.monotonic() - started < 0.6 + MARGIN


# --- the cap counts decoded bytes ------------------------------------------------


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """1 GiB of zeros, gzipped twice: under 2 KB on the wire."""
    inner = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    layer = b"".join([inner.compress(zeros) for _ in range(1024)] + [inner.flush()])
    return gzipped(layer)


def test_double_gzip_bomb_is_refused_with_memory_near_the_cap(raw_server: RawServer, bomb: bytes) -> None:
    assert len(bomb) < 2500
    raw_server.handlers["/bomb"] = respond(bomb, {"Content-Encoding": "gzip, gzip"})
    url = raw_server.url("/bomb")
    cap = 1_000_000
    fetcher = Fetcher(Fetch(timeout_seconds=10, max_bytes=cap))
    tracemalloc.start()
    try:
        started = time.monotonic()
        with pytest.raises(FetchError) as refused:
            fetcher.fetch(url)
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(refused.value) == (
        f"feed at {url} is over the 1,000,000-byte cap once decoded (Content-Encoding: gzip, gzip)"
    )
    assert peak < cap + 1_000_000, f"peak {peak:,} bytes"  # httpx's own decoding: about 1 GiB in one chunk
    assert took < 2


def test_bomb_refusal_is_recorded_on_the_source(
    sqlite_store: Store, raw_server: RawServer, make_settings: Callable[..., Settings], bomb: bytes
) -> None:
    raw_server.handlers["/bomb"] = respond(bomb, {"Content-Encoding": "gzip, gzip"})
    raw_server.handlers["/ok"] = respond(feed("after-bomb"))
    bombed, ok = raw_server.url("/bomb"), raw_server.url("/ok")
    results = poll_sources(sqlite_store, settings_for(make_settings, bombed, ok).schedule)
    assert results[0].error
    assert "200,000-byte cap once decoded" in results[0].error
    assert stored_guids(sqlite_store, "s0") == []
    assert stored_guids(sqlite_store, "s1") == ["after-bomb"]


def deflate_raw(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


ENCODED: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "gzip": ("gzip", gzipped),
    "x-gzip": ("x-gzip", gzipped),
    "gzip twice": ("gzip, gzip", lambda b: gzipped(gzipped(b))),
    "gzip in two members": ("gzip", lambda b: gzipped(b[:100]) + gzipped(b[100:])),
    "deflate (zlib)": ("deflate", zlib.compress),
    "deflate (raw)": ("deflate", deflate_raw),
    "identity": ("identity", lambda b: b),
}


@pytest.mark.parametrize("case", list(ENCODED))
def test_encoded_feeds_still_work(
    sqlite_store: Store, raw_server: RawServer, make_settings: Callable[..., Settings], case: str
) -> None:
    coding, encode = ENCODED[case]
    guids = [f"enc-{i:03}" for i in range(300)]  # about 60 KB: several network chunks and decoded pieces
    raw_server.handlers["/feed"] = respond(encode(feed(*guids)), {"Content-Encoding": coding})
    [result] = poll_sources(sqlite_store, settings_for(make_settings, raw_server.url("/feed")).schedule)
    assert (result.new, result.error) == (300, None)
    assert stored_guids(sqlite_store, "s0") == guids


def test_a_large_gzip_feed_under_the_cap_is_read_whole(raw_server: RawServer) -> None:
    body = feed(*(f"big-{i:05}" for i in range(3000)))  # ~600 KB: many decoded pieces
    raw_server.handlers["/big"] = respond(gzipped(body), {"Content-Encoding": "gzip"})
    fetched = Fetcher(Fetch(timeout_seconds=5, max_bytes=len(body))).fetch(raw_server.url("/big"))
    assert fetched.body == body


def test_unknown_content_encoding_is_refused_by_name(raw_server: RawServer) -> None:
    raw_server.handlers["/br"] = respond(b"\x0b\x02\x80hello\x03", {"Content-Encoding": "br"})
    url = raw_server.url("/br")
    with pytest.raises(FetchError, match=f"cannot decode {url}: Content-Encoding br"):
        Fetcher(Fetch()).fetch(url)


def test_corrupt_gzip_is_a_fetch_error(raw_server: RawServer) -> None:
    raw_server.handlers["/bad"] = respond(b"\x1f\x8b\x08\x00garbage" * 10, {"Content-Encoding": "gzip"})
    with pytest.raises(FetchError, match="DecodingError: bad compressed body"):
        Fetcher(Fetch()).fetch(raw_server.url("/bad"))


# --- at once, but politely -------------------------------------------------------


def test_sources_polled_at_once_at_most_two_per_host_results_in_config_order(
    sqlite_store: Store, raw_server: RawServer, make_settings: Callable[..., Settings]
) -> None:
    delays = [0.5, 0.1, 0.4, 0.1, 0.3, 0.1, 0.2, 0.1]
    urls = []
    for i, delay in enumerate(delays):
        raw_server.handlers[f"/f{i}"] = respond(feed(*(f"f{i}-{n}" for n in range(i + 1))), delay=delay)
        urls.append(raw_server.url(f"/f{i}", "127.0.0.1" if i % 2 else "localhost"))
    started = time.monotonic()
    results = poll_sources(sqlite_store, settings_for(make_settings, *urls).schedule)
    took = time.monotonic() - started
    assert [r.source for r in results] == [f"s{i}" for i in range(len(delays))]
    assert [(r.new, r.error) for r in results] == [(i + 1, None) for i in range(len(delays))]
    assert raw_server.peak["127.0.0.1"] == 2
    assert raw_server.peak["localhost"] == 2
    assert raw_server.peak[""] == 4
    assert took < sum(delays) / 2  # one after the other would take 1.8 s


def test_named_sources_keep_config_order(
    sqlite_store: Store, raw_server: RawServer, make_settings: Callable[..., Settings]
) -> None:
    for i in range(4):
        raw_server.handlers[f"/f{i}"] = respond(feed(f"n{i}"), delay=0.3 - 0.1 * i)
    settings = settings_for(make_settings, *(raw_server.url(f"/f{i}") for i in range(4)))
    results = poll_sources(sqlite_store, settings.schedule, ["s3", "s0", "s2"])
    assert [r.source for r in results] == ["s0", "s2", "s3"]
