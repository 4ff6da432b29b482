"""The portal's own access logs as evidence: daily hits that came from our outreach (`outreach logs import`).

Our click counts say who tapped a tracked link; the portal's web server saw who
arrived. Its access logs (nginx or Apache, combined or common format, plain or
gzip) are read line by line, never whole, and only requests that came from
outreach are kept:

- the request carries our UTM tags: `utm_source` names the channel (facebook,
  telegram_channel, telegram_bot, qr, ...) and the tags are ours, that is
  `utm_campaign` is one of the names outreach gives (`outreach-N`, `outreach-qr`,
  `bot-search`) or `utm_medium` is the install's medium or `qr`. The portal's own
  campaigns (a newsletter's `utm_source=newsletter&utm_medium=email`) are not ours;
- or the referring page is on a social or chat site (`SOCIAL_REFERRERS`, data:
  host -> channel label, subdomains included): people who shared a portal page
  themselves, which no tracked link sees. Our tags win when both are there.

Each kept request is judged by the tracker's own `Classifier` (a HEAD is `head`),
so people, link-card previews and bots are apart exactly as clicks are. Only
requests the portal served count (2xx, and 304 for a cached page): a redirect
(http -> https, a trailing slash) is followed by the request that counts, and an
error page is no visit; both are reported as `unserved`.

What is stored: daily aggregates, never an address. `portal_hits` has one row per
(local day in the install's zone, channel, kind) with hits and distinct visitors.
A visitor is the tracker's: the keyed hash of the /24 or /48 network
(`tracking.network_hash`, under the install's OUTREACH_CLICK_SALT) with the
agent, here folded into one 32-hex hash.

How files of one day combine: distinct visitors cannot be summed, so each
visitor hash is kept in `portal_visitors` (day, channel, kind, hash: no address,
no agent) and `portal_hits.visitors` is recounted from it after each import. A
second file of the same day (another web server, a rotated part) adds its hits
and only the visitors not seen that day. Without a salt the hashes are keyed by a
random key per import (like the tracker without one): visitors are still counted
within a file, but a second file's are all new (`ImportResult.salted` says so).

The same file twice: `log_imports` names each imported file by the SHA-256 of its
decompressed content; the same content again is "already imported" and changes
nothing. A log that has grown since it was imported (the live `access.log`
imported at noon, then `access.log.1` after rotation) starts with exactly the
content imported before: its leading lines up to that point are recognised (the
running hash matches an earlier import's hash at that import's size) and skipped,
so they are never counted twice. An older, shorter copy imported after a longer
one is not recognised: import logs once rotated, or in order.

One file is one transaction with its `log_imports` row: a crash leaves nothing
half imported. On PostgreSQL imports take a table lock, so two at once serialise
(SQLite serialises writers anyway).

Behind a reverse proxy or CDN the portal logs the proxy's address unless its
server restores the client's (nginx `real_ip`, Apache `mod_remoteip`); visitors
then collapse into a few. The hit counts stay right.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import IO, NamedTuple, Protocol
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from outreach.agents import Classifier, clean_agent
from outreach.db import Store, insert_ignoring_conflicts
from outreach.models import ClickKind, LogImport, PortalHit, PortalVisitor
from outreach.tracking import network_hash, parse_address

# Referring hosts (and their subdomains) that mean "came from a social or chat app", with the channel label.
SOCIAL_REFERRERS: Mapping[str, str] = MappingProxyType(
    {
        "facebook.com": "facebook",
        "l.facebook.com": "facebook",  # the link shim: most taps on a Facebook post arrive from here
        "m.facebook.com": "facebook",
        "lm.facebook.com": "facebook",
        "mbasic.facebook.com": "facebook",
        "fb.com": "facebook",
        "messenger.com": "facebook",  # l.messenger.com: Messenger's link shim
        "t.me": "telegram",
        "web.telegram.org": "telegram",
        "telegram.org": "telegram",
        "zalo.me": "zalo",
        "chat.zalo.me": "zalo",
        "id.zalo.me": "zalo",
        "x.com": "x",
        "t.co": "x",
        "twitter.com": "x",
        "linkedin.com": "linkedin",
        "lnkd.in": "linkedin",
    }
)
# utm_campaign values outreach writes: Campaign.utm_campaign ("outreach-N"), outreach.qr.NO_CAMPAIGN
# ("outreach-qr") and outreach.conversation.SEARCH_CAMPAIGN ("bot-search"); a test keeps them in step.
OUR_CAMPAIGNS = re.compile(r"outreach-[\w-]+|bot-search")
QR_MEDIUM = "qr"  # outreach.qr tags posters utm_source=qr&utm_medium=qr
CHANNEL_LIMIT = 40  # portal_hits.channel
MAX_LINE = 64 * 1024  # longer lines are malformed, read past without holding them
PROGRESS_STEP = 1 << 20  # decompressed bytes between progress calls
GZIP_MAGIC = b"\x1f\x8b"

Progress = Callable[[int, int], None]


class LogImportError(Exception):
    """A file that cannot be imported; the message names it. Nothing was stored."""


# --- one line -------------------------------------------------------------------------

_QUOTED = rb'[^"\\]*(?:\\.[^"\\]*)*'  # a quoted field's inside: \" and \\ escaped (Apache), \xHH (nginx)
_LINE = re.compile(
    rb"(?P<host>\S+) +\S+ +(?:\"" + _QUOTED + rb"\"|\S+) +\[(?P<time>[^\]]*)\] +"
    rb'"(?P<request>' + _QUOTED + rb')" +(?P<status>\d{3}|-) +(?:\d+|-)'
    # combined: referrer and agent, then whatever fields a server appends
    rb'(?: +"(?P<referer>' + _QUOTED + rb')" +"(?P<agent>' + _QUOTED + rb')"(?:[ \t].*)?)?',
    re.DOTALL,
)
_TIME = re.compile(rb"(\d{1,2})/([A-Za-z]{3})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) *([+-])(\d{2}):?(\d{2})")
_MONTHS = {name: n for n, name in enumerate((b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1)}  # fmt: skip
_REFERRER_HOST = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:@\[\]]+)")  # anchored: .match
_REQUEST = re.compile(rb"([A-Za-z]+) +(\S+)(?: +HTTP/[\d.]+)?")
_ESCAPE = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_ESCAPED = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f", b"b": b"\b"}


def _unescaped_match(match: re.Match[bytes]) -> bytes:
    escape = match.group(1)
    if len(escape) == 3:
        return bytes([int(escape[1:], 16)])
    return _ESCAPED.get(escape, escape)


def _unescape(value: bytes) -> bytes:
    """The field's bytes as the client sent them (servers escape quotes, backslashes and odd bytes)."""
    return _ESCAPE.sub(_unescaped_match, value) if b"\\" in value else value


