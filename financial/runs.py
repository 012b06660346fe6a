"""The fetch job's run history: written as a run goes, read by the API and operators.

Tables ``fetch_runs`` and ``fetch_run_symbols`` (README: "The run history"). Times
are naive UTC in whole seconds, so SQLite and MySQL store them alike.
Readers (``last_run``, ``list_runs``, ``latest_symbol_outcomes``) are
plain functions over a session, usable by the API, metrics and scripts.
"""
import datetime
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    ColumnElement, CursorResult, Delete, Select, Table, bindparam, case, delete, exists, func,
    insert, or_, select, update,
)
from sqlalchemy.orm import Session

from financial.models import (
    FAILED, INTERRUPTED, MESSAGE_LENGTH, NOT_FETCHED, OK, RUNNING, SCHEDULE, FetchRun,
    FetchRunSymbol, MonthlyPriceSums,
)

logger = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = ("the run stopped before it finished (its process died or lost the "
                       "database); found by the next run")
# Runs deleted per statement: the ids go into an IN list.
DELETE_BATCH = 1000
# How bad a symbol's outcome is, when one run meets a symbol twice (two saved files).
_SEVERITY = {OK: 0, NOT_FETCHED: 1, FAILED: 2}

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    """Return the current UTC time, naive and in whole seconds, as the history stores it."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)


def end_time(now: datetime.datetime, start: datetime.datetime) -> datetime.datetime:
    """Return when a run that started at ``start`` ends at ``now``.

    A clock set back during the run (an NTP step) would end it before it
    started: a negative duration for whoever subtracts the two.
    """
    return max(now, start)


def one_line(text: str) -> str:
    """Return ``text`` on one line, cut to fit the history's message columns.

    A lone surrogate (an answer's JSON ``\\udcff``, a file name that is not
    UTF-8) is written as its escape, as on stderr: no database stores it, and
    the driver's error would end the run rather than fail the symbol.
    """
    line = " ".join(text.split()).encode("utf-8", "backslashreplace").decode("utf-8")
    return line if len(line) <= MESSAGE_LENGTH else line[:MESSAGE_LENGTH - 1] + "…"


def iso_utc(moment: datetime.datetime | None) -> str | None:
    """Write a stored UTC time as ``2023-03-24T22:31:02Z``."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


@dataclass(frozen=True)
class SymbolOutcome:
    """What a run did with one symbol; counts are zero and the date None unless stored."""

    symbol: str
    status: str
    rows_fetched: int = 0
    rows_new: int = 0
    rows_updated: int = 0
    newest_date: datetime.date | None = None
    error: str | None = None


def mark_interrupted(session: Session, now: datetime.datetime) -> list[int]:
    """Close every run still ``running`` as ``interrupted``; return their ids.

    Call it only while holding the run lock: then no live run is running.
    Flushes, does not commit.
    """
    ids = list(session.scalars(select(FetchRun.id).where(FetchRun.status == RUNNING)))
    if ids:
        ends = case((FetchRun.started_at > now, FetchRun.started_at), else_=now)
        session.execute(update(FetchRun).where(FetchRun.id.in_(ids)).values(
            status=INTERRUPTED, finished_at=ends, message=INTERRUPTED_MESSAGE))
        logger.warning("marked run(s) %s interrupted: left running by a process that died",
                       ", ".join(map(str, ids)))
    return ids


def close_runs_left_running(session: Session, now: datetime.datetime) -> bool:
    """Mark the runs left ``running`` ``interrupted`` and commit; tell whether there were any.

    For a holder of the run lock that records no run of its own (a catch-up
    with nothing left, a command): as ``mark_interrupted``, only while holding it.
    """
    closed = bool(mark_interrupted(session, now))
    session.commit()
    return closed


# Built once: RunRecorder.add runs them for every symbol of a run.
_RUNS, _OUTCOMES = cast(Table, FetchRun.__table__), cast(Table, FetchRunSymbol.__table__)
_ADD_TO_RUN = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"))
               .values(rows_new=_RUNS.c.rows_new + bindparam("new"),
                       rows_updated=_RUNS.c.rows_updated + bindparam("updated")))
