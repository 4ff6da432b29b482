"""Turning feed bytes into clean entries: plain text, NFC, aware UTC times.

Feeds as portals serve them: wrong charsets (windows-1258 declared as UTF-8),
HTML entities undeclared in XML, dates in Vietnamese spellings, unbounded
fields. Real errors (entries lost) go in `ParsedFeed.problem`; anything read
with a repair goes in `ParsedFeed.warnings`.
"""

from __future__ import annotations

import calendar
import codecs
import email.utils
import hashlib
import html.entities
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import urljoin

import feedparser
from charset_normalizer import from_bytes

from outreach.text import html_to_text, nfc, squash

# Longer guids are kept as a digest: they must fit the unique index on every database.
MAX_GUID = 512
# Fields are capped at a word boundary and marked, so a runaway feed cannot flood a post.
MAX_TITLE = 300
MAX_SUMMARY = 2000
CUT_MARK = " …"
# One bad feed must not produce an unbounded list of warnings.
MAX_WARNINGS = 20


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
    # False when the source gave no readable date and `published_at` is the fetch time standing in:
    # an article page's published time may then replace it.
    dated: bool = True


@dataclass(frozen=True)
class ParsedFeed:
    """The entries that could be read and what happened on the way.

    `problem` is a real error: entries were (or may have been) lost, so the
    feed's validators must not be saved. `warnings` are repairs and oddities
    (charset guessed, undeclared entities, unreadable dates, skipped entries
    and why): the entries kept are right, the feed is read as far as it goes.
    `skipped` counts entries dropped for having no usable id or link (each
    also has a warning saying why).
    """

    entries: list[Entry]
    problem: str | None
    skipped: int = 0
    warnings: tuple[str, ...] = ()
    encoding: str | None = None  # the charset the entries were read in


def parse_feed(
    body: bytes, headers: dict[str, str], feed_url: str, fetched_at: datetime, zone: tzinfo = UTC
) -> ParsedFeed:
    """Parse RSS/Atom bytes; keep what parsed before an error and say what it was.

    Relative links are resolved against `feed_url` here, not by feedparser: it
    would also turn a plain `<guid>123</guid>` into a URL that changes whenever
    the feed moves. Dates without a zone are read in `zone`.
    """
    warnings: list[str] = []
    parsed = feedparser.parse(body, response_headers=headers)
    body, headers, parsed = _fix_charset(body, headers, parsed, warnings)
    parsed = _fix_markup(body, headers, parsed, warnings)
    problem = _problem(parsed, headers, warnings)
    if not parsed.entries and not parsed.version:
        kind = headers.get("content-type", "unknown content type")
        problem = f"not an RSS or Atom feed ({kind})" + (f"; {problem}" if problem else "")
        return ParsedFeed([], problem, 0, _bounded(warnings), parsed.get("encoding"))

    atom = str(parsed.version).startswith("atom")
    entries: dict[str, Entry] = {}
    skipped = 0
    for number, raw in enumerate(parsed.entries, 1):
        entry = _entry(raw, number, atom, feed_url, fetched_at, zone, warnings)
        if entry is None:
            skipped += 1
        else:
            entries.setdefault(entry.guid, entry)  # a feed repeating a guid: first wins
    if problem and entries:
        problem = f"partly read ({len(entries)} entries kept): {problem}"
    return ParsedFeed(list(entries.values()), problem, skipped, _bounded(warnings), parsed.get("encoding"))


def _bounded(warnings: list[str]) -> tuple[str, ...]:
    unique = list(dict.fromkeys(warnings))
    if len(unique) <= MAX_WARNINGS:
        return tuple(unique)
    return (*unique[:MAX_WARNINGS], f"… and {len(unique) - MAX_WARNINGS} more warnings")


def _problem(parsed: Any, headers: dict[str, str], warnings: list[str]) -> str | None:
    """The bozo error when it may have cost entries; a warning when it did not."""
    if not parsed.bozo:
        return None
    exc = parsed.bozo_exception
    if isinstance(exc, feedparser.CharacterEncodingOverride):
        return None  # _fix_charset has said which charset was used
    if isinstance(exc, feedparser.NonXMLContentType) and parsed.version:
        kind = headers.get("content-type", "no content type")
        warnings.append(f"feed served as {kind}, not as XML; read all the same")
        return None
    return f"{type(exc).__name__}: {exc}"


# --- charsets ---------------------------------------------------------------

