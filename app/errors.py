"""Turn every error into the JSON envelope: 4xx with a clear message, 5xx generic.

Handlers sit on the RESTX ``Api`` (errors raised inside resources) and on the
app (unknown URLs, wrong methods outside a resource, anything else).
"""
import functools
import logging
import re
from collections.abc import Callable

from flask import Flask, Response, current_app, g, request
from flask_restx import Api
from sqlalchemy.exc import ProgrammingError
from werkzeug.exceptions import (
    BadHost, HTTPException, MethodNotAllowed, NotFound, RequestedRangeNotSatisfiable,
)

from app.envelope import (
    BAD_HOST, DATABASE_UNAVAILABLE, INTERNAL_ERROR, MISSING_HOST, RETRY_AFTER_SECONDS,
    error_envelope, json_response,
)
from app.extensions import db
from app.metrics import had_database_error, record_database_error
from app.request_log import request_id
from app.routes import PAGINATED_PATHS
from financial.errors import FinancialError
from lib.db_errors import DATABASE_ERRORS, describe_database_error, is_schema_error
from lib.outage_log import OUTAGE_LINE_INTERVAL_SECONDS, OutageLog

logger = logging.getLogger(__name__)

_OUTAGE_LOG = "database_outage_log"
# Set on a request that read the database, then closed its session (note_database_read).
_READ_THE_DATABASE = "read_the_database"
# RFC 9110 7.2: Host is uri-host [":" port] (RFC 3986 3.2.2, 3.2.3): an IPv6
# literal in brackets, or a name of letters, digits, "-._~", "!$&'()*+,;="
# and %-escapes (so "_" passes, as nginx lets it), then digits after a colon.
_HOST_FIELD = re.compile(r"(\[[0-9A-Fa-f:.]+\]|([-\w.~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)(:[0-9]*)?",
                         re.ASCII)


def error_response(status: int, message: str, headers: dict | None = None) -> tuple:
    """Return (body, status, headers) in the envelope shape of the requested path."""
    paginated = request.path.rstrip("/") in PAGINATED_PATHS
    all_headers = {"Cache-Control": "no-store", **(headers or {})}
    return error_envelope(message, paginated=paginated), status, all_headers


def handle_domain_error(exc: FinancialError) -> tuple:
    """A request the data cannot answer: a bad parameter (400) or no data (404)."""
    return error_response(exc.status_code, exc.message)


def handle_http_exception(exc: HTTPException) -> tuple:
    """An HTTP error (unknown path, wrong method, rate limit) in the envelope, saying which.

    The error's own headers are kept, but the type of the HTML it would have
    been: a 416's Content-Range tells the client the file's length, which
    RFC 9110 (15.5.17) asks it to send.
    """
    headers = {name: value for name, value in exc.get_headers() if name != "Content-Type"}
    message = exc.description or exc.name
    if isinstance(exc, NotFound):
        message = not_found_message(request.path)
    if isinstance(exc, MethodNotAllowed):
        allowed = sorted(exc.valid_methods or ())
        headers["Allow"] = ", ".join(allowed)
        message = method_not_allowed_message(request.method, request.path, allowed)
    if isinstance(exc, RequestedRangeNotSatisfiable):
        message = range_not_satisfiable_message(exc.length)
    return error_response(exc.code or 500, message, headers)


def not_found_message(path: str) -> str:
    return f"no endpoint at {path}; the API is documented at /api/docs"


def method_not_allowed_message(method: str, path: str, allowed: list[str]) -> str:
    return f"method {method} is not allowed on {path}; allowed: {', '.join(allowed)}"


def range_not_satisfiable_message(length: int | None) -> str:
    """Say that the Range header cannot be served: one range within the file, or none, can."""
    size = "" if length is None else f" of {length} bytes"
    return (f"Range: cannot be served from this file{size}; ask for one range of bytes "
            "within it, or send no Range for the whole file")


def handle_database_error(exc: Exception) -> tuple:
    """Answer 503 with Retry-After; count the error, log the outage once per interval.

    The session rolls back here, as after a 500, not only when the app
    context ends: a caller that holds one app context across requests (a
    CLI command) shares their session, and the failed transaction must not
    carry on into the next.
    """
    current_app.extensions[_OUTAGE_LOG].failed(describe_database_error(exc))
    record_database_error()
    _rollback()
    return error_response(503, DATABASE_UNAVAILABLE, {"Retry-After": RETRY_AFTER_SECONDS})


def handle_programming_error(exc: ProgrammingError) -> tuple:
    """A table MySQL does not have is a database that cannot serve yet, like SQLite's."""
    if is_schema_error(exc):
        return handle_database_error(exc)
    return handle_unexpected_error(exc)


