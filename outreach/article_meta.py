"""What an article page says about itself: title, description, image, publication time.

Feeds and listing pages often give a bare title and link; a post needs a
summary and a picture. The article page carries them in tags meant for exactly
that (OpenGraph for Facebook, Twitter cards, JSON-LD for search engines), and
Vietnamese portals fill them in unevenly: `name="og:title"` where the standard
says `property=`, upper-case names, relative or double-escaped values, dates as
`26/11/2026 10:14` with no zone. Each field takes the first usable value from
its sources, in order of how deliberately the portal wrote them.

A portal's site-wide default description (its own slogan, the same on every
page) looks like a real one on any single page; only a caller that sees
several pages of one source can tell, by finding the same text on all of them.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import lxml.html
from lxml import etree

from outreach.feeds import MAX_SUMMARY, MAX_TITLE, cap, read_date
from outreach.text import nfc, squash

T = TypeVar("T")

_TITLE_KEYS = ("og:title", "twitter:title")
_DESCRIPTION_KEYS = ("og:description", "twitter:description", "description")
_IMAGE_KEYS = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src")
_ARTICLE_TYPES = frozenset({"newsarticle", "article"})


@dataclass(frozen=True)
class ArticleMeta:
    """What the page declares; None where it declares nothing usable."""

    title: str | None = None
    description: str | None = None
    image: str | None = None  # absolute http(s) URL
    published_at: datetime | None = None  # aware, UTC


def article_metadata(root: lxml.html.HtmlElement, page_url: str, zone: tzinfo) -> ArticleMeta:
    """The page's metadata; `page_url` resolves relative images, `zone` reads dates written without one.

    (lxml-stubs has no HtmlElement type, so the helpers take the `_Element` it is, to be checked.)

    The JSON-LD headline comes before `<title>`, which portals suffix with
    their own name ("… - Cổng thông tin điện tử tỉnh …").
    """
    metas = _meta_contents(root)
    article = _json_ld_article(root)
    base = _base_url(root, page_url)
    titles = [*_keyed(metas, _TITLE_KEYS), *_ld_texts(article.get("headline")), *_title_texts(root)]
    images = [*_keyed(metas, _IMAGE_KEYS), *_ld_images(article.get("image"))]
    dates = [
        *_keyed(metas, ("article:published_time",)),
        *_itemprop_dates(root),
        *_article_times(root),
        *_ld_texts(article.get("datePublished")),
    ]
    return ArticleMeta(
        title=_first(titles, lambda text: _text(text, MAX_TITLE)),
        description=_first(_keyed(metas, _DESCRIPTION_KEYS), lambda text: _text(text, MAX_SUMMARY)),
        image=_first(images, lambda url: _absolute(url, base)),
        published_at=_first(dates, lambda text: read_date(_clean(text), zone)),
    )


def _first(candidates: Iterable[str], read: Callable[[str], T | None]) -> T | None:
    """The first candidate that reads as a value: a bad one must not hide a good one after it."""
    for candidate in candidates:
        value = read(candidate)
        if value is not None:
            return value
    return None


def _clean(text: str) -> str:
    """One NFC line, entities decoded: the parser decoded them once, portals that escape twice need a second pass."""
    return nfc(squash(html.unescape(text)))


def _text(text: str, limit: int) -> str | None:
    cleaned = _clean(text)
    return cap(cleaned, limit) if cleaned else None


def _absolute(url: str, base: str) -> str | None:
    """`url` resolved against the page; None unless it is http(s): a post cannot show a `data:` image."""
    url = url.strip()
    if not url:
        return None
    resolved = urljoin(base, url)
    parts = urlsplit(resolved)
    return resolved if parts.scheme in ("http", "https") and parts.netloc else None


def _base_url(root: etree._Element, page_url: str) -> str:
    """What relative URLs resolve against: `<base href>` (itself relative to the page) when present."""
    for base in root.cssselect("base[href]"):
        return urljoin(page_url, (base.get("href") or "").strip())
    return page_url


# --- <meta>, <title>, microdata ------------------------------------------------


def _meta_contents(root: etree._Element) -> dict[str, list[str]]:
    """`content` of every `<meta>` by its lower-cased `property` or `name`, in page order.

    Both attributes are read for every key: portals write `name="og:title"`
    as often as the standard `property="og:title"`.
    """
    found: dict[str, list[str]] = {}
    for meta in root.iter("meta"):
        content = meta.get("content")
        if content is None:
            continue
        keys = {key.strip().lower() for attr in ("property", "name") if (key := meta.get(attr))}
        for key in keys:
            found.setdefault(key, []).append(content)
    return found


def _keyed(metas: dict[str, list[str]], keys: Iterable[str]) -> list[str]:
    return [content for key in keys for content in metas.get(key, [])]


def _title_texts(root: etree._Element) -> Iterator[str]:
    for title in root.iter("title"):
        yield _element_text(title)


def _itemprop_dates(root: etree._Element) -> Iterator[str]:
    """`itemprop="datePublished"` values: a `<meta content>`, a `<time datetime>` or an element's text."""
    for element in root.cssselect("[itemprop]"):
        if (element.get("itemprop") or "").strip().lower() == "datepublished":
            yield element.get("content") or element.get("datetime") or _element_text(element)


def _element_text(element: etree._Element) -> str:
    """The text inside `element` (lxml types it str-or-bytes; an HTML tree only holds str)."""
    return "".join(part for part in element.itertext() if isinstance(part, str))


def _article_times(root: etree._Element) -> Iterator[str]:
    """`<time datetime>` inside `<article>`: outside it, a time is as likely the page's clock or a sidebar's."""
    for time in root.cssselect("article time[datetime]"):
        yield time.get("datetime") or ""


# --- JSON-LD -------------------------------------------------------------------


def _json_ld_article(root: etree._Element) -> dict[str, Any]:
    """The first NewsArticle or Article object in the page's JSON-LD, or an empty one."""
    for script in root.cssselect("script[type]"):
        if (script.get("type") or "").split(";")[0].strip().lower() != "application/ld+json":
            continue
        try:
            # strict=False: portals leave raw newlines and tabs inside JSON strings
            data = json.loads(script.text or "", strict=False)
        except (ValueError, RecursionError):
            continue  # one broken block must not hide the next
        for node in _ld_nodes(data):
            if _ARTICLE_TYPES & _ld_types(node):
                return node
    return {}


def _ld_nodes(data: object) -> Iterator[dict[str, Any]]:
    """Top-level objects: a single one, a list of them, or an `@graph`."""
    for node in data if isinstance(data, list) else [data]:
        if isinstance(node, dict):
            yield node
            graph = node.get("@graph")
            if isinstance(graph, list):
                yield from (item for item in graph if isinstance(item, dict))


def _ld_types(node: dict[str, Any]) -> set[str]:
    kinds = node.get("@type")
    return {str(kind).lower() for kind in (kinds if isinstance(kinds, list) else [kinds])}


def _ld_texts(value: object) -> list[str]:
    return [value] if isinstance(value, str) else []


def _ld_images(value: object) -> list[str]:
    """`image` as a URL, an ImageObject (`url`), or a list of either."""
    urls: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            urls.append(item)
        elif isinstance(item, dict) and isinstance(item.get("url"), str):
            urls.append(item["url"])
    return urls
