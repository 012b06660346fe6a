"""One run of the fetch job: fetch each job's series, keep the window, store or collect it.

A stored run (``recorded_run``) holds the database's run lock, so runs on one
database never overlap, and writes its history as it goes (``financial.runs``).

Framework-free: the entry point (``get_raw_data.py``) builds the jobs, passes
the session and plain settings in, and decides what the outcome means for
the exit status and the API's cache.
"""
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from financial.ingest import StoreResult, recent_days, store_symbol, to_records
from financial.models import FAILED, INTERRUPTED, NOT_FETCHED, OK, PARTIAL, RUNNING
from financial.runs import (
    Clock, RunRecorder, SymbolOutcome, close_runs_left_running, iso_utc, plan_catch_up,
    record_refused_run, running_run, scheduled_run_since, utc_now,
)
from lib.avantage_api import (
    AlphaVantageError, DailyBar, DailySeries, DeadlineExceededError, InvalidApiKeyError,
    PremiumOnlyError, RateLimitError,
)
from lib.db_errors import (
    DATABASE_ERRORS, DISK_FULL, is_disk_full, is_lock_conflict, name_database_error,
)
from lib.locks import RUN_LOCK, LockTimeout, database_lock

logger = logging.getLogger(__name__)

STOPPED_REASON = "the job was stopped"
LOCK_LOST_REASON = ("the run lock was lost with its connection, and another run holds it "
                    "now")
DATABASE_LOST_REASON = "the database stopped answering"


class RunEndNotRecorded(Exception):
    """A run was recorded and did its work, but its end could not be written (a full disk).

    It reads ``running`` in the history until the next run marks it
    interrupted; ``outcome`` says what it did (its rows stand as recorded).
    """

    def __init__(self, run_id: int, outcome: "RunOutcome", cause: SQLAlchemyError) -> None:
        super().__init__(f"the end of run {run_id} could not be recorded")
        self.run_id = run_id
        self.outcome = outcome
        self.cause = cause

    def line(self) -> str:
        """Return the line the job prints about the run, with its status as it would be."""
        return f"run {self.run_id} {self.outcome.run_status()}: {self.outcome.summary()}"


@dataclass(frozen=True)
class Job:
    """One unit of work: a label for messages and how to get its series.

    An API job's label is its symbol; a saved file's symbol is known only
    once the file is read.
    """

    label: str
    fetch: Callable[[], DailySeries]
    calls_api: bool


@dataclass(frozen=True)
class RunSettings:
    """What a run does with each series.

    ``window_days`` None keeps every day (``--full``); ``dry_run`` collects
    records instead of storing; ``show_progress`` notes "[n/N] label ..." before
    each job when there are several jobs or whole histories are kept;
    ``lock_timeout`` is how long (seconds) a run waits for the one in progress:
    the caller's FETCH_LOCK_TIMEOUT, whose default is the only one.
    """

    window_days: int | None
    lock_timeout: float
    dry_run: bool = False
    show_progress: bool = False


def _nothing() -> None:
    """A hook with nothing to do."""


def _never() -> bool:
    """A stop request that never comes."""
    return False


@dataclass(frozen=True)
class RunHooks:
    """What a run tells its caller as it goes, and asks it.

    ``report`` receives the one-line summary of each stored symbol (the
    job's output); ``note`` receives lines for the operator: progress,
    dry-run summaries and the recorded run's line. The API's cached answers
    go stale as a recorded run goes: ``on_change`` is called after each
    symbol whose rows changed (every answer is stale); ``on_record`` when
    the run starts and after each other outcome recorded (a failure, a skip,
    no change: only the answers read from the run history are stale);
    ``on_end`` when it ends (as ``on_record``, and the last chance to make a
    clear put off). ``should_stop()`` turning true stops the run between
    jobs, and the wait for the run in progress.
    """

    report: Callable[[str], None]
    note: Callable[[str], None]
    on_change: Callable[[], object] = _nothing
    on_record: Callable[[], object] = _nothing
    on_end: Callable[[], object] = _nothing
    should_stop: Callable[[], bool] = _never


