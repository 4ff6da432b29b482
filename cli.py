"""`outreach` command line: parses, calls one `outreach` function, prints.

Heavy imports happen inside commands so `outreach --help` stays fast. Every
argument is checked here, at the edge, so a mistake is a usage error that names
the option rather than a traceback from deep inside.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console
    from starlette.types import ASGIApp

    from outreach.config import Settings
    from outreach.config import Tracker as TrackerSettings
    from outreach.db import Access, Store
    from outreach.lifecycle import Actor
    from outreach.render import Renderer
    from outreach.routing import Route, Routing
    from outreach.runner import Runner

    T = TypeVar("T")


class Exit(enum.IntEnum):
    """Exit statuses, so scripts and cron can tell what to do next."""

    ok = 0
    failed = 1  # the work itself failed (a feed, a send, a campaign refused)
    usage = 2  # bad arguments or configuration, the database URL included
    no_database = 3  # no outreach database there yet, or of another version: `outreach init`
    database_unusable = 4  # not a database, damaged, or read-only for a command that writes
    database_unreachable = 5  # the server did not answer or the file is locked: try again later


EXIT_HELP = """\b
Relative paths in schedules.yaml, in OUTREACH_DATABASE_URL and in the
default database (outreach.db) are read from the config file's folder,
wherever you run the command; a relative --db path is read from the
current folder. Only `init` (and `demo`) create a database.

\b
Exit status: 0 ok, 1 the work failed, 2 bad usage or configuration,
3 no outreach database there yet (run `outreach init`), 4 the database
cannot be used (damaged, not a database, read-only), 5 the database
server is unreachable (try again later).
"""
MAX_ID = 2**31 - 1  # ids are INTEGER: 32 bits on PostgreSQL


class DatabaseUrl(click.ParamType[str, str]):
    """A supported database URL; a relative SQLite path is made absolute here."""

    name = "URL"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from outreach.dburl import BadDatabaseUrl, resolve

        try:
            return resolve(str(value), Path.cwd())
        except BadDatabaseUrl as exc:
            self.fail(str(exc), param, ctx)


class NameList(click.ParamType[list[str], str | list[str]]):
    """Comma-separated names; blanks are dropped, but at least one must remain."""

    name = "NAME,..."

    def convert(self, value: str | list[str], param: click.Parameter | None, ctx: click.Context | None) -> list[str]:
        if isinstance(value, list):
            return value
        names = [part.strip() for part in str(value).split(",") if part.strip()]
        if not names:
            self.fail(f"{value!r} names nothing; give names separated by commas", param, ctx)
        return names


ROW_ID = click.IntRange(1, MAX_ID)
# The campaign states, for `campaign list --status` (kept here so --help imports nothing heavy).
CAMPAIGN_STATES = ["draft", "approved", "scheduled", "sending", "done", "done_with_errors", "cancelled", "rejected"]
LIMIT = click.IntRange(1, MAX_ID)


class Context:
    """What the global options chose; settings and store are built on first use."""

    def __init__(
        self, config: Path, config_given: bool, db: str | None, templates: Path | None, acting_as: str | None = None
    ) -> None:
        self.config_path = config
        self.config_given = config_given
        self.db = db
        self.templates = templates
        self.acting_as = acting_as.strip() if acting_as and acting_as.strip() else None
        self.opened_url: str | None = None
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        """The validated settings (a ConfigError ends the command with status 2)."""
        if self._settings is None:
            from channels import SETTINGS_MODELS
            from outreach.config import load_settings

            self._settings = load_settings(self.config_path, self.db, self.templates, channel_models=SETTINGS_MODELS)
        return self._settings

    def store(self, access: Access) -> Store:
        """The database opened for what the command does; use it in a `with` block."""
        from outreach.db import Store

        self.opened_url = self.settings.database_url  # names it in a later driver error
        return Store.open(self.opened_url, access)

    def renderer(self) -> Renderer:
        """Templates: the user's folder first, then the built-in ones."""
        from channels import LIMITS
        from outreach.render import Renderer

        return Renderer(self.settings.schedule, LIMITS, self.settings.templates_dir)

    @property
    def actor(self) -> Actor:
        """Who acts: the OS login, and the name given with --as / OUTREACH_STAFF."""
        from outreach.lifecycle import Actor

        return Actor.current(self.acting_as)

    def route_map(self) -> dict[tuple[str, str], Route]:
        """Each target's route (its transport closed: for names and reasons, no sending)."""
        import asyncio

        routing = self.routing()
        asyncio.run(routing.close())
        return {(route.channel, route.target): route for route in routing}

    def routes(self) -> list[str]:
        """Each target's route as a line for people (no network call is made)."""
        return [str(route) for route in self.route_map().values()]

    def routing(self) -> Routing:
        """Each target's transport (platform or outbox) and why; close it in the loop that uses it."""
        from channels import build_routing

        return build_routing(self.settings)

    def database(self) -> str:
        """The database in use as people read it (a file path, or the masked URL)."""
        from outreach.dburl import describe

        return describe(self.settings.database_url)

    def local(self, when: datetime | None) -> str:
        """A stored UTC time as people here read it."""
        return when.astimezone(self.settings.zone).strftime("%Y-%m-%d %H:%M") if when else "never"


def console() -> Console:
    from rich.console import Console

    return Console()


class OutreachGroup(click.Group):
    """Turns the project's own errors into one clear line and a distinct exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise  # usage errors, --help, Ctrl-C: click shows them
        except Exception as exc:
            status = _exit_status(exc, ctx.obj)
            if status is None:
                raise  # not one of ours: a bug, shown in full
            raise SystemExit(status) from None


def _exit_status(exc: Exception, obj: Context | None) -> Exit | None:
    """Print one line for one of the project's errors and say how to exit (None: not ours).

    Error types are looked up among the modules already imported, never imported
    here: an error cannot come from a module that was not loaded, and importing
    them all up front would load the heavy libraries for `outreach campaign --help`.
    """
    import sys

    config_error = getattr(sys.modules.get("outreach.config"), "ConfigError", None)
    if config_error is not None and isinstance(exc, config_error):
        for line in exc.problems:
            click.echo(f"config error: {line}", err=True)
        return Exit.usage
    statuses: list[tuple[str, str, Exit]] = [
        ("outreach.dburl", "BadDatabaseUrl", Exit.usage),
        ("outreach.ingest", "UnknownSource", Exit.usage),
        ("outreach.source_tools", "SourceSpecError", Exit.usage),
        ("outreach.fetch", "FetchError", Exit.failed),
        ("outreach.dberrors", "NotInitialised", Exit.no_database),
        ("outreach.dberrors", "Unreachable", Exit.database_unreachable),
        ("outreach.dberrors", "StoreError", Exit.database_unusable),
        ("outreach.campaigns", "CampaignError", Exit.failed),
        ("outreach.lifecycle", "TransitionRefused", Exit.failed),
        ("outreach.render", "RenderError", Exit.failed),
        ("outreach.survey", "SurveyError", Exit.failed),
        ("outreach.bot_texts", "BotTextError", Exit.usage),
        ("channels.telegram_bot", "BotSetupError", Exit.usage),
    ]
    problem: Exception = exc
    if "sqlalchemy" in sys.modules and obj is not None and obj.opened_url:
        from sqlalchemy.exc import DBAPIError

        from outreach.dberrors import explain

        if isinstance(exc, DBAPIError):  # the database failed mid-command, after a good open
            problem = explain(exc, obj.opened_url)
    for module, name, status in statuses:
        # An error from a module never imported cannot be an instance of its class.
        kind = getattr(sys.modules.get(module), name, None)
        if kind is not None and isinstance(problem, kind):
            click.echo(f"error: {problem}", err=True)
            return status
    return None


pass_ctx = click.make_pass_decorator(Context)


@click.group(cls=OutreachGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
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
    type=DatabaseUrl(),
    help="Database URL [default: OUTREACH_DATABASE_URL from the environment or .env, else sqlite:///outreach.db].",
)
@click.option(
    "--templates",
    envvar="OUTREACH_TEMPLATES",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Folder of templates that override the built-in ones.",
)
@click.option(
    "--as",
    "acting_as",
    envvar="OUTREACH_STAFF",
    help="Your name, for the audit trail and the two-person rule (env OUTREACH_STAFF) [default: your login].",
)
@click.version_option(package_name="outreach")
@click.pass_context
def main(ctx: click.Context, config: Path, db: str | None, templates: Path | None, acting_as: str | None) -> None:
    """Push portal news to Facebook and Telegram, and count who comes back."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request log lines carry tokens
    given = ctx.get_parameter_source("config") is not click.core.ParameterSource.DEFAULT
    ctx.obj = Context(config, given, db, templates, acting_as)


