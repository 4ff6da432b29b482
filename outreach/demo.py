"""`outreach demo`: the whole pipeline, offline, in a folder of its own.

Bundled sample feeds stand in for the portal, emulators on loopback for Facebook
and Telegram (reached by the real client libraries), and an HTTP client for
people tapping links. Nothing touches the network or the user's own database.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from rich.console import Console
from rich.panel import Panel
from sqlalchemy import select

from outreach import config
from outreach.campaigns import CampaignRequest, approve_campaign, create_campaign, queued_count
from outreach.channel import ChannelLimits
from outreach.channel_config import OutboxSettings
from outreach.db import Access, Store
from outreach.dispatch import plan_for, send_once
from outreach.ingest import poll_sources
from outreach.lifecycle import Actor
from outreach.links import short_url
from outreach.models import CampaignStatus, Delivery, Item
from outreach.packaged import SAMPLES
from outreach.render import Renderer
from outreach.report_data import build_report_data
from outreach.report_html import render_html
from outreach.report_period import parse_period
from outreach.report_text import print_report_data
from outreach.routing import Routing
from outreach.sandbox.platforms import EmulatedPlatforms, TokenVariable
from outreach.sandbox.telegram import TelegramMessage, html_text
from outreach.sandbox.telegram_user import ChatUser
from outreach.serve import BackgroundServer
from outreach.tables import fitted_table
from outreach.text import plural
from outreach.web import create_app

SAMPLE_DOMAIN = "quangngai.gov.vn"
BROWSER = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36"
PREVIEWER = "TelegramBot (like TwitterBot)"
TEMP_PREFIX = "outreach-demo-"
MARKER = ".outreach-demo"
STALE_AFTER = 60.0  # seconds; a whole demo takes a few
CREATOR = Actor("demo", "Nguyễn Thị Lan")  # communications staff
APPROVER = Actor("demo", "Trần Văn Minh")  # the office's deputy head
SUBSCRIBER_ID, SUBSCRIBER_NAME = 555_010_101, "Chị Hoa, kế toán Công ty TNHH Dung Quất"  # a business, on the bot
SUBSCRIBED = ("Thuế", "Đầu tư", "Thủ tục hành chính")  # the topics she taps
TAX_CODE = "0100233488"


def demo_settings(settings: config.Settings, folder: Path, tracker_url: str) -> config.Settings:
    """The user's topics, channels and templates, over sample sources and a local store."""
    schedule = settings.schedule
    sources = [
        config.Source(name="sample-portal-vi", url=(SAMPLES / "portal-vi.rss").as_uri(), language="vi"),
        config.Source(name="sample-portal-en", url=(SAMPLES / "portal-en.atom").as_uri(), language="en"),
        # A section with no feed, read from its listing page with CSS selectors (the articles are not fetched:
        # the demo is offline).
        config.Source(
            name="sample-portal-notices",
            url=(SAMPLES / "portal-thong-bao.html").as_uri(),
            kind="html",
            article_metadata=False,
            listing=config.Listing(
                item="div.asset-abstract",
                link="h3.asset-title a",
                date=".metadata-publish-date",
                summary=".asset-summary",
                image="img",
                next=".pager a",
            ),
        ),
    ]
    tracker = schedule.tracker.model_copy(
        update={
            "public_url": tracker_url,
            "allowed_domains": sorted({*schedule.tracker.allowed_domains, SAMPLE_DOMAIN}),
        }
    )
    # The emulators take posts at any hour: the user's windows, caps and gaps apply in real use only.
    unpaced: dict[str, object] = {"windows": [], "max_per_day": None, "min_gap_minutes": None, "skip_holidays": False}
    platforms = {name: block.model_copy(update=unpaced) for name, block in schedule.channels.platforms.items()}
    channels = schedule.channels.model_copy(
        update={"outbox": OutboxSettings(dir=folder / "outbox"), "platforms": platforms}
    )
    return replace(
        settings,
        schedule=schedule.model_copy(update={"sources": sources, "tracker": tracker, "channels": channels}),
        database_url=f"sqlite:///{folder / 'outreach.db'}",
        secrets=config.Secrets(),  # the user's tokens are not the demo's business
    )


def pick_items(store: Store, per_language: dict[str, int]) -> list[Item]:
    """The newest items whose topics no earlier pick covers, up to a count per language."""
    with store.sessions() as session:
        items = list(session.scalars(select(Item).order_by(Item.published_at.desc())))
    chosen: list[Item] = []
    for language, wanted in per_language.items():
        covered: set[str] = set()
        for item in (i for i in items if i.language == language):
            if covered.intersection(item.topics):
                continue
            chosen.append(item)
            covered.update(item.topics)
            wanted -= 1  # noqa: PLW2901 - counts down this language's quota
            if not wanted:
                break
    return chosen


