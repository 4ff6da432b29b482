"""Broadcast speed: 10,000 subscribers at the Bot API's allowed rate, through the real stack (DESIGN §8).

The Telegram emulator runs in a process of its own (as Telegram is not in ours)
and allows R messages per second per bot: one more in any sliding second gets
429 with `retry_after`, which holds the whole bot as on Telegram. Here, in a
fresh SQLite file, N subscribers exist and one item campaign to the bot is
approved (rendered once, a link per subscriber); then `Dispatcher.serve` (what
`outreach run` runs) sends through `TelegramBotChannel` and python-telegram-bot.

Measured per R: the time to queue the campaign; delivered per second from the
dispatcher's start to the last message the emulator accepted, as a ratio of R
(target >= 0.95); 429s seen; subscribers who got nothing (lost) and messages
beyond one per subscriber (duplicates), both must be 0.

Run: .venv/bin/python bench/broadcast.py [--subscribers 10000] [--rates 500,30]
(the defaults; R = 30 takes about 6 minutes, R = 500 about 25 s).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import yaml
from sqlalchemy import func, insert, select

from channels import LIMITS, SETTINGS_MODELS, build_routing
from outreach.campaigns import CampaignRequest, create_campaign
from outreach.config import load_settings
from outreach.db import Access, Store
from outreach.dispatch import Dispatcher, plan_for
from outreach.lifecycle import Actor
from outreach.models import Delivery, DeliveryStatus, Item, Source, Subscriber
from outreach.packaged import STARTER_CONFIG
from outreach.render import Renderer

TOKEN = "7000000001:AAbenchBroadcastTokenForTheEmulatorOnly"
FIRST_CHAT = 900_000_000


def platform(rate: float, subscribers: int, line: Connection) -> None:
    """The emulator's process: serve until asked for what it saw, then answer and stop."""
    from outreach.sandbox import TelegramEmulator

    stamps: list[float] = []

    def clock() -> float:  # the emulator stamps each accepted message with it: keep the last, to the µs
        now = time.time()
        stamps.append(now)
        return now

    with TelegramEmulator(rate_per_bot=rate, clock=clock) as emulator:
        emulator.add_bot(TOKEN)
        for chat in range(FIRST_CHAT, FIRST_CHAT + subscribers):
            emulator.add_chat(chat, kind="private", title=f"Doanh nghiệp {chat}")
        line.send(emulator.url)
        line.recv()  # "report"
        per_chat = Counter(message.chat_id for message in emulator.messages)
        line.send((dict(per_chat), emulator.flood_refusals, stamps[-1] if stamps else 0.0))


def run(rate: float, subscribers: int, concurrency: int) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=platform, args=(rate, subscribers, theirs), daemon=True)
    child.start()
    api_url = ours.recv()
    folder = Path(tempfile.mkdtemp(prefix="outreach-bench-broadcast-"))
    config = yaml.safe_load(STARTER_CONFIG.read_text(encoding="utf-8"))
    config["sources"] = []
    config["require_approval"] = False
    config["channels"] = {
        "telegram_bot": {
            "api_url": api_url,
            "rate": {"per_second": rate, "burst": max(1, int(rate)), "concurrency": concurrency},
        },
        "outbox": {"dir": str(folder / "outbox")},
    }
    (folder / "schedules.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    settings = load_settings(
        folder / "schedules.yaml",
        f"sqlite:///{folder / 'bench.db'}",
        None,
        env={"OUTREACH_TELEGRAM_TOKEN": TOKEN},
        channel_models=SETTINGS_MODELS,
    )
    store = Store.open(settings.database_url, Access.create)
    now = datetime.now(UTC)
    with store.sessions.begin() as session:
        source = Source(name="portal-news", url="https://quangngai.gov.vn/rss", language="vi")
        session.add(source)
        session.flush()
        item = Item(
            source_id=source.id,
            guid="bench-1",
            url="https://quangngai.gov.vn/tin-tuc/hoan-thue-gtgt.html",
            title="Hướng dẫn hoàn thuế giá trị gia tăng cho doanh nghiệp",
            summary="Cục Thuế tỉnh Quảng Ngãi hướng dẫn doanh nghiệp thủ tục hoàn thuế.",
            published_at=now,
            language="vi",
            topics=["tax"],
        )
        session.add(item)
        rows = [
            {
                "channel": "telegram_bot",
                "chat_id": str(chat),
                "language": "vi",
                "topics": ["tax"],
                "mode": "instant",
                "status": "active",
                "consent": False,
                "created_at": now,
                "updated_at": now,
            }
            for chat in range(FIRST_CHAT, FIRST_CHAT + subscribers)
        ]
        session.execute(insert(Subscriber), rows)
    started = time.perf_counter()
    with store.sessions.begin() as session:
        request = CampaignRequest(item_ids=(item.id,), channels=("telegram_bot",))
        create_campaign(session, settings, Renderer(settings.schedule, LIMITS), request, Actor("bench"))
    queued = time.perf_counter() - started

    async def broadcast() -> float:
        stop = asyncio.Event()
        routing = build_routing(settings)
        dispatcher = Dispatcher(store, routing, plan_for(settings), Actor("bench"))
        began = time.time()
        serving = asyncio.create_task(dispatcher.serve(stop, poll=0.2))
        while True:
            await asyncio.sleep(0.25)
            done = await asyncio.to_thread(_finished, store)
            if done >= subscribers:
                break
        stop.set()
        await serving
        await routing.close()
        return began

    cpu = time.process_time()
    began = asyncio.run(broadcast())
    cpu = time.process_time() - cpu
    ours.send("report")
    per_chat, refusals, last = ours.recv()
    child.join(10)
    store.close()
    delivered = sum(per_chat.values())
    lost = subscribers - len(per_chat)
    duplicates = delivered - len(per_chat)
    seconds = last - began
    return {
        "rate": rate,
        "queued_s": queued,
        "seconds": seconds,
        "per_second": len(per_chat) / seconds,
        "ratio": len(per_chat) / seconds / rate,
        "refusals": refusals,
        "lost": lost,
        "duplicates": duplicates,
        "cpu": cpu / seconds,
    }


def _finished(store: Store) -> int:
    with store.sessions() as session:
        return int(
            session.scalar(select(func.count()).select_from(Delivery).where(Delivery.status == DeliveryStatus.sent))
            or 0
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--rates", default="500,30", help="messages/s the emulator allows, comma-separated")
    parser.add_argument("--concurrency", type=int, default=32, help="sends in flight (rate x latency)")
    args = parser.parse_args()
    print(f"broadcast of 1 item to {args.subscribers:,} subscribers through python-telegram-bot and the emulator")
    for rate in (float(r) for r in args.rates.split(",")):
        found = run(rate, args.subscribers, args.concurrency)
        verdict = "met" if found["ratio"] >= 0.95 and not found["lost"] and not found["duplicates"] else "NOT met"
        print(
            f"R = {rate:g}/s: queued in {found['queued_s']:.2f} s; delivered {found['per_second']:.1f}/s "
            f"over {found['seconds']:.1f} s = {found['ratio']:.3f} of R; 429s seen {found['refusals']}; "
            f"lost {found['lost']}, duplicates {found['duplicates']} (target >= 0.95, 0, 0: {verdict}); "
            f"the dispatcher's process used {found['cpu']:.2f} of a core"
        )


if __name__ == "__main__":
    main()