@main.command()
@click.option("--config-example", is_flag=True, help="Print a commented starter schedules.yaml and stop.")
@pass_ctx
def init(obj: Context, config_example: bool) -> None:
    """Create the database, or upgrade its schema."""
    from outreach.db import Access
    from outreach.packaged import STARTER_CONFIG

    if config_example:
        click.echo(STARTER_CONFIG.read_text(encoding="utf-8"), nl=False)
        return
    with obj.store(Access.create) as store:
        before, after = store.revision_at_open, store.revision
    done = "created" if before is None else ("up to date" if before == after else f"upgraded from {before}")
    click.echo(f"database {obj.database()}: schema {after} ({done})")


@main.command()
@pass_ctx
def status(obj: Context) -> None:
    """Which config and database are in use, and what they hold."""
    from outreach.db import Access
    from outreach.models import utcnow
    from outreach.status import job_line, read_status

    with obj.store(Access.read) as store, store.sessions() as session:
        found, revision = read_status(session), store.revision

    def counts(by: dict[str, int]) -> str:
        return f"{sum(by.values())}" + (": " + ", ".join(f"{n} {key}" for key, n in by.items()) if by else "")

    routes = obj.routes()
    rows = [
        ("config", str(obj.settings.config_path.absolute())),
        ("database", f"{obj.database()} (schema {revision})"),
        ("items", f"{found.items} (last poll {obj.local(found.last_poll)})"),
        ("campaigns", counts(found.campaigns)),
        ("deliveries", counts(found.deliveries)),
        ("clicks", counts(found.clicks) + f" (last {obj.local(found.last_click)})"),
        ("routes", routes[0] if routes else "none: no channel is enabled"),
        *[("", route) for route in routes[1:]],
    ]
    jobs = [job_line(job, utcnow(), obj.local) for job in found.jobs]
    rows.append(("jobs", jobs[0] if jobs else "none recorded: `outreach run` is not running here"))
    rows += [("", job) for job in jobs[1:]]
    problems = [f"{channel} → {target} paused: {why}" for (channel, target), why in found.pauses.items()]
    problems += [f"source {name}: {error}" for name, error in found.source_errors.items()]
    problems += [f"{channel} → {target}: {error}" for (channel, target), error in found.channel_errors.items()]
    rows.append(("problems", problems[0] if problems else "none"))
    rows += [("", problem) for problem in problems[1:]]
    for label, value in rows:
        click.echo(f"{label:<11}{value}")


@main.command()
@pass_ctx
def doctor(obj: Context) -> None:
    """Check config, database, templates and every target's token."""
    import asyncio

    from outreach.config import ConfigError
    from outreach.doctor import check_database, check_routes, check_templates, failed

    try:
        settings = obj.settings
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"FAIL config: {problem}")
        raise SystemExit(Exit.failed) from None
    click.echo(f"ok   config: {settings.config_path.absolute()}")
    checks = [check_database(settings.database_url), *check_templates(settings, obj.renderer())]
    checks += asyncio.run(check_routes(obj.routing()))
    for check in checks:
        click.echo(str(check))
    if failed(checks):
        raise SystemExit(Exit.failed)


@main.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@pass_ctx
def config_check(obj: Context) -> None:
    """Validate the config; show where each target posts, and why, and when."""
    from outreach.text import plural
    from outreach.windows import describe

    settings = obj.settings
    schedule = settings.schedule
    click.echo(
        f"{settings.config_path}: ok: {plural(len(schedule.topics), 'topic')}, "
        f"{plural(len(schedule.sources), 'source')}, time zone {schedule.timezone}"
    )
    for route in obj.routes():
        click.echo(f"  {route}")
    for name, block in schedule.channels.enabled().items():
        pacing = block.pacing()
        if pacing.windows or pacing.skip_holidays or pacing.max_per_day or pacing.min_gap:
            click.echo(f"  {name} posts: {describe(pacing)}")
    approval = "someone other than the creator approves" if schedule.require_approval else "not required"
    click.echo(f"  approval: {approval}")
    for rule in schedule.rules:
        wanted = ", ".join(rule.topics) or "any topic"
        click.echo(f"  rule {rule.name}: {wanted} → {'scheduled' if rule.approved else 'draft'}")
    for digest in schedule.digests:
        click.echo(f"  digest {digest.name}: {digest.days} at {digest.at}")
    if schedule.audit.sections:
        required = sum(1 for section in schedule.audit.sections if section.required)
        click.echo(f"  audit: {plural(required, 'required section')} (`outreach audit`)")
    if not schedule.fetch.contact and any(source.wants_metadata for source in schedule.sources):
        # Not an error: but a portal's webmaster who sees article pages fetched should know by whom.
        click.echo("  note: fetch.contact is not set: article pages are read with no contact in the User-Agent")


@main.group()
def sources() -> None:
    """Portal feeds, sitemaps and listing pages: poll, test, add, list."""


F = TypeVar("F", bound=Callable[..., Any])


