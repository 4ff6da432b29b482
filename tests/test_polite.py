"""Article pages fetched politely, against a real loopback server that records every request.

The server notes when each request arrived and how many were in flight per
Host header, so the limits are measured where a portal would feel them.
127.0.0.1 and localhost reach the same server as two hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise

import pytest

from outreach import polite
from outreach.config import Fetch
from outreach.fetch import Fetcher
from outreach.polite import PageOutcome, PageRequest, PoliteFetcher
from tests.conftest import Route, free_port

HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
SLACK = 0.03  # a request's trip through the loopback and the server's threads


@dataclass(frozen=True)
class Seen:
    path: str
    host: str
    headers: dict[str, str]
    at: float  # monotonic, when the server read the request


@dataclass
class Site:
    """A threaded HTTP server: routes by path (404 elsewhere), every request seen, peak in flight per host."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def page(
        self, path: str, text: str, delay: float = 0.0, etag: str | None = None, headers: dict[str, str] | None = None
    ) -> str:
        self.routes[path] = Route(body=text.encode(), headers={**HTML, **(headers or {})}, delay=delay, etag=etag)
        return self.url(path)

    def paths(self, host: str = "127.0.0.1") -> list[str]:
        return [s.path for s in self.seen if s.host == host]

    def starts(self, host: str = "127.0.0.1") -> list[float]:
        return [s.at for s in self.seen if s.host == host]


@pytest.fixture
def site() -> Iterator[Site]:
    state = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            host = self.headers.get("Host", "").rsplit(":", 1)[0]
            with state.lock:
                state.seen.append(
                    Seen(self.path, host, {k.lower(): v for k, v in self.headers.items()}, time.monotonic())
                )
                state.active[host] += 1
                state.peak[host] = max(state.peak[host], state.active[host])
            try:
                self.answer(state.routes.get(self.path))
            finally:
                with state.lock:
                    state.active[host] -= 1

        def answer(self, route: Route | None) -> None:
            if route is None:
                self.send_error(404)
                return
            time.sleep(route.delay)
            validators = {"If-None-Match": route.etag, "If-Modified-Since": route.headers.get("Last-Modified")}
            if any(value and self.headers.get(name) == value for name, value in validators.items()):
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            for name, value in {**route.headers, **({"ETag": route.etag} if route.etag else {})}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def settings(**fetch: object) -> Fetch:
    return Fetch.model_validate({"timeout_seconds": 2, "article_delay_seconds": 0, **fetch})


def fetch_all(settings: Fetch, *urls: str) -> list[PageOutcome]:
    polite_fetcher = PoliteFetcher(Fetcher(settings), settings)
    return asyncio.run(polite_fetcher.fetch_pages([PageRequest(url) for url in urls]))


def robots(site: Site, text: str, status: int = 200) -> str:
    site.routes["/robots.txt"] = Route(body=text.encode(), status=status, headers=dict(TEXT))
    return site.url("/robots.txt")


# --- robots.txt -----------------------------------------------------------------

OUR_GROUP = "User-agent: *\nDisallow: /\n\nUser-agent: outreach\nDisallow: /noi-bo/\n"
STAR_GROUP = "User-agent: Googlebot\nDisallow:\n\nUser-agent: *\nDisallow: /noi-bo/\n"


@pytest.mark.parametrize("rules", [OUR_GROUP, STAR_GROUP], ids=["our group", "star group"])
def test_a_disallowed_page_is_never_requested_an_allowed_one_is_fetched(site: Site, rules: str) -> None:
    robots_url = robots(site, rules)
    blocked = site.page("/noi-bo/van-ban-mat", "<p>Mật</p>")
    allowed = site.page("/tin-tuc/hoi-nghi", "<p>Hội nghị</p>")
    refused, fetched = fetch_all(settings(), blocked, allowed)
    assert refused == PageOutcome(blocked, None, f"disallowed by robots.txt ({robots_url})")
    assert fetched.skipped is None
    assert fetched.fetched is not None
    assert fetched.fetched.body.decode() == "<p>Hội nghị</p>"
    assert site.paths() == ["/robots.txt", "/tin-tuc/hoi-nghi"]  # read once, and the blocked page never asked for


LIFERAY_RULES = """# robots.txt của Cổng thông tin điện tử
User-agent: Googlebot
User-agent: *
Disallow: /*?p_p_id=
Disallow: /tin-tuc/
Allow: /tin-tuc/bai-viet/
Disallow: /*.pdf$
Disallow: /tin-tức-nội-bộ/
Crawl-delay: nhanh
"""


