"""What an app that answers requests adds to the shell: the API, its hooks, CORS, commands."""
import re
from functools import partial

from flask import Flask, Response, request
from flask_cors import CORS
from flask_cors.core import ACL_ALLOW_HEADERS, ACL_REQUEST_HEADERS
from werkzeug.exceptions import NotFound

from app.api import register_api
from app.api.caching import register_response_cache
from app.api.export import ROW_COUNT_HEADER
from app.cli import register_commands
from app.conditional import add_vary, register_conditional_get
from app.dashboard import register_dashboard
from app.errors import register_error_handlers
from app.metrics import register_metrics
from app.rate_limits import register_rate_limits
from app.request_log import register_request_logging
from app.routes import API_PREFIX, is_api_path
from app.security import register_security_headers, trust_proxy_hops
from lib.log_setup import drop_terminal_styles, split_fixed_messages

# Headers a browser script on another (allowed) origin may read, beyond the CORS-safelisted
# ones: Content-Disposition names the export's file for a script that saves it, Link a
# list's next page.
EXPOSED_HEADERS = ["Content-Disposition", "ETag", "Link", "Retry-After", "X-Request-ID",
                   "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                   ROW_COUNT_HEADER]
# The API only reads: a browser's preflight is told so.
CORS_METHODS = ["GET", "HEAD", "OPTIONS"]
# The paths is_api_path names, as Flask-CORS matches them (from their start): its
# "/api/*" also took paths outside the API, e.g. /apix, without the Vary of the API's.
CORS_PATHS = re.compile(rf"{re.escape(API_PREFIX)}(/.*)?\Z", re.DOTALL)


def register_serving(app: Flask) -> None:
    """Add the API and everything around each request, in the order the hooks need.

    Flask runs before_request hooks in order and after_request hooks in
    reverse; each register_* function says where it must stand.
    """
    drop_terminal_styles("werkzeug")  # `flask run` colours its lines
    split_fixed_messages("werkzeug")  # and writes its banner as one record
    trust_proxy_hops(app)
    register_cors(app)
    api = register_api(app)
    register_dashboard(app)
    # Logging first: its timer starts before any hook that may refuse a request.
    register_request_logging(app)
    register_error_handlers(app, api)
    register_rate_limits(app)
    register_unrouted_options(app)
    register_metrics(app)
    register_security_headers(app)
    register_conditional_get(app)
    register_response_cache(app)
    register_commands(app)


def register_cors(app: Flask) -> None:
    """Let browser scripts on CORS_ORIGINS call the API and read EXPOSED_HEADERS.

    A preflight's answer may be reused for CORS_MAX_AGE seconds, so a script
    sending If-None-Match or X-Request-ID does not pay a second request each
    time. With no origin allowed (production's default) CORS would add nothing:
    then no hook at all.

    Unless every origin is allowed (``*``), whether an answer carries
    Access-Control-Allow-Origin depends on the request's Origin, so every
    API answer says ``Vary: Origin``. Flask-CORS says so only when an origin
    matched and more than one could: a shared cache would otherwise keep the
    answer to one origin (or to none) and hand it to an allowed one, whose
    browser then refuses it (the Fetch standard's advice, section 3.2.5).
    """
    origins = app.config["CORS_ORIGINS"]
    if not origins:
        return
    # Registered first, so they run after Flask-CORS's own hook.
    app.after_request(_allow_headers_as_requested)
    if "*" not in origins:
        app.after_request(_vary_by_origin)
    CORS(app, resources={CORS_PATHS: {"origins": [_exact_origin(origin) for origin in origins]}},
         methods=CORS_METHODS, expose_headers=EXPOSED_HEADERS,
         max_age=app.config["CORS_MAX_AGE"])


def _exact_origin(origin: str) -> str | re.Pattern[str]:
    """Return ``origin`` as Flask-CORS compares it with the request's Origin: as text.

    Flask-CORS reads an entry with brackets as a regular expression, where
    an IPv6 origin (``http://[::1]:8080``) would allow ``http://1:8080`` and
    not itself; it is given as the pattern of its own text instead.
    """
    if "[" not in origin:
        return origin
    return re.compile(re.escape(origin) + r"\Z", re.IGNORECASE)


def register_unrouted_options(app: Flask) -> None:
    """Answer 204, not the 404 of a GET, to two OPTIONS requests no route matches.

    ``OPTIONS *`` (RFC 9110 9.3.7) asks what the server allows, not a
    resource: it gets the Allow of OPTIONS on any endpoint. Its target is no
    path (PATH_INFO "*", where a path starts with "/"), so it was routed as one.

    A CORS preflight to an unknown API path, when CORS_ORIGINS allows some
    origin: a browser fails a preflight that is no 2xx with a bare network
    error, so the script of a mistyped URL sending a header that needs one
    (e.g. If-None-Match) saw "Failed to fetch", never the JSON 404 naming the path.

    Register it after the hooks every request passes first (its log line).
    """
    app.before_request(partial(_answer_unrouted_options, bool(app.config["CORS_ORIGINS"])))


def _answer_unrouted_options(preflights: bool) -> Response | None:
    if request.method != "OPTIONS" or not isinstance(request.routing_exception, NotFound):
        return None
    if request.environ.get("PATH_INFO") == "*":
        headers = {"Allow": ", ".join(CORS_METHODS)}
    elif (preflights and "Access-Control-Request-Method" in request.headers
          and is_api_path(request.path)):
        headers = {}
    else:
        return None
    response = Response(status=204, headers=headers)
    del response.headers["Content-Type"]
    return response


def _allow_headers_as_requested(response: Response) -> Response:
    """Allow a preflight's Access-Control-Request-Headers as written, as nginx does.

    Flask-CORS allows every header asked for, but writes them sorted; nginx,
    which answers preflights while the API is down, can only repeat the
    request's list. A browser reads either alike; written alike, the API and
    nginx give one preflight the same answer.
    """
    if ACL_ALLOW_HEADERS in response.headers:
        response.headers[ACL_ALLOW_HEADERS] = request.headers[ACL_REQUEST_HEADERS]
    return response


def _vary_by_origin(response: Response) -> Response:
    if is_api_path(request.path):
        add_vary(response, "Origin")
    return response
