"""Text helpers for Vietnamese content: NFC, accent-free folding, HTML to plain text."""

from __future__ import annotations

import re
import unicodedata
from html.parser import HTMLParser

_SPACES = re.compile(r"\s+")
# Nothing in Unicode decomposes đ/Đ, so folding must map them by hand.
_D_MAP = str.maketrans({"đ": "d", "Đ": "D"})
_BLOCK_TAGS = frozenset({"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"})


def nfc(text: str) -> str:
    """Vietnamese text is stored NFC: feeds mix composed and decomposed forms."""
    return unicodedata.normalize("NFC", text)


def fold(text: str) -> str:
    """Accent-free, case-free form for matching: 'Đất đai' and 'dat dai' fold alike."""
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.translate(_D_MAP).casefold()


def squash(text: str) -> str:
    """Collapse runs of white space to one space and trim."""
    return _SPACES.sub(" ", text).strip()


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, a space where a block ends."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Plain, NFC, single-spaced text of an HTML fragment (feed summaries are HTML)."""
    if "<" not in fragment and "&" not in fragment:
        return nfc(squash(fragment))
    # convert_charrefs=True makes the parser unescape entities in the text it hands us.
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    return nfc(squash("".join(parser.parts)))


# Tokens that can hide in error texts: Telegram puts the bot token in its URLs,
# the Graph API takes access_token as a query parameter.
_SECRET_PATTERNS = (
    re.compile(r"(?<!\d)\d{5,16}:[A-Za-z0-9_-]{30,}"),
    re.compile(r"(access_token=)[^&\s\"']+"),
)
MAX_ERROR = 500


def scrub(text: str) -> str:
    """An error text fit to store and show: tokens masked, length bounded."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "***", text)
    return text[:MAX_ERROR]


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 delivery`, `2 deliveries`: the count with its noun agreeing."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"
