"""Fetch daily prices from AlphaVantage and upsert the recent ones into financial_data.

Run ``python get_raw_data.py --help`` for the options. Exit status: 0 when
every symbol was stored, 1 when at least one failed (the others are still
stored), 2 on a usage or configuration error.
"""
import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dotenv import load_dotenv
from flask_migrate import upgrade
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from app import create_app
from app.extensions import cache, db
from conf.settings import PROJECT_ROOT, BaseConfig, ConfigError, get_config
from financial.ingest import DEFAULT_WINDOW_DAYS, StoreResult, recent_days, store_prices, to_records
from lib.avantage_api import (
    AlphaVantageClient, AlphaVantageError, DailySeries, InvalidApiKeyError, PremiumOnlyError,
    RateLimitError, classify_error_payload, parse_daily_series,
)
from lib.db import MigrationLockTimeout, migration_lock
from lib.log_setup import configure_logging
from lib.tickers import is_valid_symbol

logger = logging.getLogger("get_raw_data")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_WINDOW_DAYS = 36_500
SAMPLE_DIR = PROJECT_ROOT / "data" / "fixtures"
STORE_ATTEMPTS = 3
STORE_RETRY_PAUSE_SECONDS = 0.5
MYSQL_LOCK_ERRORS = (1205, 1213)  # lock wait timeout, deadlock


class UsageError(Exception):
    """The command line or configuration cannot work; exit status 2."""