def test_wildcards_end_anchors_longest_match_and_vietnamese_paths(site: Site) -> None:
    robots(site, LIFERAY_RULES)
    paths = {
        "/web/guest/trang-chu?p_p_id=101&p_p_lifecycle=0": False,
        "/tin-tuc/noi-bo": False,
        "/tin-tuc/bai-viet/hoi-nghi": True,  # the longer Allow wins
        "/van-ban/quyet-dinh.pdf": False,
        "/van-ban/quyet-dinh.pdf.html": True,  # `$` anchors at the end
        "/tin-t%E1%BB%A9c-n%E1%BB%99i-b%E1%BB%99/1": False,  # percent-encoded as browsers send it
        "/gioi-thieu": True,
    }
    outcomes = fetch_all(settings(), *(site.page(path, "x") for path in paths))
    assert [o.skipped is None for o in outcomes] == list(paths.values())
    assert not any("p_p_id" in s.path or "noi-bo" in s.path or s.path.endswith(".pdf") for s in site.seen)


def test_no_robots_txt_allows_everything(site: Site) -> None:
    pages = [site.page(f"/tin-tuc/{n}", f"bài {n}") for n in range(2)]
    outcomes = fetch_all(settings(), *pages)
    assert [(o.skipped, o.fetched and o.fetched.body.decode()) for o in outcomes] == [(None, "bài 0"), (None, "bài 1")]
    paths = site.paths()
    assert paths[0] == "/robots.txt"  # read first, once
    assert sorted(paths[1:]) == ["/tin-tuc/0", "/tin-tuc/1"]  # two at once: either may arrive first


def test_robots_txt_503_skips_the_host_this_run_and_says_why(site: Site) -> None:
    robots_url = robots(site, "bảo trì", status=503)
    pages = [site.page(f"/tin-tuc/{n}", "x") for n in range(2)]
    outcomes = fetch_all(settings(), *pages)
    reason = f"cannot read robots.txt ({robots_url}: HTTP 503 Service Unavailable): host skipped this run"
    assert outcomes == [PageOutcome(page, None, reason, retry=True) for page in pages]  # the pages wait
    assert site.paths() == ["/robots.txt"]


def test_robots_txt_403_disallows_everything(site: Site) -> None:
    robots_url = robots(site, "Forbidden", status=403)
    page = site.page("/tin-tuc/0", "x")
    [outcome] = fetch_all(settings(), page)
    assert outcome.skipped == f"disallowed by robots.txt ({robots_url} answers HTTP 403: nothing may be fetched)"
    assert not outcome.retry  # the site's wish: not a passing failure
    assert site.paths() == ["/robots.txt"]


def test_an_unreachable_host_is_skipped() -> None:
    origin = f"http://127.0.0.1:{free_port()}"
    [outcome] = fetch_all(settings(), f"{origin}/tin-tuc/0")
    assert outcome.fetched is None
    assert outcome.skipped is not None
    assert outcome.skipped.startswith(f"cannot read robots.txt ({origin}/robots.txt: ConnectError: ")
    assert outcome.skipped.endswith("): host skipped this run")
    assert outcome.retry


def test_a_compressed_robots_txt_asked_for_plain_is_not_trusted(site: Site) -> None:
    site.routes["/robots.txt"] = Route(
        body=gzip.compress(b"User-agent: *\nDisallow:\n"), headers={"Content-Encoding": "gzip"}
    )
    [outcome] = fetch_all(settings(), site.page("/tin-tuc/0", "x"))
    assert outcome.skipped is not None
    assert "Content-Encoding gzip" in outcome.skipped
    assert site.seen[0].headers["accept-encoding"] == "identity"