def _text(value: bytes) -> str:
    """A field as text: UTF-8, with anything that is not replaced (a log is not ours to refuse)."""
    return _unescape(value).decode("utf-8", errors="replace")


def parse_time(value: bytes) -> datetime | None:
    """`10/Oct/2026:13:55:36 +0700` as an aware time, or None (month names are English whatever the locale)."""
    match = _TIME.fullmatch(value)
    if match is None:
        return None
    month = _MONTHS.get(match[2].lower())
    if month is None:
        return None
    offset = timedelta(hours=int(match[8]), minutes=int(match[9]))
    try:
        zone = timezone(-offset if match[7] == b"-" else offset)
        return datetime(int(match[3]), month, int(match[1]), int(match[4]), int(match[5]), int(match[6]), tzinfo=zone)
    except ValueError:  # 31 February, an offset of a day or more
        return None


class LogLine(NamedTuple):
    """One access-log line, decoded; referrer and agent are None in the common format."""

    host: str
    at: datetime
    method: str | None  # None when the request line is not a request (garbage a scanner sent)
    target: str | None
    status: int | None
    referer: str | None
    agent: str | None


def parse_line(line: bytes) -> LogLine | None:
    """A combined- or common-format line, or None when it is neither (a malformed line)."""
    match = _LINE.fullmatch(line.rstrip(b"\r\n"))
    if match is None:
        return None
    at = parse_time(match["time"])
    if at is None:
        return None
    request = _REQUEST.fullmatch(_unescape(match["request"]))
    status = match["status"]
    referer, agent = match["referer"], match["agent"]
    return LogLine(
        host=match["host"].decode("latin-1"),
        at=at,
        method=request[1].decode("ascii").upper() if request else None,
        target=request[2].decode("utf-8", errors="replace") if request else None,
        status=int(status) if status != b"-" else None,
        referer=None if referer is None or referer == b"-" else _text(referer),
        agent=None if agent is None else _agent(agent),
    )


