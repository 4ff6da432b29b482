"""Database URLs: checked, made absolute and masked before anything connects.

A relative SQLite path is resolved against a base folder chosen by the caller
(the config file's folder for configured URLs, the working folder for `--db`), so
a command run from cron or another shell never opens a different, empty database.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# The drivers outreach installs and runs on (the sync ones: commands are not async).
DRIVERS = {"sqlite": "pysqlite", "postgresql": "psycopg"}
EXAMPLES = "sqlite:///path/to/outreach.db or postgresql+psycopg://user@host/dbname"
# The one pysqlite option that is safe to change here; pysqlite would silently
# ignore unknown ones, and the others (check_same_thread, ...) break the store.
SQLITE_TIMEOUT = "timeout"
DEFAULT_SQLITE_TIMEOUT = 30.0
MAX_SQLITE_TIMEOUT = 3600.0
# Virtual file systems: a database "file" there is a kernel interface, never a file
# (/dev/shm, a plain tmpfs, is the exception).
VIRTUAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
REAL_UNDER_DEV = Path("/dev/shm")  # noqa: S108 - named to be allowed, not to write in
# Query parameters that carry a credential (libpq's names), masked like user:pass@.
SECRET_PARAMS = frozenset({"password", "sslpassword", "passfile"})
MASK = "***"


class BadDatabaseUrl(ValueError):
    """The URL cannot name an outreach database; the message says what would."""


def parse(url: str) -> URL:
    """The URL's parts, or BadDatabaseUrl when it is not a URL of a supported database."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise BadDatabaseUrl(f"not a database URL (expected {EXAMPLES})") from None
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in DRIVERS:
        raise BadDatabaseUrl(f"unsupported database {backend!r}: outreach runs on SQLite or PostgreSQL ({EXAMPLES})")
    if driver != DRIVERS[backend]:
        raise BadDatabaseUrl(
            f"unsupported driver {driver!r} for {backend}: use {backend}+{DRIVERS[backend]}:// ({EXAMPLES})"
        )
    return parsed


def resolve(url: str, base: Path) -> str:
    """The URL with a relative SQLite path made absolute against `base`, checked.

    Raises BadDatabaseUrl for another database, an in-memory SQLite (it keeps
    nothing between commands), an unknown SQLite option, or a path that cannot
    hold a database file (inside a file, in /proc, a folder or a device).
    """
    parsed = parse(url)
    if parsed.get_backend_name() != "sqlite":
        return url
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise BadDatabaseUrl(f"give SQLite a file path, as in sqlite:///outreach.db (got {url!r})")
    _check_sqlite_options(parsed)
    path = Path(database).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    _check_sqlite_path(path)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _check_sqlite_options(parsed: URL) -> None:
    unknown = sorted(set(parsed.query) - {SQLITE_TIMEOUT})
    if unknown:
        raise BadDatabaseUrl(f"unknown SQLite option(s) {', '.join(unknown)} (known: {SQLITE_TIMEOUT})")
    sqlite_timeout(parsed)


def sqlite_timeout(parsed: URL) -> float:
    """Seconds a SQLite connection waits for another writer (`?timeout=`), checked."""
    value = parsed.query.get(SQLITE_TIMEOUT, DEFAULT_SQLITE_TIMEOUT)
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_SQLITE_TIMEOUT:
        raise BadDatabaseUrl(f"SQLite option timeout must be seconds from 0 to {MAX_SQLITE_TIMEOUT:g}, not {value!r}")
    return seconds


def _check_sqlite_path(path: Path) -> None:
    for root in VIRTUAL_ROOTS:
        if (path == root or root in path.parents) and REAL_UNDER_DEV not in path.parents:
            raise BadDatabaseUrl(f"{path} is in {root}, a virtual file system: choose a folder on disk")
    try:
        if path.exists() and not path.is_file():
            kind = "a folder" if path.is_dir() else "not a regular file"
            raise BadDatabaseUrl(f"{path} is {kind}: give the path of a database file")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise BadDatabaseUrl(f"{parent} is a file, so {path} cannot be created: choose a folder")
                break
    except PermissionError:
        return  # a folder we may not look into: opening the store says so, naming it


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def sqlite_uri(url: str, mode: str, immutable: bool = False) -> URL:
    """The same SQLite file in SQLite's URI form, opened `ro` or `rw`, never created.

    `immutable` also tells SQLite no one can change the file, which lets it read
    a WAL database on a read-only file system, where it cannot create its `-shm`.
    """
    parsed = make_url(url)
    path = sqlite_path(url)
    assert path is not None
    query = {"mode": mode, "uri": "true"} | ({"immutable": "1"} if immutable else {})
    return parsed.set(database=f"file:{quote(str(path))}", query=query)


def safe_url(url: str) -> str:
    """A database URL fit to print: passwords masked, in `user:pass@` and in the query."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "(unparsable database URL)"
    masked = {key: (MASK if key.lower() in SECRET_PARAMS else value) for key, value in parsed.query.items()}
    # Rendering percent-encodes the query; the mask reads better as it is.
    return parsed.set(query=masked).render_as_string(hide_password=True).replace(quote(MASK, safe=""), MASK)


def describe(url: str) -> str:
    """How people read which database this is: a SQLite file's path, else the masked URL."""
    path = sqlite_path(url)
    return str(path) if path is not None else safe_url(url)
