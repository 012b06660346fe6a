"""What the OpenAPI document says beyond the code: shared models, and errors with true examples.

Every documented response carries its own example (``examples`` in the
Swagger 2.0 response object), which Swagger UI shows instead of one built
from field examples: an error shows a message that endpoint really sends.
"""
import re
from functools import cached_property
from typing import Any

from flask import Response, url_for
from flask_restx import Api, Model, Namespace, fields
from flask_restx.swagger import Swagger

from app.envelope import (
    BAD_HOST, DATABASE_UNAVAILABLE, INTERNAL_ERROR, envelope, error_envelope, json_response,
)
from app.conditional import PRECONDITION_FAILED
from app.errors import method_not_allowed_message
from app.rate_limits import rate_limit_message
from app.routes import API_PREFIX

# The methods every endpoint answers; a 405 names them.
ALLOWED_METHODS = ["GET", "HEAD", "OPTIONS"]
# The limit the 429 example quotes: docker-compose.prod.yml's.
EXAMPLE_RATE_LIMIT = "600 per minute"
# Why a run recorded a symbol not_fetched: what stops a run before its end
# (financial.fetch_run: spoils_the_run, a stop signal, a lost database).
NOT_FETCHED_MEANING = ("skipped, without a request, after the run had to stop: a spent daily "
                       "quota, a rejected key, a premium-only request, the run's deadline, a "
                       "stop signal, or a database that stopped answering")
SYMBOL_STATUS_DESCRIPTION = f"ok (stored), failed, or not_fetched ({NOT_FETCHED_MEANING})"


class _Nullable:
    """Mark a field as possibly null (``x-nullable``, Swagger 2.0 has no null type)."""

    def schema(self) -> dict:
        schema = super().schema()  # type: ignore[misc]
        if "$ref" in schema:  # keys beside a $ref are ignored: wrap it
            schema["allOf"] = [{"$ref": schema.pop("$ref")}]
        return {**schema, "x-nullable": True}


class NullableString(_Nullable, fields.String):
    """A string that may be null."""


class NullableNested(_Nullable, fields.Nested):
    """A nested object that may be null."""


class NullableDate(_Nullable, fields.Date):
    """A date (YYYY-MM-DD) that may be null."""


class NullableDateTime(_Nullable, fields.DateTime):
    """A UTC time (YYYY-MM-DDTHH:MM:SSZ) that may be null."""


def require_every_key(model_fields: dict[str, fields.Raw]) -> dict[str, fields.Raw]:
    """Mark every field of a model as required: its responses always hold every key.

    A schema-driven client can then rely on each key being there (null where
    the field says it may be), not only on its type when present.
    """
    for field in model_fields.values():
        field.required = True
    return model_fields


info_model = Model("Info", require_every_key({
    "error": fields.String(description='"" on success, else what is wrong'),
}))
pagination_model = Model("Pagination", require_every_key({
    "count": fields.Integer(description="Items matching the filters"),
    "page": fields.Integer(description="This page, from 1"),
    "limit": fields.Integer(description="Items per page"),
    "pages": fields.Integer(description="ceil(count / limit); 0 when count is 0"),
}))
error_model = Model("Error", require_every_key({
    "data": fields.Raw(description="{} on an error"),
    "info": fields.Nested(info_model),
}))
list_error_model = Model("ListError", require_every_key({
    "data": fields.List(fields.Raw, description="[] on an error"),
    "pagination": NullableNested(pagination_model, description="null on an error"),
    "info": fields.Nested(info_model),
}))
SHARED_MODELS = (info_model, pagination_model, error_model, list_error_model)

ETAG_HEADER = {"ETag": "A weak tag of this answer (W/\"...\"); send it in If-None-Match "
                       "to get a 304 while it is unchanged"}
LINK_HEADER = {"Link": {"type": "string", "description": (
    "The first, previous, next and last pages (RFC 8288; rel first, prev, next, last), each "
    "this query with another page, relative to the request's URL; absent when nothing matched")}}
ALLOW_HEADER = {"Allow": {"type": "string",
                          "description": "The methods allowed: " + ", ".join(ALLOWED_METHODS)}}
RETRY_AFTER_HEADER = {"Retry-After": {"type": "integer",
                                      "description": "Seconds to wait before retrying"}}
RATE_LIMIT_HEADERS = {
    **RETRY_AFTER_HEADER,
    "X-RateLimit-Limit": {"type": "integer", "description": "Requests allowed per window"},
    "X-RateLimit-Remaining": {"type": "integer", "description": "Requests left (0)"},
    "X-RateLimit-Reset": {"type": "integer", "description": "When the window ends (Unix time)"},
}
NOT_MODIFIED = ("Not Modified: If-None-Match holds this answer's current ETag; no body", None)


def json_example(body: Any) -> dict[str, Any]:
    """Return a response's ``examples`` holding one JSON body."""
    return {"examples": {"application/json": body}}