class DemoFolderError(ValueError):
    """The folder given for the demo holds something else: it is not touched."""


def prepare_folder(folder: Path | None) -> tuple[Path, int]:
    """The folder to work in, and how many earlier temporary demo folders were removed.

    Without a folder, a new temporary one is made and the earlier ones are
    removed, so running the demo again and again leaves one behind. A given
    folder must be new, empty, or an earlier demo's (reset).
    """
    removed = 0
    if folder is None:
        removed = _remove_earlier(Path(tempfile.gettempdir()))
        folder = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    folder = folder.resolve()
    if folder.is_dir() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise DemoFolderError(f"{folder} is not empty and not an earlier demo's folder: give a new or empty one")
        for part in ("outreach.db", "outreach.db-wal", "outreach.db-shm", "outbox"):
            target = folder / part
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by `outreach demo`; safe to delete\n", encoding="utf-8")
    return folder, removed


def _remove_earlier(temp: Path) -> int:
    """Remove our earlier demo folders: marked by MARKER, ours, and not just made.

    A marker younger than STALE_AFTER may belong to a demo running right now.
    """
    removed = 0
    for earlier in temp.glob(f"{TEMP_PREFIX}*"):
        marker = earlier / MARKER
        try:
            info = marker.stat()
        except OSError:
            continue  # not a demo's folder, or not ours to look into
        if info.st_uid != os.getuid() or time.time() - info.st_mtime < STALE_AFTER:
            continue
        shutil.rmtree(earlier, ignore_errors=True)
        removed += not earlier.exists()
    return removed


@dataclass(frozen=True)
class Wiring:
    """What the CLI, which knows the platforms, hands the demo."""

    limits: Mapping[str, ChannelLimits]  # each platform's, for rendering
    connect: Callable[[config.Settings], Routing]  # each target's transport
    token_variable: TokenVariable  # where each target's token is read from
    # Runs the bot (its real Application) while the block runs; None: no bot in this install.
    run_bot: Callable[[config.Settings, Store], AbstractContextManager[None]] | None = None


def run_demo(
    settings: config.Settings, wiring: Wiring, out: Console, folder: Path, removed: int = 0, keep: bool = True
) -> None:
    """Ingest, campaign, render, deliver, click and report in a folder from `prepare_folder`.

    Facebook and Telegram are emulators on loopback, reached by the real client
    libraries through the production adapters; one target has no token and shows
    the outbox standing in.
    """
    out.rule("[b]outreach demo")
    if removed:
        out.print(f"Removed {plural(removed, 'earlier demo folder')} from {tempfile.gettempdir()}.")
    out.print(
        f"Working in {folder}: a SQLite store, outbox files, and Facebook and Telegram emulated on this machine; "
        "nothing leaves it.",
        soft_wrap=True,
    )
    store = Store.open(f"sqlite:///{folder / 'outreach.db'}", Access.create)
    # The tracker needs only the domains it may lead to; its public address comes once it listens.
    tracking = demo_settings(settings, folder, "http://127.0.0.1").schedule.tracker
    try:
        with (
            store.translated_errors(),
            BackgroundServer(create_app(store, tracking, folder / "spool")) as server,
            EmulatedPlatforms() as platforms,
        ):
            local = platforms.point(demo_settings(settings, folder, server.url), wiring.token_variable)
            _ingest(store, local, out)
            _subscribe(store, local, wiring, platforms, out)
            _campaigns(store, local, wiring, out)
            _deliver(store, local, wiring.connect(local), platforms, out)
            _click(store, local, out, server.url)
        out.rule("[b]report")
        with store.translated_errors(), store.sessions() as session:
            data = build_report_data(session, settings, parse_period(None, None, settings.zone), ["channel"], "vi")
        print_report_data(out, data)
        html = folder / "report.html"
        html.write_text(render_html(data, "vi", settings.templates_dir), encoding="utf-8")
    finally:
        store.close()
    out.rule()
    out.print(f"HTML report (Vietnamese, prints on A4): {html}", soft_wrap=True)
    command = sys.argv[0] if sys.argv[0].endswith("outreach") else "outreach"
    out.print(f"Database: {folder / 'outreach.db'}", soft_wrap=True)
    out.print(f"Outbox:   {folder / 'outbox'}", soft_wrap=True)
    out.print(
        f"Look again with: {command} --config {settings.config_path.resolve()} --db sqlite:///{folder / 'outreach.db'} report",
        soft_wrap=True,
    )
    if keep:
        out.print(f"Clean up with:   rm -r {folder}", soft_wrap=True)
    else:
        out.print(f"The next `{Path(command).name} demo` removes this folder; to keep it, use --dir.", soft_wrap=True)


