"""Where the API lives: the paths both the Api and the error handlers read."""

API_PREFIX = "/api"
FINANCIAL_DATA_PATH = "/financial_data"
STATISTICS_PATH = "/statistics"
HEALTH_PATH = "/health"
DOCS_PATH = "/docs"
# Endpoints whose error bodies carry "data": [] and "pagination": null.
PAGINATED_PATHS = frozenset({API_PREFIX + FINANCIAL_DATA_PATH})
