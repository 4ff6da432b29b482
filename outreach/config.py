"""Settings: `schedules.yaml` plus the environment, validated once at start-up.

Everything that varies between installs lives in one typed `Settings` object that
the CLI builds and passes down; no other module reads `os.environ`. Errors name the
file, the line and the key, because staff edit this file by hand.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from outreach import dburl
from outreach.channel_config import (
    ChannelModels,
    Channels,
    Language,
    Strict,
    validate_channels,
)

DEFAULT_CONFIG = "schedules.yaml"
DEFAULT_DATABASE_URL = "sqlite:///outreach.db"


class ConfigError(Exception):
    """Invalid configuration: each problem names where it is (file:line: key)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class Labels(Strict):
    """A text in each supported language."""

    vi: str
    en: str

    def get(self, language: str) -> str:
        """The text in a language; Vietnamese, the portal's own, for any other."""
        return self.en if language == "en" else self.vi


class Topic(Strict):
    """A business section items are filed under; keywords are matched accent-free."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)  # it travels in a bot button's 64 bytes
    label: Labels
    keywords: list[str] = []


def regular_expressions(patterns: list[str]) -> list[str]:
    """The patterns, each checked to compile; a ValueError names the first that does not."""
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"{pattern!r} is not a regular expression: {error}") from None
    return patterns


def css_selector(value: str | None) -> str | None:
    """The selector, checked to compile; a ValueError names it when it does not."""
    if value is None:
        return None
    from cssselect import GenericTranslator, SelectorError  # only configs with listing pages pay for it

    try:
        GenericTranslator().css_to_xpath(value)
    except SelectorError as error:
        raise ValueError(f"{value!r} is not a CSS selector: {error}") from None
    return value


class Listing(Strict):
    """Where a portal listing page (source kind `html`) keeps its articles: CSS selectors.

    `item` selects each article's block on the page; the others are looked up
    inside that block. `next` is looked up on the whole page and followed up to
    `max_pages` pages.
    """

    item: str
    link: str = "a[href]"  # its href is the article's address (and its id)
    title: str | None = None  # default: the link's text
    date: str | None = None  # text (or a `datetime` / `content` attribute) in any date spelling feeds use
    summary: str | None = None
    image: str | None = None  # an <img> (src, data-src or srcset) or any element with href / content
    next: str | None = None  # the "next page" link
    max_pages: int = Field(default=3, ge=1, le=50)

    @field_validator("item", "link", "title", "date", "summary", "image", "next")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        return css_selector(value)


class SitemapOptions(Strict):
    """How a `sitemap` source picks articles out of a sitemap (or a sitemap index)."""

    # The first poll takes only the most recent N URLs: a portal's whole archive is not news.
    first_run: int = Field(default=20, ge=1, le=100)
    # Only URLs whose path matches one of these (regular expressions); none: every URL.
    include: list[str] = []
    max_sitemaps: int = Field(default=20, ge=1, le=200)  # child sitemaps read from an index per poll

    @field_validator("include")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        return regular_expressions(value)


SourceKind = Literal["feed", "sitemap", "html"]


class Source(Strict):
    """One portal source to poll: an RSS/Atom feed, a sitemap, or a listing page read with CSS selectors."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str = Field(pattern=r"^(https?|file)://")
    kind: SourceKind = "feed"
    language: Language = "vi"
    topics: list[str] = []
    poll_minutes: int = Field(default=30, ge=1)
    listing: Listing | None = None  # required for kind `html`
    sitemap: SitemapOptions = SitemapOptions()
    # Fetch the article page for items without a summary or image (OpenGraph, Twitter card,
    # meta description). Default: on for sitemaps (they carry no title) and listing pages.
    article_metadata: bool | None = None

    @model_validator(mode="after")
    def _listing_for_html(self) -> Source:
        if self.kind == "html" and self.listing is None:
            raise ValueError("a source of kind html needs `listing:` with at least an `item` selector")
        if self.kind != "html" and self.listing is not None:
            raise ValueError(f"`listing:` is for sources of kind html (this one is {self.kind})")
        return self

    @property
    def wants_metadata(self) -> bool:
        """Whether items missing a summary or image get their article page read."""
        return self.kind != "feed" if self.article_metadata is None else self.article_metadata