def ok_response(description: str, model: Model, example: dict, *,
                paginated: bool = False) -> dict[str, tuple]:
    """Return a 200 that carries an ETag, with ``example`` (the sample's true answer).

    A ``paginated`` one, a page of a list, also carries the Link header.
    """
    headers = {**ETAG_HEADER, **LINK_HEADER} if paginated else ETAG_HEADER
    return {"200": (description, model, {**json_example(example), "headers": headers})}


def error_responses(path: str, *, paginated: bool, bad_request: str | None = None,
                    rate_limited: bool = True, also_unavailable: str = "") -> dict[str, tuple]:
    """Return the error responses of the GET at ``path`` (below /api), each with a true example.

    ``bad_request``: a real 400 message of that endpoint's parameters (None:
    it takes none, and its only 400 is the one any path gives a bad Host).
    ``also_unavailable`` ends the 503's description with the endpoint's other causes.
    Each 4xx and 5xx is an envelope: a list endpoint's holds ``"data": []``
    and ``"pagination": null``, any other's ``"data": {}``.
    """
    model = list_error_model if paginated else error_model

    def example(message: str) -> dict[str, Any]:
        return json_example(error_envelope(message, paginated=paginated))

    responses = {
        "405": ("Method not allowed: only " + ", ".join(ALLOWED_METHODS) + " (header Allow)",
                model, {**example(method_not_allowed_message("DELETE", API_PREFIX + path,
                                                             ALLOWED_METHODS)),
                        "headers": ALLOW_HEADER}),
        "412": ("Precondition Failed: If-Match holds no *; every ETag is weak and If-Match "
                "compares strongly, so no tag matches", model, example(PRECONDITION_FAILED)),
        "500": ("Unexpected error; the details are only in the server's log", model,
                example(INTERNAL_ERROR)),
        "503": ("The database is unreachable, did not answer in time, or lacks its schema "
                "(not migrated, or behind the migrations)" + also_unavailable, model,
                {**example(DATABASE_UNAVAILABLE), "headers": RETRY_AFTER_HEADER}),
    }
    if bad_request:
        responses["400"] = ("A parameter is invalid, unknown or repeated; info.error names it",
                            model, example(bad_request))
    else:
        responses["400"] = ("The Host header is not a valid host name, or an HTTP/1.1 request "
                            "sent none; info.error says which", model, example(BAD_HOST))
    if rate_limited:
        responses["429"] = (
            "Too many requests from this client (only when the operator sets RATE_LIMIT)",
            model, {**example(rate_limit_message(EXAMPLE_RATE_LIMIT)),
                    "headers": RATE_LIMIT_HEADERS})
    return responses


def namespace(name: str, description: str) -> Namespace:
    """Create a namespace that knows the shared models."""
    ns = Namespace(name, description=description)
    for model in SHARED_MODELS:
        ns.add_model(model.name, model)
    return ns


def unwrap(text: str) -> str:
    """Join the lines of each paragraph of ``text`` into one line.

    Swagger UI renders a description's every line break as a break, so text
    wrapped for the source would show as ragged, narrow lines. Paragraphs
    stay apart, and an indented block (code) keeps its lines.
    """
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = paragraph.split("\n")
        if all(line.startswith("    ") for line in lines):
            paragraphs.append(paragraph)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


def _unwrap_descriptions(node: Any) -> None:
    """Unwrap every ``description`` and ``summary`` text of a document, in place."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                node[key] = unwrap(value)
            else:
                _unwrap_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _unwrap_descriptions(item)


class _SwaggerWithExamples(Swagger):
    """RESTX's document builder, keeping each response's ``examples``, which it drops.

    It also leaves out RESTX's top-level ``responses``, one per exception
    handler and named after its exception class: no operation refers to them,
    each lists its own errors with their envelope and a true example.
    """

    def as_dict(self) -> dict:
        document = super().as_dict()
        _unwrap_descriptions(document)
        return document

    def register_errors(self) -> dict:
        return {}

    def responses_for(self, doc: dict, method: str) -> dict:
        responses = super().responses_for(doc, method)
        for level in (doc, doc[method]):
            for code, response in level.get("responses", {}).items():
                if isinstance(response, tuple) and len(response) == 3 \
                        and "examples" in response[2]:
                    responses[str(code)]["examples"] = response[2]["examples"]
        return responses


class DocumentedApi(Api):
    """The Api: its document carries every response's example, and /api points to it."""

    @cached_property
    def __schema__(self) -> dict:
        return _SwaggerWithExamples(self).as_dict()

    def render_root(self) -> Response:
        """Answer GET /api with where the documentation and the endpoints are."""
        return json_response(envelope({
            "documentation": url_for(".doc"),
            "openapi": url_for(".specs"),
            "endpoints": [API_PREFIX + path for path in sorted(self.__schema__["paths"])],
        }), 200)
