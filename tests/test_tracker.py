"""The tracker: a real uvicorn server on loopback, its click log, and the report over it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import func, select

from channels import build_routing
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch import send_pending
from outreach.models import Click, ClickKind, Delivery, DeliveryStatus, Item, Link, Source
from outreach.reports import build_report
from outreach.serve import BackgroundServer
from outreach.tracking import network_hash, parse_address, referrer_host
from outreach.web import create_app
from tests.conftest import announce, base_config

NOW = datetime(2030, 11, 27, 3, 0, tzinfo=UTC)  # after any campaign a test approves (now)
SALT = b"test-salt-for-click-hashes-000000"
BROWSER = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36"
)
FB_IN_APP = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/480.0.0.33.109;FBBV/640000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBCR/;FBID/phone;FBLC/vi_VN;FBOP/5]"
)


def ip_hash(address: str | None, salt: bytes = SALT) -> str | None:
    """What the tracker stores for a client at this address."""
    return network_hash(parse_address(address), salt)


def make_campaign(store: Store, settings: Settings, language: str = "vi") -> dict[str, str]:
    """Store an item, queue a campaign for it; return each channel's link code."""
    with store.sessions.begin() as session:
        source = Source(name=f"portal-{language}", url="https://quangngai.gov.vn/rss/tin-tuc.rss", language=language)
        item = Item(
            source=source,
            guid=f"{language}-1",
            url=f"https://quangngai.gov.vn/tin-tuc/{language}/dau-tu-18310.html",
            title="Xúc tiến đầu tư năm 2027" if language == "vi" else "Investment promotion 2027",
            summary="",
            published_at=NOW,
            language=language,
        )
        session.add(item)
        session.flush()
        created = announce(session, settings, item.id)
        return {d.channel: d.link_code or "" for d in created}


@dataclass
class Tracker:
    store: Store
    http: httpx.Client
    codes: dict[str, str]

    def clicks(self) -> list[Click]:
        with self.store.sessions() as session:
            return list(session.scalars(select(Click).order_by(Click.id)))

    def destination(self, code: str) -> str:
        with self.store.sessions() as session:
            return session.get_one(Link, code).destination


def run_tracker(store: Store, settings: Settings) -> Iterator[Tracker]:
    codes = make_campaign(store, settings)
    app = create_app(store, settings.schedule.tracker, settings.click_spool, salt=SALT, clock=lambda: NOW)
    with BackgroundServer(app) as server:
        assert server.host == "127.0.0.1"
        with httpx.Client(base_url=server.url, follow_redirects=False, timeout=5) as http:
            yield Tracker(store, http, codes)


@pytest.fixture
def tracker(sqlite_store: Store, make_settings: Callable[..., Settings]) -> Iterator[Tracker]:
    yield from run_tracker(sqlite_store, make_settings())


@pytest.fixture
def tracker_behind_proxy(sqlite_store: Store, make_settings: Callable[..., Settings]) -> Iterator[Tracker]:
    settings = make_settings(tracker=base_config()["tracker"] | {"trusted_proxies": ["127.0.0.0/8"]})
    yield from run_tracker(sqlite_store, settings)


@pytest.fixture
def tracker_on_each_db(store: Store, make_settings: Callable[..., Settings]) -> Iterator[Tracker]:
    yield from run_tracker(store, make_settings())


# --- redirects over HTTP -----------------------------------------------------


def test_click_redirects_and_is_recorded(tracker_on_each_db: Tracker) -> None:
    tracker = tracker_on_each_db
    code = tracker.codes["facebook"]
    response = tracker.http.get(
        f"/r/{code}", headers={"User-Agent": BROWSER, "Referer": "https://m.facebook.com/story.php?story_fbid=1&id=2"}
    )

    assert response.status_code == 302
    assert response.headers["location"] == tracker.destination(code)
    assert response.headers["location"].startswith(
        "https://quangngai.gov.vn/tin-tuc/vi/dau-tu-18310.html?utm_source=facebook"
    )
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "server" not in response.headers
    (click,) = tracker.clicks()
    assert click.code == code
    assert click.kind == ClickKind.human
    assert click.at == NOW
    assert click.user_agent == BROWSER
    assert click.referrer_host == "m.facebook.com"  # no path, no query
    assert click.ip_hash == ip_hash("127.0.0.1", SALT)
    assert click.ip_hash is not None
    assert len(click.ip_hash) == 32
    assert int(click.ip_hash, 16) >= 0