def _agent(value: bytes) -> str:
    """The agent as the tracker stores it: `clean_agent` of the header as a server hands it over (Latin-1)."""
    return "" if value == b"-" else clean_agent(_unescape(value).decode("latin-1"))


def social_channel(host: str | None) -> str | None:
    """The channel label of a referring host (or of a domain it is under), or None."""
    if not host:
        return None
    labels = host.lower().rstrip(".").split(".")
    for start in range(len(labels) - 1):
        channel = SOCIAL_REFERRERS.get(".".join(labels[start:]))
        if channel is not None:
            return channel
    return None


def utm_channel(target: str, mediums: frozenset[str]) -> str | None:
    """The channel our UTM tags name in a request target (`utm_source`), or None when it carries none of ours."""
    try:
        query = parse_qs(urlsplit(target).query)
    except ValueError:  # "http://[::1": the client's garbage
        return None
    source = _first(query, "utm_source")
    if not source:
        return None
    campaign, medium = _first(query, "utm_campaign"), _first(query, "utm_medium")
    if not (OUR_CAMPAIGNS.fullmatch(campaign) or medium.lower() in mediums):
        return None
    label = "".join(c for c in unicodedata.normalize("NFC", source) if c.isprintable()).strip().lower()
    return label[:CHANNEL_LIMIT] or None


def _first(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0].strip() if values else ""


def _served(status: bytes) -> bool:
    """A page the visitor got: 2xx, or 304 (their browser had it cached)."""
    return status[:1] == b"2" or status == b"304"


# --- one file -------------------------------------------------------------------------

Key = tuple[date, str, ClickKind]  # local day, channel, kind


