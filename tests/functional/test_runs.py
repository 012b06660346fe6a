"""The run history and the symbols' freshness, written and read on every backend."""
import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from financial.freshness import count_symbols, list_symbols
from financial.models import MESSAGE_LENGTH, FetchRun, FetchRunSymbol
from financial.runs import (
    INTERRUPTED_MESSAGE, CatchUp, RunRecorder, SymbolOutcome, count_runs, cut_short_run_since,
    data_version, delete_runs_before, last_run, latest_run_start,
    latest_symbol_outcomes, list_runs, plan_catch_up, record_refused_run, running_run,
    scheduled_run_since, symbols_of_runs,
)
from tests.helpers import build_app, dispose_engines

START = datetime.datetime(2023, 3, 24, 22, 30)


class Ticks:
    """A clock that moves one minute per reading, naive UTC like the history."""

    def __init__(self, start: datetime.datetime = START) -> None:
        self.next = start

    def __call__(self) -> datetime.datetime:
        now, self.next = self.next, self.next + datetime.timedelta(minutes=1)
        return now


def runs_table(session) -> list[tuple]:
    return [(run.id, run.started_at, run.finished_at, run.trigger, run.status, run.rows_new,
             run.rows_updated, run.message)
            for run in session.scalars(select(FetchRun).order_by(FetchRun.id))]


def symbols_table(session) -> list[tuple]:
    return [(row.run_id, row.symbol, row.status, row.rows_fetched, row.rows_new,
             row.rows_updated, row.newest_date, row.error)
            for row in session.scalars(select(FetchRunSymbol)
                                       .order_by(FetchRunSymbol.run_id, FetchRunSymbol.symbol))]


def test_a_run_is_written_as_it_goes_then_closed(db_session):
    clock = Ticks()
    recorder = RunRecorder.open(db_session, "schedule", clock)
    run_id = recorder.run_id
    assert runs_table(db_session) == [(run_id, START, None, "schedule", "running", 0, 0, None)]
    recorder.add(SymbolOutcome("IBM", "ok", 10, 3, 1, datetime.date(2023, 3, 24)))
    db_session.commit()
    recorder.add(SymbolOutcome("AAPL", "failed", error="network failure for AAPL"))
    db_session.commit()
    assert runs_table(db_session)[0][4:7] == ("running", 3, 1)
    recorder.finish("partial", "1 of 2 symbols stored")
    assert runs_table(db_session) == [
        (run_id, START, START + datetime.timedelta(minutes=1), "schedule", "partial", 3, 1,
         "1 of 2 symbols stored")]
    assert symbols_table(db_session) == [
        (run_id, "AAPL", "failed", 0, 0, 0, None, "network failure for AAPL"),
        (run_id, "IBM", "ok", 10, 3, 1, datetime.date(2023, 3, 24), None)]


def test_a_symbol_outcome_rolls_back_with_its_transaction(db_session):
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    recorder.add(SymbolOutcome("IBM", "ok", 10, 10, 0, datetime.date(2023, 3, 24)))
    db_session.rollback()
    assert symbols_table(db_session) == []
    assert runs_table(db_session)[0][5:7] == (0, 0)


def test_a_symbol_whose_outcome_rolled_back_is_written_when_met_again(db_session):
    """As the job records a symbol whose commit failed: its failure, in a transaction of its own."""
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    recorder.add(SymbolOutcome("IBM", "ok", 10, 10, 0, datetime.date(2023, 3, 24)))
    db_session.rollback()
    recorder.add(SymbolOutcome("IBM", "failed", error="database error"))
    db_session.commit()
    recorder.add(SymbolOutcome("AAPL", "ok", 5, 4, 1, datetime.date(2023, 3, 24)))
    db_session.commit()
    assert symbols_table(db_session) == [
        (recorder.run_id, "AAPL", "ok", 5, 4, 1, datetime.date(2023, 3, 24), None),
        (recorder.run_id, "IBM", "failed", 0, 0, 0, None, "database error")]
    assert runs_table(db_session)[0][5:7] == (4, 1)
    assert (recorder.run.rows_new, recorder.run.rows_updated) == (4, 1)


