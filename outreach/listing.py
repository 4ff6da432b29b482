"""A portal's listing page (source kind `html`) read into feed entries by the source's CSS selectors.

Many provincial portals (Liferay, SharePoint, home-made CMSes) publish no
feed, but every one lists its news: a block per article with a link, a title,
often a date, a summary and a thumbnail. `config.Listing` says where those are;
this module reads them into the same `feeds.Entry` a feed gives, so the rest of
the pipeline does not know the difference.

What breaks with a portal's redesign is reported, not guessed around: the item
selector, or the link selector in every item, finding nothing is the
`problem` (no entries can be trusted). An optional selector (title, date,
summary, image) that finds nothing in any item, an unreadable date, an item
without a usable link are warnings: the entries kept are right.

Dates are read like a feed's (`feeds.read_date`), but portals write them inside
longer text (`Ngày đăng: 26/11/2026 10:14`, `(26/11/2026)`, `Cập nhật lúc 10:14
ngày 26/11/2026`): when the whole text is not a date, the first date-shaped
run of the extracted text is read.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from urllib.parse import urldefrag, urljoin, urlsplit

from lxml import etree

from outreach.config import Listing
from outreach.feeds import MAX_GUID, MAX_SUMMARY, MAX_TITLE, Entry, _bounded, _clean, cap, read_date
from outreach.html_page import HtmlPage

# Text inside these is not what a reader sees.
_HIDDEN = frozenset({"script", "style", "noscript", "template"})
# Elements whose edges separate words: `<p>Tin</p><p>mới</p>` reads "Tin mới", not "Tinmới".
_BLOCKS = frozenset(
    {"address", "article", "br", "dd", "div", "dt", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "header"}
    | {"hr", "li", "ol", "p", "section", "table", "td", "th", "tr", "ul"}
)
# Lazy-loading attributes and srcset come before `src`, which then holds a placeholder (a blank gif).
_LAZY_IMAGE = ("data-src", "data-original", "data-lazy-src")
# A date inside longer text, in the spellings `feeds.read_date` reads; time-first before day-first,
# so `10:14 26/11/2026` keeps its time. Only ever applied to text already taken out of the tree.
_DATE_IN_TEXT = re.compile(
    r"(?<!\d)(?:"
    r"\d{1,2}:\d{2}(?::\d{2})?\s*[,-]?\s*(?:ngày\s*)?\d{1,2}[/.-]\d{1,2}[/.-]\d{4}"
    r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{4}(?:\s*[,T-]?\s*(?:lúc\s*)?\d{1,2}[:hg]\d{2}(?::\d{2})?)?"
    r"|\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
    r"|(?P<day>\d{1,2})\s+tháng\s+(?P<month>\d{1,2})\s*,?\s*năm\s+(?P<year>\d{4})"
    r")(?!\d)",
    re.IGNORECASE,
)
# Selectors a listing may leave out: one that finds nothing in any item is a typo or a redesign.
_OPTIONAL = ("title", "date", "summary", "image")


@dataclass(frozen=True)
class ListingPage:
    """The entries a listing page gives, the next page to read, and what went wrong.

    `problem` means the selectors no longer fit the page (entries are missing);
    `warnings` are the listing's own (the page's charset repairs stay in `HtmlPage.warnings`).
    """

    entries: list[Entry]
    next_url: str | None
    problem: str | None
    warnings: tuple[str, ...] = ()


@dataclass
class _Reading:
    """What every item of one page is read with, and which selectors found something."""

    listing: Listing
    base: str
    fetched_at: datetime
    zone: tzinfo
    warnings: list[str]
    matched: set[str] = field(default_factory=set)

    def first(self, item: etree._Element, name: str) -> etree._Element | None:
        """The first element the `name` selector finds in `item` (None when not configured or not found)."""
        selector: str | None = getattr(self.listing, name)
        found = item.cssselect(selector) if selector else []
        if found:
            self.matched.add(name)
        return found[0] if found else None


def parse_listing(page: HtmlPage, page_url: str, listing: Listing, fetched_at: datetime, zone: tzinfo) -> ListingPage:
    """Entries in page order (a URL listed twice: first wins); dates without a zone are read in `zone`."""
    root: etree._Element = page.root
    warnings: list[str] = []
    items = root.cssselect(listing.item)
    if not items:
        return ListingPage([], None, f"item selector {listing.item!r} matched nothing on {page_url}")
    reading = _Reading(listing, _base(root, page_url), fetched_at, zone, warnings)
    entries: dict[str, Entry] = {}
    for number, item in enumerate(items, 1):
        entry = _entry(item, number, reading)
        if entry is not None:
            entries.setdefault(entry.url, entry)
    problem = _problem(len(items), bool(entries), reading, page_url)
    for name in _OPTIONAL:
        selector = getattr(listing, name)
        if selector and name not in reading.matched:
            warnings.append(f"{name} selector {selector!r} matched nothing in the {len(items)} items on {page_url}")
    next_url = _next_url(root, reading, page_url)
    return ListingPage(list(entries.values()), next_url, problem, _bounded(warnings))


def _problem(count: int, kept: bool, reading: _Reading, page_url: str) -> str | None:
    if "link" not in reading.matched:
        return f"link selector {reading.listing.link!r} matched nothing in the {count} items on {page_url}"
    if not kept:
        return f"none of the {count} items on {page_url} has an http(s) link"
    return None


def _base(root: etree._Element, page_url: str) -> str:
    """What relative links resolve against: the page's <base href>, else its address."""
    base = root.find(".//base[@href]")
    return urljoin(page_url, (base.get("href") or "").strip()) if base is not None else page_url


