"""Engine, sessions and migrations for SQLite (embedded default) and PostgreSQL.

Commands open the store for what they do (`Access`): only `init` and the demo
create a database; writing commands need one that exists and upgrade its schema;
reading commands open it read-only and change nothing. A database that is missing,
empty, damaged or out of reach is refused at open with one line that names it.
"""

from __future__ import annotations

import enum
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from outreach import sqlite_files
from outreach.dberrors import NotInitialised, explain
from outreach.dburl import BadDatabaseUrl, describe, sqlite_path, sqlite_timeout, sqlite_uri

MIGRATIONS = Path(__file__).parent / "migrations"


class Access(enum.Enum):
    """What a command does with the database, which decides how it is opened."""

    create = "create"  # init, demo: make it if missing, bring the schema to the newest
    write = "write"  # an existing outreach database; an older schema is upgraded
    read = "read"  # an existing database at the newest schema, opened read-only


def make_engine(url: str, access: Access = Access.create, **kwargs: Any) -> Engine:
    """An engine for the URL, opened for `access`.

    SQLite: `create` may make the file and turns on WAL (it stays on in the file);
    `write` opens an existing file only (`mode=rw`), so a file removed meanwhile
    is never quietly made again; `read` opens it `mode=ro`. PostgreSQL: `read`
    sessions are READ ONLY, so a reading command cannot write even by mistake.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(url)
        args = {"timeout": sqlite_timeout(parsed)}  # how long to wait for another writer
        if access is Access.create or path is None:  # None: in memory, for a quick look in Python
            if path is not None:
                sqlite_files.make_folder(path)
            engine = create_engine(parsed.difference_update_query(["timeout"]), connect_args=args, **kwargs)
        elif access is Access.write:
            engine = create_engine(sqlite_uri(url, "rw"), connect_args=args, **kwargs)
        else:
            immutable = sqlite_files.needs_immutable(path)
            engine = create_engine(sqlite_uri(url, "ro", immutable), connect_args=args, **kwargs)
        pragmas = _SQLITE_PRAGMAS[access]
        event.listen(engine, "connect", lambda connection, _record: _run(connection, pragmas))
        return engine
    connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": 10}
    engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)
    if access is Access.read:
        # Set on the session, so it holds whatever options the URL already carries.
        statements = ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",)
        event.listen(engine, "connect", lambda connection, _record: _run(connection, statements, commit=True))
    return engine


# WAL lets the tracker write clicks while a report reads, and is kept in the file,
# so only a new database sets it; foreign keys are off unless asked for on every
# connection.
_WRITING = ("PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")
_SQLITE_PRAGMAS = {
    Access.create: ("PRAGMA journal_mode=WAL", *_WRITING),
    Access.write: _WRITING,
    Access.read: (),
}


def _run(dbapi_connection: Any, statements: tuple[str, ...], commit: bool = False) -> None:
    cursor = dbapi_connection.cursor()
    for statement in statements:
        cursor.execute(statement)
    cursor.close()
    if commit:
        dbapi_connection.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (CLI prints them)."""
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when it has no tables yet)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def modelled(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """Alembic's `include_object`: the item search index (migration 0006: an FTS5 table and its shadow
    tables on SQLite, an expression index on PostgreSQL) is no model; autogenerate and the models
    check leave it alone."""
    return not (name and (name == "items_search" or name.startswith("items_search_") or name == "ix_items_search"))


def head_revision() -> str | None:
    """The newest revision the code knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def known_revisions() -> set[str]:
    """Every revision the code has a migration for."""
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}


MIGRATION_LOCK = 0x6F757472  # "outr": the advisory lock id for migrations on PostgreSQL


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Only one process migrates a database at a time; the others wait, then find it done.

    PostgreSQL: a session advisory lock. SQLite: an exclusive lock on a file beside
    the database (SQLite's own locks would make the second `init` fail, not wait).
    """
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()
    elif path is not None:
        with path.with_name(path.name + ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def migrate(engine: Engine) -> bool:
    """Bring the schema to the newest revision; True when anything was applied."""
    if current_revision(engine) == head_revision():
        return False
    from alembic import command

    command.upgrade(_alembic_config(engine), "head")
    return True


class Store:
    """The database a command works on: an engine and its session factory."""

    def __init__(self, engine: Engine, url: str = "") -> None:
        self.engine = engine
        self.url = url or engine.url.render_as_string(hide_password=False)
        self.sessions = session_factory(engine)
        self.revision_at_open: str | None = None  # the schema found, before any upgrade
        self.revision: str | None = None  # the schema now

    @classmethod
    def open(cls, url: str, access: Access) -> Store:
        """Connect for `access` and check (or, where allowed, bring up) the schema.

        Raises StoreError (or BadDatabaseUrl) with a message for people; nothing
        is created or changed unless `access` allows it.
        """
        path = sqlite_path(url)
        if path is not None:
            sqlite_files.check_header(path)
        if path is not None and access is not Access.create:
            sqlite_files.check_exists(path)
            if access is Access.read:
                sqlite_files.check_readable(path)
            else:
                sqlite_files.check_writable(path)
        try:
            engine = make_engine(url, access)
        except (ArgumentError, ModuleNotFoundError) as exc:
            raise BadDatabaseUrl(_driver_problem(exc)) from None
        store = cls(engine, url)
        try:
            with store.translated_errors():
                if access is Access.create:
                    # Two `init`s at once: the second waits, then finds the schema done.
                    with migration_lock(engine):
                        store._check_schema(access)
                else:
                    store._check_schema(access)
        except BaseException:
            store.close()
            raise
        return store

    def _check_schema(self, access: Access) -> None:
        revision, head = current_revision(self.engine), head_revision()
        self.revision_at_open = self.revision = revision
        where = describe(self.url)
        if revision is None:
            foreign = sorted(set(inspect(self.engine).get_table_names()) - {"alembic_version"})
            if foreign:
                shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
                raise NotInitialised(f"{where} holds tables that are not outreach's ({shown}): choose another database")
            if access is not Access.create:
                raise NotInitialised(f"{where} has no outreach tables yet: run `outreach init`")
        elif revision not in known_revisions():
            raise NotInitialised(
                f"{where} is at schema {revision}, newer than this outreach knows ({head}): upgrade outreach"
            )
        if revision != head:
            if access is not Access.create:
                # Only `init` migrates, under a lock: two services starting at once upgrade once.
                raise NotInitialised(
                    f"{where} is at schema {revision}, this outreach needs {head}: run `outreach init`"
                )
            migrate(self.engine)
            self.revision = head

    @contextmanager
    def translated_errors(self) -> Iterator[None]:
        """Driver errors inside become StoreError or BadDatabaseUrl naming this database."""
        try:
            yield
        except DBAPIError as exc:
            raise explain(exc, self.url) from exc

    def close(self) -> None:
        """Release pooled connections (SQLite files stay locked otherwise on some OSes)."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _driver_problem(exc: Exception) -> str:
    if isinstance(exc, ModuleNotFoundError):
        if exc.name == "psycopg":
            return "PostgreSQL needs the psycopg driver: pip install 'outreach[postgres]'"
        return f"the database driver {exc.name!r} is not installed; use postgresql+psycopg://"
    return str(exc)


def insert_ignoring_conflicts(session: Session, model: type[Any], rows: list[dict[str, Any]], keys: list[str]) -> None:
    """Bulk insert that silently keeps the row already there on a unique-key clash."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(f"no insert-or-ignore for {dialect}")
    session.execute(insert(model).on_conflict_do_nothing(index_elements=keys), rows)
