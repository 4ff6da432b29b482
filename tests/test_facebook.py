"""The Facebook adapter through the real facebook-sdk against the Graph emulator: one table of outcomes.

Each row scripts the emulated Graph API, sends one message through `FacebookChannel`,
and states what the core must see (a `Sent` with the exact id, or the exact error
with its key fields) and how many posts the page holds afterwards: an ambiguous
failure is looked up on the page, never posted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from channels import build_routing
from channels.facebook import FacebookChannel, FacebookSettings
from outreach.channel import AuthFailed, ChannelError, MaybeSent, Rejected, RenderedMessage, Sent, Transient
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch import SendReport, send_pending
from outreach.models import Delivery, DeliveryStatus, Item, Source
from outreach.sandbox import Fault, GraphEmulator
from outreach.sandbox.faults import FaultKind
from outreach.sandbox.graph import page_usage
from tests.conftest import announce, free_port

NOW = 1_800_000_000.0  # Friday, 15-Jan-27 08:00:00 UTC
PAGE = "1029384756"
PAGE_NAME = "Cổng thông tin điện tử tỉnh Quảng Ngãi"
OTHER_PAGE = "5647382910"
TOKEN = "EAAGportalPageToken0123456789abcdefXYZ"
OTHER_TOKEN = "EAAGinvestorsPageToken9876543210fedcbaQ"
TOKEN_ENV = "OUTREACH_FB_TOKEN_PORTAL"
CODE = "Ab3dE5gH7k"
LINK = f"https://go.quangngai.gov.vn/r/{CODE}"
TEXT = f"Hướng dẫn hoàn thuế giá trị gia tăng năm 2027.\n\n👉 Xem chi tiết: {LINK}"
IMAGE = "https://quangngai.gov.vn/anh/hoan-thue.jpg"
TIMEOUT = 0.5  # the adapter's timeout
HANG = 0.8  # how long a hanging emulator takes: longer than the timeout


# --- the emulator, one per module ------------------------------------------------------------


@pytest.fixture(scope="module")
def graph_server() -> Iterator[GraphEmulator]:
    """One server for the module: starting and stopping uvicorn per test is slow."""
    with GraphEmulator(clock=lambda: NOW) as emulator:
        yield emulator


@pytest.fixture
def graph(graph_server: GraphEmulator) -> GraphEmulator:
    graph_server.reset()
    graph_server.add_page(PAGE, PAGE_NAME, TOKEN)
    graph_server.add_page(OTHER_PAGE, "Quang Ngai for investors", OTHER_TOKEN)
    return graph_server


def channel_for(url: str, version: str | None = None, timeout: float = TIMEOUT) -> FacebookChannel:
    """The real adapter for PAGE (its token in TOKEN_ENV), pointed at `url`."""
    options: dict[str, object] = {"graph_url": url, "timeout_seconds": timeout}
    if version is not None:
        options["graph_version"] = version
    settings = FacebookSettings.model_validate({**options, "targets": [{"id": PAGE, "token_env": TOKEN_ENV}]})
    return FacebookChannel(settings, {PAGE: SecretStr(TOKEN)})


def message(image: bool = False, text: str = TEXT) -> RenderedMessage:
    return RenderedMessage(
        delivery_id=7,
        campaign_id=3,
        channel="facebook",
        target=PAGE,
        language="vi",
        text=text,
        markup="plain",
        link_code=CODE,
        destination="https://quangngai.gov.vn/tin-tuc/hoan-thue-18301.html?utm_medium=social",
        image_url=IMAGE if image else None,
    )


async def _send(channel: FacebookChannel, msg: RenderedMessage) -> Sent:
    try:
        return await channel.send(msg)
    finally:
        await channel.close()


def error_body(code: int, text: str) -> dict[str, object]:
    """Graph's error JSON."""
    return {"error": {"message": text, "type": "OAuthException", "code": code, "fbtrace_id": "AScripted0001"}}


