"""The tracker's ASGI app: `/r/{code}` redirects and counts; `/healthz` answers.

A 302 goes out only after its click is committed. Unknown codes get a 404 page,
never a redirect to anything taken from the request (no open redirect).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from outreach.db import Store
from outreach.links import CODE_PATTERN
from outreach.models import ClickKind, utcnow
from outreach.tracking import classify, destination, ip_hash, record_click, referrer_host

NO_STORE = {"Cache-Control": "no-store"}  # a cached redirect would hide later clicks
_CODE = re.compile(CODE_PATTERN)
NOT_FOUND_PAGE = """<!doctype html><html lang="vi"><meta charset="utf-8"><title>Không tìm thấy liên kết</title>
<h1>Không tìm thấy liên kết</h1><p>Liên kết này không tồn tại hoặc đã hết hạn.</p>
<p lang="en">This link does not exist or has expired.</p></html>"""


def create_app(store: Store, salt: bytes | None = None, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """The tracker app over a store; `salt` keys the IP hashes (random if not given)."""
    key = salt or secrets.token_bytes(32)

    def redirect(request: Request) -> Response:
        # A sync endpoint: Starlette runs it in its thread pool, off the event loop.
        code = request.path_params["code"]
        if not _CODE.fullmatch(code):
            return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=NO_STORE)
        user_agent = request.headers.get("user-agent", "")
        kind = classify(request.method, user_agent)
        with store.sessions.begin() as session:
            target = destination(session, code)
            if target is None:
                return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=NO_STORE)
            if kind is not ClickKind.head:
                client = request.client.host if request.client else None
                record_click(
                    session,
                    code,
                    kind,
                    clock(),
                    ip_hash(client, key),
                    user_agent,
                    referrer_host(request.headers.get("referer")),
                )
        return RedirectResponse(target, status_code=302, headers=NO_STORE)

    def healthz(_: Request) -> Response:
        return PlainTextResponse("ok", headers=NO_STORE)

    return Starlette(routes=[Route("/r/{code}", redirect, methods=["GET", "HEAD"]), Route("/healthz", healthz)])
