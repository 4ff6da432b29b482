"""Accent-free search over stored items, for a bot's /search, the CLI or a web page.

People type Vietnamese with or without marks, in any case, often half a word:
"thue", "DANG KY", "hoa don dien tu", "Đầu tư". Items carry `search_text`, their
title, summary and categories folded by `outreach.text.fold` at ingest; the query
is folded the same way and looked up in the database's full-text index (FTS5 on
SQLite, a GIN expression index on PostgreSQL; migration 0006).

Matching (decided here, the same on both databases):
- the query is split into words: runs of letters, digits and marks (Unicode);
  everything else (punctuation, emoji, FTS syntax) separates words and never
  reaches the database as syntax: each word is quoted, and only bound parameters
  carry user text;
- every word must match (AND); the last word also matches as a prefix when it has
  at least `MIN_PREFIX` letters ("hoa don di" finds "hóa đơn điện tử": people
  send half-typed words; a one-letter prefix would match most of the index, so
  "vitamin a" wants the word "a");
- queries over `MAX_QUERY_LENGTH` characters or `MAX_WORDS` words, empty ones and
  ones without a word are not searched: the result says why (`Reason`).

Ranking, over at most `CANDIDATES` index hits (best by the database's own rank):
1. exact first: when the query has marks, an item whose title or summary holds the
   words as typed, marks and all, comes before one that matches only once folded
   ("đường" and "dương" are different words). Tone marks compare per word wherever
   they sit: old and new placement ("hoà"/"hòa", "thuỷ"/"thủy", "khoẻ"/"khỏe")
   differ only in which vowel carries the tone, never in meaning;
2. whole words before a last word matched only as a prefix ("dau tu" puts "đầu
   tư" before "đầu tuần");
3. the database's rank (bm25 on SQLite, ts_rank on PostgreSQL), then newest first.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnClause, Float, Select, Text, bindparam, column, func, literal_column, select, table
from sqlalchemy.orm import Session

from outreach.models import Item
from outreach.text import fold, nfc

MAX_QUERY_LENGTH = 200  # a bot message is not a search query beyond this
MAX_WORDS = 12  # each word is one more AND in the index; no real search needs more
CANDIDATES = 200  # index hits ranked in Python; results beyond these are not looked at
MAX_LIMIT = 50  # hits one call returns at most
MIN_PREFIX = 2  # the last word matches as a prefix from this many characters

# Tone marks (huyền, sắc, hỏi, ngã, nặng), moved to a fixed place for the exact
# check: where a syllable carries its tone is spelling, not meaning. Circumflex,
# breve and horn are letters (â, ă, ơ, ư) and stay where they are.
_TONES = frozenset("\u0300\u0301\u0309\u0303\u0323")

# The PostgreSQL document: ASCII punctuation becomes space first, so "42/2022/nd-cp"
# or "quangngai.gov.vn" are words as on SQLite, not one file or host token. Must be
# the very expression of migration 0006's index, or PostgreSQL cannot use it.
_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PG_DOCUMENT = "to_tsvector('simple', translate(search_text, '{}', '{}'))".format(
    _PUNCTUATION.replace("'", "''"), " " * len(_PUNCTUATION)
)


class Reason(enum.StrEnum):
    """Why a query was not searched, for a front end to answer helpfully."""

    empty = "empty"  # nothing but white space
    too_long = "too_long"  # over MAX_QUERY_LENGTH characters or MAX_WORDS words
    no_words = "no_words"  # only punctuation, symbols or emoji


@dataclass(frozen=True)
class SearchHit:
    """One item found (or listed), with what a reply needs to show and link it."""

    item_id: int
    title: str
    url: str
    published_at: datetime
    topics: tuple[str, ...]
    language: str
    exact: bool = False  # title/summary hold the query's words with its marks (never for an unmarked query)


@dataclass(frozen=True)
class SearchResult:
    """The hits of a query, best first, or the reason it was not searched."""

    query: str
    words: tuple[str, ...] = ()  # the folded words looked up
    hits: tuple[SearchHit, ...] = ()
    reason: Reason | None = None

    @property
    def searched(self) -> bool:
        """True when the query went to the index (it may still have found nothing)."""
        return self.reason is None


def search_items(
    session: Session,
    query: str,
    limit: int = 5,
    language: str | None = None,
    topic: str | None = None,
) -> SearchResult:
    """Items matching every word of `query` (the last also as a prefix), best first.

    Never raises on what people type: a query that cannot be searched comes back
    with a `reason` and no hits. Works on SQLite and PostgreSQL alike.
    """
    if not query.strip():
        return SearchResult(query, reason=Reason.empty)
    if len(query) > MAX_QUERY_LENGTH:
        return SearchResult(query, reason=Reason.too_long)
    words = tuple(w for w in _words(fold(query)) if _indexable(w))
    if not words:
        return SearchResult(query, reason=Reason.no_words)
    if len(words) > MAX_WORDS:
        return SearchResult(query, words, reason=Reason.too_long)
    prefix = len(words[-1]) >= MIN_PREFIX
    if session.get_bind().dialect.name == "postgresql":
        statement = _postgresql_candidates(words, prefix)
    else:
        statement = _sqlite_candidates(words, prefix)
    statement = _filtered(statement, language, topic).limit(CANDIDATES)
    rows = session.execute(statement).all()
    exact_words = _exact_words(query) if _has_marks(query) else None
    judged = [(row, exact_words is not None and _holds(row, exact_words)) for row in rows]
    judged.sort(key=lambda pair: _rank_key(pair[0], pair[1], words))
    return SearchResult(query, words, tuple(_hit(row, exact) for row, exact in judged[: _bounded(limit)]))


def latest_items(
    session: Session, limit: int = 5, topic: str | None = None, language: str | None = None
) -> list[SearchHit]:
    """The newest items, optionally of one topic or language (a bot's /latest)."""
    statement = select(*_COLUMNS).order_by(Item.published_at.desc(), Item.id.desc()).limit(_bounded(limit))
    return [_hit(row, exact=False) for row in session.execute(_filtered(statement, language, topic))]


# --- the database side ---------------------------------------------------------

_COLUMNS = (
    Item.id,
    Item.title,
    Item.summary,
    Item.url,
    Item.published_at,
    Item.topics,
    Item.language,
    Item.search_text,
)
_FTS = table("items_search", column("rowid"))


def _sqlite_candidates(words: Sequence[str], prefix: bool) -> Select[Any]:
    """FTS5: each word a quoted string (so no word is ever an operator), the last a prefix."""
    terms = ['"' + word.replace('"', '""') + '"' for word in words]
    if prefix:
        terms[-1] += "*"
    score = -literal_column("bm25(items_search)", Float)  # bm25: lower is better
    return (
        select(*_COLUMNS, score.label("score"))
        .select_from(_FTS)
        .join(Item, Item.id == _FTS.c.rowid)
        .where(literal_column("items_search").op("MATCH")(bindparam("fts_query", " AND ".join(terms))))
        .order_by(score.desc())
    )


def _postgresql_candidates(words: Sequence[str], prefix: bool) -> Select[Any]:
    """tsquery of quoted lexemes joined by &, the last with :* (a prefix), bound as a parameter."""
    terms = ["'" + word.replace("\\", "\\\\").replace("'", "''") + "'" for word in words]
    if prefix:
        terms[-1] += ":*"
    document: ColumnClause[Any] = literal_column(PG_DOCUMENT)
    tsquery = func.to_tsquery(literal_column("'simple'"), bindparam("ts_query", " & ".join(terms), Text))
    score = func.ts_rank(document, tsquery, type_=Float)
    return select(*_COLUMNS, score.label("score")).where(document.op("@@")(tsquery)).order_by(score.desc())


_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


def _filtered(statement: _Query, language: str | None, topic: str | None) -> _Query:
    if language:
        statement = statement.where(Item.language == language)
    if topic:
        # Topic ids are [a-z0-9_-]: the quoted id matches one JSON array element
        # exactly, on SQLite and PostgreSQL alike (as outreach.items does).
        statement = statement.where(Item.topics.cast(Text).contains(f'"{topic}"', autoescape=True))
    return statement


def _bounded(limit: int) -> int:
    return max(1, min(limit, MAX_LIMIT))


# --- words and ranking ------------------------------------------------------------


def _is_word_char(char: str) -> bool:
    # Letters, digits, marks (a decomposed "ế" stays one word) and private use, as
    # SQLite's unicode61 tokenizer counts them; "_" and all punctuation separate.
    category = unicodedata.category(char)
    return category[0] in "LNM" or category == "Co"


def _words(text: str) -> list[str]:
    """Runs of word characters, in order."""
    words: list[str] = []
    current: list[str] = []
    for char in text:
        if _is_word_char(char):
            current.append(char)
        elif current:
            words.append("".join(current))
            current = []
    if current:
        words.append("".join(current))
    return words


def _indexable(word: str) -> bool:
    # A word of marks alone is no token to FTS5, and an empty phrase there matches nothing.
    return any(unicodedata.category(char)[0] in "LN" or unicodedata.category(char) == "Co" for char in word)


def _has_marks(query: str) -> bool:
    """Does the query carry any mark (or đ)? "duong" says nothing about "đường" vs "dương"."""
    decomposed = unicodedata.normalize("NFD", query)
    return "đ" in decomposed.casefold() or any(unicodedata.combining(char) for char in decomposed)


@dataclass(frozen=True)
class _Word:
    """A word with its tone taken out, for comparisons blind to where the tone sits."""

    letters: str  # NFD, casefolded, tone marks removed
    tones: str  # the tone marks removed, in order


def _exact_word(word: str) -> _Word:
    return _Word("".join(c for c in word if c not in _TONES), "".join(c for c in word if c in _TONES))


def _exact_words(text: str) -> list[_Word]:
    """The words of `text` as written (NFC, casefolded), each with its tone set apart."""
    decomposed = unicodedata.normalize("NFD", nfc(text).casefold())
    return [_exact_word(word) for word in _words(decomposed) if _indexable(word)]


def _holds(row: Any, wanted: Sequence[_Word]) -> bool:
    """Title or summary hold every wanted word as written, the last maybe as a prefix."""
    return _matches(_exact_words(f"{row.title} {row.summary}"), wanted)


def _matches(written: Iterable[_Word], wanted: Sequence[_Word]) -> bool:
    if not wanted:
        return False
    have = set(written)
    *whole, last = wanted
    if not all(word in have for word in whole):
        return False
    if last in have:
        return True
    if sum(not unicodedata.combining(char) for char in last.letters) < MIN_PREFIX:
        return False  # as in the index: a one-letter last word is whole
    # A half-typed last word: its letters begin a word's, and its tone (if typed yet) is that word's.
    return any(
        word.letters.startswith(last.letters)
        and len(word.letters) > len(last.letters)
        and last.tones in ("", word.tones)
        for word in have
    )


def _rank_key(row: Any, exact: bool, words: Sequence[str]) -> tuple[bool, bool, float, float, int]:
    whole = set(words) <= set(_words(row.search_text))
    return (not exact, not whole, -float(row.score or 0.0), -row.published_at.timestamp(), -row.id)


def _hit(row: Any, exact: bool) -> SearchHit:
    return SearchHit(
        item_id=row.id,
        title=row.title,
        url=row.url,
        published_at=row.published_at,
        topics=tuple(row.topics or ()),
        language=row.language,
        exact=exact,
    )