_INSERT_OUTCOME = insert(_OUTCOMES)


class RunRecorder:
    """Writes one run's rows: opened ``running``, one row per symbol, then closed.

    ``add`` only flushes, so a symbol's outcome commits in the same
    transaction as its prices; a killed run thus leaves exactly what it did.
    """

    def __init__(self, session: Session, run: FetchRun, clock: Clock = utc_now) -> None:
        self.session = session
        self.run = run
        self.run_id = run.id
        self.clock = clock
        # Symbols whose outcome this run may have written: only those can have a row.
        self._met: set[str] = set()

    @classmethod
    def open(cls, session: Session, trigger: str, clock: Clock = utc_now) -> "RunRecorder":
        """Mark runs left running by dead processes, then insert this run; commit."""
        now = clock()
        mark_interrupted(session, now)
        run = FetchRun(started_at=now, trigger=trigger, status=RUNNING, rows_new=0,
                       rows_updated=0)
        session.add(run)
        session.commit()
        logger.info("run %d (%s) started", run.id, trigger)
        return cls(session, run, clock)

    def add(self, outcome: SymbolOutcome) -> None:
        """Add a symbol's outcome to the run and its totals; flushes, does not commit.

        A run meets most symbols once: their row is inserted as it is, looked
        up and merged only when met before, and the run's totals are added up
        in SQL, rather than read back after each symbol's commit (two queries
        and the ORM's flush a symbol: a tenth of a full history's run).
        """
        if outcome.rows_new or outcome.rows_updated:
            self.session.execute(_ADD_TO_RUN, {"run_id": self.run_id, "new": outcome.rows_new,
                                               "updated": outcome.rows_updated})
            self.session.expire(self.run, ["rows_new", "rows_updated"])
        row = None
        if outcome.symbol in self._met:  # else it has no row: every row of this run is added here
            row = self.session.get(FetchRunSymbol, (self.run_id, outcome.symbol))
        self._met.add(outcome.symbol)
        if row is None:
            self.session.execute(_INSERT_OUTCOME, {
                "run_id": self.run_id, "symbol": outcome.symbol, "status": outcome.status,
                "rows_fetched": outcome.rows_fetched, "rows_new": outcome.rows_new,
                "rows_updated": outcome.rows_updated, "newest_date": outcome.newest_date,
                "error": one_line(outcome.error) if outcome.error else None})
            return
        if _SEVERITY[outcome.status] > _SEVERITY[row.status]:
            row.status = outcome.status
        row.rows_fetched += outcome.rows_fetched
        row.rows_new += outcome.rows_new
        row.rows_updated += outcome.rows_updated
        newest = outcome.newest_date
        if newest is not None and (row.newest_date is None or newest > row.newest_date):
            row.newest_date = newest
        if outcome.error:
            row.error = one_line(outcome.error)
        self.session.flush()

    def has_met(self, symbol: str) -> bool:
        """Tell whether the run may have written an outcome for ``symbol`` before."""
        return symbol in self._met

    def holds(self, symbol: str) -> bool:
        """Tell whether the run's outcome of ``symbol`` is stored; ends the read.

        A locking read: it waits for a transaction writing that outcome (one
        whose commit got no answer, which the server may still take) to end,
        so it tells whether that transaction committed.
        """
        try:
            return self.session.execute(
                select(FetchRunSymbol.symbol)
                .where(FetchRunSymbol.run_id == self.run_id, FetchRunSymbol.symbol == symbol)
                .with_for_update(read=True)).first() is not None
        finally:
            self.session.rollback()

    def finish(self, status: str, message: str) -> FetchRun:
        """Close the run with its final status and one-line message; commit."""
        self.run.status = status
        self.run.finished_at = end_time(self.clock(), self.run.started_at)
        self.run.message = one_line(message)
        self.session.commit()
        return self.run


