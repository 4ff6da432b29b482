"""Sitemaps (source kind `sitemap`): which article URLs a portal has, and which to ingest this poll.

`parse_sitemap` reads a `<urlset>` or a `<sitemapindex>` (sitemaps.org
namespace, or none), gzipped or not; a relative `<loc>` (against the
protocol, but portals write them) is resolved against the sitemap's address,
and only http(s) addresses are kept. A sitemap comes from the internet, so it
is read defensively: gunzipped in pieces and refused past `max_bytes`
(a gzip bomb), parsed with entities never expanded and nothing fetched (XXE,
billion laughs). Broken XML is the `problem`, with what lxml said; what its
recover mode still read is kept ("partly read").

`select` picks the URLs to ingest. A portal's sitemap is its whole archive
(thousands of articles, years back), not a feed of news, and many CMSes stamp
every `<lastmod>` with the time the sitemap was generated: "new" cannot be read
off the dates. So every URL a source has listed is recorded (by a 64-bit key,
`url_key`), and what is not recorded is new:

- URLs whose path no `include` pattern finds (`re.search`) are dropped; no
  pattern keeps all.
- The first poll (nothing recorded) takes the `first_limit` most recent URLs
  (by lastmod, then in document order: portals list newest first) and records
  all the others as the archive, never to be ingested.
- Later polls take the URLs not recorded yet, most recent first, at most
  `limit`; the rest wait for the next poll.
- A recorded URL whose lastmod moved past the watermark (the newest lastmod
  seen before) may have changed: it is `changed`, to be read again.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TypedDict
from urllib.parse import urljoin, urlsplit

from lxml import etree

from outreach.feeds import _bounded, read_date
from outreach.fetch import _Inflater
from outreach.text import plural

_GZIP_MAGIC = b"\x1f\x8b"
# W3C datetime's shortest forms: a year, a year and month (read as their first day).
_YEAR_MONTH = re.compile(r"^\d{4}(?:-\d{2})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # sorts undated URLs after the dated


class _Safety(TypedDict):
    """The parser options that keep a hostile sitemap harmless (typed, to pass as keywords)."""

    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    huge_tree: bool
    remove_comments: bool
    remove_pis: bool


# Every parser here expands no entity and fetches nothing: no XXE, no billion laughs, no huge trees.
_SAFE: _Safety = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
}


@dataclass(frozen=True)
class SitemapEntry:
    """One `<url>` (an article) or `<sitemap>` (a child sitemap): its address and lastmod, aware UTC."""

    url: str
    lastmod: datetime | None = None


@dataclass(frozen=True)
class Sitemap:
    """What a sitemap lists: article `urls` (a urlset) or `children` sitemaps (an index).

    `problem` means entries were (or may have been) lost; `warnings` are
    entries skipped or dates unread, the rest being right.
    """

    urls: list[SitemapEntry]
    children: list[SitemapEntry]
    problem: str | None
    warnings: tuple[str, ...] = ()


class _Refused(Exception):
    """The body cannot be read at all: too big once gunzipped, or not gzip after all."""


def parse_sitemap(body: bytes, url: str, zone: tzinfo, max_bytes: int) -> Sitemap:
    """The sitemap at `url` (gzip detected by its magic bytes); lastmods without a zone are read in `zone`."""
    try:
        xml = _gunzipped(body, url, max_bytes)
    except _Refused as exc:
        return Sitemap([], [], str(exc))
    root, error = _parse(xml)
    kind = etree.QName(root).localname if root is not None else None
    unreadable = f"not a readable sitemap at {url}"
    if root is None or kind not in ("urlset", "sitemapindex"):
        return Sitemap([], [], f"{unreadable}: {f'its root element is <{kind}>' if kind else error}")
    warnings: list[str] = []
    entries = _entries(root, "url" if kind == "urlset" else "sitemap", url, zone, warnings)
    problem = None
    if error:
        kept = plural(len(entries), "entry", "entries")
        problem = f"partly read ({kept} kept): {error}" if entries else f"{unreadable}: {error}"
    if kind == "urlset":
        return Sitemap(entries, [], problem, _bounded(warnings))
    return Sitemap([], entries, problem, _bounded(warnings))


def _gunzipped(body: bytes, url: str, max_bytes: int) -> bytes:
    """The body, gunzipped in pieces when it is gzip; _Refused past `max_bytes`, counted decompressed."""
    if not body.startswith(_GZIP_MAGIC):
        if len(body) > max_bytes:
            raise _Refused(f"sitemap at {url} is {len(body):,} bytes, over the {max_bytes:,}-byte cap")
        return body
    out = bytearray()
    try:
        for piece in _Inflater("gzip").feed(body):
            if len(out) + len(piece) > max_bytes:
                raise _Refused(f"sitemap at {url} is over the {max_bytes:,}-byte cap once gunzipped")
            out += piece
    except zlib.error as exc:
        raise _Refused(f"sitemap at {url} is not valid gzip: {exc}") from None
    return bytes(out)


def _parse(xml: bytes) -> tuple[etree._Element | None, str | None]:
    """The root and None, or what recover mode read (maybe None) and lxml's error."""
    xml = xml.lstrip(b" \t\r\n")  # PHP portals print a blank line before <?xml ...?>, which XML forbids
    try:
        return etree.fromstring(xml, etree.XMLParser(recover=False, **_SAFE)), None
    except etree.XMLSyntaxError as exc:
        return _recovered(xml), exc.msg


