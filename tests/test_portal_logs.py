"""The portal's access logs as evidence (`outreach/portal_logs.py`), on SQLite and PostgreSQL.

Logs are written here line by line, so each expectation sits next to the line it is about.
"""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from outreach import portal_logs
from outreach.agents import Classifier
from outreach.db import Store
from outreach.models import Campaign, ClickKind, LogImport, PortalHit, PortalVisitor
from outreach.portal_logs import (
    ImportResult,
    LogImportError,
    PortalDay,
    import_log,
    parse_line,
    portal_hits,
    social_channel,
    utm_channel,
)

HUMAN, PREVIEW, BOT, HEAD = ClickKind.human, ClickKind.preview, ClickKind.bot, ClickKind.head
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SALT = b"an install's OUTREACH_CLICK_SALT"
DAY = date(2026, 10, 10)
AT = "10/Oct/2026:13:55:36 +0700"

ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; SM-A546E) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36"
)
WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
FB_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/470.0.0.42.109;FBBV/610000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBLC/vi_VN]"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FACEBOOK_CARD = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
CURL = "curl/8.5.0"

FB_UTM = "utm_source=facebook&utm_medium=social&utm_campaign=outreach-12"
TG_UTM = "utm_source=telegram_channel&utm_medium=social&utm_campaign=outreach-12"


def entry(
    host: str = "203.0.113.7",
    path: str = f"/tin-tuc/thue.html?{FB_UTM}",
    *,
    at: str = AT,
    method: str = "GET",
    status: int = 200,
    referer: str = "-",
    agent: str = ANDROID,
    extra: str = "",
) -> bytes:
    """One line in nginx's and Apache's combined format."""
    line = f'{host} - - [{at}] "{method} {path} HTTP/1.1" {status} 5120 "{referer}" "{agent}"{extra}\n'
    return line.encode()


def write(path: Path, *lines: bytes, compress: bool = False) -> Path:
    content = b"".join(lines)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier()


@pytest.fixture
def run(store: Store, classifier: Classifier) -> Any:
    """import_log with the test's store, zone, salt and classifier."""

    def go(path: Path, **options: Any) -> ImportResult:
        options.setdefault("salt", SALT)
        return import_log(store, path, ZONE, classifier=classifier, **options)

    return go


def stored(store: Store) -> dict[tuple[date, str, ClickKind], tuple[int, int]]:
    """portal_hits as {(day, channel, kind): (hits, visitors)}."""
    with store.sessions() as session:
        rows = session.execute(
            select(PortalHit.day, PortalHit.channel, PortalHit.kind, PortalHit.hits, PortalHit.visitors)
        )
        return {(day, channel, kind): (hits, visitors) for day, channel, kind, hits, visitors in rows}


def row_counts(store: Store) -> tuple[int | None, ...]:
    """Rows in log_imports, portal_hits and portal_visitors."""
    with store.sessions() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model)) for model in (LogImport, PortalHit, PortalVisitor)
        )


# --- a sample day -------------------------------------------------------------------------

