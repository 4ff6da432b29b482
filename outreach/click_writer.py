"""Group commit for clicks: many requests, one transaction, and a spool when the database is away.

Each request hands its click over and awaits it; one writer lets the loop take in
the requests already there, takes every click waiting and commits them in one
INSERT (see `click_sinks` for how), then wakes their requests. The busier the tracker, the
larger the batches and the fewer the commits: durability costs little.

When a commit fails (server down, file locked past the deadline, file removed or
replaced) the batch goes to the spool instead and the writer keeps spooling,
probing the database every `probe_every` seconds; once it answers, the spool is
replayed and clicks go to the database again. Spool writes (fsync) run on a
thread of their own, one at a time, in order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from outreach.click_sinks import AlreadyReplayed, Rejected, Replay, make_sink
from outreach.click_spool import ClickRow, Segment, Spool
from outreach.db import Access, make_engine
from outreach.tracking import visitor_key

log = logging.getLogger(__name__)

HALVE_FROM = 16  # clicks waiting: fewer, and a second commit would cost more than the overlap saves


def short_wait_engine(url: str, deadline: float) -> Engine:
    """An engine whose waits end at `deadline`: a visitor is not kept for a locked database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        parsed = parsed.update_query_dict({"timeout": f"{deadline:g}"})
    elif "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": str(max(1, round(deadline)))})
    return make_engine(parsed.render_as_string(hide_password=False), Access.write)


@dataclass
class WriterStats:
    """What /healthz and /metrics show of the writer."""

    database_ok: bool = True
    last_error: str | None = None
    committed: int = 0
    spooled: int = 0
    replayed: int = 0
    lost: int = 0


