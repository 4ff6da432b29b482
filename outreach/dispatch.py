"""Sending deliveries at each platform's limit: one worker per target, database work off the loop.

DESIGN §4 and §7. Each (channel, target) with due deliveries gets its own worker,
so a long broadcast never holds up a page post; a worker keeps the spec's number
of sends in flight at the spec's rate (shared per token by the `Pacer`), inside
the channel's posting windows. Every state change is committed (in a thread)
before the next network call: a delivery found in `sending` after a crash may
already be on the page, so it becomes `unknown` unless its transport is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from outreach import dispatch_store as db
from outreach.channel import AuthFailed, Channel, MaybeSent, RecipientGone, Rejected, Transient
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch_store import EVERY_TARGET, MAX_ATTEMPTS, Claimed, Result, backoff
from outreach.lifecycle import Actor
from outreach.models import DeliveryStatus, utcnow
from outreach.pacing import Pacer
from outreach.routing import Route, RouteKey, Routing
from outreach.windows import Holidays, Pacing, Verdict, next_slot

log = logging.getLogger(__name__)
__all__ = [
    "EVERY_TARGET",
    "MAX_ATTEMPTS",
    "DispatchPlan",
    "Dispatcher",
    "SendReport",
    "backoff",
    "plan_for",
    "send_once",
    "send_pending",
]
SENDING_LEASE = timedelta(minutes=5)  # a send in flight is never older: an older `sending` row was a crash


@dataclass(frozen=True)
class DispatchPlan:
    """When targets may receive posts (windows, caps, gaps, holidays) and the crash lease."""

    pacing: dict[str, Pacing] = field(default_factory=dict)  # by channel
    holidays: Holidays | None = None
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Ho_Chi_Minh"))
    lease: timedelta = SENDING_LEASE


def plan_for(settings: Settings) -> DispatchPlan:
    """The dispatch plan a config asks for: each channel's pacing, the holidays, the lease."""
    enabled = settings.schedule.channels.enabled()
    pacing = {name: block.pacing() for name, block in enabled.items()}
    wanted = settings.schedule.holidays
    holidays = (
        Holidays(country=wanted.country, extra=frozenset(wanted.extra))
        if any(each.skip_holidays for each in pacing.values())
        else None
    )
    lease = timedelta(seconds=settings.schedule.dispatch.sending_lease_seconds)
    return DispatchPlan(pacing=pacing, holidays=holidays, zone=settings.zone, lease=lease)