@dataclass
class RunOutcome:
    """What a run did: jobs stored and failed, rows written, dry-run records.

    ``unnamed_failures`` holds "label: reason" of saved files that failed
    before naming their symbol (the history has no symbol row for them).
    ``ended_early`` is why no later job called the API (a spent quota, a
    rejected key, the run's deadline), if one did not.
    ``caught_up`` says what a catch-up left out (symbols runs since its
    scheduled time stored or tried), if it left out any.
    ``run_id``, ``status`` and ``message`` are set once the run is recorded.
    """

    total: int = 0
    stored: int = 0
    failures: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    stopped: bool = False
    files: bool = False
    records: list[dict] = field(default_factory=list)
    unnamed_failures: list[str] = field(default_factory=list)
    ended_early: str | None = None
    caught_up: str | None = None
    run_id: int | None = None
    status: str | None = None
    message: str | None = None

    def run_status(self) -> str:
        """Return the history's status: interrupted, ok, failed (none stored) or partial."""
        if self.stopped:
            return INTERRUPTED
        if self.stored == self.total:
            return OK
        return FAILED if self.stored == 0 else PARTIAL

    def summary(self) -> str:
        """Return the run's one-line message for the history."""
        what = "files" if self.files else "symbols"
        text = (f"{self.stored} of {self.total} {what} stored, {self.rows_new} new rows, "
                f"{self.rows_updated} updated")
        if self.stopped:
            text = f"stopped before the end: {text}"
        ended_early = [f"ended early: {self.ended_early}"] if self.ended_early else []
        caught_up = [self.caught_up] if self.caught_up else []
        return "; ".join([text, *caught_up, *ended_early, *self.unnamed_failures])

    def line(self) -> str:
        """Return the line the job prints about the recorded run."""
        return f"run {self.run_id} {self.status}: {self.message}"