# Letters only Vietnamese uses among the Latin charsets: a mis-decoded
# windows-1258 or UTF-8 body (read as windows-1252, latin-1, ...) has none.
_VIETNAMESE = frozenset("ăĂđĐơƠưƯĩĨũŨ" + "".join(chr(c) for c in range(0x1EA0, 0x1EFA)))
# Never in Vietnamese text: what a wrong decoding leaves behind. Control characters
# make a feed suspect, but do not count against a decoding: a feed may really hold them.
_GARBLE = re.compile("[\ufffd\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9fÐðÞþ]")
_WRONG = re.compile("[\ufffdÐðÞþ]")
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_XML_DECL_TEXT = re.compile(r"^(\s*<\?xml[^>]*?encoding\s*=\s*[\"'])[A-Za-z0-9._:-]+([\"'])")
_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.IGNORECASE)
_UNICODE = frozenset({"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"})


def _codec(name: str | None) -> str | None:
    """Python's name for a charset label, or None when it knows none."""
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _score(text: str) -> int:
    """How much a decoding looks like Vietnamese: its letters, less what decodings garble."""
    return sum(ch in _VIETNAMESE for ch in text) - 5 * len(_WRONG.findall(text))


def _feed_text(parsed: Any) -> str:
    parts = [str(parsed.feed.get("title") or "")]
    for raw in parsed.entries:
        parts += [str(raw.get("title") or ""), str(raw.get("summary") or "")]
    return " ".join(parts)


def _fix_charset(
    body: bytes, headers: dict[str, str], parsed: Any, warnings: list[str]
) -> tuple[bytes, dict[str, str], Any]:
    """Re-read a feed whose charset feedparser had to guess, in the one that gives Vietnamese.

    Candidates: what feedparser used, the HTTP charset, the XML declaration,
    charset-normalizer's guess, windows-1258; each must decode the whole body
    strictly. The body is then handed to feedparser again as NFC UTF-8.
    """
    used = _codec(parsed.get("encoding"))
    overridden = isinstance(parsed.get("bozo_exception"), feedparser.CharacterEncodingOverride)
    if not overridden and used in _UNICODE and not _GARBLE.search(_feed_text(parsed)):
        return body, headers, parsed  # the common case: clean UTF-8
    match = _CHARSET.search(headers.get("content-type", ""))
    http = _codec(match.group(1)) if match else None
    decl_match = _XML_DECL.match(body)
    declared = _codec(decl_match.group(1).decode("ascii")) if decl_match else None
    best = from_bytes(body[:200_000]).best()
    detected = _codec(best.encoding) if best is not None else None

    scored: list[tuple[int, str, str]] = []
    for name in dict.fromkeys(n for n in (used, http, declared, detected, "cp1258", "utf-8") if n):
        try:
            text = nfc(body.decode(name))
        except (UnicodeDecodeError, LookupError):
            continue
        scored.append((_score(text), name, text))
    said = " and ".join(dict.fromkeys(f"{n} ({where})" for n, where in ((http, "HTTP"), (declared, "XML")) if n))
    if not scored:
        warnings.append(f"no charset decodes the whole feed; read as {used}: some text may be garbled")
        return body, headers, parsed
    _, name, text = max(scored, key=lambda s: s[0])  # max keeps the first of equals: feedparser's choice
    if "\ufffd" in text:
        warnings.append(f"text read as {name} still has replacement characters: some of it is garbled")
    if name == used:
        if overridden or (said and used not in (http, declared)):
            warnings.append(f"charset declared as {said or 'nothing'} is wrong: read as {used}")
        return body, headers, parsed
    warnings.append(f"charset declared as {said or 'nothing'} is wrong: read as {name}, not {used}")
    text = _XML_DECL_TEXT.sub(r"\1utf-8\2", text, count=1)
    kind = headers.get("content-type", "application/xml").split(";")[0].strip() or "application/xml"
    fixed_headers = {**headers, "content-type": f"{kind}; charset=utf-8"}
    fixed = text.encode("utf-8")
    return fixed, fixed_headers, feedparser.parse(fixed, response_headers=fixed_headers)


# --- markup repairs -----------------------------------------------------------

