"""Prometheus metrics, served at /metrics and summed over every gunicorn worker.

Counters live in this module and are counted by each worker; under gunicorn
(conf/gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR) every worker writes
them to files that a scrape adds up, so any worker answers for all. What the
database holds (newest day per symbol, the last fetch run) is read at
scrape time instead.
"""
import datetime
import functools
import logging
import struct
from collections.abc import Callable, Iterator

from flask import Flask, Response, current_app, g, request
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session

from app.extensions import db
from app.request_log import when_answered
from app.routes import METRICS_PATH
from financial.models import RUN_STATUSES
from financial.queries import newest_dates
from financial.runs import last_run
from lib.db_errors import DATABASE_ERRORS, describe_database_error, is_schema_error
from lib.outage_log import OUTAGE_LINE_INTERVAL_SECONDS, OutageLog

logger = logging.getLogger(__name__)

# Above this many symbols the newest-date series are cut (ordered by symbol),
# keeping a scrape's query and size bounded.
MAX_SYMBOL_SERIES = 1000
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
_SCRAPE_FAILURES = "metrics_scrape_failures"
_DATABASE_FAILED = "database_failed"

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
EXPORTS_REFUSED_TOTAL = Counter("financial_exports_refused_total",
                                "CSV exports answered 503 because every export slot was taken")

# Under gunicorn each worker keeps its counts in files of PROMETHEUS_MULTIPROC_DIR.
# A folder deleted (a cleaner of temporary files) or unwritable fails every count
# a worker started since then makes: said once per interval, never failing the request.
_COUNTS_LOST = OutageLog(OUTAGE_LINE_INTERVAL_SECONDS, headline="metrics: cannot count",
                         refusals="counts lost", log=logger)
_FOLDER_GONE = OutageLog(OUTAGE_LINE_INTERVAL_SECONDS, headline="metrics: cannot answer",
                         refusals="scrapes answered 503", log=logger)
METRICS_FOLDER_GONE = ("the workers' metrics folder (PROMETHEUS_MULTIPROC_DIR) is missing: "
                       "restart the API to make it again")


def record_cache(kind: str, hit: bool) -> None:
    """Count one lookup of a cached answer of ``kind`` (the caching seam calls it)."""
    _count(lambda: _cache_lookups(kind, hit).inc())


def _count(increment: Callable[[], None]) -> None:
    """Run ``increment``; a count that cannot be stored is lost, and said, but fails nothing."""
    try:
        increment()
    # prometheus_client's files: OSError for the folder or the disk; RuntimeError,
    # UnicodeDecodeError or struct.error (cut short) for a damaged file. Any other
    # ValueError is a mistake in the count.
    except (OSError, RuntimeError, UnicodeDecodeError, struct.error) as exc:
        _COUNTS_LOST.failed(f"{exc.__class__.__name__}: {exc}")


# A series is looked up once: labels() validates and locks on every call.
# Their number is bounded: routes (not paths), methods, statuses, cache kinds.
@functools.cache
def _cache_lookups(kind: str, hit: bool) -> Counter:
    return CACHE_LOOKUPS.labels(kind, "hit" if hit else "miss")


@functools.cache
def _request_series(endpoint: str, method: str, status: int) -> tuple[Counter, Histogram]:
    return REQUESTS.labels(endpoint, method, str(status)), LATENCY.labels(endpoint)


def record_database_error() -> None:
    """Count one failure to reach or use the database, and mark the current request with it."""
    setattr(g, _DATABASE_FAILED, True)
    _count(DATABASE_ERRORS_TOTAL.inc)


def record_export_refused() -> None:
    """Count one export refused for want of a slot: load shed on purpose, not a fault."""
    _count(EXPORTS_REFUSED_TOTAL.inc)


def had_database_error() -> bool:
    """Tell whether the current request recorded a database failure (``record_database_error``)."""
    return g.get(_DATABASE_FAILED, False)


