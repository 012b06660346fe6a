"""The HTTP layer: the RESTX ``Api`` on a blueprint at /api, one namespace per resource."""
from typing import TYPE_CHECKING

from flask import Blueprint, Flask

from app.routes import (
    API_PREFIX, DOCS_PATH, FETCH_RUNS_PATH, FINANCIAL_DATA_PATH, HEALTH_PATH, STATISTICS_PATH,
    SYMBOLS_PATH,
)

if TYPE_CHECKING:
    from app.api.docs import DocumentedApi

API_DESCRIPTION = """Daily stock prices fetched from AlphaVantage, with statistics, the
freshness of each symbol and the history of the fetch runs.

Every JSON response is an envelope: `data`, `pagination` (list endpoints only)
and `info.error`, an empty string on success and a message naming the
offending parameter on failure; the CSV export answers its errors with the
same envelope. Two are not: `/health` answers its check with `status`,
`database`, `schema` and `info.error`, and this document is plain OpenAPI.
The `Accept` header is not consulted: the export answers CSV,
every other endpoint JSON. Unknown or repeated query parameters are rejected
with 400 (`/health`, which takes none, ignores any).
Dates are `YYYY-MM-DD` and ranges are inclusive. Prices are exact decimal
strings. Any path outside these endpoints (one with a trailing slash too)
answers 404, never a redirect; a method other than
GET, HEAD or OPTIONS answers 405 naming the allowed ones; OPTIONS answers
204 with `Allow`. A Host header that is no valid host name answers 400. A
database that is down, does not answer within a few seconds or lacks its
schema gives 503 with `Retry-After`, as does an export while the server
streams as many as it may at once. `GET /api` lists the endpoints.

Every successful read carries a weak `ETag` (`W/"..."`);
send it back in `If-None-Match` to get `304 Not Modified` with no body while
the answer is unchanged (`*` matches any). `If-Match` compares strongly, which
no weak tag passes: anything but `*` answers 412. The date conditions are
ignored. Every response carries `X-Request-ID` (yours, if it
is 1-200 letters, digits, `.`, `_` or `-`). When the operator sets a rate
limit, each client has one budget for the whole API (`/health` and OPTIONS
excepted); over it the answer is 429 with `Retry-After` seconds.

The examples are real: each 200 is what the bundled sample (`make run`
without an API key: IBM and AAPL, 2022-10-31 to 2023-03-24) answers to the
values "Try it out" fills in, and each error is a message that endpoint
sends. Examples:

    curl 'http://127.0.0.1:5000/api/financial_data?symbol=IBM&fields=all&limit=3'
    curl 'http://127.0.0.1:5000/api/financial_data?symbol=IBM,AAPL&start_date=2023-03-01'
    curl -o prices.csv 'http://127.0.0.1:5000/api/financial_data/export?symbol=IBM,AAPL&fields=all'
"""


def register_api(app: Flask) -> "DocumentedApi":
    """Create the Api on a blueprint at /api and add every namespace.

    GET /api and /api/ both answer where the documentation is (RESTX's own
    root is /api/ only, and a 404). RESTX and the namespaces are imported
    here rather than with the package: the fetch job imports app.api.caching,
    which must not bring them along.
    """
    from app.api.docs import DocumentedApi
    from app.api.export import init_export_slots
    from app.api.fetch_runs import ns as fetch_runs_ns
    from app.api.financial_data import ns as financial_data_ns
    from app.api.health import init_health_check
    from app.api.health import ns as health_ns
    from app.api.responses import revalidate_unless_told
    from app.api.statistics import ns as statistics_ns
    from app.api.symbols import ns as symbols_ns

    blueprint = Blueprint("api", __name__, url_prefix=API_PREFIX)
    api = DocumentedApi(
        blueprint,
        version="1.0",
        title="Financial data API",
        description=API_DESCRIPTION,
        doc=DOCS_PATH,
    )
    api.add_namespace(financial_data_ns, path=FINANCIAL_DATA_PATH)
    api.add_namespace(statistics_ns, path=STATISTICS_PATH)
    api.add_namespace(symbols_ns, path=SYMBOLS_PATH)
    api.add_namespace(fetch_runs_ns, path=FETCH_RUNS_PATH)
    api.add_namespace(health_ns, path=HEALTH_PATH)
    init_health_check(app)
    init_export_slots(app)
    blueprint.add_url_rule("", "index", api.render_root)
    blueprint.after_request(revalidate_unless_told)
    app.register_blueprint(blueprint)
    return api
