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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from outreach import dispatch_store as db
from outreach.channel import AuthFailed, Channel, MaybeSent, RecipientGone, Rejected, Sent, Transient, resendable
from outreach.config import Settings
from outreach.db import Store
from outreach.dispatch_store import EVERY_TARGET, MAX_ATTEMPTS, Claimed, Result, backoff
from outreach.lifecycle import Actor
from outreach.models import DeliveryStatus, utcnow
from outreach.pacing import Pacer, RoundTrips, Slot
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
SETTLE_BATCH = 200  # campaigns settled per database call (one aggregate query each)
OUTBOX_BATCH = 16  # outbox files written at once per target
RECORD_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # seconds between tries to record outcomes (a busy database)
# Seconds of slots gathered into one claim: a delivery is `sending` at most this long before its send.
CLAIM_AHEAD = 0.025
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


def _result(channel: Channel, error: Exception | None, sent: Sent | None = None) -> Result:
    """One attempt's outcome in the store's terms (never raises)."""
    if error is None:
        assert sent is not None
        return Result(DeliveryStatus.sent, platform_id=sent.platform_id, moved_to=sent.moved_to)
    if isinstance(error, Transient):
        scope = EVERY_TARGET if error.whole_channel else "target"
        hold = scope if error.retry_after is not None or error.whole_channel else None
        return Result(DeliveryStatus.pending, str(error), retry_after=error.retry_after, hold=hold)
    if isinstance(error, AuthFailed):
        scope = EVERY_TARGET if error.whole_channel else "target"
        return Result(DeliveryStatus.pending, str(error), hold=scope, token_refused=True)
    if isinstance(error, RecipientGone):
        return Result(DeliveryStatus.skipped, str(error), gone=True)
    if isinstance(error, Rejected):
        return Result(DeliveryStatus.failed, str(error))
    status = DeliveryStatus.pending if resendable(channel) else DeliveryStatus.unknown
    if isinstance(error, MaybeSent):
        return Result(status, str(error))
    return Result(status, f"{type(error).__name__}: {error}")  # an adapter bug: it may have gone out too