SAMPLE = [
    # people from our tracked links: two on one /24 with one agent are one visitor
    entry("203.0.113.7"),
    entry("203.0.113.99", "/tin-tuc/dau-tu.html?" + FB_UTM),
    entry("203.0.113.99", agent=FB_IPHONE),  # same network, another agent: another visitor
    # IPv6: one /48, one agent, one visitor; telegram_channel from utm_source
    entry("2001:db8:1:2::5", f"/?{TG_UTM}"),
    entry("2001:db8:1:ff::9", f"/thu-tuc?{TG_UTM}", agent=ANDROID),
    # a QR poster, tagged with the qr medium and a campaign of the page's own
    entry("198.51.100.20", "/?utm_source=qr&utm_medium=qr&utm_campaign=poster-2026"),
    # shared by people themselves: the referrer says where from (subdomains included)
    entry("198.51.100.1", "/tin-tuc/a.html", referer="https://l.facebook.com/l.php?u=https%3A%2F%2Fportal"),
    entry("198.51.100.2", "/tin-tuc/a.html", referer="https://t.me/quangngai_news/12", agent=WINDOWS),
    entry("198.51.100.3", "/tin-tuc/a.html", referer="https://chat.zalo.me/", agent=FB_IPHONE),
    # Vietnamese in the path, raw UTF-8 as some servers write it; our tags win over the referrer
    entry(
        "198.51.100.4",
        "/tin-tức/hỗ-trợ-doanh-nghiệp?utm_source=zalo&utm_medium=social&utm_campaign=outreach-7",
        referer="https://www.facebook.com/",
    ),
    # not people: a search engine, a link card, a tool, a HEAD
    entry("66.249.66.1", f"/?{FB_UTM}", agent=GOOGLEBOT),
    entry("173.252.127.1", f"/?{FB_UTM}", agent=FACEBOOK_CARD),
    entry("192.0.2.50", f"/?{FB_UTM}", agent=CURL),
    entry("192.0.2.51", f"/?{FB_UTM}", method="HEAD"),
    # not from us: no tags, a search engine's referrer, the portal's own newsletter, a look-alike host
    entry("192.0.2.60", "/tin-tuc/a.html"),
    entry("192.0.2.61", "/tin-tuc/a.html", referer="https://www.google.com/"),
    entry("192.0.2.62", "/?utm_source=newsletter&utm_medium=email&utm_campaign=thang-10"),
    entry("192.0.2.63", "/", referer="https://notfacebook.com/"),
    # ours but not served: the redirect is followed by a request that counts; an error page is no visit
    entry("192.0.2.70", f"/old?{FB_UTM}", status=301),
    entry("192.0.2.71", f"/gone?{FB_UTM}", status=404),
    # malformed: counted and skipped
    b"this is not an access log line\n",
    b'203.0.113.7 - - [10/Oct/2026:13:55:36 +0700] "GET /truncated HTTP/1.1" 200\n',
    entry(at="32/Oct/2026:13:55:36 +0700"),
    entry(at="10/Okt/2026:13:55:36 +0700"),
    b"\n",  # blank: no line at all
]


def test_a_sample_log_keeps_outreach_hits_per_day_channel_and_kind(store: Store, run: Any, tmp_path: Path) -> None:
    result = run(write(tmp_path / "access.log", *SAMPLE))

    assert (result.lines, result.malformed, result.first_malformed) == (24, 4, 21)
    assert result.unserved == 2
    assert result.kept == 14
    assert result.people == {"facebook": 4, "telegram_channel": 2, "qr": 1, "telegram": 1, "zalo": 2}
    assert result.by_kind == {HUMAN: 10, BOT: 2, PREVIEW: 1, HEAD: 1}
    assert result.first_at == result.last_at == datetime(2026, 10, 10, 6, 55, 36, tzinfo=UTC)
    assert result.imported_at is not None
    assert not result.already_imported
    assert stored(store) == {
        (DAY, "facebook", HUMAN): (4, 3),  # 3 utm (two visitors on one /24 + another agent), 1 l.facebook.com
        (DAY, "telegram_channel", HUMAN): (2, 1),
        (DAY, "qr", HUMAN): (1, 1),
        (DAY, "telegram", HUMAN): (1, 1),
        (DAY, "zalo", HUMAN): (2, 2),
        (DAY, "facebook", BOT): (2, 2),  # Googlebot and curl
        (DAY, "facebook", PREVIEW): (1, 1),
        (DAY, "facebook", HEAD): (1, 1),
    }
    with store.sessions() as session:
        row = session.scalars(select(LogImport)).one()
        assert (row.name, row.lines, row.kept, row.malformed) == (str(tmp_path / "access.log"), 24, 14, 4)
        assert row.sha256 == result.sha256
        assert row.size == len(b"".join(SAMPLE))
        # hashes only: no address, no agent anywhere
        assert all(len(v) == 32 for v in session.scalars(select(PortalVisitor.visitor)))


def test_a_local_day_is_the_install_zone_s_day(store: Store, run: Any, tmp_path: Path) -> None:
    run(
        write(
            tmp_path / "access.log",
            entry(at="10/Oct/2026:16:59:59 +0000"),  # 23:59:59 in Quảng Ngãi
            entry(at="10/Oct/2026:23:30:00 +0000"),  # 06:30 the next morning there
            entry(at="11/Oct/2026:06:30:00 +0700"),  # the same moment, written by a server on local time
        )
    )
    assert stored(store) == {
        (DAY, "facebook", HUMAN): (1, 1),
        (date(2026, 10, 11), "facebook", HUMAN): (2, 1),
    }