def _source_options(command: F) -> F:
    """The options that describe a source, shared by `sources test` (to try) and `sources add` (to keep)."""
    options = [
        click.option("--kind", type=click.Choice(["feed", "sitemap", "html"]), help="What the URL serves [feed]."),
        click.option("--lang", "language", type=click.Choice(["vi", "en"]), help="The items' language [vi]."),
        click.option("--topic", "topics", multiple=True, help="A topic id every item is filed under (repeatable)."),
        click.option("--poll-minutes", type=click.IntRange(1), help="How often to poll [30]."),
        click.option("--item", help="html: CSS selector of each article's block on the listing page."),
        click.option("--link", help="html: selector of the article link inside the block [a[href]]."),
        click.option("--title", help="html: selector of the title inside the block [the link's text]."),
        click.option("--date", help="html: selector of the date inside the block."),
        click.option("--summary", help="html: selector of the summary inside the block."),
        click.option("--image", help="html: selector of the image inside the block."),
        click.option("--next", "next_page", help='html: selector of the "next page" link.'),
        click.option("--max-pages", type=click.IntRange(1, 50), help="html: pages followed per poll [3]."),
        click.option("--first-run", type=click.IntRange(1, 100), help="sitemap: URLs taken on the first poll [20]."),
        click.option("--include", multiple=True, help="sitemap: only URL paths matching this regex (repeatable)."),
        click.option(
            "--metadata/--no-metadata",
            "article_metadata",
            default=None,
            help="Read article pages for missing summaries and images [on for sitemap and html].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _source_fields(name: str, url: str, options: dict[str, Any]) -> dict[str, Any]:
    """The source's fields as the config spells them, from the shared options (unset ones left out)."""
    selectors = ("item", "link", "title", "date", "summary", "image", "next_page", "max_pages")
    listing = {("next" if k == "next_page" else k): options.pop(k) for k in selectors}
    sitemap = {"first_run": options.pop("first_run"), "include": list(options.pop("include")) or None}
    fields: dict[str, Any] = {"name": name, "url": url, **options, "topics": list(options["topics"]) or None}
    if any(v is not None for v in listing.values()):
        fields["listing"] = {k: v for k, v in listing.items() if v is not None}
    if any(v is not None for v in sitemap.values()):
        fields["sitemap"] = {k: v for k, v in sitemap.items() if v is not None}
    return {k: v for k, v in fields.items() if v is not None}


@sources.command("test")
@click.argument("source")
@_source_options
@pass_ctx
def sources_test(obj: Context, /, source: str, **options: Any) -> None:
    """Show what a source would give, storing nothing.

    SOURCE is a configured name or a URL; it is read once as the poll would.

    Options override a configured source's settings, so selectors can be tuned
    by trial: `outreach sources test https://portal/tin-tuc --kind html --item
    ".news-item" --date ".date"`.
    """
    from outreach.source_tools import print_reading, source_spec, try_source

    schedule = obj.settings.schedule
    if "://" in source:
        fields = _source_fields("test", source, options)
    else:
        try:
            configured = schedule.source(source).model_dump(exclude_defaults=True)
        except KeyError:
            known = ", ".join(s.name for s in schedule.sources) or "none configured"
            raise click.UsageError(f"no source named {source!r} (known: {known}); or give a URL") from None
        overrides = _source_fields(source, configured["url"], options)
        fields = {**configured, **overrides}
        for block in ("listing", "sitemap"):
            if block in configured and block in overrides:
                fields[block] = {**configured[block], **overrides[block]}
    spec = source_spec(fields)
    read = try_source(spec, schedule)
    print_reading(console(), spec, read, schedule)
    if read.problem or not read.entries:
        raise SystemExit(Exit.failed)


@sources.command("add")
@click.argument("name")
@click.argument("url")
@_source_options
@pass_ctx
def sources_add(obj: Context, /, name: str, url: str, **options: Any) -> None:
    """Add a source to schedules.yaml, keeping its comments.

    NAME reads URL; the file's comments and layout are kept.

    Try it first with `outreach sources test URL ...` and the same options.
    """
    from channels import SETTINGS_MODELS
    from outreach.source_tools import add_source, source_spec

    fields = _source_fields(name, url, options)
    spec = source_spec(fields)
    obj.settings  # noqa: B018  the current file must be valid before we add to it
    add_source(obj.config_path, spec, fields, SETTINGS_MODELS)
    console().print(f"added source {name} ({spec.kind}) to {obj.config_path}; `outreach sources poll {name}` reads it")


@sources.command("poll")
@click.argument("names", nargs=-1)
@pass_ctx
def sources_poll(obj: Context, names: tuple[str, ...]) -> None:
    """Read sources now (all, or NAMES): store new items, update changed."""
    from rich.markup import escape

    from outreach.db import Access
    from outreach.ingest import poll_sources
    from outreach.tables import fitted_table

    with obj.store(Access.write) as store:
        results = poll_sources(store, obj.settings.schedule, names)
    table = fitted_table("source", "new", "changed", "read", "status", wide="status", right={"new", "changed", "read"})
    for r in results:
        state = "not modified" if r.not_modified else (f"[red]{escape(r.error)}[/red]" if r.error else "ok")
        if r.warning and not r.error:
            state += f" [yellow](warning: {escape(r.warning)})[/yellow]"
        table.add_row(r.source, str(r.new), str(r.changed), str(r.seen), state)
    console().print(table)
    if any(r.error and not r.seen for r in results):
        raise SystemExit(Exit.failed)


@sources.command("list")
@pass_ctx
def sources_list(obj: Context) -> None:
    """Configured sources and the outcome of their last poll."""
    from rich.markup import escape

    from outreach.db import Access
    from outreach.items import sources_by_name

    with obj.store(Access.read) as store, store.sessions() as session:
        rows = sources_by_name(session)
    out = console()
    for spec in obj.settings.schedule.sources:
        row = rows.get(spec.name)
        outcome = "not polled yet" if row is None else (row.last_error or "ok")
        # Two lines per source rather than a table: URLs and errors stay whole at any width.
        out.print(
            f"[b]{spec.name}[/b] ({spec.kind}, {spec.language}, every {spec.poll_minutes} min) {escape(spec.url)}",
            soft_wrap=True,
        )
        out.print(
            f"  last poll {obj.local(row.last_polled_at if row else None)}: {outcome}", soft_wrap=True, markup=False
        )
        if row is not None and row.last_polled_at is not None:
            out.print(f"  last success {obj.local(row.last_ok_at)}", soft_wrap=True, markup=False)
        if row is not None and row.last_warning:
            out.print(f"  warning: {row.last_warning}", soft_wrap=True, markup=False)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True, help="Labels' language.")
@pass_ctx
def audit(obj: Context, fmt: str, lang: str) -> None:
    """What the portal published per required section lately.

    Per section and topic, the items published in the last 30 and 90 days.

    For the portal-quality indicator (Decree 42/2022 lists what an agency's
    portal must publish): sections are mapped onto topics, sources or URL paths
    under `audit:` in schedules.yaml. Exits 1 when a required section has
    nothing in the longest window, so cron can tell.
    """
    from outreach.audit import coverage, exit_code, render_json, render_text
    from outreach.db import Access
    from outreach.models import utcnow

    with obj.store(Access.read) as store, store.sessions() as session:
        found = coverage(session, obj.settings.schedule, utcnow())
    out = console()
    if fmt == "json":
        click.echo(render_json(found))
    else:
        out.print(render_text(found, lang, width=out.width), markup=False, highlight=False, soft_wrap=True)
    if exit_code(found):
        raise SystemExit(Exit.failed)


@main.group()
def items() -> None:
    """Stored portal items."""


@items.command("list")
@click.option("--topic", help="Only items filed under this topic id.")
@click.option("--limit", type=LIMIT, default=20, show_default=True, help="Show at most this many.")
@pass_ctx
def items_list(obj: Context, topic: str | None, limit: int) -> None:
    """Newest items first, with their ids for `campaign create --item`."""
    from outreach.db import Access
    from outreach.items import recent_items
    from outreach.tables import fitted_table

    if topic is not None:
        known = [t.id for t in obj.settings.schedule.topics]
        if topic not in known:
            raise click.BadParameter(f"unknown topic {topic!r} (known: {', '.join(known)})", param_hint="'--topic'")
    with obj.store(Access.read) as store, store.sessions() as session:
        found = recent_items(session, topic, limit)
    table = fitted_table("id", "published", "lang", "topics", "title", wide="title", wrap={"topics"}, right={"id"})
    for item in found:
        table.add_row(str(item.id), obj.local(item.published_at), item.language, ", ".join(item.topics), item.title)
    console().print(table)


@items.command("search")
@click.argument("words", nargs=-1, required=True)
@click.option("--limit", type=click.IntRange(1, 50), default=10, show_default=True, help="Show at most this many.")
@click.option("--lang", type=click.Choice(["vi", "en"]), help="Only items in this language.")
@click.option("--topic", help="Only items filed under this topic id.")
@pass_ctx
def items_search(obj: Context, words: tuple[str, ...], limit: int, lang: str | None, topic: str | None) -> None:
    """Search items accent-free, as the bot's /search does: `outreach items search dang ky kinh doanh`."""
    from outreach.db import Access
    from outreach.search import search_items
    from outreach.tables import fitted_table

    query = " ".join(words)
    with obj.store(Access.read) as store, store.sessions() as session:
        found = search_items(session, query, limit=limit, language=lang, topic=topic)
    if found.reason is not None:
        raise click.BadParameter(SEARCH_REFUSALS[found.reason.value], param_hint="WORDS")
    if not found.hits:
        click.echo(f"no item matches {query!r} (every word must match; accents are optional)")
        return
    table = fitted_table("id", "published", "lang", "match", "title", wide="title", right={"id"})
    for hit in found.hits:
        match = "exact" if hit.exact else "accent-free"
        table.add_row(str(hit.item_id), obj.local(hit.published_at), hit.language, match, hit.title)
    console().print(table)


SEARCH_REFUSALS = {
    "empty": "give the words to look for",
    "no_words": "there is no word to look for in that (only punctuation or symbols)",
    "too_long": "too long: use a few key words",
}


@main.group()
def campaign() -> None:
    """Campaigns: create, approve, watch, cancel, settle."""


def _at(obj: Context, value: str | None) -> datetime | None:
    """`--at "2026-12-01 08:00"` in the configured zone, as an aware time."""
    from datetime import datetime as clock

    if value is None:
        return None
    try:
        naive = clock.strptime(value.strip(), "%Y-%m-%d %H:%M")
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a time like 2026-12-01 08:00", param_hint="'--at'") from None
    return naive.replace(tzinfo=obj.settings.zone)


@campaign.command("create")
@click.option("--item", "item_id", type=ROW_ID, help="Announce one item (see `outreach items list`).")
@click.option("--items", "item_ids", type=NameList(), help="Several items as one digest: ID,ID,...")
@click.option(
    "--message-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A message staff wrote."
)
@click.option("--url", help="The portal page a staff message links to.")
@click.option("--channels", type=NameList(), help="Comma-separated channels [default: all enabled].")
@click.option("--lang", type=click.Choice(["vi", "en"]), help="A staff message's language [default: vi].")
@click.option("--template", help="Template name [default: post, digest or message, or the channel's].")
@click.option("--at", "at", help='Not before this time, in the configured zone: "2026-12-01 08:00".')
@click.option("--force", is_flag=True, help="Announce an item again on a channel it was announced on.")
@pass_ctx
def campaign_create(
    obj: Context,
    item_id: int | None,
    item_ids: list[str] | None,
    message_file: Path | None,
    url: str | None,
    channels: list[str] | None,
    lang: str | None,
    template: str | None,
    at: str | None,
    force: bool,
) -> None:
    """Create a draft campaign: one item, a digest, or a staff message."""
    from outreach.campaigns import CampaignRequest, create_campaign
    from outreach.config import ConfigError
    from outreach.db import Access
    from outreach.models import CampaignKind
    from outreach.render import UnknownTemplate
    from outreach.text import plural

    chosen = [
        name for name, given in (("--item", item_id), ("--items", item_ids), ("--message-file", message_file)) if given
    ]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one of --item, --items, --message-file")
    if message_file is not None and not url:
        raise click.BadParameter("a staff message needs the portal page it links to", param_hint="'--url'")
    ids: tuple[int, ...] = ()
    if item_ids:
        try:
            ids = tuple(int(part) for part in item_ids)
        except ValueError:
            raise click.BadParameter(f"{','.join(item_ids)!r}: ids are numbers", param_hint="'--items'") from None
    kind = CampaignKind.message if message_file else (CampaignKind.digest if item_ids else CampaignKind.item)
    request = CampaignRequest(
        kind=kind,
        item_ids=ids or ((item_id,) if item_id else ()),
        message=message_file.read_text(encoding="utf-8") if message_file else None,
        url=url,
        channels=tuple(channels or ()),
        language=lang,
        template=template,
        at=_at(obj, at),
        force=force,
    )
    with obj.store(Access.write) as store, store.sessions.begin() as session:
        try:
            created = create_campaign(session, obj.settings, obj.renderer(), request, obj.actor)
        except UnknownTemplate as exc:
            if template is None:  # the channel's own template, named in the config
                raise ConfigError([f"{obj.settings.config_path}: channels.{exc.channel}.template: {exc}"]) from None
            raise click.BadParameter(str(exc), param_hint="'--template'") from None
        status, count = created.status.value, len(created.channels)
    # Printed after the commit: a refusal rolls everything back.
    click.echo(f"campaign {created.id} created ({status}): {created.title}")
    if status == "draft":
        click.echo(
            f"  it goes out once someone other than {obj.actor.name} approves it: outreach campaign approve {created.id}"
        )
    else:
        click.echo(f"  approval not required: scheduled on {plural(count, 'channel')}")


@campaign.command("approve")
@click.argument("campaign_id", type=ROW_ID)
@pass_ctx
def campaign_approve(obj: Context, campaign_id: int) -> None:
    """Approve someone else's draft: it is rendered and scheduled."""
    from outreach.campaigns import approve_campaign, queued_count
    from outreach.db import Access
    from outreach.models import Campaign
    from outreach.text import plural

    with obj.store(Access.write) as store, store.sessions.begin() as session:
        approve_campaign(session, obj.settings, obj.renderer(), campaign_id, obj.actor)
        queued = queued_count(session, campaign_id)
        when = session.get_one(Campaign, campaign_id).scheduled_at
    click.echo(
        f"campaign {campaign_id} approved by {obj.actor}: {plural(queued, 'delivery', 'deliveries')} "
        f"scheduled for {obj.local(when)} (see `outreach campaign show {campaign_id}`)"
    )


@campaign.command("reject")
@click.argument("campaign_id", type=ROW_ID)
@click.option("--reason", required=True, help="Why, for the audit trail and the creator.")
@pass_ctx
def campaign_reject(obj: Context, campaign_id: int, reason: str) -> None:
    """Turn down a draft, saying why."""
    from outreach.campaigns import reject_campaign
    from outreach.db import Access

    with obj.store(Access.write) as store, store.sessions.begin() as session:
        reject_campaign(session, campaign_id, obj.actor, reason)
    click.echo(f"campaign {campaign_id} rejected by {obj.actor}: {reason}")


@campaign.command("cancel")
@click.argument("campaign_id", type=ROW_ID)
@click.option("--reason", help="Why, for the audit trail.")
@pass_ctx
def campaign_cancel(obj: Context, campaign_id: int, reason: str | None) -> None:
    """Stop a campaign: nothing more of it goes out."""
    from outreach.campaigns import cancel_campaign
    from outreach.db import Access
    from outreach.text import plural

    with obj.store(Access.write) as store, store.sessions.begin() as session:
        skipped = cancel_campaign(session, campaign_id, obj.actor, reason)
    click.echo(f"campaign {campaign_id} cancelled: {plural(skipped, 'pending delivery', 'pending deliveries')} skipped")


@campaign.command("retry")
@click.argument("campaign_id", type=ROW_ID)
@pass_ctx
def campaign_retry(obj: Context, campaign_id: int) -> None:
    """Send a campaign's failed deliveries again."""
    from outreach.campaigns import retry_campaign
    from outreach.db import Access
    from outreach.text import plural

    with obj.store(Access.write) as store, store.sessions.begin() as session:
        retried = retry_campaign(session, campaign_id, obj.actor)
    click.echo(f"campaign {campaign_id}: {plural(retried, 'failed delivery', 'failed deliveries')} pending again")


@campaign.command("settle")
@click.argument("campaign_id", type=ROW_ID)
@click.option("--delivery", "delivery_id", type=ROW_ID, required=True, help="The delivery of unknown fate.")
@click.option("--sent/--not-sent", "sent", required=True, help="Whether you found it on the page or channel.")
@click.option("--note", help="What you checked, for the audit trail.")
@pass_ctx
def campaign_settle(obj: Context, campaign_id: int, delivery_id: int, sent: bool, note: str | None) -> None:
    """Close a delivery of unknown fate after checking the target by hand."""
    from outreach.campaigns import get_campaign, settle_delivery
    from outreach.db import Access

    with obj.store(Access.write) as store, store.sessions.begin() as session:
        settle_delivery(session, campaign_id, delivery_id, sent, obj.actor, note)
        status = get_campaign(session, campaign_id).status.value
    outcome = "sent" if sent else "not sent (failed)"
    click.echo(f"delivery {delivery_id} settled as {outcome} by {obj.actor}; campaign {campaign_id} is {status}")


@campaign.command("show")
@click.argument("campaign_id", type=ROW_ID)
@pass_ctx
def campaign_show(obj: Context, campaign_id: int) -> None:
    """Deliveries, what happens next and why, audit trail."""
    from outreach.campaign_view import explain, print_campaign
    from outreach.db import Access
    from outreach.dispatch import plan_for

    with obj.store(Access.read) as store, store.sessions() as session:
        shown = explain(session, obj.settings, plan_for(obj.settings), obj.route_map(), campaign_id)
    print_campaign(console(), shown, obj.settings.zone)


@campaign.command("preview")
@click.argument("campaign_id", type=ROW_ID)
@pass_ctx
def campaign_preview(obj: Context, campaign_id: int) -> None:
    """Show the text each channel would get."""
    from rich.panel import Panel

    from outreach.campaigns import get_campaign, preview_campaign
    from outreach.db import Access

    with obj.store(Access.read) as store, store.sessions() as session:
        previews = preview_campaign(session, obj.settings, obj.renderer(), get_campaign(session, campaign_id))
    out = console()
    for preview in previews:
        title = f"{preview.channel} → {', '.join(preview.targets) or 'no target'}"
        out.print(Panel(preview.text, title=title, expand=False), markup=False)


@campaign.command("list")
@click.option("--status", type=click.Choice(CAMPAIGN_STATES), help="Only campaigns in this state.")
@click.option("--limit", type=LIMIT, default=20, show_default=True, help="Show at most this many.")
@pass_ctx
def campaign_list(obj: Context, status: str | None, limit: int) -> None:
    """Newest campaigns first."""
    from outreach.campaigns import list_campaigns
    from outreach.db import Access
    from outreach.models import CampaignStatus
    from outreach.tables import fitted_table

    with obj.store(Access.read) as store, store.sessions() as session:
        found = list_campaigns(session, limit, CampaignStatus(status) if status else None)
    if not found:
        click.echo(f"no {status} campaigns" if status else "no campaigns yet: outreach campaign create --item ID")
        return
    table = fitted_table(
        "id", "status", "kind", "channels", "lang", "by", "title", wide="title", wrap={"channels"}, right={"id"}
    )
    for c in found:
        table.add_row(
            str(c.id),
            c.status.value,
            c.kind.value,
            ", ".join(c.channels),
            c.language,
            c.created_as or c.created_by,
            c.title,
        )
    console().print(table)


@main.group()
def channel() -> None:
    """Channels: lift a pause after fixing a token."""


@channel.command("resume")
@click.argument("name")
@click.option("--target", help="Only this target's pause [default: every pause of the channel].")
@pass_ctx
def channel_resume(obj: Context, name: str, target: str | None) -> None:
    """Lift a pause stored when the platform refused a token."""
    from outreach.db import Access
    from outreach.dispatch_store import resume
    from outreach.text import plural

    with obj.store(Access.write) as store:
        lifted = resume(store, name, target, obj.actor)
    if not lifted:
        raise click.BadParameter(f"{name} has no pause{f' on {target}' if target else ''}", param_hint="NAME")
    click.echo(f"{name}: {plural(lifted, 'pause')} lifted; its deliveries go out on the next send")


@main.command()
@click.option("--limit", type=LIMIT, help="Send at most this many deliveries.")
@pass_ctx
def send(obj: Context, limit: int | None) -> None:
    """Deliver pending deliveries once."""
    import asyncio

    from outreach.db import Access
    from outreach.dispatch import EVERY_TARGET, plan_for, send_once
    from outreach.text import plural

    with obj.store(Access.write) as store:
        routing = obj.routing()
        for route in routing:
            click.echo(str(route), err=True)
        report = asyncio.run(send_once(store, routing, limit, plan_for(obj.settings)))
    click.echo(
        f"sent {report.sent}, retrying {report.retrying}, failed {report.failed}, skipped {report.skipped}, "
        f"unknown {report.unknown}" + (f", recovered {report.recovered} interrupted" if report.recovered else "")
    )

    def which(channel: str, target: str) -> str:
        return f"{channel} (every target)" if target == EVERY_TARGET else f"{channel} → {target}"

    for (channel, target), reason in report.paused.items():
        click.echo(f"{which(channel, target)} paused: {reason}; its deliveries stay pending", err=True)
    for (channel, target), seconds in report.waiting.items():
        click.echo(f"{which(channel, target)} holds for {seconds:g} s, as the platform asked", err=True)
    for (channel, target), count in report.unroutable.items():
        waiting = plural(count, "delivery waits", "deliveries wait")
        click.echo(
            f"{waiting} for {channel} → {target}, which is not an enabled target in {obj.settings.config_path}",
            err=True,
        )
    if report.failed or report.unknown or report.paused:
        raise SystemExit(Exit.failed)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Processes serving the port.")
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="ADDRESS",
    help="A reverse proxy whose X-Forwarded-For / Forwarded is believed (repeatable; adds to the config's).",
)
@pass_ctx
def tracker(obj: Context, host: str, port: int, workers: int, trusted_proxies: tuple[str, ...]) -> None:
    """Serve the short-link redirector (/r/CODE, /healthz, /metrics)."""
    import ipaddress
    import os
    import secrets

    from outreach.db import Access
    from outreach.serve import serve
    from outreach.text import plural

    for proxy in trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise click.BadParameter(
                f"{proxy!r} is not an IP address or network", param_hint="--trusted-proxy"
            ) from None
    settings = obj.settings
    with obj.store(Access.write) as store, store.sessions() as session:
        from sqlalchemy import func, select

        from outreach.models import Link

        links = session.scalar(select(func.count()).select_from(Link)) or 0
    if settings.click_salt is None:
        click.echo("note: OUTREACH_CLICK_SALT is not set; unique-visitor counts start afresh at each restart", err=True)
    click.echo(f"tracker: database {obj.database()} (schema {store.revision}), {plural(links, 'link')}", err=True)
    click.echo(f"tracker: links {settings.schedule.tracker.public_url}/r/CODE, served on {host}:{port}", err=True)
    click.echo(f"tracker: clicks spool to {settings.click_spool} while the database is unavailable", err=True)
    # The workers build the app from these (uvicorn starts them as fresh processes).
    os.environ.update(
        {
            TRACKER_CONFIG: str(obj.config_path),
            TRACKER_DATABASE: settings.database_url,
            TRACKER_PROXIES: ",".join(trusted_proxies),
            "OUTREACH_CLICK_SALT": (settings.click_salt or secrets.token_hex(32).encode()).decode(),
        }
    )
    serve("cli:tracker_app", host, port, workers)