def test_a_run_adds_a_symbol_of_updated_rows_alone_to_its_own_totals_only(db_session):
    earlier = RunRecorder.open(db_session, "manual", Ticks())
    earlier.add(SymbolOutcome("IBM", "ok", 10, 10, 0, datetime.date(2023, 3, 24)))
    earlier.finish("ok", "1 symbol stored")
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    recorder.add(SymbolOutcome("IBM", "ok", 10, 0, 7, datetime.date(2023, 3, 24)))
    db_session.commit()
    assert [run[5:7] for run in runs_table(db_session)] == [(10, 0), (0, 7)]


def test_the_run_shows_its_totals_before_they_commit(db_session):
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    assert (recorder.run.rows_new, recorder.run.rows_updated) == (0, 0)
    recorder.add(SymbolOutcome("IBM", "ok", 10, 3, 1, datetime.date(2023, 3, 24)))
    assert (recorder.run.rows_new, recorder.run.rows_updated) == (3, 1)


def test_opening_a_run_marks_runs_left_running_as_interrupted(db_session):
    clock = Ticks()
    dead = RunRecorder.open(db_session, "manual", clock)
    dead.add(SymbolOutcome("IBM", "ok", 10, 10, 0, datetime.date(2023, 3, 24)))
    db_session.commit()
    later = RunRecorder.open(db_session, "schedule", clock)
    assert runs_table(db_session) == [
        (dead.run_id, START, START + datetime.timedelta(minutes=1), "manual", "interrupted", 10,
         0, INTERRUPTED_MESSAGE),
        (later.run_id, START + datetime.timedelta(minutes=1), None, "schedule", "running", 0, 0,
         None)]
    assert symbols_table(db_session)[0][:3] == (dead.run_id, "IBM", "ok")


def test_a_symbol_met_twice_in_one_run_adds_up_and_keeps_the_worst(db_session):
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    recorder.add(SymbolOutcome("IBM", "ok", 10, 10, 0, datetime.date(2023, 3, 24)))
    recorder.add(SymbolOutcome("IBM", "ok", 5, 1, 2, datetime.date(2024, 6, 18)))
    recorder.add(SymbolOutcome("IBM", "failed", error="a\nsecond   line"))
    db_session.commit()
    assert symbols_table(db_session) == [
        (recorder.run_id, "IBM", "failed", 15, 11, 2, datetime.date(2024, 6, 18), "a second line")]
    assert runs_table(db_session)[0][5:7] == (11, 2)


def test_messages_are_one_line_cut_to_the_column(db_session):
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    recorder.add(SymbolOutcome("IBM", "failed", error="x" * 600))
    run = recorder.finish("failed", "why\n" * 200)
    db_session.commit()
    row = db_session.scalars(select(FetchRunSymbol)).one()
    assert len(row.error) == MESSAGE_LENGTH and row.error.endswith("x…")
    assert len(run.message) == MESSAGE_LENGTH and "\n" not in run.message


def test_text_no_database_can_store_is_recorded_with_its_escapes(db_session):
    """A lone surrogate: a JSON answer's \\udcff escape, or a file name that is not UTF-8."""
    recorder = RunRecorder.open(db_session, "manual", Ticks())
    recorder.add(SymbolOutcome("IBM", "failed", error="AlphaVantage error for IBM: odd \udcff"))
    run = recorder.finish("failed", "0 of 1 files stored; bad\udcff.json: not JSON")
    db_session.commit()
    assert db_session.scalars(select(FetchRunSymbol.error)).one() == (
        "AlphaVantage error for IBM: odd \\udcff")
    assert run.message == "0 of 1 files stored; bad\\udcff.json: not JSON"
    assert runs_table(db_session)[0][7] == run.message


def test_a_refused_run_is_recorded_failed_without_symbols(db_session):
    clock = Ticks()
    holder = RunRecorder.open(db_session, "schedule", clock)
    refused = record_refused_run(db_session, "manual", START, "gave up", clock)
    assert runs_table(db_session)[1] == (refused.id, START, START + datetime.timedelta(
        minutes=1), "manual", "failed", 0, 0, "gave up")
    assert running_run(db_session).id == holder.run_id


class SetBack(Ticks):
    """A clock set back ten minutes after its first reading (an NTP step during a run)."""

    def __call__(self) -> datetime.datetime:
        now = super().__call__()
        if now == START:
            self.next -= datetime.timedelta(minutes=11)
        return now


