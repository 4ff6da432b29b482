"""Where the click writer commits a batch: one INSERT and its COMMIT, per database.

Measured under load, a batch committed on a worker thread took 4-13 ms instead of
under 1 ms: the driver releases the GIL around every step and waits to get it back
from the busy event loop. So the batch is committed on the event loop itself:
PostgreSQL through asyncpg (the loop never blocks on the
network), SQLite directly with no busy wait (under a millisecond for a batch;
only when another writer holds the lock does the batch move to a thread and
wait there, up to the deadline). Both raise `Unavailable` for anything that
should send clicks to the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from outreach.click_spool import ClickRow
from outreach.dberrors import first_line
from outreach.dburl import BadDatabaseUrl
from outreach.models import utcnow
from outreach.tracking import visitor_key

log = logging.getLogger(__name__)

# SQLite: ClickRow's fields, in order. A click already stored (its commit went through but
# the answer was lost, so it was spooled too) is skipped.
_INSERT_QMARK = (
    'INSERT INTO clicks (code, at, kind, ip_hash, user_agent, referrer_host, "repeat", uid, visitor) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (uid) DO NOTHING"
)
COLUMNS = ["code", "at", "kind", "ip_hash", "user_agent", "referrer_host", "repeat", "uid", "visitor"]
# Clicks have no foreign key to their link (0013: it cost PostgreSQL a locked lookup per click). Live
# clicks name links the tracker read from the table; a replayed spool is checked here first.
_UNKNOWN_CODES = "SELECT DISTINCT given FROM unnest($1::text[]) AS given WHERE given NOT IN (SELECT code FROM links)"
_UNKNOWN_CODES_JSON = "SELECT value FROM json_each(?) WHERE value NOT IN (SELECT code FROM links) ORDER BY value"
# PostgreSQL: a replayed segment as arrays and its row in one statement, so in one transaction.
_REPLAY_ARRAYS = (
    "WITH replayed AS (INSERT INTO click_spool_replays (segment, clicks, replayed_at) VALUES ($1, $2, $3)) "
    'INSERT INTO clicks (code, at, kind, ip_hash, user_agent, referrer_host, "repeat", uid, visitor) '
    "SELECT * FROM unnest($4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[], $9::text[], "
    "$10::bool[], $11::text[], $12::int8[]) ON CONFLICT (uid) DO NOTHING"
)
_REPLAYED_QMARK = "INSERT INTO click_spool_replays (segment, clicks, replayed_at) VALUES (?, ?, ?)"


class Unavailable(Exception):
    """The database did not take the batch; the message says why, in one line."""


class Rejected(Exception):
    """The database answered but refuses these rows (a constraint): retrying will not help."""


class AlreadyReplayed(Exception):
    """This spool segment's clicks are in the database already."""


@dataclass(frozen=True)
class Replay:
    """A spool segment committed with its clicks, so it is never added twice."""

    segment: str
    clicks: int


class ClickSink(Protocol):
    """Commits batches of clicks; raises Unavailable (or AlreadyReplayed)."""

    waits_on_network: bool  # a commit leaves the event loop free meanwhile (see ClickWriter._launch)

    async def insert(self, rows: Sequence[ClickRow], replay: Replay | None = None) -> None: ...

    async def probe(self) -> None: ...

    async def close(self) -> None: ...