TRACKER_CONFIG, TRACKER_DATABASE, TRACKER_PROXIES = (
    "OUTREACH_TRACKER_CONFIG",
    "OUTREACH_TRACKER_DATABASE",
    "OUTREACH_TRACKER_PROXIES",
)


def tracker_app() -> ASGIApp:
    """The tracker app of one worker, from what `outreach tracker` put in the environment."""
    import os

    from channels import SETTINGS_MODELS
    from outreach.config import load_settings
    from outreach.db import Access, Store
    from outreach.web import create_app

    settings = load_settings(
        Path(os.environ[TRACKER_CONFIG]), os.environ[TRACKER_DATABASE], None, channel_models=SETTINGS_MODELS
    )
    store = Store.open(settings.database_url, Access.write)  # open while the worker lives
    return create_app(store, _tracker_settings(settings), settings.click_spool, settings.click_salt)


def _tracker_settings(settings: Settings) -> TrackerSettings:
    """The config's tracker section, with the proxies trusted on the command line added."""
    import os

    tracker = settings.schedule.tracker
    added = [proxy for proxy in os.environ.get(TRACKER_PROXIES, "").split(",") if proxy]
    if not added:
        return tracker
    return tracker.model_copy(update={"trusted_proxies": [*tracker.trusted_proxies, *added]})