def refuse(code: int, text: str, headers: dict[str, str] | None = None) -> Callable[[GraphEmulator], None]:
    """Graph refuses the post with this error (HTTP 400, as Graph does)."""
    return lambda graph: graph.faults.add(
        Fault("error", status=400, body=error_body(code, text), headers=headers or {}), method="feed"
    )


def fault(
    kind: FaultKind,
    method: str = "feed",
    *,
    seconds: float = 0.0,
    status: int | None = None,
    body: dict[str, object] | None = None,
) -> Callable[[GraphEmulator], None]:
    """The next call of `method` ("feed", "photos", "read_feed", "page") misbehaves."""
    return lambda graph: graph.faults.add(Fault(kind, status=status, body=body, seconds=seconds), method=method)


def prepost(link: str, text: str = TEXT) -> Callable[[GraphEmulator], None]:
    """Someone (an earlier attempt) already posted this to the page, straight over HTTP."""

    def script(graph: GraphEmulator) -> None:
        form = {"message": text, "link": link, "access_token": TOKEN}
        answer = httpx.post(f"{graph.url}/v23.0/{PAGE}/feed", data=form, timeout=2)
        assert answer.json() == {"id": f"{PAGE}_1"}

    return script


def closed_port(_: GraphEmulator) -> str:
    """A loopback port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


def then(*scripts: Callable[[GraphEmulator], object]) -> Callable[[GraphEmulator], None]:
    def script(graph: GraphEmulator) -> None:
        for step in scripts:
            step(graph)

    return script


def rate_limited(code: int, minutes: int) -> Callable[[GraphEmulator], None]:
    """The emulator's own rate-limit error, with X-Page-Usage saying `minutes`."""
    return lambda graph: graph.rate_limited(code, minutes, route="feed")


def buc_usage(minutes: int) -> str:
    """X-Business-Use-Case-Usage: per business id, a list of usages by type."""
    usage = {"call_count": 100, "total_cputime": 12, "total_time": 30, "estimated_time_to_regain_access": minutes}
    return json.dumps({"1234567890": [{"type": "pages", **usage}]})


@dataclass(frozen=True)
class Raised:
    """The exact core error expected, with its key fields."""

    kind: type[ChannelError]
    fragments: tuple[str, ...]
    retry_after: float | None = None
    whole_channel: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    script: Callable[[GraphEmulator], object]  # may return another base URL for the adapter
    expected: Sent | Raised
    posts: int  # on the page afterwards
    calls: tuple[str, ...]  # the adapter's calls, in order ("POST {page}/feed")
    image: bool = False
    extra_posts: tuple[str, ...] = ()  # links of posts on the page that are not ours


def nothing(_: GraphEmulator) -> None:
    pass


POST, LOOKUP, POST_PHOTO = f"POST {PAGE}/feed", f"GET {PAGE}/feed", f"POST {PAGE}/photos"
AMBIGUOUS = "Facebook gave no clear answer after the post was sent"
EXPIRED = (
    "Facebook error 190: Error validating access token: Session has expired on Friday, 15-Jan-27 08:00:00 UTC.",
    f"The Page access token for page {PAGE} has expired or was revoked",
    f"set the new token in {TOKEN_ENV}",
)
RATES = {
    4: "(#4) Application request limit reached",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try again.",
}
POLICY = "(#368) The action attempted has been deemed abusive or is otherwise disallowed"