@dataclass(frozen=True)
class Job:
    """One unit of work: a label for messages and how to get its series."""

    label: str
    fetch: Callable[[], DailySeries]
    calls_api: bool


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="get_raw_data.py",
        description="Fetch daily prices from AlphaVantage (TIME_SERIES_DAILY_ADJUSTED, falling "
                    "back to TIME_SERIES_DAILY when premium-only) and upsert the most recent "
                    "days into financial_data. Reads .env and the environment (see .env.example).",
        epilog="Exit status: 0 all symbols stored, 1 at least one symbol failed, "
               "2 usage or configuration error.",
    )
    parser.add_argument("--symbols", help="comma-separated tickers (default: SYMBOLS, IBM,AAPL)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--days", type=_positive_int, default=DEFAULT_WINDOW_DAYS,
                        help="keep days newer than (newest day - N days), N from 1 to "
                             f"{MAX_WINDOW_DAYS} (default: 14)")
    window.add_argument("--full", action="store_true",
                        help="whole history (outputsize=full), no window")
    parser.add_argument("--from-file", action="append", type=Path, default=[], metavar="PATH",
                        help="load a saved AlphaVantage JSON response instead of calling the "
                             "API; repeatable; the symbol comes from the file")
    parser.add_argument("--sample-if-no-key", action="store_true",
                        help="when no API key is configured, load the bundled sample "
                             "responses in data/fixtures/ instead (and say so)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the records as one JSON array on stdout; write nothing")
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, got {text!r}") from None
    if not 1 <= value <= MAX_WINDOW_DAYS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_WINDOW_DAYS}, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the fetch job; return the exit status."""
    args = parse_args(argv)
    load_dotenv(PROJECT_ROOT / ".env")
    try:
        config = get_config()
        files = _input_files(args, config)
        symbols = [] if files else _symbols(args, config)
        client = None if files else _client(config)
        app = _app(config)
    except (ConfigError, UsageError) as exc:
        print(f"get_raw_data: {exc}", file=sys.stderr)
        return EXIT_USAGE

    configure_logging("get_raw_data", app.config["LOG_DIR"], app.config["LOG_LEVEL"],
                      console_level="WARNING", console_tracebacks=False)
    with app.app_context():
        if files:
            return FetchRun(args, config).run(_file_jobs(files))
        with client:
            return FetchRun(args, config).run(_api_jobs(client, symbols, args.full))


def _app(config: BaseConfig):
    """Build the app, turning an unusable DATABASE_URL into a usage error."""
    try:
        return create_app(config)
    except (ArgumentError, ValueError, ImportError) as exc:
        # The message could hold the URL and its password: name the problem only.
        raise UsageError(f"DATABASE_URL cannot be used ({exc.__class__.__name__}); "
                         "expected e.g. mysql+pymysql://user@host:3306/db") from None


def _input_files(args: argparse.Namespace, config: BaseConfig) -> list[Path]:
    """Return the saved responses to load, or [] to call the API."""
    files = list(args.from_file)
    if not files and args.sample_if_no_key and not config.ALPHAVANTAGE_API_KEY:
        files = sorted(SAMPLE_DIR.glob("*.json"))
        print(f"get_raw_data: no ALPHAVANTAGE_API_KEY set; loading the bundled sample data "
              f"from {SAMPLE_DIR.relative_to(PROJECT_ROOT)}/ instead", file=sys.stderr)
    if files and args.symbols is not None:
        raise UsageError("--symbols cannot be combined with --from-file: "
                         "the files name their symbols")
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    if not files and not config.ALPHAVANTAGE_API_KEY:
        raise UsageError("no API key: set ALPHAVANTAGE_API_KEY (or ALPHAVANTAGE_API_KEY_FILE), "
                         "or load saved responses with --from-file")
    return files


def _symbols(args: argparse.Namespace, config: BaseConfig) -> list[str]:
    names = args.symbols.split(",") if args.symbols is not None else config.SYMBOLS
    symbols = list(dict.fromkeys(name.strip().upper() for name in names if name.strip()))
    bad = [name for name in symbols if not is_valid_symbol(name)]
    if bad or not symbols:
        raise UsageError(f"invalid symbol(s) {', '.join(bad) or '(none given)'}: use 1 to 16 "
                         "letters, digits, '.' or '-', comma-separated")
    return symbols


def _client(config: BaseConfig) -> AlphaVantageClient:
    try:
        return AlphaVantageClient(
            config.ALPHAVANTAGE_API_KEY,
            base_url=config.ALPHAVANTAGE_BASE_URL,
            function=config.ALPHAVANTAGE_FUNCTION,
            rate_limit_wait=config.ALPHAVANTAGE_RETRY_WAIT,
            rate_limit_retries=config.ALPHAVANTAGE_RATE_LIMIT_RETRIES,
        )
    except ValueError as exc:
        raise UsageError(f"ALPHAVANTAGE_FUNCTION: {exc}") from None


def _api_jobs(client: AlphaVantageClient, symbols: list[str], full: bool) -> list[Job]:
    return [Job(symbol, lambda symbol=symbol: client.fetch_daily(symbol, full=full), True)
            for symbol in symbols]


def _file_jobs(paths: list[Path]) -> list[Job]:
    return [Job(path.name, lambda path=path: _load_file(path), False) for path in paths]


def _load_file(path: Path) -> DailySeries:
    """Parse a saved response; a saved error answer is reported as that error."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AlphaVantageError(f"{path.name}: cannot read a JSON response "
                                f"({exc.__class__.__name__})") from None
    error = classify_error_payload(payload, path.name)
    if error is not None:
        raise error
    return parse_daily_series(payload)


