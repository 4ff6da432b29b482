"""Turning feed bytes into clean entries: plain text, NFC, aware UTC times."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser

from outreach.text import html_to_text, nfc, squash

# Declared charset was wrong but the body decoded anyway: nothing was lost.
_HARMLESS = (feedparser.CharacterEncodingOverride,)


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


def parse_feed(body: bytes, headers: dict[str, str], fetched_at: datetime) -> ParsedFeed:
    """Parse RSS/Atom bytes; keep what parsed before an error and say what it was."""
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
        entry = _entry(raw, fetched_at)
        if entry is None:
            skipped += 1
        else:
            entries.setdefault(entry.guid, entry)  # a feed repeating a guid: first wins
    if problem and entries:
        problem = f"partly read ({len(entries)} entries kept): {problem}"
    return ParsedFeed(list(entries.values()), problem, skipped)


def _entry(raw: Any, fetched_at: datetime) -> Entry | None:
    """An Entry, or None when it has neither id nor link to dedupe and point at."""
    url = squash(raw.get("link") or "")
    guid = squash(raw.get("id") or "") or url
    if not guid:
        return None
    if not url and guid.startswith(("http://", "https://")):
        url = guid
    if not url:
        return None
    content = raw.get("content") or []
    summary_html = raw.get("summary") or (content[0].get("value") if content else "") or ""
    return Entry(
        guid=guid,
        url=url,
        title=html_to_text(raw.get("title") or "") or url,
        summary=html_to_text(summary_html),
        image_url=_image(raw),
        published_at=_when(raw) or fetched_at,
        categories=tuple(nfc(t.get("term", "")) for t in raw.get("tags") or [] if t.get("term")),
    )


def _when(raw: Any) -> datetime | None:
    # feedparser gives struct_time already converted to UTC.
    for key in ("published_parsed", "updated_parsed"):
        value = raw.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
    return None


def _image(raw: Any) -> str | None:
    for enclosure in raw.get("enclosures") or []:
        if str(enclosure.get("type", "")).startswith("image/") and enclosure.get("href"):
            return str(enclosure["href"])
    for key in ("media_content", "media_thumbnail"):
        for media in raw.get(key) or []:
            if media.get("url") and media.get("medium", "image") == "image":
                return str(media["url"])
    return None
