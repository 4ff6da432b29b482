"""Opening the store for what a command does: only `create` makes a database,
`read` changes nothing, and every broken database is refused with one clear line."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.exc import DBAPIError

from outreach.db import Access, Store, head_revision
from outreach.dberrors import NotInitialised, Unreachable, Unusable, explain
from outreach.dburl import BadDatabaseUrl
from outreach.models import Source
from tests.conftest import pg_url

HEAD = head_revision()


def _sqlite_file(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else None


@pytest.mark.parametrize("access", [Access.read, Access.write])
def test_only_create_makes_a_database(db_url: str, access: Access) -> None:
    with pytest.raises(NotInitialised) as caught:
        Store.open(db_url, access)
    path = _sqlite_file(db_url)
    if path is not None:
        assert str(caught.value) == f"no database at {path}: run `outreach init` (or check --db and --config)"
        assert not path.exists()
    else:
        assert "has no outreach tables yet: run `outreach init`" in str(caught.value)
    with Store.open(db_url, Access.create) as store:
        assert store.revision_at_open is None
        assert store.revision == head_revision()
    with Store.open(db_url, access) as store:
        assert store.revision_at_open == store.revision == head_revision()


def test_an_empty_sqlite_file_is_not_a_database_yet(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with pytest.raises(NotInitialised, match=rf"^{path} has no outreach tables yet: run `outreach init`$"):
        Store.open(f"sqlite:///{path}", Access.write)


def test_another_programs_tables_are_never_taken_over(db_url: str) -> None:
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    engine.dispose()
    for access in Access:
        with pytest.raises(NotInitialised, match=r"holds tables that are not outreach's \(invoices\): choose another"):
            Store.open(db_url, access)
    engine = create_engine(db_url)
    assert inspect(engine).get_table_names() == ["invoices"]
    engine.dispose()


def test_a_schema_newer_than_the_code_is_refused(db_url: str) -> None:
    Store.open(db_url, Access.create).close()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for access in Access:
        with pytest.raises(NotInitialised, match=rf"is at schema 9999, newer than this outreach knows \({HEAD}\)"):
            Store.open(db_url, access)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
    engine.dispose()


def test_read_access_cannot_write_even_by_mistake(db_url: str) -> None:
    Store.open(db_url, Access.create).close()
    with (
        Store.open(db_url, Access.read) as store,
        pytest.raises(Unusable) as caught,
        store.translated_errors(),
        store.sessions.begin() as session,
    ):
        session.add(Source(name="x", url="u", language="vi", last_polled_at=datetime.now(UTC)))
    expected = (
        "is read-only (" if db_url.startswith("sqlite") else "is open read-only for this command, which tried to write"
    )
    assert expected in str(caught.value)
    with Store.open(db_url, Access.read) as store, store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Source)) == 0


def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("Ghi chú họp giao ban, không phải cơ sở dữ liệu.\n" * 200, encoding="utf-8")
    original = path.read_bytes()
    for access in Access:
        with pytest.raises(Unusable) as caught:
            Store.open(f"sqlite:///{path}", access)
        assert str(caught.value) == f"{path} is not an outreach database, or it is damaged (file is not a database)"
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["notes.db"], "no -wal, -shm or -journal left beside it"


def test_a_damaged_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outreach.db"
    Store.open(f"sqlite:///{path}", Access.create).close()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # page 1 after the header: the schema table
    path.write_bytes(bytes(data))
    with pytest.raises(Unusable, match=r"is not an outreach database, or it is damaged \(.*malformed"):
        Store.open(f"sqlite:///{path}", Access.read)


def test_postgresql_down_is_unreachable() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    with pytest.raises(Unreachable) as caught:
        Store.open("postgresql+psycopg://outreach:s3cret@127.0.0.1:1/outreach", Access.read)
    message = str(caught.value)
    assert message.startswith("database postgresql+psycopg://outreach:***@127.0.0.1:1/outreach is unavailable: ")
    assert "Connection refused" in message
    assert "s3cret" not in message


def test_postgresql_bad_option_and_missing_database() -> None:
    base = pg_url()
    with pytest.raises(BadDatabaseUrl, match=r'invalid connection option "colour" in the database URL'):
        Store.open(f"{base}{'&' if '?' in base else '?'}colour=blue", Access.read)
    missing = base.rsplit("/", 1)[0] + "/outreach_no_such_db"
    with pytest.raises(NotInitialised, match=r'database "outreach_no_such_db" does not exist: create it \(createdb\)'):
        Store.open(missing, Access.write)


def test_a_locked_file_is_reported_as_busy() -> None:
    error = DBAPIError("INSERT ...", {}, sqlite3.OperationalError("database is locked"))
    problem = explain(error, "sqlite:////srv/outreach/outreach.db")
    assert isinstance(problem, Unreachable)
    assert str(problem) == "/srv/outreach/outreach.db is locked by another process; try again (database is locked)"


def test_the_sqlite_timeout_in_the_url_is_how_long_a_writer_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outreach.db'}"
    Store.open(url, Access.create).close()
    holder = sqlite3.connect(tmp_path / "outreach.db")
    holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with Store.open(f"{url}?timeout=0.2", Access.write) as store:
            started = time.monotonic()
            with pytest.raises(Unreachable, match=r"is locked by another process; try again"):  # noqa: SIM117
                with store.translated_errors(), store.sessions.begin() as session:
                    session.add(Source(name="x", url="u", language="vi"))
            waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert 0.2 <= waited < 5


def test_a_write_never_recreates_a_file_removed_after_the_check(tmp_path: Path) -> None:
    path = tmp_path / "outreach.db"
    Store.open(f"sqlite:///{path}", Access.create).close()
    with Store.open(f"sqlite:///{path}", Access.write) as store:
        store.close()  # drop pooled connections, as if the file went away between commands
        path.unlink()
        with pytest.raises(Unusable, match="cannot open"), store.translated_errors(), store.engine.connect():
            pass
    assert not path.exists()


def test_a_write_leaves_an_empty_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outreach.db"
    path.touch()
    with pytest.raises(NotInitialised, match="has no outreach tables yet"):
        Store.open(f"sqlite:///{path}", Access.write)
    assert path.stat().st_size == 0
    assert [p.name for p in tmp_path.iterdir()] == ["outreach.db"]


def test_errors_are_sorted_by_what_to_do() -> None:
    url = "postgresql+psycopg://app:s3cret@db/outreach"

    def kind(message: str, error: type[Exception] = sqlite3.OperationalError) -> str:
        return type(explain(DBAPIError("SELECT 1", {}, error(message)), url)).__name__

    assert kind("no such table: clicks") == "Unusable"
    assert kind('relation "clicks" does not exist', sqlite3.ProgrammingError) == "Unusable"
    assert kind('connection is bad: invalid sslmode value: "abc"') == "BadDatabaseUrl"
    assert (
        kind('connection failed: connection to server at "db", port 5432 failed: Connection refused') == "Unreachable"
    )
    assert kind("failed to resolve host 'db': [Errno -2] Name or service not known") == "Unreachable"
    assert kind("terminating connection due to administrator command") == "Unreachable"
    assert kind('malformed array literal: "x"', sqlite3.DataError) == "Unusable"
    assert "damaged" not in str(explain(DBAPIError("S", {}, sqlite3.DataError('malformed array literal: "x"')), url))
    assert kind("database or disk is full") == "Unusable"


def test_an_older_schema_is_upgraded_by_init_only(db_url: str) -> None:
    from alembic import command

    from outreach.db import _alembic_config, make_engine

    engine = make_engine(db_url, Access.create)
    command.upgrade(_alembic_config(engine), "0001")
    engine.dispose()
    for access in (Access.read, Access.write):
        with pytest.raises(
            NotInitialised, match=rf"is at schema 0001, this outreach needs {HEAD}: run `outreach init`$"
        ):
            Store.open(db_url, access)
    with Store.open(db_url, Access.create) as store:
        assert (store.revision_at_open, store.revision) == ("0001", HEAD)
    with Store.open(db_url, Access.read) as store:
        assert store.revision == HEAD


def test_two_inits_at_once_upgrade_once(db_url: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys; from outreach.db import Access, Store; Store.open(sys.argv[1], Access.create).close()"
    runs = [subprocess.Popen([sys.executable, "-c", code, db_url], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [run.communicate(timeout=60)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], errors
    with Store.open(db_url, Access.read) as store:
        assert store.revision == head_revision()


def test_upgrading_a_database_with_rows_keeps_every_row(tmp_path: Path) -> None:
    """Batch migrations copy tables: with SQLite's foreign keys on, the old table's DROP would take its rows."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from outreach.db import _alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    command.upgrade(_alembic_config(engine), "0005")
    with engine.begin() as db:
        db.execute(text("PRAGMA foreign_keys=ON"))
        db.execute(
            text(
                "INSERT INTO campaigns (id, kind, item_ids, title, channels, language, template, status, created_by, created_at) VALUES (1, 'message', '[]', 't', '[]', 'vi', 'message', 'done', 't', '2026-11-01 00:00:00')"
            )
        )
        db.execute(
            text(
                "INSERT INTO links (code, destination, campaign_id, channel, created_at) VALUES ('abcdefgh12', 'https://quangngai.gov.vn/', 1, 'facebook', '2026-11-01 00:00:00')"
            )
        )
        db.execute(
            text(
                "INSERT INTO deliveries (campaign_id, channel, target, language, text, link_code, status, attempts, created_at) VALUES (1, 'facebook', 'p', 'vi', 't', 'abcdefgh12', 'sent', 1, '2026-11-01 00:00:00')"
            )
        )
        db.execute(
            text(
                "INSERT INTO clicks (code, at, kind, \"repeat\") VALUES ('abcdefgh12', '2026-11-01 01:00:00', 'human', 0)"
            )
        )
    engine.dispose()
    with Store.open(url, Access.create) as store:  # `outreach init` upgrades
        assert store.revision == HEAD
        with store.engine.connect() as db:
            counts = [
                db.execute(text(f"SELECT count(*) FROM {table}")).scalar()
                for table in ("campaigns", "links", "deliveries", "clicks")
            ]
            assert counts == [1, 1, 1, 1]
            assert db.execute(text("SELECT campaign_id FROM links")).scalar() == 1
            assert db.execute(text("PRAGMA foreign_keys")).scalar() == 1