class AgentPatterns(Strict):
    """Extra user-agent patterns (case-insensitive regular expressions), added to the packaged rules."""

    preview: list[str] = []  # a chat or social app fetching a link card
    bot: list[str] = []  # anything else that is not a person
    human: list[str] = []  # in-app browsers that a crawler list would otherwise catch

    @field_validator("preview", "bot", "human")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        return regular_expressions(value)


class Burst(Strict):
    """More than `clicks` taps from one visitor on one link within `seconds` are repeats."""

    clicks: int = Field(default=10, ge=1)
    seconds: float = Field(default=10, gt=0)


class Tracker(Strict):
    """The short-link redirector: its public address and where it may send people."""

    public_url: str = Field(pattern=r"^https?://[^/\s]+")
    allowed_domains: list[str] = Field(min_length=1)
    utm_medium: str = "social"
    # Where the 404 page sends people; default: https:// and the first allowed domain.
    portal_home: str | None = Field(default=None, pattern=r"^https?://[^/\s]+")
    agents: AgentPatterns = AgentPatterns()
    burst: Burst = Burst()
    # Addresses (or networks) of reverse proxies whose X-Forwarded-For / Forwarded are believed.
    trusted_proxies: list[str] = []
    # Clicks wait here (append-only, fsynced) while the database is unavailable; relative to the config.
    spool: str = "spool"

    @property
    def home(self) -> str:
        """The portal's home page, for the 404 page's link."""
        return self.portal_home or f"https://{self.allowed_domains[0]}/"

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("allowed_domains")
    @classmethod
    def _lower(cls, value: list[str]) -> list[str]:
        return [d.strip().lower().lstrip(".") for d in value]


class Fetch(Strict):
    """How sources are fetched: slow or huge portals must not hang a poll, and article pages are read politely."""

    timeout_seconds: float = Field(default=20.0, gt=0)
    max_bytes: int = Field(default=5_000_000, ge=1024)
    user_agent: str = "outreach/0.1 (+portal feed reader)"
    # Who to write to about our fetching (an e-mail or a web address); it goes into the User-Agent.
    contact: str | None = None
    # Article pages (for metadata): at most this many at once on one host, this far apart.
    article_concurrency: int = Field(default=2, ge=1, le=2)
    article_delay_seconds: float = Field(default=1.0, ge=0)

    @property
    def agent(self) -> str:
        """The User-Agent sent: the configured one, naming the contact when there is one."""
        if not self.contact or self.contact in self.user_agent:
            return self.user_agent
        return f"{self.user_agent} ({self.contact})"


class AuditSection(Strict):
    """Information a portal must publish (Decree 42/2022), mapped onto topics, sources or URL paths."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)
    label: Labels
    topics: list[str] = []  # items filed under any of these count
    sources: list[str] = []  # items from any of these count
    paths: list[str] = []  # items whose URL path matches one of these regular expressions count
    required: bool = True

    @field_validator("paths")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        return regular_expressions(value)


class Audit(Strict):
    """The coverage audit (`outreach audit`): required sections, and how old is stale."""

    sections: list[AuditSection] = []
    windows_days: list[Annotated[int, Field(ge=1, le=3650)]] = Field(default=[30, 90], min_length=1, max_length=4)


class Rule(Strict):
    """New items that match become campaigns by themselves: drafts for staff, or approved by the rule."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    topics: list[str] = []  # any of these; none: any topic
    sources: list[str] = []  # none: any source
    language: Language | None = None
    channels: list[str] = []  # none: every enabled channel
    template: str | None = None
    approved: bool = False  # true: the rule is the approval (the config's author vouches)
    max_age_days: float = Field(default=3, gt=0)  # older items are not announced by a rule


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Digest(Strict):
    """A daily digest: the day's matching items in one campaign, at a set time (cron-like days)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    at: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local time, HH:MM
    days: str = "mon-fri"  # as cron writes them: mon-fri, sat,sun, mon-sun
    language: Language = "vi"
    topics: list[str] = []  # any of these; none: any topic
    channels: list[str] = []  # none: every enabled channel
    approved: bool = False
    max_items: int = Field(default=8, ge=1, le=30)

    @field_validator("days")
    @classmethod
    def _known_days(cls, value: str) -> str:
        for part in value.split(","):
            ends = part.strip().split("-")
            if len(ends) > 2 or not all(end in WEEKDAYS for end in ends):
                raise ValueError(f"{part!r} is not a day or a range of days ({', '.join(WEEKDAYS)}; e.g. mon-fri)")
        return value


class HolidaySettings(Strict):
    """Days no channel with `skip_holidays` posts: the country's public holidays plus extra dates."""

    country: str = "VN"
    extra: list[date] = []  # the government's yearly swap days, and other days off