def record_refused_run(session: Session, trigger: str, started_at: datetime.datetime,
                       message: str, clock: Clock = utc_now) -> FetchRun:
    """Record a run that never got to work (e.g. it waited too long for another); commit."""
    run = FetchRun(started_at=started_at, finished_at=end_time(clock(), started_at),
                   trigger=trigger, status=FAILED, rows_new=0, rows_updated=0,
                   message=one_line(message))
    session.add(run)
    session.commit()
    return run


def running_run(session: Session) -> FetchRun | None:
    """Return the newest run still marked ``running`` (the lock holder's), if any."""
    return session.scalars(select(FetchRun).where(FetchRun.status == RUNNING)
                           .order_by(FetchRun.started_at.desc(), FetchRun.id.desc())
                           .limit(1)).first()


def last_run(session: Session) -> FetchRun | None:
    """Return the run in progress, else the run that ended last; None when nothing ran yet.

    Not the newest by start: a run that gives up waiting for the lock
    starts before the run it waited for ends, and would otherwise stand
    for the last run, ``failed``, long after that run succeeded.
    """
    return session.scalars(
        select(FetchRun)
        .order_by(FetchRun.finished_at.is_(None).desc(), FetchRun.finished_at.desc(),
                  FetchRun.id.desc())
        .limit(1)).first()


def scheduled_run_since(session: Session, moment: datetime.datetime,
                        status: str = OK) -> FetchRun | None:
    """Return a scheduled run that started at or after ``moment`` with ``status``, if any.

    Two schedulers on one database fire at the same times: the one that waited
    for the other's run finds that run here (ended ok, or still running when
    the wait ran out) and leaves the time to it.
    """
    return session.scalars(_scheduled_since(moment).where(FetchRun.status == status)).first()


def cut_short_run_since(session: Session, moment: datetime.datetime) -> FetchRun | None:
    """Return the newest scheduled run that started at or after ``moment``, if it was cut short.

    Cut short: ``interrupted``, or still ``running`` (its process is gone
    unless another scheduler's run is still at it). The scheduler catches up
    on start for the symbols such a run did not reach. A run that gave up
    waiting for the run lock (``failed`` with no symbol's outcome, as
    ``record_refused_run`` writes it) did nothing: a catch-up refused
    behind a run by hand must not hide the run it was to finish.
    """
    run = session.scalars(_scheduled_since(moment).where(_got_to_work())).first()
    return run if run is not None and run.status in (RUNNING, INTERRUPTED) else None


def _got_to_work() -> ColumnElement[bool]:
    """Whether a run got to work: not one that gave up waiting for the run lock, ``failed``
    with no symbol's outcome, as ``record_refused_run`` writes it."""
    return or_(FetchRun.status != FAILED, exists().where(FetchRunSymbol.run_id == FetchRun.id))


def _scheduled_since(moment: datetime.datetime) -> Select:
    """Select the scheduled runs that started at or after ``moment``, newest recorded first."""
    since = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    return (select(FetchRun).where(FetchRun.trigger == SCHEDULE, FetchRun.started_at >= since)
            .order_by(FetchRun.id.desc()).limit(1))


@dataclass(frozen=True)
class CatchUp:
    """What a catch-up of a scheduled time fetches, in order, and what it leaves out.

    ``tried``: stored or failed by a run since that time. A failure spent
    its request and would mostly fail again, as in a ``partial`` run.
    ``given_up``: two runs since were killed while fetching it (the OOM
    killer on a huge answer, say); fetched on every restart, it would spend
    the daily quota and never let the symbols after it through.
    """

    fetch: list[str]
    tried: list[str]
    given_up: list[str]


