"""Conditional GET: weak ETags, 304 when the client has that body, 412 on a failed If-Match."""
from typing import Any

import flask
from flask import Flask, request
from werkzeug.http import is_resource_modified, parse_if_range_header, parse_range_header
from werkzeug.wrappers import Request, Response

from app.envelope import json_response
from app.errors import error_response
from app.routes import is_api_path

_IF_MATCH_FAILED = ("If-Match matches no current answer: every ETag of this {} is weak "
                    "and If-Match compares strongly, so only * matches")
PRECONDITION_FAILED = _IF_MATCH_FAILED.format("API")
# Outside the API: the dashboard, its scripts and styles, Swagger UI's, /metrics.
PRECONDITION_FAILED_OUTSIDE_API = _IF_MATCH_FAILED.format("server")
FILE_CHANGED = ("If-Unmodified-Since is earlier than the file's Last-Modified: "
                "the file has changed since")


class IfRangeResponse(flask.Response):
    """Flask's response, sending a file's part only when If-Range matches exactly (RFC 9110 13.1.5).

    werkzeug sends the part for a date later than the file's Last-Modified
    too, and for a tag without its ``W/``. If-Range compares tags strongly
    and every tag of this server is weak, so no tag matches; a date matches
    only when it is the file's Last-Modified (a file changes only with a
    release, never twice in a second). Otherwise the Range is ignored and
    the whole file is sent (a 200). Flask serves files through the app's
    response class, which asks this as it answers with a file.

    A Range of another unit than bytes, or of several ranges, is ignored
    too: werkzeug refused both with a 416, where RFC 9110 (14.2) says a
    server MUST ignore a unit it does not know and MAY ignore ranges it
    does not send, as werkzeug sends no multipart body.
    """

    def make_conditional(self, request_or_environ: dict[str, Any] | Request,
                         accept_ranges: bool | str = False,
                         complete_length: int | None = None) -> "IfRangeResponse":
        environ = (request_or_environ.environ if isinstance(request_or_environ, Request)
                   else request_or_environ)
        if "HTTP_RANGE" in environ and not self._is_range_served(environ):
            environ = {key: value for key, value in environ.items() if key != "HTTP_RANGE"}
        super().make_conditional(environ, accept_ranges, complete_length)
        return self

    def _is_range_served(self, environ: dict[str, Any]) -> bool:
        """Tell whether the request's Range is answered by its part, or by its 416."""
        if "HTTP_IF_RANGE" in environ:
            if_range = parse_if_range_header(environ["HTTP_IF_RANGE"])
            if if_range.date is None or if_range.date != self.last_modified:
                return False
        unit, has_ranges, _ = environ["HTTP_RANGE"].partition("=")
        if has_ranges and unit.strip().lower() != "bytes":
            return False
        ranges = parse_range_header(environ["HTTP_RANGE"])
        return ranges is None or len(ranges.ranges) == 1  # None: no valid Range, its 416


def register_conditional_get(app: Flask) -> None:
    """Tag each 200 answer to GET/HEAD by its body and answer its preconditions.

    The tag is a hash of the body, so it changes exactly when the answer
    does (new data, a new release's format); a tag already set (the
    response cache stores it with the body) is kept. Every tag is weak, a
    file's too: nginx gzips answers, which changes their bytes, and weakens
    the tag of each it gzips, but a 304 passes it untouched. A weak tag
    throughout keeps the 304's tag the 200's. For the same reason every
    answer says ``Vary: Accept-Encoding``: nginx adds it only to answers it
    may gzip, never to a 304. Register it after the hooks that log and
    count requests and add headers: Flask runs after_request hooks in
    reverse, so they then see (and complete) the 304 or the 412. Streamed
    responses (the export answers its preconditions itself) are otherwise
    left alone.

    If-Match and If-None-Match are evaluated in RFC 9110's order (13.2.2),
    alike on every path: the API, the dashboard page, /metrics and files.
    If-Match compares strongly, so no weak tag matches it: only ``*``
    passes, and anything else is a 412 in the envelope, as every error of
    the app is. If-None-Match compares weakly, so ``*`` matches any answer.
    Only files have a Last-Modified (Flask's), so only they answer
    If-Unmodified-Since and If-Modified-Since; other answers ignore both
    (RFC 9110 13.1.3 and 13.1.4). Errors ignore every precondition (13.2.1).
    If-Range is answered by the app's response class (IfRangeResponse).
    """
    app.response_class = IfRangeResponse

    @app.after_request
    def _make_conditional(response: Response) -> Response:
        if request.method in ("GET", "HEAD"):
            response = _evaluate_preconditions(response)
        add_vary(response, "Accept-Encoding")
        return response


