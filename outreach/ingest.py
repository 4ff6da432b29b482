"""Polling sources: read (outreach.source_read), dedupe, file under topics, store, update what changed.

One broken source records its error and the next one is polled all the same.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import config
from outreach.db import Store, insert_ignoring_conflicts
from outreach.feeds import Entry
from outreach.fetch import Fetcher, FetchError
from outreach.models import Item, SitemapUrl, Source, utcnow
from outreach.source_read import PageValidators, Previous, SourceRead, StoredLookup, read_source
from outreach.text import fold, plural, scrub
from outreach.topics import TopicMatcher

log = logging.getLogger(__name__)
_GUID_BATCH = 500
MAX_POLLS = 8  # sources polled at once in one run
MAX_POLLS_PER_HOST = 2  # of which on one host: a portal is not to be hammered


@dataclass(frozen=True)
class PollResult:
    """What one poll of one source did."""

    source: str
    new: int = 0
    seen: int = 0
    not_modified: bool = False
    error: str | None = None
    warning: str | None = None  # read, with a workaround (a charset, entities, a date): items stored
    changed: int = 0  # stored items the portal changed (updated in place)


def sync_source(session: Session, spec: config.Source) -> Source:
    """The stored row for a configured source, created or brought up to date."""
    row = session.scalar(select(Source).where(Source.name == spec.name))
    if row is None:
        row = Source(name=spec.name, url=spec.url)
        session.add(row)
    elif row.url != spec.url or row.kind != spec.kind:
        row.etag = row.last_modified = row.watermark = None  # they belong to the old URL
    settings = spec_hash(spec)
    if row.spec_hash != settings:
        row.etag = row.last_modified = None  # new selectors or filters: read the source afresh
        row.spec_hash = settings
    row.url = spec.url
    row.kind = spec.kind
    row.language = spec.language
    row.default_topics = list(spec.topics)
    row.poll_minutes = spec.poll_minutes
    session.flush()
    return row


class UnknownSource(ValueError):
    """A source name that is not in the config."""


@dataclass(frozen=True)
class _Polling:
    """What every source's poll in one run shares."""

    store: Store
    fetcher: Fetcher
    matcher: TopicMatcher
    zone: ZoneInfo
    domains: tuple[str, ...]  # article pages are read from the source's host and these (the portal's)
    # One writer at a time within a run: SQLite refuses a second writer's transaction
    # that read first; the database work is short, the fetching is not.
    writing: threading.Lock = field(default_factory=threading.Lock)


def poll_sources(
    store: Store, schedule: config.Schedule, names: Iterable[str] = (), fetcher: Fetcher | None = None
) -> list[PollResult]:
    """Poll the named sources (all when none are named), each in its own transactions; results in config order.

    Sources are polled at once (at most MAX_POLLS, MAX_POLLS_PER_HOST on one host),
    each fetch under its own deadline: a slow source delays no other.
    """
    wanted = list(names)
    unknown = [n for n in wanted if n not in {s.name for s in schedule.sources}]
    if unknown:
        raise UnknownSource(f"unknown source(s): {', '.join(unknown)}")
    specs = [s for s in schedule.sources if not wanted or s.name in wanted]
    with ExitStack() as stack:
        if fetcher is None:
            fetcher = stack.enter_context(Fetcher(schedule.fetch))
        run = _Polling(
            store,
            fetcher,
            TopicMatcher(schedule.topics),
            ZoneInfo(schedule.timezone),
            tuple(schedule.tracker.allowed_domains),
        )
        return _poll_all(run, specs)


def _host(spec: config.Source) -> str:
    return (urlparse(spec.url).hostname or "").lower()  # "" for files


def _poll_all(run: _Polling, specs: list[config.Source]) -> list[PollResult]:
    """Each source polled on a worker thread as soon as a slot overall and on its host is free."""
    results: dict[int, PollResult] = {}
    waiting = list(enumerate(specs))
    busy: dict[str, int] = {}
    running: dict[Future[PollResult], tuple[int, str]] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_POLLS, len(specs))), thread_name_prefix="poll") as pool:
        while waiting or running:
            for index, spec in list(waiting):
                host = _host(spec)
                if len(running) < MAX_POLLS and busy.get(host, 0) < MAX_POLLS_PER_HOST:
                    busy[host] = busy.get(host, 0) + 1
                    waiting.remove((index, spec))
                    running[pool.submit(_poll_one, run, spec)] = (index, host)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, host = running.pop(future)
                busy[host] -= 1
                results[index] = future.result()  # _poll_one turns every Exception into a result
    return [results[index] for index in range(len(specs))]


