"""Accent-free search over items on SQLite (FTS5) and PostgreSQL (GIN), kept in step on ingest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, event, insert, inspect, select, text
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.db import Store, _alembic_config, current_revision, head_revision
from outreach.ingest import poll_sources
from outreach.models import Item, Source
from outreach.search import MAX_LIMIT, MAX_QUERY_LENGTH, MAX_WORDS, Reason, SearchResult, latest_items, search_items
from outreach.text import fold
from tests.conftest import FeedServer, rss, rss_item

START = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


class Items:
    """Adds items to a store the way ingest writes them (search text folded from title, summary, categories)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.count = 0
        with store.sessions.begin() as session:
            source = Source(name="news", url="https://quangngai.gov.vn/rss", language="vi")
            session.add(source)
        self.source_id = source.id

    def add(
        self,
        title: str,
        summary: str = "",
        *,
        topics: tuple[str, ...] = (),
        language: str = "vi",
        categories: tuple[str, ...] = (),
        age_days: float | None = None,
    ) -> int:
        """A new item, each one newer than the last unless its age is given."""
        self.count += 1
        published = START - timedelta(days=age_days) if age_days is not None else START + timedelta(hours=self.count)
        with self.store.sessions.begin() as session:
            item = Item(
                source_id=self.source_id,
                guid=f"g-{self.count}",
                url=f"https://quangngai.gov.vn/tin-tuc/{self.count}.html",
                title=title,
                summary=summary,
                published_at=published,
                language=language,
                topics=list(topics),
                search_text=fold(" ".join((title, summary, *categories))),
            )
            session.add(item)
        return item.id


@pytest.fixture
def items(store: Store) -> Items:
    return Items(store)


def find(
    store: Store, query: str, limit: int = 5, language: str | None = None, topic: str | None = None
) -> SearchResult:
    with store.sessions() as session:
        return search_items(session, query, limit=limit, language=language, topic=topic)


def found(store: Store, query: str, limit: int = 5, language: str | None = None, topic: str | None = None) -> list[int]:
    result = find(store, query, limit, language, topic)
    assert result.reason is None, result.reason
    return [hit.item_id for hit in result.hits]


# --- accent-free matching ---------------------------------------------------------


@pytest.fixture
def portal(items: Items) -> dict[str, int]:
    return {
        "tax": items.add("Hướng dẫn quyết toán thuế thu nhập cá nhân năm 2026", "Hồ sơ nộp trước 31/3."),
        "register": items.add("Đăng ký kinh doanh qua mạng", "Thủ tục đăng ký hộ kinh doanh trực tuyến."),
        "invoice": items.add("Triển khai hóa đơn điện tử cho hộ kinh doanh", "Áp dụng từ tháng 7."),
        "invest": items.add("Thu hút Đầu tư vào Khu kinh tế Dung Quất", categories=("Đầu tư",)),
        "weather": items.add("Dự báo thời tiết cuối tuần", "Mưa rào ở vùng núi."),
        "decree": items.add("Nghị định 42/2022/NĐ-CP về cổng thông tin", "Xem trên quangngai.gov.vn."),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("thue", ["tax"]),
        ("THUẾ", ["tax"]),
        ("dau tu", ["invest"]),
        ("Đầu tư", ["invest"]),
        ("DANG KY", ["register"]),
        ("dang ky", ["register"]),
        ("Đăng ký", ["register"]),
        ("hoa don dien tu", ["invoice"]),
        ("hóa đơn điện tử", ["invoice"]),
        ("hoa don di", ["invoice"]),  # the last word half typed
        ("ho kinh doanh", ["register", "invoice"]),  # every word, anywhere; said twice ranks higher
        ("kinh doanh thue", []),  # every word must match
        ("42/2022/nd-cp", ["decree"]),  # PostgreSQL's parser would read this as one file name
        ("nd cp", ["decree"]),
        ("quangngai", ["decree"]),  # nor a host name
    ],
)
def test_queries_with_or_without_marks_find_the_item(
    store: Store, portal: dict[str, int], query: str, expected: list[str]
) -> None:
    assert found(store, query) == [portal[name] for name in expected]


def test_result_carries_what_a_reply_shows(store: Store, items: Items) -> None:
    item_id = items.add("Hạn nộp tờ khai thuế tháng 10", topics=("tax",))
    result = find(store, "thue")
    assert result.searched
    assert result.words == ("thue",)
    [hit] = result.hits
    assert (hit.item_id, hit.title) == (item_id, "Hạn nộp tờ khai thuế tháng 10")
    assert hit.url == f"https://quangngai.gov.vn/tin-tuc/{items.count}.html"
    assert hit.published_at == START + timedelta(hours=1)
    assert (hit.topics, hit.language, hit.exact) == (("tax",), "vi", False)


