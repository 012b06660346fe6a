"""Conditional GET: weak ETags, 304 when the client has that body, 412 on a failed If-Match."""
from flask import Flask, request
from werkzeug.wrappers import Response

from app.envelope import json_response
from app.errors import error_response

PRECONDITION_FAILED = ("If-Match matches no current answer: every ETag of this API is weak "
                       "and If-Match compares strongly, so only * matches")


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
    responses and files (which Flask tags and answers conditionally itself)
    are otherwise left alone.

    If-Match and If-None-Match are evaluated in RFC 9110's order (13.2.2).
    If-Match compares strongly, so no weak tag matches it: only ``*``
    passes, and anything else is a 412. If-None-Match compares weakly, so
    ``*`` matches any answer. No answer has a Last-Modified, so
    If-Modified-Since and If-Unmodified-Since are ignored (RFC 9110 13.1.3
    and 13.1.4). Errors ignore every precondition (13.2.1).
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
    if if_match_fails():
        return json_response(*error_response(412, PRECONDITION_FAILED))
    if not tag:
        response.add_etag(weak=True)
        tag = response.get_etag()[0]
    if tag and "HTTP_IF_NONE_MATCH" in request.environ and (
            request.if_none_match.contains_weak(tag)):
        response.status_code = 304  # werkzeug sends a 304 without its body
    return response


def if_match_fails() -> bool:
    """Tell whether the request's If-Match rules out an answer that exists: anything but ``*``."""
    return bool(request.if_match) and not request.if_match.star_tag
