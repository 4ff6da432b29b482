"""The store on SQLite and PostgreSQL: migrations, constraints, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError, StatementError

from outreach.db import Access, Store, current_revision, head_revision, migrate, modelled
from outreach.models import Base, Item, Source

TABLES = {"sources", "items", "campaigns", "deliveries", "links", "clicks", "alembic_version"}


def test_migrations_create_every_table(store: Store) -> None:
    assert set(inspect(store.engine).get_table_names()) >= TABLES
    assert current_revision(store.engine) == head_revision()


def test_migrations_match_the_models(store: Store) -> None:
    with store.engine.connect() as connection:
        opts = {"compare_type": True, "include_object": modelled}
        diff = compare_metadata(MigrationContext.configure(connection, opts=opts), Base.metadata)
    assert diff == []


def test_migrate_again_does_nothing(store: Store) -> None:
    assert migrate(store.engine) is False


def test_times_round_trip_as_aware_utc(store: Store) -> None:
    hanoi = timezone(timedelta(hours=7))
    with store.sessions.begin() as session:
        source = Source(
            name="news",
            url="https://quangngai.gov.vn/rss",
            language="vi",
            last_polled_at=datetime(2026, 11, 27, 8, 30, tzinfo=hanoi),
        )
        session.add(source)
    with store.sessions() as session:
        loaded = session.get_one(Source, source.id)
        assert loaded.last_polled_at == datetime(2026, 11, 27, 1, 30, tzinfo=UTC)
        assert loaded.last_polled_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(StatementError, match="naive datetime"), store.sessions.begin() as session:
        session.add(Source(name="news", url="u", language="vi", last_polled_at=datetime(2026, 11, 27, 8, 30)))


def test_items_are_unique_per_source_and_guid(store: Store) -> None:
    now = datetime.now(UTC)
    with store.sessions.begin() as session:
        source = Source(name="news", url="u", language="vi")
        session.add(source)
        session.flush()
        session.add(
            Item(
                source_id=source.id,
                guid="g1",
                url="https://quangngai.gov.vn/1",
                title="Tin",
                published_at=now,
                language="vi",
            )
        )
    with pytest.raises(IntegrityError), store.sessions.begin() as session:
        session.add(
            Item(
                source_id=source.id,
                guid="g1",
                url="https://quangngai.gov.vn/1b",
                title="Tin lặp",
                published_at=now,
                language="vi",
            )
        )
    with store.sessions() as session:
        assert session.query(Item).count() == 1


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(IntegrityError), store.sessions.begin() as session:
        session.add(Item(source_id=999, guid="g", url="u", title="t", published_at=datetime.now(UTC), language="vi"))


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'nested' / 'outreach.db'}", Access.create)
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()
    assert (tmp_path / "nested" / "outreach.db").exists()


def test_vietnamese_text_round_trips(store: Store) -> None:
    title = "Đẩy nhanh hoàn thuế GTGT — “doanh nghiệp” ✓"
    with store.sessions.begin() as session:
        source = Source(name="tin-tức", url="u", language="vi", default_topics=["tax", "đầu-tư"])
        session.add(source)
    with store.sessions() as session:
        loaded = session.get_one(Source, source.id)
        assert loaded.name == "tin-tức"
        assert loaded.default_topics == ["tax", "đầu-tư"]
        session.add(
            Item(source_id=loaded.id, guid="g", url="u", title=title, published_at=datetime.now(UTC), language="vi")
        )
        session.commit()
        assert session.query(Item.title).scalar() == title