@pytest.mark.parametrize(
    ("user_agent", "kind"),
    [
        ("TelegramBot (like TwitterBot)", ClickKind.preview),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", ClickKind.preview),
        (FB_IN_APP, ClickKind.human),
        (BROWSER, ClickKind.human),
        ("curl/8.5.0", ClickKind.bot),
    ],
)
def test_click_kind_follows_the_user_agent(tracker: Tracker, user_agent: str, kind: ClickKind) -> None:
    response = tracker.http.get(f"/r/{tracker.codes['telegram_channel']}", headers={"User-Agent": user_agent})
    assert response.status_code == 302  # previews get the redirect too, so cards show the article
    assert [(c.kind, c.user_agent) for c in tracker.clicks()] == [(kind, user_agent)]


def test_head_redirects_without_counting(tracker: Tracker) -> None:
    code = tracker.codes["telegram_channel"]
    response = tracker.http.head(f"/r/{code}", headers={"User-Agent": BROWSER})
    assert response.status_code == 302
    assert response.headers["location"] == tracker.destination(code)
    assert tracker.clicks() == []


def test_unknown_code_is_a_404_page_not_a_redirect(tracker: Tracker) -> None:
    response = tracker.http.get("/r/ZZZZzzzz9999", headers={"User-Agent": BROWSER})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "Không tìm thấy liên kết" in response.text
    assert response.headers["cache-control"] == "no-store"
    assert tracker.clicks() == []


@pytest.mark.parametrize(
    "path",
    [
        "/r/abc!def123",
        "/r/short",
        "/r/" + "a" * 33,
        "/r/..%2F..%2Fetc%2Fpasswd",
        "/r/%2e%2e%2fhealthz",
        "/r/https:%2F%2Fevil.example%2F",
        "/r/ABCDEFGH%00",
    ],
)
def test_malformed_codes_and_traversal_get_404(tracker: Tracker, path: str) -> None:
    response = tracker.http.get(path, headers={"User-Agent": BROWSER})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert tracker.clicks() == []


def test_client_behind_a_trusted_proxy_is_hashed_by_its_own_address(tracker_behind_proxy: Tracker) -> None:
    tracker = tracker_behind_proxy  # 127.0.0.0/8 trusted, as nginx on the same machine
    code = tracker.codes["facebook"]
    forwarded = [
        {"X-Forwarded-For": "113.161.72.14"},
        {"X-Forwarded-For": "203.0.113.9, 113.161.72.14, 127.0.0.1"},  # the nearest untrusted hop is the client
        {"Forwarded": 'for="[2001:ee0:4f1a:1::1]:4711";proto=https'},
        {"Forwarded": "for=unknown"},  # nothing better than the proxy itself
        # nginx sets X-Forwarded-For and passes the client's own Forwarded through: XFF wins.
        {"X-Forwarded-For": "113.161.72.14", "Forwarded": "for=198.51.100.77"},
    ]
    for headers in forwarded:
        assert tracker.http.get(f"/r/{code}", headers={"User-Agent": BROWSER, **headers}).status_code == 302
    assert [c.ip_hash for c in tracker.clicks()] == [
        ip_hash("113.161.72.200"),
        ip_hash("113.161.72.200"),
        ip_hash("2001:ee0:4f1a:ffff::2"),
        ip_hash("127.0.0.1"),
        ip_hash("113.161.72.14"),
    ]


def test_forwarding_headers_from_anyone_else_are_ignored(tracker: Tracker) -> None:
    code = tracker.codes["facebook"]
    for headers in ({"X-Forwarded-For": "113.161.72.14"}, {"Forwarded": "for=113.161.72.14"}):
        assert tracker.http.get(f"/r/{code}", headers={"User-Agent": BROWSER, **headers}).status_code == 302
    assert [c.ip_hash for c in tracker.clicks()] == [ip_hash("127.0.0.1")] * 2


def test_malformed_referer_does_not_break_the_redirect(tracker: Tracker) -> None:
    code = tracker.codes["facebook"]
    response = tracker.http.get(f"/r/{code}", headers={"User-Agent": BROWSER, "Referer": "http://[::1/"})
    assert response.status_code == 302
    assert response.headers["location"] == tracker.destination(code)
    assert [c.referrer_host for c in tracker.clicks()] == [None]


def test_overlong_referrer_host_does_not_break_the_redirect(tracker_on_each_db: Tracker) -> None:
    tracker = tracker_on_each_db
    code = tracker.codes["facebook"]
    response = tracker.http.get(
        f"/r/{code}", headers={"User-Agent": BROWSER, "Referer": "https://" + "a" * 300 + ".example/"}
    )
    assert response.status_code == 302
    assert response.headers["location"] == tracker.destination(code)
    (click,) = tracker.clicks()
    assert click.kind == ClickKind.human
    assert click.referrer_host is None  # longer than any DNS name: not kept


def test_healthz(tracker: Tracker) -> None:
    response = tracker.http.get("/healthz")
    assert response.status_code == 200
    health = response.json()
    assert (health["status"], health["database"], health["spooled"]) == ("ok", "ok", 0)
    assert health["links_total"] == health["links_known"] == len(tracker.codes)


