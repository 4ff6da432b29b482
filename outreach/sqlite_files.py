"""What a SQLite file and its folder allow, checked before SQLite is asked.

SQLite answers most of these with "unable to open database file"; asking the file
system first lets the message name the file or folder and say what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from outreach.dberrors import NotInitialised, Unusable, read_only


def _side_file(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def on_read_only_file_system(path: Path) -> bool:
    """True when the file system holding the database is mounted read-only."""
    return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)


def needs_immutable(path: Path) -> bool:
    """True when SQLite cannot create the `-shm` index it needs to read a WAL database.

    Only on a read-only file system: nobody can change the database there, so
    reading it as immutable is safe (a folder that only *we* cannot write may
    hold a database the tracker is writing; that is refused in `check_readable`).
    """
    return not _side_file(path, "-shm").exists() and on_read_only_file_system(path)


def check_exists(path: Path) -> None:
    """A database file must be there already (only `init` and the demo create one)."""
    try:
        found = path.is_file()
    except PermissionError:
        raise Unusable(f"cannot look into {path.parent}: permission denied (run as the user that owns it)") from None
    if not found:
        raise NotInitialised(f"no database at {path}: run `outreach init` (or check --db and --config)")


SQLITE_HEADER = b"SQLite format 3\x00"


def check_header(path: Path) -> None:
    """An existing, non-empty file must be a SQLite database: anything else is left untouched."""
    try:
        with path.open("rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError:
        return  # unreadable: opening it says why, naming it
    if head and head != SQLITE_HEADER:
        raise Unusable(f"{path} is not an outreach database, or it is damaged (file is not a database)")


def check_writable(path: Path) -> None:
    """Both the file and its folder (for `-wal` and `-shm`) must be writable to us."""
    # Checked before any work: a write refused halfway through a command is worse.
    for needed in (path, path.parent):
        if not os.access(needed, os.W_OK):
            raise read_only(str(path), f"{needed} is not writable")


def check_readable(path: Path) -> None:
    """SQLite can read this WAL database from here without missing or risking anything."""
    if not os.access(path, os.R_OK):
        raise Unusable(f"cannot read {path}: permission denied (run as the user that owns it)")
    wal, shm = _side_file(path, "-wal"), _side_file(path, "-shm")
    if needs_immutable(path) and wal.exists() and wal.stat().st_size:
        raise Unusable(
            f"{path.parent} is read-only and {wal.name} holds changes not yet merged into {path.name}: "
            "SQLite cannot read them from here; copy the folder somewhere writable"
        )
    if not shm.exists() and not on_read_only_file_system(path) and not os.access(path.parent, os.W_OK):
        raise Unusable(
            f"cannot read {path}: SQLite must create {shm.name} in {path.parent} to read it safely, and you may "
            "not write there; run as the user that owns it, or read a copy"
        )


def make_folder(path: Path) -> None:
    """The folder a new database goes in (`init`), or Unusable naming why not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Unusable(f"cannot create the folder {path.parent} for the database: {exc.strerror}") from None