@main.command()
@click.option("--once", is_flag=True, help="One pass of every job (poll, rules, digests, send), then exit.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The tracker's address.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="The tracker's port.")
@click.option("--no-tracker", is_flag=True, help="Do not serve the tracker in this process.")
@pass_ctx
def run(obj: Context, once: bool, host: str, port: int, no_tracker: bool) -> None:
    """The service: poll, apply rules, send, track; until stopped."""
    import asyncio

    from outreach.db import Access
    from outreach.lifecycle import Actor
    from outreach.runner import Runner
    from outreach.text import plural

    actor = Actor.current(obj.acting_as or "runner")
    with obj.store(Access.write) as store:
        routing = obj.routing()
        runner = Runner(obj.settings, store, routing, obj.renderer(), actor)
        click.echo(f"run: database {obj.database()} (schema {store.revision}), as {actor}", err=True)
        for route in routing:
            click.echo(f"run: {route}", err=True)
        if once:
            done = asyncio.run(_close_after(routing, runner.once()))
            rules = done.rules
            click.echo(
                f"polled {plural(len(done.polled), 'source')}; rules made {plural(len(rules.drafts), 'draft')} and "
                f"scheduled {len(rules.scheduled)}; {plural(len(done.digests), 'digest')}; sent {done.sent.sent}, "
                f"retrying {done.sent.retrying}, failed {done.sent.failed}, unknown {done.sent.unknown}"
            )
            for refused in rules.refused:
                click.echo(f"rule refused: {refused}", err=True)
            return
        asyncio.run(_serve(obj, runner, routing, None if no_tracker else (host, port)))
    click.echo("run: stopped", err=True)


async def _close_after(routing: Routing, work: Awaitable[T]) -> T:
    try:
        return await work
    finally:
        await routing.close()


async def _serve(obj: Context, runner: Runner, routing: Routing, listen: tuple[str, int] | None) -> None:
    """Run until SIGTERM or Ctrl-C; the tracker (if any) serves in the same loop."""
    import asyncio
    import signal

    from outreach.serve import tracker_server
    from outreach.web import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # signal.signal, not loop.add_signal_handler: uvicorn restores these when it stops.
        signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    tracker = None
    parts = _bot_parts(obj, runner.store, webhook=None)
    hook = parts.hook if parts is not None else None
    if hook is not None and listen is None:
        click.echo("run: the bot's webhook needs the tracker: its updates wait until one serves it", err=True)
    if listen is not None:
        settings = obj.settings
        app = create_app(
            runner.store, settings.schedule.tracker, settings.click_spool, settings.click_salt, telegram=hook
        )
        tracker = tracker_server(app, *listen)
        click.echo(f"run: tracker on {listen[0]}:{listen[1]}", err=True)
    bot_task = None
    if parts is not None:
        from channels.telegram_bot import run_application

        bot_task = asyncio.create_task(run_application(parts.app, polling=hook is None, stop=stop), name="bot")
        click.echo(f"run: bot {'by webhook' if hook is not None else 'polling'}", err=True)
    try:
        await runner.serve(stop, tracker)
    finally:
        stop.set()
        if bot_task is not None:
            await asyncio.gather(bot_task, return_exceptions=True)
        await routing.close()


@main.command()
@click.argument("code", required=False)
@click.option("--campaign", "campaign_id", type=ROW_ID, help="The campaign's page instead of a link's.")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write: .png (300 dpi) or .svg (in mm).",
)
@pass_ctx
def qr(obj: Context, code: str | None, campaign_id: int | None, output: Path) -> None:
    """A QR code for posters: a tracked link of its own (channel qr).

    CODE is a short link's code (or the short link itself); its page gets the QR
    link. Asking again for the same page and campaign reuses that link.
    """
    from outreach.db import Access
    from outreach.qr import QrError, output_format, qr_link, write_qr

    if (code is None) == (campaign_id is None):
        raise click.UsageError("give exactly one of CODE, --campaign")
    if output_format(output) is None:
        raise click.BadParameter(f"{output}: give a file ending in .png or .svg", param_hint="'-o' / '--output'")
    try:
        with obj.store(Access.write) as store, store.sessions.begin() as session:
            made = qr_link(session, obj.settings, code=code, campaign_id=campaign_id)
        # Written once the link is committed: a printed code never points at a link that is not stored.
        size = write_qr(made.short_url, output)
    except QrError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(Exit.failed) from None
    owner = f"campaign {made.campaign_id}" if made.campaign_id is not None else "no campaign"
    how = "new link" if made.created else f"reused, made {obj.local(made.created_at)}"
    click.echo(f"short link  {made.short_url} (channel qr, {owner}; {how})")
    click.echo(f"destination {made.destination}")
    click.echo(f"written     {output} ({size})")


