"""Facebook Pages, through facebook-sdk's `GraphAPI` (synchronous: run in a worker thread).

Facts of the platform (PLATFORM_FACTS, Graph API and facebook-sdk 3.1.0): one Page
access token per page, with `pages_manage_posts` and `pages_read_engagement`;
facebook-sdk accepts only retired Graph versions at construction, so the version
from config is set afterwards; its default timeout waits forever, so one is always
given. A timeout or 5xx after Facebook may have taken the post is ambiguous: the
page's recent posts are searched for the tracked link before anyone posts again.
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

from outreach.channel import (
    AuthFailed,
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

TOKEN_ENV = "OUTREACH_FACEBOOK_PAGE_TOKEN"  # noqa: S105 - the name of the variable, not a token
GRAPH_URL = "https://graph.facebook.com"
RATE_LIMITS = frozenset({4, 17, 32, 613, 80001})  # app, user, page, custom, too many calls to this Page
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

    name = "facebook"
    idempotent = False  # a second POST is a second post

    def __init__(self, settings: FacebookSettings, tokens: Mapping[str, SecretStr]) -> None:
        self.settings = settings
        self.where = f"Graph API {settings.graph_version} at {settings.graph_url}"
        self.session = requests.Session()
        if settings.graph_url.rstrip("/") != GRAPH_URL:
            self.session.mount(facebook.FACEBOOK_GRAPH_URL, _ElsewhereAdapter(settings.graph_url))
        self._last = threading.local()  # the last answer in this thread, for its usage headers
        self.session.hooks["response"].append(self._remember)
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
            raise self._translate(exc, page, sending) from None

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
        except MaybeSent:
            found = await self._find(graph, message, link)
            if found is not None:
                return found
            raise
        return Sent(platform_id=str(answer.get("post_id") or answer["id"]))

    async def _find(self, graph: facebook.GraphAPI, message: RenderedMessage, link: str | None) -> Sent | None:
        """The post among the page's recent ones that carries this delivery's tracked link."""
        marker = link or (f"/r/{message.link_code}" if message.link_code else None)
        if marker is None:
            return None
        try:
            recent = await self._call(
                message.target,
                False,
                lambda: graph.get_connections(message.target, "feed", fields="id,message,link", limit=RECENT_POSTS),
            )
        except Exception:
            return None  # cannot look: an operator decides
        for post in recent.get("data", []):
            if marker in (post.get("message") or "") or marker == post.get("link"):
                return Sent(platform_id=str(post["id"]))
        return None

    async def check(self, target: str) -> str:
        """Whether the Page token works for this page (`/{page-id}?fields=id,name`)."""
        graph = self._graphs[target]
        page = await self._call(target, False, lambda: graph.get_object(target, fields="id,name"))
        return f"Page {page.get('name', '?')!r} ({page.get('id', target)}) with Graph API {self.settings.graph_version}"

    async def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def _translate(self, exc: Exception, page: str, sending: bool) -> Exception:
        """facebook-sdk's or requests' exception as one of the core's."""
        if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
            return Transient(f"Facebook unreachable: {type(exc).__name__}")  # the request never left
        if isinstance(exc, requests.RequestException | KeyError) or (
            isinstance(exc, facebook.GraphAPIError) and exc.code is None
        ):
            # A timeout, a cut connection, an answer that is not JSON, or one without a
            # Content-Type (facebook-sdk's KeyError): Facebook may have taken the post.
            what = f"{type(exc).__name__}: {exc}"
            if sending:
                return MaybeSent(f"Facebook gave no clear answer after the post was sent ({what}): check the page")
            return Transient(f"Facebook gave no clear answer ({what})")
        if not isinstance(exc, facebook.GraphAPIError):
            return MaybeSent(f"{type(exc).__name__}: {exc}") if sending else Transient(str(exc))
        code, text = int(exc.code), f"Facebook error {exc.code}: {exc.message}"
        if code == 190:
            return AuthFailed(
                f"{text}. The Page access token for {page} expired or was revoked: get a new one "
                f"(Graph API Explorer or /me/accounts, with pages_manage_posts and pages_read_engagement) "
                f"and set it in {TOKEN_ENV} or the target's token_env"
            )
        if code in RATE_LIMITS:
            return Transient(text, retry_after=self._regain_seconds() or RATE_BACKOFF)
        if code == POLICY_BLOCK:
            return Transient(f"{text} (blocked for now: waiting hours, not minutes)", retry_after=POLICY_BACKOFF)
        if code == DUPLICATE or code in AMBIGUOUS or self._status() >= 500:
            if sending:
                return MaybeSent(f"{text}: the post may be on the page already")
            return Transient(text)
        return Rejected(text)

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


def _regain_minutes(usage: Any) -> list[float]:
    """Every `estimated_time_to_regain_access` in a usage header (flat or per business)."""
    if isinstance(usage, dict):
        found = [float(usage["estimated_time_to_regain_access"])] if "estimated_time_to_regain_access" in usage else []
        for value in usage.values():
            found.extend(_regain_minutes(value))
        return found
    if isinstance(usage, list):
        return [minutes for entry in usage for minutes in _regain_minutes(entry)]
    return []


_LINK = re.compile(r"https?://\S+")


def _tracked_link(message: RenderedMessage) -> str | None:
    """The tracked short link in the text, which Facebook gets as the post's link too."""
    if not message.link_code:
        return None
    for url in _LINK.findall(message.text):
        if url.rstrip(".,)").endswith(f"/r/{message.link_code}"):
            return str(url.rstrip(".,)"))
    return None


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
)
