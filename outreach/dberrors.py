"""What went wrong with the database, in one line that names it and says what to do.

The driver's own exceptions (sqlite3, psycopg, wrapped by SQLAlchemy) are sorted
here into the few kinds an operator acts on differently, so the CLI can give
each its own exit status and no command ever ends in a traceback.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError

from outreach.dburl import BadDatabaseUrl, describe
from outreach.text import scrub


class StoreError(Exception):
    """The database cannot be used as asked; the message names it and the remedy."""


class NotInitialised(StoreError):
    """No outreach database there yet, or its schema is not this version's: run `outreach init`."""


class Unusable(StoreError):
    """The database is there but cannot serve this command: not a database, damaged, read-only."""


class Unreachable(StoreError):
    """The database server did not answer, or the file is locked: try again later."""


def read_only(where: str, why: str) -> Unusable:
    """A writing command met a database it may only read."""
    return Unusable(
        f"{where} is read-only ({why}): only reading commands "
        "(report, status, items list, campaign list/preview, sources list) work on it"
    )


def first_line(exc: BaseException) -> str:
    """The driver's message without its SQL and background links, secrets masked."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return scrub(text.splitlines()[0] if text else type(exc).__name__)


# How a PostgreSQL driver says the server could not be reached or went away.
_CONNECTION_LOST = (
    "connection failed",
    "could not connect",
    "failed to resolve host",
    "timeout expired",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "connection is lost",
    "the database system is",
)
_BAD_OPTION = ("invalid connection option", "bad value for", "invalid dsn", "connection is bad: invalid")


def explain(exc: DBAPIError, url: str) -> StoreError | BadDatabaseUrl:
    """The kind of failure a driver error means, with a message for people.

    Only a failure to reach the server (or a lock) is `Unreachable`, worth a retry
    later; anything not recognised is `Unusable`, so a permanent fault is never
    reported as a passing one.
    """
    where = describe(url)
    reason = first_line(exc)
    lowered = reason.lower()
    if "file is not a database" in lowered or "disk image is malformed" in lowered:
        return Unusable(f"{where} is not an outreach database, or it is damaged ({reason})")
    if "readonly database" in lowered:
        return read_only(where, "the file or its folder is not writable")
    if "read-only transaction" in lowered:  # a reading command tried to write: a bug, said plainly
        return Unusable(f"{where} is open read-only for this command, which tried to write ({reason})")
    if "unable to open database file" in lowered:
        return Unusable(f"cannot open {where}: it or its folder is missing or not accessible ({reason})")
    if "database is locked" in lowered:
        return Unreachable(f"{where} is locked by another process; try again ({reason})")
    if "authentication failed" in lowered or ("role" in lowered and "does not exist" in lowered):
        return BadDatabaseUrl(f"{where}: {reason} (check the user and password in the database URL)")
    if 'database "' in lowered and "does not exist" in lowered:
        return NotInitialised(f"{reason.split('FATAL:')[-1].strip()}: create it (createdb), then run `outreach init`")
    if any(marker in lowered for marker in _BAD_OPTION):
        return BadDatabaseUrl(f"{reason} in the database URL {where}")
    if exc.connection_invalidated or any(marker in lowered for marker in _CONNECTION_LOST):
        return Unreachable(f"database {where} is unavailable: {reason}")
    if "no such table" in lowered or "no such column" in lowered or "does not exist" in lowered:
        return Unusable(f"{where} lacks part of outreach's schema ({reason}): is it the right database, or restore it")
    return Unusable(f"database {where} refused the work: {reason}")