def add_vary(response: Response, header: str) -> None:
    """Name ``header`` in the answer's Vary, once: what ``response.vary.add()`` does.

    It reads and writes the header itself rather than building and writing
    back a parsed header set on every answer (a cache hit's largest cost here).
    """
    vary = response.headers.get("Vary")
    if vary is None:
        response.headers.add("Vary", header)
    elif not {name.strip().lower() for name in vary.split(",")} & {"*", header.lower()}:
        response.headers["Vary"] = f"{vary}, {header}"


def _evaluate_preconditions(response: Response) -> Response:
    tag, is_weak = response.get_etag()
    if tag and not is_weak:  # a file's, which Flask tags strongly
        response.set_etag(tag, weak=True)
    if response.direct_passthrough:
        return _evaluate_file_preconditions(response, tag)
    if response.status_code != 200 or response.is_streamed:
        return response
    if if_match_fails():
        return _precondition_failed()
    if not tag:
        response.add_etag(weak=True)
        tag = response.get_etag()[0]
    if tag and "HTTP_IF_NONE_MATCH" in request.environ and (
            request.if_none_match.contains_weak(tag)):
        response.status_code = 304  # werkzeug sends a 304 without its body
    return response


def _evaluate_file_preconditions(response: Response, tag: str | None) -> Response:
    """Answer a file's preconditions in RFC 9110's order (13.2.2), which werkzeug does not keep.

    werkzeug answered the request itself, Range first: a part (206) where a
    precondition calls for a 304 or a 412. It ignores If-Unmodified-Since,
    compares If-Match with the strong tag this module then weakens (so the
    tag a client holds failed while the bare one passed), fails even ``*``,
    and sends its 412 with the whole file. Its part stands only once every
    precondition passed.
    """
    if response.status_code not in (200, 206, 304, 412):  # a 416: no precondition applies
        return response
    failure = _failed_file_precondition(response)
    if failure:
        response.close()  # the file it holds open
        return json_response(*error_response(412, failure))
    if not _file_modified_without_if_match(response, tag):
        response.status_code = 304  # werkzeug sends it without the part's body and Content-Range
    elif response.status_code != 206:  # werkzeug's 412 to If-Match: *
        response.status_code = 200
    return response


def _failed_file_precondition(response: Response) -> str | None:
    """Return why If-Match, or without it If-Unmodified-Since, fails on the file, or None."""
    if "HTTP_IF_MATCH" in request.environ:
        return _precondition_failed_message() if if_match_fails() else None
    unmodified_since, last_modified = request.if_unmodified_since, response.last_modified
    if unmodified_since and last_modified and last_modified > unmodified_since:
        return FILE_CHANGED
    return None


def _file_modified_without_if_match(response: Response, tag: str | None) -> bool:
    # Once If-Match passes, RFC 9110 13.2.2 goes on to If-None-Match, or
    # without it to If-Modified-Since: werkzeug's own order, If-Match aside.
    environ = {key: value for key, value in request.environ.items() if key != "HTTP_IF_MATCH"}
    return is_resource_modified(environ, tag, last_modified=response.headers.get("Last-Modified"))


def _precondition_failed() -> Response:
    return json_response(*error_response(412, _precondition_failed_message()))


def _precondition_failed_message() -> str:
    return PRECONDITION_FAILED if is_api_path(request.path) else PRECONDITION_FAILED_OUTSIDE_API


def if_match_fails() -> bool:
    """Tell whether the request's If-Match rules out an answer that exists: anything but ``*``."""
    if "HTTP_IF_MATCH" not in request.environ:  # most requests: no header to parse
        return False
    return bool(request.if_match) and not request.if_match.star_tag
