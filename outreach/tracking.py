"""Clicks on tracked links: who tapped (kind), never a raw IP, one row per tap."""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from outreach.models import Click, ClickKind, Link

# Link-preview fetchers: they open every link posted, so they are not visits
# (PLATFORM_FACTS, matched as substrings). In-app browsers (FBAN/, Zalo) are people.
PREVIEW_AGENTS = (
    "TelegramBot",
    "facebookexternalhit",
    "Facebot",
    "facebookcatalog",
    "meta-externalagent",
    "meta-externalfetcher",
    "WhatsApp/",
    "Slackbot-LinkExpanding",
    "Slack-ImgProxy",
    "Twitterbot",
    "LinkedInBot",
    "SkypeUriPreview",
    "MicrosoftPreview",
    "Discordbot",
)
BOT_AGENTS = (
    "Googlebot",
    "Google-InspectionTool",
    "GoogleOther",
    "AdsBot-Google",
    "bingbot",
    "BingPreview",
    "bot/",
    "crawler",
    "spider",
    "curl/",
    "python-requests",
    "Wget/",
)


def classify(method: str, user_agent: str) -> ClickKind:
    """human, preview (a chat app fetching a card), bot, or head (never a click)."""
    if method == "HEAD":
        return ClickKind.head
    if any(marker in user_agent for marker in PREVIEW_AGENTS):
        return ClickKind.preview
    lowered = user_agent.lower()
    if not user_agent or any(marker.lower() in lowered for marker in BOT_AGENTS):
        return ClickKind.bot
    return ClickKind.human


def ip_hash(ip: str | None, salt: bytes) -> str | None:
    """Salted hash of the IP cut to its network (/24, /48): counts visitors, names no one."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d
    prefix = 24 if address.version == 4 else 48
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    return hashlib.blake2b(str(network.network_address).encode(), key=salt[:64], digest_size=16).hexdigest()


def referrer_host(referrer: str | None) -> str | None:
    """Only the host of the referring page is kept; a malformed header gives None."""
    if not referrer:
        return None
    try:
        host = urlsplit(referrer).hostname
    except ValueError:  # e.g. "http://[::1/": the header is the sender's, not ours to fail on
        return None
    return host if host and len(host) <= 253 else None  # 253: the longest valid DNS name


def destination(session: Session, code: str) -> str | None:
    """Where a code leads, or None for an unknown code."""
    return session.scalar(select(Link.destination).where(Link.code == code))


def record_click(
    session: Session,
    code: str,
    kind: ClickKind,
    at: datetime,
    ip_digest: str | None,
    user_agent: str,
    referrer: str | None,
) -> None:
    """Append one click row (the caller commits before answering)."""
    session.add(
        Click(
            code=code, at=at, kind=kind, ip_hash=ip_digest, user_agent=user_agent[:255] or None, referrer_host=referrer
        )
    )