_ENTITY = re.compile(rb"&([A-Za-z][A-Za-z0-9]{1,31});")
_XML_ENTITIES = frozenset({"lt", "gt", "amp", "quot", "apos"})
_C0_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _fix_markup(body: bytes, headers: dict[str, str], parsed: Any, warnings: list[str]) -> Any:
    """Re-read a feed that only broke XML with HTML entities or control characters.

    Real CMSes write `&nbsp;`, `&ndash;`, `&hellip;` without declaring them:
    the strict parser fails, and feedparser's loose one reads the entries but
    flags the feed. They become character references and the feed is read
    again; if it still fails, that failure is the problem to report.
    """
    if not parsed.bozo or isinstance(parsed.bozo_exception, feedparser.CharacterEncodingOverride):
        return parsed
    if str(_codec(parsed.get("encoding"))).startswith(("utf-16", "utf-32")):
        return parsed  # byte patterns below assume an ASCII-compatible charset
    names: dict[str, None] = {}

    def reference(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode("ascii")
        chars = html.entities.html5.get(f"{name};")
        if name in _XML_ENTITIES or chars is None:
            return match.group(0)
        names[f"&{name};"] = None
        return b"".join(b"&#%d;" % ord(ch) for ch in chars)

    fixed = _ENTITY.sub(reference, body)
    fixed, controls = _C0_BYTES.subn(b"", fixed)
    if not names and not controls:
        return parsed
    if names:
        warnings.append(f"undeclared HTML entities read as characters: {', '.join(names)}")
    if controls:
        warnings.append(f"{controls} control characters removed (not allowed in XML)")
    return feedparser.parse(fixed, response_headers=headers)


# --- entries ------------------------------------------------------------------

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
# RSS gives no title type: a plain title may hold "<sửa đổi>", an HTML one real tags.
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|big|br|cite|code|del|div|em|font|h[1-6]|i|img|ins|mark|p|q|s|small|span|strike|strong|sub|sup|u)\b[^<>]*>",
    re.IGNORECASE,
)


def _clean(text: str) -> str:
    """One line of NFC text with no control characters."""
    return nfc(squash(_CONTROLS.sub(" ", text)))


def cap(text: str, limit: int) -> str:
    """`text` cut at a word boundary to at most `limit` characters, marked with ' …'."""
    if len(text) <= limit:
        return text
    window = text[: limit - len(CUT_MARK) + 1]
    space = window.rfind(" ")
    kept = window[:space] if space > limit // 2 else window[: limit - len(CUT_MARK)]
    return kept.rstrip(" ,;:.-\u2013\u2014") + CUT_MARK


def _title(raw: Any, atom: bool) -> str:
    """The title as plain text: markup stripped only when it is markup."""
    value = str(raw.get("title") or "")
    kind = (raw.get("title_detail") or {}).get("type", "text/plain")
    if kind == "text/plain" and (atom or not _HTML_TAG.search(value)):
        return _clean(value)
    return _clean(html_to_text(value))


def _label(raw: Any, number: int) -> str:
    title = _clean(str(raw.get("title") or ""))
    return f"#{number} {cap(title, 60)!r}" if title else f"#{number}"


def _entry(
    raw: Any, number: int, atom: bool, feed_url: str, fetched_at: datetime, zone: tzinfo, warnings: list[str]
) -> Entry | None:
    """An Entry, or None (and a warning why) when it has no id or link to dedupe and point at."""
    link = _CONTROLS.sub("", squash(raw.get("link") or ""))
    guid = _CONTROLS.sub("", squash(raw.get("id") or "")) or link
    if not guid:
        warnings.append(f"entry {_label(raw, number)} skipped: it has neither an id nor a link")
        return None
    if raw.get("guidislink") and link == guid and not link.startswith(("http://", "https://")):
        link = ""  # feedparser copies a permalink guid into a missing link, even "12345"
    if not link and guid.startswith(("http://", "https://")):
        link = guid  # only an absolute guid can stand in for a missing link
    if not link:
        warnings.append(f"entry {_label(raw, number)} skipped: its id {guid[:80]!r} is not a URL and it has no link")
        return None
    if len(guid) > MAX_GUID:
        guid = "sha256:" + hashlib.sha256(guid.encode()).hexdigest()
    published = _when(raw, zone)
    if published is None:
        texts = [str(t) for k in ("published", "updated") if (t := dict.get(raw, k))]
        if texts:
            warnings.append(
                f"entry {_label(raw, number)}: unreadable date {texts[0]!r}; the fetch time is used instead"
            )
    content = raw.get("content") or []
    summary_html = raw.get("summary") or (content[0].get("value") if content else "") or ""
    return Entry(
        guid=guid,
        url=urljoin(feed_url, link),
        title=cap(_title(raw, atom) or link, MAX_TITLE),
        summary=cap(_clean(html_to_text(summary_html)), MAX_SUMMARY),
        image_url=_image(raw, feed_url),
        published_at=min(
            published or fetched_at, fetched_at
        ),  # a portal's clock ahead of ours must not pin an item on top
        categories=tuple(c for t in raw.get("tags") or [] if (c := _clean(str(t.get("term") or "")))),
        dated=published is not None,
    )


# --- dates --------------------------------------------------------------------

# An unambiguous zone that feedparser reads right even when we cannot read the rest.
_EXPLICIT_ZONE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2}|\b(?:GMT|UTC|UT))\s*$")