def test_formats_servers_write(store: Store, run: Any, tmp_path: Path) -> None:
    agent_with_quotes = (
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) \\"Edge\\" AppleWebKit/537.36 Chrome/131.0 Safari/537.36'
    )
    result = run(
        write(
            tmp_path / "access.log",
            # Apache escapes quotes inside a field
            entry(agent=agent_with_quotes),
            # nginx configs that append fields after the agent
            entry("203.0.113.8", extra=' "198.51.100.9" rt=0.012 uct="0.000"'),
            # the common format: no referrer, no agent (so not a person)
            f'203.0.113.9 - frank [{AT}] "GET /?{FB_UTM} HTTP/1.0" 200 -\n'.encode(),
            # nginx's \xHH for bytes that are not ASCII, and an agent with a byte that is not UTF-8
            f'203.0.113.10 - - [{AT}] "GET /t\\xE1\\xBB\\xA9c?{TG_UTM} HTTP/1.1" 200 1 "-" "{ANDROID}"\n'.encode(),
            f'203.0.113.11 - - [{AT}] "GET /?{TG_UTM} HTTP/1.1" 200 1 "-" "{ANDROID} '.encode() + b'\xff"\n',
            # a scanner's TLS handshake on the plain port: a well-formed line, not a request
            f'203.0.113.12 - - [{AT}] "\\x16\\x03\\x01\\x00" 400 150 "-" "-"\n'.encode(),
        )
    )
    assert (result.lines, result.malformed, result.kept) == (6, 0, 5)
    assert result.people == {"facebook": 2, "telegram_channel": 2}
    assert result.by_kind[BOT] == 1


def test_parse_line_reads_ipv6_escapes_and_extras() -> None:
    line = parse_line(
        b'2001:db8::1 - - [10/Oct/2026:13:55:36 -0130] "HEAD /?a=1 HTTP/1.1" 304 - "https://t.me/x" '
        b'"Tr\\xC3\\xACnh \\"duy\\xe1\\xbb\\x87t\\"" "-" rt=0.1\r\n'
    )
    assert line is not None
    assert (line.host, line.method, line.target, line.status) == ("2001:db8::1", "HEAD", "/?a=1", 304)
    assert line.at == datetime(2026, 10, 10, 15, 25, 36, tzinfo=UTC)
    assert (line.referer, line.agent) == ("https://t.me/x", 'Trình "duyệt"')
    common = parse_line(b'192.0.2.1 - - [10/Oct/2026:13:55:36 +0700] "GET / HTTP/1.1" 200 5\n')
    assert common is not None
    assert (common.referer, common.agent) == (None, None)
    assert parse_line(b'192.0.2.1 - - [10/Oct/2026:13:55:36 +0700] "GET / HTTP/1.1" 200 5 "-"\n') is None
    assert parse_line(b"not a line") is None


def test_social_referrers_match_hosts_and_their_subdomains_only() -> None:
    assert social_channel("www.facebook.com") == "facebook"
    assert social_channel("LM.Facebook.com.") == "facebook"
    assert social_channel("t.co") == "x"
    assert social_channel("vn.linkedin.com") == "linkedin"
    assert social_channel("notfacebook.com") is None
    assert social_channel("facebook.com.example.vn") is None
    assert social_channel(None) is None


def test_our_utm_tags_are_told_from_the_portal_s_own() -> None:
    mediums = frozenset({"social", "qr"})
    assert utm_channel(f"/?{FB_UTM}", mediums) == "facebook"
    assert utm_channel("/?utm_source=Telegram_Bot&utm_medium=other&utm_campaign=bot-search", mediums) == "telegram_bot"
    assert utm_channel("/?utm_source=qr&utm_medium=qr&utm_campaign=any", mediums) == "qr"
    assert utm_channel("/?utm_source=newsletter&utm_medium=email&utm_campaign=x", mediums) is None
    assert utm_channel("/?utm_medium=social&utm_campaign=outreach-1", mediums) is None  # no source, no channel
    assert utm_channel("http://[::1/?utm_source=x", mediums) is None


def test_the_campaign_names_outreach_writes_are_ours() -> None:
    from outreach.conversation import SEARCH_CAMPAIGN
    from outreach.qr import NO_CAMPAIGN

    for name in (Campaign(id=42).utm_campaign, NO_CAMPAIGN, SEARCH_CAMPAIGN):
        assert portal_logs.OUR_CAMPAIGNS.fullmatch(name), name