def test_a_run_never_ends_before_it_started_when_the_clock_goes_back(db_session):
    finished = RunRecorder.open(db_session, "schedule", SetBack()).finish("ok", "done")
    # It began waiting at 22:40, and gave up when the clock, set back, showed 22:30.
    waited_from = START + datetime.timedelta(minutes=10)
    refused = record_refused_run(db_session, "manual", waited_from, "gave up", Ticks())
    clock = SetBack()
    dead = RunRecorder.open(db_session, "manual", clock)
    RunRecorder.open(db_session, "schedule", clock)
    assert [run[:3] for run in runs_table(db_session)[:3]] == [
        (finished.id, START, START), (refused.id, waited_from, waited_from),
        (dead.run_id, START, START)]


def test_the_last_run_is_the_one_in_progress_then_the_one_that_ended_last(db_session):
    clock = Ticks()
    assert last_run(db_session) is None
    holder = RunRecorder.open(db_session, "schedule", clock)
    # Gave up waiting for the holder: it started later and ended first.
    refused = record_refused_run(db_session, "manual", clock(), "gave up", clock)
    assert last_run(db_session).id == holder.run_id
    holder.finish("ok", "done")
    assert last_run(db_session).id == holder.run_id
    later = record_refused_run(db_session, "manual", clock(), "gave up", clock)
    assert last_run(db_session).id == later.id != refused.id


def test_a_scheduled_time_is_done_only_by_a_scheduled_run_since_it_that_ended_ok(db_session):
    """Another scheduler retries a time whose run died, failed in part, or was by hand."""
    due = START.replace(tzinfo=datetime.UTC).astimezone(ZoneInfo("America/New_York"))
    db_session.add_all([
        FetchRun(started_at=START - datetime.timedelta(seconds=1), trigger="schedule",
                 status="ok", rows_new=0, rows_updated=0),
        *(FetchRun(started_at=START, trigger=trigger, status=status, rows_new=0,
                   rows_updated=0)
          for trigger, status in [("manual", "ok"), ("schedule", "interrupted"),
                                  ("schedule", "partial"), ("schedule", "failed")])])
    db_session.commit()
    assert scheduled_run_since(db_session, due) is None
    done = FetchRun(started_at=START, trigger="schedule", status="ok", rows_new=0, rows_updated=0)
    db_session.add(done)
    db_session.commit()
    assert scheduled_run_since(db_session, due) is done


@pytest.mark.parametrize("status", ["interrupted", "running"])
def test_a_scheduled_time_is_cut_short_when_its_newest_scheduled_run_was(db_session, status):
    """A run of an earlier time, or by hand, or refused the lock, does not count; a later
    ending one settles it."""
    due = START.replace(tzinfo=datetime.UTC).astimezone(ZoneInfo("America/New_York"))
    db_session.add_all([
        FetchRun(started_at=START - datetime.timedelta(seconds=1), trigger="schedule",
                 status="interrupted", rows_new=0, rows_updated=0),
        FetchRun(started_at=START, trigger="manual", status="interrupted", rows_new=0,
                 rows_updated=0)])
    db_session.commit()
    assert cut_short_run_since(db_session, due) is None
    cut = FetchRun(started_at=START, trigger="schedule", status=status, rows_new=0,
                   rows_updated=0)
    db_session.add(cut)
    db_session.commit()
    assert cut_short_run_since(db_session, due) is cut
    # A catch-up that gave up waiting for the run lock did nothing: it hides nothing.
    record_refused_run(db_session, "schedule", START, "gave up after waiting")
    assert cut_short_run_since(db_session, due) is cut
    db_session.add(FetchRun(started_at=START, trigger="schedule", status="partial", rows_new=0,
                            rows_updated=0))
    db_session.commit()
    assert cut_short_run_since(db_session, due) is None


