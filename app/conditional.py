"""Conditional GET: an ETag on every 200 GET, 304 when the client already has that body."""
from flask import Flask, request
from werkzeug.wrappers import Response


def register_conditional_get(app: Flask) -> None:
    """Tag each 200 answer to GET/HEAD by its body and answer a matching If-None-Match with 304.

    The tag is a hash of the body, so it changes exactly when the answer
    does (new data, a new release's format). Register it after the hooks
    that log and count requests: Flask runs after_request hooks in reverse,
    so they then see the 304. Streamed responses and files (which Flask
    tags and answers conditionally itself) are left alone.
    """

    @app.after_request
    def _make_conditional(response: Response) -> Response:
        if (request.method not in ("GET", "HEAD") or response.status_code != 200
                or response.is_streamed or response.direct_passthrough):
            return response
        if "ETag" not in response.headers:
            response.add_etag()
        return response.make_conditional(request)
