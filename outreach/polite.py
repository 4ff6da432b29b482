"""Fetching article pages politely: robots.txt first, few requests at once per host, spaced out.

Feeds are one request per source; article pages (read for a summary or an
image the feed lacks) are one request per item, and a provincial portal's
server is small. So pages go through `PoliteFetcher`: robots.txt is read once
per origin and honoured for our product token and `*`, at most
`article_concurrency` requests run at once on one host, and their starts are
`article_delay_seconds` apart, or the site's Crawl-delay when longer (capped
at `MAX_CRAWL_DELAY`). Pages themselves are fetched by the `Fetcher`: same
deadline, size cap, User-Agent and conditional GET as feeds.

robots.txt is fetched here with httpx directly, because the `Fetcher` turns
every non-2xx answer into a FetchError, and its status decides everything:
404/410 and other 4xx mean no rules (RFC 9309), 401/403 mean every page is
off limits (as Google reads them), and 429, 5xx or no answer at all mean the
site cannot say what it allows, so its pages wait for the next run.

Redirects of a page are followed by the `Fetcher` without reading the
target's robots.txt: portals redirect within their own site (a trailing
slash, http to https), whose rules were read for the first URL.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import httpx

from outreach.config import Fetch
from outreach.fetch import Fetched, Fetcher, FetchError

# A Crawl-delay longer than this is read as this: one site must not hold a poll for minutes per page.
MAX_CRAWL_DELAY = 30.0
# Google reads the first 500 KiB of a robots.txt and ignores the rest; real ones are a few hundred bytes.
ROBOTS_MAX_BYTES = 500 * 1024
_ROBOTS_REDIRECTS = 5  # RFC 9309: follow at least five


@dataclass(frozen=True)
class PageRequest:
    """One article page to fetch, with the validators of the last fetch for a conditional GET."""

    url: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class PageOutcome:
    """What became of one page: `fetched` (a body, or a 304 marker), or why it was `skipped`."""

    url: str
    fetched: Fetched | None = None
    skipped: str | None = None
    retry: bool = False  # skipped for now (robots.txt unreadable, a timeout, a 5xx): a later run may have it


@dataclass(frozen=True)
class _Rule:
    """One Allow or Disallow line: `pattern` may hold `*` (any run) and a final `$` (end of URL)."""

    allow: bool
    pattern: str  # percent-encoding normalised, as the paths it is matched against


@dataclass(frozen=True)
class _Robots:
    """One origin's robots.txt as it applies to us: the rules of our group, or a reason that refuses every page."""

    url: str
    rules: tuple[_Rule, ...] = ()  # none: everything allowed (unless `refusal`)
    crawl_delay: float = 0.0  # seconds, already capped at MAX_CRAWL_DELAY
    refusal: str | None = None
    passing: bool = False  # the refusal is for this run only: the site could not say what it allows

    def refusal_for(self, page_url: str) -> str | None:
        """Why `page_url` may not be fetched, or None when it may.

        RFC 9309: the longest matching pattern decides, Allow on a tie.
        """
        if self.refusal:
            return self.refusal
        parts = urlsplit(page_url)
        target = _normal((parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        matching = [rule for rule in self.rules if _matches(rule.pattern, target)]
        if not matching or max(matching, key=lambda rule: (len(rule.pattern), rule.allow)).allow:
            return None
        return f"disallowed by robots.txt ({self.url})"


def _unreadable(url: str, why: str) -> _Robots:
    """A robots.txt that cannot be read: the site's wishes are unknown, so none of its pages this run."""
    return _Robots(url, refusal=f"cannot read robots.txt ({url}: {why}): host skipped this run", passing=True)


class _Host:
    """Turn-taking on one host: a few requests at once, their starts spaced by `delay` seconds."""

    def __init__(self, concurrency: int, delay: float) -> None:
        self.slots = asyncio.Semaphore(concurrency)
        self.delay = delay  # raised to the site's Crawl-delay once robots.txt is read
        self.last_start: float | None = None

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold a slot, starting no sooner than `delay` after the previous start.

        The start is reserved after the slot is taken: reserved before, two
        waiters released together by the semaphore would start at once.
        """
        async with self.slots:
            clock = asyncio.get_running_loop().time
            start = clock() if self.last_start is None else max(clock(), self.last_start + self.delay)
            self.last_start = start
            await asyncio.sleep(max(0.0, start - clock()))
            yield


def _product_token(agent: str) -> str:
    """`outreach` from `outreach/0.1 (+portal feed reader)`: robots.txt names crawlers by this token."""
    words = agent.partition("/")[0].split()
    return words[0].lower() if words else "*"


class PoliteFetcher:
    """Fetches article pages within robots.txt and per-host limits; lives in ONE asyncio event loop.

    Its semaphores and locks belong to the loop that first uses them; make a
    new PoliteFetcher per poll (robots.txt is then read again, as it should be
    once in a while).
    """

    def __init__(self, fetcher: Fetcher, settings: Fetch) -> None:
        self.fetcher = fetcher
        self.settings = settings
        self.token = _product_token(settings.agent)
        self._hosts: dict[str, _Host] = {}
        self._robots: dict[str, _Robots] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._tls = httpx.create_ssl_context()  # made once: loading CA certificates is the slow part

    async def fetch_pages(self, requests: Sequence[PageRequest]) -> list[PageOutcome]:
        """All `requests` at once within the limits; outcomes in request order."""
        pages = (self.fetch_page(r.url, r.etag, r.last_modified) for r in requests)
        return list(await asyncio.gather(*pages))

    async def fetch_page(self, url: str, etag: str | None, last_modified: str | None) -> PageOutcome:
        """The page at `url` (a 304 marker when the validators still match), or why it was skipped."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return PageOutcome(url, skipped=f"not an http(s) URL: {url}")
        host = self._hosts.setdefault(
            parts.hostname, _Host(self.settings.article_concurrency, self.settings.article_delay_seconds)
        )
        robots = await self._robots_for(f"{parts.scheme}://{parts.netloc.lower()}", host)
        refusal = robots.refusal_for(url)
        if refusal:
            return PageOutcome(url, skipped=refusal, retry=robots.passing)
        async with host.turn():
            try:
                fetched = await self.fetcher.fetch_async(url, etag, last_modified)
            except FetchError as exc:
                return PageOutcome(url, skipped=str(exc), retry=exc.transient)
        return PageOutcome(url, fetched=fetched)

    async def _robots_for(self, origin: str, host: _Host) -> _Robots:
        """The origin's robots.txt, read once however many pages wait for it (the request takes a turn too)."""
        async with self._robots_locks.setdefault(origin, asyncio.Lock()):
            if origin not in self._robots:
                async with host.turn():
                    robots = await self._read_robots(origin)
                host.delay = max(host.delay, robots.crawl_delay)
                self._robots[origin] = robots
        return self._robots[origin]

    async def _read_robots(self, origin: str) -> _Robots:
        """robots.txt under the Fetcher's deadline (connect to last byte) and User-Agent."""
        url = f"{origin}/robots.txt"
        limit = self.settings.timeout_seconds
        # identity: a compressed answer would need the Fetcher's bounded inflating; robots.txt is small
        headers = {"User-Agent": self.settings.agent, "Accept": "text/plain, */*;q=0.5", "Accept-Encoding": "identity"}
        client = httpx.AsyncClient(
            timeout=limit, follow_redirects=True, max_redirects=_ROBOTS_REDIRECTS, headers=headers, verify=self._tls
        )
        try:
            async with asyncio.timeout(limit), client.stream("GET", url) as response:
                return await _robots_from(response, url, self.token)
        except (TimeoutError, httpx.TimeoutException):
            return _unreadable(url, f"timed out after {limit:g} s")
        except httpx.HTTPError as exc:
            return _unreadable(url, f"{type(exc).__name__}: {exc}")
        finally:
            await client.aclose()


async def _robots_from(response: httpx.Response, url: str, token: str) -> _Robots:
    """Rules from an answer to GET /robots.txt, its status read as RFC 9309 and Google do."""
    status = response.status_code
    if status in (401, 403):
        return _Robots(url, refusal=f"disallowed by robots.txt ({url} answers HTTP {status}: nothing may be fetched)")
    if status == 429 or status >= 500:
        return _unreadable(url, f"HTTP {status} {response.reason_phrase}")
    if 400 <= status < 500:
        return _Robots(url)  # no robots.txt: no rules
    if not response.is_success:
        return _unreadable(url, f"HTTP {status} {response.reason_phrase}")
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        return _unreadable(url, f"sent with Content-Encoding {coding} though none was accepted")
    return _parse_robots(url, await _capped_lines(response), token)


async def _capped_lines(response: httpx.Response) -> list[str]:
    """The lines of the first `ROBOTS_MAX_BYTES`; a line cut at the cap is dropped, not misread."""
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > ROBOTS_MAX_BYTES:
            body = body[:ROBOTS_MAX_BYTES].rpartition(b"\n")[0]
            break
    return bytes(body).decode("utf-8-sig", errors="replace").splitlines()


# --- robots.txt rules (RFC 9309) ----------------------------------------------------
# Not urllib.robotparser: it takes `*` and `$` in paths literally (so `Disallow: /*?p_p_id=`
# would never match), lets the first matching line win instead of the longest, and matches
# user agents by substring.

# Left as they are when paths are normalised: the URL's own delimiters and the pattern's wildcards.
_SAFE = "/?=&;:@,+!*$'()~"


@dataclass
class _Group:
    """The lines under one run of User-agent lines."""

    agents: set[str] = field(default_factory=set)
    rules: list[_Rule] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)

    def add(self, key: str, value: str) -> None:
        if key == "crawl-delay":
            try:
                delay = float(value)
            except ValueError:
                return
            if math.isfinite(delay) and delay >= 0:
                self.delays.append(delay)
        elif value:  # an empty Disallow (or Allow) is no rule at all
            self.rules.append(_Rule(key == "allow", _normal(value)))


def _parse_robots(url: str, lines: Iterable[str], token: str) -> _Robots:
    """The rules for `token`: its own groups when it has any, else the `*` groups (merged, as RFC 9309 says)."""
    groups: list[_Group] = []
    naming = False  # the last line was a User-agent: another one joins the same group
    for line in lines:
        key, _, value = line.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if not naming:
                groups.append(_Group())
            naming = True
            groups[-1].agents.add(value.partition("/")[0].strip().lower())
        elif key in ("allow", "disallow", "crawl-delay") and groups:
            naming = False
            groups[-1].add(key, value)
    ours = [g for g in groups if token in g.agents] or [g for g in groups if "*" in g.agents]
    delay = max((d for g in ours for d in g.delays), default=0.0)
    return _Robots(url, rules=tuple(r for g in ours for r in g.rules), crawl_delay=min(delay, MAX_CRAWL_DELAY))


def _normal(path: str) -> str:
    """One spelling for paths and patterns: `/tin-tức` and `/tin-t%E1%BB%A9c` must compare equal."""
    return quote(unquote(path), safe=_SAFE)


def _matches(pattern: str, target: str) -> bool:
    """Whether `pattern` matches the start of `target`; found piece by piece, so no pattern can take long."""
    anchored = pattern.endswith("$")
    first, *pieces = (pattern[:-1] if anchored else pattern).split("*")
    if not target.startswith(first):
        return False
    if not pieces:
        return not anchored or target == first
    at = len(first)
    for piece in pieces[:-1]:
        found = target.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    last = pieces[-1]
    if anchored:
        return target.endswith(last) and len(target) - len(last) >= at
    return target.find(last, at) >= 0
