"""Turning feed bytes into clean entries: plain text, NFC, aware UTC times."""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urljoin

import feedparser

from outreach.text import html_to_text, nfc, squash

# Declared charset was wrong but the body decoded anyway: nothing was lost.
_HARMLESS = (feedparser.CharacterEncodingOverride,)
# A date string that ends in an offset or a zone name; without one, feedparser
# assumes UTC, which is seven hours off for a Vietnamese portal.
_HAS_ZONE = re.compile(r"(?:[+-]\d{2}:?\d{2}|[A-Za-z]{1,5})\s*$")
# Longer guids are kept as a digest: they must fit the unique index on every database.
MAX_GUID = 512


@dataclass(frozen=True)
class Entry:
    """One feed entry, cleaned, before it has a source or topics."""

    guid: str
    url: str
    title: str
    summary: str
    image_url: str | None
    published_at: datetime
    categories: tuple[str, ...]


@dataclass(frozen=True)
class ParsedFeed:
    """The entries that could be read, and what went wrong (None when nothing did)."""

    entries: list[Entry]
    problem: str | None
    skipped: int = 0


def parse_feed(
    body: bytes, headers: dict[str, str], feed_url: str, fetched_at: datetime, zone: tzinfo = UTC
) -> ParsedFeed:
    """Parse RSS/Atom bytes; keep what parsed before an error and say what it was.

    Relative links are resolved against `feed_url` here, not by feedparser: it
    would also turn a plain `<guid>123</guid>` into a URL that changes whenever
    the feed moves. Dates without a zone are read in `zone`.
    """
    parsed = feedparser.parse(body, response_headers=headers)
    problem = None
    if parsed.bozo and not isinstance(parsed.bozo_exception, _HARMLESS):
        problem = f"{type(parsed.bozo_exception).__name__}: {parsed.bozo_exception}"
    if not parsed.entries and not parsed.version:
        kind = headers.get("content-type", "unknown content type")
        return ParsedFeed([], f"not an RSS or Atom feed ({kind})" + (f"; {problem}" if problem else ""))

    entries: dict[str, Entry] = {}
    skipped = 0
    for raw in parsed.entries:
        entry = _entry(raw, feed_url, fetched_at, zone)
        if entry is None:
            skipped += 1
        else:
            entries.setdefault(entry.guid, entry)  # a feed repeating a guid: first wins
    if problem and entries:
        problem = f"partly read ({len(entries)} entries kept): {problem}"
    return ParsedFeed(list(entries.values()), problem, skipped)


def _entry(raw: Any, feed_url: str, fetched_at: datetime, zone: tzinfo) -> Entry | None:
    """An Entry, or None when it has neither id nor link to dedupe and point at."""
    link = squash(raw.get("link") or "")
    guid = squash(raw.get("id") or "") or link
    if not guid:
        return None
    if raw.get("guidislink") and link == guid and not link.startswith(("http://", "https://")):
        link = ""  # feedparser copies a permalink guid into a missing link, even "12345"
    if not link and guid.startswith(("http://", "https://")):
        link = guid  # only an absolute guid can stand in for a missing link
    if not link:
        return None
    if len(guid) > MAX_GUID:
        guid = "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    published = _when(raw, zone) or fetched_at
    content = raw.get("content") or []
    summary_html = raw.get("summary") or (content[0].get("value") if content else "") or ""
    return Entry(
        guid=guid,
        url=urljoin(feed_url, link),
        title=html_to_text(raw.get("title") or "") or link,
        summary=html_to_text(summary_html),
        image_url=_image(raw, feed_url),
        published_at=min(published, fetched_at),  # a portal's clock ahead of ours must not pin an item on top
        categories=tuple(nfc(t.get("term", "")) for t in raw.get("tags") or [] if t.get("term")),
    )


def _when(raw: Any, zone: tzinfo) -> datetime | None:
    """Publication time, aware UTC; a date written without a zone is read in `zone`."""
    for key in ("published", "updated"):
        text, parsed = raw.get(key) or "", raw.get(f"{key}_parsed")
        if text and not _HAS_ZONE.search(text):
            # feedparser reads such dates as UTC, or not at all ("Fri, 27 Nov 2026 08:30:00").
            wall = _wall_time(text) or (datetime(*parsed[:6]) if parsed else None)
            if wall is not None:
                return wall.replace(tzinfo=zone).astimezone(UTC)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def _wall_time(text: str) -> datetime | None:
    """A zone-less date string as a naive wall-clock time, RFC 822 or ISO 8601."""
    fields = email.utils.parsedate(text)
    if fields:
        return datetime(*fields[:6])
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return None


def _image(raw: Any, feed_url: str) -> str | None:
    for enclosure in raw.get("enclosures") or []:
        if str(enclosure.get("type", "")).startswith("image/") and enclosure.get("href"):
            return urljoin(feed_url, str(enclosure["href"]))
    for key in ("media_content", "media_thumbnail"):
        for media in raw.get(key) or []:
            if media.get("url") and media.get("medium", "image") == "image":
                return urljoin(feed_url, str(media["url"]))
    return None
