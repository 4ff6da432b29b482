"""What both emulators share: scripted faults, a rate window, request decoding, a server to run on.

Tests and the demo need the failures real platforms produce (timeouts after a post
was accepted, proxies answering HTML, rate limits) on demand and in a known order,
so they are queued here rather than drawn at random. Request bodies are decoded
with the standard library because Starlette's form parser needs python-multipart,
which the project does not depend on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from outreach.serve import BackgroundServer

FaultKind = Literal["error", "hang", "accept_then_hang", "accept_then_error", "not_json", "no_content_type"]

# What a fault answers when the script gives no status: a gateway error for a proxy page,
# and 200 for the missing header, which clients see only on otherwise normal answers.
_DEFAULT_STATUS: dict[str, int] = {
    "error": 500,
    "hang": 504,
    "accept_then_hang": 200,
    "accept_then_error": 500,
    "not_json": 502,
    "no_content_type": 200,
}
BAD_GATEWAY_PAGE = "<html>Bad Gateway</html>"


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour for one call.

    `status` None means the kind's usual status: 500 for error and accept_then_error,
    504 for hang, 502 for not_json, 200 for no_content_type.
    """

    kind: FaultKind
    status: int | None = None
    body: dict[str, Any] | None = None  # platform-shaped JSON; None: the emulator's default error body
    seconds: float = 0.0  # hang / accept_then_hang: how long the answer takes
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. X-Page-Usage on a rate-limit error

    @property
    def status_code(self) -> int:
        """The HTTP status this fault answers with."""
        return self.status if self.status is not None else _DEFAULT_STATUS[self.kind]


@dataclass
class _Queued:
    fault: Fault
    method: str | None
    target: str | None
    remaining: int


class FaultScript:
    """A thread-safe queue of faults; the test thread adds, the server's loop takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []

    def add(self, fault: Fault, *, method: str | None = None, target: str | None = None, times: int = 1) -> None:
        """Queue `fault` for the next `times` calls matching `method` and `target` (None matches any)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._queue.append(_Queued(fault, method, target, times))

    def take(self, method: str, target: str | None) -> Fault | None:
        """Consume and return the first queued fault matching this call, if any."""
        with self._lock:
            for queued in self._queue:
                if queued.method not in (None, method) or queued.target not in (None, target):
                    continue
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queue.remove(queued)
                return queued.fault
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._queue.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(queued.remaining for queued in self._queue)


class Window:
    """A sliding one-second window per key (chat or page): at most ceil(limit) calls in any second."""

    def __init__(self, limit_per_second: float | None) -> None:
        if limit_per_second is not None and limit_per_second <= 0:
            raise ValueError("limit_per_second must be positive")
        self._capacity = None if limit_per_second is None else math.ceil(limit_per_second)
        self._lock = threading.Lock()
        self._calls: dict[str, deque[float]] = {}

    def hit(self, key: str, now: float) -> float | None:
        """Count a call at `now` (seconds, monotonic); None when allowed, else seconds until one is.

        A refused call is not counted: a client that waits as told gets through.
        """
        if self._capacity is None:
            return None
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - 1.0:
                calls.popleft()
            if len(calls) >= self._capacity:
                return calls[0] + 1.0 - now
            calls.append(now)
            return None

    def clear(self) -> None:
        """Forget every call counted so far."""
        with self._lock:
            self._calls.clear()


class BadBody(ValueError):
    """The request body could not be decoded as its Content-Type says."""