class RunLoop:
    """Runs jobs one by one; a failing job is logged and the others go on.

    A refusal every later request would meet too (a spent quota, a rejected
    key, a premium-only function) or the run's deadline passed stops the
    run (``spoils_the_run``): every later job is reported as not fetched,
    without a request; so does ``hooks.should_stop()`` turning true (checked
    between jobs, so the current symbol's transaction always completes).
    So does a run lock lost with its connection (a server restarted) that
    another run took meanwhile (``lock_held()``, checked before each job):
    runs on one database never overlap for longer than a job.
    With a ``history``, every outcome is recorded as it happens, and
    ``hooks`` hears of it.

    A symbol that fails on the database, when its failure cannot be recorded
    either, stops the run too: a frozen database would hold every later
    symbol for DATABASE_JOB_TIMEOUT more than once, after spending a request
    of the daily quota on it. The later symbols are then only logged; the run
    stays ``running`` until the next run marks it interrupted. A database
    back by the time the failure is recorded (a restart) lets the run go on;
    one back by the run's end records the outcomes it could not (``unrecorded``)
    with it, but on a full disk. A symbol whose commit got no answer, nor the
    read telling whether it was taken, is settled then (``settle_in_doubt``).
    """

    def __init__(self, session: Session, settings: RunSettings, hooks: RunHooks, *,
                 history: RunRecorder | None = None,
                 lock_held: Callable[[], bool] = lambda: True) -> None:
        self.session = session
        self.settings = settings
        self.hooks = hooks
        self.history = history
        self.lock_held = lock_held
        self.outcome = RunOutcome()
        self.is_database_lost = False
        self.database_lost_reason = DATABASE_LOST_REASON
        # Outcomes of named symbols that could not be recorded as they happened.
        self.unrecorded: list[SymbolOutcome] = []
        # The store whose commit the database may still take: the check found it gone.
        self.in_doubt: StoreResult | None = None

    def run(self, jobs: list[Job]) -> RunOutcome:
        """Process every job in order; return the outcome."""
        self.outcome.total = len(jobs)
        self.outcome.files = not any(job.calls_api for job in jobs)
        stop_reason = None
        for number, job in enumerate(jobs, start=1):
            if stop_reason is None and self.hooks.should_stop():
                stop_reason, self.outcome.stopped = STOPPED_REASON, True
            if stop_reason is None:
                stop_reason = self._lock_lost()
            if stop_reason:
                self._fail(job.label, self._known_symbol(job), f"not fetched: {stop_reason}",
                           status=NOT_FETCHED)
                continue
            if self.settings.show_progress and (len(jobs) > 1 or self.settings.window_days is None):
                self.hooks.note(f"[{number}/{len(jobs)}] {job.label} ...")
            stop_reason = self.outcome.ended_early = self._process(job)
        return self.outcome

    def _lock_lost(self) -> str | None:
        """Return why the run must stop if it no longer holds the run lock, else None.

        Lost to another run: the run stops as if stopped. A database that
        cannot be reached to tell is lost, as when a failure cannot be recorded.
        """
        try:
            if self.lock_held():
                return None
        except SQLAlchemyError as error:
            logger.error("could not check the run lock (%s)", error.__class__.__name__)
            self.is_database_lost = True
            self.outcome.ended_early = self.database_lost_reason
            return self.database_lost_reason
        logger.warning("%s; this run stops", LOCK_LOST_REASON)
        self.outcome.stopped = True
        self.outcome.ended_early = LOCK_LOST_REASON
        return LOCK_LOST_REASON

    def _process(self, job: Job) -> str | None:
        """Handle one job; return why the run must stop, or None to go on."""
        symbol = self._known_symbol(job)
        try:
            series = job.fetch()
            symbol = series.symbol
            bars = recent_days(series, self.settings.window_days)
            if self.settings.dry_run:
                self.outcome.records += to_records(series.symbol, bars)
                self.hooks.note(f"{series.symbol}: {len(bars)} rows fetched "
                                "(dry run, nothing stored)")
            else:
                self._store(series.symbol, bars)
        except AlphaVantageError as exc:
            # A saved file names its symbol only in its payload, which the error
            # carries; the job's label names the file, which no message holds.
            self._fail(job.label, exc.symbol or symbol, exc.message)
            if job.calls_api and spoils_the_run(exc):
                return exc.message
        except SQLAlchemyError as exc:
            self._fail(job.label, symbol,
                       f"database error ({name_database_error(exc)}); its rows are unchanged",
                       exc=exc)
            if self.is_database_lost:
                return self.database_lost_reason
        except Exception as exc:  # one symbol's surprise must not sink the others
            self._fail(job.label, symbol, f"unexpected error ({exc.__class__.__name__}); "
                                          "see the log file", exc=exc)
        return None

    def _store(self, symbol: str, bars: list[DailyBar]) -> None:
        """Store one symbol; its history row commits in the same transaction."""
        newest = bars[-1].date if bars else None

        committing: list[StoreResult] = []
        met_before = self.history is not None and self.history.has_met(symbol)

        def record(result: StoreResult) -> None:
            committing.append(result)
            if self.history is not None:
                self.history.add(SymbolOutcome(symbol, OK, result.fetched, result.new,
                                               result.updated, newest))

        try:
            result = store_symbol(self.session, symbol, bars, before_commit=record)
        except DATABASE_ERRORS:
            # Its outcome row, written in the same transaction, tells whether the
            # commit that got no answer was taken: not when the run met it before.
            if (self.history is None or not committing or met_before
                    or not self._committed_after_all(committing[-1])):
                raise
            result = committing[-1]
        self._count_stored(result)

    def _count_stored(self, result: StoreResult) -> None:
        """Count a symbol stored, tell the hooks, and say what storing it did."""
        self.outcome.stored += 1
        self.outcome.rows_new += result.new
        self.outcome.rows_updated += result.updated
        if result.changed:
            self.hooks.on_change()
        else:
            self.hooks.on_record()
        line = (f"{result.symbol}: {result.fetched} rows fetched, {result.new} new, "
                f"{result.updated} updated")
        logger.info("%s", line)
        self.hooks.report(line)

    def _committed_after_all(self, result: StoreResult) -> bool:
        """Tell whether the database took the commit of ``result`` it gave no answer to.

        A server stopped as the commit was sent reads it once it runs again,
        after the job gave up waiting: the symbol is stored then, its outcome
        with it. Its outcome row tells, read once that transaction has ended.
        A database that does not answer this either is lost: the run ends, as
        when the failure cannot be recorded, without a wait more, and the
        commit stays in doubt until the run's end.
        """
        assert self.history is not None
        try:
            return self.history.holds(result.symbol)
        except SQLAlchemyError as error:
            self.is_database_lost = _is_unusable(error)
            if self.is_database_lost:
                self.in_doubt = result
            return False

    def settle_in_doubt(self) -> None:
        """Tell, as the run ends, whether the database took the commit in doubt; count it.

        Its failure waits in ``unrecorded``. A database back by now (a server
        stopped, then continued) may have taken that commit, outcome row and
        all: the symbol is stored then, and its failure must not be written
        over that row. Raises SQLAlchemyError when the database is still gone.
        """
        result, self.in_doubt = self.in_doubt, None
        if result is None or self.history is None or not self.history.holds(result.symbol):
            return
        logger.warning("%s: stored after all: the database took its commit once it answered "
                       "again", result.symbol)
        self.unrecorded = [outcome for outcome in self.unrecorded
                           if outcome.symbol != result.symbol]
        self.outcome.failures -= 1
        self._count_stored(result)

    def _fail(self, label: str, symbol: str | None, reason: str, *, status: str = FAILED,
              exc: Exception | None = None) -> None:
        """Count a failure and record it: one log line (stderr shows it), traceback in the file."""
        self.outcome.failures += 1
        logger.error("%s: failed: %s", label, reason, exc_info=exc)
        if self.history is None:
            return
        if symbol is None:
            self.outcome.unnamed_failures.append(f"{label}: {reason}")
            return
        outcome = SymbolOutcome(symbol, status, error=reason)
        if self.is_database_lost:  # each try would wait for it again
            self.unrecorded.append(outcome)
            return
        try:
            self.history.add(outcome)
            self.session.commit()
        except SQLAlchemyError as error:
            self.session.rollback()
            self.unrecorded.append(outcome)
            logger.error("could not record %s in run %d (%s)", symbol, self.history.run_id,
                         error.__class__.__name__)
            # A full disk may come as an error outside DATABASE_ERRORS (MySQL's
            # error 3 is PyMySQL's InternalError): it stops the run all the same.
            disk_full = is_disk_full(error)
            self.is_database_lost = disk_full or _is_unusable(error)
            if disk_full:
                self.database_lost_reason = DISK_FULL
        else:
            self.hooks.on_record()

    @staticmethod
    def _known_symbol(job: Job) -> str | None:
        return job.label if job.calls_api else None