def _recovered(xml: bytes) -> etree._Element | None:
    """What recover mode reads, less the entries only the end of the body closed.

    A body cut short leaves its last entry open; recover mode closes it and
    keeps its text, and a URL cut short is a wrong URL. Entries whose end tag
    was really read are the ones reported before the parser is closed.
    """
    parser = etree.XMLPullParser(events=("end",), recover=True, **_SAFE)
    parser.feed(xml)
    closed = {element for _, element in parser.read_events()}
    try:
        root = parser.close()
    except etree.XMLSyntaxError:
        return None
    if root is None:  # recover mode found no element at all
        return None
    for entry in [e for e in root if e not in closed]:
        root.remove(entry)
    return root


def _local(element: etree._Element) -> str:
    """The tag without its namespace; "" for an entity reference (it has no name of its own)."""
    return etree.QName(element).localname if isinstance(element.tag, str) else ""


def _child_text(element: etree._Element, name: str) -> str | None:
    """The text of the first `name` child; None when missing or holding markup or an unexpanded entity."""
    child = next((c for c in element if _local(c) == name), None)
    if child is None or len(child):
        return None
    return (child.text or "").strip()


def _entries(root: etree._Element, name: str, url: str, zone: tzinfo, warnings: list[str]) -> list[SitemapEntry]:
    """The `name` entries (url or sitemap) with an http(s) <loc>, first of repeats kept."""
    kept: dict[str, SitemapEntry] = {}
    unusable: list[str] = []
    undated: list[str] = []
    for node in (n for n in root if _local(n) == name):
        loc = _child_text(node, "loc")
        address = urljoin(url, loc) if loc else ""
        if urlsplit(address).scheme not in ("http", "https"):
            unusable.append(repr(loc) if loc is not None else "no <loc>, or one holding markup or an entity")
            continue
        lastmod = _child_text(node, "lastmod")
        when = _lastmod(lastmod, zone) if lastmod else None
        if lastmod and when is None:
            undated.append(lastmod)
        kept.setdefault(address, SitemapEntry(address, when))
    if unusable:
        skipped = plural(len(unusable), f"<{name}> entry", f"<{name}> entries")
        warnings.append(f"{skipped} skipped: no http(s) <loc> (first: {unusable[0][:80]})")
    if undated:
        unread = plural(len(undated), "unreadable <lastmod>")
        warnings.append(f"{unread} read as no date (first: {undated[0][:80]!r})")
    return list(kept.values())


def _lastmod(text: str, zone: tzinfo) -> datetime | None:
    """A W3C datetime (or any spelling feeds use), aware UTC; a date alone is midnight in `zone`."""
    if _YEAR_MONTH.match(text):
        text += "-01" * (3 - len(text.split("-")))
    return read_date(text, zone)


def url_key(url: str) -> int:
    """A URL as a signed 64-bit key (collisions are one in 2^64 per pair: no concern at portal scale)."""
    return int.from_bytes(hashlib.blake2b(url.encode("utf-8"), digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True)
class Selection:
    """What one poll of a sitemap takes; see the module docstring."""

    new: list[SitemapEntry]  # to ingest, most recent first
    changed: list[SitemapEntry]  # recorded before, lastmod moved past the watermark: read again
    archive: frozenset[int]  # first poll: the keys of every URL not taken, recorded without being ingested
    waiting: int = 0  # new URLs over the limit, left for the next poll


def select(
    entries: list[SitemapEntry],
    include: list[str],
    recorded: frozenset[int],
    watermark: datetime | None,
    first_limit: int,
    limit: int,
) -> Selection:
    """The URLs to ingest and to read again this poll (the rules are in the module docstring)."""
    patterns = [re.compile(pattern) for pattern in include]
    wanted = [e for e in entries if not patterns or any(p.search(urlsplit(e.url).path) for p in patterns)]
    unseen = [e for e in wanted if url_key(e.url) not in recorded]
    # Most recent first; undated ones after the dated, in document order (sorted() is stable).
    ordered = sorted(unseen, key=lambda e: e.lastmod or _EPOCH, reverse=True)
    if not recorded:
        taken = ordered[:first_limit]
        return Selection(taken, [], frozenset(url_key(e.url) for e in ordered[first_limit:]))
    moved = [e for e in wanted if e.lastmod and watermark and e.lastmod > watermark and url_key(e.url) in recorded]
    return Selection(ordered[:limit], moved[:limit], frozenset(), max(0, len(ordered) - limit))