class Recorder:
    """Records send outcomes in batches: whatever finished while the last batch was written.

    One transaction per batch instead of one per send (group commit): at a
    platform's full rate the database keeps up with a few commits a second. A
    crash between a send and its batch leaves the delivery `sending`, which the
    next start treats as interrupted (`unknown`, or retried where idempotent).
    """

    def __init__(self, store: Store, actor: Actor) -> None:
        self.store, self.actor = store, actor
        self._waiting: list[tuple[int, Result, datetime, asyncio.Future[DeliveryStatus]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, delivery_id: int, result: Result, now: datetime) -> DeliveryStatus:
        """Store one outcome (with the others of its batch); the delivery's state after it."""
        done: asyncio.Future[DeliveryStatus] = asyncio.get_running_loop().create_future()
        self._waiting.append((delivery_id, result, now, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await done

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            outcomes = [(delivery_id, result, now) for delivery_id, result, now, _ in batch]
            statuses: list[DeliveryStatus] | None = None
            error: Exception | None = None
            for pause in (*RECORD_RETRIES, None):  # the outcomes are only in memory: try hard to keep them
                try:
                    statuses = await asyncio.to_thread(db.finish_many, self.store, outcomes, self.actor)
                    break
                except Exception as exc:
                    error = exc
                    if pause is None:
                        break
                    log.warning("recording %d outcomes failed (%s); again in %g s", len(batch), exc, pause)
                    await asyncio.sleep(pause)
            for index, (*_, done) in enumerate(batch):
                if done.done():  # its sender was cancelled
                    continue
                if statuses is not None:
                    done.set_result(statuses[index])
                else:  # still `sending`: the next start declares them interrupted
                    done.set_exception(error or RuntimeError("outcome not recorded"))


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
        self.trips = RoundTrips()
        self.report = SendReport()
        self._holds: dict[RouteKey, datetime] = {}  # until when nothing goes there (a flood wait)
        self._paused: dict[RouteKey, str] = {}
        self._workers: dict[RouteKey, asyncio.Task[None]] = {}
        self._budget: int | None = None
        self._stop = asyncio.Event()
        self._touched: set[int] = set()  # campaigns to settle
        self._recorder = Recorder(store, self.actor)
        self._unsaved: set[RouteKey] = set()  # pauses decided here, not yet stored
        self.health = "ok"  # or the last pass's error, for `outreach status`

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
            try:
                last_recovery = await self._pass(last_recovery)
                self.health = "ok"
            except Exception as exc:  # the database is busy or gone: say so, and try again
                self.health = f"error: {type(exc).__name__}: {exc}"
                log.exception("dispatcher: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll)
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        await self._finish_run()

    async def _pass(self, last_recovery: datetime) -> datetime:
        """One look at the store: pauses lifted or added elsewhere, interrupted claims, due targets, settling."""
        now = self.clock()
        stored = await asyncio.to_thread(db.pauses, self.store)
        self._paused = {**stored, **{key: self._paused[key] for key in self._unsaved if key in self._paused}}
        if now - last_recovery > self.plan.lease / 2:
            self.report.recovered += await asyncio.to_thread(
                db.recover, self.store, self._idempotent(), now, self.plan.lease, self.actor
            )
            last_recovery = now
        for channel, target, _ in await asyncio.to_thread(db.due_keys, self.store, now):
            self._start((channel, target), until_idle=False)
        await self._settle()
        return last_recovery

    # --- workers ---------------------------------------------------------------------------

    async def _prepare(self) -> None:
        now = self.clock()
        self._paused = await asyncio.to_thread(db.pauses, self.store)
        self.report.paused.update(self._paused)
        self.report.recovered += await asyncio.to_thread(
            db.recover, self.store, self._idempotent(), now, self.plan.lease, self.actor
        )
        await asyncio.to_thread(db.settle, self.store, None, self.actor)  # what a killed run left open

    def _idempotent(self) -> dict[tuple[str, str], str]:
        return {(r.channel, r.target): r.transport.name for r in self.routing if resendable(r.transport)}

    def _route(self, key: RouteKey) -> Route | None:
        """A target's route; a subscriber of a channel of subscribers goes by the channel's one route."""
        return self.routing.get(*key) or self.routing.get(key[0], EVERY_TARGET)

    def _start(self, key: RouteKey, until_idle: bool) -> None:
        route = self._route(key)
        if route is None:
            return
        key = (route.channel, route.target)  # one worker for all of a channel's subscribers
        running = self._workers.get(key)
        if self._blocked(key) or (running is not None and not running.done()):
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
        """One target's worker: a slot in the rate's windows, then claim, send, record; until nothing is due.

        The slot comes first and the claim only takes what may go now, so a
        delivery is never `sending` while it waits: a cancel stops everything not
        already on its way.
        """
        key = (route.channel, route.target)
        concurrency = self._concurrency(route)
        inflight: set[asyncio.Task[None]] = set()
        try:
            while not self._stop.is_set() and not self._blocked(key):
                held = self._held_until(key)
                if held is not None:
                    if until_idle:
                        break
                    await self._sleep_until(held)
                    continue
                if len(inflight) >= concurrency:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    inflight = {task for task in inflight if not task.done()}
                    continue
                verdict = await self._slot(route, self.plan.pacing.get(route.channel))
                if verdict is not None:
                    self.report.deferred[key] = verdict
                    if until_idle or inflight:
                        break
                    await self._sleep_until(verdict.when)
                    continue
                slots = await self._slots(route, concurrency - len(inflight))
                claimed = await self._claim(route, len(slots))
                if not claimed:
                    if not inflight:
                        break
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    inflight = {task for task in inflight if not task.done()}
                    continue
                if self._blocked(key) or self._held_until(key) is not None:  # a send in flight just said stop
                    await asyncio.to_thread(self._release, key, claimed)
                    continue
                for each, slot in zip(claimed, slots, strict=False):
                    inflight.add(asyncio.create_task(self._send(route, each, slot)))
        finally:
            if inflight:
                await asyncio.gather(*inflight, return_exceptions=True)

    def _release(self, key: RouteKey, claimed: list[Claimed]) -> None:
        """Claimed but not sent (the target was put on hold meanwhile): pending again, no attempt spent."""
        channel, _ = key
        why = self._paused.get(key) or self._paused.get((channel, EVERY_TARGET)) or "held: the platform asked to wait"
        release = Result(DeliveryStatus.pending, why, token_refused=True)
        db.finish_many(self.store, [(each.message.delivery_id, release, self.clock()) for each in claimed], self.actor)

    def _concurrency(self, route: Route) -> int:
        """Sends in flight at once to this target: the spec's, or one where each post must see the last."""
        pacing = self.plan.pacing.get(route.channel)
        if pacing is not None and (pacing.max_per_day or pacing.min_gap):
            return 1
        if not route.to_platform:
            return OUTBOX_BATCH  # files on this machine: no platform to pace
        rate = self.routing.rates.get(route.channel)
        return rate.concurrency if rate is not None else 1

    async def _slots(self, route: Route, room: int) -> list[Slot]:
        """One slot (waiting for it), then as many more as are free now, up to `room`."""
        if not route.to_platform:
            return [Slot() for _ in range(room)]
        first = asyncio.ensure_future(self.pacer.wait(route.channel, route.target))
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({first, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not first.done():  # stopped while waiting for the window (a minute, into a Telegram group)
            first.cancel()
            return []
        slots = [first.result()]
        # Slots that come within CLAIM_AHEAD join this claim: at hundreds a second, one claim
        # (a transaction) per send would be the limit, not the platform.
        # Only where several slots come in that time: at 30/s the wait would only delay each send.
        rate = self.routing.rates.get(route.channel)
        loop = asyncio.get_running_loop()
        gathering = rate is not None and rate.per_second * CLAIM_AHEAD >= 2
        gather_until = loop.time() + (CLAIM_AHEAD if gathering else 0.0)
        while len(slots) < room and not self._stop.is_set():
            more = self.pacer.free(route.channel, route.target)
            if more is None:
                left = gather_until - loop.time()
                if left <= 0:
                    break
                try:
                    more = await asyncio.wait_for(self.pacer.wait(route.channel, route.target), left)
                except TimeoutError:
                    break
            slots.append(more)
        return slots

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
        if room <= 0:
            return []
        if self._budget is not None:
            room = min(room, self._budget)
            if room <= 0:
                return []
        markup = self.routing.markups[route.channel]
        claimed = await asyncio.to_thread(
            db.claim,
            self.store,
            route.channel,
            None if route.target == EVERY_TARGET else [route.target],
            route.transport.name,
            markup,
            self.clock(),
            room,
            self.actor,
        )
        if self._budget is not None:
            self._budget -= len(claimed)
        return claimed

    async def _send(self, route: Route, claimed: Claimed, slot: Slot) -> None:
        message = claimed.message
        slot.stamp()
        started = asyncio.get_running_loop().time()
        try:
            sent = await route.transport.send(message)
            result = _result(route.transport, None, sent)
        except Exception as exc:
            if not isinstance(exc, Transient | AuthFailed | RecipientGone | Rejected | MaybeSent):
                log.exception("delivery %s: unexpected error from %s", message.delivery_id, route.transport.name)
            result = _result(route.transport, exc)
        finally:
            # The platform counted the send on arrival: no later than the answer less the fastest round trip.
            answered = asyncio.get_running_loop().time()
            self.trips.seen(route.channel, answered - started)
            slot.stamp(answered - self.trips.fastest(route.channel))
        now = self.clock()
        key = (route.channel, EVERY_TARGET if result.hold == EVERY_TARGET else route.target)
        if result.hold is not None:  # before the outcome is stored: the worker must not claim the row again
            if result.token_refused:
                self._paused[key] = self.report.paused[key] = result.error or "token refused"
            else:
                self._holds[key] = now + timedelta(seconds=result.retry_after or 60)
                self.report.waiting[key] = result.retry_after or 60.0
        status = await self._recorder.record(message.delivery_id, result, now)
        self._touched.add(message.campaign_id)
        if result.token_refused:
            self._unsaved.add(key)
            try:
                await asyncio.to_thread(db.pause, self.store, *key, self._paused[key], now, self.actor)
            finally:
                self._unsaved.discard(key)
        else:
            self.report.count(status)

    async def _sleep_until(self, moment: datetime) -> None:
        seconds = min(max((moment - self.clock()).total_seconds(), 0.05), 60.0)  # re-check at least each minute
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def _settle(self) -> None:
        touched, self._touched = sorted(self._touched), set()
        # A batch a call: one thread busy for long (a broadcast settles thousands) starves the loop of the GIL.
        for start in range(0, len(touched), SETTLE_BATCH):
            await asyncio.to_thread(db.settle, self.store, touched[start : start + SETTLE_BATCH], self.actor)

    async def _finish_run(self) -> None:
        await self._settle()
        for key, count in (await asyncio.to_thread(db.pending_counts, self.store)).items():
            if self._route(key) is None:
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
