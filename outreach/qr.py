"""QR codes for printed posters: a tracked link of their own, on the `qr` channel.

A poster at the public service centre gets its own short link (channel `qr`,
destination tagged `utm_source=qr&utm_medium=qr`), so `outreach report` shows
scans beside Facebook and Telegram, and the portal's analytics tell them apart.

Rules:

- Reuse: a QR link is the `qr` link of the same campaign (or of none) whose
  destination is the same page with the same UTM tags. Asking again, from the
  same link code, from another channel's link to the same page, or with
  `--campaign`, returns that link: a poster printed twice counts as one channel,
  and reprinting never leaves a dead code behind. (Two people running it at the
  very same moment could still make two; both work, and both count as `qr`.)
- Campaigns: an item campaign's QR leads to its item, a staff message's to its
  portal page, a digest of one item to that item. A digest of several items is
  refused: a QR code leads to one page, and which one is for staff to choose
  (`outreach qr CODE` with one of the digest's links, listed in the refusal).
- A rejected or cancelled campaign gets no QR code: nothing more of it goes out.
- The file is written after the link is committed, so a printed code never
  points at a link the database does not have; a failed write leaves a link the
  next run reuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import segno
from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.config import Settings
from outreach.links import DestinationNotAllowed, check_destination, new_code, short_url, with_utm
from outreach.models import Campaign, CampaignKind, CampaignStatus, Item, Link
from outreach.text import plural

QR_CHANNEL = "qr"
FORMATS = {".png": "png", ".svg": "svg"}
ERROR_LEVEL = "q"  # 25 % of the symbol may be dirty or torn; segno raises it further when that costs no size
BORDER = 4  # the quiet zone the QR standard asks for, in modules
PNG_DPI = 300
PNG_SCALE = 24  # pixels per module: 2 mm at 300 dpi
SVG_SCALE_MM = 2  # millimetres per module: a typical link prints 8-10 cm wide, read from a metre or more
NO_CAMPAIGN = "outreach-qr"  # utm_campaign for a link that belongs to no campaign and carried none
CLOSED = (CampaignStatus.rejected, CampaignStatus.cancelled)


class QrError(Exception):
    """No QR code can be made as asked; the message says why."""


@dataclass(frozen=True)
class QrLink:
    """The poster's link, as the command prints it."""

    code: str
    short_url: str
    destination: str
    campaign_id: int | None
    created: bool  # False: an earlier `outreach qr` made it and it is reused
    created_at: datetime


def output_format(path: Path) -> str | None:
    """`png` or `svg` from the file's suffix (any case); None for anything else."""
    return FORMATS.get(path.suffix.lower())


def qr_link(session: Session, settings: Settings, code: str | None = None, campaign_id: int | None = None) -> QrLink:
    """The `qr` link for an existing link's page (`code`) or a campaign's page, made or reused."""
    if (code is None) == (campaign_id is None):
        raise ValueError("give a link code or a campaign id, not both")
    tracker = settings.schedule.tracker
    campaign: Campaign | None
    if code is not None:
        code = _code_of(code)
        source = session.get(Link, code)
        if source is None:
            raise QrError(f"no link with code {code!r} (the code is what follows /r/ in a short link)")
        campaign = session.get(Campaign, source.campaign_id) if source.campaign_id is not None else None
        page, what = source.destination, f"link {code}"
        utm_campaign = _utm_campaign(page) or (campaign.utm_campaign if campaign else NO_CAMPAIGN)
    else:
        assert campaign_id is not None
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise QrError(f"no campaign with id {campaign_id} (see `outreach campaign list`)")
        page, what = _campaign_page(session, campaign), f"campaign {campaign_id}"
        utm_campaign = campaign.utm_campaign
    if campaign is not None and campaign.status in CLOSED:
        raise QrError(f"campaign {campaign.id} is {campaign.status.value}: nothing more of it goes out")
    destination = with_utm(page, QR_CHANNEL, QR_CHANNEL, utm_campaign)
    try:
        check_destination(destination, tracker.allowed_domains)
    except DestinationNotAllowed as exc:
        raise QrError(f"{what}: {exc}") from None
    owner = campaign.id if campaign is not None else None
    existing = session.scalars(
        select(Link)
        .where(
            Link.channel == QR_CHANNEL,
            Link.destination == destination,
            Link.campaign_id.is_(None) if owner is None else Link.campaign_id == owner,
        )
        .order_by(Link.created_at, Link.code)
        .limit(1)
    ).first()
    link = existing or Link(code=new_code(), destination=destination, campaign_id=owner, channel=QR_CHANNEL)
    if existing is None:
        session.add(link)
        session.flush()
    return QrLink(
        code=link.code,
        short_url=short_url(tracker.public_url, link.code),
        destination=link.destination,
        campaign_id=link.campaign_id,
        created=existing is None,
        created_at=link.created_at,
    )


