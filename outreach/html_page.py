"""Reading a portal's HTML page into an lxml tree: the charset it really uses, NFC text.

Vietnamese portals often declare a charset they do not use: windows-1258
pages served as UTF-8, a template's `<meta charset="utf-8">` over old
windows-1258 content, or no declaration at all. So the declared charsets (HTTP,
then `<meta>`) are checked against the bytes:

- UTF-8 checks itself: a body that decodes as UTF-8 is UTF-8 (Vietnamese in
  windows-1258 never does), and so is one with a few stray bytes among many
  good characters (a legacy snippet pasted in; the bytes are replaced).
- Otherwise each candidate (the declared charsets, charset-normalizer's guess,
  windows-1258) must decode the whole body, and the reading most like
  Vietnamese wins (`feeds._score`), the first of equals.

A declared charset that was wrong is a warning, not an error: the page is read
all the same.

A body that is empty or is not HTML at all (JSON, a feed, an image) raises
`NotHtml`, a ValueError whose message is ready to store as the source's problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import lxml.html
from charset_normalizer import from_bytes
from lxml import etree
from lxml.html import HtmlElement, defs

from outreach.feeds import _CHARSET, _GARBLE, _codec, _score
from outreach.text import nfc, plural

# <meta> charsets are looked for this far in: browsers stop at 1 KB, portals put scripts first.
_META_SCAN = 64 * 1024
# charset-normalizer reads this much: enough to judge, bounded in time.
_SNIFF = 200_000
# What lxml makes around any text: not evidence that the body is HTML.
_SKELETON = frozenset({"html", "head", "body"})


class NotHtml(ValueError):
    """The body is empty or is not an HTML page; the message says which, for the source's record."""


@dataclass(frozen=True)
class HtmlPage:
    """A page's element tree (text NFC), the charset it was read in, and the repairs made."""

    root: HtmlElement
    encoding: str
    warnings: tuple[str, ...] = ()


def read_html(body: bytes, headers: dict[str, str], url: str) -> HtmlPage:
    """Decode and parse an HTML page; NotHtml when the body is empty or is not HTML.

    `headers` are the HTTP response headers (any case); `url` is the page's
    address after redirects, kept as the tree's base URL.
    """
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if not body.strip():
        raise NotHtml(f"empty page at {url}")
    warnings: list[str] = []
    encoding, text = _decode(body, content_type, warnings)
    root = _parse(text, url, content_type)
    return HtmlPage(root, encoding, tuple(warnings))


def _declared(body: bytes, content_type: str) -> list[tuple[str, str]]:
    """The charsets the page declares, as (codec, where), HTTP first (it overrides <meta> in browsers)."""
    match = _CHARSET.search(content_type)
    found = [(_codec(match.group(1)) if match else None, "HTTP"), (_meta_charset(body), "meta")]
    return [(name, where) for name, where in found if name]


def _meta_charset(body: bytes) -> str | None:
    """The charset a <meta> names, read with latin-1: every byte reads, and tags are ASCII."""
    parser = lxml.html.HTMLParser(encoding="iso-8859-1", no_network=True)
    try:
        root = lxml.html.document_fromstring(body[:_META_SCAN], parser=parser)
    except etree.ParserError:
        return None
    for meta in root.iter("meta"):
        if meta.get("charset"):
            return _codec((meta.get("charset") or "").strip())
        if (meta.get("http-equiv") or "").strip().lower() == "content-type":
            match = _CHARSET.search(meta.get("content") or "")
            if match:
                return _codec(match.group(1))
    return None


def _decode(body: bytes, content_type: str, warnings: list[str]) -> tuple[str, str]:
    """(codec, NFC text), the declared charsets checked against the bytes (see the module docstring)."""
    declared = _declared(body, content_type)
    utf8 = body.decode("utf-8", errors="replace")
    stray = utf8.count("\ufffd")
    if body.isascii():
        return next((n for n, _ in declared if not n.startswith(("utf-16", "utf-32"))), "utf-8"), utf8
    if not stray or _mostly_utf8(utf8, stray):
        name, text = "utf-8", nfc(utf8)
        if stray:
            warnings.append(f"{plural(stray, 'stray byte')} replaced (not UTF-8): some text is garbled")
    else:
        name, text = _legacy(body, [n for n, _ in declared], warnings)
    wrong = [f"{n} ({where})" for n, where in declared if n != name]
    if wrong:
        warnings.append(f"charset declared as {' and '.join(wrong)} is wrong: read as {name}")
    return name, text


def _mostly_utf8(text: str, stray: int) -> bool:
    """Whether a body that is not all UTF-8 is UTF-8 with a few stray bytes (a legacy snippet pasted in).

    A windows-1258 page read as UTF-8 has hardly a character that decodes;
    a UTF-8 page with a pasted `©` has thousands for each stray byte.
    """
    decoded = sum(1 for ch in text if ord(ch) > 0x7F) - stray
    return decoded >= 10 * stray


def _legacy(body: bytes, declared: list[str], warnings: list[str]) -> tuple[str, str]:
    """A body that is not UTF-8: the candidate decoding it whole that reads most like Vietnamese.

    Candidates: the declared charsets, charset-normalizer's guess, windows-1258;
    the first of equals wins. None decoding it whole: the first, bytes replaced.
    """
    best = from_bytes(body[:_SNIFF]).best()
    detected = _codec(best.encoding) if best is not None else None
    candidates = list(dict.fromkeys(n for n in (*declared, detected, "cp1258") if n and n != "utf-8"))
    readings: list[tuple[str, str]] = []
    for name in candidates:
        try:
            readings.append((name, nfc(body.decode(name))))
        except UnicodeDecodeError:
            continue
    if not readings:
        warnings.append(f"no charset decodes the whole page; read as {candidates[0]}: some text is garbled")
        return candidates[0], nfc(body.decode(candidates[0], errors="replace"))
    return max(readings, key=lambda r: _score(r[1]) - 5 * len(_GARBLE.findall(r[1])))  # max keeps the first of equals


def _parse(text: str, url: str, content_type: str) -> HtmlElement:
    """The element tree of `text` (handed to lxml as UTF-8, so no <meta> can override the choice)."""
    parser = lxml.html.HTMLParser(encoding="utf-8", no_network=True, remove_comments=True, remove_pis=True)
    try:
        root = lxml.html.document_fromstring(text.encode("utf-8"), parser=parser, base_url=url)
    except etree.ParserError:
        raise NotHtml(f"empty page at {url}") from None
    first = next((el for el in root.iter() if el.tag not in _SKELETON), None)
    kind = content_type or "no content type"
    if first is None:
        raise NotHtml(f"not an HTML page at {url} ({kind}): it holds no HTML elements")
    if first.tag not in defs.tags:
        raise NotHtml(f"not an HTML page at {url} ({kind}): it starts with <{first.tag}>")
    return root
