"""Response headers shared by the namespaces."""
from flask import current_app


def cache_control() -> dict[str, str]:
    """Return the header letting clients and proxies cache a 200 for HTTP_CACHE_MAX_AGE seconds."""
    return {"Cache-Control": f"public, max-age={current_app.config['HTTP_CACHE_MAX_AGE']}"}


def cacheable(body: dict) -> tuple[dict, int, dict]:
    """Return a 200 that clients and proxies may cache for HTTP_CACHE_MAX_AGE seconds."""
    return body, 200, cache_control()
