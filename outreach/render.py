"""Rendering posts with Jinja2: per-channel escaping, fitted to each channel's limit.

Templates live at `templates/<channel>/<name>.<lang>.j2`; a user folder given with
`--templates` is searched first, so staff can reword posts without touching code.
A post too long for its channel loses words from the end of the summary (then of
the title), never from the link.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from outreach.channel import ChannelLimits
from outreach.config import Schedule
from outreach.packaged import TEMPLATES

ELLIPSIS = " …"
_TAG = re.compile(r"<[^>]*>")


class RenderError(Exception):
    """A template is missing or broken, or its fixed text alone is over the limit."""


class UnknownTemplate(RenderError):
    """No template by that name for a channel and language."""

    def __init__(self, message: str, channel: str) -> None:
        super().__init__(message)
        self.channel = channel


@dataclass(frozen=True)
class TopicView:
    """A topic as templates see it: its label already in the post's language."""

    id: str
    label: str


@dataclass(frozen=True)
class ItemView:
    """An item as templates see it; title and summary may be shortened to fit."""

    title: str
    summary: str
    url: str
    image_url: str | None
    published: datetime  # in the install's time zone
    language: str


@dataclass(frozen=True)
class CampaignView:
    """A campaign as templates see it."""

    id: int | None
    title: str
    utm_campaign: str


@dataclass(frozen=True)
class DigestEntry:
    """One item of a digest, with its own tracked link."""

    item: ItemView
    link: str


@dataclass(frozen=True)
class PostContext:
    """Everything a post template may use (`item` for one item, `items` for a digest, `message` for staff text)."""

    item: ItemView | None
    topics: Sequence[TopicView]
    link: str
    campaign: CampaignView
    language: str
    items: Sequence[DigestEntry] = ()
    message: str | None = None


def visible_length(text: str, markup: str) -> int:
    """Length as the platform counts it: after HTML parsing, in UTF-16 code units."""
    if markup == "html":
        text = html.unescape(_TAG.sub("", text))
    return len(text.encode("utf-16-le")) // 2


MIN_CUT = 20  # a cut that keeps fewer characters than this says nothing


def shorten(text: str, width: int) -> str:
    """Cut at a word boundary to at most `width` characters, marking the cut.

    A first word longer than the room (a bare URL, a run of emoji) is cut inside;
    when too little would remain, the text is dropped rather than left as "…".
    """
    if len(text) <= width:
        return text
    if width < MIN_CUT:
        return ""
    cut = textwrap.shorten(text, width=width, placeholder=ELLIPSIS)
    if cut == ELLIPSIS.strip():
        cut = text[: width - len(ELLIPSIS)].rstrip() + ELLIPSIS
    return cut


class Renderer:
    """Renders posts for any channel from one template environment."""

    def __init__(
        self,
        schedule: Schedule,
        platform_limits: Mapping[str, ChannelLimits],
        override_dir: Path | None = None,
        builtin_dir: Path = TEMPLATES,
    ) -> None:
        self.schedule = schedule
        self.platform_limits = platform_limits  # from each platform's spec
        self.folders = [str(p) for p in (override_dir, builtin_dir) if p is not None]
        html_channels = {name for name, limits in platform_limits.items() if limits.markup == "html"}
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.folders),
            # Telegram's HTML parse mode needs <, >, & escaped; Facebook takes plain text.
            autoescape=lambda name: name is not None and name.split("/", 1)[0] in html_channels,  # noqa: S701 - per channel
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def limits(self, channel: str) -> ChannelLimits:
        """The platform's limits, narrowed by `max_text` in the channel's config."""
        limits = self.platform_limits[channel]
        configured = self.schedule.channels.enabled().get(channel)
        if configured is not None and configured.max_text:
            limits = replace(limits, max_text=min(limits.max_text, configured.max_text))
        return limits

    def topic_views(self, topic_ids: Sequence[str], language: str) -> list[TopicView]:
        """Labels for the item's topics in the post's language (unknown ids dropped)."""
        views = []
        for topic_id in topic_ids:
            try:
                label = getattr(self.schedule.topic(topic_id).label, language)
            except KeyError:
                continue
            views.append(TopicView(topic_id, label))
        return views

    def template(self, channel: str, template: str, language: str) -> jinja2.Template:
        """The compiled template; UnknownTemplate or RenderError say what is wrong and where."""
        name = f"{channel}/{template}.{language}.j2"
        try:
            return self.env.get_template(name)
        except jinja2.TemplateNotFound:
            known = sorted(
                {n.split("/")[1].split(".")[0] for n in self.env.list_templates() if n.startswith(f"{channel}/")}
            )
            raise UnknownTemplate(
                f"no template {template!r} for {channel} in {language} ({name} is in none of {', '.join(self.folders)}; "
                f"{channel} has: {', '.join(known) or 'none'})",
                channel,
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{exc.filename or name}:{exc.lineno}: {exc.message}") from None

    def render(self, channel: str, template: str, context: PostContext) -> Rendered:
        """The post for one channel, its text fitted to the channel's length limit.

        A template asks for the item's image to go with the text by setting
        `{% set photo = true %}` at its top level.
        """
        name = f"{channel}/{template}.{context.language}.j2"
        compiled = self.template(channel, template, context.language)
        limits = self.limits(channel)

        def draw(shown: PostContext) -> Rendered:
            try:
                module = compiled.make_module(
                    {
                        "item": shown.item,
                        "items": shown.items,
                        "message": shown.message,
                        "topics": shown.topics,
                        "link": shown.link,
                        "campaign": shown.campaign,
                        "language": shown.language,
                    }
                )
            except jinja2.UndefinedError as exc:
                raise RenderError(f"{name}: {exc.message}") from None
            return Rendered(str(module).strip(), photo=bool(getattr(module, "photo", False)))

        return _fit(draw, context, limits, name)


@dataclass(frozen=True)
class Rendered:
    """A post's text, and whether its template wants the item's image with it."""

    text: str
    photo: bool = False


def _fit(draw: Callable[[PostContext], Rendered], context: PostContext, limits: ChannelLimits, name: str) -> Rendered:
    """Shorten the summary, then the title (a digest: drop its summaries), until the text fits the limit."""
    drawn = draw(context)

    def over() -> int:
        return visible_length(drawn.text, limits.markup) - limits.max_text

    if context.item is not None:
        item = context.item
        for field in ("summary", "title"):
            while (excess := over()) > 0 and getattr(item, field):
                current: str = getattr(item, field)
                shorter: dict[str, Any] = {field: shorten(current, len(current) - excess)}
                item = replace(item, **shorter)
                drawn = draw(replace(context, item=item))
    if over() > 0 and any(entry.item.summary for entry in context.items):
        entries = [replace(entry, item=replace(entry.item, summary="")) for entry in context.items]
        drawn = draw(replace(context, items=entries))
    if over() > 0:
        raise RenderError(f"{name}: the text is over {limits.max_text} characters even shortened")
    return drawn
