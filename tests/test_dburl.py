"""Database URLs are checked, made absolute and masked before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach.dburl import BadDatabaseUrl, describe, resolve, safe_url


def test_a_relative_sqlite_path_is_read_from_the_base_folder(tmp_path: Path) -> None:
    assert resolve("sqlite:///outreach.db", tmp_path) == f"sqlite:///{tmp_path / 'outreach.db'}"
    assert resolve("sqlite:///data/o.db", tmp_path) == f"sqlite:///{tmp_path / 'data' / 'o.db'}"


def test_an_absolute_sqlite_path_and_postgresql_are_kept(tmp_path: Path) -> None:
    assert resolve(f"sqlite:///{tmp_path / 'x.db'}", Path("/elsewhere")) == f"sqlite:///{tmp_path / 'x.db'}"
    pg = "postgresql+psycopg://app:pw@db:5432/outreach?sslmode=require"
    assert resolve(pg, tmp_path) == pg


def test_the_sqlite_timeout_is_kept_and_postgresql_may_omit_its_driver(tmp_path: Path) -> None:
    assert resolve("sqlite:///o.db?timeout=5", tmp_path) == f"sqlite:///{tmp_path / 'o.db'}?timeout=5"
    assert resolve("postgresql://app@db/outreach", tmp_path) == "postgresql://app@db/outreach"  # psycopg is the default


def test_dev_shm_is_a_real_folder(tmp_path: Path) -> None:
    assert resolve("sqlite:////dev/shm/outreach-test.db", tmp_path) == "sqlite:////dev/shm/outreach-test.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/outreach", "unsupported database 'mysql': outreach runs on SQLite or PostgreSQL"),
        ("mssql+pyodbc://u@h/db", "unsupported database 'mssql'"),
        ("outreach.db", "not a database URL (expected sqlite:///"),
        ("sqlite://", "give SQLite a file path"),
        ("sqlite:///:memory:", "give SQLite a file path"),
        ("sqlite:///o.db?journal=off", "unknown SQLite option(s) journal (known: timeout)"),
        ("sqlite:///o.db?check_same_thread=maybe", "unknown SQLite option(s) check_same_thread (known: timeout)"),
        ("sqlite:///o.db?timeout=soon", "SQLite option timeout must be seconds from 0 to 3600, not 'soon'"),
        ("sqlite:///o.db?timeout=-1", "SQLite option timeout must be seconds from 0 to 3600, not '-1'"),
        ("sqlite+aiosqlite:///o.db", "unsupported driver 'aiosqlite' for sqlite: use sqlite+pysqlite://"),
        (
            "postgresql+psycopg_async://u@h/db",
            "unsupported driver 'psycopg_async' for postgresql: use postgresql+psycopg://",
        ),
        ("postgresql+psycopg2://u@h/db", "unsupported driver 'psycopg2' for postgresql"),
        ("sqlite:////proc/outreach.db", "/proc/outreach.db is in /proc, a virtual file system"),
        ("sqlite:////proc/self/status", "is in /proc, a virtual file system"),
        ("sqlite:////dev/null", "/dev/null is in /dev, a virtual file system"),
    ],
)
def test_bad_urls_are_refused_with_what_would_do(url: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(BadDatabaseUrl) as caught:
        resolve(url, tmp_path)
    assert message in str(caught.value)


def test_a_path_inside_a_file_or_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(BadDatabaseUrl, match=r"notes.txt is a file, so .*notes.txt/sub/o.db cannot be created"):
        resolve("sqlite:///notes.txt/sub/o.db", tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(BadDatabaseUrl, match="folder is a folder: give the path of a database file"):
        resolve("sqlite:///folder", tmp_path)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://app:s3cret@db:5432/outreach", "postgresql+psycopg://app:***@db:5432/outreach"),
        ("postgresql+psycopg://app@db/outreach?password=s3cret", "postgresql+psycopg://app@db/outreach?password=***"),
        (
            "postgresql+psycopg://app@db/o?sslmode=require&PASSWORD=s3cret",
            "postgresql+psycopg://app@db/o?PASSWORD=***&sslmode=require",
        ),
        ("postgresql+psycopg://app@db/o?sslpassword=s3cret", "postgresql+psycopg://app@db/o?sslpassword=***"),
    ],
)
def test_passwords_are_masked_in_user_info_and_in_the_query(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert "s3cret" not in describe(url)


def test_an_unparsable_url_shows_nothing_of_itself() -> None:
    assert safe_url("::s3cret::") == "(unparsable database URL)"


def test_sqlite_is_described_by_its_file(tmp_path: Path) -> None:
    assert describe(f"sqlite:///{tmp_path / 'o.db'}") == str(tmp_path / "o.db")