def test_the_install_s_medium_is_ours(store: Store, run: Any, tmp_path: Path) -> None:
    path = write(tmp_path / "access.log", entry(path="/?utm_source=facebook&utm_medium=mxh&utm_campaign=thang-10"))
    assert run(path, utm_medium="MXH").people == {"facebook": 1}


# --- gzip, progress --------------------------------------------------------------------------


def test_gzip_is_known_by_its_magic_bytes_not_its_name(store: Store, run: Any, tmp_path: Path) -> None:
    rotated = run(write(tmp_path / "access.log.2.gz", *SAMPLE, compress=True))
    assert (rotated.lines, rotated.kept, rotated.malformed) == (24, 14, 4)
    first = stored(store)
    # the same content, plain: the content's hash, not the file's, names it
    plain = run(write(tmp_path / "access.log.2", *SAMPLE))
    assert plain.already_imported_at == rotated.imported_at
    # another day, gzip without .gz
    renamed = run(write(tmp_path / "access.log.1", entry(at="11/Oct/2026:09:00:00 +0700"), compress=True))
    assert renamed.kept == 1
    assert stored(store) == {**first, (date(2026, 10, 11), "facebook", HUMAN): (1, 1)}


def test_progress_follows_the_file_on_disk_to_its_end(store: Store, run: Any, tmp_path: Path) -> None:
    filler = [entry(f"192.0.2.{i % 250}", f"/tin-tuc/{i}.html") for i in range(30_000)]  # ~3.5 MB
    for compress in (False, True):
        path = write(tmp_path / f"big-{compress}.log", *filler, entry(f"203.0.113.{1 + compress}"), compress=compress)
        calls: list[tuple[int, int]] = []
        result = run(path, progress=lambda done, total, calls=calls: calls.append((done, total)))
        size = path.stat().st_size
        assert result.lines == 30_001
        assert result.kept == 1
        assert len(calls) >= 3
        assert all(total == size for _, total in calls)
        assert [done for done, _ in calls] == sorted(done for done, _ in calls)
        assert calls[-1] == (size, size)


# --- twice, and two files of one day -----------------------------------------------------


def test_the_same_file_twice_adds_nothing(store: Store, run: Any, tmp_path: Path) -> None:
    path = write(tmp_path / "access.log", *SAMPLE)
    first = run(path)
    before, counts = stored(store), row_counts(store)
    again = run(path)
    assert again.already_imported
    assert again.already_imported_at == first.imported_at
    assert again.imported_at is None
    assert stored(store) == before
    assert row_counts(store) == counts == (1, 8, 12)


def test_a_second_file_of_the_same_day_adds_hits_and_only_new_visitors(store: Store, run: Any, tmp_path: Path) -> None:
    run(write(tmp_path / "web1.log", entry("203.0.113.7"), entry("203.0.113.7", at="10/Oct/2026:15:00:00 +0700")))
    assert stored(store) == {(DAY, "facebook", HUMAN): (2, 1)}
    second = run(
        write(
            tmp_path / "web2.log",
            entry("203.0.113.80"),  # the same visitor (same /24, same agent), seen by the other server
            entry("198.51.100.4"),  # someone new
        )
    )
    assert second.kept == 2
    assert stored(store) == {(DAY, "facebook", HUMAN): (4, 2)}


def test_without_a_salt_visitors_are_counted_within_the_file_only(store: Store, run: Any, tmp_path: Path) -> None:
    first = run(write(tmp_path / "web1.log", entry("203.0.113.7"), entry("203.0.113.8")), salt=None)
    assert not first.salted
    run(write(tmp_path / "web2.log", entry("203.0.113.9")), salt=None)
    assert stored(store) == {(DAY, "facebook", HUMAN): (3, 2)}  # one in each file: not known to be the same


