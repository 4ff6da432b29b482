"""Reading a source once, by its kind: fetched and parsed, nothing stored.

The poll (which stores) and `outreach sources test` (which only shows) both read
through `read_source`, so what staff try out is what the poll will do. A feed is
one document; a listing page is followed through its "next" links; a sitemap
(or a sitemap index and its children) gives article addresses and their
`lastmod`, and the articles' own pages give their titles. Article pages are read
(politely: robots.txt, a delay, one or two at a time per host) for what a
listing lacks when the source wants it (`Source.wants_metadata`), and again for
stored articles whose sitemap `lastmod` moved, with a conditional GET.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import unquote, urlparse

from outreach import config
from outreach.article_meta import ArticleMeta, article_metadata
from outreach.feeds import MAX_SUMMARY, MAX_TITLE, Entry, cap, parse_feed
from outreach.fetch import Fetched, Fetcher, FetchError, run_alone
from outreach.html_page import NotHtml, read_html
from outreach.listing import parse_listing
from outreach.polite import PageOutcome, PageRequest, PoliteFetcher
from outreach.sitemaps import SitemapEntry, parse_sitemap, select, url_key

# Article pages read per source and poll (at a second apart, two at a time: about a minute);
# it also bounds how many new sitemap URLs one poll takes.
MAX_ARTICLE_PAGES = 100
# Article pages are read in rounds of this many, each parsed before the next is fetched: a source's
# memory stays near this many bodies, not a hundred.
PAGES_PER_ROUND = 8
# After this long reading article pages, a source starts no more: what is left waits for the next poll.
ARTICLE_BUDGET_SECONDS = 120.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PageValidators:
    """An article page's validators, kept with its item for the next conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


# Of these guids, the ones already stored for the source, with their article page's validators.
StoredLookup = Callable[[list[str]], dict[str, PageValidators]]


def _nothing_stored(guids: list[str]) -> dict[str, PageValidators]:
    return {}


@dataclass(frozen=True)
class Previous:
    """What the last polls of a source left: validators, the sitemap's watermark, the stored items."""

    etag: str | None = None
    last_modified: str | None = None
    watermark: datetime | None = None  # the newest sitemap `lastmod` seen so far
    stored: StoredLookup = _nothing_stored
    recorded: frozenset[int] = frozenset()  # the keys of every URL the sitemap listed before


@dataclass(frozen=True)
class SourceRead:
    """One reading of a source: its entries and what happened on the way.

    `problem` means entries were or may have been lost (the source's validators
    must not be saved); `warnings` are repairs and oddities. `fetched` is the
    feed, first listing page or top sitemap, whose validators the source keeps.
    """

    entries: list[Entry] = field(default_factory=list)
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    fetched: Fetched | None = None
    encoding: str | None = None
    watermark: datetime | None = None
    pages: dict[str, PageValidators] = field(default_factory=dict)  # guid -> its article page as read now
    documents: int = 0  # feeds, listing pages or sitemaps read
    record: frozenset[int] = frozenset()  # sitemap URL keys to record as listed (the archive, what was stored)

    @property
    def not_modified(self) -> bool:
        """The server said nothing changed since the validators given."""
        return self.fetched is not None and self.fetched.not_modified


def read_source(
    spec: config.Source,
    fetcher: Fetcher,
    zone: tzinfo,
    at: datetime,
    previous: Previous = Previous(),
    limit: int | None = None,
    domains: Sequence[str] = (),
) -> SourceRead:
    """Read `spec` once; FetchError when its first document cannot be fetched.

    Only pages on the source's own host or under `domains` (the portal's, from
    `tracker.allowed_domains`) are fetched beyond the source's own URL: a listing
    or sitemap cannot send us to an internal address. `limit` keeps only the
    first entries (and reads only their article pages): `sources test` shows ten.
    """
    fetchable = _fetchable(spec.url, domains)
    readers = {"feed": _read_feed, "html": _read_listing, "sitemap": _read_sitemap}
    read = readers[spec.kind](spec, fetcher, zone, at, previous, fetchable)
    if limit is not None:
        read = replace(read, entries=read.entries[:limit])
    if spec.wants_metadata and read.entries:
        with _host_turn(spec.url):
            read = _with_metadata(read, spec, fetcher, zone, at, previous.stored, fetchable)
    if spec.kind == "sitemap":
        read = replace(read, record=read.record | {url_key(e.url) for e in read.entries})
    return read