def _when(raw: Any, zone: tzinfo) -> datetime | None:
    """Publication time, aware UTC; a date written without a zone is read in `zone`."""
    for key in ("published", "updated"):
        # dict.get: feedparser's own get() warns when "updated" is missing but "published" is not
        text = str(dict.get(raw, key) or "")
        if not text:
            continue
        when = read_date(text, zone)
        parsed = dict.get(raw, f"{key}_parsed")
        if when is None and parsed and _EXPLICIT_ZONE.search(text):
            when = datetime.fromtimestamp(calendar.timegm(parsed), UTC)
        if when is not None:
            return when
    return None


_WEEKDAY = re.compile(
    r"^(?:thứ\s*(?:hai|ba|tư|năm|sáu|bảy|[2-7])|chủ\s*nhật|cn|t[2-7]|(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?)\s*,?\s*",
    re.IGNORECASE,
)
_ZONE_NAMES = {
    "Z": 0, "UT": 0, "UTC": 0, "GMT": 0, "ICT": 7 * 60,
    "EST": -5 * 60, "EDT": -4 * 60, "CST": -6 * 60, "CDT": -5 * 60,
    "MST": -7 * 60, "MDT": -6 * 60, "PST": -8 * 60, "PDT": -7 * 60,
}  # fmt: skip
_OFFSET = re.compile(r"^\(?(?:(?:GMT|UTC|UT)\s*)?([+-])(\d{1,2})(?::?(\d{2}))?\)?$", re.IGNORECASE)
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?)?)\s*(.*)$")
_DAY_FIRST = re.compile(
    r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:\s*[,T-]?\s*(?:lúc\s*)?(\d{1,2})[:hg](\d{2})(?::(\d{2}))?)?\s*(.*)$",
    re.IGNORECASE,
)
_TIME_FIRST = re.compile(
    r"^(\d{1,2}):(\d{2})(?::(\d{2}))?\s*[,-]?\s*(?:ngày\s*)?(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*(.*)$"
)
_RFC822_ZONE = re.compile(r"\s+([A-Za-z]{1,5}|[+-]\d{2}(?::?\d{2})?)$")


def strip_weekday(text: str) -> str:
    """`Thứ Năm, 26/11/2026` -> `26/11/2026`; NFC first, so either normalisation matches."""
    return _WEEKDAY.sub("", squash(nfc(text)), count=1)


def zone_offset(text: str) -> timedelta | None:
    """The UTC offset a zone text names (`+07`, `-08:00`, `+0700`, `ICT`, `GMT+7`).

    None for an empty text (the date is local time); ValueError when unknown.
    """
    text = text.strip()
    if not text:
        return None
    if text.upper() in _ZONE_NAMES:
        return timedelta(minutes=_ZONE_NAMES[text.upper()])
    match = _OFFSET.match(text)
    if not match:
        raise ValueError(f"unknown zone {text!r}")
    sign, hours, minutes = match.groups()
    if int(hours) > 14 or int(minutes or 0) > 59:
        raise ValueError(f"impossible offset {text!r}")
    offset = timedelta(hours=int(hours), minutes=int(minutes or 0))
    return -offset if sign == "-" else offset


def _iso(text: str) -> tuple[datetime, str] | None:
    match = _ISO.match(text)
    if not match:
        return None
    return datetime.fromisoformat(match.group(1).replace(",", ".")), match.group(2)


def _day_first(text: str) -> tuple[datetime, str] | None:
    match = _DAY_FIRST.match(text)
    if not match:
        return None
    day, month, year, hour, minute, second, rest = match.groups()
    fields = (int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    return datetime(*fields), rest


def _time_first(text: str) -> tuple[datetime, str] | None:
    match = _TIME_FIRST.match(text)
    if not match:
        return None
    hour, minute, second, day, month, year, rest = match.groups()
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0)), rest


def _rfc822(text: str) -> tuple[datetime, str] | None:
    zone_match = _RFC822_ZONE.search(text)
    zone_text = zone_match.group(1) if zone_match else ""
    fields = email.utils.parsedate(text[: zone_match.start()] if zone_match else text)
    if not fields:
        return None
    return datetime(*fields[:6]), zone_text


def read_date(text: str, zone: tzinfo) -> datetime | None:
    """A feed's date text as an aware UTC time, or None when it cannot be read.

    Reads RFC 822 (with `ICT` and hours-only offsets), ISO 8601, and the
    Vietnamese portal spellings `26/11/2026 10:14[:55]`, `26-11-2026`,
    `10:14 26/11/2026`, with or without a weekday (`Thứ Năm,`). A date
    without a zone is wall-clock time in `zone`.
    """
    plain = strip_weekday(text)
    if not plain:
        return None
    for reader in (_iso, _day_first, _time_first, _rfc822):
        try:
            found = reader(plain)
            if found is None:
                continue
            wall, zone_text = found
            offset = zone_offset(zone_text)
        except (ValueError, OverflowError):
            return None
        local = wall.replace(tzinfo=zone if offset is None else timezone(offset))
        return local.astimezone(UTC)
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