@dataclass
class _Tally:
    """What the lines after any already-imported start of the file add."""

    kept: int = 0
    malformed: int = 0
    first_malformed: int | None = None
    unserved: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None
    hits: Counter[Key] = field(default_factory=Counter)
    visitors: dict[Key, set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Earlier:
    name: str
    imported_at: datetime


class _Scan:
    """Reads one file's lines into a tally; holds the caches that make repeated agents and hosts cheap."""

    def __init__(self, zone: ZoneInfo, salt: bytes, classifier: Classifier, mediums: frozenset[str]) -> None:
        self.zone, self.salt, self.classifier, self.mediums = zone, salt, classifier, mediums
        self.lines = 0
        self.well_formed = 0
        self.first_line = b""
        self.overlap_lines = 0
        self.overlap_of: _Earlier | None = None
        self.tally = _Tally()
        self._times: dict[bytes, datetime] = {}
        self._hosts: dict[bytes, str | None] = {}
        self.agent = functools.lru_cache(maxsize=65_536)(_agent)
        self.visitor = functools.lru_cache(maxsize=65_536)(self._visitor)

    def restart(self, earlier: _Earlier) -> None:
        """Everything read so far is an earlier import's content: forget its counts."""
        self.overlap_lines, self.overlap_of, self.tally = self.lines, earlier, _Tally()
        self._times.clear()  # a cached time was counted in the forgotten tally's first and last

    def overlong(self, start: bytes) -> None:
        """A line longer than MAX_LINE: no access log writes those, so it is malformed."""
        self._count(start)
        self._malformed()

    def line(self, raw: bytes) -> None:
        """One line; the hot path: most lines are matched, dated and left, nothing else."""
        line = raw.rstrip(b"\r\n")
        if not line or line.isspace():
            return  # a blank line is no line at all
        self._count(line)
        match = _LINE.fullmatch(line)
        if match is None:
            self._malformed()
            return
        at = self._times.get(match["time"]) or self._new_time(match["time"])
        if at is None:
            self._malformed()
            return
        self.well_formed += 1
        request, referer = match.group("request", "referer")
        tagged = b"utm_" in request
        social = self._social(referer) if referer else None
        if not tagged and social is None:
            return  # most lines: nothing says they came from us
        parsed = _REQUEST.fullmatch(_unescape(request))
        if parsed is None:
            return
        method, target = parsed.groups()
        channel = utm_channel(target.decode("utf-8", errors="replace"), self.mediums) if tagged else None
        channel = channel or social
        if channel is None:
            return
        tally = self.tally
        if not _served(match["status"]):
            tally.unserved += 1
            return
        agent = self.agent(match["agent"] or b"-")
        key = (at.astimezone(self.zone).date(), channel, self.classifier.kind(method.decode("ascii"), agent))
        tally.kept += 1
        tally.hits[key] += 1
        tally.visitors.setdefault(key, set()).add(self.visitor(match["host"], agent))

    def _social(self, referer: bytes) -> str | None:
        """The social channel of the referrer's host; hosts repeat (the portal's own, mostly), so each is looked up once."""
        found = _REFERRER_HOST.match(referer)
        if found is None:
            return None
        host = found[1]
        if host not in self._hosts:
            if len(self._hosts) > 65_536:
                self._hosts.clear()
            self._hosts[host] = social_channel(host.decode("latin-1"))
        return self._hosts[host]

    def _count(self, line: bytes) -> None:
        self.lines += 1
        if self.lines == 1:
            self.first_line = line[:120]

    def _malformed(self) -> None:
        tally = self.tally
        tally.malformed += 1
        if tally.first_malformed is None:
            tally.first_malformed = self.lines

    def _new_time(self, value: bytes) -> datetime | None:
        """A time not in the cache: parsed, and (being new) the only kind that can move first or last."""
        at = parse_time(value)
        if at is None:
            return None
        if len(self._times) > 4096:  # lines come in order: a small cache holds the current seconds
            self._times.clear()
        self._times[value] = at
        tally = self.tally
        if tally.first_at is None or at < tally.first_at:
            tally.first_at = at
        if tally.last_at is None or at > tally.last_at:
            tally.last_at = at
        return at

    def _visitor(self, host: bytes, agent: str) -> str:
        """The tracker's visitor (keyed /24 or /48 network, and agent) as one hash."""
        address = parse_address(host.decode("latin-1"))
        network = network_hash(address, self.salt)
        if network is None:  # a host name (Apache HostnameLookups) or "-": keyed as it is
            network = hmac.new(self.salt, b"host:" + host.lower(), hashlib.sha256).hexdigest()[:32]
        return hashlib.sha256(f"{network}\n{agent}".encode()).hexdigest()[:32]


class _Readable(Protocol):
    """A plain or a gzip file, read a line at a time."""

    def readline(self, size: int | None = -1, /) -> bytes: ...


@contextmanager
def _opened(path: Path) -> Iterator[tuple[IO[bytes], _Readable, int]]:
    """The file's raw bytes (for progress), its content (gunzipped when it starts as gzip does) and its size."""
    with path.open("rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        if raw.peek(2)[:2] == GZIP_MAGIC:  # the magic decides, not the name: rotated files are named anyhow
            with gzip.GzipFile(fileobj=raw, mode="rb") as content:
                yield raw, content, size
        else:
            yield raw, raw, size


def _read(
    path: Path, scan: _Scan, earlier: dict[int, dict[str, _Earlier]], progress: Progress | None
) -> tuple[str, int]:
    """Feed the file's lines to `scan`, streaming; the SHA-256 and size of the decompressed content."""
    hasher = hashlib.sha256()
    done = 0
    with _opened(path) as (raw, content, total):
        next_report = PROGRESS_STEP
        while line := content.readline(MAX_LINE):
            hasher.update(line)
            done += len(line)
            if len(line) == MAX_LINE and not line.endswith(b"\n"):
                while (more := content.readline(MAX_LINE)) and not more.endswith(b"\n"):
                    hasher.update(more)
                    done += len(more)
                hasher.update(more)
                done += len(more)
                scan.overlong(line)
            else:
                scan.line(line)
            if done in earlier:  # this much was imported before: is it the same content?
                match = earlier[done].get(hasher.copy().hexdigest())
                if match is not None:
                    scan.restart(match)
            if progress is not None and done >= next_report:
                progress(min(raw.tell(), total), total)
                next_report = done + PROGRESS_STEP
        if progress is not None:
            progress(total, total)
    return hasher.hexdigest(), done


# --- the import -------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What one file held and what its import added.

    Counts after `lines` are of the lines after `overlap_lines` (the start of the
    file an earlier import already counted). With `already_imported_at` set, the
    same content was imported then and nothing was stored; with `lines` 0 the
    file was empty and nothing was stored either.
    """

    path: Path
    sha256: str = ""
    size: int = 0  # decompressed bytes
    lines: int = 0  # non-blank lines in the file
    overlap_lines: int = 0
    overlap_of: str | None = None  # the earlier import (its name as given then) this file continues
    kept: int = 0  # outreach hits counted
    malformed: int = 0
    first_malformed: int | None = None  # its line number (blank lines not counted), to show people
    unserved: int = 0  # outreach hits answered with a redirect or an error: not counted
    first_at: datetime | None = None
    last_at: datetime | None = None
    hits: Counter[tuple[str, ClickKind]] = field(default_factory=Counter)  # (channel, kind) -> hits
    salted: bool = True  # False: visitors keyed for this import only, not de-duplicated with other files
    imported_at: datetime | None = None  # when this import was recorded
    already_imported_at: datetime | None = None

    @property
    def already_imported(self) -> bool:
        return self.already_imported_at is not None

    @property
    def empty(self) -> bool:
        return self.lines == 0

    @property
    def by_channel(self) -> Counter[str]:
        """Kept hits per channel, every kind."""
        counts: Counter[str] = Counter()
        for (channel, _), n in self.hits.items():
            counts[channel] += n
        return counts

    @property
    def by_kind(self) -> Counter[ClickKind]:
        counts: Counter[ClickKind] = Counter()
        for (_, kind), n in self.hits.items():
            counts[kind] += n
        return counts

    @property
    def people(self) -> Counter[str]:
        """Human hits per channel: the visits."""
        return Counter({channel: n for (channel, kind), n in self.hits.items() if kind is ClickKind.human})


def import_log(
    store: Store,
    path: Path,
    zone: ZoneInfo,
    salt: bytes | None,
    classifier: Classifier,
    progress: Progress | None = None,
    *,
    utm_medium: str = "social",
) -> ImportResult:
    """Add one access log's outreach hits to `portal_hits`, once; see the module's docstring.

    `zone` decides each hit's calendar day (`Settings.zone`), `salt` keys the
    visitor hashes as the tracker's (`Settings.click_salt`), `classifier` is the
    tracker's (`Classifier(settings.schedule.tracker.agents)`), `utm_medium` the
    install's `tracker.utm_medium`. `progress(bytes_done, bytes_total)` follows
    the file on disk (compressed bytes for gzip) and ends at the total.

    Raises LogImportError (naming the file) for a file that is missing,
    unreadable, damaged gzip, or not an access log at all; nothing is stored then.
    """
    scan = _Scan(zone, salt or secrets.token_bytes(32), classifier, frozenset({utm_medium.lower(), QR_MEDIUM}))
    try:
        sha256, size = _read(path, scan, _earlier_imports(store), progress)
    except FileNotFoundError:
        raise LogImportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LogImportError(f"{path}: is a folder, not a log file") from None
    except PermissionError:
        raise LogImportError(f"{path}: cannot be read (permission denied)") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise LogImportError(f"{path}: damaged gzip data after line {scan.lines} ({error}); nothing imported") from None
    except OSError as error:
        raise LogImportError(f"{path}: cannot be read ({error.strerror or error})") from None
    if scan.lines and not scan.well_formed:
        first = scan.first_line.decode("utf-8", errors="replace")
        raise LogImportError(
            f"{path}: not an access log: none of its {scan.lines} lines is in the combined or common log format "
            f"(the first reads {first!r}); nothing imported"
        )
    tally = scan.tally
    result = ImportResult(
        path=path,
        sha256=sha256,
        size=size,
        lines=scan.lines,
        overlap_lines=scan.overlap_lines,
        overlap_of=scan.overlap_of.name if scan.overlap_of else None,
        kept=tally.kept,
        malformed=tally.malformed,
        first_malformed=tally.first_malformed,
        unserved=tally.unserved,
        first_at=tally.first_at,
        last_at=tally.last_at,
        salted=salt is not None,
    )
    for (_, channel, kind), n in tally.hits.items():
        result.hits[(channel, kind)] += n
    if not scan.lines:
        return result
    if scan.overlap_of is not None and scan.overlap_lines == scan.lines:  # the whole file, imported before
        result.already_imported_at = scan.overlap_of.imported_at
        return result
    _record(store, result, tally)
    return result


def _earlier_imports(store: Store) -> dict[int, dict[str, _Earlier]]:
    """Earlier imports by content size, then hash: a file this long so far may be one of them."""
    earlier: dict[int, dict[str, _Earlier]] = {}
    with store.sessions() as session:
        for size, sha256, name, imported_at in session.execute(
            select(LogImport.size, LogImport.sha256, LogImport.name, LogImport.imported_at)
        ):
            earlier.setdefault(size, {})[sha256] = _Earlier(name, imported_at)
    return earlier


def _record(store: Store, result: ImportResult, tally: _Tally) -> None:
    """The file's row and its hits in one transaction; the same content recorded meanwhile: already imported."""
    try:
        with store.sessions.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                # Imports one after another: each recount of visitors sees the visitors of the one before.
                session.execute(text("LOCK TABLE log_imports IN SHARE ROW EXCLUSIVE MODE"))
            before = session.scalar(select(LogImport.imported_at).where(LogImport.sha256 == result.sha256))
            if before is not None:
                result.already_imported_at = before
                return
            row = LogImport(
                sha256=result.sha256,
                name=str(result.path),
                size=result.size,
                lines=result.lines,
                overlap_lines=result.overlap_lines,
                kept=result.kept,
                malformed=result.malformed,
                first_at=result.first_at,
                last_at=result.last_at,
            )
            session.add(row)
            session.flush()  # a clash on the content's hash shows here, before any hit is written
            _add_hits(session, tally)
            result.imported_at = row.imported_at
    except IntegrityError:  # SQLite: another import of the same content committed first
        with store.sessions() as session:
            before = session.scalar(select(LogImport.imported_at).where(LogImport.sha256 == result.sha256))
        if before is None:
            raise
        result.already_imported_at = before


def _add_hits(session: Session, tally: _Tally) -> None:
    """Add the hits to their day's rows and the visitors not seen that day; recount those days' visitors."""
    if not tally.hits:
        return
    keys = ["day", "channel", "kind"]
    visitors = [
        {"day": day, "channel": channel, "kind": kind, "visitor": visitor}
        for (day, channel, kind), seen in tally.visitors.items()
        for visitor in sorted(seen)
    ]
    insert_ignoring_conflicts(session, PortalVisitor, visitors, [*keys, "visitor"])
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    statement = insert(PortalHit)
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={"hits": PortalHit.hits + statement.excluded.hits}
    )
    rows = [
        {"day": day, "channel": channel, "kind": kind, "hits": n, "visitors": 0}
        for (day, channel, kind), n in tally.hits.items()
    ]
    session.execute(statement, rows)
    _recount(session, sorted({day for day, _, _ in tally.hits}))


def _recount(session: Session, days: list[date]) -> None:
    """Set each row's visitors of these days from portal_visitors, which holds every file's."""
    count = (
        select(func.count())
        .where(
            PortalVisitor.day == PortalHit.day,
            PortalVisitor.channel == PortalHit.channel,
            PortalVisitor.kind == PortalHit.kind,
        )
        .scalar_subquery()
    )
    session.execute(
        update(PortalHit).where(PortalHit.day.in_(days)).values(visitors=count),
        execution_options={"synchronize_session": False},
    )


# --- the report ---------------------------------------------------------------------------


@dataclass
class PortalDay:
    """One day's portal hits from one channel: the visits (human hits, distinct visitors), and the rest apart."""

    day: date
    channel: str
    hits: int = 0  # human
    visitors: int = 0  # human
    previews: int = 0
    bots: int = 0
    heads: int = 0


def portal_hits(session: Session, since: date, until: date) -> list[PortalDay]:
    """Per day (since and until included) and channel, ordered so; a day with only bots has 0 human hits."""
    days: dict[tuple[date, str], PortalDay] = {}
    rows = session.execute(
        select(PortalHit.day, PortalHit.channel, PortalHit.kind, PortalHit.hits, PortalHit.visitors)
        .where(PortalHit.day >= since, PortalHit.day <= until)
        .order_by(PortalHit.day, PortalHit.channel)
    )
    for day, channel, kind, hits, visitors in rows:
        row = days.setdefault((day, channel), PortalDay(day, channel))
        if kind is ClickKind.human:
            row.hits, row.visitors = hits, visitors
        elif kind is ClickKind.preview:
            row.previews = hits
        elif kind is ClickKind.bot:
            row.bots = hits
        else:
            row.heads = hits
    return list(days.values())