async def read_params(request: Request) -> dict[str, str]:
    """Query and body parameters as strings, the way client libraries send them.

    Form fields (urlencoded or multipart) are strings already; a JSON body's nested
    values are re-encoded as JSON strings, which is how form clients send them too.
    An uploaded file becomes "upload:<filename>": the emulators keep no bytes.
    """
    params = dict(request.query_params)
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return params
    if media == "application/x-www-form-urlencoded":
        try:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadBody(f"bad form body: {exc}") from exc
    elif media == "multipart/form-data":
        params.update(_multipart(content_type, body))
    elif media == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError as exc:
            raise BadBody(f"bad JSON body: {exc}") from exc
        if not isinstance(decoded, dict):
            raise BadBody("the JSON body is not an object")
        params.update({k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in decoded.items()})
    return params


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    # The email package parses MIME multipart bodies; a form is one with a header in front.
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise BadBody("bad multipart body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        filename = part.get_filename()
        if filename is not None:
            fields[name] = f"upload:{filename}"
            continue
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        try:
            fields[name] = raw.decode(part.get_content_charset() or "utf-8")
        except (LookupError, UnicodeDecodeError) as exc:
            raise BadBody(f"bad multipart field {name!r}") from exc
    return fields


def json_response(body: Mapping[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON answer as the platforms send it (UTF-8, not ASCII-escaped)."""
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(content, status_code=status, media_type="application/json", headers=dict(headers or {}))


def not_json_response(fault: Fault) -> Response:
    """What a proxy in front of the platform answers: an HTML page."""
    return Response(
        BAD_GATEWAY_PAGE, status_code=fault.status_code, media_type="text/html", headers=dict(fault.headers)
    )


def no_content_type_response(fault: Fault, body: Mapping[str, Any]) -> Response:
    """A JSON-looking answer without any Content-Type header (facebook-sdk raises KeyError on it)."""
    content = json.dumps(body, ensure_ascii=False).encode("utf-8")
    # media_type=None on the base Response: Starlette adds no Content-Type header at all.
    response = Response(content, status_code=fault.status_code, media_type=None, headers=dict(fault.headers))
    response.raw_headers = [(k, v) for k, v in response.raw_headers if k != b"content-type"]
    return response


@dataclass(frozen=True)
class Answer:
    """What the platform itself would answer (before any fault gets in the way)."""

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        """The call succeeded (for a post: the post now exists)."""
        return 200 <= self.status < 300


async def respond(
    fault: Fault | None, handle: Callable[[], Answer], error_body: Callable[[int], dict[str, Any]]
) -> Response:
    """Answer one call: `handle` does what the platform does; `fault` (if any) bends the answer.

    Faults that do not accept answer without calling `handle`, so nothing is stored.
    Accepting faults let the platform refuse as usual (a post that fails validation is
    never stored), and only misbehave once the post exists.
    """
    if fault is None:
        answer = handle()
        return json_response(answer.body, answer.status, answer.headers)
    status = fault.status_code
    if fault.kind == "error":
        return json_response(fault.body or error_body(status), status, fault.headers)
    if fault.kind == "hang":
        await asyncio.sleep(fault.seconds)
        return json_response(fault.body or error_body(status), status, fault.headers)
    if fault.kind == "not_json":
        return not_json_response(fault)
    if fault.kind == "no_content_type":
        # Never a success body: the post was not stored, so the body must not say it was.
        return no_content_type_response(fault, fault.body or error_body(502))
    answer = handle()
    if not answer.accepted:
        return json_response(answer.body, answer.status, answer.headers)
    if fault.kind == "accept_then_hang":
        await asyncio.sleep(fault.seconds)
        return json_response(answer.body, answer.status, {**answer.headers, **fault.headers})
    return json_response(fault.body or error_body(status), status, fault.headers)


class Served:
    """An emulator's app on a real loopback port while the `with` block runs."""

    app: ASGIApp

    _stack: contextlib.ExitStack | None = None
    _server: BackgroundServer | None = None

    @property
    def url(self) -> str:
        """The running server's base URL, e.g. http://127.0.0.1:PORT."""
        if self._server is None:
            raise RuntimeError("the emulator is not running: use it as a context manager")
        return self._server.url

    def __enter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("the emulator is already running")
        stack = contextlib.ExitStack()
        with stack:
            self._server = stack.enter_context(BackgroundServer(self.app))
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        stack, self._stack, self._server = self._stack, None, None
        if stack is not None:
            stack.close()
