"""Facebook Pages, through facebook-sdk's `GraphAPI` (synchronous: run in a worker thread).

Facts of the platform (PLATFORM_FACTS, Graph API and facebook-sdk 3.1.0): one Page
access token per page, with `pages_manage_posts` and `pages_read_engagement`;
facebook-sdk accepts only retired Graph versions at construction, so the version
from config is set afterwards; its default timeout waits forever, so one is always
given. A timeout or 5xx after Facebook may have taken the post is ambiguous: the
page's recent posts are searched for the tracked link before anyone posts again.
facebook-sdk puts the token in the query string of every GET: urllib3's log
records are filtered, and error texts scrubbed, so it is never shown.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import facebook
import requests
from pydantic import Field, SecretStr
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from outreach.channel import (
    AuthFailed,
    ChannelError,
    ChannelLimits,
    ChannelSpec,
    MaybeSent,
    Rate,
    Rejected,
    RenderedMessage,
    Sent,
    Transient,
)
from outreach.channel_config import ChannelSettings
from outreach.redact import HiddenSecrets

TOKEN_ENV = "OUTREACH_FACEBOOK_PAGE_TOKEN"  # noqa: S105 - the name of the variable, not a token
GRAPH_URL = "https://graph.facebook.com"
URL_LOGGERS = ("urllib3.connectionpool",)
# Rate limits of the app or the user (4, 17, 341, 613): every page waits; of one Page (32, 80001): that page.
APP_RATE_LIMITS = frozenset({4, 17, 341, 613})
PAGE_RATE_LIMITS = frozenset({32, 80001})
PERMISSION = 10  # and 200-299: the token lacks a permission for this page
POLICY_BLOCK = 368  # temporarily blocked for policy reasons: do not hammer
POLICY_BACKOFF = 6 * 3600.0
RATE_BACKOFF = 300.0  # when no usage header says how long
DUPLICATE = 506
AMBIGUOUS = frozenset({1, 2})  # unknown error, service temporarily unavailable: it may have posted
RECENT_POSTS = 25
T = TypeVar("T")


class FacebookSettings(ChannelSettings):
    """A Facebook block in schedules.yaml; targets are Page ids."""

    graph_version: str = Field(default="v23.0", pattern=r"^v\d+\.\d+$")
    graph_url: str = Field(default=GRAPH_URL, pattern=r"^https?://[^/\s]+(/[^\s]*)?$")
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)


class _ElsewhereAdapter(HTTPAdapter):
    """Sends facebook-sdk's requests (built on its fixed Graph URL) to another base URL.

    facebook-sdk reads a module global for its base URL; rewriting on our own
    session reaches an emulator or a proxy without touching that global.
    """

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base.rstrip("/") + "/"

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        assert request.url is not None
        request.url = self.base + request.url.removeprefix(facebook.FACEBOOK_GRAPH_URL)
        return super().send(request, *args, **kwargs)


class FacebookChannel:
    """Posts to Facebook Pages, each with its own Page access token."""

    def __init__(self, settings: FacebookSettings, tokens: Mapping[str, SecretStr]) -> None:
        self.name, self.idempotent = SPEC.name, SPEC.idempotent  # a second POST is a second post
        self.settings = settings
        self.where = f"Graph API {settings.graph_version} at {settings.graph_url}"
        self.session = requests.Session()
        if settings.graph_url.rstrip("/") != GRAPH_URL:
            self.session.mount(facebook.FACEBOOK_GRAPH_URL, _ElsewhereAdapter(settings.graph_url))
        # urllib3 logs every request line, query string and token included.
        self._hidden = HiddenSecrets([token.get_secret_value() for token in tokens.values()], URL_LOGGERS)
        self._last = threading.local()  # the last answer in this thread, for its status and usage headers
        self.session.hooks["response"].append(self._remember)
        # Where each page's token comes from, to say which variable to set when Facebook refuses it.
        self._variables = {target.id: SPEC.variable_for(target) for target in settings.targets}
        self._graphs: dict[str, facebook.GraphAPI] = {}
        for page, token in tokens.items():
            graph = facebook.GraphAPI(
                access_token=token.get_secret_value(), timeout=settings.timeout_seconds, session=self.session
            )
            graph.version = settings.graph_version  # its constructor only knows retired versions
            self._graphs[page] = graph

    def _remember(self, response: requests.Response, *_: Any, **__: Any) -> None:
        self._last.response = response

    async def _call(self, page: str, sending: bool, work: Callable[[], T]) -> T:
        """Run one Graph call in a worker thread; its errors come back as the core's."""
        return await asyncio.to_thread(self._in_thread, page, sending, work)

    def _in_thread(self, page: str, sending: bool, work: Callable[[], T]) -> T:
        # Translated here: the answer's status and usage headers are this thread's to read.
        self._last.response = None
        try:
            return work()
        except Exception as exc:
            error = self._translate(exc, page, sending)
            # Facebook's own messages may quote a malformed token: it never goes further.
            token = self._graphs[page].access_token
            if token and token in str(error):
                error.args = (str(error).replace(token, "***"), *error.args[1:])
            raise error from None

    async def send(self, message: RenderedMessage) -> Sent:
        """Post to the page's feed (a link post), or its photos when there is an image."""
        graph = self._graphs[message.target]
        link = _tracked_link(message)
        if message.image_url:
            data = {"url": message.image_url, "message": message.text}
            connection = "photos"
        else:
            data = {"message": message.text} | ({"link": link} if link else {})
            connection = "feed"
        try:
            answer = await self._call(
                message.target, True, lambda: graph.put_object(message.target, connection, **data)
            )
            posted = (answer.get("post_id") or answer.get("id")) if isinstance(answer, dict) else None
            if not posted:
                raise MaybeSent(f"Facebook accepted the post without saying its id ({str(answer)[:200]})")
        except MaybeSent:
            found = await self._find(graph, message, link)
            if found is not None:
                return found
            raise
        return Sent(platform_id=str(posted))

    async def _find(self, graph: facebook.GraphAPI, message: RenderedMessage, link: str | None) -> Sent | None:
        """The post among the page's recent ones that carries this delivery's tracked link."""
        if not message.link_code:
            return None
        # The whole code and nothing after it: codes vary in length, and one may start another.
        marker = re.compile(re.escape(link or f"/r/{message.link_code}") + r"(?![A-Za-z0-9])")
        try:
            recent = await self._call(
                message.target,
                False,
                lambda: graph.get_connections(message.target, "feed", fields="id,message,link", limit=RECENT_POSTS),
            )
        except Exception:
            return None  # cannot look: an operator decides
        posts = recent.get("data") if isinstance(recent, dict) else None
        for post in posts if isinstance(posts, list) else []:
            if not isinstance(post, dict) or "id" not in post:
                continue
            if any(marker.search(str(post.get(key) or "")) for key in ("message", "link")):
                return Sent(platform_id=str(post["id"]))
        return None

    async def check(self, target: str) -> str:
        """Whether the token is this page's own Page token (`/me` of a Page token is the Page)."""
        graph = self._graphs[target]
        page = await self._call(target, False, lambda: graph.get_object(target, fields="id,name"))
        me = await self._call(target, False, lambda: graph.get_object("me", fields="id,name"))
        if str(me.get("id")) != str(page.get("id", target)):
            raise AuthFailed(
                f"the token in {self._variables.get(target, TOKEN_ENV)} is not page {target}'s Page token "
                f"(it speaks for {me.get('name', '?')!r}, {me.get('id', '?')}): take the page's own token "
                "from GET /me/accounts"
            )
        return f"Page {page.get('name', '?')!r} ({page.get('id', target)}) with Graph API {self.settings.graph_version}"

    async def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()
        self._hidden.remove()

    def _translate(self, exc: Exception, page: str, sending: bool) -> ChannelError:
        """facebook-sdk's or requests' exception as one of the core's."""
        if _never_left(exc):
            return Transient(f"Facebook unreachable: {type(exc).__name__}", whole_channel=True)
        if not isinstance(exc, facebook.GraphAPIError) or exc.code is None:
            return self._unclear(exc, sending)
        text = f"Facebook error {exc.code}: {exc.message}"
        try:
            code = int(exc.code)
        except (TypeError, ValueError):
            return self._unclear(exc, sending)
        if code == 190:
            variable = self._variables.get(page, TOKEN_ENV)
            return AuthFailed(
                f"{text}. The Page access token for page {page} has expired or was revoked: get a new Page token "
                f"(Graph API Explorer or GET /me/accounts, with pages_manage_posts and pages_read_engagement) "
                f"and set the new token in {variable}"
            )
        if code in APP_RATE_LIMITS or code in PAGE_RATE_LIMITS:
            wait = self._regain_seconds() or RATE_BACKOFF
            return Transient(text, retry_after=wait, whole_channel=code in APP_RATE_LIMITS)
        if code == PERMISSION or 200 <= code <= 299:
            # Not this post's fault: every post to the page would fail alike until the token is fixed.
            variable = self._variables.get(page, TOKEN_ENV)
            return AuthFailed(
                f"{text}. The token in {variable} may not post to page {page}: it must be that page's own Page "
                "token, with pages_manage_posts and pages_read_engagement"
            )
        if code == POLICY_BLOCK:
            return Transient(f"{text} (blocked for now: waiting hours, not minutes)", retry_after=POLICY_BACKOFF)
        if code == DUPLICATE or code in AMBIGUOUS or self._status() >= 500:
            if sending:
                return MaybeSent(f"{text}: the post may be on the page already")
            return Transient(text)
        return Rejected(text)

    def _unclear(self, exc: Exception, sending: bool) -> ChannelError:
        """No answer, or one that is not Graph's: after a POST, Facebook may have taken the post."""
        if isinstance(exc, requests.Timeout):
            what = f"{type(exc).__name__}, no answer within {self.settings.timeout_seconds:g} s"
        elif isinstance(exc, KeyError):  # facebook-sdk reads the Content-Type header unchecked
            what = "an answer without a Content-Type"
        elif isinstance(exc, facebook.GraphAPIError):
            what = "an answer that is not JSON"
        else:
            what = f"{type(exc).__name__}: {exc}"
        status = self._status()
        if status and not isinstance(exc, requests.RequestException):  # a whole answer came, not Graph's JSON
            if 400 <= status < 500:
                # Something in front of Graph (a proxy, a firewall) refused the call: nothing was posted.
                return Transient(f"Facebook's address answered HTTP {status} with {what}: not from Graph itself")
            what = f"{what} (HTTP {status})"
        if sending:
            return MaybeSent(f"Facebook gave no clear answer after the post was sent ({what}): check the page")
        return Transient(f"Facebook gave no clear answer ({what})")

    def _status(self) -> int:
        response = getattr(self._last, "response", None)
        return int(response.status_code) if response is not None else 0

    def _regain_seconds(self) -> float | None:
        """`estimated_time_to_regain_access` (minutes) from the usage headers, in seconds."""
        response = getattr(self._last, "response", None)
        if response is None:
            return None
        minutes: list[float] = []
        for header in ("X-Page-Usage", "X-Business-Use-Case-Usage", "X-App-Usage"):
            try:
                usage = json.loads(response.headers.get(header) or "null")
            except ValueError:
                continue
            minutes.extend(_regain_minutes(usage))
        return max(minutes) * 60 if minutes else None