def _ingest(store: Store, settings: config.Settings, out: Console) -> None:
    out.rule("1. ingest the portal's feeds and a listing page")
    results = poll_sources(store, settings.schedule)
    for r in results:
        problem = f" [red]({r.error})[/red]" if r.error else ""
        kind = settings.schedule.source(r.source).kind
        where = {"feed": "in the feed", "html": "on the listing page", "sitemap": "new in the sitemap"}[kind]
        out.print(f"  {r.source}: {plural(r.new, 'new item')} of {r.seen} {where}{problem}")
    again = poll_sources(store, settings.schedule)
    out.print(f"  polled again: {sum(r.new for r in again)} new (duplicates are recognised)")


def _subscribe(
    store: Store, settings: config.Settings, wiring: Wiring, platforms: EmulatedPlatforms, out: Console
) -> None:
    """A scripted business talks to the real bot through the emulator: subscribes, registers, searches."""
    enabled = settings.schedule.channels.enabled()
    if wiring.run_bot is None or not any(block.audience == "subscribers" for block in enabled.values()):
        return
    out.rule("2. a business subscribes to the Telegram bot (a scripted user, the real bot, the emulated Telegram)")
    user = ChatUser(platforms.telegram, SUBSCRIBER_ID, "vi")
    said: list[tuple[str, TelegramMessage]] = []
    with wiring.run_bot(settings, store):
        said.append(("/start", welcome := user.says("/start")))
        topics = user.tap(welcome, "Tiếng Việt")
        said.append(("🇻🇳 Tiếng Việt", topics))
        for label in SUBSCRIBED:
            topics = user.tap(topics, label)
        said.append((f"✅ {', '.join(SUBSCRIBED)}, Xong", user.tap(topics, "Xong")))
        user.says("/business")
        said.append((TAX_CODE, consent := user.says(TAX_CODE)))
        said.append(("Đồng ý", user.tap(consent, "Đồng ý")))
        said.append(("/search hoa don dien tu", user.says("/search hoa don dien tu")))
    for words, answer in said:
        out.print(Panel(html_text(answer.text or ""), title=f"{SUBSCRIBER_NAME}: {words}", expand=False), markup=False)


def _campaigns(store: Store, settings: config.Settings, wiring: Wiring, out: Console) -> None:
    out.rule("3. campaigns: one per business topic, plus English news for investors")
    out.print(f"  created by {CREATOR.name}, approved by {APPROVER.name} (two people, as schedules.yaml requires)")
    renderer = Renderer(settings.schedule, wiring.limits, settings.templates_dir)
    table = fitted_table("id", "lang", "topics", "posts", "title", wide="title", wrap={"topics"}, right={"id", "posts"})
    for item in pick_items(store, {"vi": 5, "en": 2}):
        with store.sessions.begin() as session:
            made = create_campaign(session, settings, renderer, CampaignRequest(item_ids=(item.id,)), CREATOR)
            if made.status is CampaignStatus.draft:
                approve_campaign(session, settings, renderer, made.id, APPROVER)
            posts = queued_count(session, made.id)
            table.add_row(str(made.id), item.language, ", ".join(item.topics), str(posts), item.title)
    out.print(table)


def _deliver(
    store: Store, settings: config.Settings, routing: Routing, platforms: EmulatedPlatforms, out: Console
) -> None:
    out.rule("4. deliver: Facebook, the Telegram channel and the bot through the emulators, one target to the outbox")
    for route in routing:
        out.print(f"  {route}", soft_wrap=True, markup=False)
    report = asyncio.run(send_once(store, routing, plan=plan_for(settings)))
    out.print(f"  sent {report.sent}, failed {report.failed}")
    shown = platforms.first_posts()
    with store.sessions() as session:
        parked = session.scalars(select(Delivery).where(Delivery.transport == "outbox").order_by(Delivery.id)).first()
    if parked is not None:
        shown.append((f"{parked.platform_id} → {parked.target} (no token: the outbox)", parked.text))
    for title, text in shown:
        out.print(Panel(text, title=title, expand=False), markup=False)


def _click(store: Store, settings: config.Settings, out: Console, base_url: str) -> None:
    out.rule("5. people tap the links (and a chat app fetches a preview)")
    with store.sessions() as session:
        deliveries = list(session.scalars(select(Delivery).order_by(Delivery.id)))
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        for n, delivery in enumerate(deliveries):
            url = short_url(base_url, delivery.link_code or "")
            taps = 1 + n % 3  # some posts do better than others
            for _ in range(taps):
                answer = client.get(url, headers={"User-Agent": BROWSER})
                assert answer.status_code == 302, f"tracker answered {answer.status_code} for {url}"
            client.get(url, headers={"User-Agent": PREVIEWER})
            if n == 0:
                out.print(f"  {url}\n  → 302 {answer.headers['location']}", soft_wrap=True)
        client.head(url)
    out.print(f"  followed {plural(len(deliveries), 'tracked link')}; previews and HEAD requests are not visits")
