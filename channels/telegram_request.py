"""python-telegram-bot's HTTP layer on aiohttp instead of httpx: the same Bot, a fifth of the CPU per call.

Measured with `bench/broadcast.py`'s emulator in another process on two cores:
PTB's `HTTPXRequest` costs about 1.5-1.9 ms of CPU per sendMessage (most of it in
httpcore's connection-pool bookkeeping, which polls every idle socket on every
request) and tops out near 550 calls/s; this class costs about 0.35 ms and goes
past 2,500/s. A broadcast at the platform's limit needs the headroom: the
dispatcher's own work shares the same core. PTB documents `BaseRequest` as the
place for another HTTP library; the error mapping below is `HTTPXRequest`'s.

`NEVER_SENT` names the failures where the request certainly did not reach
Telegram (no connection was made), which the adapters treat as safe to retry.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

from outreach.text import scrub

# The connection was never made (or no pooled one was free): nothing reached Telegram.
NEVER_SENT: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` over one `aiohttp.ClientSession` with at most `connections` open at once."""

    def __init__(
        self,
        connections: int = 16,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
    ) -> None:
        self._connections = connections
        self._read, self._write, self._connect, self._pool = read_timeout, write_timeout, connect_timeout, pool_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout, which PTB adds to a long poll's own."""
        return self._read

    async def initialize(self) -> None:
        """Open the session (in the running loop: aiohttp binds it there)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def shutdown(self) -> None:
        """Close every connection."""
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = BaseRequest.DEFAULT_NONE,
        write_timeout: Any = BaseRequest.DEFAULT_NONE,
        connect_timeout: Any = BaseRequest.DEFAULT_NONE,
        pool_timeout: Any = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One call: (HTTP status, body); PTB's TimedOut or NetworkError when there is no answer."""
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        read = self._read if isinstance(read_timeout, type(BaseRequest.DEFAULT_NONE)) else read_timeout
        connect = self._connect if isinstance(connect_timeout, type(BaseRequest.DEFAULT_NONE)) else connect_timeout
        pool = self._pool if isinstance(pool_timeout, type(BaseRequest.DEFAULT_NONE)) else pool_timeout
        # aiohttp's `connect` covers waiting for a pooled connection and making a new one.
        waits = [t for t in (connect, pool) if t is not None]
        timeout = aiohttp.ClientTimeout(total=None, connect=sum(waits) if waits else None, sock_read=read)
        body: Any = None
        if request_data is not None:
            files = request_data.multipart_data
            if files:
                form = aiohttp.FormData()
                for name, value in request_data.json_parameters.items():
                    form.add_field(name, value)
                for name, part in files.items():
                    filename, content, *mime = part
                    form.add_field(name, content, filename=filename, content_type=mime[0] if mime else None)
                body = form
            else:
                body = request_data.json_parameters
        try:
            async with self._session.request(
                method, url, data=body, headers={"User-Agent": self.USER_AGENT}, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except (TimeoutError, asyncio.TimeoutError) as err:  # noqa: UP041 - aiohttp raises both spellings
            raise TimedOut from err
        except aiohttp.ClientError as err:  # its text may quote the URL, token and all: masked
            raise NetworkError(f"aiohttp.{type(err).__name__}: {scrub(str(err))}") from err
