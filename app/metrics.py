"""Prometheus metrics, served at /metrics and summed over every gunicorn worker.

Counters live in this module and are counted by each worker; under gunicorn
(conf/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR) every worker writes
them to files that a scrape adds up, so any worker answers for all. What the
database holds (newest day per symbol) is read at scrape time instead.
"""
import datetime
import logging
from collections.abc import Iterator

from flask import Flask, Response, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from app.extensions import db
from app.request_log import request_seconds
from app.routes import METRICS_PATH
from financial.queries import newest_dates
from lib.db import DATABASE_ERRORS

logger = logging.getLogger(__name__)

# Above this many symbols the newest-date series are cut (ordered by symbol),
# keeping a scrape's query and size bounded.
MAX_SYMBOL_SERIES = 1000
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})

REQUESTS = Counter("financial_http_requests_total",
                   "HTTP requests answered, by route, method and status",
                   ("endpoint", "method", "status"))
LATENCY = Histogram("financial_http_request_duration_seconds",
                    "Seconds spent answering a request, by route", ("endpoint",))
CACHE_LOOKUPS = Counter("financial_cache_lookups_total",
                        "Lookups of cached answers, by kind and result (hit or miss)",
                        ("kind", "result"))
DATABASE_ERRORS_TOTAL = Counter("financial_database_errors_total",
                                "Times the database could not be reached or used")


def record_cache(kind: str, hit: bool) -> None:
    """Count one lookup of a cached answer of ``kind`` (the caching seam calls it)."""
    CACHE_LOOKUPS.labels(kind, "hit" if hit else "miss").inc()


def record_database_error() -> None:
    """Count one failure to reach or use the database."""
    DATABASE_ERRORS_TOTAL.inc()


def register_metrics(app: Flask) -> None:
    """Count every request but the scrapes themselves, and serve GET /metrics."""

    @app.after_request
    def _count_request(response: Response) -> Response:
        # The route, not the path: unknown paths must not add a series each.
        endpoint = request.url_rule.rule if request.url_rule else "none"
        if endpoint != METRICS_PATH:
            method = request.method if request.method in _METHODS else "other"
            REQUESTS.labels(endpoint, method, str(response.status_code)).inc()
            LATENCY.labels(endpoint).observe(request_seconds())
        return response

    app.add_url_rule(METRICS_PATH, "metrics", _serve_metrics, methods=["GET"])


def _serve_metrics() -> Response:
    """Answer a scrape in the format the scraper asks for (Prometheus text or OpenMetrics)."""
    registry = CollectorRegistry()
    if _is_multiprocess():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(REGISTRY)
    registry.register(_StoredDataCollector())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(registry), content_type=content_type,
                    headers={"Cache-Control": "no-store"})


def _is_multiprocess() -> bool:
    # The mode prometheus_client chose at import: values kept in files, not in memory.
    return values.ValueClass is not values.MutexValue


class _StoredDataCollector:
    """What the database holds, queried at scrape time by the scraping worker."""

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("financial_database_up",
                               "1 if the scrape could query the database, else 0")
        newest = GaugeMetricFamily("financial_newest_stored_date_seconds",
                                   "Newest stored trading day of each symbol, as a Unix time "
                                   "(midnight UTC)", labels=["symbol"])
        try:
            rows = newest_dates(db.session(), limit=MAX_SYMBOL_SERIES)
        except DATABASE_ERRORS as exc:
            logger.warning("metrics: database unavailable (%s)", exc.__class__.__name__)
            record_database_error()
            up.add_metric([], 0)
            yield up
            return
        for symbol, day in rows:
            newest.add_metric([symbol], _unix_time(day))
        up.add_metric([], 1)
        yield up
        yield newest


def _unix_time(day: datetime.date) -> float:
    return datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc).timestamp()