def register_metrics(app: Flask) -> None:
    """Count every request but the scrapes themselves, and serve GET /metrics.

    A scraper polls through a database outage too: it gets one log line per
    OUTAGE_LINE_INTERVAL_SECONDS with the count, not one per scrape, and one
    line when a scrape reads the database again.
    """
    app.extensions[_SCRAPE_FAILURES] = OutageLog(
        OUTAGE_LINE_INTERVAL_SECONDS, headline="metrics: database unavailable",
        refusals="scrapes without the stored data", log=logger,
        back="metrics: database is back")

    @app.after_request
    def _count_request(response: Response) -> Response:
        # The route, not the path: unknown paths must not add a series each.
        endpoint = request.url_rule.rule if request.url_rule else "none"
        if endpoint != METRICS_PATH:
            method = request.method if request.method in _METHODS else "other"
            _count(lambda: _count_one(endpoint, method, response))
        return response

    app.add_url_rule(METRICS_PATH, "metrics", _serve_metrics, methods=["GET"])


def _count_one(endpoint: str, method: str, response: Response) -> None:
    requests, latency = _request_series(endpoint, method, response.status_code)
    requests.inc()
    when_answered(response, lambda seconds: _count(lambda: latency.observe(seconds)))


def _serve_metrics() -> Response:
    """Answer a scrape in the format the scraper asks for (Prometheus text or OpenMetrics).

    Without the workers' metrics folder there is nothing to add up: a 503,
    which the scraper records as a failed scrape (``up`` 0).
    """
    registry = CollectorRegistry()
    if _is_multiprocess():
        try:
            multiprocess.MultiProcessCollector(registry)
        except ValueError:  # its only one: no such folder
            _FOLDER_GONE.failed(METRICS_FOLDER_GONE)
            return Response(METRICS_FOLDER_GONE + "\n", status=503,
                            content_type="text/plain; charset=utf-8",
                            headers={"Cache-Control": "no-store"})
    else:
        registry.register(REGISTRY)
    registry.register(_StoredDataCollector())
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = Response(encoder(registry), content_type=content_type,
                        headers={"Cache-Control": "no-store"})
    response.vary.add("Accept")  # Prometheus's text or OpenMetrics, by what the scraper accepts
    return response


def _is_multiprocess() -> bool:
    # The mode prometheus_client chose at import: values kept in files, not in memory.
    return values.ValueClass is not values.MutexValue


class _StoredDataCollector:
    """What the database holds, read at scrape time by the worker that answers the scrape."""

    def collect(self) -> Iterator[Metric]:
        session = db.session()
        try:
            families = [_newest_stored_dates(session), *_last_fetch_run(session)]
        except (*DATABASE_ERRORS, ProgrammingError) as exc:
            # MySQL reports a missing table as a ProgrammingError, SQLite as an OperationalError.
            if isinstance(exc, ProgrammingError) and not is_schema_error(exc):
                raise
            current_app.extensions[_SCRAPE_FAILURES].failed(describe_database_error(exc))
            record_database_error()
            yield _database_up(0)
            return
        current_app.extensions[_SCRAPE_FAILURES].succeeded()
        yield _database_up(1)
        yield from families


def _database_up(value: int) -> Metric:
    return GaugeMetricFamily("financial_database_up",
                             "1 if the scrape could query the database, else 0", value=value)


def _newest_stored_dates(session: Session) -> Metric:
    family = GaugeMetricFamily("financial_newest_stored_date_seconds",
                               "Newest stored trading day of each symbol, as a Unix time "
                               "(midnight UTC)", labels=["symbol"])
    for symbol, day in newest_dates(session, limit=MAX_SYMBOL_SERIES):
        family.add_metric([symbol], _unix_time(datetime.datetime.combine(day, datetime.time())))
    return family


def _last_fetch_run(session: Session) -> list[Metric]:
    """Describe the last fetch run (``last_run``): its start, end and status (none yet: [])."""
    run = last_run(session)
    if run is None:
        return []
    status = GaugeMetricFamily("financial_last_fetch_run_status",
                               "1 for the last fetch run's status (the run in progress, else the "
                               "one that ended last), 0 for the other statuses",
                               labels=["status"])
    for name in RUN_STATUSES:
        status.add_metric([name], float(name == run.status))
    started = GaugeMetricFamily("financial_last_fetch_run_started_seconds",
                                "When the last fetch run started, as a Unix time",
                                value=_unix_time(run.started_at))
    families: list[Metric] = [status, started]
    if run.finished_at is not None:
        families.append(GaugeMetricFamily("financial_last_fetch_run_finished_seconds",
                                          "When the last fetch run ended, as a Unix time",
                                          value=_unix_time(run.finished_at)))
    return families


def _unix_time(moment: datetime.datetime) -> float:
    """Return a naive UTC time (as the database holds them) as a Unix time."""
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()
