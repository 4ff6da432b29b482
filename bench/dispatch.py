"""Dispatch speed: a broadcast at a loopback platform's allowed rate, and a page post behind it (DESIGN §8).

A loopback channel stands in for a platform that takes R messages per second
with 100 ms latency: each send records when it arrived, then awaits 100 ms. A
send that would be the (R+1)th within any sliding 1 s window counts as a
violation (the platform would answer 429 and pause the whole token). One
"broadcast" target (its `Rate` is R in any 1 s, twice the sends in flight that
the latency needs) has N scheduled deliveries in a fresh SQLite file; `Dispatcher.serve`
sends them. About 1 s into the broadcast a one-delivery campaign for a "page"
target is committed; a worker per target means it must not wait for the broadcast.

Measured per R: delivered/s over the whole run (serve start to the last message
accepted, so start-up and the database work count) as a ratio of R (target
>= 0.95), violations (must be 0), lost or duplicated sends (must be 0), and the
page post's latency from its commit to its send (target <= 2 s; `serve` polls
each 1 s, so about 1 s of it is the poll).

Run: .venv/bin/python bench/dispatch.py [--deliveries 5000] [--rates 30,300]
(the defaults; 5,000 at 30/s takes about 3 minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, insert, select

from outreach.channel import Channel, Markup, Rate, RenderedMessage, Sent
from outreach.db import Access, Store
from outreach.dispatch import Dispatcher
from outreach.models import Campaign, CampaignStatus, Delivery, DeliveryStatus, Link
from outreach.routing import Route, Routing

LATENCY = 0.1  # seconds the platform takes to answer each send
BROADCAST, PAGE = "broadcast", "page"
BROADCAST_TARGET, PAGE_TARGET = "@bench_channel", "bench-page"
PAGE_RATE = Rate(per_second=1, burst=1, per_target_per_second=1, per_target_burst=1, concurrency=1)
PORTAL = "https://quangngai.gov.vn/tin-tuc/hoan-thue-18301.html"


@dataclass
class Loopback:
    """A platform on this machine: R messages per second allowed, `LATENCY` per answer."""

    name: str
    allowed: float  # messages per second over any sliding 1 s window
    idempotent: bool = False
    where: str = "loopback (this process)"
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, delivery id)
    violations: int = 0
    _window: deque[float] = field(default_factory=deque)
    _watchers: list[asyncio.Event] = field(default_factory=list)

    async def send(self, message: RenderedMessage) -> Sent:
        """Accept one message (counting it against the rate), answer after the latency."""
        now = time.monotonic()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= self.allowed:
            self.violations += 1  # the platform would answer 429 here
        self._window.append(now)
        self.arrivals.append((now, message.delivery_id))
        for watcher in self._watchers:
            watcher.set()
        await asyncio.sleep(LATENCY)
        return Sent(platform_id=f"{self.name}-{message.delivery_id}")

    async def check(self, target: str) -> str:
        """Every target exists here."""
        return target

    async def close(self) -> None:
        """Nothing to release."""

    def watch(self) -> asyncio.Event:
        """An event set on each arrival."""
        event = asyncio.Event()
        self._watchers.append(event)
        return event


def routing_for(broadcast: Loopback, page: Loopback, rate: float) -> Routing:
    """The broadcast target at R in any 1 s window, the page at its own modest rate."""
    broadcast_rate = Rate(
        per_second=rate,
        burst=round(rate),
        per_target_per_second=rate,
        per_target_burst=round(rate),
        concurrency=2 * math.ceil(rate * LATENCY) + 2,
    )
    channels: dict[str, Channel] = {BROADCAST: broadcast, PAGE: page}
    routes = {
        (BROADCAST, BROADCAST_TARGET): Route(BROADCAST, BROADCAST_TARGET, broadcast, "bench", to_platform=True),
        (PAGE, PAGE_TARGET): Route(PAGE, PAGE_TARGET, page, "bench", to_platform=True),
    }
    markups: dict[str, Markup] = {BROADCAST: "html", PAGE: "plain"}
    return Routing(
        routes=routes,
        markups=markups,
        rates={BROADCAST: broadcast_rate, PAGE: PAGE_RATE},
        transports=list(channels.values()),
    )


def queue_broadcast(store: Store, count: int) -> None:
    """`count` scheduled campaigns with one pending broadcast delivery and one link each (bulk)."""
    campaigns, links, deliveries = [], [], []
    for n in range(1, count + 1):
        code = f"Bench{n:06d}"
        campaigns.append(
            {
                "id": n,
                "title": f"Tin {n}",
                "channels": [BROADCAST],
                "language": "vi",
                "created_by": "bench",
                "status": CampaignStatus.scheduled,
            }
        )
        links.append({"code": code, "destination": PORTAL, "campaign_id": n, "channel": BROADCAST})
        deliveries.append(
            {
                "campaign_id": n,
                "channel": BROADCAST,
                "target": BROADCAST_TARGET,
                "language": "vi",
                "text": f'📢 <b>Tin số {n}</b> <a href="https://go.quangngai.gov.vn/r/{code}">Xem</a>',
                "link_code": code,
            }
        )
    with store.sessions.begin() as session:
        session.execute(insert(Campaign), campaigns)
        session.execute(insert(Link), links)
        session.execute(insert(Delivery), deliveries)


def queue_page_post(store: Store) -> tuple[int, float]:
    """One scheduled campaign with one page delivery; its delivery id and when it was committed."""
    with store.sessions.begin() as session:
        campaign = Campaign(
            title="Thông báo khẩn",
            channels=[PAGE],
            language="vi",
            created_by="bench",
            status=CampaignStatus.scheduled,
        )
        session.add(campaign)
        session.flush()
        delivery = Delivery(
            campaign_id=campaign.id, channel=PAGE, target=PAGE_TARGET, language="vi", text="Thông báo khẩn"
        )
        session.add(delivery)
        session.flush()
        delivery_id = delivery.id
    return delivery_id, time.monotonic()


@dataclass(frozen=True)
class Outcome:
    """One run's figures."""

    rate: float
    count: int
    seconds: float  # serve start to the last broadcast message accepted
    violations: int
    page_latency: float | None  # commit to send; None when it never went
    duplicates: int
    stored_sent: int  # deliveries `sent` in the database after the run (count + 1 expected)
    finished: bool

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