def _is_unusable(error: SQLAlchemyError) -> bool:
    """Tell a database that cannot be reached or used from a lock a retry may pass."""
    return isinstance(error, DATABASE_ERRORS) and not (
        isinstance(error, OperationalError) and is_lock_conflict(error))


def spoils_the_run(error: AlphaVantageError) -> bool:
    """Tell whether no later job may call the API.

    Every later request would get the same refusal (and waste quota), or the
    run's deadline has passed.
    """
    return (isinstance(error, (InvalidApiKeyError, PremiumOnlyError))
            or (isinstance(error, RateLimitError) and error.is_daily_quota)
            or (isinstance(error, DeadlineExceededError) and error.ends_the_run))


def recorded_run(
    session: Session,
    engine: Engine,
    jobs: list[Job],
    settings: RunSettings,
    hooks: RunHooks,
    *,
    trigger: str,
    clock: Clock = utc_now,
    scheduled_for: datetime.datetime | None = None,
    catch_up: bool = False,
) -> RunOutcome | None:
    """Run the jobs as one recorded run, once the run in progress (if any) has finished.

    The run waits up to ``settings.lock_timeout`` seconds for the database's
    run lock; then it is recorded as failed, naming the run it waited for.
    A run ``scheduled_for`` a time that, once it holds the lock, finds that
    time done by another scheduler's run (ended ok), or that gives up waiting
    for another scheduler's run of that time, is skipped: nothing is fetched
    or recorded, and None is returned. A ``catch_up`` run (the scheduler's on
    start) leaves out the symbols runs since that time stored or tried, so a
    run cut short is finished without spending requests twice, and fetches
    last the symbol a killed run was at, leaving out one killed on twice, so
    a symbol that kills the process cannot spend the quota on every restart
    (``plan_catch_up``); with none left, it is skipped too.
    ``hooks`` hears of what the run records (see RunHooks).

    Raises LockWaitStopped when ``hooks.should_stop()`` turns true while waiting
    (nothing is recorded), LockFileError when SQLite's lock file cannot be
    opened (nothing is recorded), RunEndNotRecorded when the run's end cannot
    be written, SQLAlchemyError when the run cannot be recorded at all.
    """
    waiting_since = clock()
    try:
        with database_lock(engine, RUN_LOCK, settings.lock_timeout,
                           on_wait=lambda: _announce_wait(session, settings.lock_timeout),
                           should_stop=hooks.should_stop) as lock_held:
            if scheduled_for is not None and _taken_by_another(session, scheduled_for, OK):
                return None
            caught_up = None
            if catch_up and scheduled_for is not None:
                jobs, caught_up = _left_to_catch_up(session, jobs, scheduled_for)
                if not jobs:
                    _close_dead_runs(session, clock, hooks.on_end)
                    return None
            outcome = _run_with_history(session, jobs, settings, hooks, trigger=trigger,
                                        clock=clock, caught_up=caught_up, lock_held=lock_held)
    except LockTimeout:
        if scheduled_for is not None and _taken_by_another(session, scheduled_for, RUNNING):
            return None
        outcome = _refused(session, settings, trigger, waiting_since, clock)
        hooks.on_end()
    logger.info("%s", outcome.line())
    hooks.note(outcome.line())
    return outcome


def _taken_by_another(session: Session, scheduled_for: datetime.datetime, status: str) -> bool:
    """Tell (and log) whether another scheduler's run did (``OK``) or is doing (``RUNNING``,
    past FETCH_LOCK_TIMEOUT) the time ``scheduled_for``: a failed run of our own would only
    stand in the history and the alerts for a time that run does."""
    try:
        run = scheduled_run_since(session, scheduled_for, status)
        if run is not None:
            did = "already ran" if status == OK else "is still running"
            logger.info("skipped: run %d (started %s) %s the scheduled time; nothing fetched",
                        run.id, iso_utc(run.started_at), did)
        return run is not None
    finally:
        session.rollback()  # ends the read, as _holder does