@main.group()
def clicks() -> None:
    """Stored clicks: judge them again after the agent rules change."""


@clicks.command("reclassify")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Only clicks from this day on, in the configured time zone [default: every click].",
)
@pass_ctx
def clicks_reclassify(obj: Context, since: datetime | None) -> None:
    """Judge stored clicks again with the current agent rules."""
    from outreach.agents import Classifier
    from outreach.db import Access
    from outreach.reclassify import reclassify
    from outreach.text import plural

    classifier = Classifier(obj.settings.schedule.tracker.agents)
    with obj.store(Access.write) as store:
        done = reclassify(store, classifier, since.replace(tzinfo=obj.settings.zone) if since else None)
    checked = f"{plural(done.checked, 'click')}{f' since {since:%Y-%m-%d}' if since else ''} checked"
    if not done.changed:
        click.echo(f"{checked}; none changed kind")
        return
    click.echo(f"{checked}; {done.total_changed} changed kind:")
    for (before, after), count in sorted(done.changed.items(), key=lambda change: (-change[1], change[0])):
        click.echo(f"  {before.value} → {after.value}: {count}")


@main.group()
def logs() -> None:
    """The portal's access logs: evidence beside the clicks."""


def _advance(bar: Any, task: Any, done: int, total: int) -> None:
    """One file's progress bar, moved on by the import."""
    bar.update(task, completed=done, total=total)