def _fetchable(source_url: str, domains: Sequence[str]) -> Callable[[str], bool]:
    own = (urlparse(source_url).hostname or "").lower()

    def fetchable(url: str) -> bool:
        parts = urlparse(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return False
        return host == own or any(host == d or host.endswith(f".{d}") for d in domains)

    return fetchable


_HOST_TURNS: dict[str, threading.Lock] = {}
_HOST_TURNS_GUARD = threading.Lock()


def _host_turn(url: str) -> threading.Lock:
    """One source at a time reads article pages from a host, process-wide, so the per-host limits hold."""
    host = (urlparse(url).hostname or "").lower()
    with _HOST_TURNS_GUARD:
        return _HOST_TURNS.setdefault(host, threading.Lock())


# --- feeds --------------------------------------------------------------------


def _read_feed(
    spec: config.Source, fetcher: Fetcher, zone: tzinfo, at: datetime, previous: Previous, _: Callable[[str], bool]
) -> SourceRead:
    fetched = fetcher.fetch(spec.url, previous.etag, previous.last_modified)
    if fetched.not_modified:
        return SourceRead(fetched=fetched)
    parsed = parse_feed(fetched.body, fetched.headers, fetched.url, at, zone)
    return SourceRead(parsed.entries, parsed.problem, parsed.warnings, fetched, parsed.encoding, documents=1)


# --- listing pages ------------------------------------------------------------


def _read_listing(
    spec: config.Source,
    fetcher: Fetcher,
    zone: tzinfo,
    at: datetime,
    previous: Previous,
    fetchable: Callable[[str], bool],
) -> SourceRead:
    """The listing's pages, following "next" up to `max_pages`.

    A first page with no items is an error; so is a later page that cannot be
    fetched (its items may be lost: the first page's validators must not be saved).
    """
    assert spec.listing is not None  # config: kind html requires it
    first = fetcher.fetch(spec.url, previous.etag, previous.last_modified)
    if first.not_modified:
        return SourceRead(fetched=first)
    entries: dict[str, Entry] = {}
    warnings: list[str] = []
    seen = {first.url}
    fetched, encoding, problem, number = first, None, None, 0
    while True:
        number += 1
        try:
            page = read_html(fetched.body, fetched.headers, fetched.url)
            listing = parse_listing(page, fetched.url, spec.listing, at, zone)
            failed = listing.problem
        except NotHtml as exc:
            failed = str(exc)
        if failed:  # the first page is the source; a later one only ends the reading
            if number == 1:
                problem = f"source {spec.name}: {failed}"
            else:
                warnings.append(f"page {number}: {failed}")
            break
        encoding = encoding or page.encoding
        warnings += [*page.warnings, *listing.warnings]
        for entry in listing.entries:
            entries.setdefault(entry.guid, entry)
        following = listing.next_url
        if not following or following in seen or number >= spec.listing.max_pages:
            break
        if not fetchable(following) and following.startswith(("http://", "https://")):
            warnings.append(f"next page {following} is off the portal: not followed")
            break
        seen.add(following)
        try:
            fetched = fetcher.fetch(following)
        except FetchError as exc:
            problem = f"source {spec.name}: page {number + 1} not read: {exc}"
            break
    return SourceRead(list(entries.values()), problem, tuple(warnings), first, encoding, documents=number)


# --- sitemaps -----------------------------------------------------------------


def _read_sitemap(
    spec: config.Source,
    fetcher: Fetcher,
    zone: tzinfo,
    at: datetime,
    previous: Previous,
    fetchable: Callable[[str], bool],
) -> SourceRead:
    """The URLs never listed before (the most recent `first_run` on the first poll), and stored ones that moved.

    The sitemap is always fetched in full: an index answers "not modified" while
    its children change. Children not changed since the day before the watermark
    are skipped (a date-only lastmod reads as midnight). A child that cannot be
    read is a problem, not a warning: its URLs may be missing.
    """
    options = spec.sitemap
    top = fetcher.fetch(spec.url)
    cap_bytes = fetcher.settings.max_bytes
    parsed = parse_sitemap(top.body, top.url, zone, cap_bytes)
    urls, warnings = list(parsed.urls), list(parsed.warnings)
    problems = [parsed.problem] if parsed.problem else []
    since = previous.watermark - timedelta(days=1) if previous.watermark else None
    children = sorted(parsed.children, key=lambda c: c.lastmod or _EPOCH, reverse=True)
    fresh = [c for c in children if fetchable(c.url) and (since is None or c.lastmod is None or c.lastmod >= since)]
    if len(fresh) > options.max_sitemaps:
        warnings.append(f"{len(fresh)} sitemaps changed; the {options.max_sitemaps} most recent were read")
    documents = 1
    for child in fresh[: options.max_sitemaps]:
        try:
            fetched = fetcher.fetch(child.url)
        except FetchError as exc:
            problems.append(f"sitemap {child.url} not read: {exc}")
            continue
        documents += 1
        sub = parse_sitemap(fetched.body, fetched.url, zone, cap_bytes)
        urls += sub.urls
        warnings += sub.warnings
        if sub.problem:
            problems.append(f"sitemap {child.url}: {sub.problem}")
    off_portal = [u.url for u in urls if not fetchable(u.url)]
    if off_portal:
        warnings.append(f"{len(off_portal)} URLs off the portal ignored (first: {off_portal[0]})")
    urls = [u for u in urls if fetchable(u.url)]
    chosen = select(urls, options.include, previous.recorded, previous.watermark, options.first_run, MAX_ARTICLE_PAGES)
    if chosen.waiting:
        warnings.append(f"{chosen.waiting} more new URLs wait for the next poll (at most {MAX_ARTICLE_PAGES} a poll)")
    # Stored articles that moved are read again for their page; without pages, a slug would overwrite their title.
    moved = previous.stored([u.url for u in chosen.changed]) if chosen.changed and spec.wants_metadata else {}
    lastmods = [u.lastmod for u in urls if u.lastmod]
    # A portal clock ahead of ours must not put the watermark past the articles of the coming hours.
    newest = min(max(lastmods), at) if lastmods else None
    return SourceRead(
        [_sitemap_entry(u, at) for u in [*chosen.new, *(u for u in chosen.changed if u.url in moved)]],
        "; ".join(problems) or None,
        tuple(warnings),
        top,
        watermark=max((w for w in (newest, previous.watermark) if w is not None), default=None),
        documents=documents,
        record=chosen.archive,
    )


def _sitemap_entry(url: SitemapEntry, at: datetime) -> Entry:
    """An article known only by its address: its page gives the title (the slug stands in till then)."""
    return Entry(
        guid=url.url,
        url=url.url,
        title=slug_title(url.url),
        summary="",
        image_url=None,
        published_at=min(url.lastmod, at) if url.lastmod else at,
        categories=(),
        dated=url.lastmod is not None,
    )


def slug_title(url: str) -> str:
    """A readable stand-in title from the URL's last path segment (`thong-bao-lich-tiep-dan-123.html`)."""
    segments = [s for s in unquote(urlparse(url).path).split("/") if s]
    words = (segments[-1] if segments else urlparse(url).netloc).rsplit(".", 1)[0].replace("_", "-").split("-")
    while len(words) > 1 and words[-1].isdigit():
        words.pop()  # trailing article ids say nothing to a reader
    text = " ".join(w for w in words if w)
    return cap(text[:1].upper() + text[1:], MAX_TITLE) or url


# --- article pages ------------------------------------------------------------


def _with_metadata(
    read: SourceRead,
    spec: config.Source,
    fetcher: Fetcher,
    zone: tzinfo,
    at: datetime,
    stored: StoredLookup,
    fetchable: Callable[[str], bool],
) -> SourceRead:
    """Fill what entries lack from their article pages; stored articles only when their sitemap `lastmod` moved.

    A new entry whose page could not be had for now (robots.txt unreadable, a
    timeout, a 5xx) or was not reached within the budget waits for the next poll:
    it is left out of this reading rather than stored half-read for ever. A
    stored article whose page is unchanged (304), unreadable or untitled is left
    out too: nothing about it is known to have changed.
    """
    already = stored([e.guid for e in read.entries])
    wanted = [
        e
        for e in read.entries
        if fetchable(e.url)
        and ((spec.kind == "sitemap" and e.guid in already) or (e.guid not in already and _lacks(e, spec)))
    ][:MAX_ARTICLE_PAGES]
    requests = [PageRequest(e.url, *_validators(already.get(e.guid))) for e in wanted]
    pages = run_alone(_read_pages(PoliteFetcher(fetcher, fetcher.settings), requests, zone)) if requests else []
    warnings = list(read.warnings)
    defaults = _site_descriptions(pages)
    for text in sorted(defaults):
        warnings.append(f"a description on several article pages (the portal's default?) not used: {text[:80]!r}")
    merged: dict[str, Entry | None] = {}
    validators: dict[str, PageValidators] = {}
    for entry, page in zip(wanted, [*pages, *([None] * (len(wanted) - len(pages)))], strict=True):
        refreshing = entry.guid in already
        if page is None:
            warnings.append(f"article {entry.url}: not read within {ARTICLE_BUDGET_SECONDS:g} s; next poll")
            merged[entry.guid] = None
            continue
        outcome, meta = page.outcome, page.meta
        if meta is None or outcome.fetched is None:
            why = outcome.skipped or page.unreadable
            if why:
                waits = outcome.retry and not refreshing
                warnings.append(f"article {entry.url}: {why}" + ("; next poll" if waits else ""))
            merged[entry.guid] = None if refreshing or outcome.retry else entry
            continue
        validators[entry.guid] = PageValidators(outcome.fetched.etag, outcome.fetched.last_modified)
        if meta.description in defaults:
            meta = replace(meta, description=None)
        merged[entry.guid] = None if refreshing and not meta.title else _merge(entry, meta, spec.kind == "sitemap", at)
    entries = [merged.get(e.guid, e) for e in read.entries]
    return replace(read, entries=[e for e in entries if e is not None], warnings=tuple(warnings), pages=validators)


@dataclass(frozen=True)
class _Page:
    """An article page as read: its metadata, or none (not fetched, unchanged, or `unreadable`)."""

    outcome: PageOutcome
    meta: ArticleMeta | None = None
    unreadable: str | None = None  # fetched, but not an HTML page


async def _read_pages(polite: PoliteFetcher, requests: list[PageRequest], zone: tzinfo) -> list[_Page]:
    """Pages fetched and parsed a round at a time (the bodies then dropped), until done or out of time."""
    found: list[_Page] = []
    deadline = time.monotonic() + ARTICLE_BUDGET_SECONDS
    for start in range(0, len(requests), PAGES_PER_ROUND):
        if time.monotonic() > deadline:
            break
        outcomes = await polite.fetch_pages(requests[start : start + PAGES_PER_ROUND])
        found += [_parsed(outcome, zone) for outcome in outcomes]
    return found


def _parsed(outcome: PageOutcome, zone: tzinfo) -> _Page:
    fetched = outcome.fetched
    if fetched is None or fetched.not_modified:
        return _Page(outcome)
    try:
        root = read_html(fetched.body, fetched.headers, fetched.url).root
    except NotHtml as exc:
        return _Page(outcome, unreadable=str(exc))
    return _Page(outcome, article_metadata(root, fetched.url, zone))


def _site_descriptions(pages: list[_Page]) -> set[str]:
    """Descriptions found on several pages: the portal's slogan in every page's head, not an article's summary."""
    counts = Counter(p.meta.description for p in pages if p.meta is not None and p.meta.description)
    return {text for text, count in counts.items() if count > 1}


def _lacks(entry: Entry, spec: config.Source) -> bool:
    return spec.kind == "sitemap" or not entry.summary or entry.image_url is None or not entry.dated


def _validators(page: PageValidators | None) -> tuple[str | None, str | None]:
    return (page.etag, page.last_modified) if page else (None, None)


def _merge(entry: Entry, meta: ArticleMeta, from_sitemap: bool, at: datetime) -> Entry:
    """The entry with what its page adds, never overriding what the listing itself said.

    A sitemap says only the address and a `lastmod`, which is often when the
    sitemap was generated: the page's title and published time win there.
    """
    published = entry.published_at
    if meta.published_at is not None and (from_sitemap or not entry.dated):
        published = min(meta.published_at, at)
    return replace(
        entry,
        title=cap(meta.title, MAX_TITLE) if from_sitemap and meta.title else entry.title,
        summary=entry.summary or cap(meta.description or "", MAX_SUMMARY),
        image_url=entry.image_url or meta.image,
        published_at=published,
        dated=entry.dated or meta.published_at is not None,
    )
