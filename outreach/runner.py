"""`outreach run`: the always-on service. Scheduler, dispatcher and tracker in one event loop.

An APScheduler 3 `AsyncIOScheduler` runs the periodic jobs (poll each source on
its interval, then the rules; the daily digests; housekeeping) with explicit ids,
`replace_existing`, a deliberate misfire grace and coalescing, so a machine that
slept runs each job once, not a backlog. The dispatcher and the tracker run
beside it. Blocking work (feeds, the database) runs in threads. On PostgreSQL
only the holder of an advisory lock runs the periodic jobs, so several runner
processes never poll or apply rules twice. Each job's next and last run go to
the `runner_jobs` table for `outreach status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, text, update

from outreach.broadcast import daily_digest
from outreach.campaigns import CampaignError, CampaignRequest, create_campaign
from outreach.config import Digest, Settings
from outreach.db import Store
from outreach.dispatch import Dispatcher, DispatchPlan, SendReport, plan_for
from outreach.dispatch_store import settle
from outreach.ingest import poll_sources
from outreach.lifecycle import Actor
from outreach.models import Campaign, CampaignKind, Item, JobState, utcnow
from outreach.render import Renderer, RenderError
from outreach.routing import Routing
from outreach.rules import RulesReport, apply_rules
from outreach.status import DISPATCH_JOB, RUNNER_HEARTBEAT

log = logging.getLogger(__name__)
SCHEDULER_LOCK = 0x6F757473  # "outs": who runs the periodic jobs on PostgreSQL
MISFIRE_GRACE = 300  # seconds a late job may still run (a busy or sleeping machine)
HOUSEKEEPING_MINUTES = 5


@dataclass
class OnceReport:
    """What `outreach run --once` did: one pass of every job."""

    polled: list[str] = field(default_factory=list)
    rules: RulesReport = field(default_factory=RulesReport)
    digests: list[int] = field(default_factory=list)
    sent: SendReport = field(default_factory=SendReport)


class Runner:
    """The service: periodic jobs, the dispatcher, and (if given) the tracker, until stopped."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        routing: Routing,
        renderer: Renderer,
        actor: Actor,
        plan: DispatchPlan | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings, self.store, self.routing, self.renderer = settings, store, routing, renderer
        self.actor, self.clock = actor, clock
        self.plan = plan or plan_for(settings)
        self._pending: set[asyncio.Future[None]] = set()

    # --- the jobs (each also runs alone, in `--once`) ----------------------------------------

    async def poll(self, source: str) -> None:
        """Poll one source, then apply the rules to what it brought."""
        results = await asyncio.to_thread(poll_sources, self.store, self.settings.schedule, [source])
        for result in results:
            if result.error:
                log.warning("source %s: %s", result.source, result.error)
        await self.rules()

    async def rules(self) -> RulesReport:
        """Apply the rules to recent items."""
        return await asyncio.to_thread(apply_rules, self.store, self.settings, self.renderer, self.clock(), self.actor)

    async def digest(self, name: str) -> int | None:
        """Make today's digest campaign, if there are items for it; returns its id."""
        wanted = next(each for each in self.settings.schedule.digests if each.name == name)
        return await asyncio.to_thread(self._digest, wanted)

    def _digest(self, digest: Digest) -> int | None:
        now = self.clock()
        with self.store.sessions() as session, session.begin():
            earlier = list(session.scalars(select(Campaign).where(Campaign.rule == digest.name)))
            if any(c.created_at > now - timedelta(hours=20) for c in earlier):
                return None  # today's is made (a restart, or --once after the job)
            included = {item_id for c in earlier for item_id in c.item_ids}
            items = [
                item
                for item in session.scalars(
                    select(Item)
                    .where(Item.published_at >= now - timedelta(days=1), Item.language == digest.language)
                    .order_by(Item.published_at.desc())
                )
                if item.id not in included and (not digest.topics or set(digest.topics) & set(item.topics))
            ][: digest.max_items]
            if not items:
                return None
            request = CampaignRequest(
                kind=CampaignKind.digest,
                item_ids=tuple(item.id for item in items),
                channels=tuple(digest.channels),
                rule=digest.name,
            )
            try:
                vouched = f"approved by digest {digest.name}" if digest.approved else None
                campaign = create_campaign(session, self.settings, self.renderer, request, self.actor, vouched)
            except (CampaignError, RenderError) as exc:
                log.warning("digest %s: %s", digest.name, exc)
                session.rollback()
                return None
            return campaign.id

    async def subscriber_digest(self, channel: str) -> list[int]:
        """The daily digest of a channel's digest-mode subscribers; the campaigns made (one per language)."""
        return await asyncio.to_thread(self._subscriber_digest, channel)

    def _subscriber_digest(self, channel: str) -> list[int]:
        block = self.settings.schedule.channels.enabled()[channel]
        max_items = int(getattr(block, "digest_max_items", 10))
        with self.store.sessions() as session, session.begin():
            return daily_digest(session, self.settings, self.renderer, channel, self.clock(), self.actor, max_items)

    async def housekeeping(self) -> None:
        """Nothing left behind: campaigns whose deliveries are all final are closed."""
        await asyncio.to_thread(self._housekeeping)

    def _housekeeping(self) -> None:
        settle(self.store, None, self.actor)

    # --- once, or forever --------------------------------------------------------------------

    async def once(self) -> OnceReport:
        """One pass of every job, then send what is due; for cron, tests and a first look."""
        report = OnceReport()
        for source in self.settings.schedule.sources:
            await asyncio.to_thread(poll_sources, self.store, self.settings.schedule, [source.name])
            report.polled.append(source.name)
        report.rules = await self.rules()
        for digest in self.settings.schedule.digests:
            made = await asyncio.to_thread(self._digest, digest)
            if made is not None:
                report.digests.append(made)
        report.sent = await Dispatcher(self.store, self.routing, self.plan, self.actor, self.clock).run_until_idle()
        await self.housekeeping()
        return report

    async def serve(self, stop: asyncio.Event, tracker: Any = None) -> None:
        """Run until `stop` is set (SIGTERM, Ctrl-C): in-flight sends finish and are recorded.

        `tracker` is a `uvicorn.Server` to serve in the same loop, or None.
        """
        leader = await asyncio.to_thread(self._lead)
        scheduler = AsyncIOScheduler(timezone=self.settings.zone)
        if leader:
            self._schedule(scheduler)
        scheduler.add_listener(self._record, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.start()
        dispatcher = Dispatcher(self.store, self.routing, self.plan, self.actor, self.clock)
        await asyncio.to_thread(self._write_jobs, scheduler, dispatcher.health)
        tasks = [asyncio.create_task(dispatcher.serve(stop), name="dispatcher")]
        if tracker is not None:
            tasks.append(asyncio.create_task(tracker.serve(), name="tracker"))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=RUNNER_HEARTBEAT.total_seconds())
                if not leader and await asyncio.to_thread(self._lead, True):  # the leader is gone: take over its jobs
                    leader = True
                    self._schedule(scheduler)
                await asyncio.to_thread(self._write_jobs, scheduler, dispatcher.health)
        finally:
            scheduler.shutdown(wait=False)
            if tracker is not None:
                tracker.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            if leader:  # another process may still run the jobs (PostgreSQL)
                await asyncio.to_thread(self._write_jobs, None, "stopped")
            self._release()

    def _schedule(self, scheduler: AsyncIOScheduler) -> None:
        common: dict[str, Any] = {"replace_existing": True, "coalesce": True, "misfire_grace_time": MISFIRE_GRACE}
        now = self.clock()
        for source in self.settings.schedule.sources:
            scheduler.add_job(
                self.poll,
                "interval",
                minutes=source.poll_minutes,
                args=[source.name],
                id=f"poll {source.name}",
                next_run_time=now,
                max_instances=1,
                **common,
            )
        for digest in self.settings.schedule.digests:
            hour, minute = (int(part) for part in digest.at.split(":"))
            scheduler.add_job(
                self.digest,
                "cron",
                day_of_week=digest.days,
                hour=hour,
                minute=minute,
                args=[digest.name],
                id=f"digest {digest.name}",
                max_instances=1,
                **common,
            )
        for name, block in self.settings.schedule.channels.enabled().items():
            if block.audience != "subscribers":
                continue
            # A channel of subscribers says when its digest goes (the bot's `digest_at`).
            hour, minute = (int(part) for part in str(getattr(block, "digest_at", "17:00")).split(":"))
            scheduler.add_job(
                self.subscriber_digest,
                "cron",
                hour=hour,
                minute=minute,
                args=[name],
                id=f"subscriber digest {name}",
                max_instances=1,
                **common,
            )
        scheduler.add_job(
            self.housekeeping, "interval", minutes=HOUSEKEEPING_MINUTES, id="housekeeping", max_instances=1, **common
        )

    def _record(self, event: JobExecutionEvent) -> None:
        # Called in the loop: the database write goes to a thread.
        outcome = (
            "ok" if event.code == EVENT_JOB_EXECUTED else ("missed" if event.code == EVENT_JOB_MISSED else "error")
        )
        if event.exception is not None:
            outcome = f"error: {type(event.exception).__name__}: {event.exception}"
            log.error("job %s: %s", event.job_id, outcome)
        self._pending.add(asyncio.ensure_future(asyncio.to_thread(self._store_outcome, event.job_id, outcome)))
        self._pending = {task for task in self._pending if not task.done()}

    def _store_outcome(self, job_id: str, outcome: str) -> None:
        with self.store.sessions() as session, session.begin():
            state = session.get(JobState, job_id) or JobState(id=job_id)
            state.last_run_at, state.last_outcome, state.updated_at = self.clock(), outcome[:500], self.clock()
            session.merge(state)

    def _write_jobs(self, scheduler: AsyncIOScheduler | None, dispatching: str) -> None:
        """Each job's next run and the dispatcher's health, for `outreach status` (a heartbeat too).

        `scheduler` None: the runner stopped.
        """
        now = self.clock()
        with self.store.sessions() as session, session.begin():
            if scheduler is None:
                session.execute(update(JobState).values(next_run_at=None, updated_at=now))
                return
            for job in scheduler.get_jobs():
                state = session.get(JobState, job.id) or JobState(id=job.id)
                state.next_run_at, state.updated_at = job.next_run_time, now
                session.merge(state)
            state = session.get(JobState, DISPATCH_JOB) or JobState(id=DISPATCH_JOB)
            state.next_run_at, state.last_run_at, state.updated_at = now, now, now
            state.last_outcome = dispatching[:500]
            session.merge(state)

    # --- who runs the periodic jobs (PostgreSQL: one process) --------------------------------

    _lock_connection: Any = None

    def _lead(self, quiet: bool = False) -> bool:
        """Whether this process runs the periodic jobs: always on SQLite; on PostgreSQL, the lock's holder."""
        if self.store.engine.dialect.name != "postgresql":
            return True
        connection = self.store.engine.connect()
        got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": SCHEDULER_LOCK}).scalar())
        if got:
            self._lock_connection = connection  # held for the process's life
        else:
            connection.close()
            if not quiet:
                log.warning("another runner holds the scheduler lock: this one only dispatches and tracks")
        return got

    def _release(self) -> None:
        if self._lock_connection is not None:
            self._lock_connection.close()  # closing the session releases the advisory lock
            self._lock_connection = None
