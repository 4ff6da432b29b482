"""Running an ASGI app with uvicorn, in the foreground or on a background thread.

uvicorn[standard] brings uvloop and httptools, which uvicorn picks by itself.
The tracker runs its lifespan (it starts the click writer and, on SIGTERM,
drains it), sends no Server banner, and reads forwarding headers itself, only
from the proxies the config trusts (`tracker.trusted_proxies`).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

SERVER_OPTIONS: dict[str, Any] = {
    "log_level": "info",
    "access_log": False,
    "proxy_headers": False,
    "server_header": False,
    "lifespan": "on",
}


def tracker_server(app: ASGIApp, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server to run inside an event loop the caller owns (`outreach run`)."""
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, **SERVER_OPTIONS))


def serve(app: ASGIApp | str, host: str, port: int, workers: int = 1) -> None:
    """Serve until SIGTERM or Ctrl-C; with several workers `app` is a factory's import path."""
    uvicorn.run(app, host=host, port=port, workers=workers, factory=isinstance(app, str), **SERVER_OPTIONS)


class BackgroundServer:
    """A real uvicorn server on a free loopback port, for the demo and the tests."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1") -> None:
        # IPPROTO_TCP named: asyncio then turns Nagle off on accepted connections (else
        # each request after the first on a kept-alive connection waits ~40 ms).
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(app, **{**SERVER_OPTIONS, "log_level": "warning"})
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