async def measure(folder: Path, rate: float, count: int) -> Outcome:
    """Broadcast `count` deliveries at `rate`/s through `Dispatcher.serve`, a page post 1 s in."""
    store = Store.open(f"sqlite:///{folder / f'dispatch-{rate:g}.db'}", Access.create)
    try:
        await asyncio.to_thread(queue_broadcast, store, count)
        broadcast, page = Loopback(BROADCAST, rate), Loopback(PAGE, PAGE_RATE.per_second)
        broadcast_arrived, page_arrived = broadcast.watch(), page.watch()
        dispatcher = Dispatcher(store, routing_for(broadcast, page, rate))
        stop = asyncio.Event()
        started = time.monotonic()
        serving = asyncio.create_task(dispatcher.serve(stop))
        deadline = started + count / rate * 4 + 60  # a stuck dispatcher ends the run, reported unfinished

        async def until(condition: Callable[[], object], event: asyncio.Event) -> bool:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0 or serving.done():
                    return False
                event.clear()
                if condition():
                    break
                try:
                    await asyncio.wait_for(event.wait(), timeout=min(left, 1.0))
                except TimeoutError:
                    continue
            return True

        await until(lambda: broadcast.arrivals, broadcast_arrived)
        await asyncio.sleep(1.0)
        page_id, committed = await asyncio.to_thread(queue_page_post, store)
        done = await until(lambda: len(broadcast.arrivals) >= count, broadcast_arrived)
        done = await until(lambda: page.arrivals, page_arrived) and done
        await asyncio.sleep(LATENCY)  # the last answers come back and are recorded
        stop.set()
        await serving
        await dispatcher.routing.close()
        last = max((at for at, _ in broadcast.arrivals), default=started)
        page_at = next((at for at, delivery in page.arrivals if delivery == page_id), None)
        seen = Counter(delivery for _, delivery in broadcast.arrivals + page.arrivals)
        with store.sessions() as session:
            stored_sent = session.scalar(
                select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.sent)
            )
        return Outcome(
            rate=rate,
            count=len(broadcast.arrivals),
            seconds=last + LATENCY - started,
            violations=broadcast.violations + page.violations,
            page_latency=None if page_at is None else page_at - committed,
            duplicates=sum(times - 1 for times in seen.values()),
            stored_sent=int(stored_sent or 0),
            finished=done,
        )
    finally:
        store.close()


def report(outcome: Outcome, count: int) -> None:
    ratio = outcome.per_second / outcome.rate
    latency = outcome.page_latency
    print(f"R = {outcome.rate:g}/s, {count:,} deliveries, {LATENCY * 1000:.0f} ms latency")
    print(f"  sent {outcome.count:,} in {outcome.seconds:.2f} s: {outcome.per_second:.1f}/s")
    print(f"  ratio to R: {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")
    print(f"  violations (over R in a 1 s window): {outcome.violations} (must be 0)")
    print(
        f"  stored as sent: {outcome.stored_sent:,} of {count + 1:,}; duplicates: {outcome.duplicates}"
        + ("" if outcome.finished else "  (UNFINISHED: stopped at the deadline)")
    )
    shown = "never sent" if latency is None else f"{latency:.2f} s"
    met = latency is not None and latency <= 2.0
    print(f"  page post, commit to send: {shown} (target <= 2 s: {'met' if met else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--deliveries", type=int, default=5_000, help="broadcast deliveries (default 5000)")
    parser.add_argument("--rates", default="30,300", help="allowed rates per second, comma-separated (default 30,300)")
    args = parser.parse_args()
    rates = [float(each) for each in args.rates.split(",") if each.strip()]
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    for rate in rates:
        report(asyncio.run(measure(folder, rate, args.deliveries)), args.deliveries)


if __name__ == "__main__":
    main()