class FetchRun:
    """One run of the job: fetch, window, store or print, summarize."""

    def __init__(self, args: argparse.Namespace, config: BaseConfig) -> None:
        self.args = args
        self.window = None if args.full else args.days
        self.request_interval = config.ALPHAVANTAGE_REQUEST_INTERVAL
        self.show_progress = sys.stderr.isatty()
        self.failures = 0
        self.changed = False
        self.records: list[dict] = []

    def run(self, jobs: list[Job]) -> int:
        if not self.args.dry_run:
            try:
                with migration_lock(db.engine):
                    upgrade()
            except (SQLAlchemyError, MigrationLockTimeout) as exc:
                logger.error("bringing the schema up to date failed", exc_info=exc)
                print(f"get_raw_data: database unavailable ({exc.__class__.__name__}); "
                      "nothing fetched", file=sys.stderr)
                return EXIT_FAILED
        stop_reason = None
        last_request = None
        for number, job in enumerate(jobs, start=1):
            if stop_reason:
                self._fail(job.label, f"not fetched: {stop_reason}")
                continue
            if self.show_progress and (len(jobs) > 1 or self.args.full):
                print(f"[{number}/{len(jobs)}] {job.label} ...", file=sys.stderr)
            if job.calls_api:
                last_request = self._pace(last_request)
            stop_reason = self._process(job)
        self._finish()
        return EXIT_FAILED if self.failures else EXIT_OK

    def _pace(self, last_request: float | None) -> float:
        """Keep requests at least ALPHAVANTAGE_REQUEST_INTERVAL apart (free keys: 1 per second)."""
        if last_request is not None:
            time.sleep(max(0.0, last_request + self.request_interval - time.monotonic()))
        return time.monotonic()

    def _process(self, job: Job) -> str | None:
        """Handle one job; return a reason to stop the run (spent quota, bad key) or None."""
        try:
            series = job.fetch()
            frame = recent_days(series, self.window)
            if self.args.dry_run:
                self.records += to_records(frame)
                print(f"{series.symbol}: {len(frame)} rows fetched (dry run, nothing stored)",
                      file=sys.stderr)
            else:
                self._report(store_symbol(series.symbol, frame))
        except AlphaVantageError as exc:
            self._fail(exc.symbol or job.label, exc.message)
            if job.calls_api and _spoils_the_run(exc):
                return exc.message
        except SQLAlchemyError as exc:
            self._fail(job.label, f"database error ({exc.__class__.__name__}); "
                                  "its rows are unchanged", exc)
        except Exception as exc:  # one symbol's surprise must not sink the others
            self._fail(job.label, f"unexpected error ({exc.__class__.__name__}); "
                                  "see the log file", exc)
        return None

    def _report(self, result: StoreResult) -> None:
        self.changed = self.changed or result.changed
        line = (f"{result.symbol}: {result.fetched} rows fetched, {result.new} new, "
                f"{result.updated} updated")
        logger.info("%s", line)
        print(line)

    def _fail(self, label: str, reason: str, exc: Exception | None = None) -> None:
        """Count a failure: one line on stderr; the log file also gets ``exc``'s traceback."""
        self.failures += 1
        logger.error("%s: failed: %s", label, reason, exc_info=exc)

    def _finish(self) -> None:
        if self.args.dry_run:
            json.dump(self.records, sys.stdout, indent=2)
            print()
        elif self.changed:
            clear_cached_answers()


def _spoils_the_run(error: AlphaVantageError) -> bool:
    """Tell whether every later request would get the same refusal (and waste quota)."""
    return (isinstance(error, (InvalidApiKeyError, PremiumOnlyError))
            or (isinstance(error, RateLimitError) and error.is_daily_quota))


def store_symbol(symbol: str, frame: pd.DataFrame) -> StoreResult:
    """Store one symbol in its own transaction, retrying a lock conflict a few times.

    A deadlock (MySQL) or a locked database (SQLite) between two runs at once
    aborts the whole transaction, so retrying it is safe; other errors are not
    retried.
    """
    attempt = 1
    while True:
        try:
            result = store_prices(db.session, symbol, frame)
            db.session.commit()
            return result
        except OperationalError as exc:
            db.session.rollback()
            if attempt >= STORE_ATTEMPTS or not _is_lock_conflict(exc):
                raise
            logger.warning("storing %s hit %s; retrying (%d of %d)", symbol,
                           exc.orig.__class__.__name__, attempt, STORE_ATTEMPTS - 1)
            time.sleep(STORE_RETRY_PAUSE_SECONDS * attempt)
            attempt += 1
        except Exception:
            db.session.rollback()
            raise


def _is_lock_conflict(exc: OperationalError) -> bool:
    """Tell a deadlock or lock timeout (worth retrying) from other database errors."""
    code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
    return code in MYSQL_LOCK_ERRORS or "database is locked" in str(exc.orig)


def clear_cached_answers() -> None:
    """Empty the API's cache so statistics reflect the new rows.

    With Redis every worker sees this at once; with SimpleCache only this
    process's cache is cleared and workers expire theirs within
    CACHE_DEFAULT_TIMEOUT seconds.
    """
    try:
        cache.clear()
    except Exception as exc:  # the rows are stored; a stale cache expires on its own
        logger.warning("could not clear cached answers (%s); they expire within "
                       "CACHE_DEFAULT_TIMEOUT seconds", exc.__class__.__name__)


if __name__ == "__main__":
    sys.exit(main())