@logs.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_ctx
def logs_import(obj: Context, files: tuple[Path, ...]) -> None:
    """Count the portal hits that came from outreach (UTM tags, social referrers), by day; nginx/Apache combined, gzip too."""
    import functools

    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    from outreach.agents import Classifier
    from outreach.db import Access
    from outreach.portal_logs import LogImportError, import_log

    settings = obj.settings
    classifier = Classifier(settings.schedule.tracker.agents)
    failed = 0
    with obj.store(Access.write) as store:
        for path in files:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TimeRemainingColumn(),
                console=console(),
                transient=True,
            ) as bar:
                task = bar.add_task(path.name, total=None)
                try:
                    done = import_log(
                        store,
                        path,
                        settings.zone,
                        settings.click_salt,
                        classifier,
                        functools.partial(_advance, bar, task),
                        utm_medium=settings.schedule.tracker.utm_medium,
                    )
                except LogImportError as exc:
                    click.echo(f"error: {exc}", err=True)
                    failed += 1
                    continue
            if done.already_imported:
                click.echo(f"{path}: already imported on {obj.local(done.already_imported_at)}; nothing added")
                continue
            channels = ", ".join(f"{channel} {hits}" for channel, hits in sorted(done.people.items())) or "none"
            malformed = (
                f", {done.malformed} malformed (first at line {done.first_malformed}) skipped" if done.malformed else ""
            )
            click.echo(
                f"{path}: {done.lines} lines, {done.kept} outreach hits kept (people by channel: {channels}){malformed}"
            )
            if not done.salted:
                click.echo(
                    "note: OUTREACH_CLICK_SALT is not set; visitors in this file are not matched with other files",
                    err=True,
                )
    if failed:
        raise click.exceptions.Exit(Exit.failed)


@main.group()
def survey() -> None:
    """Surveys of information needs, answered in the bot."""


@survey.command("send")
@click.argument("name")
@click.option("--channels", type=NameList(), help="Channels with subscribers [default: every one enabled].")
@pass_ctx
def survey_send(obj: Context, name: str, channels: list[str] | None) -> None:
    """Queue a survey's invitation to every active subscriber, one campaign per language.

    NAME is a file in the surveys/ folder beside schedules.yaml (surveys/NAME.yaml), or a path.
    """
    from outreach.broadcast import has_subscribers
    from outreach.campaigns import CampaignRequest, create_campaign
    from outreach.db import Access
    from outreach.models import CampaignKind
    from outreach.survey import SurveyError, load_definition, store, survey_path

    settings = obj.settings
    definition = load_definition(survey_path(obj.config_path.parent, name))
    chosen = channels or [c for c in settings.schedule.channels.enabled() if has_subscribers(settings, c)]
    if not chosen:
        raise SurveyError(f"no channel with subscribers is enabled in {settings.config_path} (e.g. telegram_bot)")
    made = []
    with obj.store(Access.write) as opened, opened.sessions.begin() as session:
        stored = store(session, definition)
        for language in ("vi", "en"):
            request = CampaignRequest(
                kind=CampaignKind.survey,
                channels=tuple(chosen),
                language=language,
                survey_id=stored.id,
                message=definition.title.get(language),
                title=f"Survey {definition.name}: {definition.title.get(language)}",
            )
            campaign = create_campaign(session, settings, obj.renderer(), request, obj.actor)
            made.append((language, campaign.id, campaign.status.value))
    for language, campaign_id, status in made:
        click.echo(f"survey {definition.name} ({language}): campaign {campaign_id}, {status}")
    if any(status == "draft" for *_, status in made):
        click.echo("someone else approves each draft: `outreach --as NAME campaign approve ID`")


@survey.command("results")
@click.argument("name")
@click.option(
    "--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write every answer here."
)
@pass_ctx
def survey_results(obj: Context, name: str, csv_path: Path | None) -> None:
    """Counts per option, free-text answers, and (with --csv) one line per answer."""
    from outreach.db import Access
    from outreach.survey import results, write_csv
    from outreach.tables import fitted_table

    with obj.store(Access.read) as store, store.sessions() as session:
        found = results(session, name)
    out = console()
    out.print(f"{found.name}: {found.title.vi} / {found.title.en}; {found.respondents} respondents", markup=False)
    for each in found.questions:
        question = each.question
        table = fitted_table(
            "answer", "count", wide="answer", right={"count"}, title=f"{question.id}: {question.text.vi}"
        )
        for option in question.options:
            table.add_row(f"{option.vi} / {option.en}", str(each.counts.get(option.id, 0)))
        for text in each.texts:
            table.add_row(text, "")
        table.caption = f"{each.respondents} answered"
        out.print(table)
    if csv_path is not None:
        lines = write_csv(found, csv_path)
        click.echo(f"wrote {lines} answers to {csv_path}")


