"""Fetch daily prices from AlphaVantage and upsert the recent ones into financial_data.

Run ``python get_raw_data.py --help`` for the options. Exit status: 0 when
every symbol was stored, 1 when at least one failed (the others are still
stored), 2 on a usage or configuration error, 130 (killed by SIGINT) when a
second SIGINT stopped it at once, or one came during its start-up (quietly,
before it opens the database). Every run but ``--dry-run`` is recorded in
fetch_runs / fetch_run_symbols. ``--schedule`` keeps running and fetches at
the times of a cron expression until SIGTERM or SIGINT (exit 0).
"""
import gc

if __name__ == "__main__":
    # The imports below make some 80,000 objects that live as long as the job:
    # no collection walks them, neither while they are made nor after (frozen
    # at the end of this file, before main() runs with the collector on).
    gc.disable()
    # Until stop_on_signals takes over, nothing is written that a kill could
    # leave half-done (no database is opened before it): a Ctrl-C, even during
    # the imports below, stops the job at once, in one line.
    from lib.stop_signals import stop_starting_on_sigint
    stop_starting_on_sigint("get_raw_data")

import argparse
import datetime
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from dotenv import load_dotenv
from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app import (MIGRATIONS_DIR, SCHEMA_REVISION, MigrationHistoryError, create_app,
                 register_migrations, upgrade_to_head)
from app.api.caching import clear_cached_answers, clear_run_history_answers
from app.extensions import db
from conf.settings import PROJECT_ROOT, BaseConfig, ConfigError, read_config
from financial.fetch_run import (
    Job, RunEndNotRecorded, RunHooks, RunLoop, RunSettings, recorded_run,
)
from financial.ingest import DEFAULT_WINDOW_DAYS
from financial.models import MANUAL, OK, SCHEDULE
from financial.runs import cut_short_run_since, latest_run_start
from lib.avantage_api import (
    InvalidApiKeyError, UnsupportedFunctionError, read_saved_response,
)
from lib.db_errors import describe_database_error
from lib.locks import (
    FetchRunInProgress, LockFileError, LockWaitStopped, MigrationLockTimeout, migrate_unless_newer,
)
from lib.log_setup import FILE_ONLY, configure_logging, escape_controls
from lib.schema import NEWER_SCHEMA, schema_revisions
from lib.stop_signals import StopRequest, Stopped, end_as_sigint, stop_on_signals
from lib.tickers import SYMBOL_RULE, distinct_tickers

if TYPE_CHECKING:  # loaded where used: a run from saved files needs no HTTP client, and
    # a run without --schedule no schedule
    from financial.schedule import Schedule
    from lib.avantage_api import AlphaVantageClient

logger = logging.getLogger("get_raw_data")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A second SIGINT (Ctrl-C) stops the job at once, with the status a shell
# gives a program Ctrl-C ended (as one during its start-up does).
EXIT_INTERRUPTED = 130
MAX_WINDOW_DAYS = 36_500
# Container objects allocated (less those freed) before the youngest
# generation is collected while the job runs; Python's default is 700.
JOB_GC_THRESHOLD = 10_000
SAMPLE_DIR = PROJECT_ROOT / "data" / "fixtures"
SAMPLE_SPAN = "IBM and AAPL, 100 trading days from 2022-10-31 to 2023-03-24"
# What a bare ``--schedule`` holds: the expression comes from FETCH_SCHEDULE.
_CONFIGURED_SCHEDULE = object()
STOPPED_WAITING = "stopped while waiting for the database; nothing fetched"
SAMPLE_HINT = ("get_raw_data: to load the bundled sample data instead, run "
               ".venv/bin/python get_raw_data.py --sample")


