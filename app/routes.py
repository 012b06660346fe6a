"""Where the API and the dashboard live: the paths the app, the Api and the error handlers read."""

API_PREFIX = "/api"
FINANCIAL_DATA_PATH = "/financial_data"
# Inside the financial_data namespace: /api/financial_data/export.
EXPORT_PATH = "/export"
STATISTICS_PATH = "/statistics"
HEALTH_PATH = "/health"
SYMBOLS_PATH = "/symbols"
FETCH_RUNS_PATH = "/fetch_runs"
DOCS_PATH = "/docs"
DASHBOARD_PATH = "/"
# Outside /api: for the operator's scraper, not routed by nginx.
METRICS_PATH = "/metrics"
# Endpoints whose error bodies carry "data": [] and "pagination": null: the
# lists, and the CSV export, which shares the list's filters and so its errors.
PAGINATED_PATHS = frozenset(
    API_PREFIX + path for path in (FINANCIAL_DATA_PATH, FINANCIAL_DATA_PATH + EXPORT_PATH,
                                   SYMBOLS_PATH, FETCH_RUNS_PATH))


def is_api_path(path: str) -> bool:
    """Tell whether ``path`` is the API's (API_PREFIX or under it), not the dashboard's."""
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")
