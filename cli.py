"""`outreach` command line: parses, calls one `outreach` function, prints.

Heavy imports happen inside commands so `outreach --help` stays fast.
Exit status: 0 ok, 1 the work failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from outreach.config import Settings
    from outreach.db import Store


class Context:
    """What the global options chose; settings and store are built on first use."""

    def __init__(self, config: Path, db: str | None, templates: Path | None) -> None:
        self.config_path = config
        self.db = db
        self.templates = templates
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from outreach.config import load_settings

            self._settings = load_settings(self.config_path, self.db, self.templates)
        return self._settings

    def store(self) -> Store:
        """The database, migrated to the newest schema."""
        from outreach.db import Store

        return Store.open(self.settings.database_url)


def console() -> Console:
    from rich.console import Console

    return Console()


class OutreachGroup(click.Group):
    """Turns the project's own errors into a clear message and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        from outreach.campaigns import CampaignError
        from outreach.config import ConfigError
        from outreach.render import RenderError

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"config error: {problem}", err=True)
            ctx.exit(2)
        except (CampaignError, RenderError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)


pass_ctx = click.make_pass_decorator(Context)


@click.group(cls=OutreachGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", envvar="OUTREACH_CONFIG", default="schedules.yaml", show_default=True, type=click.Path(dir_okay=False, path_type=Path), help="Config file (env OUTREACH_CONFIG).")
@click.option("--db", envvar="OUTREACH_DATABASE_URL", help="Database URL (env OUTREACH_DATABASE_URL) [default: sqlite:///outreach.db].")
@click.option("--templates", envvar="OUTREACH_TEMPLATES", type=click.Path(file_okay=False, path_type=Path), help="Folder of templates that override the built-in ones.")
@click.version_option(package_name="outreach")
@click.pass_context
def main(ctx: click.Context, config: Path, db: str | None, templates: Path | None) -> None:
    """Push portal news to Facebook and Telegram, and count who comes back."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request log lines carry tokens
    ctx.obj = Context(config, db, templates)


@main.command()
@pass_ctx
def init(obj: Context) -> None:
    """Create or upgrade the database schema."""
    from outreach.db import current_revision

    store = obj.store()
    click.echo(f"database {obj.settings.database_url} is at schema revision {current_revision(store.engine)}")
    store.close()


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@pass_ctx
def config_check(obj: Context) -> None:
    """Validate the config and say which transport each channel uses."""
    from channels import build_channels

    settings = obj.settings
    schedule = settings.schedule
    click.echo(f"{settings.config_path}: ok: {len(schedule.topics)} topics, {len(schedule.sources)} sources, time zone {schedule.timezone}")
    for name, transport in build_channels(settings).items():
        click.echo(f"  channel {name}: sends through {transport.name}")


@main.group()
def sources() -> None:
    """Portal feeds: poll them, see how they are doing."""


@sources.command("poll")
@click.argument("names", nargs=-1)
@pass_ctx
def sources_poll(obj: Context, names: tuple[str, ...]) -> None:
    """Fetch feeds now (all, or the NAMES given) and store new items."""
    from rich.table import Table

    from outreach.ingest import poll_sources

    unknown = [n for n in names if n not in {s.name for s in obj.settings.schedule.sources}]
    if unknown:
        raise click.BadParameter(f"unknown source(s): {', '.join(unknown)}", param_hint="NAMES")
    store = obj.store()
    results = poll_sources(store, obj.settings.schedule, names)
    store.close()
    table = Table("source", "new", "in feed", "status")
    for r in results:
        status = "not modified" if r.not_modified else (f"[red]{r.error}[/red]" if r.error else "ok")
        table.add_row(r.source, str(r.new), str(r.seen), status)
    console().print(table)
    if any(r.error and not r.seen for r in results):
        raise SystemExit(1)


@sources.command("list")
@pass_ctx
def sources_list(obj: Context) -> None:
    """Configured sources and the outcome of their last poll."""
    from rich.table import Table
    from sqlalchemy import select

    from outreach.models import Source

    store = obj.store()
    with store.sessions() as session:
        rows = {s.name: s for s in session.scalars(select(Source))}
    store.close()
    table = Table("source", "language", "every", "last poll", "last error", "url")
    for spec in obj.settings.schedule.sources:
        row = rows.get(spec.name)
        polled = row.last_polled_at.astimezone(obj.settings.zone).strftime("%Y-%m-%d %H:%M") if row and row.last_polled_at else "never"
        table.add_row(spec.name, spec.language, f"{spec.poll_minutes} min", polled, (row.last_error if row else None) or "", spec.url)
    console().print(table)


@main.group()
def items() -> None:
    """Stored portal items."""


@items.command("list")
@click.option("--topic", help="Only items filed under this topic id.")
@click.option("--limit", default=20, show_default=True)
@pass_ctx
def items_list(obj: Context, topic: str | None, limit: int) -> None:
    """Newest items first, with their ids for `campaign create --item`."""
    from rich.table import Table
    from sqlalchemy import select

    from outreach.models import Item

    store = obj.store()
    with store.sessions() as session:
        found = list(session.scalars(select(Item).order_by(Item.published_at.desc(), Item.id.desc()).limit(None if topic else limit)))
    store.close()
    if topic:
        found = [i for i in found if topic in i.topics][:limit]
    table = Table("id", "published", "lang", "topics", "title")
    for item in found:
        table.add_row(str(item.id), item.published_at.astimezone(obj.settings.zone).strftime("%Y-%m-%d %H:%M"), item.language, ", ".join(item.topics), item.title)
    console().print(table)


@main.group()
def campaign() -> None:
    """Campaigns: announce an item on channels."""


@campaign.command("create")
@click.option("--item", "item_id", type=int, required=True, help="Item id (see `outreach items list`).")
@click.option("--channels", default="", help="Comma-separated channels [default: all enabled].")
@click.option("--template", help="Template name [default: the channel's, usually `post`].")
@click.option("--queue", is_flag=True, help="Queue it at once: render and create its deliveries.")
@pass_ctx
def campaign_create(obj: Context, item_id: int, channels: str, template: str | None, queue: bool) -> None:
    """Create a draft campaign for one item."""
    from outreach.campaigns import create_campaign, queue_campaign
    from outreach.render import Renderer

    store = obj.store()
    with store.sessions.begin() as session:
        chosen = [c.strip() for c in channels.split(",") if c.strip()]
        created = create_campaign(session, obj.settings, item_id, getpass.getuser(), chosen, template)
        click.echo(f"campaign {created.id} created ({created.status.value}): {created.title}")
        if queue:
            deliveries = queue_campaign(session, obj.settings, Renderer(obj.settings.schedule, obj.settings.templates_dir), created.id)
            click.echo(f"campaign {created.id} queued: {len(deliveries)} deliveries")
    store.close()


@campaign.command("queue")
@click.argument("campaign_id", type=int)
@pass_ctx
def campaign_queue(obj: Context, campaign_id: int) -> None:
    """Render a campaign and create one pending delivery per target."""
    from outreach.campaigns import queue_campaign
    from outreach.render import Renderer

    store = obj.store()
    with store.sessions.begin() as session:
        deliveries = queue_campaign(session, obj.settings, Renderer(obj.settings.schedule, obj.settings.templates_dir), campaign_id)
    store.close()
    click.echo(f"campaign {campaign_id}: {len(deliveries)} new deliveries queued")


@campaign.command("preview")
@click.argument("campaign_id", type=int)
@pass_ctx
def campaign_preview(obj: Context, campaign_id: int) -> None:
    """Show the text each channel would get."""
    from rich.panel import Panel

    from outreach.campaigns import CampaignError, preview_campaign
    from outreach.models import Campaign
    from outreach.render import Renderer

    store = obj.store()
    with store.sessions() as session:
        found = session.get(Campaign, campaign_id)
        if found is None:
            raise CampaignError(f"no campaign with id {campaign_id}")
        previews = preview_campaign(obj.settings, Renderer(obj.settings.schedule, obj.settings.templates_dir), found)
    store.close()
    out = console()
    for preview in previews:
        out.print(Panel(preview.text, title=f"{preview.channel} → {', '.join(preview.targets) or 'no target'}", expand=False), markup=False)


@campaign.command("list")
@click.option("--limit", default=20, show_default=True)
@pass_ctx
def campaign_list(obj: Context, limit: int) -> None:
    """Newest campaigns first."""
    from rich.table import Table

    from outreach.campaigns import list_campaigns

    store = obj.store()
    with store.sessions() as session:
        found = list_campaigns(session, limit)
    store.close()
    table = Table("id", "status", "channels", "lang", "created by", "title")
    for c in found:
        table.add_row(str(c.id), c.status.value, ", ".join(c.channels), c.language, c.created_by, c.title)
    console().print(table)


@main.command()
@click.option("--limit", type=int, help="Send at most this many deliveries.")
@pass_ctx
def send(obj: Context, limit: int | None) -> None:
    """Deliver pending deliveries once, through each channel's transport."""
    import asyncio

    from channels import build_channels
    from outreach.dispatch import send_pending

    store = obj.store()
    report = asyncio.run(send_pending(store, build_channels(obj.settings), limit=limit))
    store.close()
    click.echo(
        f"sent {report.sent}, retrying {report.retrying}, failed {report.failed}, skipped {report.skipped}, "
        f"unknown {report.unknown}" + (f", recovered {report.recovered} interrupted" if report.recovered else "")
    )
    for channel in report.paused_channels:
        click.echo(f"channel {channel} paused: its token was refused; its deliveries stay pending", err=True)
    for channel, count in report.unroutable.items():
        click.echo(f"{count} deliveries wait for channel {channel}, which is not enabled in {obj.settings.config_path}", err=True)
    if report.failed or report.unknown or report.paused_channels:
        raise SystemExit(1)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@pass_ctx
def tracker(obj: Context, host: str, port: int) -> None:
    """Serve the short-link redirector (GET /r/{code}, /healthz)."""
    from outreach.serve import serve
    from outreach.web import create_app

    salt = obj.settings.secrets.click_salt
    if salt is None:
        click.echo("note: OUTREACH_CLICK_SALT is not set; unique-visitor counts start afresh with each restart", err=True)
    serve(create_app(obj.store(), salt.get_secret_value().encode() if salt else None), host, port)


@main.command()
@pass_ctx
def report(obj: Context) -> None:
    """Deliveries and clicks per channel and per campaign."""
    from outreach.reports import build_report
    from outreach.report_view import print_report

    store = obj.store()
    with store.sessions() as session:
        built = build_report(session)
    store.close()
    print_report(console(), built)


@main.command()
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), help="Work here instead of a new temporary folder.")
@pass_ctx
def demo(obj: Context, folder: Path | None) -> None:
    """Run the whole pipeline offline on a bundled sample feed."""
    from outreach.demo import run_demo

    run_demo(obj.settings, console(), folder)


if __name__ == "__main__":
    main()
