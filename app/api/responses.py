"""Response headers shared by the namespaces."""
from flask import current_app, request
from werkzeug.wrappers import Response


def cache_control() -> dict[str, str]:
    """Return the header letting clients and proxies cache a 200 for HTTP_CACHE_MAX_AGE seconds."""
    return {"Cache-Control": f"public, max-age={current_app.config['HTTP_CACHE_MAX_AGE']}"}


def cacheable(body: dict) -> tuple[dict, int, dict]:
    """Return a 200 that clients and proxies may cache for HTTP_CACHE_MAX_AGE seconds."""
    return body, 200, cache_control()


def revalidate_unless_told(response: Response) -> Response:
    """Give a GET under /api that sets no Cache-Control ``no-cache``: the index and the docs.

    Reads say how long they may be kept, errors and the health check
    ``no-store``. What is left (the index, the OpenAPI document, Swagger UI)
    changes only with a release: a client revalidates it each time, a cheap
    304 by its ETag, and never keeps an old release's document.
    """
    if request.method in ("GET", "HEAD") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache"
    return response