def test_a_catch_up_leaves_out_the_symbols_stored_or_failed_by_any_run_since_its_time(
        db_session):
    clock = Ticks(START - datetime.timedelta(minutes=1))
    outcomes = {"manual": [("MSFT", "ok")],  # started before the time: does not count
                "schedule": [("IBM", "ok"), ("AAPL", "failed"), ("TSLA", "not_fetched")]}
    for trigger, symbols in outcomes.items():
        recorder = RunRecorder.open(db_session, trigger, clock)
        for symbol, status in symbols:
            recorder.add(SymbolOutcome(symbol, status))
        recorder.finish("interrupted", "stopped")
    due = START.replace(tzinfo=datetime.UTC)
    configured = ["MSFT", "IBM", "AAPL", "TSLA"]
    assert plan_catch_up(db_session, due, configured) == CatchUp(
        fetch=["MSFT", "TSLA"], tried=["IBM", "AAPL"], given_up=[])
    recorder = RunRecorder.open(db_session, "manual", clock)
    recorder.add(SymbolOutcome("TSLA", "ok"))
    recorder.finish("ok", "done")
    assert plan_catch_up(db_session, due, configured) == CatchUp(
        fetch=["MSFT"], tried=["IBM", "AAPL", "TSLA"], given_up=[])


def test_a_catch_up_fetches_a_symbol_a_run_was_killed_on_last_and_one_killed_on_twice_not(
        db_session):
    """Each killed run was at the first symbol of its order with no outcome: the scheduled
    run's in configured order, each catch-up's in the order planned before it."""
    clock = Ticks()
    due = START.replace(tzinfo=datetime.UTC)
    configured = ["IBM", "AAPL", "MSFT", "TSLA"]
    plans = []
    for stored in (["IBM"], ["MSFT"], [], ["TSLA"]):  # killed in AAPL, TSLA, AAPL, after TSLA
        recorder = RunRecorder.open(db_session, "schedule", clock)  # marks the last interrupted
        for symbol in stored:
            recorder.add(SymbolOutcome(symbol, "ok"))
        db_session.commit()
        plans.append(plan_catch_up(db_session, due, configured))
    assert plans == [
        CatchUp(fetch=["MSFT", "TSLA", "AAPL"], tried=["IBM"], given_up=[]),
        CatchUp(fetch=["AAPL", "TSLA"], tried=["IBM", "MSFT"], given_up=[]),
        CatchUp(fetch=["TSLA"], tried=["IBM", "MSFT"], given_up=["AAPL"]),
        CatchUp(fetch=[], tried=["IBM", "MSFT", "TSLA"], given_up=["AAPL"]),
    ]


def test_a_run_stopped_by_a_signal_or_refused_the_lock_was_killed_on_no_symbol(db_session):
    clock = Ticks()
    due = START.replace(tzinfo=datetime.UTC)
    for _ in range(2):
        recorder = RunRecorder.open(db_session, "schedule", clock)
        recorder.add(SymbolOutcome("IBM", "ok"))
        recorder.add(SymbolOutcome("AAPL", "not_fetched", error="not fetched: the job was stopped"))
        recorder.finish("interrupted", "stopped before the end")
        record_refused_run(db_session, "schedule", clock(), "gave up after waiting", clock)
    assert plan_catch_up(db_session, due, ["IBM", "AAPL"]) == CatchUp(
        fetch=["AAPL"], tried=["IBM"], given_up=[])


def test_runs_are_listed_newest_first_with_their_symbols(db_session):
    clock = Ticks()
    ids = []
    for symbols in (["IBM"], ["IBM", "AAPL"], []):
        recorder = RunRecorder.open(db_session, "manual", clock)
        for symbol in symbols:
            recorder.add(SymbolOutcome(symbol, "ok", 1, 1, 0, datetime.date(2023, 3, 24)))
        recorder.finish("ok", "done")
        ids.append(recorder.run_id)
    # Started before the others (it waited), recorded last.
    refused = record_refused_run(db_session, "manual", START - datetime.timedelta(hours=1),
                                 "gave up", clock)
    assert count_runs(db_session) == 4
    assert [run.id for run in list_runs(db_session, limit=2, offset=0)] == [ids[2], ids[1]]
    assert [run.id for run in list_runs(db_session, limit=5, offset=2)] == [ids[0], refused.id]
    outcomes = symbols_of_runs(db_session, ids)
    assert [[row.symbol for row in outcomes[run_id]] for run_id in ids] == [
        ["IBM"], ["AAPL", "IBM"], []]
    assert latest_run_start(db_session) == START + datetime.timedelta(minutes=4)