def test_a_log_that_grew_since_its_import_adds_only_its_new_lines(store: Store, run: Any, tmp_path: Path) -> None:
    morning = [entry("203.0.113.7"), b"not a line\n", entry("198.51.100.4", agent=WINDOWS)]
    afternoon = [
        entry("203.0.113.7", at="10/Oct/2026:15:00:00 +0700"),
        entry("192.0.2.9", at="10/Oct/2026:16:00:00 +0700", agent=FB_IPHONE),
    ]
    run(write(tmp_path / "access.log", *morning))
    rotated = run(write(tmp_path / "access.log.1.gz", *morning, *afternoon, compress=True))
    assert (rotated.lines, rotated.overlap_lines, rotated.kept, rotated.malformed) == (5, 3, 2, 0)
    assert rotated.overlap_of == str(tmp_path / "access.log")
    assert rotated.first_at == datetime(2026, 10, 10, 8, 0, tzinfo=UTC)
    assert stored(store) == {(DAY, "facebook", HUMAN): (4, 3)}
    # the rotated file once more, as logrotate's next name
    assert run(write(tmp_path / "access.log.2.gz", *morning, *afternoon, compress=True)).already_imported
    assert stored(store) == {(DAY, "facebook", HUMAN): (4, 3)}


def test_a_failure_mid_import_leaves_nothing(
    store: Store, run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("the machine went down")

    monkeypatch.setattr(portal_logs, "_recount", broken)  # after the file's row, its visitors and its hits
    path = write(tmp_path / "access.log", *SAMPLE)
    with pytest.raises(RuntimeError):
        run(path)
    assert row_counts(store) == (0, 0, 0)
    monkeypatch.undo()
    assert run(path).kept == 14  # and it can simply be imported again


# --- what people get wrong --------------------------------------------------------------------


def test_a_file_of_no_log_lines_is_refused_and_nothing_stored(store: Store, run: Any, tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "Ghi chú: nhập nhật ký\n".encode(), b"\x89PNG\r\n\x1a\n\x00\xff\n")
    with pytest.raises(LogImportError, match=r"notes\.txt: not an access log: none of its 4 lines .*Ghi chú"):
        run(path)
    assert row_counts(store) == (0, 0, 0)


def test_files_that_cannot_be_read_are_named(store: Store, run: Any, tmp_path: Path) -> None:
    with pytest.raises(LogImportError, match=r"missing\.log: no such file"):
        run(tmp_path / "missing.log")
    (tmp_path / "logs").mkdir()
    with pytest.raises(LogImportError, match=r"logs: is a folder"):
        run(tmp_path / "logs")
    damaged = gzip.compress(b"".join(SAMPLE))[:-20]
    (tmp_path / "cut.log.gz").write_bytes(damaged)
    with pytest.raises(LogImportError, match=r"cut\.log\.gz: damaged gzip data"):
        run(tmp_path / "cut.log.gz")
    assert row_counts(store) == (0, 0, 0)


def test_an_empty_file_imports_nothing(store: Store, run: Any, tmp_path: Path) -> None:
    result = run(write(tmp_path / "access.log", b"", b"\n"))
    assert result.empty
    assert not result.already_imported
    assert result.imported_at is None
    assert row_counts(store) == (0, 0, 0)


def test_an_overlong_line_is_malformed_and_not_held(store: Store, run: Any, tmp_path: Path) -> None:
    huge = b"x" * (3 * portal_logs.MAX_LINE + 5) + b"\n"
    result = run(write(tmp_path / "access.log", entry(), huge, entry("198.51.100.4")))
    assert (result.lines, result.malformed, result.first_malformed, result.kept) == (3, 1, 2, 2)


# --- the report's view -------------------------------------------------------------------------


def test_portal_hits_per_day_and_channel(store: Store, run: Any, tmp_path: Path) -> None:
    run(write(tmp_path / "access.log", *SAMPLE, entry(at="12/Oct/2026:08:00:00 +0700", agent=GOOGLEBOT)))
    with store.sessions() as session:
        days = portal_hits(session, date(2026, 10, 10), date(2026, 10, 12))
        only_first = portal_hits(session, DAY, DAY)
    assert days == [
        PortalDay(DAY, "facebook", hits=4, visitors=3, previews=1, bots=2, heads=1),
        PortalDay(DAY, "qr", hits=1, visitors=1),
        PortalDay(DAY, "telegram", hits=1, visitors=1),
        PortalDay(DAY, "telegram_channel", hits=2, visitors=1),
        PortalDay(DAY, "zalo", hits=2, visitors=2),
        PortalDay(date(2026, 10, 12), "facebook", bots=1),
    ]
    assert only_first == days[:-1]
