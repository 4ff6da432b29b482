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
    from outreach.render import Renderer


class Context:
    """What the global options chose; settings and store are built on first use."""

    def __init__(self, config: Path, db: str | None, templates: Path | None) -> None:
        self.config_path = config
        self.db = db
        self.templates = templates
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The validated settings (a ConfigError ends the command with status 2)."""
        if self._settings is None:
            from outreach.config import load_settings

            self._settings = load_settings(self.config_path, self.db, self.templates)
        return self._settings

    def store(self) -> Store:
        """The database, migrated to the newest schema; use it in a `with` block."""
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        from outreach.config import ConfigError
        from outreach.db import Store, safe_url

        url = self.settings.database_url
        try:
            return Store.open(url)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError([f"--db / OUTREACH_DATABASE_URL: cannot use {safe_url(url)}: {exc}"]) from None

    def renderer(self) -> Renderer:
        """Templates: the user's folder first, then the built-in ones."""
        from outreach.render import Renderer

        return Renderer(self.settings.schedule, self.settings.templates_dir)


def console() -> Console:
    from rich.console import Console

    return Console()


class OutreachGroup(click.Group):
    """Turns the project's own errors into a clear message and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError

        from outreach.campaigns import CampaignError
        from outreach.config import ConfigError
        from outreach.ingest import UnknownSource
        from outreach.render import RenderError
        from outreach.text import scrub

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            for problem in exc.problems:
                click.echo(f"config error: {problem}", err=True)
            ctx.exit(2)
        except UnknownSource as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)
        except (CampaignError, RenderError) as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(1)
        except OperationalError as exc:
            click.echo(f"error: database unavailable: {scrub(str(exc.orig)).splitlines()[0]}", err=True)
            ctx.exit(1)


pass_ctx = click.make_pass_decorator(Context)


@click.group(cls=OutreachGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    envvar="OUTREACH_CONFIG",
    default="schedules.yaml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Config file (env OUTREACH_CONFIG).",
)
@click.option(
    "--db",
    help="Database URL [default: OUTREACH_DATABASE_URL from the environment or .env, else sqlite:///outreach.db].",
)
@click.option(
    "--templates",
    envvar="OUTREACH_TEMPLATES",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of templates that override the built-in ones.",
)
@click.version_option(package_name="outreach")
@click.pass_context
def main(ctx: click.Context, config: Path, db: str | None, templates: Path | None) -> None:
    """Push portal news to Facebook and Telegram, and count who comes back."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request log lines carry tokens
    ctx.obj = Context(config, db, templates)


def _local(obj: Context, when: Any) -> str:
    """A stored UTC time as people here read it."""
    return when.astimezone(obj.settings.zone).strftime("%Y-%m-%d %H:%M") if when else "never"


@main.command()
@pass_ctx
def init(obj: Context) -> None:
    """Create or upgrade the database schema."""
    from outreach.db import current_revision, safe_url

    with obj.store() as store:
        revision = current_revision(store.engine)
    click.echo(f"database {safe_url(obj.settings.database_url)} is at schema revision {revision}")


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
    click.echo(
        f"{settings.config_path}: ok: {len(schedule.topics)} topics, {len(schedule.sources)} sources, time zone {schedule.timezone}"
    )
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

    with obj.store() as store:
        results = poll_sources(store, obj.settings.schedule, names)
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

    from outreach.items import sources_by_name

    with obj.store() as store, store.sessions() as session:
        rows = sources_by_name(session)
    table = Table("source", "language", "every", "last poll", "last error", "url")
    for spec in obj.settings.schedule.sources:
        row = rows.get(spec.name)
        table.add_row(
            spec.name,
            spec.language,
            f"{spec.poll_minutes} min",
            _local(obj, row and row.last_polled_at),
            (row and row.last_error) or "",
            spec.url,
        )
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

    from outreach.items import recent_items

    with obj.store() as store, store.sessions() as session:
        found = recent_items(session, topic, limit)
    table = Table("id", "published", "lang", "topics", "title")
    for item in found:
        table.add_row(str(item.id), _local(obj, item.published_at), item.language, ", ".join(item.topics), item.title)
    console().print(table)


@main.group()
def campaign() -> None:
    """Campaigns: announce an item on channels."""


