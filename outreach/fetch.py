"""Fetching a feed's bytes: one deadline, a size cap, conditional GET, local files.

feedparser can fetch by itself, but with no overall deadline or size cap; so the
body is fetched here and handed to the parser as bytes with its headers.

Hostile or broken servers are expected. httpx timeouts are per operation (a
server trickling one byte at a time never trips them), so each fetch runs under
one `asyncio.timeout` from connect to last byte. `Content-Encoding` is decoded
here, layer by layer, in pieces of at most `_PIECE` bytes (zlib `max_length`):
httpx would inflate a whole network chunk at once, and a gzip inside a gzip
turns 2 KB into a gigabyte in one call. The cap counts decoded bytes.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse
from urllib.request import url2pathname

import httpx

from outreach.config import Fetch

T = TypeVar("T")

_PIECE = 64 * 1024  # the most one decompression call may produce
_MAX_CODINGS = 3  # stacked Content-Encodings beyond this are refused
_ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"


class FetchError(Exception):
    """The feed could not be fetched; the message says why, for the source's record.

    `transient`: a later try may succeed (no answer, a timeout, a 5xx or 429),
    unlike a 404 or a body over the cap.
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class _DeadlinePassed(Exception):
    """The overall deadline passed while decoding (no await to cancel)."""


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
    """Fetches feeds, each under one deadline from connect to last byte; safe to share between threads.

    Every `fetch` runs its own short event loop and client (feeds are polled
    minutes apart: there is little to pool), so threads can fetch at once.
    """

    def __init__(self, settings: Fetch) -> None:
        self.settings = settings
        self._tls = httpx.create_ssl_context()  # made once: loading CA certificates is the slow part

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_: object) -> None:
        pass  # nothing outlives a fetch

    def fetch(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """The body at `url`, or a 304 marker; FetchError on any failure, within the deadline."""
        if urlparse(url).scheme == "file":
            return self._read_file(url)
        return run_alone(self.fetch_async(url, etag, last_modified))

    async def fetch_async(self, url: str, etag: str | None = None, last_modified: str | None = None) -> Fetched:
        """`fetch` for a caller already in an event loop (http and https URLs only)."""
        headers = {"User-Agent": self.settings.agent, "Accept": _ACCEPT, "Accept-Encoding": "gzip, deflate"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        limit = self.settings.timeout_seconds
        client = httpx.AsyncClient(timeout=limit, follow_redirects=True, headers=headers, verify=self._tls)
        try:
            async with asyncio.timeout(limit):
                return await self._get(client, url, asyncio.get_running_loop().time() + limit)
        except (TimeoutError, _DeadlinePassed, httpx.TimeoutException):
            # The wording is the one stored on sources before: the deadline (connect to last byte) passed.
            raise FetchError(f"timed out after {limit:g} s fetching {url}", transient=True) from None
        except httpx.HTTPError as exc:
            raise FetchError(f"cannot fetch {url}: {type(exc).__name__}: {exc}", transient=True) from None
        finally:
            await client.aclose()

    async def _get(self, client: httpx.AsyncClient, url: str, deadline: float) -> Fetched:
        async with client.stream("GET", url) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
            if response.status_code == 304:
                return Fetched(url=url, headers=headers, not_modified=True)
            if response.status_code >= 400:
                status = response.status_code
                raise FetchError(f"HTTP {status} {response.reason_phrase} from {url}", status == 429 or status >= 500)
            body = await self._read_capped(response, url, deadline)
        headers.pop("content-location", None)  # links are resolved by us, see feeds.parse_feed
        return Fetched(url=str(response.url), body=body, headers=headers)

    async def _read_capped(self, response: httpx.Response, url: str, deadline: float) -> bytes:
        """The decoded body, refused as soon as it passes the cap (decoded bytes are counted)."""
        cap = self.settings.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise FetchError(f"feed at {url} is {int(declared):,} bytes, over the {cap:,}-byte cap")
        encoding = response.headers.get("content-encoding", "")
        layers = _layers(encoding, url)
        clock = asyncio.get_running_loop().time
        body = bytearray()
        async for raw in response.aiter_raw():
            for piece in _decode(layers, raw):
                if len(body) + len(piece) > cap:
                    if not layers:
                        raise FetchError(f"feed is over the {cap:,}-byte cap")
                    raise FetchError(
                        f"feed at {url} is over the {cap:,}-byte cap once decoded (Content-Encoding: {encoding})"
                    )
                body += piece
                if clock() > deadline:  # inflating is CPU work: no await for the timeout to cancel
                    raise _DeadlinePassed
        return bytes(body)

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


def run_alone(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` in a new event loop of this thread, not waiting for stray executor threads at the end.

    (`asyncio.run` waits for the default executor: a name lookup that never
    answers would outlast the deadline.)
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()  # shuts the default executor down without waiting


class _Inflater:
    """One gzip or deflate layer, inflated in pieces of at most `_PIECE` bytes."""

    def __init__(self, coding: str) -> None:
        self.gzip = coding in ("gzip", "x-gzip")
        self.inflater: Any = self._new()  # zlib's decompress object (no public type); None between members
        self.started = False
        self.pending = False  # the last call filled its piece: more may come without more input
        self.ended = False

    def _new(self) -> Any:
        return zlib.decompressobj(zlib.MAX_WBITS | 16 if self.gzip else zlib.MAX_WBITS)

    def _inflate(self, data: bytes) -> bytes:
        try:
            out: bytes = self.inflater.decompress(data, _PIECE)
        except zlib.error:
            if self.gzip or self.started:
                raise
            # "deflate" is often sent raw, without the zlib wrapper (as httpx allows too)
            self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self.inflater.decompress(data, _PIECE)
        self.started = True
        return out

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Decoded pieces of `data`, lazily: each piece is used before the next is made."""
        while (data or self.pending) and not self.ended:
            if self.inflater is None:  # after a complete stream: another gzip member, or trailing bytes
                if not (self.gzip and data.startswith(b"\x1f")):
                    self.ended = True  # trailing bytes are ignored, as gzip(1) does
                    return
                self.inflater = self._new()
            out = self._inflate(data)
            data = self.inflater.unconsumed_tail
            self.pending = len(out) == _PIECE
            if out:
                yield out
            if self.inflater.eof:
                data = self.inflater.unused_data
                self.inflater, self.pending = None, False


def _layers(header: str, url: str) -> list[_Inflater]:
    """Decoders for a Content-Encoding header, outermost (last applied) first."""
    codings = [c.strip().lower() for c in header.split(",") if c.strip() and c.strip().lower() != "identity"]
    unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
    if unknown:
        raise FetchError(f"cannot decode {url}: Content-Encoding {', '.join(unknown)} (gzip and deflate only)")
    if len(codings) > _MAX_CODINGS:
        raise FetchError(f"cannot decode {url}: {len(codings)} stacked Content-Encodings")
    return [_Inflater(c) for c in reversed(codings)]


def _decode(layers: list[_Inflater], data: bytes) -> Iterator[bytes]:
    """`data` through every layer; no piece at any layer is over `_PIECE` bytes (raw chunks pass as read)."""
    if not layers:
        if data:
            yield data
        return
    try:
        for piece in layers[0].feed(data):
            yield from _decode(layers[1:], piece)
    except zlib.error as exc:
        raise httpx.DecodingError(f"bad compressed body: {exc}") from None
