"""Tracked links: unguessable short codes and the destinations they lead to."""

from __future__ import annotations

import re
import secrets
import string
from urllib.parse import urlencode, urlsplit, urlunsplit

CODE_ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 10  # 62**10 ≈ 8e17: not guessable, still short to read aloud
CODE_PATTERN = rf"[{string.ascii_letters}{string.digits}]{{8,32}}"


_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


class DestinationNotAllowed(ValueError):
    """The URL is not on a portal domain the tracker may redirect to."""


def new_code(length: int = CODE_LENGTH) -> str:
    """A random base62 code from the OS's secure source."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def short_url(public_url: str, code: str) -> str:
    """The address people tap."""
    return f"{public_url.rstrip('/')}/r/{code}"


def check_destination(url: str, allowed_domains: list[str]) -> None:
    """Refuse URLs off the portal's domains, so the tracker is no open redirect."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise DestinationNotAllowed(f"{url!r} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise DestinationNotAllowed(f"{url!r} is not an http(s) URL")
    # Browsers read "\" as "/" and "user@" as credentials: a host Python and a
    # browser would read differently is refused outright.
    if parts.username is not None or not _HOST.fullmatch(host):
        raise DestinationNotAllowed(f"{url!r} has a user part or an unusual host")
    if not any(host == d or host.endswith("." + d) for d in allowed_domains):
        raise DestinationNotAllowed(f"{host} is not in tracker.allowed_domains ({', '.join(allowed_domains)})")


def with_utm(url: str, source: str, medium: str, campaign: str) -> str:
    """The URL with UTM parameters set; the rest of its query kept byte for byte.

    Parameters are filtered as text rather than parsed and re-encoded, so the
    portal's own query (`%20`, bare flags) reaches it exactly as it wrote it.
    """
    parts = urlsplit(url)
    utm = {"utm_source": source, "utm_medium": medium, "utm_campaign": campaign}
    kept = [p for p in parts.query.split("&") if p and p.split("=", 1)[0] not in utm]
    return urlunsplit(parts._replace(query="&".join([*kept, urlencode(utm)])))
