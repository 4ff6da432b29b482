"""`outreach doctor`: every check an install needs before it posts, one line each.

Each check says what it found and, when it failed, what to fix (the variable,
the template, the command). A missing token is a warning, not a failure: that
target writes to the outbox, which may be what the office wants for now.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from outreach.channel import ChannelError
from outreach.channel_config import LANGUAGES
from outreach.config import Settings
from outreach.db import Access, Store
from outreach.dberrors import StoreError
from outreach.dburl import BadDatabaseUrl, describe
from outreach.render import CampaignView, ItemView, PostContext, Renderer, RenderError
from outreach.routing import Routing


class Verdict(enum.Enum):
    """How one check came out."""

    ok = "ok"
    warn = "warn"
    fail = "FAIL"


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    verdict: Verdict
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.verdict.value:<4} {self.what}: {self.detail}"


SAMPLE = {
    "vi": ItemView(
        title="Thông báo <mới> về hoàn thuế GTGT & hóa đơn điện tử cho doanh nghiệp",
        summary="Cục Thuế tỉnh Quảng Ngãi hướng dẫn doanh nghiệp thủ tục hoàn thuế giá trị gia tăng. " * 8,
        url="https://quangngai.gov.vn/tin-tuc/thong-bao-hoan-thue.html",
        image_url="https://quangngai.gov.vn/images/hoan-thue.jpg",
        published=datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        language="vi",
    ),
    "en": ItemView(
        title="Quang Ngai invites investors to the <Dung Quat> Economic Zone & VSIP",
        summary="The provincial People's Committee presents land, incentives and procedures for investors. " * 8,
        url="https://quangngai.gov.vn/en/news/investors.html",
        image_url=None,
        published=datetime(2026, 11, 27, 8, 30, tzinfo=UTC),
        language="en",
    ),
}


def check_database(url: str) -> Check:
    """The database is there, readable and at this version's schema."""
    try:
        with Store.open(url, Access.read) as store:
            return Check(Verdict.ok, "database", f"{describe(url)} at schema {store.revision}")
    except (StoreError, BadDatabaseUrl) as exc:
        return Check(Verdict.fail, "database", str(exc))


def check_templates(settings: Settings, renderer: Renderer) -> Iterator[Check]:
    """Every enabled channel's template renders, within its limit, in every language it posts in."""
    link = f"{settings.schedule.tracker.public_url}/r/DOCTORxx1"
    for channel, configured in settings.schedule.channels.enabled().items():
        if configured.audience == "subscribers":  # subscribers choose their language
            languages = sorted(LANGUAGES)
            yield check_bot_texts(settings)
        else:
            languages = sorted({language for target in configured.targets for language in target.languages})
        for language in languages:
            name = f"{channel}/{configured.template}.{language}.j2"
            context = PostContext(
                item=SAMPLE[language],
                topics=renderer.topic_views([t.id for t in settings.schedule.topics[:2]], language),
                link=link,
                campaign=CampaignView(0, SAMPLE[language].title, "outreach-doctor"),
                language=language,
            )
            try:
                rendered = renderer.render(channel, configured.template, context)
            except RenderError as exc:
                yield Check(Verdict.fail, f"template {name}", str(exc))
                continue
            if link not in rendered.text:
                yield Check(Verdict.fail, f"template {name}", "does not show {{ link }}: its clicks would go uncounted")
                continue
            photo = ", with the photo" if rendered.photo else ""
            yield Check(Verdict.ok, f"template {name}", f"renders {len(rendered.text)} characters{photo}")


def check_bot_texts(settings: Settings) -> Check:
    """Every reply and button label of the bot compiles, in both languages."""
    from outreach.bot_texts import BotTextError, BotTexts
    from outreach.conversation import TEMPLATES

    try:
        BotTexts(settings.templates_dir).check(TEMPLATES)
    except BotTextError as exc:
        return Check(Verdict.fail, "bot texts", str(exc))
    return Check(Verdict.ok, "bot texts", f"{len(TEMPLATES)} replies and the button labels, in vi and en")


async def check_routes(routing: Routing) -> list[Check]:
    """For each target, whether its transport takes posts (the platform checks the token); then close."""
    found: list[Check] = []
    try:
        for route in routing:
            what = f"{route.channel} → {route.label}"
            try:
                detail = await route.transport.check(route.target)
            except ChannelError as exc:
                found.append(Check(Verdict.fail, what, f"{exc} ({route.why})"))
                continue
            if route.to_platform:
                found.append(Check(Verdict.ok, what, f"{detail} ({route.why})"))
            else:  # the outbox works; that the platform is not used is the news
                found.append(Check(Verdict.warn, what, route.why))
    finally:
        await routing.close()
    return found


def failed(checks: Iterable[Check]) -> bool:
    """True when any check failed (warnings do not count)."""
    return any(check.verdict is Verdict.fail for check in checks)