def _sqlite_text(at: datetime) -> str:
    """SQLite keeps naive UTC text, written as SQLAlchemy writes it ("2026-11-28 09:30:00.000000")."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    return at.replace(tzinfo=None).isoformat(" ", "microseconds")


class SqliteSink:
    """Commits on the event loop without waiting for a lock; a locked file moves the batch to a thread.

    The driver's own connections (one per thread: sqlite3 binds a connection to the
    thread that made it), taken from the engine so its pragmas apply, and kept:
    a batch is one executemany and one COMMIT, nothing more.
    """

    waits_on_network = False

    def __init__(self, engine: Engine, path: Path | None, deadline: float, thread: Executor) -> None:
        self.engine, self.path, self.deadline, self.thread = engine, path, deadline, thread
        self._file = _identity(path)
        self._connections: dict[int, Any] = {}
        self._next_checkpoint = 0.0
        self._checkpoint: asyncio.Future[None] | None = None

    async def insert(self, rows: Sequence[ClickRow], replay: Replay | None = None) -> None:
        try:
            if replay is not None:  # a whole segment: too long for the event loop
                raise _Locked("a replay runs on the thread")
            self._commit(rows, replay, wait=0)
            self._checkpoint_soon()
        except _Locked:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self.thread, self._commit, rows, replay, self.deadline)
            except _Locked as locked:
                raise Unavailable(f"the database stayed locked for {self.deadline:g} s ({locked})") from None

    def _connection(self, wait: float) -> Any:
        key = threading.get_ident()
        pooled = self._connections.get(key)
        if pooled is None:
            pooled = self._connections[key] = self.engine.raw_connection()
            driver: Any = pooled.driver_connection
            driver.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
            # A commit that crosses 1,000 WAL pages would checkpoint (and fsync) right there,
            # on the event loop: 10-25 ms for every request in flight. The thread does it.
            driver.execute("PRAGMA wal_autocheckpoint = 0")
        return pooled.driver_connection

    def _checkpoint_soon(self) -> None:
        """Fold the WAL into the database on the thread, at most once a second."""
        now = time.monotonic()
        if now < self._next_checkpoint or (self._checkpoint is not None and not self._checkpoint.done()):
            return
        self._next_checkpoint = now + 1.0
        self._checkpoint = asyncio.get_running_loop().run_in_executor(self.thread, self._fold_wal)

    def _fold_wal(self) -> None:
        try:
            self._connection(self.deadline).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as error:  # the next commit finds out what is wrong, and says so
            log.debug("clicks: checkpoint skipped: %s", error)

    def _forget(self) -> None:
        """Drop the connections: to a file that went away, they are no use."""
        connections, self._connections = self._connections, {}
        for pooled in connections.values():
            with contextlib.suppress(Exception):
                pooled.invalidate()
        self.engine.dispose()

    def _commit(self, rows: Sequence[ClickRow], replay: Replay | None, wait: float) -> None:
        if self.path is not None and _identity(self.path) != self._file:
            self._forget()  # its connections would go on writing to the inode moved away
            raise Unavailable(f"{self.path} was removed or replaced while the tracker ran")
        try:
            connection = self._connection(wait)
        except SQLAlchemyError as error:
            raise Unavailable(first_line(error)) from None
        try:
            if replay is not None:
                _refuse_unknown(_missing_codes(connection, {row.code for row in rows}))
                connection.execute(_REPLAYED_QMARK, (replay.segment, replay.clicks, _sqlite_text(utcnow())))
            if rows:  # (a segment a crash left empty still gets its row, and is removed)
                connection.executemany(_INSERT_QMARK, [_bound(row, _sqlite_text(row.at)) for row in rows])
            connection.commit()
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                connection.rollback()
            message = str(error)
            if "UNIQUE constraint failed: click_spool_replays" in message:
                raise AlreadyReplayed(replay.segment if replay else "") from None
            if "locked" in message or "busy" in message:
                raise _Locked(message) from None
            if isinstance(error, sqlite3.IntegrityError):
                raise Rejected(message) from None
            self._forget()
            raise Unavailable(message) from None

    async def probe(self) -> None:
        self._file = _identity(self.path)  # a file put back (or restored) is the database now
        if self.path is not None and self._file is None:
            raise Unavailable(f"{self.path} is missing")
        try:
            # A write lock, not a read: in WAL mode a read succeeds while another program
            # holds the lock, and the replay after it would wait out the whole deadline.
            connection = self._connection(0)
            connection.execute("SELECT 1 FROM clicks LIMIT 0").fetchall()
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
        except (SQLAlchemyError, sqlite3.Error) as error:
            self._forget()
            raise Unavailable(first_line(error)) from None

    async def close(self) -> None:
        if self._checkpoint is not None:
            await self._checkpoint
        connections, self._connections = self._connections, {}
        for pooled in connections.values():
            with contextlib.suppress(Exception):
                pooled.close()
        self.engine.dispose()


class _Locked(Exception):
    """SQLite's lock is held by another writer."""


def _missing_codes(connection: Any, codes: set[str]) -> list[str]:
    """The codes no link in this SQLite database has (the codes as one JSON array: no limit on parameters)."""
    return [code for (code,) in connection.execute(_UNKNOWN_CODES_JSON, (json.dumps(sorted(codes)),))]


def _refuse_unknown(missing: Sequence[str]) -> None:
    """A replayed spool naming links this database lacks (a restored backup, another database) is not written."""
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise Rejected(f"clicks on links this database does not have: {shown}")


def _bound(row: ClickRow, at: Any) -> tuple[Any, ...]:
    visitor = row.visitor if row.visitor is not None else visitor_key(row.ip_hash, row.user_agent)
    return (row.code, at, row.kind.value, row.ip_hash, row.user_agent, row.referrer_host, row.repeat, row.uid, visitor)


