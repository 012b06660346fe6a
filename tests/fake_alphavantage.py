"""A fake AlphaVantage: a real HTTP server on an ephemeral local port.

Tests queue one response per expected request and then read back what the
client sent, so the client's real HTTP stack (session, adapter, urllib3
retries, timeouts) runs unpatched. The fixtures live in ``tests/conftest.py``.

Usage::

    def test_something(fake_alphavantage):
        fake_alphavantage.queue_error("burst_limit")
        fake_alphavantage.queue_fixture("IBM_TIME_SERIES_DAILY_compact_2024-06-18.json")
        client = AlphaVantageClient("KEY", base_url=fake_alphavantage.url, function=..., ...)
        ...
        assert [r.params["function"] for r in fake_alphavantage.requests] == [...]
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

ALPHAVANTAGE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alphavantage"
IBM = "IBM_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
AAPL = "AAPL_TIME_SERIES_DAILY_ADJUSTED_compact_2023-03-24.json"
IBM_DAILY = "IBM_TIME_SERIES_DAILY_compact_2024-06-18.json"

# AlphaVantage's error answers, all HTTP 200, quoted from public issue threads
# (see ERROR_TEXTS.md of the shared fixtures): case -> (JSON key, text).
ALPHAVANTAGE_ERROR_BODIES: dict[str, tuple[str, str]] = {
    "invalid_symbol": (
        "Error Message",
        "Invalid API call. Please retry or visit the documentation "
        "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY.",
    ),
    "unknown_function": ("Error Message", "This API function () does not exist."),
    "invalid_key": (
        "Error Message",
        "the parameter apikey is invalid or missing. Please claim your free API key on "
        "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds.",
    ),
    "demo_key": (
        "Information",
        "The **demo** API key is for demo purposes only. Please claim your free API key at "
        "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings. "
        "It takes fewer than 20 seconds.",
    ),
    "daily_quota": (
        "Information",
        "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. "
        "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ "
        "to instantly remove all daily rate limits.",
    ),
    "burst_limit": (
        "Information",
        "Thank you for using Alpha Vantage! Please consider spreading out your free API requests "
        "more sparingly (1 request per second). You may subscribe to any of the premium plans at "
        "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per "
        "day), raise the per-second burst limit, and instantly unlock all premium endpoints",
    ),
    "minute_limit": (
        "Note",
        "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute "
        "and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would "
        "like to target a higher API call frequency.",
    ),
    "premium_endpoint": (
        "Information",
        "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any "
        "of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all "
        "premium endpoints",
    ),
    "premium_full_output": (
        "Information",
        "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium "
        "feature for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium "
        "plans at https://www.alphavantage.co/premium/ to instantly unlock all premium features",
    ),
}

Handler = Callable[[Request], Response]


def error_body(case: str, *, text: str | None = None) -> str:
    """Return the JSON body of one of ``ALPHAVANTAGE_ERROR_BODIES``, optionally with other text."""
    key, default_text = ALPHAVANTAGE_ERROR_BODIES[case]
    return json.dumps({key: default_text if text is None else text})


@dataclass(frozen=True)
class ReceivedRequest:
    """What the fake saw of one request, copied while it was being served."""

    method: str
    path: str
    params: dict[str, str]
    query_string: str
    headers: dict[str, str]
    received_at: float  # time.monotonic() when it arrived


class FakeAlphaVantage:
    """Answers each request to ``/query`` with the next queued response and records it.

    A request that finds the queue empty gets a 404 (which the client does not
    retry) and is listed in ``unexpected``; the fixture fails the test on it.
    """

    def __init__(self, server: HTTPServer) -> None:
        self._server = server
        self._queue: deque[Handler] = deque()
        self._lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self.unexpected: list[ReceivedRequest] = []

    @property
    def url(self) -> str:
        """The ``base_url`` to give the client."""
        return self._server.url_for("/query")

    def queue_handler(self, handler: Handler) -> None:
        """Queue a callable taking the werkzeug Request and returning a Response (e.g. to stall)."""
        self._queue.append(handler)

    def queue_response(
        self, body: str | bytes, status: int = 200, content_type: str = "application/json"
    ) -> None:
        """Queue a raw body, e.g. HTML from a proxy or an HTTP 500."""
        response = Response(body, status=status, content_type=content_type)
        self.queue_handler(lambda _request: response)

    def queue_json(self, payload: Any, status: int = 200) -> None:
        self.queue_response(json.dumps(payload), status=status)

    def queue_fixture(self, filename: str) -> None:
        """Queue a recorded AlphaVantage payload byte for byte, from tests/fixtures/alphavantage."""
        self.queue_response((ALPHAVANTAGE_FIXTURES / filename).read_bytes())

    def queue_error(self, case: str, *, text: str | None = None) -> None:
        """Queue one of ``ALPHAVANTAGE_ERROR_BODIES`` (HTTP 200), optionally with other text."""
        self.queue_response(error_body(case, text=text))

    def dispatch(self, request: Request) -> Response:
        """Serve one request; runs on the server's thread."""
        received = ReceivedRequest(
            method=request.method,
            path=request.path,
            params=request.args.to_dict(),
            query_string=request.query_string.decode("latin-1"),
            headers=dict(request.headers),
            received_at=time.monotonic(),
        )
        with self._lock:
            self.requests.append(received)
            handler = self._queue.popleft() if self._queue else None
            if handler is None:
                self.unexpected.append(received)
        if handler is None:
            return Response("fake_alphavantage: no response queued", status=404)
        return handler(request)


class _QuietRequestHandler(WSGIRequestHandler):
    """werkzeug's handler minus its access log, which would print each URL, test key included."""

    def log(self, *args: Any) -> None:
        return None


class QuietHTTPServer(HTTPServer):
    """pytest-httpserver whose request handler writes no access log."""

    def thread_target(self) -> None:
        # Runs before serve_forever accepts anything, so every request gets the quiet handler.
        self.server.RequestHandlerClass = _QuietRequestHandler
        super().thread_target()