def test_one_letter_last_word_is_a_whole_word(store: Store, items: Items) -> None:
    vitamin = items.add("Bổ sung vitamin A cho trẻ")
    items.add("Bổ sung ngân sách")
    assert found(store, "bo sung a") == [vitamin]


# --- ranking ------------------------------------------------------------------------------


def test_exact_marks_rank_first(store: Store, items: Items) -> None:
    road = items.add("Nâng cấp đường tỉnh 623", "Công trình đường giao thông.")
    sun = items.add("Năng lượng mặt trời: điện dương", "Dương cực và âm cực.")  # newer, and says it twice
    by_road = find(store, "đường")
    assert [(h.item_id, h.exact) for h in by_road.hits] == [(road, True), (sun, False)]
    by_sun = find(store, "Dương")
    assert [(h.item_id, h.exact) for h in by_sun.hits] == [(sun, True), (road, False)]
    # Typed without marks there is nothing to be exact about: both, by rank then newest.
    plain = find(store, "duong")
    assert {h.item_id for h in plain.hits} == {road, sun}
    assert not any(h.exact for h in plain.hits)


def test_old_and_new_tone_placement_are_both_exact(store: Store, items: Items) -> None:
    old = items.add("Hoà giải ở cơ sở")  # old placement: the tone on the a
    new = items.add("Hòa giải ở cơ sở")  # new placement: on the o
    chemistry = items.add("Hoá chất an toàn")  # another tone: another word
    for query in ("hòa", "hoà", "Hoà giải"):
        hits = find(store, query).hits
        assert {h.item_id for h in hits if h.exact} == {old, new}, query
    assert [h.item_id for h in find(store, "hòa").hits][-1] == chemistry
    assert next((h.item_id, h.exact) for h in find(store, "hoá").hits) == (chemistry, True)
    water = items.add("Công trình thủy lợi")
    assert [(h.item_id, h.exact) for h in find(store, "thuỷ lợi").hits] == [(water, True)]


def test_half_typed_exact_word(store: Store, items: Items) -> None:
    road = items.add("Nâng cấp đường tỉnh")
    other = items.add("Đương nhiệm và dưỡng sức")  # newer: first unless exactness counts
    assert [(h.item_id, h.exact) for h in find(store, "nâng cấp đườ").hits] == [(road, True)]
    # "đườ" carries its tone already: it begins "đường", not "đương"; "đươ" (no tone yet) begins both.
    assert [(h.item_id, h.exact) for h in find(store, "đườ").hits] == [(road, True), (other, False)]
    assert {h.item_id for h in find(store, "đươ").hits if h.exact} == {road, other}
    # A whole last word is not a prefix of a longer one with the same letters: "đương" is not "đường".
    assert [(h.item_id, h.exact) for h in find(store, "đương").hits] == [(other, True), (road, False)]


def test_whole_words_before_a_prefix(store: Store, items: Items) -> None:
    invest = items.add("Hội nghị xúc tiến đầu tư")
    week = items.add("Lịch làm việc đầu tuần")  # newer
    assert found(store, "dau tu") == [invest, week]


def test_rank_then_newest(store: Store, items: Items) -> None:
    older = items.add("Tin thuế", age_days=3)
    newer = items.add("Tin thuế", age_days=1)
    assert found(store, "thue") == [newer, older]


def test_limit_is_bounded(store: Store, items: Items) -> None:
    ids = [items.add(f"Thông báo thuế số {n}") for n in range(MAX_LIMIT + 3)]
    assert found(store, "thue", limit=3) == ids[::-1][:3]
    assert len(found(store, "thue", limit=0)) == 1
    assert len(found(store, "thue", limit=10_000)) == MAX_LIMIT