# libpq's connection options that asyncpg does not know: it would pass them on to the server as
# settings, and the server would refuse the connection. The deadline stands for connect_timeout.
LIBPQ_ONLY = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "hostaddr",
        "gssencmode",
        "gssdelegation",
        "channel_binding",
        "require_auth",
        "requirepeer",
        "sslcompression",
        "sslsni",
        "sslcertmode",
        "fallback_application_name",
        "client_encoding",  # asyncpg speaks UTF-8 only
    }
)


class PostgresSink:
    """asyncpg connections on the event loop, kept for the next batch; a failed one is dropped.

    asyncpg rather than psycopg (which the rest of outreach uses, through SQLAlchemy):
    a batch is a binary COPY either way, but asyncpg's costs the event loop 0.09 ms
    against psycopg's 0.13-0.19, and the loop waits on it for every batch
    (bench/tracker.py: 0.58 -> 0.62 of a bare redirect, alternating runs).
    """

    waits_on_network = True

    def __init__(self, url: str, deadline: float) -> None:
        parsed = make_url(url).set(drivername="postgresql")
        kept = {name: value for name, value in parsed.query.items() if name not in LIBPQ_ONLY}
        self.dsn = parsed.set(query=kept).render_as_string(hide_password=False)
        self.deadline = deadline
        self._idle: list[Any] = []

    async def _connect(self) -> Any:
        import asyncpg

        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
        # Outside a transaction each statement commits on its own: a batch is one COPY, atomic.
        connection = await asyncpg.connect(self.dsn, timeout=self.deadline)
        # SET, not a start-up parameter: a pooler (PgBouncer) refuses start-up parameters it does not know.
        await connection.execute(f"SET statement_timeout = {int(self.deadline * 1000)}")
        return connection

    async def _run(self, work: Callable[[Any], Awaitable[Any]]) -> Any:
        """`work` on a pooled connection, its errors as Unavailable, Rejected or AlreadyReplayed."""
        import asyncpg

        connection = None
        try:
            async with asyncio.timeout(self.deadline * 2):
                connection = await self._connect()
                result = await work(connection)
        except asyncpg.UniqueViolationError as error:
            self._idle.append(connection)
            if error.constraint_name == "pk_click_spool_replays":
                raise AlreadyReplayed(str(error)) from None
            raise Rejected(first_line(error)) from None
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as error:  # these rows, every time
            self._idle.append(connection)
            raise Rejected(first_line(error)) from None
        except (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
            OSError,
            TimeoutError,
        ) as error:
            # Not retried here, even on a connection the server dropped while idle: the
            # statement may have been carried out. The spool keeps the batch, and its
            # replay skips any click already stored.
            await _close(connection)
            raise Unavailable(first_line(error) or type(error).__name__) from None
        self._idle.append(connection)
        return result

    async def insert(self, rows: Sequence[ClickRow], replay: Replay | None = None) -> None:
        records = [_bound(row, row.at) for row in rows]
        if replay is None:
            # Fresh clicks: a binary COPY. No ON CONFLICT is needed: a fresh click's id is new; a batch
            # whose commit answer was lost goes through the spool, whose replay below skips what is stored.
            if records:
                await self._run(lambda db: db.copy_records_to_table("clicks", records=records, columns=COLUMNS))
            return
        columns = [list(column) for column in zip(*records, strict=True)] or [[] for _ in COLUMNS]
        unknown = await self._run(lambda db: db.fetch(_UNKNOWN_CODES, sorted(set(columns[0]))))
        _refuse_unknown([code for (code,) in unknown])
        await self._run(lambda db: db.execute(_REPLAY_ARRAYS, replay.segment, replay.clicks, utcnow(), *columns))

    async def probe(self) -> None:
        await self._run(lambda db: db.fetch("SELECT 1 FROM clicks LIMIT 0"))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            await _close(connection)


async def _close(connection: Any) -> None:
    """Close a connection that may be dead already (a dead one may fail to close)."""
    if connection is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 1)


def make_sink(url: str, engine: Engine, path: Path | None, deadline: float, thread: Executor) -> ClickSink:
    """The sink for this database; BadDatabaseUrl when PostgreSQL's driver for it is missing."""
    if make_url(url).get_backend_name() == "postgresql":
        try:
            import asyncpg  # noqa: F401  (here, so a missing driver stops the tracker at its start)
        except ImportError:
            raise BadDatabaseUrl(
                "the tracker writes clicks to PostgreSQL with asyncpg: pip install 'outreach[postgres]'"
            ) from None
        return PostgresSink(url, deadline)
    return SqliteSink(engine, path, deadline, thread)


@dataclass(frozen=True)
class _FileIdentity:
    device: int
    inode: int


def _identity(path: Path | None) -> _FileIdentity | None:
    """Which file is at the path: SQLite keeps writing to a removed file's inode, unseen."""
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return _FileIdentity(status.st_dev, status.st_ino)
