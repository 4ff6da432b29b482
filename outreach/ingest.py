"""Polling sources: fetch, parse, dedupe, file under topics, store.

One broken source records its error and the next one is polled all the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach import config
from outreach.db import Store, insert_ignoring_conflicts
from outreach.feeds import Entry, parse_feed
from outreach.fetch import Fetched, Fetcher, FetchError
from outreach.models import Item, Source, utcnow
from outreach.text import fold, scrub
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


def sync_source(session: Session, spec: config.Source) -> Source:
    """The stored row for a configured source, created or brought up to date."""
    row = session.scalar(select(Source).where(Source.name == spec.name))
    if row is None:
        row = Source(name=spec.name, url=spec.url)
        session.add(row)
    elif row.url != spec.url:
        row.etag = row.last_modified = None  # validators belong to the old URL
    row.url = spec.url
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
        run = _Polling(store, fetcher, TopicMatcher(schedule.topics), ZoneInfo(schedule.timezone))
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
        source_id, etag, last_modified = source.id, source.etag, source.last_modified
    started = utcnow()
    try:
        fetched = run.fetcher.fetch(spec.url, etag, last_modified)
        if fetched.not_modified:
            _record(run, source_id, started, None, None)
            return PollResult(spec.name, not_modified=True)
        parsed = parse_feed(fetched.body, fetched.headers, fetched.url, started, run.zone)
        with run.writing, store.sessions.begin() as session:
            new = _store_entries(session, source_id, spec, parsed.entries, run.matcher)
        error = parsed.problem
        warning = scrub("; ".join(parsed.warnings)) or None
        # Only a feed read without an error may set validators: a 304 after a partial read
        # would hide the entries we failed to read. Warnings lose nothing, so they may.
        _record(run, source_id, started, error, fetched if not parsed.problem else None, warning)
        return PollResult(spec.name, new=new, seen=len(parsed.entries), error=error, warning=warning)
    except FetchError as exc:
        _record(run, source_id, started, str(exc), None)
        return PollResult(spec.name, error=str(exc))
    except Exception as exc:  # one source's bug must not stop the others
        log.exception("polling %s failed", spec.name)
        message = scrub(f"{type(exc).__name__}: {exc}")  # a database error quotes whole statements
        _record(run, source_id, started, message, None)
        return PollResult(spec.name, error=message)


def _record(
    run: _Polling,
    source_id: int,
    at: datetime,
    error: str | None,
    fetched: Fetched | None,
    warning: str | None = None,
) -> None:
    """Write the outcome of a poll on the source row (validators only when given)."""
    with run.writing, run.store.sessions.begin() as session:
        source = session.get_one(Source, source_id)
        source.last_polled_at = at
        source.last_error = error
        if error is None and fetched is not None:  # a 304 or a failure says nothing new about warnings
            source.last_warning = warning
        if error is None:
            source.last_ok_at = at
        if fetched is not None:
            source.etag, source.last_modified = fetched.etag, fetched.last_modified


def _store_entries(
    session: Session, source_id: int, spec: config.Source, entries: list[Entry], matcher: TopicMatcher
) -> int:
    """Insert entries not stored before; the unique key settles any race."""
    known: set[str] = set()
    guids = [e.guid for e in entries]
    for start in range(0, len(guids), _GUID_BATCH):
        batch = guids[start : start + _GUID_BATCH]
        known.update(session.scalars(select(Item.guid).where(Item.source_id == source_id, Item.guid.in_(batch))))
    rows = [_row(source_id, spec, e, matcher) for e in entries if e.guid not in known]
    insert_ignoring_conflicts(session, Item, rows, ["source_id", "guid"])
    return len(rows)


def _row(source_id: int, spec: config.Source, entry: Entry, matcher: TopicMatcher) -> dict[str, object]:
    folded = fold(" ".join((entry.title, entry.summary, *entry.categories)))
    return {
        "source_id": source_id,
        "guid": entry.guid,
        "url": entry.url,
        "title": entry.title,
        "summary": entry.summary,
        "image_url": entry.image_url,
        "published_at": entry.published_at,
        "fetched_at": utcnow(),
        "language": spec.language,
        "topics": matcher.match_folded(folded, spec.topics),
        "search_text": folded,
    }
