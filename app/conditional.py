"""Conditional GET: a weak ETag on every 200 GET, 304 when the client already has that body."""
from flask import Flask, request
from werkzeug.wrappers import Response


def register_conditional_get(app: Flask) -> None:
    """Tag each 200 answer to GET/HEAD by its body and answer a matching If-None-Match with 304.

    The tag is a hash of the body, so it changes exactly when the answer
    does (new data, a new release's format); a tag already set (the
    response cache stores it with the body) is kept. Every tag is weak, a
    file's too: nginx gzips answers, which changes their bytes, and weakens
    the tag of each it gzips, but a 304 passes it untouched. A weak tag
    throughout keeps the 304's tag the 200's. For the same reason every
    answer says ``Vary: Accept-Encoding``: nginx adds it only to answers it
    may gzip, never to a 304. Register it after the hooks that log and
    count requests: Flask runs after_request hooks in reverse, so they then
    see the 304. Streamed responses and files (which Flask tags and answers
    conditionally itself) are otherwise left alone.

    Only If-None-Match is evaluated, with the weak comparison (RFC 9110,
    13.1.2), so ``*`` matches any answer. If-Match and If-Unmodified-Since
    guard changes, and the API changes nothing; no answer has a
    Last-Modified for If-Modified-Since. They are ignored: werkzeug would
    answer a failed If-Match with a 412 carrying the 200's body.
    """

    @app.after_request
    def _make_conditional(response: Response) -> Response:
        if request.method in ("GET", "HEAD"):
            response = _evaluate_preconditions(response)
        response.vary.add("Accept-Encoding")
        return response


def _evaluate_preconditions(response: Response) -> Response:
    tag, is_weak = response.get_etag()
    if tag and not is_weak:  # a file's, which Flask tags strongly
        response.set_etag(tag, weak=True)
    if response.status_code != 200 or response.is_streamed or response.direct_passthrough:
        return response
    if not tag:
        response.add_etag(weak=True)
        tag = response.get_etag()[0]
    if tag and "HTTP_IF_NONE_MATCH" in request.environ and (
            request.if_none_match.contains_weak(tag)):
        response.status_code = 304  # werkzeug sends a 304 without its body
    return response
