"""Where clicks wait while the database is unavailable: append-only segments, fsynced.

A visitor's redirect goes out once its click is in the database or here. Each
process appends to a segment of its own and holds an exclusive lock on it while
it does, so a replayer (any process) takes only segments nobody is writing: a
leftover from a crash, or one its writer closed. A segment is replayed in one
transaction together with a row naming it (`click_spool_replays`), so a crash
between that commit and removing the file never adds its clicks twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

from outreach.models import ClickKind
from outreach.tracking import visitor_key

log = logging.getLogger(__name__)

SUFFIX = ".clicks.jsonl"


class ClickRow(NamedTuple):
    """One click as the writer stores it, in the order of the INSERT's columns."""

    code: str
    at: datetime  # aware, UTC
    kind: ClickKind
    ip_hash: str | None
    user_agent: str | None
    referrer_host: str | None
    repeat: bool
    uid: str  # the click's own name: stored twice, it is still one row
    # `tracking.visitor_key(ip_hash, user_agent)`; None until the writer (or a replay) computes it.
    visitor: int | None = None


def keyed(row: ClickRow) -> ClickRow:
    """The row with its visitor key (computed only when it has none)."""
    if row.visitor is not None:
        return row
    return row._replace(visitor=visitor_key(row.ip_hash, row.user_agent))


def to_line(row: ClickRow) -> str:
    """One click as one JSON line (times as ISO 8601 with their offset)."""
    fields = {**row._asdict(), "at": row.at.isoformat(), "kind": row.kind.value}
    return json.dumps(fields, ensure_ascii=False) + "\n"


def from_line(line: str) -> ClickRow:
    """The click a line holds; ValueError (or KeyError, TypeError) for a torn or foreign line.

    A line written before the visitor key (migration 0011) has none: it is computed here.
    """
    fields: dict[str, Any] = json.loads(line)
    fields["at"] = datetime.fromisoformat(fields["at"])
    fields["kind"] = ClickKind(fields["kind"])
    return keyed(ClickRow(**fields))


@dataclass
class Segment:
    """A closed segment, read and locked for replay; `bad` lines could not be read."""

    path: Path
    rows: list[ClickRow]
    bad: int
    _handle: IO[str]

    @property
    def name(self) -> str:
        return self.path.name

    def remove(self) -> None:
        """Delete the replayed file, then let go of its lock."""
        self.path.unlink(missing_ok=True)
        _fsync_folder(self.path.parent)
        self.release()

    def release(self) -> None:
        """Keep the file for a later replay."""
        self._handle.close()


class Spool:
    """Append-only click segments in one folder."""

    SEGMENT_ROWS = 10_000  # a segment is replayed in one transaction: keep it short

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._current: IO[str] | None = None
        self._current_path: Path | None = None
        self._current_rows = 0
        self._counted: tuple[float, int] = (0.0, 0)

    def waiting(self) -> int:
        """Clicks in the folder (of every worker), counted at most once a second."""
        at, count = self._counted
        if time.monotonic() - at > 1.0:
            count = self._count_waiting()
            self._counted = (time.monotonic(), count)
        return count

    def _count_waiting(self) -> int:
        if not self.folder.is_dir():
            return 0
        total = 0
        for path in self.folder.glob("*" + SUFFIX):
            with contextlib.suppress(OSError), path.open("rb") as handle:
                total += sum(1 for _ in handle)
        return total

    def append(self, rows: list[ClickRow]) -> None:
        """Write the clicks and fsync: when this returns, a power cut keeps them."""
        if self._current is not None and self._current_rows >= self.SEGMENT_ROWS:
            self.close_segment()
        handle = self._current or self._open_segment()
        handle.write("".join(to_line(row) for row in rows))
        handle.flush()
        os.fsync(handle.fileno())
        self._current_rows += len(rows)
        self._counted = (0.0, 0)

    def _open_segment(self) -> IO[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        path = self.folder / f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        # Made and locked under a name replayers ignore, then renamed: no replayer can take
        # (and remove) it between its creation and our lock.
        making = path.with_name(path.name + ".new")
        handle = making.open("a", encoding="utf-8")
        fcntl.flock(handle, fcntl.LOCK_EX)  # ours while we write
        making.rename(path)
        _fsync_folder(self.folder)
        self._current, self._current_path, self._current_rows = handle, path, 0
        log.warning("clicks: the database is unavailable; spooling clicks to %s", path)
        return handle

    def close_segment(self) -> None:
        """Stop appending to the current segment, so it can be replayed."""
        if self._current is not None:
            self._current.close()
            self._current = self._current_path = None

    def closed_segments(self) -> list[Segment]:
        """Segments nobody is writing, oldest first, each locked for its replayer."""
        if not self.folder.is_dir():
            return []
        segments = []
        for path in sorted(self.folder.glob("*" + SUFFIX)):
            if path == self._current_path:
                continue
            try:
                handle = path.open("r", encoding="utf-8", errors="replace")
            except FileNotFoundError:  # another replayer finished it meanwhile
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a living writer (or another replayer) has it
                handle.close()
                continue
            if not path.exists():  # replayed and removed while we waited for the lock
                handle.close()
                continue
            rows, bad = [], 0
            for line in handle:
                try:
                    rows.append(from_line(line))
                except (ValueError, KeyError, TypeError):
                    bad += 1  # a line torn by a crash mid-write was never acknowledged
            if bad:
                log.warning("clicks: %s has %d unreadable line(s), skipped", path, bad)
            segments.append(Segment(path, rows, bad, handle))
        return segments

    def replayed(self, segment: Segment) -> None:
        """The segment's clicks are in the database: forget them here."""
        segment.remove()
        self._counted = (0.0, 0)

    def set_aside(self, segment: Segment) -> None:
        """The database refuses this segment: keep it (as NAME.refused) for people, out of the replay."""
        segment.path.rename(segment.path.with_name(segment.path.name + ".refused"))
        _fsync_folder(self.folder)
        segment.release()
        self._counted = (0.0, 0)


def _fsync_folder(folder: Path) -> None:
    """A new or removed file survives a power cut only once its folder is synced."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
