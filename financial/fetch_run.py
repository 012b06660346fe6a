"""One run of the fetch job: fetch each job's series, keep the window, store or collect it.

Framework-free: the entry point (``get_raw_data.py``) builds the jobs, passes
the session and plain settings in, and decides what the outcome means for
the exit status and the API's cache.
"""
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from financial.ingest import StoreResult, recent_days, store_symbol, to_records
from lib.avantage_api import (
    AlphaVantageError, DailySeries, InvalidApiKeyError, PremiumOnlyError, RateLimitError,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One unit of work: a label for messages and how to get its series."""

    label: str
    fetch: Callable[[], DailySeries]
    calls_api: bool


@dataclass(frozen=True)
class RunSettings:
    """What a run does with each series.

    ``window_days`` None keeps every day (``--full``); ``dry_run`` collects
    records instead of storing; ``request_interval`` spaces API requests
    (seconds); ``show_progress`` reports "[n/N] label ..." before each job.
    """

    window_days: int | None
    dry_run: bool = False
    request_interval: float = 0.0
    show_progress: bool = False


@dataclass
class RunOutcome:
    """What a run did: failures counted, whether rows changed, dry-run records."""

    failures: int = 0
    changed: bool = False
    records: list[dict] = field(default_factory=list)


class FetchRun:
    """Runs jobs one by one; a failing job is logged and the others go on.

    ``report`` receives the one-line summary of each stored symbol (the
    job's output); ``note`` receives lines for the operator: progress and
    dry-run summaries. A spent quota or a rejected key stops the run: every
    later job is reported as not fetched, without a request.
    """

    def __init__(self, session: Session, settings: RunSettings, *,
                 report: Callable[[str], None], note: Callable[[str], None],
                 sleep: Callable[[float], object] = time.sleep) -> None:
        self.session = session
        self.settings = settings
        self.report = report
        self.note = note
        self.sleep = sleep
        self.outcome = RunOutcome()
        self._last_request: float | None = None

    def run(self, jobs: list[Job]) -> RunOutcome:
        """Process every job in order; return the outcome."""
        stop_reason = None
        for number, job in enumerate(jobs, start=1):
            if stop_reason:
                self._fail(job.label, f"not fetched: {stop_reason}")
                continue
            if self.settings.show_progress and (len(jobs) > 1 or self.settings.window_days is None):
                self.note(f"[{number}/{len(jobs)}] {job.label} ...")
            if job.calls_api:
                self._pace()
            stop_reason = self._process(job)
        return self.outcome

    def _pace(self) -> None:
        """Keep API requests at least ``request_interval`` seconds apart."""
        if self._last_request is not None:
            wait = self._last_request + self.settings.request_interval - time.monotonic()
            self.sleep(max(0.0, wait))
        self._last_request = time.monotonic()

    def _process(self, job: Job) -> str | None:
        """Handle one job; return a reason to stop the run (spent quota, bad key) or None."""
        try:
            series = job.fetch()
            frame = recent_days(series, self.settings.window_days)
            if self.settings.dry_run:
                self.outcome.records += to_records(frame)
                self.note(f"{series.symbol}: {len(frame)} rows fetched (dry run, nothing stored)")
            else:
                self._stored(store_symbol(self.session, series.symbol, frame))
        except AlphaVantageError as exc:
            self._fail(exc.symbol or job.label, exc.message)
            if job.calls_api and spoils_the_run(exc):
                return exc.message
        except SQLAlchemyError as exc:
            self._fail(job.label, f"database error ({exc.__class__.__name__}); "
                                  "its rows are unchanged", exc)
        except Exception as exc:  # one symbol's surprise must not sink the others
            self._fail(job.label, f"unexpected error ({exc.__class__.__name__}); "
                                  "see the log file", exc)
        return None

    def _stored(self, result: StoreResult) -> None:
        self.outcome.changed = self.outcome.changed or result.changed
        line = (f"{result.symbol}: {result.fetched} rows fetched, {result.new} new, "
                f"{result.updated} updated")
        logger.info("%s", line)
        self.report(line)

    def _fail(self, label: str, reason: str, exc: Exception | None = None) -> None:
        """Count a failure: one log line (stderr shows it); the file also gets the traceback."""
        self.outcome.failures += 1
        logger.error("%s: failed: %s", label, reason, exc_info=exc)


def spoils_the_run(error: AlphaVantageError) -> bool:
    """Tell whether every later request would get the same refusal (and waste quota)."""
    return (isinstance(error, (InvalidApiKeyError, PremiumOnlyError))
            or (isinstance(error, RateLimitError) and error.is_daily_quota))