def handle_unexpected_error(exc: Exception) -> tuple:
    """Answer 500 with a generic message; the traceback goes to the log, the session rolls back.

    The log line names the request's ID, which the client got and may quote.
    """
    logger.error("unhandled %s on %s %s request_id=%s", exc.__class__.__name__, request.method,
                 request.path, request_id(), exc_info=exc)
    _rollback()
    return error_response(500, INTERNAL_ERROR)


def reject_bad_host() -> Response | None:
    """Answer a Host header that is no valid host name (``a..b``, ``ex ample``) with a 400.

    Routing fails on a name IDNA cannot encode (``a..b``, a label over 63
    characters) before any view runs, and RESTX's error handling routes the
    request again and fails again; answering here, before dispatch, keeps it
    one clean 400. Characters no host holds (a space, ``/``, ``@``) routing
    lets through; RFC 9112 3.2 asks for a 400 there too, and for an HTTP/1.1
    request without a Host header, which gunicorn and ``flask run`` pass on
    (an empty Host is valid, and HTTP/1.0 may omit it).
    """
    host = request.headers.get("Host")
    if host is None and request.environ.get("SERVER_PROTOCOL") == "HTTP/1.1":
        return json_response(*error_response(400, MISSING_HOST))
    if isinstance(request.routing_exception, BadHost) or (
            host is not None and not _HOST_FIELD.fullmatch(host)):
        return json_response(*error_response(400, BAD_HOST))
    return None


def _rollback() -> None:
    try:
        db.session.rollback()
    except Exception:  # the session may be as broken as the database
        logger.warning("session rollback failed after an error")


Handlers = tuple[tuple[type[Exception], Callable[..., tuple]], ...]

CLIENT_ERROR_HANDLERS: Handlers = (
    (FinancialError, handle_domain_error),
    (HTTPException, handle_http_exception),
)
SERVER_ERROR_HANDLERS: Handlers = (
    *((exc_type, handle_database_error) for exc_type in DATABASE_ERRORS),
    (ProgrammingError, handle_programming_error),
    (Exception, handle_unexpected_error),
)


def register_error_handlers(app: Flask, api: Api) -> None:
    """Register the handlers on the Api and on the app.

    Server errors are left to the app: with PROPAGATE_EXCEPTIONS on, RESTX
    re-raises what it has no handler for, so each 5xx is logged once, here.
    """
    outage = app.extensions[_OUTAGE_LOG] = OutageLog(
        OUTAGE_LINE_INTERVAL_SECONDS, headline="database unavailable",
        refusals="requests answered 503", log=logger, back="database is back")
    for exc_type, handler in CLIENT_ERROR_HANDLERS:
        api.errorhandler(exc_type)(handler)
    for exc_type, handler in CLIENT_ERROR_HANDLERS + SERVER_ERROR_HANDLERS:
        app.register_error_handler(exc_type, _as_json_response(handler))
    app.before_request(reject_bad_host)
    app.after_request(_ending_outage_on_success(outage))


def _ending_outage_on_success(outage: OutageLog) -> Callable[[Response], Response]:
    """Return the hook that ends a logged outage with the first request the database served.

    The success an outage refused is a request answered after reading the
    database, so that is what is observed. A connection checked out of the
    pool is no such proof: pinging succeeds while every query fails (the
    schema missing, a server too slow for DATABASE_TIMEOUT), and back and
    outage lines would alternate with the requests. Nor is a request
    answered without a database error: cached answers, the docs and 429s are
    answered while the database is down. While nothing failed the hook costs
    one attribute read, no lock and no clock; the session is looked at only
    while the outage lasts.
    """
    def end_outage_on_success(response: Response) -> Response:
        if outage.is_failing and _read_the_database(response):
            outage.succeeded()
        return response
    return end_outage_on_success


def _read_the_database(response: Response) -> bool:
    """Tell whether this request read the database and was answered without it failing.

    Its session holds a transaction from its first query to the request's
    end (the API only reads, and a database error answers 503), unless it
    closed it early and said so (``note_database_read``); a failure
    answered otherwise (a metrics scrape answers 200 without the stored data)
    marks the request (``record_database_error``).
    """
    return (response.status_code < 500 and not had_database_error()
            and (g.get(_READ_THE_DATABASE, False)
                 or db.session.registry.has() and db.session().in_transaction()))


def note_database_read() -> None:
    """Mark this request as read from the database, for a resource that closes its session.

    The export reads its data version, then closes the session to stream
    through a connection of its own: no transaction is left to show it.
    """
    setattr(g, _READ_THE_DATABASE, True)


def _as_json_response(handler: Callable[..., tuple]) -> Callable[..., Response]:
    """Serialize a handler's answer as RESTX serializes the ones it handles itself."""
    @functools.wraps(handler)
    def respond(exc: Exception) -> Response:
        return json_response(*handler(exc))
    return respond