# --- classification and hashing ----------------------------------------------


def test_ip_hash_names_a_network_not_a_person() -> None:
    same = ip_hash("113.161.72.14")
    assert same is not None
    assert len(same) == 32
    assert ip_hash("113.161.72.200", SALT) == same  # same /24
    assert ip_hash("113.161.73.14", SALT) != same  # next /24
    assert ip_hash("113.161.72.14", b"another-salt") != same
    assert ip_hash("[2001:ee0:4f1a::1]:443") == ip_hash("2001:ee0:4f1a::9")  # as a Forwarded header writes it
    assert ip_hash("113.161.72.14:55012") == same
    assert ip_hash("2001:ee0:4f1a:1::1", SALT) == ip_hash("2001:ee0:4f1a:ffff::2", SALT)  # same /48
    assert ip_hash("2001:ee0:4f1b::1", SALT) != ip_hash("2001:ee0:4f1a::1", SALT)
    assert ip_hash(None, SALT) is None
    assert ip_hash("not-an-ip", SALT) is None


def test_ip_hash_treats_ipv4_mapped_addresses_as_ipv4() -> None:
    assert ip_hash("::ffff:113.161.72.14", SALT) == ip_hash("113.161.72.14", SALT)
    assert ip_hash("::ffff:113.161.72.14", SALT) != ip_hash("::ffff:8.8.8.8", SALT)


def test_referrer_host_keeps_only_the_host() -> None:
    assert referrer_host("https://l.facebook.com/l.php?u=https%3A%2F%2Fgo.quangngai.gov.vn") == "l.facebook.com"
    assert referrer_host(None) is None
    assert referrer_host("") is None


# --- the report over the logs ------------------------------------------------


def test_report_counts_deliveries_and_clicks_per_channel_and_campaign(
    store: Store, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    vi = make_campaign(store, settings, "vi")
    asyncio.run(send_pending(store, build_routing(settings), now=lambda: NOW))  # the vi campaign goes out
    en = make_campaign(store, settings, "en")  # queued, not sent
    with store.sessions() as session:
        vi_campaign, en_campaign = sorted(set(session.scalars(select(Delivery.campaign_id))))
        assert (
            session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.sent))
            == 2
        )

    taps = [
        (vi["facebook"], BROWSER),
        (vi["facebook"], FB_IN_APP),
        (vi["facebook"], "facebookexternalhit/1.1"),
        (vi["telegram_channel"], BROWSER),
        (vi["telegram_channel"], "TelegramBot (like TwitterBot)"),
        (en["telegram_channel"], BROWSER),
        (en["telegram_channel"], "curl/8.5.0"),
    ]
    with (
        BackgroundServer(create_app(store, settings.schedule.tracker, settings.click_spool, salt=SALT)) as server,
        httpx.Client(base_url=server.url, follow_redirects=False) as http,
    ):
        for code, agent in taps:
            assert http.get(f"/r/{code}", headers={"User-Agent": agent}).status_code == 302
        assert http.head(f"/r/{vi['facebook']}").status_code == 302  # not a click

    with store.sessions() as session:
        report = build_report(session)

    assert list(report.channels) == ["facebook", "telegram_channel"]
    facebook, telegram = report.channels["facebook"], report.channels["telegram_channel"]
    assert facebook.deliveries == {DeliveryStatus.sent: 1, DeliveryStatus.pending: 1}
    assert (facebook.sent, facebook.waiting, facebook.visits, facebook.previews, facebook.bots) == (1, 1, 2, 1, 0)
    assert (facebook.visitors, facebook.repeats) == (2, 0)  # two agents from one network: two visitors
    assert telegram.clicks == {ClickKind.human: 2, ClickKind.preview: 1, ClickKind.bot: 1}
    assert (telegram.visits, telegram.previews, telegram.bots) == (2, 1, 1)

    assert list(report.campaigns) == [vi_campaign, en_campaign]
    assert report.campaigns[vi_campaign].deliveries == {DeliveryStatus.sent: 2}
    assert (report.campaigns[vi_campaign].visits, report.campaigns[vi_campaign].previews) == (3, 2)
    assert report.campaigns[en_campaign].deliveries == {DeliveryStatus.pending: 2}
    assert (report.campaigns[en_campaign].visits, report.campaigns[en_campaign].bots) == (1, 1)
    assert report.campaign_titles == {vi_campaign: "Xúc tiến đầu tư năm 2027", en_campaign: "Investment promotion 2027"}
    total = report.total
    assert (total.sent, total.waiting, total.problems, total.visits, total.previews, total.bots) == (2, 2, 0, 4, 2, 1)
