"""A Facebook Graph API server for Pages, keeping what was posted, for tests and the demo.

facebook-sdk reaches it through a requests session, so the library's own URL
building, token placement and error parsing are what get exercised. It answers the
calls the project makes (read a page, post to its feed or photos, read the feed
back to find a post after an ambiguous failure) with Graph's error JSON, so code
that branches on `code` and `error_subcode` meets the real shape. Requests are
logged without tokens: tests check that tokens do not leak.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from outreach.sandbox.faults import Answer, BadBody, Fault, FaultScript, Served, Window, read_params, respond

DEFAULT_VERSIONS = ("v22.0", "v23.0", "v24.0", "v25.0", "v26.0")
FEED_FIELDS = frozenset({"id", "message", "created_time", "link", "full_picture"})
PAGE_FIELDS = frozenset({"id", "name"})
_VERSION = re.compile(r"v(\d+)\.(\d+)")
_RATE_MESSAGES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try again.",
}


@dataclass(frozen=True)
class GraphPost:
    """One post a page published: text with a link, or a photo with its message."""

    id: str  # "{page_id}_{n}"
    page_id: str
    message: str | None
    link: str | None
    photo_url: str | None  # the URL given, or "upload:<filename>" for an uploaded file
    created_time: str  # Graph's format: 2026-11-27T01:30:00+0000
    version: str


@dataclass
class _Page:
    id: str
    name: str
    posts: int = 0


class _GraphError(Exception):
    """Graph's answer to a call it refuses (always HTTP 400 from the platform itself)."""

    def __init__(
        self,
        code: int,
        message: str,
        kind: str = "OAuthException",
        subcode: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.kind, self.subcode, self.headers = code, message, kind, subcode, headers or {}


def page_usage(minutes: int) -> str:
    """An X-Page-Usage header value saying the page is at its limit for `minutes`."""
    usage = {"call_count": 100, "total_cputime": 10, "total_time": 10, "estimated_time_to_regain_access": minutes}
    return json.dumps(usage)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%A, %d-%b-%y %H:%M:%S UTC")


class GraphEmulator(Served):
    """A Graph API server: pages and their tokens, the posts accepted, and scripted faults.

    Use it as a context manager to run it on a loopback port; point facebook-sdk at
    `base_url`. `rate_per_page` (publishing calls per second) turns on page limits.
    """

    def __init__(
        self,
        versions: Iterable[str] = DEFAULT_VERSIONS,
        rate_per_page: float | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.versions = tuple(versions)
        self.faults = FaultScript()
        self._clock = clock
        self._window = Window(rate_per_page)
        self._lock = threading.Lock()
        self._pages: dict[str, _Page] = {}
        self._tokens: dict[str, str] = {}  # token -> page id
        self._expired: dict[str, datetime] = {}
        self._posts: list[GraphPost] = []
        self._requests: list[tuple[str, str, str]] = []
        self._photos = 0
        self._traces = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST", "DELETE"])])

    # --- the platform's state, set up by tests and the demo ---------------------------

    @property
    def base_url(self) -> str:
        """What facebook-sdk puts before "{version}/{path}" (trailing slash included)."""
        return f"{self.url}/"

    def add_page(self, page_id: str, name: str, token: str) -> None:
        """Create a page (or rename it) and give it a Page access token; a page may have several."""
        with self._lock:
            page = self._pages.setdefault(page_id, _Page(page_id, name))
            page.name = name
            self._tokens[token] = page_id
            self._expired.pop(token, None)

    def expire_token(self, token: str, at: datetime | None = None) -> None:
        """The token's session expires (`at`, default now): code 190, subcode 463 from then on."""
        with self._lock:
            self._expired[token] = at or datetime.fromtimestamp(self._clock(), UTC)

    def rate_limited(
        self, code: int = 32, minutes: int = 5, *, route: str | None = None, target: str | None = None, times: int = 1
    ) -> None:
        """Queue rate-limit errors (code 4, 17, 32, 613, 80001, ...) with an X-Page-Usage header."""
        message = _RATE_MESSAGES.get(code, f"(#{code}) Rate limit reached")
        with self._lock:
            body = self._error_json(code, message, "OAuthException")
        fault = Fault("error", status=400, body=body, headers={"X-Page-Usage": page_usage(minutes)})
        self.faults.add(fault, method=route, target=target, times=times)

    def duplicate(self, *, route: str | None = "feed", target: str | None = None, times: int = 1) -> None:
        """Queue Graph's answer to a post identical to a recent one."""
        with self._lock:
            body = self._error_json(506, "(#506) Duplicate status message", "OAuthException")
        self.faults.add(Fault("error", status=400, body=body), method=route, target=target, times=times)

    def reset(self) -> None:
        """Forget every page, token, post, request and queued fault (the server keeps running)."""
        self.faults.clear()
        self._window.clear()
        with self._lock:
            self._pages.clear()
            self._tokens.clear()
            self._expired.clear()
            self._posts.clear()
            self._requests.clear()
            self._photos = self._traces = 0

    # --- what happened, for assertions ----------------------------------------------------

    def posts(self, page_id: str | None = None) -> list[GraphPost]:
        """Posts accepted on one page or on all, oldest first."""
        with self._lock:
            return [post for post in self._posts if page_id is None or post.page_id == page_id]

    @property
    def requests(self) -> list[tuple[str, str, str]]:
        """(HTTP method, version, path after the version) for every call, in order."""
        with self._lock:
            return list(self._requests)

    # --- the HTTP side -----------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        version, _, path = request.path_params["path"].strip("/").partition("/")
        try:
            params: dict[str, str] | None = await read_params(request)
        except BadBody:
            params = None
        token = (params or {}).get("access_token") or _bearer(request.headers.get("authorization", ""))
        segments = [segment for segment in path.split("/") if segment]
        route = _route_name(request.method, segments)
        with self._lock:
            self._requests.append((request.method, version, path))
            node = segments[0] if segments else ""
            target = self._tokens.get(token or "", node) if node == "me" else node
        fault = self.faults.take(route, target)
        return await respond(
            fault, lambda: self._handle(request.method, version, segments, params, token), self._default_error
        )

    def _handle(
        self, method: str, version: str, segments: list[str], params: dict[str, str] | None, token: str | None
    ) -> Answer:
        with self._lock:
            try:
                if version not in self.versions:
                    raise _GraphError(12, self._version_message(version), "GraphMethodException")
                if params is None:
                    raise _GraphError(100, "(#100) The request body could not be parsed")
                page_of_token = self._token_page(token)
                result = self._dispatch(method, version, segments, params, page_of_token)
            except _GraphError as error:
                body = self._error_json(error.code, error.message, error.kind, error.subcode)
                return Answer(400, body, error.headers)
            return Answer(200, result)

    def _dispatch(
        self, method: str, version: str, segments: list[str], params: dict[str, str], page_of_token: str
    ) -> dict[str, Any]:
        if not segments:
            raise _GraphError(100, "(#100) Unsupported request: no object given", "GraphMethodException")
        node = page_of_token if segments[0] == "me" else segments[0]
        page = self._pages.get(node)
        if page is None or len(segments) > 2:
            raise _unsupported(method, segments[0])
        edge = segments[1] if len(segments) == 2 else None
        if method == "GET" and edge is None:
            # Graph always answers a node's id, asked for or not.
            wanted = ("id", *_fields(params, ("name",), PAGE_FIELDS, "Page"))
            return _pick(wanted, {"id": page.id, "name": page.name})
        if method == "GET" and edge in ("feed", "posts"):
            self._authorised(page, page_of_token)
            return self._read_feed(page, params)
        if method == "POST" and edge in ("feed", "photos"):
            self._authorised(page, page_of_token)
            if self._window.hit(page.id, time.monotonic()) is not None:
                raise _GraphError(32, _RATE_MESSAGES[32], headers={"X-Page-Usage": page_usage(1)})
            if edge == "feed":
                return self._post_feed(page, params, version)
            return self._post_photo(page, params, version)
        if method == "GET" and edge is not None:
            raise _GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node type (Page)")
        raise _unsupported(method, segments[0])

    # --- routes (called with the lock held) ---------------------------------------------------

    def _token_page(self, token: str | None) -> str:
        if not token or token not in self._tokens:
            raise _GraphError(190, "Invalid OAuth access token - Cannot parse access token")
        expired = self._expired.get(token)
        if expired is not None:
            now = datetime.fromtimestamp(self._clock(), UTC)
            message = (
                f"Error validating access token: Session has expired on {_timestamp(expired)}."
                f" The current time is {_timestamp(now)}."
            )
            raise _GraphError(190, message, subcode=463)
        return self._tokens[token]

    def _authorised(self, page: _Page, page_of_token: str) -> None:
        if page.id != page_of_token:
            raise _GraphError(200, "(#200) The user hasn't authorized the application to perform this action")

    def _read_feed(self, page: _Page, params: dict[str, str]) -> dict[str, Any]:
        wanted = _fields(params, ("id", "message", "created_time"), FEED_FIELDS, "Post")
        raw_limit = params.get("limit", "25")
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise _GraphError(100, "(#100) Param limit must be a positive integer")
        newest_first = [post for post in reversed(self._posts) if post.page_id == page.id][: min(int(raw_limit), 100)]
        data = [
            _pick(
                ("id", *wanted),
                {
                    "id": post.id,
                    "message": post.message,
                    "created_time": post.created_time,
                    "link": post.link,
                    "full_picture": post.photo_url,
                },
            )
            for post in newest_first
        ]
        return {"data": data, "paging": {}}

    def _post_feed(self, page: _Page, params: dict[str, str], version: str) -> dict[str, Any]:
        message, link = params.get("message") or None, params.get("link") or None
        if message is None and link is None:
            raise _GraphError(100, "(#100) Missing message or attachment")
        if link is not None and not link.startswith(("http://", "https://")):
            raise _GraphError(100, "(#100) link URL is not properly formatted")
        post = self._store(page, version, message=message, link=link, photo_url=None)
        return {"id": post.id}

    def _post_photo(self, page: _Page, params: dict[str, str], version: str) -> dict[str, Any]:
        photo = params.get("url") or params.get("source") or None
        if photo is None:
            raise _GraphError(324, "(#324) Requires upload file")
        message = params.get("message") or params.get("caption") or None
        post = self._store(page, version, message=message, link=None, photo_url=photo)
        self._photos += 1
        return {"id": str(900_000_000_000_000 + self._photos), "post_id": post.id}

    def _store(
        self, page: _Page, version: str, *, message: str | None, link: str | None, photo_url: str | None
    ) -> GraphPost:
        page.posts += 1
        created = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
        post = GraphPost(f"{page.id}_{page.posts}", page.id, message, link, photo_url, created, version)
        self._posts.append(post)
        return post

    # --- error bodies ---------------------------------------------------------------------------

    def _error_json(self, code: int, message: str, kind: str, subcode: int | None = None) -> dict[str, Any]:
        # Deterministic trace ids: tests compare whole bodies.
        self._traces += 1
        error: dict[str, Any] = {"message": message, "type": kind, "code": code}
        if subcode is not None:
            error["error_subcode"] = subcode
        error["fbtrace_id"] = f"AEmu{self._traces:08d}"
        return {"error": error}

    def _default_error(self, status: int) -> dict[str, Any]:
        # What Graph says around its own outages; facebook-sdk treats any "error" body alike.
        with self._lock:
            if status >= 500:
                body = self._error_json(
                    2, "An unexpected error has occurred. Please retry your request later.", "OAuthException"
                )
                body["error"]["is_transient"] = True
                return body
            return self._error_json(1, "An unknown error has occurred.", "OAuthException")

    def _version_message(self, version: str) -> str:
        match, oldest = _VERSION.fullmatch(version), min((_version_key(v) for v in self.versions), default=(0, 0))
        if match and (int(match.group(1)), int(match.group(2))) < oldest:
            return f"(#12) Graph API version {version} is deprecated"
        return f"(#12) Graph API version {version or '(none)'} is not available"


def _version_key(version: str) -> tuple[int, int]:
    match = _VERSION.fullmatch(version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _route_name(method: str, segments: list[str]) -> str:
    edge = segments[1] if len(segments) == 2 else None
    if method == "POST" and edge in ("feed", "photos"):
        return edge
    if method == "GET" and len(segments) == 1:
        return "page"
    if method == "GET" and edge in ("feed", "posts"):
        return "read_feed"
    return "other"


def _bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() in ("bearer", "oauth") else None


def _fields(params: dict[str, str], default: tuple[str, ...], known: frozenset[str], node_type: str) -> tuple[str, ...]:
    raw = params.get("fields")
    if raw is None:
        return default
    wanted = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in wanted:
        if name not in known:
            raise _GraphError(100, f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")
    return wanted


def _pick(wanted: Iterable[str], values: dict[str, Any]) -> dict[str, Any]:
    # Graph leaves out fields that have no value rather than sending null.
    return {name: values[name] for name in dict.fromkeys(wanted) if values.get(name) is not None}


def _unsupported(method: str, node: str) -> _GraphError:
    return _GraphError(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{node}' does not exist, cannot be loaded due to"
        " missing permissions, or does not support this operation. Please read the Graph API documentation at"
        " https://developers.facebook.com/docs/graph-api",
        "GraphMethodException",
        subcode=33,
    )