@dataclass
class SendReport:
    """What a dispatch run did, by outcome, and what is waiting and why."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    recovered: int = 0
    # Targets (target EVERY_TARGET: every one of the channel) whose token was refused, and why.
    paused: dict[RouteKey, str] = field(default_factory=dict)
    # Targets (or channels) the platform asked to wait, with the seconds it said.
    waiting: dict[RouteKey, float] = field(default_factory=dict)
    # Targets outside their posting window, daily cap or gap: when they may next post, and why.
    deferred: dict[RouteKey, Verdict] = field(default_factory=dict)
    # Pending deliveries for targets no longer in the config (or disabled): they wait.
    unroutable: dict[RouteKey, int] = field(default_factory=dict)

    def count(self, status: DeliveryStatus) -> None:
        """One more attempt that ended in this state."""
        name = {DeliveryStatus.pending: "retrying"}.get(status, status.value)
        setattr(self, name, getattr(self, name) + 1)


def _result(channel: Channel, error: Exception | None, platform_id: str | None = None) -> Result:
    """One attempt's outcome in the store's terms (never raises)."""
    if error is None:
        return Result(DeliveryStatus.sent, platform_id=platform_id)
    if isinstance(error, Transient):
        scope = EVERY_TARGET if error.whole_channel else "target"
        hold = scope if error.retry_after is not None or error.whole_channel else None
        return Result(DeliveryStatus.pending, str(error), retry_after=error.retry_after, hold=hold)
    if isinstance(error, AuthFailed):
        scope = EVERY_TARGET if error.whole_channel else "target"
        return Result(DeliveryStatus.pending, str(error), hold=scope, token_refused=True)
    if isinstance(error, RecipientGone):
        return Result(DeliveryStatus.skipped, str(error))
    if isinstance(error, Rejected):
        return Result(DeliveryStatus.failed, str(error))
    status = DeliveryStatus.pending if channel.idempotent else DeliveryStatus.unknown
    if isinstance(error, MaybeSent):
        return Result(status, str(error))
    return Result(status, f"{type(error).__name__}: {error}")  # an adapter bug: it may have gone out too


class Dispatcher:
    """Runs the workers; `run_until_idle` for `send` and `run --once`, `serve` for `run`."""

    def __init__(
        self,
        store: Store,
        routing: Routing,
        plan: DispatchPlan | None = None,
        actor: Actor | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store, self.routing, self.plan = store, routing, plan or DispatchPlan()
        self.actor = actor or Actor.current("dispatcher")
        self.clock = clock
        self.pacer = Pacer(routing.rates)
        self.report = SendReport()
        self._holds: dict[RouteKey, datetime] = {}  # until when nothing goes there (a flood wait)
        self._paused: dict[RouteKey, str] = {}
        self._workers: dict[RouteKey, asyncio.Task[None]] = {}
        self._budget: int | None = None
        self._stop = asyncio.Event()
        self._touched: set[int] = set()  # campaigns to settle

    # --- the two ways to run ---------------------------------------------------------------

    async def run_until_idle(self, limit: int | None = None) -> SendReport:
        """Send what is due now, each target at its pace, and return when nothing more is."""
        self._budget = limit
        await self._prepare()
        for channel, target, _ in await asyncio.to_thread(db.due_keys, self.store, self.clock()):
            self._start((channel, target), until_idle=True)
        if self._workers:
            await asyncio.gather(*self._workers.values())
        await self._finish_run()
        return self.report

    async def serve(self, stop: asyncio.Event, poll: float = 1.0) -> None:
        """Keep sending until `stop` is set: new due work gets a worker within `poll` seconds.

        On stop, no new send starts; sends in flight finish and are recorded.
        """
        self._stop = stop
        await self._prepare()
        last_recovery = self.clock()
        while not stop.is_set():
            now = self.clock()
            if now - last_recovery > self.plan.lease / 2:
                self.report.recovered += await asyncio.to_thread(
                    db.recover, self.store, self._idempotent(), now, self.plan.lease, self.actor
                )
                last_recovery = now
            for channel, target, _ in await asyncio.to_thread(db.due_keys, self.store, now):
                key = (channel, target)
                running = self._workers.get(key)
                if running is None or running.done():
                    self._start(key, until_idle=False)
            await self._settle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._finish_run()

    # --- workers ---------------------------------------------------------------------------

    async def _prepare(self) -> None:
        now = self.clock()
        self._paused = await asyncio.to_thread(db.pauses, self.store)
        self.report.paused.update(self._paused)
        self.report.recovered += await asyncio.to_thread(
            db.recover, self.store, self._idempotent(), now, self.plan.lease, self.actor
        )

    def _idempotent(self) -> dict[tuple[str, str], str]:
        return {(r.channel, r.target): r.transport.name for r in self.routing if r.transport.idempotent}

    def _start(self, key: RouteKey, until_idle: bool) -> None:
        route = self.routing.get(*key)
        if route is None or self._blocked(key):
            return
        self._workers[key] = asyncio.create_task(self._work(route, until_idle), name=f"dispatch {key}")

    def _blocked(self, key: RouteKey) -> bool:
        channel, _ = key
        return key in self._paused or (channel, EVERY_TARGET) in self._paused

    def _held_until(self, key: RouteKey) -> datetime | None:
        channel, _ = key
        holds = [self._holds.get(key), self._holds.get((channel, EVERY_TARGET))]
        later = [moment for moment in holds if moment is not None and moment > self.clock()]
        return max(later) if later else None

    async def _work(self, route: Route, until_idle: bool) -> None:
        """One target's worker: claim, pace, send, record; until nothing is due (or stop)."""
        key = (route.channel, route.target)
        rate = self.routing.rates.get(route.channel)
        concurrency = rate.concurrency if rate is not None and route.to_platform else 1
        pacing = self.plan.pacing.get(route.channel)
        if pacing is not None and (pacing.max_per_day or pacing.min_gap):
            concurrency = 1  # each post must see the one before it counted
        queue: deque[Claimed] = deque()
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set() and not self._blocked(key):
                held = self._held_until(key)
                if held is not None:
                    if until_idle:
                        break
                    await self._sleep_until(held)
                    continue
                if not queue and len(inflight) < concurrency:
                    verdict = await self._slot(route, pacing)
                    if verdict is not None:
                        self.report.deferred[key] = verdict
                        if until_idle or inflight:
                            break
                        await self._sleep_until(verdict.when)
                        continue
                    queue.extend(await self._claim(route, concurrency - len(inflight)))
                if not queue:
                    if not inflight:
                        break
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    inflight = {task for task in inflight if not task.done()}
                    continue
                if len(inflight) >= concurrency:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    inflight = {task for task in inflight if not task.done()}
                    continue
                claimed = queue.popleft()
                if route.to_platform:  # the outbox stands in at no platform's pace
                    await self.pacer.wait(route.channel, route.target)
                inflight.add(asyncio.create_task(self._send(route, claimed)))
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)
            if queue:  # claimed but not sent (a hold, a pause, a stop): back to pending, no attempt spent
                await asyncio.to_thread(self._release, list(queue))

    def _release(self, claimed: list[Claimed]) -> None:
        for each in claimed:
            db.finish(
                self.store,
                each.message.delivery_id,
                Result(DeliveryStatus.pending, "not sent: the target is on hold", token_refused=True),
                self.clock(),
                self.actor,
            )

    async def _slot(self, route: Route, pacing: Pacing | None) -> Verdict | None:
        """None when a post may go to the target now; else when it may, and why."""
        if pacing is None or not (pacing.windows or pacing.max_per_day or pacing.min_gap or pacing.skip_holidays):
            return None
        now = self.clock()
        local = now.astimezone(self.plan.zone)
        day_start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        sent_today, last = await asyncio.to_thread(db.sent_on, self.store, route.channel, route.target, day_start)
        verdict = next_slot(pacing, self.plan.holidays or Holidays(), self.plan.zone, now, sent_today, last)
        return verdict if verdict.when > now else None

    async def _claim(self, route: Route, room: int) -> list[Claimed]:
        if self._budget is not None:
            room = min(room, self._budget)
            if room <= 0:
                return []
        markup = self.routing.markups[route.channel]
        claimed = await asyncio.to_thread(
            db.claim,
            self.store,
            route.channel,
            [route.target],
            route.transport.name,
            markup,
            self.clock(),
            room,
            self.actor,
        )
        if self._budget is not None:
            self._budget -= len(claimed)
        return claimed

    async def _send(self, route: Route, claimed: Claimed) -> None:
        message = claimed.message
        try:
            sent = await route.transport.send(message)
            result = _result(route.transport, None, sent.platform_id)
        except Exception as exc:
            if not isinstance(exc, Transient | AuthFailed | RecipientGone | Rejected | MaybeSent):
                log.exception("delivery %s: unexpected error from %s", message.delivery_id, route.transport.name)
            result = _result(route.transport, exc)
        now = self.clock()
        status = await asyncio.to_thread(db.finish, self.store, message.delivery_id, result, now, self.actor)
        self._touched.add(message.campaign_id)
        if result.hold is not None:
            key = (route.channel, EVERY_TARGET if result.hold == EVERY_TARGET else route.target)
            if result.token_refused:
                self._paused[key] = result.error or "token refused"
                self.report.paused[key] = self._paused[key]
                await asyncio.to_thread(db.pause, self.store, *key, self._paused[key], now, self.actor)
            else:
                self._holds[key] = now + timedelta(seconds=result.retry_after or 60)
                self.report.waiting[key] = result.retry_after or 60.0
        if not result.token_refused:
            self.report.count(status)

    async def _sleep_until(self, moment: datetime) -> None:
        seconds = min(max((moment - self.clock()).total_seconds(), 0.05), 60.0)  # re-check at least each minute
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _settle(self) -> None:
        touched, self._touched = sorted(self._touched), set()
        await asyncio.to_thread(db.settle, self.store, touched, self.actor)

    async def _finish_run(self) -> None:
        await self._settle()
        for key, count in (await asyncio.to_thread(db.pending_counts, self.store)).items():
            if self.routing.get(*key) is None:
                self.report.unroutable[key] = count


async def send_pending(
    store: Store,
    routing: Routing,
    now: Callable[[], datetime] = utcnow,
    limit: int | None = None,
    plan: DispatchPlan | None = None,
) -> SendReport:
    """Deliver every due pending delivery once, each target at its pace (for `send`)."""
    return await Dispatcher(store, routing, plan, clock=now).run_until_idle(limit)


async def send_once(
    store: Store, routing: Routing, limit: int | None = None, plan: DispatchPlan | None = None
) -> SendReport:
    """One dispatch run for a one-shot command: the transports are closed at the end."""
    try:
        return await send_pending(store, routing, limit=limit, plan=plan)
    finally:
        await routing.close()