@campaign.command("create")
@click.option("--item", "item_id", type=int, required=True, help="Item id (see `outreach items list`).")
@click.option("--channels", default="", help="Comma-separated channels [default: all enabled].")
@click.option("--template", help="Template name [default: the channel's, usually `post`].")
@click.option("--queue", is_flag=True, help="Queue it at once: render and create its deliveries.")
@click.option("--force", is_flag=True, help="Announce an item again on a channel it was announced on.")
@pass_ctx
def campaign_create(obj: Context, item_id: int, channels: str, template: str | None, queue: bool, force: bool) -> None:
    """Create a draft campaign for one item."""
    from outreach.campaigns import create_campaign, queue_campaign

    chosen = [c.strip() for c in channels.split(",") if c.strip()]
    with obj.store() as store, store.sessions.begin() as session:
        created = create_campaign(session, obj.settings, item_id, getpass.getuser(), chosen, template, force)
        queued = queue_campaign(session, obj.settings, obj.renderer(), created.id) if queue else []
    # Printed after the commit: a failed --queue rolls the campaign back too.
    click.echo(f"campaign {created.id} created ({created.status.value}): {created.title}")
    if queue:
        click.echo(f"campaign {created.id} queued: {len(queued)} deliveries")


@campaign.command("queue")
@click.argument("campaign_id", type=int)
@pass_ctx
def campaign_queue(obj: Context, campaign_id: int) -> None:
    """Render a campaign and create one pending delivery per target."""
    from outreach.campaigns import queue_campaign

    with obj.store() as store, store.sessions.begin() as session:
        deliveries = queue_campaign(session, obj.settings, obj.renderer(), campaign_id)
    click.echo(f"campaign {campaign_id}: {len(deliveries)} new deliveries queued")


@campaign.command("preview")
@click.argument("campaign_id", type=int)
@pass_ctx
def campaign_preview(obj: Context, campaign_id: int) -> None:
    """Show the text each channel would get."""
    from rich.panel import Panel

    from outreach.campaigns import get_campaign, preview_campaign

    with obj.store() as store, store.sessions() as session:
        previews = preview_campaign(obj.settings, obj.renderer(), get_campaign(session, campaign_id))
    out = console()
    for preview in previews:
        out.print(
            Panel(preview.text, title=f"{preview.channel} → {', '.join(preview.targets) or 'no target'}", expand=False),
            markup=False,
        )


@campaign.command("list")
@click.option("--limit", default=20, show_default=True)
@pass_ctx
def campaign_list(obj: Context, limit: int) -> None:
    """Newest campaigns first."""
    from rich.table import Table

    from outreach.campaigns import list_campaigns

    with obj.store() as store, store.sessions() as session:
        found = list_campaigns(session, limit)
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

    channels = build_channels(obj.settings)
    for name, transport in channels.items():
        if transport.name != name:
            click.echo(f"channel {name}: no token set, writing to the {transport.name} instead", err=True)
    with obj.store() as store:
        report = asyncio.run(send_pending(store, channels, limit=limit))
    click.echo(
        f"sent {report.sent}, retrying {report.retrying}, failed {report.failed}, skipped {report.skipped}, "
        f"unknown {report.unknown}" + (f", recovered {report.recovered} interrupted" if report.recovered else "")
    )
    for channel in report.paused_channels:
        click.echo(f"channel {channel} paused: its token was refused; its deliveries stay pending", err=True)
    for channel, count in report.unroutable.items():
        click.echo(
            f"{count} deliveries wait for channel {channel}, which is not enabled in {obj.settings.config_path}",
            err=True,
        )
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
        click.echo(
            "note: OUTREACH_CLICK_SALT is not set; unique-visitor counts start afresh with each restart", err=True
        )
    with obj.store() as store:
        serve(create_app(store, salt.get_secret_value().encode() if salt else None), host, port)


@main.command()
@pass_ctx
def report(obj: Context) -> None:
    """Deliveries and clicks per channel and per campaign."""
    from outreach.report_view import print_report
    from outreach.reports import build_report

    with obj.store() as store, store.sessions() as session:
        built = build_report(session)
    print_report(console(), built)


@main.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work here instead of a new temporary folder.",
)
@pass_ctx
def demo(obj: Context, folder: Path | None) -> None:
    """Run the whole pipeline offline on a bundled sample feed."""
    from outreach.demo import CHECKOUT_CONFIG, run_demo

    if not obj.config_path.exists() and obj.config_path == Path("schedules.yaml"):
        obj.config_path = CHECKOUT_CONFIG  # run from another folder: the checkout's own config
    run_demo(obj.settings, console(), folder)


if __name__ == "__main__":
    main()