def write_qr(url: str, path: Path) -> str:
    """Write `url` as a QR code to `path` (.png or .svg) for printing; returns its printed size."""
    kind = output_format(path)
    if kind is None:
        raise ValueError(f"{path}: not a .png or .svg file")
    symbol = segno.make(url, error=ERROR_LEVEL, micro=False)
    modules = symbol.symbol_size(scale=1, border=BORDER)[0]
    try:
        if kind == "png":
            symbol.save(str(path), kind="png", scale=PNG_SCALE, border=BORDER, dpi=PNG_DPI)
            pixels = modules * PNG_SCALE
            return f"{pixels}x{pixels} px, {pixels / PNG_DPI * 2.54:.1f} cm wide at {PNG_DPI} dpi"
        # A white background, not a transparent one: the code stays readable on a coloured poster.
        symbol.save(str(path), kind="svg", scale=SVG_SCALE_MM, unit="mm", border=BORDER, light="#fff", title=url)
    except OSError as exc:
        raise QrError(f"cannot write {path}: {exc.strerror or exc}") from None
    return f"{modules * SVG_SCALE_MM} mm wide"


def _code_of(text: str) -> str:
    """A code, or the short link itself as copied from a post: the part after /r/."""
    text = text.strip()
    return text.rsplit("/r/", 1)[1].strip("/") if "/r/" in text else text


def _utm_campaign(url: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get("utm_campaign")
    return values[-1] if values and values[-1] else None


def _campaign_page(session: Session, campaign: Campaign) -> str:
    """The one portal page a campaign's QR code leads to."""
    if campaign.kind is CampaignKind.message:
        if not campaign.url:
            raise QrError(f"campaign {campaign.id} is a staff message with no portal page")
        return campaign.url
    found = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(campaign.item_ids)))}
    items = [found[i] for i in campaign.item_ids if i in found]
    if not items:
        raise QrError(f"campaign {campaign.id} has no item left to link to")
    if len(items) > 1:
        raise QrError(
            f"campaign {campaign.id} is a digest of {plural(len(items), 'item')}, and a QR code leads to one page: "
            f"give one of its links instead, `outreach qr CODE` ({_digest_links(session, campaign, items)})"
        )
    return items[0].url


def _digest_links(session: Session, campaign: Campaign, items: list[Item]) -> str:
    """Each digest item's first tracked link, for the refusal to name."""
    pages = {with_utm(item.url, QR_CHANNEL, QR_CHANNEL, campaign.utm_campaign): item for item in items}
    codes: dict[int, str] = {}
    links = session.scalars(select(Link).where(Link.campaign_id == campaign.id).order_by(Link.created_at, Link.code))
    for link in links:
        item = pages.get(with_utm(link.destination, QR_CHANNEL, QR_CHANNEL, campaign.utm_campaign))
        if item is not None:
            codes.setdefault(item.id, link.code)
    if not codes:
        return "it has no links until it is approved"
    return "; ".join(f"item {item.id}: {codes[item.id]}" for item in items if item.id in codes)