def _poll_one(run: _Polling, spec: config.Source) -> PollResult:
    store = run.store
    with run.writing, store.sessions.begin() as session:
        source = sync_source(session, spec)
        source_id = source.id
        recorded = _recorded(session, source_id) if spec.kind == "sitemap" else frozenset()
        previous = Previous(
            source.etag, source.last_modified, source.watermark, _stored_lookup(store, source_id), recorded
        )
    started = utcnow()
    try:
        read = read_source(spec, run.fetcher, run.zone, started, previous, domains=run.domains)
        if read.not_modified:
            _record(run, source_id, started, None, None)
            return PollResult(spec.name, not_modified=True)
        with run.writing, store.sessions.begin() as session:
            new, changed, elsewhere = _store_entries(session, source_id, spec, read, run.matcher)
            _remember_urls(session, source_id, read.record)
        notes = [
            *read.warnings,
            *([f"{plural(elsewhere, 'item')} already stored from another source"] if elsewhere else []),
        ]
        warning = scrub("; ".join(notes)) or None
        # Only a source read without an error may set validators: a 304 after a partial read
        # would hide the entries we failed to read. Warnings lose nothing, so they may.
        _record(run, source_id, started, read.problem, read if not read.problem else None, warning)
        return PollResult(
            spec.name, new=new, seen=len(read.entries), changed=changed, error=read.problem, warning=warning
        )
    except FetchError as exc:
        _record(run, source_id, started, str(exc), None)
        return PollResult(spec.name, error=str(exc))
    except Exception as exc:  # one source's bug must not stop the others
        log.exception("polling %s failed", spec.name)
        message = scrub(f"{type(exc).__name__}: {exc}")  # a database error quotes whole statements
        _record(run, source_id, started, message, None)
        return PollResult(spec.name, error=message)


def _stored_lookup(store: Store, source_id: int) -> StoredLookup:
    """Which of some guids the source already has, with their article pages' validators."""

    def lookup(guids: list[str]) -> dict[str, PageValidators]:
        found: dict[str, PageValidators] = {}
        with store.sessions() as session:
            for start in range(0, len(guids), _GUID_BATCH):
                rows = session.execute(
                    select(Item.guid, Item.page_etag, Item.page_last_modified).where(
                        Item.source_id == source_id, Item.guid.in_(guids[start : start + _GUID_BATCH])
                    )
                )
                found.update((guid, PageValidators(etag, modified)) for guid, etag, modified in rows)
        return found

    return lookup


def spec_hash(spec: config.Source) -> str:
    """A digest of what decides how a source is read (not its name, topics or schedule)."""
    decisive = spec.model_dump_json(include={"url", "kind", "listing", "sitemap", "article_metadata", "language"})
    return hashlib.blake2b(decisive.encode(), digest_size=8).hexdigest()


def _recorded(session: Session, source_id: int) -> frozenset[int]:
    return frozenset(session.scalars(select(SitemapUrl.url_key).where(SitemapUrl.source_id == source_id)))


def _remember_urls(session: Session, source_id: int, keys: frozenset[int]) -> None:
    """Record the URLs a sitemap listed (the archive on a first poll, what was stored later)."""
    rows = [{"source_id": source_id, "url_key": key} for key in keys]
    for start in range(0, len(rows), _GUID_BATCH):
        insert_ignoring_conflicts(session, SitemapUrl, rows[start : start + _GUID_BATCH], ["source_id", "url_key"])


