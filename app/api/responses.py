"""Response headers shared by the namespaces."""
from urllib.parse import urlencode

from flask import current_app, request
from werkzeug.wrappers import Response


def cache_control() -> dict[str, str]:
    """Return the header letting clients and proxies cache a 200 for HTTP_CACHE_MAX_AGE seconds."""
    return {"Cache-Control": f"public, max-age={current_app.config['HTTP_CACHE_MAX_AGE']}"}


def cacheable(body: dict) -> tuple[dict, int, dict]:
    """Return a 200 that clients and proxies may cache for HTTP_CACHE_MAX_AGE seconds.

    A page of a list also links its neighbours (see ``page_links``).
    """
    headers = cache_control()
    if body.get("pagination"):
        links = page_links(body["pagination"]["page"], body["pagination"]["pages"])
        if links:
            headers["Link"] = links
    return body, 200, headers


def page_links(page: int, pages: int) -> str:
    """Return the Link header (RFC 8288) to the first, previous, next and last pages.

    Each target is this request's path and parameters with another ``page``,
    so a client pages on by following ``next`` without rebuilding its query.
    The targets are relative references, resolved against the request's URL:
    an answer is cached and may be served to a request for another Host, which
    a client may write freely. Empty when there is no page (nothing matched).
    """
    if pages < 1:
        return ""
    targets = {"first": 1}
    if 1 < page <= pages:
        targets["prev"] = page - 1
    if page < pages:
        targets["next"] = page + 1
    targets["last"] = pages
    return ", ".join(f'<{_page_url(number)}>; rel="{rel}"' for rel, number in targets.items())


def _page_url(page: int) -> str:
    """Return this request's path and query with ``page`` in place of its own.

    Every reserved character is percent-encoded, commas of lists too: a Link
    header separates its links by commas, and not every client's parser
    looks for them only outside the brackets. A list names each of its items
    once (``_each_once``).
    """
    params = [(name, _each_once(value)) for name, value in request.args.items(multi=True)
              if name != "page"]
    return f"{request.script_root}{request.path}?{urlencode([*params, ('page', page)])}"


def _each_once(value: str) -> str:
    """Return a comma-separated list with each item once, as first spelled (case aside).

    The API ignores repeats (``IBM,ibm,IBM`` is one ticker), but written
    back as sent, each %2C three bytes, a list repeated up to a 4 KB
    request line made links of 30 KB and more, past the answer headers
    nginx takes from the API (its proxy_buffer_size): it answered 503.
    Only lists hold commas in an answer that has links: at most 100
    tickers, or the ten fields.
    """
    if "," not in value:
        return value
    items: dict[str, str] = {}
    for item in value.split(","):
        items.setdefault(item.upper(), item)
    return ",".join(items.values())


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