def test_a_run_that_gave_up_waiting_for_the_lock_is_no_run_for_the_schedule(db_session):
    """Scheduled at a time a run by hand, started before it, still held the lock: the
    scheduled run gave up, and that time, left without a run, is caught up on a restart."""
    clock = Ticks()
    recorder = RunRecorder.open(db_session, "manual", clock)
    recorder.add(SymbolOutcome("IBM", "ok"))
    recorder.finish("ok", "done")
    by_hand = recorder.run.started_at
    record_refused_run(db_session, "schedule", clock(), "gave up after waiting", clock)
    assert latest_run_start(db_session) == by_hand
    failed = RunRecorder.open(db_session, "schedule", clock)  # got to work, failed every symbol
    failed.add(SymbolOutcome("IBM", "failed", error="HTTP 503"))
    failed.finish("failed", "none stored")
    assert latest_run_start(db_session) == failed.run.started_at


def test_runs_started_in_the_same_second_are_listed_by_id_newest_first(db_session):
    # Times are whole seconds, so runs tie. MariaDB sorts these rows by a filesort,
    # which leaves ties in no set order: without the id a page could repeat or skip runs.
    starts = [START + datetime.timedelta(seconds=n % 3) for n in range(12)]
    ids = [record_refused_run(db_session, "manual", start, "gave up").id for start in starts]
    expected = [run_id for _, run_id in sorted(zip(starts, ids), reverse=True)]
    assert [run.id for run in list_runs(db_session, limit=100, offset=0)] == expected
    assert [run.id for offset in range(12)
            for run in list_runs(db_session, limit=1, offset=offset)] == expected


def test_old_runs_are_deleted_with_their_symbols_but_the_newest_ones_are_kept(db_session):
    clock = Ticks()
    ids = []
    for new_rows in (3, 2, 0, 0):  # two runs that stored rows, then two that changed nothing
        recorder = RunRecorder.open(db_session, "manual", clock)
        recorder.add(SymbolOutcome("IBM", "ok", 5, new_rows, 0, datetime.date(2023, 3, 24)))
        recorder.add(SymbolOutcome("AAPL", "failed", error="network failure for AAPL"))
        recorder.finish("partial", "1 of 2 symbols stored")
        ids.append(recorder.run_id)
    db_session.commit()
    version = data_version(db_session)

    assert delete_runs_before(db_session, START) == (0, 0), "none started before the first"
    assert delete_runs_before(db_session, START + datetime.timedelta(days=1)) == (2, 4)
    db_session.commit()
    # The newest run that stored rows (the export's data version) and the newest run stay.
    assert [row[0] for row in runs_table(db_session)] == [ids[1], ids[3]]
    assert {row[0] for row in symbols_table(db_session)} == {ids[1], ids[3]}
    assert data_version(db_session) == version


def test_a_run_still_running_is_kept_however_old(db_session):
    """Not the newest run: one the next run refused, waiting for it, came after."""
    clock = Ticks()
    running = RunRecorder.open(db_session, "schedule", clock)
    running.add(SymbolOutcome("IBM", "failed", error="network failure for IBM"))
    db_session.commit()
    refused = record_refused_run(db_session, "manual", clock(), "gave up", clock)

    assert delete_runs_before(db_session, START + datetime.timedelta(days=1)) == (0, 0)
    db_session.commit()
    assert [(row[0], row[4]) for row in runs_table(db_session)] == [
        (running.run_id, "running"), (refused.id, "failed")]
    assert [row[:3] for row in symbols_table(db_session)] == [
        (running.run_id, "IBM", "failed")]