class ClickWriter:
    """One writer per process; `record` returns once the click is committed or spooled."""

    def __init__(
        self,
        url: str,
        engine: Engine,
        spool: Spool,
        deadline: float = 2.0,
        max_batch: int = 2000,
        linger: float = 0.002,
        probe_every: float = 1.0,
        database_file: Path | None = None,
    ) -> None:
        self.spool, self.max_batch, self.linger, self.probe_every = spool, max_batch, linger, probe_every
        self.observe: Callable[[int, float, str], Any] | None = None  # (batch size, seconds, where) per batch
        self.stats = WriterStats()
        self._pending: list[tuple[ClickRow, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # One batch on its way at a time; the next leaves as it is committed (see `_launch`).
        self._ready = asyncio.Event()
        self._flushing: set[asyncio.Task[None]] = set()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="click-writer")
        self._next_probe = 0.0
        self.sink = make_sink(url, engine, database_file, deadline, self._thread)
        # Visitors come back: the key of a (network, agent) pair is computed once (0.8 us, 0.1 cached).
        self._visitor_key = functools.lru_cache(maxsize=65536)(visitor_key)

    @property
    def spooling(self) -> bool:
        """True while clicks go to the spool or the spool still holds some (of any worker)."""
        return not self.stats.database_ok or self.spool.waiting() > 0

    async def start(self) -> None:
        """Replay what an earlier run left in the spool, then take clicks."""
        self._wake, self._ready = asyncio.Event(), asyncio.Event()  # bound to the loop that serves
        self._ready.set()
        await self._recover()
        self._task = asyncio.create_task(self._run(), name="click-writer")

    async def record(self, row: ClickRow) -> None:
        """Hand one click over; returns when it is durable (database or spool).

        A row without its visitor key gets it here, once: the spool line and the
        INSERT carry it from then on.
        """
        if row.visitor is None:
            row = row._replace(visitor=self._visitor_key(row.ip_hash, row.user_agent))
        future = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._wake.set()
        await future

    async def close(self) -> None:
        """Commit (or spool) every click handed over, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self._on_thread(self.spool.close_segment)
        self._thread.shutdown(wait=True)
        await self.sink.close()

    async def _on_thread(self, work: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    await self._settle()
                    return
                self._wake.clear()
                try:
                    timeout = None if self.stats.database_ok else self.probe_every
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    pass
            if not self.stats.database_ok and time.monotonic() >= self._next_probe:
                await self._settle()
                await self._recover()
            if not self._pending:
                continue
            await self._gather()
            await self._ready.wait()  # the batch on its way, if any, sends this one when it is done
            if self._pending:
                self._launch()

    def _launch(self) -> None:
        """Send the clicks waiting as the next batch: the only one on its way until it is committed.

        A commit that waits on the network (PostgreSQL) leaves the loop idle: with
        every request waiting on one batch, the loop would wait, then answer them
        all, then wait again. So when nothing is on its way and many clicks wait,
        half go now and half when they are committed, and each batch is sent
        before its own requests are answered: one half's commit overlaps the other
        half's answers (bench/tracker.py: 0.64 -> 0.72 of a bare redirect). SQLite
        commits on the loop itself: there is nothing to overlap, and no halving.
        """
        taken = min(len(self._pending), self.max_batch)
        if self.sink.waits_on_network and not self._flushing and taken >= HALVE_FROM:
            taken = (taken + 1) // 2
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._ready.clear()
        flush = asyncio.create_task(self._flush(batch))
        self._flushing.add(flush)
        flush.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[tuple[ClickRow, asyncio.Future[None]]]) -> None:
        try:
            await self._store([row for row, _ in batch])
        except Exception:  # never leave a visitor waiting: the loss is logged
            log.exception("clicks: a batch of %d could not be stored", len(batch))
        finally:
            if self._pending and self.stats.database_ok:
                self._launch()  # before this batch's answers: the database works while the loop answers
            else:
                self._ready.set()
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _settle(self) -> None:
        """Wait for the batches on their way (before a probe, a replay, or the end)."""
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    async def _gather(self) -> None:
        """Let the requests the loop already has come in, so they share this commit.

        A few turns of the loop while the batch still grows (no idle wait when the
        tracker is busy), then at most `linger` seconds for a lone click's company.
        """
        deadline = time.monotonic() + self.linger
        while len(self._pending) < self.max_batch and time.monotonic() < deadline:
            before = len(self._pending)
            await asyncio.sleep(0)
            if len(self._pending) == before:
                break

    async def _store(self, rows: list[ClickRow]) -> None:
        started = time.perf_counter()
        where = "database"
        if self.stats.database_ok:
            try:
                await self.sink.insert(rows)
                self.stats.committed += len(rows)
            except Exception as error:  # Unavailable, Rejected, or a surprise: the spool keeps them
                self._lost_database(str(error) or type(error).__name__)
        if not self.stats.database_ok:
            where = "spool"
            try:
                await self._on_thread(self.spool.append, rows)
                self.stats.spooled += len(rows)
            except OSError as error:
                where = "lost"
                self.stats.lost += len(rows)
                log.error(
                    "clicks: %d click(s) lost: the spool %s refused them (%s)", len(rows), self.spool.folder, error
                )
        if self.observe is not None:
            self.observe(len(rows), time.perf_counter() - started, where)

    def _lost_database(self, why: str) -> None:
        self.stats.database_ok, self.stats.last_error = False, why
        self._next_probe = time.monotonic() + self.probe_every
        # The writer may be asleep with no deadline (the database was fine when it last looked, and no
        # click came since): wake it, so that it probes every `probe_every` until the database is back.
        self._wake.set()
        log.error("clicks: the database is unavailable (%s); clicks go to %s", why, self.spool.folder)

    async def _recover(self) -> None:
        """Probe the database; if it answers, replay every closed segment and go back to it."""
        self._next_probe = time.monotonic() + self.probe_every
        try:
            await self.sink.probe()
            await self._on_thread(self.spool.close_segment)
            for segment in await self._on_thread(self.spool.closed_segments):
                await self._replay(segment)
        except Exception as error:  # Unavailable, or the spool's folder failing: try again later
            if self.stats.database_ok:
                self._lost_database(str(error) or type(error).__name__)
            return
        if not self.stats.database_ok:
            log.warning("clicks: the database is back; spooled clicks replayed")
        self.stats.database_ok, self.stats.last_error = True, None

    async def _replay(self, segment: Segment) -> None:
        try:
            await self.sink.insert(segment.rows, Replay(segment.name, len(segment.rows)))
        except AlreadyReplayed:
            log.warning("clicks: %s was replayed before; removing it", segment.path)
        except Rejected as refused:  # e.g. a link gone from a restored backup: kept aside, not retried forever
            await self._on_thread(self.spool.set_aside, segment)
            log.error(
                "clicks: %s refused by the database (%s); kept as %s.refused", segment.path, refused, segment.path
            )
            return
        except BaseException:
            await self._on_thread(segment.release)
            raise
        else:
            self.stats.replayed += len(segment.rows)
        await self._on_thread(self.spool.replayed, segment)