class ActiveBusinesses(Strict):
    """How many businesses are active in the province, by whose count and of which year (the office's figure)."""

    count: int = Field(gt=0)
    year: int = Field(ge=2000, le=2100)
    source: str = Field(min_length=1)


class Reports(Strict):
    """The PCI targets the report measures against, and the province's business count."""

    # Share of businesses that access the portal: over 90 %, then 95 % (PCI indicator 3.12).
    targets: list[float] = Field(default=[0.90, 0.95], min_length=1, max_length=4)
    active_businesses: ActiveBusinesses | None = None

    @field_validator("targets")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if any(not 0 < share <= 1 for share in value):
            raise ValueError("targets are shares between 0 and 1 (0.9 for 90 %)")
        return sorted(value)


class DispatchSettings(Strict):
    """How the dispatcher treats a crash: a `sending` row older than the lease was interrupted."""

    sending_lease_seconds: float = Field(default=300, gt=0)


class Schedule(Strict):
    """The whole of `schedules.yaml`, version 1."""

    version: Literal[1]
    timezone: str = "Asia/Ho_Chi_Minh"
    topics: list[Topic] = []
    sources: list[Source] = []
    channels: Channels = Channels()  # checked per platform by `validate_channels`
    tracker: Tracker
    fetch: Fetch = Fetch()
    # Government use: nothing goes out before someone other than its creator approves it.
    require_approval: bool = True
    rules: list[Rule] = []
    digests: list[Digest] = []
    holidays: HolidaySettings = HolidaySettings()
    dispatch: DispatchSettings = DispatchSettings()
    reports: Reports = Reports()
    audit: Audit = Audit()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    def topic(self, topic_id: str) -> Topic:
        """The topic with this id (KeyError when there is none)."""
        for topic in self.topics:
            if topic.id == topic_id:
                return topic
        raise KeyError(topic_id)

    def source(self, name: str) -> Source:
        """The source with this name (KeyError when there is none)."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


class Secrets:
    """Values of the environment variables that hold secrets; shown by name only.

    Which variables matter is known by whoever asks: the platform specs name
    their token variables, targets may name their own, the tracker its salt.
    """

    def __init__(self, env: Mapping[str, str | None] | None = None) -> None:
        self._values = {name: value for name, value in (env or {}).items() if value}

    def get(self, name: str) -> SecretStr | None:
        """The secret in this variable, or None when it is unset or empty."""
        value = self._values.get(name)
        return SecretStr(value) if value else None

    def __repr__(self) -> str:
        return f"Secrets({len(self._values)} variables, values hidden)"


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know about this install."""

    schedule: Schedule
    config_path: Path
    database_url: str = DEFAULT_DATABASE_URL
    secrets: Secrets = field(default_factory=Secrets)
    templates_dir: Path | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The zone people read times in."""
        return ZoneInfo(self.schedule.timezone)

    @property
    def click_spool(self) -> Path:
        """The tracker's spool folder: a relative path is read from the config file's folder."""
        return self.config_path.parent / self.schedule.tracker.spool

    @property
    def click_salt(self) -> bytes | None:
        """The key of the visitors' network hashes (OUTREACH_CLICK_SALT), if set."""
        salt = self.secrets.get("OUTREACH_CLICK_SALT")
        return salt.get_secret_value().encode() if salt else None


def environment(dotenv_path: Path) -> dict[str, str | None]:
    """The process environment over the values of an optional `.env` file."""
    merged: dict[str, str | None] = dict(dotenv_values(dotenv_path)) if dotenv_path.is_file() else {}
    merged.update(os.environ)
    return merged