def test_the_prune_command_names_what_it_deleted_and_refuses_a_bad_day(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["prune-runs", "--before", "2000-01-01"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted 0 runs started before 2000-01-01 and 0 symbol outcomes\n"
    assert result.stderr == (f"the API's cache is per process (CACHE_TYPE SimpleCache), out of "
                             f"this command's reach: the API may serve answers up to "
                             f"{app.config['CACHE_DEFAULT_TIMEOUT']}s old\n")
    refused = runner.invoke(args=["prune-runs", "--before", "last year"])
    assert refused.exit_code == 2
    assert "Invalid value for '--before'" in refused.output


@pytest.mark.parametrize("args, table", [(["prune-runs", "--before", "2000-01-01"], "fetch_runs"),
                                         # Holding the run lock, it first closes dead runs.
                                         (["refresh-sums"], "fetch_runs"),
                                         (["forget-symbols", "IBM", "--yes"], "financial_data")])
def test_the_commands_name_a_database_failure_in_one_line(empty_database_url, tmp_path, args,
                                                          table):
    unmigrated = build_app(empty_database_url, tmp_path / "log")
    result = unmigrated.test_cli_runner().invoke(args=args)
    dispose_engines(unmigrated)
    assert result.exit_code == 1
    assert result.stdout == ""
    message = result.stderr
    assert message.startswith("Error: database error: ") and message.count("\n") == 1
    assert table in message
    assert message.endswith("hint: the schema is missing or behind the migrations: run them "
                            "(flask --app app db upgrade); nothing was changed\n")


def test_the_last_fetch_of_a_symbol_is_the_newest_run_that_tried_it(db_session):
    clock = Ticks()
    first = RunRecorder.open(db_session, "manual", clock)
    first.add(SymbolOutcome("IBM", "ok", 1, 1, 0, datetime.date(2023, 3, 24)))
    first.add(SymbolOutcome("AAPL", "ok", 1, 1, 0, datetime.date(2023, 3, 24)))
    first.finish("ok", "done")
    second = RunRecorder.open(db_session, "schedule", clock)
    second.add(SymbolOutcome("AAPL", "not_fetched", error="not fetched: quota"))
    second.finish("failed", "done")
    record_refused_run(db_session, "manual", START + datetime.timedelta(hours=1), "gave up",
                       clock)
    last = latest_symbol_outcomes(db_session, ["IBM", "AAPL", "MSFT"])
    assert {symbol: (fetch.started_at, fetch.status) for symbol, fetch in last.items()} == {
        "IBM": (START, "ok"), "AAPL": (START + datetime.timedelta(minutes=2), "not_fetched")}


@pytest.mark.parametrize("table, row", [
    (FetchRun, {"started_at": START, "trigger": "cron", "status": "ok", "rows_new": 0,
                "rows_updated": 0}),
    (FetchRun, {"started_at": START, "trigger": "manual", "status": "done", "rows_new": 0,
                "rows_updated": 0}),
])
def test_the_tables_refuse_unknown_statuses_and_triggers(db_session, table, row):
    # MariaDB reports a failed CHECK as error 4025, which PyMySQL calls operational.
    with pytest.raises((IntegrityError, OperationalError), match="ck_fetch_runs_"):
        db_session.execute(insert(table), [row])


def test_stored_symbols_come_with_their_span_and_freshness(db_session, make_price,
                                                           store_prices):
    days = {"AAPL": [datetime.date(2023, 3, 22), datetime.date(2023, 3, 23)],
            "IBM": [datetime.date(2023, 3, 21), datetime.date(2023, 3, 24)],
            "MSFT": [datetime.date(2023, 3, 24)]}
    store_prices([make_price(symbol=symbol, date=day)
                  for symbol, dates in days.items() for day in dates])
    recorder = RunRecorder.open(db_session, "schedule", Ticks())
    recorder.add(SymbolOutcome("IBM", "ok", 2, 2, 0, datetime.date(2023, 3, 24)))
    recorder.add(SymbolOutcome("AAPL", "failed", error="network failure for AAPL"))
    recorder.finish("partial", "done")
    # Monday 2023-03-27 after the close: Friday's IBM is one session behind, AAPL two.
    now = datetime.datetime(2023, 3, 27, 16, 5, tzinfo=ZoneInfo("America/New_York"))
    entries = list_symbols(db_session, limit=10, offset=0, now=now, stale_after=1)
    assert [(e.symbol, e.first_date, e.last_date, e.trading_days, e.sessions_behind, e.stale,
             e.last_fetched_at, e.last_fetch_status) for e in entries] == [
        ("AAPL", days["AAPL"][0], days["AAPL"][1], 2, 2, True, START, "failed"),
        ("IBM", days["IBM"][0], days["IBM"][1], 2, 1, False, START, "ok"),
        ("MSFT", days["MSFT"][0], days["MSFT"][0], 1, 1, False, None, None)]
    assert count_symbols(db_session) == 3
    assert [e.symbol for e in list_symbols(db_session, limit=1, offset=1, now=now,
                                           stale_after=0)] == ["IBM"]
    assert list_symbols(db_session, limit=1, offset=1, now=now, stale_after=0)[0].stale
