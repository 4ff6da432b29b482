"""Staff tools for sources: try one without storing anything, and add one to schedules.yaml.

A portal section with no feed is read with CSS selectors that staff tune by
trial: `sources test` reads it exactly as the poll would (`read_source`) and
shows the first items as parsed, with the warnings and the charset used. Once
right, `sources add` writes it into schedules.yaml with ruamel.yaml, which keeps
the file's comments and layout (PyYAML would drop every comment staff wrote);
the new file is validated as a whole before it replaces the old one.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent
from yaml import YAMLError
from yaml import safe_load as yaml_safe_load

from outreach import config
from outreach.channel_config import ChannelModels
from outreach.fetch import Fetcher
from outreach.ingest import folded_text
from outreach.models import utcnow
from outreach.source_read import SourceRead, read_source
from outreach.topics import TopicMatcher

SHOWN = 10  # items `sources test` prints: enough to judge selectors, few enough to read


class SourceSpecError(ValueError):
    """Options that do not make a valid source; the message says which and why."""


def source_spec(fields: Mapping[str, Any]) -> config.Source:
    """A `config.Source` from the fields staff gave; SourceSpecError saying which is wrong."""
    try:
        return config.Source.model_validate(fields)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'source'}: {err['msg']}" for err in exc.errors()]
        raise SourceSpecError("; ".join(problems)) from None


def try_source(spec: config.Source, schedule: config.Schedule, at: datetime | None = None) -> SourceRead:
    """Read `spec` once as the poll would on its first run, keeping the first SHOWN items; nothing stored."""
    with Fetcher(schedule.fetch) as fetcher:
        zone, domains = ZoneInfo(schedule.timezone), schedule.tracker.allowed_domains
        return read_source(spec, fetcher, zone, at or utcnow(), limit=SHOWN, domains=domains)


def print_reading(out: Console, spec: config.Source, read: SourceRead, schedule: config.Schedule) -> None:
    """What `sources test` found: the state, charset, warnings, then each item's parsed fields."""
    zone = ZoneInfo(schedule.timezone)
    matcher = TopicMatcher(schedule.topics)
    out.print(f"[b]{escape(spec.name)}[/b] ({spec.kind}, {spec.language}) {escape(spec.url)}", soft_wrap=True)
    out.print(
        f"  read {read.documents} document(s), charset {read.encoding or 'n/a'}, {len(read.entries)} item(s) shown",
        highlight=False,
    )
    if read.problem:
        out.print(f"  [red]error:[/red] {escape(read.problem)}", soft_wrap=True)
    for warning in read.warnings:
        out.print(f"  [yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    for number, entry in enumerate(read.entries, 1):
        when = entry.published_at.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        topics = matcher.match_folded(folded_text(entry), spec.topics)  # as the poll files it
        out.print(f"[b]{number}. {escape(entry.title)}[/b]", soft_wrap=True)
        lines = [
            ("link", entry.url),
            ("date", when if entry.dated else f"{when} (no date found: the fetch time)"),
            ("summary", entry.summary[:200] + ("…" if len(entry.summary) > 200 else "") or "-"),
            ("image", entry.image_url or "-"),
            ("topics", ", ".join(topics) or "-"),
        ]
        for label, value in lines:
            out.print(f"   {label:>7}: {escape(value)}", soft_wrap=True, highlight=False)


def add_source(config_path: Path, spec: config.Source, given: Mapping[str, Any], channel_models: ChannelModels) -> None:
    """Append the source to `config_path`'s `sources:`, keeping comments and layout.

    `given` holds only what staff set (defaults stay out of the file). The new
    text is validated like any config before it atomically replaces the old;
    a ConfigError (naming file and line) leaves the file as it was.
    """
    target = config_path.resolve()  # a symlinked config stays a symlink; its target gets the source
    text = target.read_text(encoding="utf-8")
    yaml = YAML()  # round-trip mode: comments, order and quoting survive
    # Quotes kept as written: ruamel writes YAML 1.2, and the config is read as 1.1, where an
    # unquoted 17:00 is a number (1020).
    yaml.preserve_quotes = True
    document, indent, sequence_indent = load_yaml_guess_indent(text, yaml=yaml)
    yaml.indent(mapping=_mapping_indent(text), sequence=indent or 2, offset=sequence_indent or 0)
    yaml.width = 4096  # never fold a long URL or selector onto two lines
    if not isinstance(document, CommentedMap):
        raise config.ConfigError([f"{config_path}:1: the file must be a mapping with `version: 1` at the top"])
    sources = document.get("sources")
    if sources is None:
        sources = document["sources"] = CommentedSeq()
    if any(isinstance(s, Mapping) and s.get("name") == spec.name for s in sources):
        raise config.ConfigError([f"{config_path}: sources: a source named {spec.name!r} is already there"])
    entry = _plain(given)
    if sources and isinstance(sources[-1], CommentedMap):
        _hand_on_trailing_comment(sources[-1], entry)
    sources.append(entry)
    handle, temp_name = tempfile.mkstemp(prefix=".schedules-", suffix=".yaml", dir=target.parent)
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            yaml.dump(document, out)
        config.load_schedule(temp, channel_models)  # the whole file must still be valid
        os.chmod(temp, target.stat().st_mode & 0o7777)  # staff's permissions, not mkstemp's 0600
        temp.replace(target)
    except config.ConfigError as exc:
        raise config.ConfigError([p.replace(str(temp), str(config_path)) for p in exc.problems]) from None
    finally:
        temp.unlink(missing_ok=True)


def _hand_on_trailing_comment(previous: CommentedMap, entry: CommentedMap) -> None:
    """Blank lines and comments after the last source belong to what follows the list: keep them after the new one.

    ruamel.yaml hangs them on the last source's last value, with that value's own
    end-of-line comment in front; only what comes after that line moves.
    """
    while previous and isinstance(last := previous[list(previous)[-1]], CommentedMap) and last:
        previous = last
    tokens = previous.ca.items.get(list(previous)[-1]) if previous else None
    token = tokens[2] if tokens and len(tokens) > 2 else None
    if token is None:
        return
    own, newline, after = token.value.partition("\n")
    if not after:
        return
    moved = copy.copy(token)
    moved.value = "\n" + after
    token.value = own + newline
    while isinstance(last := entry[list(entry)[-1]], CommentedMap) and last:
        entry = last  # the comment goes after the deepest last value: the line written last
    entry.ca.items[list(entry)[-1]] = [None, None, moved, None]


def _mapping_indent(text: str) -> int:
    """How far the file indents a mapping under a top-level key (ruamel guesses only the sequences' indent)."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for line, following in pairwise(lines):
        nested = following.lstrip()
        if not line.startswith((" ", "-")) and line.rstrip().endswith(":") and not nested.startswith("-"):
            return len(following) - len(nested)
    return 2


def _plain(given: Mapping[str, Any]) -> CommentedMap:
    """The source as a YAML mapping in the order staff read it (name, url, kind first)."""
    order = ["name", "url", "kind", "language", "topics", "poll_minutes", "listing", "sitemap", "article_metadata"]
    entry = CommentedMap()
    for key in sorted(given, key=lambda k: order.index(k) if k in order else len(order)):
        value = given[key]
        entry[key] = (
            CommentedMap((k, _scalar(v)) for k, v in value.items()) if isinstance(value, Mapping) else _scalar(value)
        )
    return entry


def _scalar(value: Any) -> Any:
    """A value as it must be written to be read back the same by the config's YAML 1.1 loader."""
    if isinstance(value, list):
        return [_scalar(v) for v in value]
    if isinstance(value, str) and not _reads_back(value):
        return DoubleQuotedScalarString(value)  # "17:00", "no", "1e3", "[data-x]", "#main a" ...
    return value


def _reads_back(text: str) -> bool:
    try:
        return bool(yaml_safe_load(text) == text)
    except YAMLError:
        return False
