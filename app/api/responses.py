"""Response headers shared by the namespaces."""
from flask import current_app


def cacheable(body: dict) -> tuple[dict, int, dict]:
    """Return a 200 that clients and proxies may cache for HTTP_CACHE_MAX_AGE seconds."""
    max_age = current_app.config["HTTP_CACHE_MAX_AGE"]
    return body, 200, {"Cache-Control": f"public, max-age={max_age}"}