# --- what people type ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"thue',
        "*",
        "thue*",
        "thue OR",
        "OR thue",
        "thue AND NOT",
        "(",
        "thue)",
        "NEAR(",
        "NEAR(thue dau, 2)",
        "-x",
        "thue -x",
        "a:b",
        "search_text:thue",
        "^thue",
        "thue + dau",
        "'",
        "it's",
        "\\",
        "thue\\",
        "thue & | ! <-> :*",
        "'; DROP TABLE items; --",
        "%_%",
        "thue\x00",
        "thuế \ud800",
        "नमस्ते \u0903",
        "中文 ทดสอบ",
        "{}[]<>",
        "\ue000",  # private use: a word to SQLite, none to PostgreSQL's parser
        "thue \ue000",
        "a" * MAX_QUERY_LENGTH,  # one word too long for PostgreSQL to index
    ],
)
def test_search_syntax_is_just_text(store: Store, portal: dict[str, int], query: str) -> None:
    result = find(store, query)
    assert isinstance(result, SearchResult)
    assert found(store, "thue") == [portal["tax"]]  # nothing was dropped
    if query in ("thue*", "thue)", "^thue", "thue\\"):
        assert [h.item_id for h in result.hits] == [portal["tax"]]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", Reason.empty),
        ("   \n\t ", Reason.empty),
        ("!!! ... ???", Reason.no_words),
        ("🎉🎉 👍", Reason.no_words),
        ('"*" - ( ) :', Reason.no_words),
        ("\u0903", Reason.no_words),  # a mark alone is no word
        ("thue " * 40, Reason.too_long),  # over MAX_QUERY_LENGTH characters
        ("a" * (MAX_QUERY_LENGTH + 1), Reason.too_long),
        (" ".join(["thue"] * (MAX_WORDS + 1)), Reason.too_long),
    ],
)
def test_queries_that_cannot_be_searched_say_why(
    store: Store, portal: dict[str, int], query: str, reason: Reason
) -> None:
    result = find(store, query)
    assert (result.reason, result.hits, result.searched) == (reason, (), False)


def test_longest_allowed_query_is_searched(store: Store, portal: dict[str, int]) -> None:
    assert find(store, " ".join(["thue"] * MAX_WORDS)).reason is None
    assert find(store, "thue" + " " * (MAX_QUERY_LENGTH - 4)).reason is None


# --- filters and /latest --------------------------------------------------------------------


def test_language_and_topic_filters(store: Store, items: Items) -> None:
    vi_tax = items.add("Hoàn thuế giá trị gia tăng", topics=("tax", "procedures"))
    en_tax = items.add("VAT refund (thuế GTGT) guide", language="en", topics=("tax",))
    vi_land = items.add("Thuế sử dụng đất nông nghiệp", topics=("planning-land",))
    assert set(found(store, "thue")) == {vi_land, en_tax, vi_tax}
    assert found(store, "thue", language="en") == [en_tax]
    assert set(found(store, "thue", topic="tax")) == {en_tax, vi_tax}
    assert found(store, "thue", topic="tax", language="vi") == [vi_tax]
    assert found(store, "thue", topic="planning") == []  # a topic is a whole id, not a part
    assert found(store, "thue", topic='tax"%') == []


def test_filters_apply_before_the_candidate_bound(store: Store, items: Items) -> None:
    wanted = items.add("Thuế môn bài", language="en", age_days=30)
    for n in range(210):
        items.add(f"Thuế môn bài {n}")
    assert found(store, "thue mon bai", language="en") == [wanted]


def test_latest_items_newest_first(store: Store, items: Items) -> None:
    old = items.add("Tin cũ", topics=("tax",), age_days=10)
    mid = items.add("Tin giữa", language="en", age_days=5)
    new = items.add("Tin mới", topics=("tax",), age_days=1)
    with store.sessions() as session:
        assert [h.item_id for h in latest_items(session)] == [new, mid, old]
        assert [h.item_id for h in latest_items(session, limit=2)] == [new, mid]
        assert [h.item_id for h in latest_items(session, topic="tax")] == [new, old]
        assert [h.item_id for h in latest_items(session, language="en")] == [mid]
        [hit] = latest_items(session, limit=1)
        assert (hit.title, hit.topics, hit.exact) == ("Tin mới", ("tax",), False)
        assert latest_items(session, topic="nothing") == []


# --- the index follows the rows ---------------------------------------------------------------


def test_new_changed_and_removed_items_are_searched_at_once(store: Store, items: Items) -> None:
    item_id = items.add("Lấy ý kiến dự thảo bảng giá đất")
    assert found(store, "bang gia dat") == [item_id]
    with store.sessions.begin() as session:
        item = session.get_one(Item, item_id)
        item.title = "Công bố bảng giá nhà ở xã hội"
        item.search_text = fold(item.title)
    assert found(store, "bang gia dat") == []
    assert found(store, "nha o xa hoi") == [item_id]
    with store.sessions.begin() as session:
        item = session.get_one(Item, item_id)
        item.summary = "Không đổi chữ tìm kiếm"  # search_text unchanged: the index needs nothing
    assert found(store, "nha o xa hoi") == [item_id]
    with store.sessions.begin() as session:
        session.execute(delete(Item).where(Item.id == item_id))
    assert found(store, "nha o xa hoi") == []
    again = items.add("Công bố bảng giá nhà ở xã hội")
    assert found(store, "nha o xa hoi") == [again]