def plan_catch_up(session: Session, moment: datetime.datetime,
                  symbols: Sequence[str]) -> CatchUp:
    """Plan the catch-up of the scheduled time ``moment`` for the configured ``symbols``.

    It fetches the symbols no run (any trigger) started since then stored or
    failed, in their order, but those a killed scheduled run was fetching go
    last, and one two runs were killed on waits for the next scheduled time.
    The history does not name the symbol a killed run was at; a run records
    each outcome as it goes, in the order it fetches, so it was at the first
    symbol of that order with no outcome: ``symbols`` in their order for a
    scheduled run, this plan's order for a catch-up. Taking ``symbols`` for
    the configuration of every run since, it misplaces the kill of a run
    that fetched others (``SYMBOLS`` changed in between).
    """
    tried: set[str] = set()
    killed_on: list[str] = []
    for run_tried, killed in _runs_since(session, moment):
        tried |= run_tried
        at = _fetch_order(symbols, tried, killed_on) if killed else []
        if at:
            killed_on.append(at[0])
    given_up = [symbol for symbol in dict.fromkeys(killed_on)
                if killed_on.count(symbol) > 1 and symbol not in tried]
    return CatchUp(_fetch_order(symbols, tried, killed_on),
                   [symbol for symbol in symbols if symbol in tried], given_up)


def _fetch_order(symbols: Sequence[str], tried: set[str], killed_on: list[str]) -> list[str]:
    """Order the symbols not tried: those killed on once last, in the order of the kills."""
    left = [symbol for symbol in symbols
            if symbol not in tried and killed_on.count(symbol) < 2]
    return ([symbol for symbol in left if symbol not in killed_on]
            + [symbol for symbol in dict.fromkeys(killed_on) if symbol in left])


def _runs_since(session: Session, moment: datetime.datetime) -> list[tuple[set[str], bool]]:
    """Return, per run started at or after ``moment`` in the order recorded, the symbols it
    stored or failed and whether it was a scheduled run killed (left ``running``, or so
    marked ``interrupted`` by a later run; one stopped by a signal recorded the rest
    ``not_fetched``)."""
    since = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    runs = session.execute(select(FetchRun.id, FetchRun.trigger, FetchRun.status, FetchRun.message)
                           .where(FetchRun.started_at >= since).order_by(FetchRun.id)).all()
    tried: dict[int, set[str]] = {run_id: set() for run_id, *_ in runs}
    for run_id, symbol in session.execute(
            select(FetchRunSymbol.run_id, FetchRunSymbol.symbol)
            .join(FetchRun, FetchRun.id == FetchRunSymbol.run_id)
            .where(FetchRun.started_at >= since, FetchRunSymbol.status != NOT_FETCHED)):
        tried[run_id].add(symbol)
    return [(tried[run_id], trigger == SCHEDULE and (
        status == RUNNING or message == INTERRUPTED_MESSAGE))
        for run_id, trigger, status, message in runs]


def latest_run_start(session: Session) -> datetime.datetime | None:
    """Return when the newest run that got to work started (naive UTC), or None.

    A scheduled time whose run gave up waiting for the run lock (behind a run
    by hand that started before it) had no run: the scheduler catches it up.
    """
    return session.scalar(select(func.max(FetchRun.started_at)).where(_got_to_work()))


def data_version(session: Session, symbols: Sequence[str] | None = None) -> str:
    """Return a mark that changes whenever a fetch run stores changed rows, or rows are deleted.

    The newest run that changed rows, with its counts: a run adds to them
    in the same transaction as each symbol's rows, so the mark moves with
    every change the fetch job makes. And the number of stored days of
    ``symbols`` (None: all), read from the monthly sums, which are kept in
    step with every write, so ``forget-symbols`` moves it too; a few
    hundred rows per symbol, read by primary key. Rows edited by hand do
    not move it.
    """
    newest = session.execute(_newest_changing_run(
        FetchRun.id, FetchRun.rows_new, FetchRun.rows_updated)).first()
    stored_days = select(func.coalesce(func.sum(MonthlyPriceSums.days), 0))
    if symbols is not None:
        stored_days = stored_days.where(MonthlyPriceSums.symbol.in_(symbols))
    days = session.scalar(stored_days)
    run = "none" if newest is None else ".".join(str(value) for value in newest)
    return f"{run}:{days}"