class UsageError(ConfigError):
    """The command line or the job's settings cannot work; exit status 2, as a bad setting.

    ``problems`` holds every one found, so that one try tells the operator all.
    """


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line; argparse exits with status 2 on a bad option."""
    parser = argparse.ArgumentParser(
        prog="get_raw_data.py",
        description="Fetch daily prices from AlphaVantage (TIME_SERIES_DAILY_ADJUSTED, falling "
                    "back to TIME_SERIES_DAILY when premium-only) and upsert the most recent "
                    "days into financial_data. Reads .env and the environment (see .env.example).",
        epilog="Exit status: 0 all symbols stored, 1 at least one symbol failed or the run "
               "could not start or finish (the database, the run lock, a stop), 2 usage or "
               "configuration error, 130 (killed by SIGINT) a second Ctrl-C, or one during "
               "start-up.",
    )
    parser.add_argument("--symbols", help="comma-separated tickers (default: SYMBOLS, IBM,AAPL)")
    window = parser.add_mutually_exclusive_group()
    window.add_argument("--days", type=_positive_int,
                        help="keep days newer than (newest day - N days), N from 1 to "
                             f"{MAX_WINDOW_DAYS} (default: {DEFAULT_WINDOW_DAYS}; the "
                             "sample: every day)")
    window.add_argument("--full", action="store_true",
                        help="whole history (outputsize=full), no window")
    parser.add_argument("--from-file", action="append", type=Path, default=[], metavar="PATH",
                        help="load a saved AlphaVantage JSON response instead of calling the "
                             "API; repeatable; the symbol comes from the file")
    parser.add_argument("--sample", action="store_true",
                        help="load the bundled sample responses in data/fixtures/ "
                             f"({SAMPLE_SPAN}), every day of them, instead of calling the API")
    parser.add_argument("--sample-if-no-key", action="store_true",
                        help="--sample when no API key is configured (and say so); when the "
                             "key cannot fetch, say how to load the sample instead")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the records as one JSON array on stdout; write nothing")
    parser.add_argument("--schedule", nargs="?", const=_CONFIGURED_SCHEDULE, metavar="CRON",
                        help="keep running and fetch at each time of the 5-field cron "
                             "expression CRON (default: FETCH_SCHEDULE, '30 18 * * 1-5') in "
                             "FETCH_TIMEZONE (America/New_York); runs at once if the last "
                             "scheduled run was missed, or was cut short (then only for the "
                             "symbols it did not reach); SIGTERM or SIGINT stops it (exit 0)")
    return parser.parse_args(argv)


def _positive_int(text: str) -> int:
    """Read ASCII digits alone, as the API reads its numbers (int() takes ``1_0`` and ``١٤``)."""
    try:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(text)
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, got {text!r}") from None
    if not 1 <= value <= MAX_WINDOW_DAYS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_WINDOW_DAYS}, got {value}")
    return value


@dataclass(frozen=True)
class Plan:
    """What each run of this invocation does: its inputs, settings and schedule.

    ``offer_sample``: say how to load the bundled sample when fetching fails
    (``--sample-if-no-key`` with a key, as ``make run`` does).
    """

    config: BaseConfig
    settings: RunSettings
    files: list[Path]
    symbols: list[str]
    full: bool
    schedule: "Schedule | None"
    offer_sample: bool = False


def main(argv: list[str] | None = None) -> int:
    """Run the fetch job (once, or on a schedule); return the exit status."""
    args = parse_args(argv)
    load_dotenv(PROJECT_ROOT / ".env")
    config = read_config()
    try:
        plan: Plan | None = _plan(args, config)
    except UsageError as exc:  # named with the settings' problems, as the app is built
        plan = None
        config.problems.found.extend(exc.problems)
    try:
        # Names every setting that cannot work and every problem noted so far,
        # before it creates anything (LOG_DIR, the SQLite folder).
        app = _app(config, dry_run=args.dry_run)
    except ConfigError as exc:
        for problem in exc.problems:
            _to_stderr(f"get_raw_data: {problem}")
        return EXIT_USAGE
    assert plan is not None, "a plan with problems stops the app's build"

    # On a schedule the log is the output (docker logs): INFO goes to stderr too.
    # urllib3 warns of each retry with the whole request line; the failure's
    # own line says "after N retries", so its warnings go to the file only.
    configure_logging("get_raw_data", app.config["LOG_DIR"], app.config["LOG_LEVEL"],
                      console_level="INFO" if plan.schedule else "WARNING",
                      console_tracebacks=False, console_quiet=("urllib3",))
    try:
        return _run_until_stopped(app, plan)
    except KeyboardInterrupt:  # a second SIGINT, which stop_on_signals has logged
        return EXIT_INTERRUPTED
    finally:
        with _reader_may_leave():  # the output held back in stdout's buffer
            sys.stdout.flush()
        # Close the pool's connections now, not whenever the app is collected:
        # a caller that runs main() repeatedly (the tests) would pile them up.
        with app.app_context():
            db.engine.dispose()


def exit_with(status: int) -> NoReturn:
    """End the process with ``status``; stopped by a second Ctrl-C, as SIGINT ends it."""
    if status == EXIT_INTERRUPTED:
        end_as_sigint()
    sys.exit(status)


def _run_until_stopped(app: Flask, plan: Plan) -> int:
    """Run the job once, or on the schedule until stopped; return the exit status."""
    with _collector_spared(), stop_on_signals(logger) as stop:
        if plan.schedule is None:
            return run_once(app, plan, MANUAL, stop, report=_to_stdout, note=_to_stderr)
        try:
            serve_schedule(app, plan, plan.schedule, stop)
        except Stopped:
            logger.warning(STOPPED_WAITING)
        return EXIT_OK


@contextmanager
def _collector_spared() -> Iterator[None]:
    """Keep the garbage collector off what lives as long as the process, while the job runs.

    Each collection of the oldest generation walks every object alive, and
    the modules, the app and SQLAlchemy's mappings are some 80,000 that are
    never garbage: frozen (``gc.freeze``), no collection walks them. The
    youngest generation is collected every JOB_GC_THRESHOLD allocations
    rather than every 700, as tens of thousands of days are parsed: fewer
    collections, each still bounding what awaits one. At the end, both
    are undone: a caller that runs main() again (the tests) collects as before.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(JOB_GC_THRESHOLD, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def run_once(app: Flask, plan: Plan, trigger: str, stop: StopRequest, *,
             report: Callable[[str], None], note: Callable[[str], None],
             scheduled_for: datetime.datetime | None = None, catch_up: bool = False) -> int:
    """Run the job once, in an app context of its own; return the exit status."""
    with app.app_context():
        if plan.files:
            jobs = _file_jobs(plan.files, plan.config.ALPHAVANTAGE_API_KEY)
            return run(app, plan.settings, jobs, trigger=trigger, stop=stop,
                       report=report, note=note, scheduled_for=scheduled_for,
                       catch_up=catch_up)
        with _client(plan.config) as client:
            status = run(app, plan.settings, _api_jobs(client, plan.symbols, plan.full),
                         trigger=trigger, stop=stop, report=report, note=note,
                         scheduled_for=scheduled_for, catch_up=catch_up)
    if status != EXIT_OK and plan.offer_sample:
        note(SAMPLE_HINT)
    return status


def run(app: Flask, settings: RunSettings, jobs: list[Job], *, trigger: str,
        stop: StopRequest, report: Callable[[str], None], note: Callable[[str], None],
        scheduled_for: datetime.datetime | None = None, catch_up: bool = False) -> int:
    """Bring the schema up to date, run the jobs as a recorded run (or a dry run).

    A run ``scheduled_for`` a time another scheduler's run did, or still does once the
    wait for the lock ran out, is skipped (``recorded_run``); so is a ``catch_up``
    with nothing left to fetch.
    """
    if settings.dry_run:
        hooks = RunHooks(report, note, should_stop=stop.is_set)
        dry = RunLoop(db.session(), settings, hooks).run(jobs)
        with _reader_may_leave():
            json.dump(dry.records, sys.stdout, indent=2)
            print()
        return EXIT_FAILED if dry.failures else EXIT_OK
    try:
        if not _schema_ready(app, stop):
            return EXIT_FAILED
    except Stopped:
        logger.warning(STOPPED_WAITING)
        return EXIT_FAILED
    hooks = RunHooks(report, note, on_change=clear_cached_answers,
                     on_record=clear_run_history_answers,
                     on_end=partial(clear_run_history_answers, final=True),
                     should_stop=stop.is_set)
    try:
        outcome = recorded_run(db.session(), db.engine, jobs, settings, hooks, trigger=trigger,
                               scheduled_for=scheduled_for, catch_up=catch_up)
    except LockWaitStopped:
        logger.warning("stopped while waiting for the run in progress; nothing fetched")
        return EXIT_FAILED
    except LockFileError as exc:  # a read-only disk: the run cannot even be recorded
        _report_failure(f"{exc}; nothing fetched")
        return EXIT_FAILED
    except (SQLAlchemyError, RunEndNotRecorded) as exc:
        _history_failed(exc)
        return EXIT_FAILED
    if outcome is None:  # skipped: another scheduler's run, or the runs since, did it
        return EXIT_OK
    return EXIT_OK if outcome.status == OK else EXIT_FAILED


def serve_schedule(app: Flask, plan: Plan, schedule: "Schedule", stop: StopRequest) -> None:
    """Run the job at each scheduled time until stopped; a failed run changes nothing."""
    from financial.schedule import Scheduler

    with app.app_context():
        _schema_ready(app, stop)
    Scheduler(
        schedule,
        run_job=lambda due, catch_up: run_once(app, plan, SCHEDULE, stop, report=_discard,
                                               note=_discard, scheduled_for=due,
                                               catch_up=catch_up),
        history=_StoredRunHistory(app, stop),
        should_stop=stop.is_set,
    ).serve()


@dataclass(frozen=True)
class _StoredRunHistory:
    """The run history as the scheduler reads it: each read in an app context of its own,
    and ended by a stop request (raising Stopped)."""

    app: Flask
    stop: StopRequest

    def last_start(self) -> datetime.datetime | None:
        with self.app.app_context(), self.stop.interrupting():
            return latest_run_start(db.session())

    def cut_short(self, since: datetime.datetime) -> bool:
        with self.app.app_context(), self.stop.interrupting():
            return cut_short_run_since(db.session(), since) is not None


def _schema_ready(app: Flask, stop: StopRequest) -> bool:
    """Apply pending migrations (one process at a time); say so once if the database fails.

    A schema already at SCHEMA_REVISION costs one query: Alembic is loaded
    only when there is something to migrate. A schema a newer release
    migrated is used as it is. A stop request ends the wait for that query
    (raising Stopped), never a migration.
    """
    try:
        with stop.interrupting():
            revisions = schema_revisions(db.engine)
        if revisions == {SCHEMA_REVISION}:
            return True
        register_migrations(app)
        newer = migrate_unless_newer(db.engine, str(MIGRATIONS_DIR), upgrade_to_head)
    except (LockFileError, FetchRunInProgress) as exc:
        _report_failure(f"{exc}; nothing fetched")
        return False
    except (SQLAlchemyError, MigrationLockTimeout) as exc:
        _database_unavailable(exc, "nothing fetched")
        return False
    except MigrationHistoryError as exc:
        _report_failure(f"bringing the schema up to date failed: {exc}; nothing fetched")
        return False
    if newer is not None:
        logger.warning(NEWER_SCHEMA, newer)
    return True


def _history_failed(exc: SQLAlchemyError | RunEndNotRecorded) -> None:
    """Say that the run, or only its end, could not be recorded (a full disk, a lost database)."""
    if isinstance(exc, RunEndNotRecorded):
        line = (f"{exc.line()}; its end could not be recorded "
                f"({describe_database_error(exc.cause)}), so it reads 'running' until the "
                "next run marks it interrupted")
        _report_failure(line, exc.cause)
        return
    _database_unavailable(exc, "the run could not be recorded")


def _database_unavailable(exc: Exception, consequence: str) -> None:
    """Say that the database failed, how, and what it cost; the log file gets the traceback."""
    _report_failure(f"database unavailable ({describe_database_error(exc)}); {consequence}", exc)


def _report_failure(line: str, cause: BaseException | None = None) -> None:
    """Say a failure in one line on stderr, and in the same words in the log file.

    The file's record reads as the line, its ``get_raw_data:`` being the
    logger's name, followed by ``cause``'s traceback when one is given; the
    console leaves the record out (FILE_ONLY), as stderr has the line.
    """
    logger.error("%s", line, exc_info=cause, extra=FILE_ONLY)
    _to_stderr(f"get_raw_data: {line}")


def _to_stderr(line: str) -> None:
    """Print a line on stderr, its control characters escaped as in the log's lines.

    A line may quote AlphaVantage's text (the run's line, when a refusal ended
    it): an escape sequence in it must not reach the operator's terminal.
    """
    print(escape_controls(line), file=sys.stderr)


def _to_stdout(line: str) -> None:
    """Print a line of the job's output (a stored symbol's summary)."""
    with _reader_may_leave():
        print(line)


@contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Let the reader of stdout go away (``get_raw_data.py | head -1``) without harm.

    Its BrokenPipeError would otherwise fail a symbol already stored, or end
    the job in a traceback; so would any other output that cannot be written
    (``> out.txt`` on a full disk: ENOSPC; a terminal hung up: EIO). The
    job's work goes on; the rest of its output, and Python's last flush at
    exit, go to the null device.
    """
    try:
        yield
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _discard(_line: str) -> None:
    """Drop a line the log already holds (on a schedule, the log is the output)."""


def _app(config: BaseConfig, *, dry_run: bool) -> Flask:
    """Build the app with the job's database timeouts; a dry run's creates no SQLite folder.

    Raises StartupError (a ConfigError: a usage error) naming every problem
    of ``config`` and every setting building the app refuses (e.g. an
    unusable DATABASE_URL).
    """
    return create_app(config, overrides=config.job_overrides(), serving=False,
                      writes=not dry_run)


def _plan(args: argparse.Namespace, config: BaseConfig) -> Plan:
    """Check the command line and settings once, before any run.

    Raises UsageError naming every problem found, not only the first.
    """
    problems: list[str] = []
    sample = _loads_sample(args, config, problems)
    files = _input_files(args, config, sample, problems)
    symbols = [] if files else _symbols(args.symbols, config.SYMBOLS, problems)
    if not files:  # a bad function is a usage error now, not at 18:30
        problems += _client_problems(config)
    schedule = _schedule(args, config, problems)
    if problems:
        raise UsageError(*problems)
    # The sample is small and fixed: all of it, unless --days says otherwise.
    whole = args.full or (sample and args.days is None)
    settings = RunSettings(
        window_days=None if whole else args.days or DEFAULT_WINDOW_DAYS, dry_run=args.dry_run,
        show_progress=schedule is None and sys.stderr.isatty(),
        lock_timeout=config.FETCH_LOCK_TIMEOUT,
    )
    return Plan(config, settings, files, symbols, args.full, schedule,
                offer_sample=args.sample_if_no_key and not files)


def _schedule(args: argparse.Namespace, config: BaseConfig,
              problems: list[str]) -> "Schedule | None":
    """Return the schedule of ``--schedule [CRON]``, or None to run once; note its problems."""
    if args.schedule is None:
        return None
    from zoneinfo import ZoneInfo

    from financial.schedule import Schedule, ScheduleError, parse_zone

    if args.dry_run:
        problems.append("--schedule cannot be combined with --dry-run")
    # An empty CRON (`--schedule ''`, an unset shell variable) is refused, not the default.
    configured = args.schedule is _CONFIGURED_SCHEDULE
    source, expression = (("FETCH_SCHEDULE", config.FETCH_SCHEDULE) if configured
                          else ("--schedule", args.schedule))
    try:
        zone = parse_zone(config.FETCH_TIMEZONE)
    except ScheduleError as exc:
        problems.append(f"FETCH_TIMEZONE: {exc}")
        zone = ZoneInfo("UTC")  # the expression is checked all the same
    try:
        return Schedule.parse(expression, zone)
    except ScheduleError as exc:
        problems.append(f"{source}: {exc}")
        return None


def _loads_sample(args: argparse.Namespace, config: BaseConfig, problems: list[str]) -> bool:
    """Tell whether to load the bundled sample: --sample, or --sample-if-no-key without a key."""
    if args.from_file:
        if args.sample:
            problems.append("--sample cannot be combined with --from-file")
        return False
    return args.sample or (args.sample_if_no_key and not config.ALPHAVANTAGE_API_KEY)


def _input_files(args: argparse.Namespace, config: BaseConfig, sample: bool,
                 problems: list[str]) -> list[Path]:
    """Return the saved responses to load, or [] to call the API; note their problems."""
    files = sorted(SAMPLE_DIR.glob("*.json")) if sample else list(args.from_file)
    if sample and not args.sample:
        _to_stderr(f"get_raw_data: no ALPHAVANTAGE_API_KEY set; loading the bundled sample "
                   f"data ({SAMPLE_SPAN}) from {SAMPLE_DIR.relative_to(PROJECT_ROOT)}/ instead")
    if files and args.symbols is not None:
        problems.append("--symbols cannot be combined with --from-file or --sample: "
                        "the files name their symbols")
    missing = [str(path) for path in files if not path.exists()]
    if missing:
        problems.append(f"no such file: {', '.join(missing)}")
    folders = [str(path) for path in files if path.is_dir()]
    if folders:
        problems.append(f"a folder, not a file: {', '.join(folders)}")
    others = [str(path) for path in files
              if path.exists() and not path.is_dir() and not path.is_file()]
    if others:  # a pipe would block the run, a device read forever or as empty
        problems.append(f"not a regular file: {', '.join(others)}")
    if not files and not config.ALPHAVANTAGE_API_KEY:
        problems.append("no API key: set ALPHAVANTAGE_API_KEY (or ALPHAVANTAGE_API_KEY_FILE), "
                        "or load saved responses with --from-file (or the sample with --sample)")
    return files


def _symbols(option: str | None, configured: list[str], problems: list[str]) -> list[str]:
    """Return the distinct tickers of ``--symbols`` (or SYMBOLS), upper-cased, in order.

    A problem names where the tickers came from, as the operator must fix it there.
    """
    names, bad = distinct_tickers(option.split(",") if option is not None else configured)
    if bad or not names:
        source = "--symbols" if option is not None else "SYMBOLS"
        problems.append(f"{source}: invalid symbol(s) {', '.join(bad) or '(none given)'}: use "
                        f"{SYMBOL_RULE}, comma-separated")
    return names


def _client_problems(config: BaseConfig) -> list[str]:
    """Return the problems of the client's settings (a bad function).

    Not a missing key: ``_input_files`` names it, with the ways to do without one;
    nor a base URL the client cannot read: the settings name it.
    """
    try:
        _client(config).close()
    except UsageError as exc:
        return list(exc.problems)
    except (InvalidApiKeyError, ValueError):
        pass
    return []


def _client(config: BaseConfig) -> "AlphaVantageClient":
    from lib.avantage_api import AlphaVantageClient

    try:
        return AlphaVantageClient(
            config.ALPHAVANTAGE_API_KEY or "",
            base_url=config.ALPHAVANTAGE_BASE_URL,
            function=config.ALPHAVANTAGE_FUNCTION,
            backoff_factor=config.ALPHAVANTAGE_BACKOFF_FACTOR,
            rate_limit_wait=config.ALPHAVANTAGE_RETRY_WAIT,
            rate_limit_retries=config.ALPHAVANTAGE_RATE_LIMIT_RETRIES,
            symbol_deadline=config.FETCH_SYMBOL_DEADLINE,
            run_deadline=config.FETCH_RUN_DEADLINE,
            request_interval=config.ALPHAVANTAGE_REQUEST_INTERVAL,
        )
    except UnsupportedFunctionError as exc:
        raise UsageError(f"ALPHAVANTAGE_FUNCTION: {exc}") from None


def _api_jobs(client: "AlphaVantageClient", symbols: list[str], full: bool) -> list[Job]:
    return [Job(symbol, partial(client.fetch_daily, symbol, full=full), True)
            for symbol in symbols]


def _file_jobs(paths: list[Path], api_key: str | None) -> list[Job]:
    return [Job(path.name, partial(read_saved_response, path, api_key), False)
            for path in paths]


def _standard_streams_opened() -> None:
    """Put the null device on a standard stream closed at start (``>&-``, ``2>&-``).

    Python leaves such a stream None: the job's output to it would fail at
    the end, after its work, and the next file opened (the log, the SQLite
    database) would take the closed descriptor, where a stray write to
    stdout or stderr would land. A stream opened elsewhere stays as it is.
    """
    for name, flags, mode in (("stdin", os.O_RDONLY, "r"), ("stdout", os.O_WRONLY, "w"),
                              ("stderr", os.O_WRONLY, "w")):
        if getattr(sys, name) is None:
            # The lowest free descriptor: the stream's own, unless a file took it first.
            setattr(sys, name, os.fdopen(os.open(os.devnull, flags), mode))


if __name__ == "__main__":
    _standard_streams_opened()
    gc.freeze()  # what the imports made, with the collector off
    gc.enable()
    status = main()
    # The process ends here: its last collection need not walk every object alive.
    gc.freeze()
    exit_with(status)
