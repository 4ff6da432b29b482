"""The tracker's ASGI app: `/r/{code}` redirects and counts; `/healthz` and `/metrics` answer.

The redirect path is async end to end: destination from memory, the click
classified (cached per agent), then the request awaits its click's group commit
(or spool write) and only then gets its 302. A visitor never sees a 500: an
unknown code gets the bilingual 404 page, a database that cannot say whether a
code exists gets a 503 page, and anything unexpected after the destination is
known still redirects. Nothing in the request chooses where a redirect goes.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import html
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from outreach.agents import Classifier, clean_agent
from outreach.click_spool import ClickRow, Spool
from outreach.click_writer import ClickWriter, short_wait_engine
from outreach.config import Tracker
from outreach.db import Store
from outreach.dburl import sqlite_path
from outreach.link_cache import LinkCache, Lookup
from outreach.links import CODE_PATTERN
from outreach.models import utcnow
from outreach.tracker_metrics import TrackerMetrics
from outreach.tracking import Bursts, ClickIds, ClientAddress, network_hash, referrer_host

log = logging.getLogger(__name__)

_CODE = re.compile(CODE_PATTERN)
MAX_UPDATE_BYTES = 1_000_000  # an update is a few kilobytes; a bigger body is not Telegram's
# Sent with every answer: a cached redirect would hide later clicks; the rest is hygiene.
HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
]
PAGE = """<!doctype html><html lang="vi"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title_vi}</title>
<h1>{title_vi}</h1><p>{text_vi}</p>
<p lang="en">{text_en}</p>
<p><a href="{home}">Cổng thông tin điện tử / Portal home</a></p></html>"""


def page(home: str, status: int) -> HTMLResponse:
    """The small bilingual page for an unknown code (404) or a database away (503)."""
    if status == 404:
        words = {
            "title_vi": "Không tìm thấy liên kết",
            "text_vi": "Liên kết này không tồn tại hoặc đã hết hạn.",
            "text_en": "This link does not exist or has expired.",
        }
    else:
        words = {
            "title_vi": "Tạm thời không mở được liên kết",
            "text_vi": "Xin thử lại sau ít phút.",
            "text_en": "This link cannot be opened right now; please try again in a few minutes.",
        }
    body = PAGE.format(home=html.escape(home, quote=True), **words)
    headers = {"Retry-After": "60"} if status == 503 else None
    return HTMLResponse(body, status_code=status, headers=headers)


class HygieneHeaders:
    """Adds the hygiene headers to every response, whichever part of the app made it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Redirects:
    """`/r/CODE` answered here, before Starlette: the redirect is the hot path, every µs counts.

    Anything else (and any method but GET and HEAD) goes on to the Starlette app:
    /healthz, /metrics, the 404 page for other paths, 405s.
    """

    def __init__(self, app: ASGIApp, tracker: ClickTracker) -> None:
        self.app, self.tracker = app, tracker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/r/") or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        code = path[3:-1] if path.endswith("/") else path[3:]  # "/r/CODE/" is the same link
        try:
            status, headers, body = await self.tracker.redirect(scope, code)
        except Exception:  # never a 500 for a visitor
            log.exception("tracker: /r/%s failed", code[:40])
            status, headers, body = self.tracker.pages[503]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})


def _raw(response: Response) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """A prepared response as the raw ASGI parts, with the hygiene headers."""
    return response.status_code, [*response.raw_headers, *HEADERS], bytes(response.body)


