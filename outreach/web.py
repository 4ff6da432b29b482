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
import html
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

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
from outreach.tracking import Bursts, ClientAddress, network_hash, referrer_host

log = logging.getLogger(__name__)

_CODE = re.compile(CODE_PATTERN)
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
        self.metrics = TrackerMetrics(lambda: self.writer.spool.pending, lambda: len(self.links))
        self.writer.observe = self.metrics.observe_batch
        self.links_total = 0
        # Visitors and agents repeat: parsing addresses and normalising text once each keeps
        # the redirect path near a bare redirect's cost.
        self.visitor = functools.lru_cache(maxsize=65536)(self._visitor)
        self.clean = functools.lru_cache(maxsize=65536)(clean_agent)

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

    def click_row(self, request: Request, code: str) -> ClickRow:
        """The click to store for this request: kind, visitor hash, agent, referrer host, repeat."""
        wanted = _wanted_headers(request.scope["headers"])
        agent = self.clean(wanted.get(b"user-agent", ""))
        peer = request.client.host if request.client else None
        visitor = self.visitor(peer, wanted.get(b"x-forwarded-for"), wanted.get(b"forwarded"))
        return ClickRow(
            code=code,
            at=self.clock(),
            kind=self.classifier.kind("GET", agent),
            ip_hash=visitor,
            user_agent=agent or None,
            referrer_host=referrer_host(wanted.get(b"referer")),
            repeat=self.bursts.is_repeat(visitor, agent, code),
        )

    def _visitor(self, peer: str | None, x_forwarded_for: str | None, forwarded: str | None) -> str | None:
        return network_hash(self.client(peer, x_forwarded_for, forwarded), self.salt)

    async def redirect(self, request: Request) -> Response:
        """GET or HEAD /r/{code}: 302 to the link's destination once its click is durable."""
        code = request.path_params["code"]
        home = self.settings.home
        if not _CODE.fullmatch(code):
            self.metrics.redirects["not_found"].inc()
            return page(home, 404)
        target = self.links.get(code)
        if target is None:
            found = await self.links.lookup(code)
            if isinstance(found, Lookup):
                outcome = "not_found" if found is Lookup.unknown else "unavailable"
                self.metrics.redirects[outcome].inc()
                return page(home, 404 if found is Lookup.unknown else 503)
            target = found
        if request.method == "HEAD":  # link checkers and previews asking; never a click
            self.metrics.redirects["head"].inc()
            return RedirectResponse(target, status_code=302)
        try:
            row = self.click_row(request, code)
            await self.writer.record(row)
            self.metrics.clicks[row.kind].inc()
        except Exception:  # the visitor still goes where the link leads
            log.exception("clicks: a click on %s could not be recorded", code)
        self.metrics.redirects["redirected"].inc()
        return RedirectResponse(target, status_code=302)

    async def healthz(self, _: Request) -> Response:
        """The database's state, the spool and the links known; 503 while clicks are spooled."""
        stats = self.writer.stats
        body = {
            "status": "spooling" if self.writer.spooling else "ok",
            "database": "ok" if stats.database_ok else "unavailable",
            "database_error": stats.last_error,
            "spooled": self.writer.spool.pending,
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


def _wanted_headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """The four headers the click needs, in one pass over the raw list (as Latin-1, as ASGI reads them)."""
    return {name: value.decode("latin-1") for name, value in raw if name in _WANTED}


def create_app(
    store: Store,
    settings: Tracker,
    spool: Path,
    salt: bytes | None = None,
    clock: Callable[[], datetime] = utcnow,
    deadline: float = 2.0,
) -> Starlette:
    """The tracker app over a store; `salt` keys the visitors' hashes (random if not given)."""
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
            # "/r/CODE/" is the same link: no slash redirect (it would be built from the Host header).
            Route("/r/{code}", tracker.redirect, methods=methods),
            Route("/r/{code}/", tracker.redirect, methods=methods),
            Route("/healthz", tracker.healthz, methods=methods),
            Route("/metrics", tracker.metrics_page, methods=methods),
        ],
        exception_handlers={HTTPException: tracker.not_found},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.tracker = tracker
    app.add_middleware(HygieneHeaders)
    return app
