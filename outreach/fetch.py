"""Fetching a feed's bytes: timeouts, a size cap, conditional GET, local files.

feedparser can fetch by itself, but with no overall deadline or size cap; so the
body is fetched here and handed to the parser as bytes with its headers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx

from outreach.config import Fetch


class FetchError(Exception):
    """The feed could not be fetched; the message says why, for the source's record."""


@dataclass(frozen=True)
class Fetched:
    """A feed body, or `not_modified` when the server answered 304."""

    url: str  # after redirects: relative links resolve against it
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    not_modified: bool = False

    @property
    def etag(self) -> str | None:
        """Validator for the next conditional GET."""
        return self.headers.get("etag")

    @property
    def last_modified(self) -> str | None:
        """Date validator for the next conditional GET."""
        return self.headers.get("last-modified")


class Fetcher:
    """Fetches feeds over one pooled HTTP client."""

    def __init__(self, settings: Fetch, transport: httpx.BaseTransport | None = None) -> None:
        self.settings = settings
        self.client = httpx.Client(
            timeout=settings.timeout_seconds,
            follow_redirects=True,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5",
            },
            transport=transport,
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """The body at `url`, or a 304 marker; FetchError on any failure."""
        if urlparse(url).scheme == "file":
            return self._read_file(url)
        conditional = {}
        if etag:
            conditional["If-None-Match"] = etag
        if last_modified:
            conditional["If-Modified-Since"] = last_modified
        limit = self.settings.timeout_seconds
        try:
            with self.client.stream("GET", url, headers=conditional) as response:
                headers = {k.lower(): v for k, v in response.headers.items()}
                if response.status_code == 304:
                    return Fetched(url=url, headers=headers, not_modified=True)
                if response.status_code >= 400:
                    raise FetchError(f"HTTP {response.status_code} {response.reason_phrase} from {url}")
                body = self._read_capped(response, time.monotonic() + limit)
        except httpx.TimeoutException:
            raise FetchError(f"timed out after {limit:g} s fetching {url}") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot fetch {url}: {type(exc).__name__}: {exc}") from None
        headers.pop("content-location", None)  # links are resolved by us, see feeds.parse_feed
        return Fetched(url=str(response.url), body=body, headers=headers)

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        """Read the body, refusing it past the cap or past the overall deadline."""
        cap = self.settings.max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise FetchError(f"feed is {int(declared):,} bytes, over the {cap:,}-byte cap")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise FetchError(f"feed is over the {cap:,}-byte cap")
            if time.monotonic() > deadline:
                # A server dripping bytes never trips the per-read timeout.
                raise httpx.ReadTimeout("overall deadline passed")
            chunks.append(chunk)
        return b"".join(chunks)

    def _read_file(self, url: str) -> Fetched:
        path = Path(url2pathname(urlparse(url).path))
        try:
            size = path.stat().st_size
            if size > self.settings.max_bytes:
                raise FetchError(f"feed is {size:,} bytes, over the {self.settings.max_bytes:,}-byte cap")
            # A file has no Content-Type; without one feedparser flags every feed.
            return Fetched(url=url, body=path.read_bytes(), headers={"content-type": "application/xml"})
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror or exc}") from None
