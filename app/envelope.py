"""The one JSON envelope of the API's answers, and its serialization outside RESTX.

Every JSON answer uses it but two: /api/health's check (``health_body``:
status, database, schema and info.error) and the OpenAPI document.
"""
from typing import Any

from flask import Response
from flask_restx.representations import output_json

_NO_PAGINATION = object()


def envelope(data: Any, error: str = "", pagination: Any = _NO_PAGINATION) -> dict[str, Any]:
    """Wrap ``data`` as ``{"data": ..., ["pagination": ...,] "info": {"error": ...}}``.

    ``pagination`` is included only when given (list endpoints), even as None.
    """
    body: dict[str, Any] = {"data": data}
    if pagination is not _NO_PAGINATION:
        body["pagination"] = pagination
    body["info"] = {"error": error}
    return body


def error_envelope(message: str, *, paginated: bool) -> dict[str, Any]:
    """Return the error body: list endpoints get ``[]`` and a null pagination."""
    if paginated:
        return envelope([], message, pagination=None)
    return envelope({}, message)


def json_response(body: dict[str, Any], status: int, headers: dict | None = None) -> Response:
    """Return ``body`` as JSON written exactly as RESTX writes its resources' answers.

    For what Flask answers outside RESTX (unknown paths, the API index), so
    every JSON response has the same key order and spacing.
    """
    response = output_json(body, status, headers)
    response.headers["Content-Type"] = "application/json"
    return response


# Messages shared by the error handlers and the health check.
DATABASE_UNAVAILABLE = "the database is unavailable, please retry later"
INTERNAL_ERROR = "internal server error"
BAD_HOST = "the Host header is not a valid host name"
MISSING_HOST = "the Host header is missing: an HTTP/1.1 request must send one"
RETRY_AFTER_SECONDS = "5"