def test_rules_past_the_size_cap_are_ignored(site: Site) -> None:
    padding = "# " + "x" * 78 + "\n"
    robots(site, "User-agent: *\n" + padding * (polite.ROBOTS_MAX_BYTES // len(padding) + 1) + "Disallow: /\n")
    [outcome] = fetch_all(settings(), site.page("/tin-tuc/0", "x"))
    assert outcome.skipped is None


# --- per-host limits ---------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2])
def test_at_most_the_limit_in_flight_on_one_host_results_in_request_order(site: Site, limit: int) -> None:
    delays = [0.15, 0.02, 0.1, 0.02, 0.08, 0.02]
    pages = [site.page(f"/tin-tuc/{n}", f"bài {n}", delay=delay) for n, delay in enumerate(delays)]
    outcomes = fetch_all(settings(article_concurrency=limit), *pages)
    assert [o.url for o in outcomes] == pages
    assert [o.fetched and o.fetched.body.decode() for o in outcomes] == [f"bài {n}" for n in range(len(delays))]
    assert site.peak["127.0.0.1"] == limit


def test_starts_on_one_host_are_spaced_by_the_delay(site: Site) -> None:
    pages = [site.page(f"/tin-tuc/{n}", "x") for n in range(3)]
    started = time.monotonic()
    fetch_all(settings(article_delay_seconds=0.2, article_concurrency=2), *pages)
    starts = site.starts()
    assert len(starts) == 4  # robots.txt takes its turn too
    assert min(b - a for a, b in pairwise(starts)) >= 0.2 - SLACK
    assert time.monotonic() - started < 0.6 + 0.4


def test_a_long_crawl_delay_is_honoured_up_to_the_cap(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polite, "MAX_CRAWL_DELAY", 0.3)
    robots(site, "User-agent: *\nCrawl-delay: 3600\nDisallow:\n")
    pages = [site.page(f"/tin-tuc/{n}", "x") for n in range(2)]
    outcomes = fetch_all(settings(article_delay_seconds=0.05), *pages)
    assert all(o.fetched for o in outcomes)
    gaps = [b - a for a, b in pairwise(site.starts())]
    assert len(gaps) == 2
    assert all(0.3 - SLACK <= gap < 0.6 for gap in gaps)


def test_two_hosts_do_not_wait_on_each_other(site: Site) -> None:
    site.page("/tin-tuc/0", "x")
    site.page("/tin-tuc/1", "x")
    urls = [site.url(f"/tin-tuc/{n}", host) for host in ("127.0.0.1", "localhost") for n in range(2)]
    started = time.monotonic()
    outcomes = fetch_all(settings(article_delay_seconds=0.3, article_concurrency=1), *urls)
    took = time.monotonic() - started
    assert all(o.fetched for o in outcomes)
    for host in ("127.0.0.1", "localhost"):
        assert site.paths(host) == ["/robots.txt", "/tin-tuc/0", "/tin-tuc/1"]
    assert abs(site.starts("localhost")[0] - site.starts("127.0.0.1")[0]) < 0.15
    assert took < 0.6 + 0.3  # one host after the other would take 1.5 s


# --- what the server sees -------------------------------------------------------------


def test_the_user_agent_names_the_contact_on_every_request(site: Site) -> None:
    robots(site, "User-agent: *\nDisallow:\n")
    fetch_settings = settings(contact="banbientap@quangtri.gov.vn")
    fetch_all(fetch_settings, site.page("/tin-tuc/0", "x"))
    assert [s.headers["user-agent"] for s in site.seen] == [fetch_settings.agent] * 2
    assert "banbientap@quangtri.gov.vn" in fetch_settings.agent


def test_a_conditional_get_comes_back_not_modified(site: Site) -> None:
    stamp = "Thu, 26 Nov 2026 03:14:00 GMT"
    url = site.page("/tin-tuc/0", "<p>Bài</p>", etag='"v1"', headers={"Last-Modified": stamp})
    polite_fetcher = PoliteFetcher(Fetcher(settings()), settings())

    async def twice() -> tuple[PageOutcome, PageOutcome]:
        first = await polite_fetcher.fetch_page(url, None, None)
        assert first.fetched is not None
        return first, await polite_fetcher.fetch_page(url, first.fetched.etag, first.fetched.last_modified)

    first, again = asyncio.run(twice())
    assert first.fetched is not None
    assert (first.fetched.body, first.fetched.etag, first.fetched.last_modified) == (
        b"<p>B\xc3\xa0i</p>",
        '"v1"',
        stamp,
    )
    assert again.fetched is not None
    assert again.fetched.not_modified
    assert again.fetched.body == b""
    conditional = site.seen[-1].headers
    assert (conditional["if-none-match"], conditional["if-modified-since"]) == ('"v1"', stamp)
    assert site.paths() == ["/robots.txt", "/tin-tuc/0", "/tin-tuc/0"]


def test_a_missing_page_and_a_non_http_url_are_skipped_with_the_reason(site: Site) -> None:
    missing = site.url("/tin-tuc/da-xoa")
    outcomes = fetch_all(settings(), missing, "file:///etc/passwd")
    assert outcomes == [
        PageOutcome(missing, None, f"HTTP 404 Not Found from {missing}"),
        PageOutcome("file:///etc/passwd", None, "not an http(s) URL: file:///etc/passwd"),
    ]
