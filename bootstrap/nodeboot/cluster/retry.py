"""Retrying API calls through a passing outage (an API server restart, a
dropped connection): only failures that a retry can cure, and only until a
deadline, so a dead cluster still fails the step in bounded time."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

import urllib3
from kubernetes import client

T = TypeVar("T")
OUTAGE_TIMEOUT = 90.0
# Just after an outage the API server answers before its authorizer caches are
# warm, and refuses calls it will allow a moment later.
WARM_UP = 30.0


def transient(exc: BaseException) -> bool:
    if isinstance(exc, client.ApiException):
        # 0: no HTTP answer at all; 429: throttled; 5xx: the server is (re)starting.
        return exc.status in (0, 429, 500, 502, 503, 504)
    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def refused(exc: BaseException) -> bool:
    return isinstance(exc, client.ApiException) and exc.status in (401, 403)


class Outage:
    """Tracks whether the API server was just unreachable, for one waiting loop."""

    def __init__(self) -> None:
        self.seen_at: float | None = None

    def retryable(self, exc: BaseException) -> bool:
        now = time.monotonic()
        if transient(exc):
            self.seen_at = now
            return True
        return refused(exc) and self.seen_at is not None and now - self.seen_at < WARM_UP


def with_retry(call: Callable[[], T], timeout: float = OUTAGE_TIMEOUT) -> T:
    deadline = time.monotonic() + timeout
    delay = 0.2
    outage = Outage()
    while True:
        try:
            return call()
        except Exception as exc:
            if not outage.retryable(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 3.0)


def describe(exc: BaseException) -> str:
    """One short line for an API failure (urllib3's own text is a paragraph)."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError):
        return f"API server {exc.pool.host}:{exc.pool.port} unreachable: {unreachable_cause(exc)}"
    if isinstance(exc, urllib3.exceptions.HTTPError):
        pool = getattr(exc, "pool", None)
        where = f" {pool.host}:{pool.port}" if pool is not None else ""
        return f"API server{where} unreachable: {unreachable_cause(exc)}"
    if isinstance(exc, client.ApiException):
        from nodeboot.cluster.client import short_api_error

        return f"API server answered {short_api_error(exc)}"
    return ""


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def unreachable_cause(exc: BaseException) -> str:
    """Why no HTTP answer came, in a few words: 'connection refused', 'TLS: ...', 'read timed out'."""
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = str(exc)
    if isinstance(exc, urllib3.exceptions.SSLError) or "SSL" in text:
        found = re.search(r"\[SSL: [A-Z_]+\] ([^(')\]]+)", text)
        return "TLS: " + (found.group(1).strip() if found else "handshake failed")
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "read timed out"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError) and "Errno" not in text:
        return "connection timed out"
    if "RemoteDisconnected" in text or "aborted" in text or "reset by peer" in text:
        return "connection closed by the server"
    found = _ERRNO_TEXT.search(text)
    if found:
        return found.group(1).strip().lower()
    return type(exc).__name__
