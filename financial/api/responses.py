"""Response helpers shared by the namespaces: cache headers and error models."""
from flask import current_app
from flask_restx import Namespace, fields


def cacheable(body: dict) -> tuple[dict, int, dict]:
    """Return a 200 that clients and proxies may cache for HTTP_CACHE_MAX_AGE seconds."""
    max_age = current_app.config["HTTP_CACHE_MAX_AGE"]
    return body, 200, {"Cache-Control": f"public, max-age={max_age}"}


def error_model(ns: Namespace, name: str, **data_fields):
    """Declare the Swagger model of an error envelope for ``ns``."""
    info = ns.model(f"{name}Info", {
        "error": fields.String(example="start_date: must be a date in YYYY-MM-DD format"),
    })
    return ns.model(name, {**data_fields, "info": fields.Nested(info)})