def _text(element: etree._Element) -> str:
    """The element's visible text on one line, NFC (the tree's text already is)."""
    parts: list[str] = []
    _gather(element, parts)
    return _clean("".join(parts))


def _gather(element: etree._Element, parts: list[str]) -> None:
    if not isinstance(element.tag, str) or element.tag in _HIDDEN:
        return  # a comment (kept by a tree not from read_html) or text no reader sees
    edge = " " if element.tag in _BLOCKS else ""
    parts += [edge, element.text or ""]
    for child in element:
        _gather(child, parts)
        parts.append(child.tail or "")
    parts.append(edge)


def _absolute(raw: str, base: str) -> str | None:
    """`raw` (an attribute's URL) made absolute without its fragment; None unless http(s).

    Tabs and line breaks inside are dropped and spaces encoded, as browsers do.
    """
    cleaned = "".join(ch for ch in raw.strip() if ch not in "\t\r\n").replace(" ", "%20")
    url = urldefrag(urljoin(base, cleaned)).url
    return url if urlsplit(url).scheme in ("http", "https") else None


def _href(element: etree._Element) -> str:
    """The element's href, or its first link's: a selector may name the heading around the link."""
    if element.get("href") is None:
        element = next((a for a in element.iter("a") if a.get("href") is not None), element)
    return (element.get("href") or "").strip()


def _label(item: etree._Element, number: int) -> str:
    text = _text(item)
    return f"item #{number} {cap(text, 60)!r}" if text else f"item #{number}"


def _entry(item: etree._Element, number: int, reading: _Reading) -> Entry | None:
    """The item as an Entry, or None (and a warning why) when it has no usable link."""
    link = reading.first(item, "link")
    if link is None:
        reading.warnings.append(f"{_label(item, number)} skipped: no {reading.listing.link!r} in it")
        return None
    href = _href(link)
    url = _absolute(href, reading.base) if href else None
    if url is None:
        reading.warnings.append(f"{_label(item, number)} skipped: its link {href[:80]!r} is not an http(s) address")
        return None
    title = reading.first(item, "title")
    summary = reading.first(item, "summary")
    image = reading.first(item, "image")
    published = _published(reading.first(item, "date"), item, number, reading)
    return Entry(
        guid=url if len(url) <= MAX_GUID else "sha256:" + hashlib.sha256(url.encode()).hexdigest(),
        url=url,
        title=cap(
            (_text(title) if title is not None else "") or _text(link) or _clean(link.get("title") or "") or url,
            MAX_TITLE,
        ),
        summary=cap(_text(summary), MAX_SUMMARY) if summary is not None else "",
        image_url=_image(image, reading.base) if image is not None else None,
        published_at=min(published or reading.fetched_at, reading.fetched_at),  # a clock ahead must not pin it on top
        categories=(),
        dated=published is not None,
    )


def _image(element: etree._Element, base: str) -> str | None:
    """An <img>'s address (lazy-loading attributes, srcset's first, then src), or an element's href / content."""
    if element.tag != "img":
        raw = element.get("href") or element.get("content")
        if raw:
            return _absolute(raw, base)
        element = next(element.iter("img"), element)
    srcset = (element.get("srcset") or "").split(",")[0].split()
    candidates = [*(element.get(name) for name in _LAZY_IMAGE), *srcset[:1], element.get("src")]
    return next((url for raw in candidates if raw and (url := _absolute(raw, base))), None)


def _published(element: etree._Element | None, item: etree._Element, number: int, reading: _Reading) -> datetime | None:
    """The date the element holds (a `datetime` / `content` attribute, else its text), aware UTC."""
    if element is None:
        return None
    text = _clean(element.get("datetime") or element.get("content") or "") or _text(element)
    when = read_date(text, reading.zone) if text else None
    if when is None and text:
        found = _DATE_IN_TEXT.search(text)
        if found:
            spelled = f"{found['day']}/{found['month']}/{found['year']}" if found["day"] else found[0]
            when = read_date(spelled, reading.zone)
    if when is None:
        reading.warnings.append(
            f"{_label(item, number)}: unreadable date {text[:80]!r}; the fetch time is used instead"
        )
    return when


def _next_url(root: etree._Element, reading: _Reading, page_url: str) -> str | None:
    """The next page's address; None on the last page (no link, or a link back to this page)."""
    selector = reading.listing.next
    found = root.cssselect(selector) if selector else []
    if not found:
        return None
    href = _href(found[0])
    if not href:
        return None  # a disabled "next" button
    url = _absolute(href, reading.base)
    if url is None:
        reading.warnings.append(
            f"next-page link {href[:80]!r} is not an http(s) address (a script?): the next page is not read"
        )
        return None
    return None if url == urldefrag(page_url).url else url