def _newest_changing_run(*columns: Any) -> Select:
    """Select ``columns`` of the newest run that changed rows (``data_version`` names it)."""
    return (select(*columns).where((FetchRun.rows_new > 0) | (FetchRun.rows_updated > 0))
            .order_by(FetchRun.id.desc()).limit(1))


def delete_runs_before(session: Session, moment: datetime.datetime) -> tuple[int, int]:
    """Delete the runs started before ``moment`` with their symbols; return how many of each.

    Kept whatever their age: a run still running; the run with the highest
    id, as SQLite numbers a new run after the highest one left and a reused
    id would pass for the old run; and the newest run that changed rows,
    which the export's data version (``data_version``) names. Runs in the
    caller's transaction, in batches of DELETE_BATCH runs.
    """
    kept = {session.scalar(select(func.max(FetchRun.id))),
            session.scalar(_newest_changing_run(FetchRun.id))}
    doomed = [run_id for run_id in session.scalars(
        select(FetchRun.id).where(FetchRun.started_at < moment, FetchRun.status != RUNNING))
        if run_id not in kept]
    runs = outcomes = 0
    for start in range(0, len(doomed), DELETE_BATCH):
        batch = doomed[start:start + DELETE_BATCH]
        outcomes += _deleted(session, delete(FetchRunSymbol)
                             .where(FetchRunSymbol.run_id.in_(batch)))
        runs += _deleted(session, delete(FetchRun).where(FetchRun.id.in_(batch)))
    return runs, outcomes


def _deleted(session: Session, statement: Delete) -> int:
    """Run a DELETE; return how many rows it removed."""
    return cast(CursorResult, session.execute(statement)).rowcount


def count_runs(session: Session) -> int:
    """Return how many runs are recorded."""
    return session.scalar(select(func.count()).select_from(FetchRun)) or 0


def list_runs(session: Session, *, limit: int, offset: int) -> list[FetchRun]:
    """Return ``limit`` runs after ``offset``, newest first."""
    return list(session.scalars(_newest_first(select(FetchRun)).limit(limit).offset(offset)))


def symbols_of_runs(session: Session, run_ids: Iterable[int]) -> dict[int, list[FetchRunSymbol]]:
    """Return each run's symbol outcomes, ordered by symbol."""
    outcomes: dict[int, list[FetchRunSymbol]] = {run_id: [] for run_id in run_ids}
    if outcomes:
        rows = session.scalars(select(FetchRunSymbol)
                               .where(FetchRunSymbol.run_id.in_(list(outcomes)))
                               .order_by(FetchRunSymbol.run_id, FetchRunSymbol.symbol))
        for row in rows:
            outcomes[row.run_id].append(row)
    return outcomes


@dataclass(frozen=True)
class LastFetch:
    """The newest run that tried a symbol: when it started and how the symbol fared."""

    started_at: datetime.datetime
    status: str


def latest_symbol_outcomes(session: Session, symbols: list[str]) -> dict[str, LastFetch]:
    """Return, per symbol that any run tried, the newest such run's start and the outcome."""
    if not symbols:
        return {}
    newest = (select(FetchRunSymbol.symbol, func.max(FetchRunSymbol.run_id).label("run_id"))
              .where(FetchRunSymbol.symbol.in_(symbols))
              .group_by(FetchRunSymbol.symbol).subquery())
    rows = session.execute(
        select(FetchRunSymbol.symbol, FetchRun.started_at, FetchRunSymbol.status)
        .join(newest, (FetchRunSymbol.symbol == newest.c.symbol)
              & (FetchRunSymbol.run_id == newest.c.run_id))
        .join(FetchRun, FetchRun.id == FetchRunSymbol.run_id))
    return {symbol: LastFetch(started_at, status) for symbol, started_at, status in rows}


def _newest_first(query):
    return query.order_by(FetchRun.started_at.desc(), FetchRun.id.desc())