CASES = [
    Case("feed post", nothing, Sent(f"{PAGE}_1"), 1, (POST,)),
    Case("photo post", nothing, Sent(f"{PAGE}_1"), 1, (POST_PHOTO,), image=True),
    Case("expired token", lambda g: g.expire_token(TOKEN), Raised(AuthFailed, EXPIRED), 0, (POST,)),
    Case(
        "token Facebook does not know",
        then(lambda g: g.reset(), lambda g: g.add_page(PAGE, PAGE_NAME, "EAAGanotherToken")),
        Raised(AuthFailed, ("Facebook error 190: Invalid OAuth access token - Cannot parse access token.", EXPIRED[1])),
        0,
        (POST,),
    ),
    Case(
        "190 quoting the token back",
        refuse(190, f"Malformed access token {TOKEN}"),
        Raised(AuthFailed, ("Facebook error 190: Malformed access token ***. The Page access token for page",)),
        0,
        (POST,),
    ),
    *(
        Case(
            f"rate limit {code}",
            rate_limited(code, minutes),
            # The app's or user's limits hold every page; a Page's own limits hold that page.
            Raised(
                Transient,
                (f"Facebook error {code}: {RATES[code]}",),
                retry_after=minutes * 60.0,
                whole_channel=code in (4, 17, 613),
            ),
            0,
            (POST,),
        )
        for code, minutes in ((4, 2), (17, 3), (32, 5), (613, 7), (80001, 11))
    ),
    Case(
        "rate limit, business use case header",
        refuse(80001, RATES[80001], {"X-Business-Use-Case-Usage": buc_usage(9)}),
        Raised(Transient, (f"Facebook error 80001: {RATES[80001]}",), retry_after=540.0),
        0,
        (POST,),
    ),
    Case(
        "rate limit, both headers: the longer wait",
        refuse(32, RATES[32], {"X-Page-Usage": page_usage(2), "X-Business-Use-Case-Usage": buc_usage(14)}),
        Raised(Transient, (f"Facebook error 32: {RATES[32]}",), retry_after=840.0),
        0,
        (POST,),
    ),
    Case(
        "rate limit without usage headers",
        refuse(613, RATES[613]),
        Raised(Transient, (f"Facebook error 613: {RATES[613]}",), retry_after=300.0, whole_channel=True),
        0,
        (POST,),
    ),
    Case(
        "341 application limit",
        refuse(341, "(#341) Application limit reached"),
        Raised(
            Transient, ("Facebook error 341: (#341) Application limit reached",), retry_after=300.0, whole_channel=True
        ),
        0,
        (POST,),
    ),
    Case(
        "usage header that says nothing usable",
        refuse(32, RATES[32], {"X-Page-Usage": '{"estimated_time_to_regain_access": "soon"}'}),
        Raised(Transient, (f"Facebook error 32: {RATES[32]}",), retry_after=300.0),
        0,
        (POST,),
    ),
    Case(
        "policy block 368",
        refuse(368, POLICY),
        Raised(Transient, (f"Facebook error 368: {POLICY} (blocked for now: waiting hours, not minutes)",), 21600.0),
        0,
        (POST,),
    ),
    Case(
        "100 invalid parameter",
        refuse(100, "(#100) Invalid parameter"),
        Raised(Rejected, ("Facebook error 100: (#100) Invalid parameter",)),
        0,
        (POST,),
    ),
    Case(
        "100 page gone",
        then(lambda g: g.reset(), lambda g: g.add_page("424242", "Another page", TOKEN)),
        Raised(Rejected, (f"Facebook error 100: Unsupported post request. Object with ID '{PAGE}' does not exist",)),
        0,
        (POST,),
    ),
    Case(
        "200 token of another page",
        then(lambda g: g.reset(), lambda g: g.add_page(PAGE, PAGE_NAME, "x"), lambda g: g.add_page("42", "B", TOKEN)),
        Raised(
            AuthFailed,
            (
                "Facebook error 200: (#200) The user hasn't authorized the application to perform this",
                "The token in OUTREACH_FB_TOKEN_PORTAL may not post to page",
            ),
        ),
        0,
        (POST,),
    ),
    Case(
        "506 duplicate, our post is on the page",
        then(prepost(LINK), lambda g: g.duplicate(route="feed")),
        Sent(f"{PAGE}_1"),
        1,
        (POST, LOOKUP),
    ),
    Case(
        "506 duplicate, not on the page",
        lambda g: g.duplicate(route="feed"),
        Raised(MaybeSent, ("Facebook error 506: (#506) Duplicate status message: the post may be on the page",)),
        0,
        (POST, LOOKUP),
    ),
    Case(
        "not JSON (a proxy's 502 page)",
        fault("not_json"),
        Raised(MaybeSent, (AMBIGUOUS, "an answer that is not JSON (HTTP 502)")),
        0,
        (POST, LOOKUP),
    ),
    Case(
        "not JSON with a 4xx: refused in front of Facebook",
        fault("not_json", status=403),
        Raised(Transient, ("Facebook's address answered HTTP 403 with an answer that is not JSON",)),
        0,
        (POST,),
    ),
    Case(
        "no Content-Type",
        fault("no_content_type"),
        Raised(MaybeSent, (AMBIGUOUS, "an answer without a Content-Type (HTTP 200)")),
        0,
        (POST, LOOKUP),
    ),
    Case(
        "connection refused",
        closed_port,
        Raised(Transient, ("Facebook unreachable: ConnectionError",), whole_channel=True),
        0,
        (),
    ),
    Case(
        "timeout before the post was accepted",
        fault("hang", seconds=HANG),
        Raised(MaybeSent, (AMBIGUOUS, f"ReadTimeout, no answer within {TIMEOUT} s")),
        0,
        (POST, LOOKUP),
    ),
    Case(
        "timeout after the post was accepted",
        fault("accept_then_hang", seconds=HANG),
        Sent(f"{PAGE}_1"),
        1,
        (POST, LOOKUP),
    ),
    Case(
        "photo: timeout after it was accepted",
        fault("accept_then_hang", method="photos", seconds=HANG),
        Sent(f"{PAGE}_1"),
        1,
        (POST_PHOTO, LOOKUP),
        image=True,
    ),
    Case(
        "accepted without an id",
        fault("error", status=200, body={"success": True}),
        Raised(MaybeSent, ("Facebook accepted the post without saying its id ({'success': True})",)),
        0,
        (POST, LOOKUP),
    ),
    Case("5xx after the post was accepted", fault("accept_then_error"), Sent(f"{PAGE}_1"), 1, (POST, LOOKUP)),
    Case(
        "5xx before the post was accepted",
        fault("error", status=503),
        Raised(MaybeSent, ("Facebook error 2: An unexpected error has occurred. Please retry your request later.",)),
        0,
        (POST, LOOKUP),
    ),
    Case(
        "accepted, and the lookup times out too: never posted twice",
        then(fault("accept_then_hang", seconds=HANG), fault("hang", method="read_feed", seconds=HANG)),
        Raised(MaybeSent, (AMBIGUOUS,)),
        1,
        (POST, LOOKUP),
    ),
    Case(
        "a post whose link only starts with ours is not ours",
        then(prepost(LINK + "Q", text=f"Tin khác: {LINK}Q"), fault("hang", seconds=HANG)),
        Raised(MaybeSent, (AMBIGUOUS,)),
        1,
        (POST, LOOKUP),
        extra_posts=(LINK + "Q",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_send(case: Case, graph: GraphEmulator, caplog: pytest.LogCaptureFixture) -> None:
    url = case.script(graph) or graph.url
    before = len(graph.requests)
    caplog.set_level(logging.DEBUG)

    outcome: Sent | ChannelError
    try:
        outcome = asyncio.run(_send(channel_for(str(url)), message(case.image)))
    except ChannelError as exc:
        outcome = exc

    if isinstance(case.expected, Sent):
        assert outcome == case.expected
    else:
        assert type(outcome) is case.expected.kind, outcome
        for fragment in case.expected.fragments:
            assert fragment in str(outcome)
        if isinstance(outcome, Transient):
            assert outcome.retry_after == case.expected.retry_after
        if isinstance(outcome, AuthFailed | Transient):
            assert outcome.whole_channel is case.expected.whole_channel
        assert TOKEN not in str(outcome)
    calls = [f"{method} {path}" for method, _, path in graph.requests[before:]]
    assert calls == list(case.calls)
    posts = graph.posts(PAGE)
    assert len(posts) == case.posts
    ours = [post for post in posts if post.link not in case.extra_posts]
    if case.posts > len(case.extra_posts):
        (post,) = ours
        assert (post.message, post.link, post.photo_url) == (
            TEXT,
            None if case.image else LINK,
            IMAGE if case.image else None,
        )
    assert graph.posts(OTHER_PAGE) == []
    if case.calls:  # urllib3 logged its connections at DEBUG, so the next check means something
        assert any(record.name == "urllib3.connectionpool" for record in caplog.records)
    assert TOKEN not in caplog.text


# --- the Graph version --------------------------------------------------------------------------


@pytest.mark.parametrize(("configured", "used"), [(None, "v23.0"), ("v25.0", "v25.0")])
def test_graph_version_from_config(graph: GraphEmulator, configured: str | None, used: str) -> None:
    channel = channel_for(graph.url, version=configured)
    assert channel.where == f"Graph API {used} at {graph.url}"

    sent = asyncio.run(_send(channel, message()))

    assert sent == Sent(f"{PAGE}_1")
    assert graph.requests == [("POST", used, f"{PAGE}/feed")]
    assert [post.version for post in graph.posts(PAGE)] == [used]


# --- check ------------------------------------------------------------------------------------------


async def _check(channel: FacebookChannel) -> str:
    try:
        return await channel.check(PAGE)
    finally:
        await channel.close()


def test_check_names_the_page(graph: GraphEmulator) -> None:
    said = asyncio.run(_check(channel_for(graph.url, version="v25.0")))
    assert said == f"Page '{PAGE_NAME}' ({PAGE}) with Graph API v25.0"
    assert graph.requests == [("GET", "v25.0", PAGE), ("GET", "v25.0", "me")]


def test_check_refuses_a_token_that_speaks_for_another_page(graph: GraphEmulator) -> None:
    graph.reset()
    graph.add_page(PAGE, PAGE_NAME, "EAAother-page-token-000")
    graph.add_page("42", "Sở Tài chính", TOKEN)  # the configured variable holds page 42's token
    with pytest.raises(AuthFailed) as raised:
        asyncio.run(_check(channel_for(graph.url)))
    assert str(raised.value) == (
        f"the token in OUTREACH_FB_TOKEN_PORTAL is not page {PAGE}'s Page token (it speaks for "
        "'Sở Tài chính', 42): take the page's own token from GET /me/accounts"
    )


def test_check_with_an_expired_token(graph: GraphEmulator) -> None:
    graph.expire_token(TOKEN)
    with pytest.raises(AuthFailed) as raised:
        asyncio.run(_check(channel_for(graph.url)))
    assert raised.value.whole_channel is False
    assert all(fragment in str(raised.value) for fragment in EXPIRED)
    assert TOKEN not in str(raised.value)


def test_check_times_out(graph: GraphEmulator) -> None:
    graph.faults.add(Fault("hang", seconds=HANG), method="page")
    with pytest.raises(
        Transient, match=rf"Facebook gave no clear answer \(ReadTimeout, no answer within {TIMEOUT} s\)"
    ):
        asyncio.run(_check(channel_for(graph.url)))


# --- threads, and answers cut short ----------------------------------------------------------------


def test_the_event_loop_runs_while_facebook_hangs(graph: GraphEmulator) -> None:
    graph.faults.add(Fault("hang", seconds=HANG), method="feed")
    ticks: list[float] = []

    async def main() -> None:
        sending = asyncio.create_task(_send(channel_for(graph.url), message()))
        while not sending.done():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
        with pytest.raises(MaybeSent):
            await sending

    asyncio.run(main())
    assert ticks[-1] - ticks[0] >= TIMEOUT * 0.8  # the send took (about) the whole timeout...
    assert (
        max(later - earlier for earlier, later in itertools.pairwise(ticks)) < TIMEOUT / 2
    )  # ...and never held the loop


@contextlib.contextmanager
def cutting_server() -> Iterator[str]:
    """Reads each request, then closes the connection without a word (as a crashed proxy does)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


def test_a_connection_cut_after_the_request_went_out_may_have_posted() -> None:
    with cutting_server() as url, pytest.raises(MaybeSent) as raised:
        asyncio.run(_send(channel_for(url), message()))
    # The peer closing mid-answer reads as RemoteDisconnected or as a reset, by timing: both "aborted".
    assert "ConnectionError: ('Connection aborted.', " in str(raised.value)
    assert str(raised.value).startswith("Facebook gave no clear answer after the post was sent (")


# --- through the dispatcher ---------------------------------------------------------------------------


def two_pages(make_settings: Callable[..., Settings], url: str) -> Settings:
    facebook = {
        "graph_url": url,
        "graph_version": "v24.0",
        "timeout_seconds": TIMEOUT,
        "targets": [
            {"id": PAGE, "name": PAGE_NAME, "token_env": TOKEN_ENV},
            {"id": OTHER_PAGE, "name": "Investors", "token_env": "OUTREACH_FB_TOKEN_INVESTORS"},
        ],
    }
    env = {TOKEN_ENV: TOKEN, "OUTREACH_FB_TOKEN_INVESTORS": OTHER_TOKEN}
    return make_settings(env=env, channels={"facebook": facebook})


def queue_item(store: Store, settings: Settings) -> None:
    with store.sessions.begin() as session:
        source = Source(name="portal-vi", url="https://quangngai.gov.vn/rss/tin-tuc.rss", language="vi")
        item = Item(
            source=source,
            guid="vi-1",
            url="https://quangngai.gov.vn/tin-tuc/hoan-thue-18301.html",
            title="Hướng dẫn hoàn thuế giá trị gia tăng",
            summary="Doanh nghiệp & hộ kinh doanh nộp hồ sơ trực tuyến.",
            published_at=datetime(2026, 11, 27, 1, 30, tzinfo=UTC),
            language="vi",
            topics=["tax"],
        )
        session.add(item)
        session.flush()
        announce(session, settings, item.id)


def test_an_expired_page_token_pauses_only_that_page(
    graph: GraphEmulator,
    sqlite_store: Store,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = two_pages(make_settings, graph.url)
    queue_item(sqlite_store, settings)
    graph.expire_token(TOKEN)
    routing = build_routing(settings)
    assert [(route.target, route.transport.name) for route in routing] == [(PAGE, "facebook"), (OTHER_PAGE, "facebook")]
    caplog.set_level(logging.DEBUG)

    async def run() -> SendReport:
        try:
            return await send_pending(sqlite_store, routing, now=lambda: datetime(2030, 11, 27, 3, 0, tzinfo=UTC))
        finally:
            await routing.close()

    report = asyncio.run(run())

    with sqlite_store.sessions() as session:
        rows = {d.target: d for d in session.scalars(select(Delivery))}
    paused, other = rows[PAGE], rows[OTHER_PAGE]
    assert (other.status, other.platform_id, other.attempts) == (DeliveryStatus.sent, f"{OTHER_PAGE}_1", 1)
    assert (paused.status, paused.attempts, paused.next_attempt_at, paused.platform_id) == (
        DeliveryStatus.pending,
        0,
        None,
        None,
    )
    assert paused.last_error is not None
    assert all(fragment in paused.last_error for fragment in EXPIRED)
    assert report.paused == {("facebook", PAGE): paused.last_error}
    assert (report.sent, report.retrying, report.unknown, report.failed) == (1, 0, 0, 0)
    assert graph.posts(PAGE) == []
    (posted,) = graph.posts(OTHER_PAGE)
    assert other.link_code is not None
    assert (posted.version, posted.message, posted.link) == (
        "v24.0",
        other.text,
        f"https://go.quangngai.gov.vn/r/{other.link_code}",
    )
    # The token is nowhere: not in the logs, not in the stored error, not in the database files.
    assert f"/v24.0/{PAGE}/feed" in caplog.text
    assert TOKEN not in caplog.text
    assert OTHER_TOKEN not in caplog.text
    for db_file in tmp_path.glob("outreach.db*"):
        assert TOKEN.encode() not in db_file.read_bytes()