def _left_to_catch_up(session: Session, jobs: list[Job],
                      scheduled_for: datetime.datetime) -> tuple[list[Job], str | None]:
    """Return the jobs a catch-up of ``scheduled_for`` still has to do, and what it leaves out.

    API jobs as ``plan_catch_up`` orders them: those a run since that time
    stored or failed left out, the one a killed run was fetching last, one
    two runs were killed on left to the next scheduled time. Saved files are
    all loaded again: they cost no request, and name their symbol only once read.
    """
    if not any(job.calls_api for job in jobs):
        return jobs, None
    plan = plan_catch_up(session, scheduled_for, [job.label for job in jobs])
    session.rollback()  # ends the read, as _holder does
    since = iso_utc(scheduled_for.astimezone(datetime.UTC).replace(tzinfo=None))
    left_out = []
    if plan.tried:
        logger.info("catch-up of the scheduled time %s: not fetched again, stored or tried "
                    "since: %s", since, ", ".join(plan.tried))
        what = "1 symbol" if len(plan.tried) == 1 else f"{len(plan.tried)} symbols"
        left_out.append(f"{what} stored or tried since then not fetched again")
    if plan.given_up:
        names = ", ".join(plan.given_up)
        logger.warning("catch-up of the scheduled time %s: %s left to the next scheduled time: "
                       "two runs since were killed while fetching it", since, names)
        left_out.append(f"{names} left to the next scheduled time (two runs since then were "
                        "killed while fetching it)")
    by_label = {job.label: job for job in jobs}
    return ([by_label[symbol] for symbol in plan.fetch],
            f"catch-up of the scheduled time {since}: {'; '.join(left_out)}" if left_out else None)


def _close_dead_runs(session: Session, clock: Clock, on_end: Callable[[], object]) -> None:
    """Mark the runs left running interrupted, as a run would: a catch-up with nothing left."""
    logger.info("catch-up: nothing left to fetch; every symbol was stored or tried since "
                "the scheduled time, or waits for the next")
    if close_runs_left_running(session, clock()):
        on_end()


def _run_with_history(session: Session, jobs: list[Job], settings: RunSettings,
                      hooks: RunHooks, *, trigger: str, clock: Clock,
                      caught_up: str | None = None,
                      lock_held: Callable[[], bool] = lambda: True) -> RunOutcome:
    recorder = RunRecorder.open(session, trigger, clock)
    hooks.on_record()
    try:
        loop = RunLoop(session, settings, hooks, history=recorder, lock_held=lock_held)
        outcome = loop.run(jobs)
        outcome.caught_up = caught_up
        try:
            # Recorded with the end, which a database still gone fails as it does;
            # not on a full disk, where the end may fit and they may not.
            loop.settle_in_doubt()
            if loop.database_lost_reason != DISK_FULL:
                for unrecorded in loop.unrecorded:
                    recorder.add(unrecorded)
            run = recorder.finish(outcome.run_status(), outcome.summary())
        except SQLAlchemyError as exc:
            session.rollback()
            raise RunEndNotRecorded(recorder.run_id, outcome, exc) from exc
    finally:
        hooks.on_end()
    outcome.run_id, outcome.status, outcome.message = run.id, run.status, run.message
    return outcome


def _refused(session: Session, settings: RunSettings, trigger: str,
             waiting_since: datetime.datetime, clock: Clock) -> RunOutcome:
    """Record a run that gave up waiting for the lock, naming the run it waited for."""
    message = (f"gave up after waiting {settings.lock_timeout:g}s (FETCH_LOCK_TIMEOUT) for "
               f"{_holder(session)} to finish; nothing fetched")
    run = record_refused_run(session, trigger, waiting_since, message, clock)
    return RunOutcome(run_id=run.id, status=run.status, message=run.message)


def _announce_wait(session: Session, timeout: float) -> None:
    logger.warning("waiting up to %gs for %s to finish", timeout, _holder(session))


def _holder(session: Session) -> str:
    """Name the run in progress, from a short read transaction of its own."""
    try:
        run = running_run(session)
        return "another run" if run is None else f"run {run.id} (started {iso_utc(run.started_at)})"
    finally:
        # Ends the read: a snapshot kept open while waiting would hide what
        # the other run commits (MySQL's REPEATABLE READ).
        session.rollback()