def _never_left(exc: Exception) -> bool:
    """The call failed before any byte of the request reached Facebook (no connection, no TLS)."""
    if isinstance(exc, requests.ConnectTimeout | requests.exceptions.ProxyError | requests.exceptions.SSLError):
        return True
    # requests wraps a refused or unresolvable connection in MaxRetryError; a connection cut
    # once the request was written comes as a ProtocolError instead: that one may have posted.
    cause = exc.args[0] if isinstance(exc, requests.ConnectionError) and exc.args else None
    return isinstance(cause, MaxRetryError) and isinstance(cause.reason, ConnectTimeoutError)


def _regain_minutes(usage: Any) -> list[float]:
    """Every `estimated_time_to_regain_access` in a usage header (flat or per business)."""
    if isinstance(usage, dict):
        found: list[float] = []
        for key, value in usage.items():
            if key == "estimated_time_to_regain_access" and isinstance(value, int | float) and value >= 0:
                found.append(float(value))
            else:
                found.extend(_regain_minutes(value))
        return found
    if isinstance(usage, list):
        return [minutes for entry in usage for minutes in _regain_minutes(entry)]
    return []


def _tracked_link(message: RenderedMessage) -> str | None:
    """The tracked short link in the text, which Facebook gets as the post's link too."""
    if not message.link_code:
        return None
    found = re.search(rf"https?://[^\s]*?/r/{re.escape(message.link_code)}(?![A-Za-z0-9])", message.text)
    return found.group(0) if found else None


def build(settings: ChannelSettings, tokens: Mapping[str, SecretStr]) -> FacebookChannel:
    """The channel adapter for the pages that have a token."""
    assert isinstance(settings, FacebookSettings)
    return FacebookChannel(settings, tokens)


SPEC = ChannelSpec(
    name="facebook",
    # Page posts take up to 63,206 characters of plain text (no markup).
    limits=ChannelLimits(max_text=63_206, markup="plain"),
    # Facebook publishes no posting rate; a page that posts fast looks like spam (code 368).
    rate=Rate(per_second=5, burst=5, per_target_per_second=0.2, per_target_burst=3),
    idempotent=False,
    settings=FacebookSettings,
    secrets=(TOKEN_ENV,),
    build=build,
    token_per_target=True,  # a Page token speaks for one page
)