def _record(
    run: _Polling,
    source_id: int,
    at: datetime,
    error: str | None,
    read: SourceRead | None,
    warning: str | None = None,
) -> None:
    """Write the outcome of a poll on the source row (validators and watermark only when given)."""
    with run.writing, run.store.sessions.begin() as session:
        source = session.get_one(Source, source_id)
        source.last_polled_at = at
        source.last_error = error
        if error is None and read is not None:  # a 304 or a failure says nothing new about warnings
            source.last_warning = warning
        if error is None:
            source.last_ok_at = at
        if read is not None and read.fetched is not None:
            source.etag, source.last_modified = read.fetched.etag, read.fetched.last_modified
            source.watermark = read.watermark


def _store_entries(
    session: Session, source_id: int, spec: config.Source, read: SourceRead, matcher: TopicMatcher
) -> tuple[int, int, int]:
    """Insert entries not stored before and update those the portal changed; (new, changed, from elsewhere).

    The unique key settles any race between two pollers. A field the reading did
    not give (an empty summary, no image) says nothing: only what the source
    itself now says differently counts as a change. An article another source
    already brought (a sitemap and a listing of the same section) is not stored
    twice: it would be announced twice.
    """
    stored: dict[str, Item] = {}
    guids = [e.guid for e in read.entries]
    for start in range(0, len(guids), _GUID_BATCH):
        batch = guids[start : start + _GUID_BATCH]
        stored.update(
            (i.guid, i) for i in session.scalars(select(Item).where(Item.source_id == source_id, Item.guid.in_(batch)))
        )
    now = utcnow()
    fresh = [e for e in read.entries if e.guid not in stored]
    elsewhere = _stored_elsewhere(session, source_id, [e.url for e in fresh])
    rows = [_row(source_id, spec, e, matcher, read.pages.get(e.guid), now) for e in fresh if e.url not in elsewhere]
    insert_ignoring_conflicts(session, Item, rows, ["source_id", "guid"])
    changed = 0
    for entry in read.entries:
        item = stored.get(entry.guid)
        if item is not None and _update(item, spec, entry, matcher, read.pages.get(entry.guid), now):
            changed += 1
    return len(rows), changed, len(fresh) - len(rows)


def _stored_elsewhere(session: Session, source_id: int, urls: list[str]) -> set[str]:
    """Of these article URLs, those another source already stored."""
    found: set[str] = set()
    for start in range(0, len(urls), _GUID_BATCH):
        batch = urls[start : start + _GUID_BATCH]
        found.update(session.scalars(select(Item.url).where(Item.source_id != source_id, Item.url.in_(batch))))
    return found


def _update(
    item: Item, spec: config.Source, entry: Entry, matcher: TopicMatcher, page: PageValidators | None, now: datetime
) -> bool:
    """Bring a stored item up to what the portal now says; whether its title, summary or image changed."""
    if page is not None:
        item.page_etag, item.page_last_modified = page.etag, page.last_modified
    changes = {"title": entry.title}
    if entry.summary:
        changes["summary"] = entry.summary
    if entry.image_url:
        changes["image_url"] = entry.image_url
    if all(getattr(item, name) == value for name, value in changes.items()):
        return False
    for name, value in changes.items():
        setattr(item, name, value)
    folded = folded_text(replace(entry, title=item.title, summary=item.summary))  # a summary kept from before
    item.search_text = folded
    item.topics = matcher.match_folded(folded, spec.topics)
    item.changed_at = now
    return True


def folded_text(entry: Entry) -> str:
    """What topics are matched against and search reads: title, summary and categories, accent-free."""
    return fold(" ".join((entry.title, entry.summary, *entry.categories)))


def _row(
    source_id: int,
    spec: config.Source,
    entry: Entry,
    matcher: TopicMatcher,
    page: PageValidators | None,
    now: datetime,
) -> dict[str, object]:
    folded = folded_text(entry)
    return {
        "source_id": source_id,
        "guid": entry.guid,
        "url": entry.url,
        "title": entry.title,
        "summary": entry.summary,
        "image_url": entry.image_url,
        "published_at": entry.published_at,
        "fetched_at": now,
        "language": spec.language,
        "topics": matcher.match_folded(folded, spec.topics),
        "search_text": folded,
        "page_etag": page.etag if page else None,
        "page_last_modified": page.last_modified if page else None,
    }