@main.group(invoke_without_command=True)
@click.option("--polling", is_flag=True, help="Fetch updates from Telegram (no public address needed).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Webhook mode: the address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Webhook mode: the port.")
@click.pass_context
def bot(ctx: click.Context, polling: bool, host: str, port: int) -> None:
    """Run the Telegram bot that businesses subscribe to.

    By long polling with --polling (or when no webhook_url is set); else it serves
    the webhook (with the tracker) on --host and --port.
    """
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from outreach.db import Access

    obj = ctx.find_object(Context)
    assert obj is not None
    with obj.store(Access.write) as store:
        parts = _bot_parts(obj, store, webhook=False if polling else None, required=True)
        assert parts is not None
        asyncio.run(_run_bot(obj, store, parts, (host, port)))
    click.echo("bot: stopped", err=True)


@bot.command("set-webhook")
@click.argument("url", required=False)
@click.option("--delete", is_flag=True, help="Remove the webhook (back to polling).")
@pass_ctx
def bot_set_webhook(obj: Context, url: str | None, delete: bool) -> None:
    """Tell Telegram where to send updates [default: webhook_url from schedules.yaml]."""
    import asyncio

    from channels.telegram_bot import register_webhook

    block, token = _bot_block(obj, required=True)
    assert block is not None
    assert token is not None
    target = None if delete else url or block.webhook_url
    if not delete and target is None:
        raise click.BadParameter("give the URL, or set channels.telegram_bot.webhook_url", param_hint="URL")
    said = asyncio.run(register_webhook(block, token, target, obj.settings.secrets))
    click.echo(said)


def _bot_block(obj: Context, required: bool) -> tuple[Any, Any]:
    """The bot's settings and token; (None, None) when it is not configured (an error when `required`)."""
    from channels.telegram_bot import NAME, BotSetupError, token_variable

    settings = obj.settings
    block = settings.schedule.channels.enabled().get(NAME)
    if block is None:
        if required:
            raise BotSetupError(f"no channels.{NAME} block is enabled in {settings.config_path}")
        return None, None
    variable = token_variable(block)
    token = settings.secrets.get(variable)
    if token is None and required:
        raise BotSetupError(f"no bot token in {variable}: set it (from @BotFather) in the environment or .env")
    return block, token


def _bot_parts(obj: Context, store: Store, webhook: bool | None, required: bool = False) -> Any:
    """The bot's Application and (webhook mode) the tracker's hook; None when the bot is not set up."""
    from channels.telegram_bot import bot_parts
    from outreach.lifecycle import Actor

    block, token = _bot_block(obj, required)
    if block is None or token is None:
        if block is not None:
            click.echo("bot: no token, so the bot does not answer (messages to subscribers go to the outbox)", err=True)
        return None
    return bot_parts(obj.settings, block, token, store, Actor.current(obj.acting_as or "bot"), webhook)


async def _run_bot(obj: Context, store: Store, parts: Any, listen: tuple[str, int]) -> None:
    """The bot alone: polling, or the webhook served on `listen` (with the tracker, so links work too)."""
    import asyncio
    import signal

    from channels.telegram_bot import run_application
    from outreach.serve import tracker_server
    from outreach.web import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))
    server = None
    if parts.hook is not None:
        settings = obj.settings
        app = create_app(
            store, settings.schedule.tracker, settings.click_spool, settings.click_salt, telegram=parts.hook
        )
        server = tracker_server(app, *listen)
        click.echo(f"bot: webhook on {listen[0]}:{listen[1]}/telegram/…", err=True)
    else:
        click.echo("bot: polling Telegram for updates", err=True)
    serving = asyncio.create_task(server.serve()) if server is not None else None
    try:
        await run_application(parts.app, polling=parts.hook is None, stop=stop)
    finally:
        if server is not None and serving is not None:
            server.should_exit = True
            await serving


@main.command()
@click.option("--since", help="From: 2026-11-01, 30d, this-month, last-month, 2026-10, 2026-Q3, 2026 [default: 30d].")
@click.option("--until", help="To (included): a date or one of the same forms [default: today].")
@click.option(
    "--by",
    "by",
    default="channel",
    show_default=True,
    help="channel, campaign, topic, source, day, week, month; combine with commas.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json", "html"]), default="table", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file [html: outreach-report-SINCE-UNTIL.html].",
)
@click.option(
    "--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True, help="The HTML report's language."
)
@pass_ctx
def report(
    obj: Context, since: str | None, until: str | None, by: str, fmt: str, output: Path | None, lang: str
) -> None:
    """Referral traffic and businesses reached, for a period."""
    from outreach.db import Access
    from outreach.report_data import ReportError, build_report_data, parse_by
    from outreach.report_period import PeriodError, parse_period
    from outreach.report_text import print_report_data, to_json, write_csv

    try:
        period = parse_period(since, until, obj.settings.zone)
    except PeriodError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since' / '--until'") from None
    try:
        dimensions = parse_by(by)
    except ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="'--by'") from None
    with obj.store(Access.read) as store, store.sessions() as session:
        data = build_report_data(session, obj.settings, period, dimensions, lang)
    if fmt == "table":
        out = console()
        print_report_data(out, data)
        out.print("Where each target's posts go now:")
        for route in obj.routes():
            out.print(f"  {route}", soft_wrap=True, markup=False)
        return
    if fmt == "html":
        from outreach.report_html import render_html

        target = output or Path(f"outreach-report-{period.since}-{period.until}.html")
        target.write_text(render_html(data, lang, obj.settings.templates_dir), encoding="utf-8")
        click.echo(f"report written to {target.resolve()}")
        return
    if fmt == "json":
        text = to_json(data) + "\n"
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
        return
    if output is None:
        import sys

        write_csv(data, sys.stdout)
    else:
        with output.open("w", encoding="utf-8-sig", newline="") as stream:  # the BOM: Excel reads Vietnamese right
            write_csv(data, stream)


@main.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work in this folder and keep it [default: a new temporary folder; earlier ones are removed].",
)
@pass_ctx
def demo(obj: Context, folder: Path | None) -> None:
    """Run the whole pipeline offline on bundled sample feeds."""
    from channels import LIMITS, build_routing, variable_for
    from outreach.demo import DemoFolderError, Wiring, prepare_folder, run_demo
    from outreach.packaged import STARTER_CONFIG

    if not obj.config_given and not obj.config_path.exists():
        obj.config_path = STARTER_CONFIG  # no config here: the packaged starter one
    settings = obj.settings
    try:
        prepared = prepare_folder(folder)
    except DemoFolderError as exc:
        raise click.BadParameter(str(exc), param_hint="'--dir'") from None
    wiring = Wiring(limits=LIMITS, connect=build_routing, token_variable=variable_for, run_bot=_demo_bot)
    run_demo(settings, wiring, console(), *prepared, keep=folder is not None)


def _demo_bot(settings: Settings, store: Store) -> Any:
    """The demo's bot: the real Application, polling the emulated Telegram, in a thread of its own."""
    from channels.telegram_bot import NAME, bot_parts, running_in_thread, token_variable
    from outreach.lifecycle import Actor

    block = settings.schedule.channels.enabled()[NAME]
    token = settings.secrets.get(token_variable(block))
    assert token is not None, "the emulated platforms give the bot a token"
    return running_in_thread(bot_parts(settings, block, token, store, Actor("demo"), webhook=False))


if __name__ == "__main__":
    main()
