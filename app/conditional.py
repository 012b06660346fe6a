"""Conditional GET: an ETag on every 200 GET, 304 when the client already has that body."""
from flask import Flask, request
from werkzeug.wrappers import Response


# Request headers that can make an answer conditional (RFC 9110, section 13.1).
CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH", "HTTP_IF_MODIFIED_SINCE",
                       "HTTP_IF_UNMODIFIED_SINCE")


def register_conditional_get(app: Flask) -> None:
    """Tag each 200 answer to GET/HEAD by its body and answer a matching If-None-Match with 304.

    The tag is a hash of the body, so it changes exactly when the answer
    does (new data, a new release's format); a tag already set (the
    response cache stores it with the body) is kept. Register it after the
    hooks that log and count requests: Flask runs after_request hooks in
    reverse, so they then see the 304. Streamed responses and files (which
    Flask tags and answers conditionally itself) are left alone. Only a
    request carrying a condition is evaluated: werkzeug's evaluation of the
    others would only add a Date header, which the server sends anyway.
    """

    @app.after_request
    def _make_conditional(response: Response) -> Response:
        if (request.method not in ("GET", "HEAD") or response.status_code != 200
                or response.is_streamed or response.direct_passthrough):
            return response
        if "ETag" not in response.headers:
            response.add_etag()
        environ = request.environ
        if any(name in environ for name in CONDITIONAL_HEADERS):
            response.make_conditional(request)
        return response
