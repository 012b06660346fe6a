"""One log line per request, tagged with the request's ID (X-Request-ID in and out)."""
import logging
import random
import re
import time
from collections.abc import Callable

from flask import Flask, Response, g, request

from lib.log_setup import add_filter_once

request_logger = logging.getLogger("app.requests")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
# A client's ID is kept when it is 1-200 letters, digits, '.', '_' or '-':
# enough for UUIDs and tracing IDs, too little to forge a log line or a header.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,200}")
# The development server's own per-request line ends so (werkzeug.serving).
_DEV_SERVER_REQUEST_LINE = '"%s" %s %s'


def request_id() -> str:
    """Return the current request's ID: the client's when sane, else a new one."""
    identifier = g.get("request_id")
    if identifier is None:
        sent = request.environ.get(_REQUEST_ID_ENVIRON, "")
        identifier = sent if _SANE_REQUEST_ID.fullmatch(sent) else _new_request_id()
        g.request_id = identifier
    return identifier


def _new_request_id() -> str:
    """Return 128 random bits as 32 hex digits, like a UUID4's hex.

    An ID must be unique, not secret: the random module (reseeded in every
    forked worker) makes one without uuid4's system call, which hands the
    GIL to another thread mid-request.
    """
    return f"{random.getrandbits(128):032x}"


def request_seconds() -> float:
    """Return the seconds since the current request started (0 if it was refused earlier)."""
    started = g.get("request_started")
    return time.perf_counter() - started if started is not None else 0.0


def when_answered(response: Response, record: Callable[[float], object]) -> None:
    """Call ``record`` with the request's seconds once ``response`` is sent.

    A streamed body (an export) is sent after the request's hooks, for as
    long as the client reads it: ``record`` runs when the server closes it,
    outside the request's context. A file's wrapper goes to the server as it
    is (for sendfile), whose close of it runs none of the response's
    callbacks: its time stops at its headers, as every other answer's does.
    """
    if not response.is_streamed or response.direct_passthrough:
        record(request_seconds())
        return
    started = time.perf_counter() - request_seconds()
    response.call_on_close(lambda: record(time.perf_counter() - started))


def register_request_logging(app: Flask) -> None:
    """Log each request once: method, path, status, duration, client and request ID.

    A streamed answer (an export) is logged once its body is sent, with the
    time it took; every other answer as its headers are ready.

    Register it before anything that may refuse a request in a
    before_request hook (the rate limit), so its timer runs for those too.
    """
    add_filter_once("werkzeug", _DropDevServerRequestLines)

    @app.before_request
    def _start_request() -> None:
        g.request_started = time.perf_counter()
        request_id()

    @app.after_request
    def _log_request(response: Response) -> Response:
        identifier = request_id()
        response.headers[REQUEST_ID_HEADER] = identifier
        method, target, status, client = (request.method, _logged_target(),
                                          response.status_code, request.remote_addr)
        when_answered(response, lambda seconds: request_logger.info(
            "%s %s %s %.1fms client=%s request_id=%s", method, target, status,
            seconds * 1000, client, identifier))
        return response


def _logged_target() -> str:
    """Return the request's path and query, or ``*`` for ``OPTIONS *``.

    Werkzeug gives the asterisk's PATH_INFO a leading slash, which would log
    it as a request for the unknown path /* (a 404, not this 204).
    """
    if request.environ.get("PATH_INFO") == "*":
        return "*"
    return request.full_path.rstrip("?")


class _DropDevServerRequestLines(logging.Filter):
    """Drop `flask run`'s access line: the app's own line already records the request."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.endswith(_DEV_SERVER_REQUEST_LINE))