class ClickTracker:
    """What the app holds: links in memory, the click writer, the classifier, the metrics."""

    def __init__(
        self,
        store: Store,
        settings: Tracker,
        spool: Path,
        salt: bytes | None = None,
        clock: Callable[[], datetime] = utcnow,
        deadline: float = 2.0,
    ) -> None:
        self.settings, self.clock = settings, clock
        self.salt = salt or secrets.token_bytes(32)
        engine = short_wait_engine(store.url, deadline)  # a visitor never waits long for the database
        self.links = LinkCache(engine, settings.allowed_domains)
        self.writer = ClickWriter(store.url, engine, Spool(spool), deadline, database_file=sqlite_path(store.url))
        self.classifier = Classifier(settings.agents)
        self.client = ClientAddress(settings.trusted_proxies)
        self.bursts = Bursts(settings.burst.clicks, settings.burst.seconds)
        self.click_id = ClickIds()  # names in creation order: the unique index takes them at its end
        self.metrics = TrackerMetrics(self.writer.spool.waiting, lambda: len(self.links))
        self.writer.observe = self.metrics.observe_batch
        self.links_total = 0
        # Visitors and agents repeat: parsing addresses and normalising text once each keeps
        # the redirect path near a bare redirect's cost.
        self.visitor = functools.lru_cache(maxsize=65536)(self._visitor)
        self.clean = functools.lru_cache(maxsize=65536)(clean_agent)
        self._redirect_cache: dict[str, list[tuple[bytes, bytes]]] = {}
        self.pages = {status: _raw(page(settings.home, status)) for status in (404, 503)}

    async def start(self) -> None:
        """Load the newest links and replay any spool an earlier run left."""
        self.links_total = await asyncio.to_thread(self.links.load)
        await self.writer.start()
        # What start-up built (the crawler patterns, ua-parser's rules, the links) lives as long
        # as the process: out of the collector's sight, full collections stop stalling redirects
        # (measured: p99 from ~180 ms to ~30 ms under load).
        gc.freeze()

    async def stop(self) -> None:
        """Commit every click already handed over (SIGTERM drains, then exits)."""
        await self.writer.close()
        self.links.close()

    def click_row(self, scope: Scope, code: str) -> ClickRow:
        """The click to store for this request: kind, visitor hash, agent, referrer host, repeat."""
        wanted = {name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED}
        # Cut before the caches: a visitor sending 1 MB headers must not fill memory with them.
        agent = self.clean(wanted.get(b"user-agent", "")[:AGENT_INPUT])
        client = scope.get("client")
        forwarded_for, forwarded = wanted.get(b"x-forwarded-for"), wanted.get(b"forwarded")
        visitor = self.visitor(
            client[0] if client else None,
            forwarded_for[-HOPS_INPUT:] if forwarded_for else None,  # the nearest hops are last
            forwarded[-HOPS_INPUT:] if forwarded else None,
        )
        return ClickRow(
            code=code,
            at=self.clock(),
            kind=self.classifier.kind("GET", agent),
            ip_hash=visitor,
            user_agent=agent or None,
            referrer_host=referrer_host(wanted.get(b"referer")),
            repeat=self.bursts.is_repeat(visitor, agent, code),
            uid=self.click_id(),
        )

    def _visitor(self, peer: str | None, x_forwarded_for: str | None, forwarded: str | None) -> str | None:
        return network_hash(self.client(peer, x_forwarded_for, forwarded), self.salt)

    def _redirect_headers(self, target: str) -> list[tuple[bytes, bytes]]:
        """The 302's headers for a destination, built once per link (quoting a long URL is not free)."""
        headers = self._redirect_cache.get(target)
        if headers is None:
            location = RedirectResponse(target).headers["location"].encode("latin-1")
            headers = [(b"location", location), (b"content-length", b"0"), *HEADERS]
            if len(self._redirect_cache) > 100_000:
                self._redirect_cache.clear()
            self._redirect_cache[target] = headers
        return headers

    async def redirect(self, scope: Scope, code: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """GET or HEAD /r/CODE: 302 to the link's destination once its click is durable."""
        if not _CODE.fullmatch(code):
            self.metrics.redirects["not_found"].inc()
            return self.pages[404]
        target = self.links.get(code)
        if target is None:
            found = await self.links.lookup(code)
            if isinstance(found, Lookup):
                outcome = "not_found" if found is Lookup.unknown else "unavailable"
                self.metrics.redirects[outcome].inc()
                return self.pages[404 if found is Lookup.unknown else 503]
            target = found
        if scope["method"] == "HEAD":  # link checkers and previews asking; never a click
            self.metrics.redirects["head"].inc()
            return 302, self._redirect_headers(target), b""
        try:
            row = self.click_row(scope, code)
            await self.writer.record(row)
            self.metrics.clicks[row.kind].inc()
        except Exception:  # the visitor still goes where the link leads
            log.exception("clicks: a click on %s could not be recorded", code)
        self.metrics.redirects["redirected"].inc()
        return 302, self._redirect_headers(target), b""

    async def healthz(self, _: Request) -> Response:
        """The database's state, the spool and the links known; 503 while clicks are spooled."""
        stats = self.writer.stats
        body = {
            "status": "spooling" if self.writer.spooling else "ok",
            "database": "ok" if stats.database_ok else "unavailable",
            "database_error": stats.last_error,
            "spooled": self.writer.spool.waiting(),
            "links_known": len(self.links),
            "links_total": self.links_total,
            "clicks_committed": stats.committed,
            "clicks_replayed": stats.replayed,
            "clicks_lost": stats.lost,
        }
        return JSONResponse(body, status_code=503 if self.writer.spooling else 200)

    async def metrics_page(self, _: Request) -> Response:
        """Prometheus text format."""
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def not_found(self, _: Request, exc: Exception) -> Response:
        """Any other path, or a method the route does not take: the same small page."""
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        if status == 404:
            return page(self.settings.home, 404)
        return Response(status_code=status)


_WANTED = (b"user-agent", b"x-forwarded-for", b"forwarded", b"referer")
AGENT_INPUT = 1024  # characters of a User-Agent read at all (255 are stored)
HOPS_INPUT = 512  # characters of a forwarding header read at all


@dataclass(frozen=True)
class TelegramHook:
    """The bot's webhook on the tracker: its secret path, its secret header value, and where updates go.

    `feed` gets each update's JSON (the Telegram front end queues it for its
    Application); the core never parses an update itself.
    """

    path: str
    secret: str
    feed: Callable[[dict[str, Any]], Awaitable[None]]

    async def receive(self, request: Request) -> Response:
        """POST /telegram/{path}: 403 unless both secrets match (constant time); nothing is read before."""
        given = request.headers.get("x-telegram-bot-api-secret-token", "")
        path_ok = hmac.compare_digest(request.path_params["path"].encode(), self.path.encode())
        secret_ok = hmac.compare_digest(given.encode("latin-1", "replace"), self.secret.encode())
        if not (path_ok and secret_ok) or not given:
            return Response("forbidden\n", 403, media_type="text/plain")
        body = await request.body()
        if len(body) > MAX_UPDATE_BYTES:
            return Response("too large\n", 413, media_type="text/plain")
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            return Response("not a Telegram update\n", 400, media_type="text/plain")
        try:
            await self.feed(data)
        except Exception as exc:  # the bot is down: Telegram keeps the update and sends it again
            log.warning("telegram webhook: update %s not taken (%s)", data["update_id"], type(exc).__name__)
            return Response("the bot is not running\n", 503, media_type="text/plain")
        return Response("ok\n", 200, media_type="text/plain")


def create_app(
    store: Store,
    settings: Tracker,
    spool: Path,
    salt: bytes | None = None,
    clock: Callable[[], datetime] = utcnow,
    deadline: float = 2.0,
    telegram: TelegramHook | None = None,
) -> ASGIApp:
    """The tracker app over a store; `salt` keys the visitors' hashes (random if not given).

    With `telegram`, it also serves the bot's webhook (DESIGN §6).
    """
    tracker = ClickTracker(store, settings, spool, salt, clock, deadline)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await tracker.start()
        try:
            yield
        finally:
            await tracker.stop()

    methods = ["GET", "HEAD"]
    app = Starlette(
        routes=[
            Route("/healthz", tracker.healthz, methods=methods),
            Route("/metrics", tracker.metrics_page, methods=methods),
            *([Route("/telegram/{path}", telegram.receive, methods=["POST"])] if telegram else []),
        ],
        exception_handlers={HTTPException: tracker.not_found},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a slash redirect would be built from the Host header
    app.state.tracker = tracker
    app.add_middleware(HygieneHeaders)
    return Redirects(app, tracker)