def load_schedule(path: Path, channel_models: ChannelModels | None = None) -> Schedule:
    """Read and validate a schedules.yaml; raise ConfigError naming file, line, key.

    `channel_models` are the platforms' settings models by channel name (the
    registry's); without them any `channels:` block but the outbox is unknown.
    """
    text = _read(path)
    loader = _UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        _check_size(path, root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        context = f" ({exc.context} at line {exc.context_mark.line + 1})" if exc.context and exc.context_mark else ""
        raise ConfigError([f"{path}{line}: invalid YAML: {exc.problem or exc}{context}"]) from None
    except RecursionError:
        # PyYAML composes nested blocks recursively; no real config comes near the limit.
        raise ConfigError([f"{path}: invalid YAML: nested too deeply (a config needs a few levels)"]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError([f"{path}:1: the file must be a mapping with `version: 1` at the top"])
    channels, channel_problems = validate_channels(data.pop("channels", None), channel_models or {})
    try:
        schedule = Schedule.model_validate({**data, "channels": channels})
    except ValidationError as exc:
        found = [(tuple(err["loc"]), err["msg"]) for err in exc.errors()]
        raise ConfigError([_located(path, root, loc, msg) for loc, msg in [*channel_problems, *found]]) from None
    problems = [_located(path, root, loc, msg) for loc, msg in [*channel_problems, *_cross_check(schedule)]]
    if problems:
        raise ConfigError(problems)
    return schedule


MAX_CONFIG_BYTES = 1_000_000
# Aliases make YAML a graph: `*a` ten times over `&a [*b, *b, ...]` expands to
# billions of values that validation would walk. A real config has hundreds.
MAX_CONFIG_VALUES = 100_000


def _read(path: Path) -> str:
    """The config's text, or a ConfigError saying why it cannot be had."""
    try:
        if not path.is_file() and path.exists():  # /dev/zero, a FIFO: never ends, or never starts
            raise ConfigError([f"{path}: not a regular file; give the path of schedules.yaml"])
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise ConfigError([f"{path}: config file larger than {MAX_CONFIG_BYTES:,} bytes; is it the right file?"])
        return data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [
                f"{path.absolute()}: config file not found (use --config or OUTREACH_CONFIG, "
                "or write a starter one with `outreach init --config-example > schedules.yaml`)"
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read config: {exc}"]) from None


def _check_size(path: Path, root: yaml.Node | None) -> None:
    """Refuse a document whose aliases expand it beyond any real config."""
    stack, seen = [root], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError([f"{path}: YAML expands to more than {MAX_CONFIG_VALUES:,} values (aliases?)"])
        if isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice: YAML keeps the last one silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    f"in the mapping starting at line {node.start_mark.line + 1}",
                    node.start_mark,
                    f"key {key!r} appears twice (first at line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _cross_check(schedule: Schedule) -> list[tuple[tuple[str | int, ...], str]]:
    """References between sections that field validation cannot see."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    known = [t.id for t in schedule.topics]
    for i, topic in enumerate(schedule.topics):
        if known.index(topic.id) != i:
            problems.append((("topics", i, "id"), f"duplicate topic id {topic.id!r}"))
    names = [s.name for s in schedule.sources]
    for i, source in enumerate(schedule.sources):
        if names.index(source.name) != i:
            problems.append((("sources", i, "name"), f"duplicate source name {source.name!r}"))
        for j, topic_id in enumerate(source.topics):
            if topic_id not in known:
                choices = ", ".join(known) or "none defined"
                problems.append((("sources", i, "topics", j), f"unknown topic id {topic_id!r} (known: {choices})"))
    rule_names = [r.name for r in schedule.rules]
    for i, rule in enumerate(schedule.rules):
        if rule_names.index(rule.name) != i:
            problems.append((("rules", i, "name"), f"duplicate rule name {rule.name!r}"))
        for j, topic_id in enumerate(rule.topics):
            if topic_id not in known:
                problems.append((("rules", i, "topics", j), f"unknown topic id {topic_id!r}"))
        for j, source_name in enumerate(rule.sources):
            if source_name not in names:
                problems.append(
                    (("rules", i, "sources", j), f"unknown source {source_name!r} (known: {', '.join(names)})")
                )
        problems += _unknown_channels(schedule, ("rules", i), rule.channels)
    for i, digest in enumerate(schedule.digests):
        if digest.name in rule_names or [d.name for d in schedule.digests].index(digest.name) != i:
            problems.append((("digests", i, "name"), f"name {digest.name!r} is taken by another rule or digest"))
        for j, topic_id in enumerate(digest.topics):
            if topic_id not in known:
                problems.append((("digests", i, "topics", j), f"unknown topic id {topic_id!r}"))
        problems += _unknown_channels(schedule, ("digests", i), digest.channels)
    section_ids = [section.id for section in schedule.audit.sections]
    for i, section in enumerate(schedule.audit.sections):
        where = ("audit", "sections", i)
        if section_ids.index(section.id) != i:
            problems.append(((*where, "id"), f"duplicate section id {section.id!r}"))
        if not (section.topics or section.sources or section.paths):
            problems.append((where, "a section needs topics, sources or paths to count items by"))
        problems += [
            ((*where, "topics", j), f"unknown topic id {topic_id!r}")
            for j, topic_id in enumerate(section.topics)
            if topic_id not in known
        ]
        problems += [
            ((*where, "sources", j), f"unknown source {name!r}")
            for j, name in enumerate(section.sources)
            if name not in names
        ]
    return problems


def _unknown_channels(
    schedule: Schedule, where: tuple[str | int, ...], channels: Sequence[str]
) -> list[tuple[tuple[str | int, ...], str]]:
    known = ", ".join(schedule.channels.platforms) or "none configured"
    return [
        ((*where, "channels", j), f"unknown channel {channel!r} (known: {known})")
        for j, channel in enumerate(channels)
        if channel not in schedule.channels.platforms
    ]


def _located(path: Path, root: yaml.Node | None, loc: Sequence[str | int], msg: str) -> str:
    """`file:line: key.path: message`, the line found by walking the YAML nodes."""
    line = _line_of(root, loc) if root is not None else 1
    return f"{path}:{line}: {_key_path(loc) or '(top level)'}: {msg}"


def _key_path(loc: Sequence[str | int]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + str(part))
    return "".join(parts)


def _line_of(node: yaml.Node, loc: Sequence[str | int]) -> int:
    """1-based line of the deepest node the location reaches."""
    line = node.start_mark.line + 1
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line, child = key.start_mark.line + 1, value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def load_settings(
    config_path: Path,
    database_url: str | None = None,
    templates_dir: Path | None = None,
    env: Mapping[str, str | None] | None = None,
    channel_models: ChannelModels | None = None,
) -> Settings:
    """Build the one Settings object from the config file and the environment.

    `channel_models`: each platform's settings model by channel name, from the
    channel registry (the core knows no platform).

    Paths in the config, `.env` and a relative SQLite path in OUTREACH_DATABASE_URL
    or the default URL are read from the config file's folder, so cron, a service
    and a shell elsewhere all find the same files. A `database_url` argument comes
    from the command line and is read from the working folder, as shells do.
    """
    folder = config_path.absolute().parent
    env = environment(folder / ".env") if env is None else env
    schedule = load_schedule(config_path, channel_models)
    outbox = schedule.channels.outbox
    if not outbox.dir.is_absolute():
        channels = schedule.channels.model_copy(
            update={"outbox": outbox.model_copy(update={"dir": folder / outbox.dir})}
        )
        schedule = schedule.model_copy(update={"channels": channels})
    return Settings(
        schedule=schedule,
        config_path=config_path,
        database_url=_database_url(database_url, env, folder),
        secrets=Secrets(env),
        templates_dir=templates_dir,
    )


def _database_url(given: str | None, env: Mapping[str, str | None], folder: Path) -> str:
    """The URL to use, absolute, and checked before anything connects."""
    if given:
        origin, url, base = "--db", given, Path.cwd()
    elif env.get("OUTREACH_DATABASE_URL"):
        origin, url, base = "OUTREACH_DATABASE_URL", env["OUTREACH_DATABASE_URL"] or "", folder
    else:
        origin, url, base = "the default database URL", DEFAULT_DATABASE_URL, folder
    try:
        return dburl.resolve(url, base)
    except dburl.BadDatabaseUrl as exc:
        raise ConfigError([f"{origin}: {exc}"]) from None