def test_removing_a_source_removes_its_items_from_search(store: Store, items: Items) -> None:
    items.add("Tin về thuế")
    with store.sessions.begin() as session:
        session.execute(delete(Source))
    assert found(store, "thue") == []
    with store.sessions() as session:
        assert session.scalar(select(Item.id)) is None


def test_ingested_items_are_searchable_at_once(
    store: Store, feed_server: FeedServer, make_settings: Callable[..., Settings]
) -> None:
    first = rss_item("qng-1", "Hướng dẫn đăng ký hóa đơn điện tử", "<p>Doanh nghiệp <b>đăng ký</b> trước 20/12.</p>")
    second = rss_item("qng-2", "Thu hút đầu tư vào Dung Quất", category="Đầu tư")
    url = feed_server.serve("/rss", body=rss(first))
    settings = make_settings(
        sources=[{"name": "news", "url": url, "topics": ["procedures"]}],
        fetch={"timeout_seconds": 2, "max_bytes": 200_000},
    )
    [result] = poll_sources(store, settings.schedule, ())
    assert result.new == 1
    [hit] = find(store, "DANG KY hoa don").hits
    assert hit.title == "Hướng dẫn đăng ký hóa đơn điện tử"
    assert hit.url == "https://quangngai.gov.vn/tin-tuc/qng-1.html"
    assert "procedures" in hit.topics
    assert find(store, "dau tu").hits == ()
    feed_server.serve("/rss", body=rss(first, second))
    assert poll_sources(store, settings.schedule, ())[0].new == 1
    assert [h.title for h in find(store, "dau tu").hits] == ["Thu hút đầu tư vào Dung Quất"]
    assert [h.title for h in find(store, "dung").hits] == ["Thu hút đầu tư vào Dung Quất"]  # a prefix of nothing else


# --- the schema -----------------------------------------------------------------------------


def test_downgrade_removes_the_index_and_upgrade_indexes_what_is_there(store: Store, items: Items) -> None:
    before = items.add("Tin về thuế môn bài")
    config = _alembic_config(store.engine)
    command.downgrade(config, "0005")
    assert current_revision(store.engine) == "0005"
    assert _search_objects(store) == set()
    with store.sessions.begin() as session:  # rows written while there was no index, in 0005's columns
        session.execute(
            insert(Item).values(
                source_id=items.source_id,
                guid="while-down",
                url="https://quangngai.gov.vn/x.html",
                title="Đăng ký thuế lần đầu",
                published_at=START,
                language="vi",
                search_text=fold("Đăng ký thuế lần đầu"),
            )
        )
    command.upgrade(config, "head")
    assert current_revision(store.engine) == head_revision()
    assert _search_objects(store)
    with store.sessions() as session:
        during = session.scalars(select(Item.id).where(Item.guid == "while-down")).one()
    assert set(found(store, "thue")) == {before, during}
    assert found(store, "dang ky thue") == [during]


def _search_objects(store: Store) -> set[str]:
    """The search index's tables, triggers and indexes that exist now."""
    with store.engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            rows = connection.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'items_search%'"))
            return {row[0] for row in rows}
        return {index["name"] or "" for index in inspect(connection).get_indexes("items")} & {"ix_items_search"}


def test_the_database_uses_its_index(store: Store, portal: dict[str, int]) -> None:
    statements: list[tuple[str, Any]] = []

    def remember(_conn: object, _cursor: object, statement: str, parameters: Any, *_: object) -> None:
        if "items_search" in statement or "to_tsquery" in statement:
            statements.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", remember)
    try:
        with store.sessions() as session:
            postgresql = session.get_bind().dialect.name == "postgresql"
            if postgresql:
                # Few rows make a sequential scan cheaper; forbid it to see that the index is usable at all.
                session.execute(text("SET LOCAL enable_seqscan = off"))
            assert found_in(session, "hoa don") == [portal["invoice"]]
            [(statement, parameters)] = statements
            explain = "EXPLAIN " if postgresql else "EXPLAIN QUERY PLAN "
            rows = session.connection().exec_driver_sql(explain + statement, parameters).all()
    finally:
        event.remove(store.engine, "before_cursor_execute", remember)
    plan = "\n".join(" ".join(str(value) for value in row) for row in rows)
    assert ("ix_items_search" if postgresql else "VIRTUAL TABLE INDEX") in plan, plan


def found_in(session: Session, query: str) -> list[int]:
    return [hit.item_id for hit in search_items(session, query).hits]
