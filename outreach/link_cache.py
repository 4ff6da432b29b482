"""Code -> destination in memory: links never change, so the redirect path needs no query.

The newest links are loaded at start; a code not yet seen (a campaign made after
the tracker started) is looked up once on a thread, and an unknown code is
remembered as unknown for a minute, so a scanner guessing codes costs one query
per code, not per request. A destination off the portal's domains is refused
here too, not only when the link was made.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from outreach.links import DestinationNotAllowed, check_destination
from outreach.models import Link

log = logging.getLogger(__name__)


class Lookup(enum.Enum):
    """Why a code has no destination."""

    unknown = "unknown"  # no such link (or one leading off the portal's domains)
    unavailable = "unavailable"  # the database could not say


class LinkCache:
    """Destinations by code, with the database behind it."""

    def __init__(
        self, engine: Engine, allowed_domains: list[str], size: int = 200_000, unknown_for: float = 60.0
    ) -> None:
        self.engine, self.allowed_domains = engine, allowed_domains
        self.size, self.unknown_for = size, unknown_for
        self._known: dict[str, str] = {}
        self._unknown: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[str | Lookup]] = {}
        self._thread = ThreadPoolExecutor(2, thread_name_prefix="link-lookup")

    def __len__(self) -> int:
        return len(self._known)

    def load(self) -> int:
        """Fill the cache with the newest links; returns how many links the database holds."""
        with self.engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(Link)) or 0
            newest = select(Link.code, Link.destination).order_by(Link.created_at.desc()).limit(self.size)
            for code, destination in connection.execute(newest):
                self._remember(code, destination)
        return total

    def get(self, code: str) -> str | None:
        """The destination if it is in memory (the redirect's fast path)."""
        return self._known.get(code)

    async def lookup(self, code: str) -> str | Lookup:
        """The destination, from memory or the database."""
        known = self._known.get(code)
        if known is not None:
            return known
        if self._unknown.get(code, 0.0) > time.monotonic():
            return Lookup.unknown
        inflight: asyncio.Future[str | Lookup] | None = self._inflight.get(code)
        if inflight is None:  # one query per code, however many ask at once
            inflight = asyncio.get_running_loop().run_in_executor(self._thread, self._query, code)
            self._inflight[code] = inflight
            inflight.add_done_callback(lambda _: self._inflight.pop(code, None))
        found = await asyncio.shield(inflight)
        if found is Lookup.unavailable or code in self._known:
            return found
        # Back on the event loop: only this thread changes the maps.
        if found is Lookup.unknown or not self._remember(code, found):
            if len(self._unknown) > 10_000:
                self._unknown.clear()
            self._unknown[code] = time.monotonic() + self.unknown_for
            return Lookup.unknown
        return found

    def _query(self, code: str) -> str | Lookup:
        try:
            with self.engine.connect() as connection:
                destination = connection.scalar(select(Link.destination).where(Link.code == code))
        except SQLAlchemyError as error:
            log.warning("links: could not look up %s: %s", code, error.__class__.__name__)
            return Lookup.unavailable
        return Lookup.unknown if destination is None else destination

    def _remember(self, code: str, destination: str) -> bool:
        try:
            check_destination(destination, self.allowed_domains)
        except DestinationNotAllowed as refused:
            log.warning("links: %s is not followed: %s", code, refused)
            return False
        if len(self._known) >= self.size:
            del self._known[next(iter(self._known))]  # the oldest loaded goes first
        self._known[code] = destination
        return True

    def close(self) -> None:
        """Stop the lookup threads."""
        self._thread.shutdown(wait=False, cancel_futures=True)
